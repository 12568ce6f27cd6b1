"""Soak: compile and score fresh populations for a given time; prints RSS, time per iteration
and disk-cache size per minute (issue target over 10 min: RSS growth after the first minute
<= 20 MB, last minute's time per iteration <= 1.2x the second's, disk cache <= its cap), with
the loaded libraries, live LLJIT instances and the in-memory object cache (bounded by design).
Run: python bench/bench_soak.py [--minutes 10] [--population 200] [--rows 1000]"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def _disk_mb(d) -> float:
    if d is None or not d.exists():
        return 0.0
    return sum(f.stat().st_blocks * 512 for f in d.iterdir()) / 2**20


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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--population", type=int, default=200)
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--cache", default=None, help="SYMCORE_CACHE (default: a fresh temp dir)")
    args = ap.parse_args()
    os.environ.setdefault("SYMCORE_CACHE", args.cache or tempfile.mkdtemp(prefix="soak-"))
    import symcore
    from symcore.codegen.llvm import cache
    rng = np.random.default_rng(0)
    X = rng.normal(size=(args.rows, 3))
    y = np.sin(X[:, 0]) + X[:, 1] * X[:, 2]
    d = cache.cache_dir()
    print(f"cache {d}, cap {cache.disk_limit() / 2**20:.0f} MB, population {args.population}, "
          f"rows {args.rows}")
    from symcore.codegen.llvm import jit
    print(f"{'minute':>6} {'iters':>6} {'ms/iter':>8} {'RSS MB':>8} {'disk MB':>8} {'libs':>5} "
          f"{'jits':>5} {'mem MB':>7}")
    t_start = time.perf_counter()
    minute, iters, t_min = 1, 0, t_start
    rows = []
    while True:
        pop = _population(rng, args.population)
        for tier in (0, 1):
            k = symcore.compile(pop, tier=tier)
            k.score(X, y)
            k.close()
        iters += 1
        now = time.perf_counter()
        if now - t_start >= minute * 60 or now - t_start >= args.minutes * 60:
            ms = (now - t_min) * 1e3 / max(iters, 1)
            rows.append((minute, iters, ms, _rss_mb(), _disk_mb(d)))
            print(f"{minute:>6} {iters:>6} {ms:>8.1f} {rows[-1][3]:>8.1f} {rows[-1][4]:>8.2f} "
                  f"{jit.open_libraries():>5} {jit.live_jits():>5} "
                  f"{cache.object_cache().memory_bytes / 2**20:>7.1f}", flush=True)
            minute, iters, t_min = minute + 1, 0, now
            if now - t_start >= args.minutes * 60:
                break
    if len(rows) >= 3:
        print(f"RSS growth after minute 1: {rows[-1][3] - rows[0][3]:+.1f} MB; "
              f"ms/iter last/second: {rows[-1][2] / rows[1][2]:.2f}x; disk "
              f"{max(r[4] for r in rows):.1f} MB at most (cap {cache.disk_limit() / 2**20:.0f} MB)")


if __name__ == "__main__":
    main()
