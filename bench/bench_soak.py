"""Soak: compile and score fresh populations for a given time; prints RSS, time per iteration
and disk-cache size per minute (issue target over 10 min: RSS growth after the first minute
<= 20 MB, last minute's time per iteration <= 1.2x the second's, disk cache <= its cap), with
the loaded libraries, live LLJIT instances and the in-memory object cache (bounded by design).

Load control (the machine may be shared): after every iteration a fixed probe (LLVM compiling
one fixed module, NumPy evaluating fixed expressions; no cache involved) is timed, and each
minute prints its mean and the ratio ms/iter / probe ms, which load drift moves far less than
ms/iter.  At the end the soak goes on for `--control-seconds` with a fresh, empty cache
directory: the same work at about the same load, without the entries the soak accumulated.
`prunes`/`prune s`: how often and how long the object cache pruned itself that minute.
Run: python bench/bench_soak.py [--minutes 10] [--population 200] [--rows 1000] [--cap-mb MB]"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _disk_mb(d) -> float:
    if d is None or not os.path.isdir(d):
        return 0.0
    total = 0
    with os.scandir(d) as it:
        for e in it:
            try:
                total += e.stat(follow_symlinks=False).st_blocks * 512
            except FileNotFoundError:    # unlinked meanwhile (the cache's background deletions)
                pass
    return total / 2**20


class _Probe:
    """A fixed piece of work like one iteration's (LLVM compiling a module on two threads, as
    tier 1 does with a population, and NumPy evaluating expressions) that never touches the
    cache: its time tracks the machine's load only.  No IR optimisation: llvmlite's new pass
    manager keeps ~60 KB per optimised module (measured), which would show as RSS growth."""

    def __init__(self, rng: np.random.Generator, X: np.ndarray) -> None:
        from symcore import call, export
        self.X = X
        self.pop = _population(rng, 40)
        e = self.pop[0]
        for q in self.pop[1:12]:
            e = call("add", e, q)
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "probe.ll")
            export(e, path)
            with open(path) as f:
                self.text = f.read()
        self.threads = ThreadPoolExecutor(2)
        self.seconds = 0.0
        self.runs = 0

    def run(self) -> None:
        from symcore.codegen.llvm import jit

        from symcore import evaluate
        t0 = time.perf_counter()
        list(self.threads.map(lambda _: jit.compile_object(self.text, 0, 1), range(2)))
        for q in self.pop:
            evaluate(q, self.X)
        self.seconds += time.perf_counter() - t0
        self.runs += 1

    def take_ms(self) -> float:
        ms = self.seconds * 1e3 / max(self.runs, 1)
        self.seconds, self.runs = 0.0, 0
        return ms


def _population(rng: np.random.Generator, n: int) -> list:
    from symcore import call, const, var
    un = ["sin", "cos", "exp", "log_abs", "sqrt_abs", "tanh", "neg", "square"]
    bi = ["add", "sub", "mul", "div"]

    def grow(d: int):
        if d == 0 or rng.random() < 0.25:
            return var(int(rng.integers(3))) if rng.random() < 0.7 else const(float(rng.normal()))
        if rng.random() < 0.35:
            return call(un[int(rng.integers(len(un)))], grow(d - 1))
        return call(bi[int(rng.integers(len(bi)))], grow(d - 1), grow(d - 1))
    return [grow(5) for _ in range(n)]


class _Prunes(logging.Handler):
    """Seconds the object cache spent pruning (its debug records), per minute."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.seconds = 0.0
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.msg.startswith("symcore: pruned") and record.args:
            self.seconds += float(record.args[-1])
            self.count += 1

    def take(self) -> tuple[int, float]:
        out = self.count, self.seconds
        self.count, self.seconds = 0, 0.0
        return out


def _iteration(rng: np.random.Generator, n: int, X: np.ndarray, y: np.ndarray) -> float:
    import symcore
    t0 = time.perf_counter()
    pop = _population(rng, n)
    for tier in (0, 1):
        k = symcore.compile(pop, tier=tier)
        k.score(X, y)
        k.close()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--cache", default=None, help="SYMCORE_CACHE (default: a fresh temp dir)")
    ap.add_argument("--cap-mb", type=float, default=None,
                    help="SYMCORE_CACHE_MAX_MB (default: as set, else 512)")
    ap.add_argument("--control-seconds", type=float, default=60.0,
                    help="then run this long with a fresh empty cache (0: no control)")
    args = ap.parse_args()
    made: list[str] = []     # temporary cache directories to remove at the end
    if "SYMCORE_CACHE" not in os.environ:
        os.environ["SYMCORE_CACHE"] = args.cache or tempfile.mkdtemp(prefix="soak-")
        if args.cache is None:
            made.append(os.environ["SYMCORE_CACHE"])
    try:
        _soak(args, made)
    finally:
        for m in made:
            shutil.rmtree(m, ignore_errors=True)


