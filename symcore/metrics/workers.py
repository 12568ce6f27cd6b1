"""Worker processes that compute normal forms under a per-expression timeout: a hung SymPy call
is killed with its process (and the worker replaced), so it can never hang the caller.

Workers are plain `python -m symcore.metrics.workers` subprocesses speaking JSON lines over
pipes (no fork of a threaded parent, no re-import of the caller's __main__); they live as long
as the process (kept warm: SymPy's own caches help the next expression) and are closed at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import selectors
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Hashable, Literal, Sequence

__all__ = ["Outcome", "run_forms", "run_tasks", "n_workers", "shutdown", "as_tree"]

Status = Literal["ok", "timeout", "error"]


@dataclass(frozen=True)
class Outcome:
    """One expression's result: its normal form and tree, or why there is none."""
    status: Status
    form: str | None = None
    tree: tuple | None = None
    message: str = ""
    seconds: float = 0.0


def n_workers() -> int:
    """Worker processes: `$SYMCORE_THREADS` or the CPUs this process may use."""
    env = os.environ.get("SYMCORE_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ, PYTHONUNBUFFERED="1", SYMCORE_THREADS="1")
        # SymPy's cache (default 1000 entries) is read at import: a larger one lets a
        # perturbed formula reuse the work done on its neighbours in this long-lived worker
        env.setdefault("SYMPY_CACHE_SIZE", "50000")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "symcore.metrics.workers"], stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, bufsize=0)
        self.buf = b""
        self.task: tuple[int, float, float] | None = None  # (index, started, deadline)
        self.group: Hashable = None      # the task group it is working through

    def send(self, payload: dict) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())
        self.proc.stdin.flush()

    def kill(self) -> None:
        try:
            self.proc.kill()
        finally:
            self.proc.wait()
            for f in (self.proc.stdin, self.proc.stdout):
                if f is not None:
                    f.close()


_LOCK = threading.Lock()
_IDLE: list[_Worker] = []


def shutdown() -> None:
    """Stop the idle workers (they are started again on demand)."""
    with _LOCK:
        while _IDLE:
            _IDLE.pop().kill()


atexit.register(shutdown)


def _take(k: int) -> list[_Worker]:
    with _LOCK:
        got = [w for w in _IDLE[:k] if w.proc.poll() is None]
        del _IDLE[:k]
    return got + [_Worker() for _ in range(k - len(got))]


def run_forms(texts: Sequence[str], method: str, timeout: float,
              workers: int | None = None, groups: Sequence[Hashable] | None = None
              ) -> list[Outcome]:
    """Normal form and tree of every text, computed in parallel worker processes; a text
    still running after `timeout` seconds is an Outcome("timeout") and its worker is killed.
    groups: texts with the same group key go to the same worker one after another (see
    run_tasks)."""
    res = run_tasks([{"method": method, "text": t} for t in texts], timeout, workers, groups)
    return [Outcome(r["status"], r.get("form"), as_tree(r.get("tree")), r.get("message", ""),
                    r["seconds"]) for r in res]


class _Queue:
    """Task indices in groups, in order: a worker keeps to its group (SymPy's cache in that
    process holds the work on the group's other members: a formula and its perturbations
    share most subterms), takes the next unstarted group when its own is done, and at the end
    helps the group with the most tasks left."""

    def __init__(self, n: int, groups: Sequence[Hashable] | None) -> None:
        self.left: dict[Hashable, deque[int]] = {}
        for i, g in enumerate(range(n) if groups is None else groups):
            self.left.setdefault(("g", g), deque()).append(i)
        self.fresh = deque(self.left)

    def take(self, group: Hashable) -> tuple[int, Hashable] | None:
        if group is not None and self.left.get(group):
            return self.left[group].popleft(), group
        while self.fresh:
            g = self.fresh.popleft()
            if self.left[g]:
                return self.left[g].popleft(), g
        g = max(self.left, key=lambda k: len(self.left[k]), default=None)
        if g is None or not self.left[g]:
            return None
        return self.left[g].popleft(), g


