"""SRSD's normalised tree edit distance (Matsubara et al., 2024) for one pair or a whole results
table: the same numbers as the benchmark's own evaluation, with normal forms cached per
expression (in memory, and for method="srsd" on disk: symcore.metrics.diskcache) and computed
in parallel worker processes under a per-expression timeout.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Literal, Sequence

from symcore.metrics.trees import (Method, MetricsError, Tree, count_nodes, symcore_form,
                                   tree_distance)
from symcore.metrics import diskcache
from symcore.metrics.workers import Outcome, as_tree, run_forms

__all__ = ["EditDistance", "tree_edit_distance", "tree_edit_distances", "normal_forms",
           "clear_cache", "as_text", "agreement"]

Status = Literal["ok", "timeout", "error", "true_timeout", "true_error"]
_METHODS = ("srsd", "symcore")
#: the reference's per-equation limit (seconds) for SymPy's simplification of a prediction
REFERENCE_TIMEOUT = 120.0
_CACHE_SIZE = 1 << 17


@dataclass(frozen=True)
class EditDistance:
    """One pair's edit distance and how it was reached.

    status: "ok"; "timeout" / "error" (the prediction's normal form took longer than the
    timeout or SymPy failed on it: scored as the reference scores it, 1.0 normalised or the
    true tree's size); "true_timeout" / "true_error" (no normal form of the ground truth:
    distance NaN)."""
    distance: float
    status: Status
    pred_form: str | None = None
    true_form: str | None = None
    true_nodes: int | None = None
    message: str = ""


_LOCK = threading.Lock()
_FORMS: "OrderedDict[tuple[str, str], tuple[Outcome, float]]" = OrderedDict()
_DISTS: "OrderedDict[tuple[Tree, Tree], float]" = OrderedDict()


def clear_cache(disk: bool = False) -> None:
    """Forget every cached normal form and distance in this process (disk=True: and the
    normal forms cached on disk, symcore.metrics.diskcache)."""
    with _LOCK:
        _FORMS.clear()
        _DISTS.clear()
    if disk:
        diskcache.clear()


def as_text(e: Any) -> str | None:
    """SymPy text of a prediction or truth: a string as is, a symcore Expr through the SymPy
    bridge, a SymPy object by str(); None / NaN (no prediction) is None."""
    if e is None or (isinstance(e, float) and math.isnan(e)):
        return None
    if isinstance(e, str):
        return e
    from symcore.ir import Expr
    if isinstance(e, Expr):
        from symcore.io.sympy_bridge import to_sympy
        return str(to_sympy(e))
    if type(e).__module__.startswith("sympy"):
        return str(e)
    raise MetricsError(f"an expression must be SymPy text, a symcore Expr or a SymPy object, "
                       f"got {type(e).__name__}")


def _cached(method: str, text: str, timeout: float) -> Outcome | None:
    hit = _FORMS.get((method, text))
    if hit is None:
        return None
    out, limit = hit
    if out.status == "timeout" and limit < timeout:
        return None     # a longer limit may finish this time
    _FORMS.move_to_end((method, text))
    return out


def _store(method: str, text: str, out: Outcome, timeout: float) -> None:
    _FORMS[(method, text)] = (out, timeout)
    while len(_FORMS) > _CACHE_SIZE:
        _FORMS.popitem(last=False)


def normal_forms(texts: Iterable[str], method: Method = "srsd", timeout: float = REFERENCE_TIMEOUT,
                 workers: int | None = None, related: dict[str, str] | None = None
                 ) -> list[Outcome]:
    """Normal form and tree of each text (cached; the missing ones computed in parallel).
    related: text -> the text it is a variant of (a prediction -> its ground truth): a group
    of related texts is computed in one worker process, the ground truth first, so SymPy's
    cache there serves the work they share."""
    _check(method, timeout)
    texts = list(texts)
    with _LOCK:
        have = {t: _cached(method, t, timeout) for t in set(texts)}
    todo = [t for t, o in have.items() if o is None]
    if method == "symcore":
        slow = []
        for t in todo:
            t0 = time.perf_counter()
            try:
                form, tree = symcore_form(t)
                have[t] = Outcome("ok", form, tree, seconds=time.perf_counter() - t0)
            except (RecursionError, Exception) as err:  # noqa: B014 - SymcoreError or SymPy's
                if isinstance(err, MemoryError):
                    raise
                slow.append(t)
        # text symcore does not read: SymPy's own reading of it, under the timeout
        for t, o in zip(slow, run_forms(slow, "sympify", timeout, workers)):
            have[t] = o
    else:
        run, groups = _grouped(_from_disk(method, todo, have), related or {})
        for t, o in zip(run, run_forms(run, method, timeout, workers, groups) if run else ()):
            have[t] = o
        diskcache.put_many(method, [(t, o.status, o.form, o.tree, o.message)
                                    for t in run for o in (have[t],) if o.status == "ok"])
    with _LOCK:
        for t in todo:
            _store(method, t, have[t], timeout)
    return [have[t] for t in texts]


def _grouped(run: list[str], related: dict[str, str]) -> tuple[list[str], list[str]]:
    """The texts ordered by group (the biggest group first: one started last would leave the
    other workers idle), each group's root first; and their group keys."""
    members: dict[str, list[str]] = {}
    for t in sorted(run, key=len, reverse=True):
        members.setdefault(related.get(t, t), []).append(t)
    order = sorted(members, key=lambda g: -sum(map(len, members[g])))
    out: list[str] = []
    keys: list[str] = []
    for g in order:
        ts = sorted(members[g], key=lambda t: t != g)       # stable: the root first
        out += ts
        keys += [g] * len(ts)
    return out, keys


