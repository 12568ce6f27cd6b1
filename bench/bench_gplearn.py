"""gplearn alone vs the symcore drop-in (symcore.integrations.gplearn) on a real run: Feynman
I.18.14 (L = m r v sin(theta), variables on [1, 5]), population 2,000, 10 generations,
n_jobs=1, at 1,000 and 10,000 rows; interleaved repeats; checks the results are identical.

Fitness stage: gplearn's own `_Program.raw_fitness` time vs the drop-in's time in its
per-generation scoring (packing + the Session call + gplearn re-scoring of non-finite ones).
Run: python bench/bench_gplearn.py [--rows 1000,10000] [--repeats 3] [--threads 1,0] [--quick]
--threads: the drop-in is run once per entry with SYMCORE_THREADS set to it (0: the default,
the usable CPUs); gplearn always uses one core (n_jobs=1).  The session's stage seconds
(compile = packing, score = interpreter) are summed over its threads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np

from gplearn import _program as _gp
from gplearn.genetic import SymbolicRegressor as Plain

from symcore.codegen.pool import n_threads
from symcore.integrations import gplearn as _sg


def problem(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.uniform(1.0, 5.0, (n, 4))
    return X, X[:, 0] * X[:, 1] * X[:, 2] * np.sin(X[:, 3])


class _Timer:
    """Wall time spent inside one method (patched for the duration of a run)."""

    def __init__(self, owner: object, name: str) -> None:
        self.owner, self.name, self.seconds = owner, name, 0.0
        self.orig = getattr(owner, name)

    def __enter__(self) -> "_Timer":
        orig = self.orig

        def timed(*a: object, **k: object) -> object:
            t = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                self.seconds += time.perf_counter() - t
        setattr(self.owner, self.name, timed)
        return self

    def __exit__(self, *exc: object) -> None:
        setattr(self.owner, self.name, self.orig)


def run(kind: str, X: np.ndarray, y: np.ndarray, pop: int, gens: int) -> tuple[float, float, object]:
    cls = Plain if kind == "gplearn" else _sg.SymbolicRegressor
    est = cls(population_size=pop, generations=gens, random_state=0, n_jobs=1, metric="mse",
              stopping_criteria=0.0)
    if kind == "gplearn":
        timer = _Timer(_gp._Program, "raw_fitness")
    else:
        timer = _Timer(_sg._SymcoreMixin, "_symcore_score")
    with timer:
        t = time.perf_counter()
        est.fit(X, y)
        total = time.perf_counter() - t
    return total, timer.seconds, est


def identical(a: object, b: object) -> bool:
    ra, rb = a.run_details_, b.run_details_
    return (str(a._program) == str(b._program)
            and ra["best_length"] == rb["best_length"]
            and np.allclose(ra["best_fitness"], rb["best_fitness"], rtol=1e-9, atol=0)
            and np.allclose(ra["average_fitness"], rb["average_fitness"], rtol=1e-9, atol=0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="1000,10000")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", default="1,0",
                    help="SYMCORE_THREADS values for the drop-in, comma-separated (0: default)")
    ap.add_argument("--quick", action="store_true", help="population 300, 4 generations, 1 repeat")
    args = ap.parse_args()
    pop, gens, reps = (300, 4, 1) if args.quick else (2000, 10, args.repeats)
    env0 = os.environ.get("SYMCORE_THREADS")
    settings = [int(t) for t in args.threads.split(",")]

    def threads_for(t: int) -> int:
        if t:
            os.environ["SYMCORE_THREADS"] = str(t)
        elif env0 is None:
            os.environ.pop("SYMCORE_THREADS", None)
        else:
            os.environ["SYMCORE_THREADS"] = env0
        return n_threads()
    used = {t: threads_for(t) for t in settings}
    print(f"# Feynman I.18.14, population {pop}, {gens} generations, gplearn n_jobs=1 (one "
          f"core); drop-in with symcore threads " + ", ".join(
              f"{used[t]}{' (default)' if not t else ''}" for t in settings))
    X0, y0 = problem(200)
    run("symcore", X0, y0, 50, 2)            # the interpreter loaded once, outside the timings
    print(f"{'rows':>6} {'threads':>7} {'gplearn s':>10} {'drop-in s':>10} {'total x':>8} "
          f"{'gp fit s':>9} {'sc fit s':>9} {'fitness x':>9} {'gp fit %':>8} identical")
    for n in (int(r) for r in args.rows.split(",")):
        X, y = problem(n)
        kinds = ["gplearn", *(f"symcore/{t}" for t in settings)]
        res: dict[str, list[tuple[float, float]]] = {k: [] for k in kinds}
        same = {k: True for k in kinds[1:]}
        stats = {}
        for _ in range(reps):   # interleaved: the machine's load drifts
            ests = {}
            for kind in kinds:
                if kind != "gplearn":
                    threads_for(int(kind.split("/")[1]))
                total, fit, est = run(kind.split("/")[0], X, y, pop, gens)
                res[kind].append((total, fit))
                ests[kind] = est
            for kind in kinds[1:]:
                same[kind] &= identical(ests["gplearn"], ests[kind])
                stats[kind] = ests[kind].symcore_stats_
        threads_for(0)
        g_tot = statistics.median(t for t, _ in res["gplearn"])
        g_fit = statistics.median(f for _, f in res["gplearn"])
        for kind in kinds[1:]:
            s_tot = statistics.median(t for t, _ in res[kind])
            s_fit = statistics.median(f for _, f in res[kind])
            t = int(kind.split("/")[1])
            print(f"{n:>6} {used[t]:>7} {g_tot:>10.2f} {s_tot:>10.2f} {g_tot / s_tot:>8.2f} "
                  f"{g_fit:>9.2f} {s_fit:>9.3f} {g_fit / s_fit:>9.1f} "
                  f"{100 * g_fit / g_tot:>7.0f}% {same[kind]}")
            st = stats[kind]
            print(f"       drop-in session ({used[t]} thread(s)): {st.candidates} candidates, "
                  f"hit rate {st.hit_rate:.1%}, "
                  + ", ".join(f"{k} {v:.3f}s" for k, v in st.seconds.items()))


if __name__ == "__main__":
    main()
