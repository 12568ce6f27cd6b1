"""Scale-out on Dask: score a population over a large Parquet dataset in memory (one process,
symcore's own threads) vs a LocalCluster of 1, 2 and all cores; and one fit round.

Data: `--rows` generated rows (AI Feynman-like f = x0 * exp(-x1) + sin(x2) + noise) written to
Parquet in `--partitions` files; population: `--pop` random candidates (seeded).  Prints time,
rows/s and the ratio to in memory (medians of `--repeats`, configurations interleaved), checks
how far the distributed scores are from the in-memory ones (summation order only).
Run: python bench/bench_dask.py [--rows 10000000] [--pop 1000] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time

import numpy as np

import symcore
from symcore import call, const, var


def population(n: int, seed: int = 5) -> list[symcore.Expr]:
    rng = random.Random(seed)
    un, bi = ("sin", "cos", "exp", "square", "neg"), ("add", "sub", "mul", "div")

    def tree(depth: int) -> symcore.Expr:
        if depth == 0 or rng.random() < 0.3:
            return var(rng.randrange(3)) if rng.random() < 0.7 else const(round(rng.uniform(-2, 2), 3))
        if rng.random() < 0.3:
            return call(rng.choice(un), tree(depth - 1))
        return call(rng.choice(bi), tree(depth - 1), tree(depth - 1))
    return [tree(4) for _ in range(n)]


def write_parquet(path: str, rows: int, parts: int) -> None:
    import pandas as pd
    rng = np.random.default_rng(0)
    os.makedirs(path, exist_ok=True)
    per = -(-rows // parts)
    for i in range(parts):
        n = min(per, rows - i * per)
        X = rng.uniform(-2, 2, size=(n, 3))
        y = X[:, 0] * np.exp(-X[:, 1]) + np.sin(X[:, 2]) + 0.01 * rng.normal(size=n)
        pd.DataFrame({"x0": X[:, 0], "x1": X[:, 1], "x2": X[:, 2], "y": y}).to_parquet(
            os.path.join(path, f"part-{i:04d}.parquet"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=float, default=1e7)
    ap.add_argument("--pop", type=int, default=1000)
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1e6 rows, 200 candidates, 1 repeat")
    args = ap.parse_args()
    if args.quick:
        args.rows, args.pop, args.repeats, args.partitions = 1e6, 200, 1, 8
    rows = int(args.rows)
    import dask.dataframe as dd
    from distributed import Client, LocalCluster, wait

    from symcore import dask as sd

    pop = population(args.pop)
    with tempfile.TemporaryDirectory(prefix="symcore-bench-dask-") as tmp:
        t = time.perf_counter()
        write_parquet(tmp, rows, args.partitions)
        print(f"data: {rows:,} rows in {args.partitions} Parquet files "
              f"({time.perf_counter() - t:.1f} s to write); population {len(pop)}")
        df = dd.read_parquet(tmp)
        pdf = df.compute()
        X = pdf[["x0", "x1", "x2"]].to_numpy()
        y = pdf["y"].to_numpy()
        kernel = symcore.compile(pop, tier=0)
        ref = kernel.score(X, y, "mse")
        cores = os.cpu_count() or 1
        configs = ["memory"] + [f"local:{n}" for n in sorted({1, 2, cores}) if n <= cores]
        clusters = {}
        for c in configs[1:]:
            n = int(c.split(":")[1])
            cl = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                              dashboard_address=":0", silence_logs=40)
            clusters[c] = (cl, Client(cl, set_as_default=False))
        # the data held by the workers (as a user scoring many generations would), so the
        # timings compare scoring, not Parquet decoding
        persisted = {}
        for c, (_, client) in clusters.items():
            with client.as_current():
                persisted[c] = client.persist(df)
                wait(persisted[c])
        times: dict[str, list[float]] = {c: [] for c in configs}
        worst: dict[str, float] = {}
        for rep in range(args.repeats):
            for c in configs:      # interleaved
                t = time.perf_counter()
                if c == "memory":
                    got = kernel.score(X, y, "mse")
                else:
                    client = clusters[c][1]
                    with client.as_current():
                        got = sd.score(pop, persisted[c], "y", metric="mse",
                                       columns=["x0", "x1", "x2"])
                times[c].append(time.perf_counter() - t)
                fin = np.isfinite(ref)
                assert np.array_equal(fin, np.isfinite(got))
                rel = np.abs(got[fin] - ref[fin]) / np.maximum(np.abs(ref[fin]), 1e-300)
                worst[c] = max(worst.get(c, 0.0), float(rel.max(initial=0.0)))
        base = statistics.median(times["memory"])
        print(f"\n{'config':<10} {'median s':>9} {'rows/s':>12} {'cand*rows/s':>13} {'vs memory':>10}")
        for c in configs:
            m = statistics.median(times[c])
            print(f"{c:<10} {m:9.3f} {rows / m:12.3e} {rows * len(pop) / m:13.3e} "
                  f"{base / m:9.2f}x   max rel. diff to memory {worst.get(c, 0.0):.1e}")
        # one LM round: per-partition normal equations of the whole population, summed
        fitpop = [symcore.read("p0 * x0 * exp(p1 * x1) + p2 * sin(x2)", dialect="symcore")] * 8
        big = clusters[configs[-1]][1] if len(configs) > 1 else None
        if big is not None:
            with big.as_current():
                t = time.perf_counter()
                res = sd.fit(fitpop, persisted[configs[-1]], "y", columns=["x0", "x1", "x2"],
                             max_iter=1)
                one = time.perf_counter() - t
                t = time.perf_counter()
                res = sd.fit(fitpop, persisted[configs[-1]], "y", columns=["x0", "x1", "x2"])
                full = time.perf_counter() - t
            print(f"\nfit ({configs[-1]}, {len(fitpop)} candidates): one round (start + 1 trial"
                  f" step) {one:.2f} s; to convergence {full:.2f} s, "
                  f"{res[0].iterations} steps, loss {res[0].loss:.3e}, params "
                  f"{np.round(res[0].params, 4).tolist()}")
        for cl, client in clusters.values():
            client.close()
            cl.close()


if __name__ == "__main__":
    main()