def _from_disk(method: str, todo: list[str], have: dict) -> list[str]:
    """Fill `have` from the on-disk cache; the texts still to compute."""
    for t, (status, form, tree, msg) in diskcache.get_many(method, todo).items():
        have[t] = Outcome(status, form, as_tree(tree), msg)   # type: ignore[arg-type]
    return [t for t in todo if have.get(t) is None]


def _check(method: str, timeout: float) -> None:
    if method not in _METHODS:
        raise MetricsError(f"unknown method {method!r} (choose from {', '.join(_METHODS)})")
    if not (isinstance(timeout, (int, float)) and timeout > 0):
        raise MetricsError(f"timeout must be a positive number of seconds, got {timeout!r}")


def _distance(pt: Tree, tt: Tree) -> float:
    key = (pt, tt)
    with _LOCK:
        d = _DISTS.get(key)
    if d is None:
        d = tree_distance(pt, tt, normalize=False)
        with _LOCK:
            _DISTS[key] = d
            while len(_DISTS) > _CACHE_SIZE:
                _DISTS.popitem(last=False)
    return d


def tree_edit_distances(pairs: Iterable[tuple[Any, Any]], normalize: bool = True,
                        method: Method = "srsd", timeout: float = REFERENCE_TIMEOUT,
                        workers: int | None = None) -> list[EditDistance]:
    """Edit distance of every (pred, true) pair of a results table; the distinct expressions'
    normal forms are computed once each, in parallel (`workers` processes, default
    $SYMCORE_THREADS or the CPUs), each under `timeout` seconds; method="srsd" keeps them on
    disk too (a benchmark's ground truths are computed once per machine; SYMCORE_CACHE="" off)."""
    _check(method, timeout)
    pairs = [(as_text(p), as_text(t)) for p, t in pairs]
    for _, t in pairs:
        if t is None:
            raise MetricsError("a ground-truth expression is missing")
    texts = list(dict.fromkeys([t for _, t in pairs] + [p for p, _ in pairs if p is not None]))
    related: dict[str, str] = {}
    for p, t in pairs:
        related.setdefault(t, t)
        if p is not None:
            related.setdefault(p, t)
    forms = dict(zip(texts, normal_forms(texts, method, timeout, workers, related)))
    out = []
    for p, t in pairs:
        tf = forms[t]
        if tf.status != "ok":
            out.append(EditDistance(math.nan, "true_" + tf.status, None, None, None,
                                    tf.message))
            continue
        n = count_nodes(tf.tree)
        pf = forms[p] if p is not None else Outcome("error", message="no prediction")
        if pf.status != "ok":
            # the reference's score for a prediction it could not load in time
            out.append(EditDistance(1.0 if normalize else float(n), pf.status, None, tf.form, n,
                                    pf.message))
            continue
        d = _distance(pf.tree, tf.tree)
        out.append(EditDistance(min(d, n) / n if normalize else d, "ok", pf.form, tf.form, n))
    return out


def tree_edit_distance(pred: Any, true: Any, normalize: bool = True, method: Method = "srsd",
                       timeout: float = REFERENCE_TIMEOUT, *, detail: bool = False
                       ) -> "float | EditDistance":
    """SRSD's edit distance from `pred` to `true` (SymPy text, symcore Expr or SymPy object).

    method="srsd": the benchmark's pipeline (sympify, pi -> Float, evalf, factor, simplify,
    1.0 -> 1; trees labelled by operator, symbol or `Const`; Zhang-Shasha; normalised as
    min(d, |true|) / |true|), in a worker process killed after `timeout` seconds (then 1.0,
    as the reference scores it).  method="symcore": symcore's canonical form instead of
    sympy.simplify (much faster; agrees with "srsd" where both normal forms coincide).
    detail=True returns the EditDistance record (status, normal forms)."""
    r = tree_edit_distances([(pred, true)], normalize, method, timeout, workers=1)[0]
    return r if detail else r.distance


def agreement(a: Sequence[EditDistance], b: Sequence[EditDistance], tol: float = 1e-12) -> float:
    """Fraction of pairs whose distances agree (both NaN counts as agreement)."""
    if len(a) != len(b) or not a:
        raise MetricsError("agreement needs two non-empty lists of the same length")
    same = sum(1 for x, y in zip(a, b)
               if (math.isnan(x.distance) and math.isnan(y.distance))
               or abs(x.distance - y.distance) <= tol)
    return same / len(a)