def _soak(args: argparse.Namespace, made: list[str]) -> None:
    if args.cap_mb is not None:
        os.environ["SYMCORE_CACHE_MAX_MB"] = str(args.cap_mb)
    from symcore.codegen.llvm import cache, jit
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 3))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    probe = _Probe(np.random.default_rng(1), X)
    prunes = _Prunes()
    logging.getLogger("symcore.cache").addHandler(prunes)
    logging.getLogger("symcore.cache").setLevel(logging.DEBUG)
    d = cache.cache_dir()
    print(f"cache {d}, cap {cache.disk_limit() / 2**20:.0f} MB, population {args.population}, "
          f"rows {args.rows}")
    print(f"{'minute':>6} {'iters':>6} {'ms/iter':>8} {'probe ms':>8} {'ratio':>6} "
          f"{'RSS MB':>8} {'disk MB':>8} {'files':>7} {'prunes':>6} {'prune s':>7} {'libs':>5} "
          f"{'jits':>5} {'mem MB':>7}")
    rows = []
    t_start = time.perf_counter()
    minute, iters, busy = 1, 0, 0.0
    while True:
        busy += _iteration(rng, args.population, X, y)
        iters += 1
        probe.run()
        now = time.perf_counter()
        if now - t_start >= minute * 60 or now - t_start >= args.minutes * 60:
            ms, pms = busy * 1e3 / iters, probe.take_ms()
            files = len(os.listdir(d)) if d is not None and os.path.isdir(d) else 0
            rows.append((minute, iters, ms, _rss_mb(), _disk_mb(d), pms))
            n_pruned, s_pruned = prunes.take()
            print(f"{minute:>6} {iters:>6} {ms:>8.1f} {pms:>8.1f} {ms / pms:>6.2f} "
                  f"{rows[-1][3]:>8.1f} {rows[-1][4]:>8.2f} {files:>7} {n_pruned:>6} "
                  f"{s_pruned:>7.2f} {jit.open_libraries():>5} {jit.live_jits():>5} "
                  f"{cache.object_cache().memory_bytes / 2**20:>7.1f}", flush=True)
            minute, iters, busy = minute + 1, 0, 0.0
            if now - t_start >= args.minutes * 60:
                break
    if len(rows) >= 3:
        r2, rl = rows[1], rows[-1]
        print(f"RSS growth after minute 1: {rl[3] - rows[0][3]:+.1f} MB; "
              f"ms/iter last/second: {rl[2] / r2[2]:.2f}x (per probe ms: "
              f"{(rl[2] / rl[5]) / (r2[2] / r2[5]):.2f}x); disk "
              f"{max(r[4] for r in rows):.1f} MB at most (cap {cache.disk_limit() / 2**20:.0f} MB)")
    if args.control_seconds > 0 and rows:
        os.environ["SYMCORE_CACHE"] = control = tempfile.mkdtemp(prefix="soak-control-")
        made.append(control)
        for _ in range(3):   # the new directory's once-per-cache entries (drivers, helpers)
            _iteration(rng, args.population, X, y)
        probe.take_ms()
        busy, iters, t0 = 0.0, 0, time.perf_counter()
        while time.perf_counter() - t0 < args.control_seconds:
            busy += _iteration(rng, args.population, X, y)
            iters += 1
            probe.run()
        ms, pms = busy * 1e3 / iters, probe.take_ms()
        print(f"control (fresh empty cache, {iters} iters): {ms:.1f} ms/iter, probe {pms:.1f} ms, "
              f"ratio {ms / pms:.2f}; last minute / control: {rows[-1][2] / ms:.2f}x "
              f"(per probe ms: {(rows[-1][2] / rows[-1][5]) / (ms / pms):.2f}x)")


if __name__ == "__main__":
    main()