def run_tasks(tasks: Sequence[dict], timeout: float, workers: int | None = None,
              groups: Sequence[Hashable] | None = None) -> list[dict]:
    """Run every task (a JSON request: "method" and its fields) in parallel worker processes;
    each answer is a dict with "status" ("ok", "timeout", "error"), "seconds" and the task's
    result fields.  A task still running after `timeout` seconds is killed with its worker.
    groups: one key per task; a worker runs a group's tasks one after another, in order
    (default: every task its own group, started in order)."""
    texts = tasks
    out: list[dict | None] = [None] * len(texts)
    if not texts:
        return []
    if groups is not None and len(groups) != len(texts):
        raise ValueError("run_tasks: one group key per task")
    k = max(1, min(len(texts), workers or n_workers()))
    pool = _take(k)
    queue = _Queue(len(texts), groups)
    sel = selectors.DefaultSelector()
    try:
        def assign(w: _Worker) -> bool:
            got = queue.take(w.group)
            if got is None:
                return False
            i, w.group = got
            now = time.monotonic()
            w.task = (i, now, now + timeout)
            try:
                w.send(texts[i])
            except OSError:
                out[i] = {"status": "error", "message": "worker process died", "seconds": 0.0}
                w.task = None
                return False
            return True

        live: list[_Worker] = []
        for w in pool:
            if assign(w):
                assert w.proc.stdout is not None
                sel.register(w.proc.stdout, selectors.EVENT_READ, w)
                live.append(w)
            else:
                with _LOCK:
                    _IDLE.append(w)
        while live:
            now = time.monotonic()
            wait = max(0.0, min(w.task[2] for w in live if w.task) - now)
            for key, _ in sel.select(timeout=wait + 0.01):
                w = key.data
                chunk = os.read(key.fd, 1 << 20)
                if not chunk:       # the worker died (e.g. out of memory): replace it
                    i = w.task[0]
                    out[i] = {"status": "error", "message": "worker process died",
                              "seconds": time.monotonic() - w.task[1]}
                    _retire(sel, live, w, replace=True, assign=assign)
                    continue
                w.buf += chunk
                while b"\n" in w.buf and w.task is not None:
                    line, w.buf = w.buf.split(b"\n", 1)
                    i, t0, _ = w.task
                    r = json.loads(line)
                    r["seconds"] = time.monotonic() - t0
                    out[i] = r
                    w.task = None
                    if not assign(w):
                        _retire(sel, live, w, replace=False, assign=assign)
            now = time.monotonic()
            for w in list(live):
                if w.task is not None and now >= w.task[2]:
                    i, t0, _ = w.task
                    out[i] = {"status": "timeout", "message": f"no result within {timeout:g} s",
                              "seconds": now - t0}
                    _retire(sel, live, w, replace=True, assign=assign)
    finally:
        for key in list(sel.get_map().values()):
            w = key.data
            sel.unregister(key.fileobj)
            w.kill()        # interrupted mid-task (e.g. KeyboardInterrupt): never reuse
        sel.close()
    return [o if o is not None else {"status": "error", "message": "not run", "seconds": 0.0}
            for o in out]


def _retire(sel: selectors.BaseSelector, live: list[_Worker], w: _Worker, *, replace: bool,
            assign) -> None:
    sel.unregister(w.proc.stdout)
    live.remove(w)
    if not replace:
        w.task = None
        w.group = None
        with _LOCK:
            _IDLE.append(w)
        return
    w.kill()
    fresh = _Worker()
    fresh.group = w.group               # carries on with the group of the one it replaces
    if assign(fresh):
        sel.register(fresh.proc.stdout, selectors.EVENT_READ, fresh)
        live.append(fresh)
    else:
        with _LOCK:
            _IDLE.append(fresh)


def as_tree(t) -> tuple | None:
    if t is None:
        return None
    # JSON lists back to the nested tuples of symcore.metrics.trees (iteratively: deep trees)
    memo: dict[int, tuple] = {}
    stack = [(t, False)]
    while stack:
        node, ready = stack.pop()
        if not ready:
            stack.append((node, True))
            stack.extend((c, False) for c in node[1])
            continue
        memo[id(node)] = (node[0], tuple(memo[id(c)] for c in node[1]))
    return memo[id(t)]


def _serve() -> None:
    """Worker loop: one JSON request per line in, one JSON answer per line out."""
    try:    # Linux: die with the parent, so a hung SymPy call never outlives the caller
        import ctypes
        import signal
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)   # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # pragma: no cover - not Linux
        pass
    from symcore.metrics.srbench import sympy_check
    from symcore.metrics.trees import srsd_expr, sympify_expr, sympy_tree
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    sys.stdout = sys.stderr         # nothing SymPy prints may corrupt the protocol
    forms = {"srsd": srsd_expr, "sympify": sympify_expr}
    for line in sys.stdin:
        req = json.loads(line)
        try:
            if req["method"] == "srbench":
                ans = json.dumps({"status": "ok", **sympy_check(req["pred"], req["true"])})
            else:
                # the tree of the object itself: its text re-reads to the same object
                e = forms[req["method"]](req["text"])
                ans = json.dumps({"status": "ok", "form": str(e), "tree": sympy_tree(e)})
        except RecursionError:
            ans = json.dumps({"status": "error", "message": "expression too deep for SymPy"})
        except Exception as err:   # SymPy raises anything on odd input; the reference scores it
            ans = json.dumps({"status": "error", "message": f"{type(err).__name__}: {err}"[:300]})
        proto.write(ans + "\n")


if __name__ == "__main__":
    _serve()
