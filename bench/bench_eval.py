"""How fast does symcore score a population?  MSE of P = 1,000 seeded random candidates (~20
nodes over + - * / exp log sin cos sqrt x^k and constants, 5 features, float64) at N = 1e3 and
1e5, against sympy.lambdify+NumPy, numexpr, SymEngine Lambdify and pyoperon in the same run.

GPops/s = Σ candidate nodes × rows / CPU second (one thread unless said otherwise).
Run: python bench/bench_eval.py [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

SEED = 20261130
N_FEATURES = 5
UNARY = ("exp", "log", "sin", "cos", "sqrt")
BINARY = ("add", "sub", "mul", "div")


def _tree(rng: np.random.Generator, size: int, unary: tuple[str, ...] = UNARY) -> Any:
    from symcore import call, const, var
    if size <= 1:
        if rng.random() < 0.75:
            return var(int(rng.integers(N_FEATURES)))
        return const(float(np.round(rng.uniform(-2, 2), 3)))
    r = rng.random()
    if r < 0.25:
        return call(unary[int(rng.integers(len(unary)))], _tree(rng, size - 1, unary))
    if r < 0.33 and size >= 3:
        return call("powi", _tree(rng, size - 2, unary), const(float(rng.integers(2, 4))))
    left = int(rng.integers(1, size - 1)) if size > 2 else 1
    return call(BINARY[int(rng.integers(len(BINARY)))], _tree(rng, left, unary),
                _tree(rng, max(1, size - 1 - left), unary))


def _constant_operand(e: Any) -> bool:
    """A function, power or divisor applied to a variable-free subtree (SymPy would fold it,
    possibly to a complex number or zoo)."""
    from symcore.ir import topo
    for n in topo([e]):
        kids = n.args[:1] if n.op == "powi" else n.args[1:] if n.op == "div" else \
            n.args if len(n.args) == 1 else ()
        if any(not k.variables() for k in kids):
            return True
    return False


def population(P: int = 1000, nodes: int = 20, seed: int = SEED,
               unary: tuple[str, ...] = UNARY, sympy_check: bool = True) -> list[Any]:
    """P seeded random candidates of about `nodes` nodes each, every one a real function that
    every peer can express (with `sympy_check`, SymPy must not fold it to complex or zoo)."""
    import sympy

    import symcore
    rng = np.random.default_rng(seed)
    bad = (sympy.I, sympy.zoo, sympy.nan, sympy.oo, -sympy.oo)
    out: list[Any] = []
    while len(out) < P:
        e = _tree(rng, nodes, unary)
        if not e.variables() or _constant_operand(e):
            continue
        if sympy_check:
            s = symcore.to_sympy(e)
            if any(s.has(b) for b in bad):
                continue
        out.append(e)
    return out


def dataset(N: int, seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed + N)
    X = rng.uniform(0.5, 3.0, (N, N_FEATURES))
    y = X[:, 0] * np.sin(X[:, 1]) + np.sqrt(X[:, 2]) - 0.5 * X[:, 3] ** 2 / X[:, 4]
    return X, y


def cpu(fn: Callable[[], Any], repeats: int) -> tuple[float, float]:
    """(median CPU seconds, median wall seconds) of fn()."""
    c, w = [], []
    for _ in range(repeats):
        t0, t1 = time.process_time(), time.perf_counter()
        fn()
        c.append(time.process_time() - t0)
        w.append(time.perf_counter() - t1)
    return statistics.median(c), statistics.median(w)


def _mse(P: np.ndarray, y: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        m = np.mean((P - y) ** 2, axis=-1)
    return np.where(np.isfinite(m), m, np.inf)


# -- peers ---------------------------------------------------------------------------------------

def peer_sympy(pop, Xs):
    import sympy

    import symcore
    syms = sympy.symbols(f"x0:{N_FEATURES}")
    t0 = time.process_time()
    fns = [sympy.lambdify(syms, symcore.to_sympy(e), modules="numpy") for e in pop]
    prep = (time.process_time() - t0) / len(pop)

    def run(X, y):
        cols = [X[:, j] for j in range(N_FEATURES)]
        with np.errstate(all="ignore"):
            return [_mse(np.broadcast_to(f(*cols), y.shape), y) for f in fns]
    return prep, run


def peer_numexpr(pop, Xs):
    import numexpr as ne

    import symcore
    ne.set_num_threads(1)
    # SymPy's printer says Abs where numexpr says abs
    texts = [str(symcore.to_sympy(e)).replace("Abs(", "abs(") for e in pop]
    X0, _ = Xs[0]
    t0 = time.process_time()
    progs = []
    for s in texts:   # numexpr compiles on first use and caches by text
        ne.evaluate(s, local_dict={"E": np.e, **{f"x{j}": X0[:8, j] for j in range(N_FEATURES)}})
        progs.append(s)
    prep = (time.process_time() - t0) / len(pop)

    def run(X, y):
        d = {f"x{j}": np.ascontiguousarray(X[:, j]) for j in range(N_FEATURES)}
        d["E"] = np.e
        out = []
        with np.errstate(all="ignore"):
            for s in progs:
                out.append(_mse(np.broadcast_to(ne.evaluate(s, local_dict=d), y.shape), y))
        return out
    return prep, run


def peer_symengine(pop, Xs):
    import symengine as se

    import symcore
    syms = se.symbols(" ".join(f"x{j}" for j in range(N_FEATURES)))
    exprs = [se.sympify(symcore.to_sympy(e)) for e in pop]
    t0 = time.process_time()
    try:
        f = se.Lambdify(syms, exprs, backend="llvm", cse=True)
        backend = "llvm"
    except Exception:  # noqa: BLE001 - no LLVM backend in this build
        f = se.Lambdify(syms, exprs, cse=True)
        backend = "lambda"
    prep = (time.process_time() - t0) / len(pop)

    def run(X, y):
        with np.errstate(all="ignore"):
            out = np.asarray(f(X))            # (N, P)
            return _mse(out.T, y)
    return prep, run, backend


def peer_pyoperon(pop, Xs):
    import pyoperon as op

    import symcore
    texts = [symcore.write(e, "operon") for e in pop]
    cache: dict[int, Any] = {}

    def trees_for(ds):
        m = {v.Name: v.Hash for v in ds.Variables}
        return [op.InfixParser.Parse(t, m) for t in texts]

    X0, _ = Xs[0]
    ds0 = op.Dataset(np.asfortranarray(X0))
    t0 = time.process_time()
    trees_for(ds0)
    prep = (time.process_time() - t0) / len(pop)

    def run(X, y):
        key = id(X)
        if key not in cache:
            ds = op.Dataset(np.asfortranarray(X))
            cache[key] = (ds, trees_for(ds), np.zeros((len(pop), X.shape[0]), dtype=np.float32))
        ds, trees, res = cache[key]
        op.EvaluateTrees(trees, ds, op.Range(0, X.shape[0]), res, 1)
        return _mse(res.astype(np.float64), y)
    return prep, run


# -- main ----------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="smaller P and N, one repeat")
    ap.add_argument("--peer-subset", type=int, default=200,
                    help="candidates the slow Python peers (sympy, numexpr) evaluate")
    args = ap.parse_args()
    os.environ["SYMCORE_CACHE"] = tempfile.mkdtemp(prefix="symcore-bench-")  # cold caches
    import symcore
    from symcore.codegen.eval import kernels
    from symcore.codegen import pool

    P = 200 if args.quick else 1000
    sizes = (1000, 10000) if args.quick else (1000, 100000)
    reps = 1 if args.quick else 3
    pop = population(P)
    nodes = float(sum(e.size for e in pop))
    print(f"population: P={P}, mean nodes {nodes / P:.1f}, seed {SEED}; threads available "
          f"{pool.n_threads()}")
    Xs = [dataset(N) for N in sizes]
    rows: dict[str, dict[str, Any]] = {}

    def gpops(cands_nodes: float, N: int, sec: float) -> float:
        return cands_nodes * N / sec / 1e9

    # symcore tier 1: compile cost first (cold: empty process caches, empty disk cache)
    os.environ["SYMCORE_THREADS"] = "2"
    t0c, t0w = time.process_time(), time.perf_counter()
    k1 = symcore.compile(pop, tier=1)
    c1_cpu = (time.process_time() - t0c) / P
    c1_wall = (time.perf_counter() - t0w) / P
    batch_walls = []
    for b in range(5):   # fresh structures in batches of 100
        bp = population(100, seed=SEED + 1 + b)
        t = time.perf_counter()
        symcore.compile(bp, tier=1)
        batch_walls.append((time.perf_counter() - t) / 100)
    t = time.perf_counter()
    symcore.compile(pop, tier=1)
    warm = (time.perf_counter() - t) / P
    print(f"tier 1 compile: {c1_wall * 1e3:.2f} ms/candidate wall ({c1_cpu * 1e3:.2f} ms CPU) for "
          f"{P} at once; batches of 100: median {statistics.median(batch_walls) * 1e3:.2f} "
          f"ms/candidate wall; already loaded: {warm * 1e3:.3f} ms/candidate")
    rows["symcore tier 1"] = {"prep": c1_wall}

    have_t0 = kernels._tier0_module() is not None
    if have_t0:
        t = time.perf_counter()
        k0 = symcore.compile(pop, tier=0)
        rows["symcore tier 0"] = {"prep": (time.perf_counter() - t) / P}

    os.environ["SYMCORE_THREADS"] = "1"
    # predict = the full work (no early exit); on 100 candidates so the (P, N) output stays small
    sub = pop[:100]
    sub_nodes = float(sum(e.size for e in sub))
    subk = {"symcore tier 1": symcore.compile(sub, tier=1)}
    if have_t0:
        subk["symcore tier 0"] = symcore.compile(sub, tier=0)
    ours = [("symcore tier 1", k1)] + ([("symcore tier 0", k0)] if have_t0 else [])
    for N, (X, y) in zip(sizes, Xs):
        # interleaved repeats: other load on the machine drifts, and must not favour one tier
        times: dict[tuple[str, str], list[float]] = {}
        for name, k in ours:
            k.score(X, y)   # warm (tier-0 interpreter load, pool)
            subk[name].predict(X)
        for _ in range(max(reps, 5)):
            for name, k in ours:
                ks = subk[name]
                times.setdefault((name, "score"), []).append(cpu(lambda: k.score(X, y), 1)[0])
                times.setdefault((name, "pred"), []).append(cpu(lambda: ks.predict(X), 1)[0])
        for name, _ in ours:
            rows[name][N] = gpops(nodes, N, statistics.median(times[(name, "score")]))
            rows[name][f"pred{N}"] = gpops(sub_nodes, N, statistics.median(times[(name, "pred")]))
        inf_frac = float(np.mean(~np.isfinite(k1.score(X, y))))
        rows.setdefault("_inf", {})[N] = inf_frac

    def add_peer(name: str, make: Callable, subset: int | None = None) -> None:
        sub = pop if subset is None else pop[:subset]
        sub_nodes = float(sum(e.size for e in sub))
        try:
            made = make(sub, Xs)
        except Exception as err:  # noqa: BLE001 - a missing optional peer is reported, not fatal
            print(f"{name}: skipped ({type(err).__name__}: {err})")
            return
        prep, run = made[0], made[1]
        if len(made) > 2:
            name = f"{name} ({made[2]})"
        rows[name] = {"prep": prep}
        for N, (X, y) in zip(sizes, Xs):
            run(X, y)
            c, _ = cpu(lambda: run(X, y), 1 if N >= 100000 else reps)
            rows[name][N] = gpops(sub_nodes, N, c)

    add_peer("sympy.lambdify+NumPy", peer_sympy, args.peer_subset)
    add_peer("numexpr (1 thread)", peer_numexpr, args.peer_subset)
    add_peer("SymEngine Lambdify", peer_symengine)
    add_peer("pyoperon (float32)", peer_pyoperon)

    print()
    print(f"{'evaluator':34s} {'prep ms/cand':>12s} " +
          " ".join(f"{'N=' + format(N, '.0e'):>10s}" for N in sizes) +
          "   (MSE task, GPops/s per CPU s)")
    for name, r in rows.items():
        if name.startswith("_"):
            continue
        print(f"{name:34s} {r['prep'] * 1e3:12.3f} " +
              " ".join(f"{r.get(N, float('nan')):10.2f}" for N in sizes))
    print(f"{'(candidates with +inf loss)':34s} {'':12s} " +
          " ".join(f"{rows['_inf'][N]:10.2f}" for N in sizes))
    for name in ("symcore tier 0", "symcore tier 1"):
        if name in rows:
            print(f"{name + ' predict only':34s} {'':12s} " +
                  " ".join(f"{rows[name][f'pred{N}']:10.2f}" for N in sizes) +
                  "   (no early exit: full work)")

    print("\nratios (MSE task):")
    peers = [n for n in rows if not n.startswith(("symcore", "_"))]
    for ours in ("symcore tier 0", "symcore tier 1"):
        if ours not in rows:
            continue
        for p in peers:
            print(f"  {ours} / {p}: " + ", ".join(
                f"N={N:.0e}: {rows[ours][N] / rows[p][N]:.2f}x" for N in sizes))
    if "symcore tier 0" in rows:
        print("  tier 1 / tier 0: " + ", ".join(
            f"N={N:.0e}: {rows['symcore tier 1'][N] / rows['symcore tier 0'][N]:.2f}x "
            f"(predict {rows['symcore tier 1'][f'pred{N}'] / rows['symcore tier 0'][f'pred{N}']:.2f}"
            "x)"
            for N in sizes))

    # arithmetic only (+ - * / x^k sqrt): no libm calls, so fusing shows its full effect
    apop = population(P, seed=SEED + 7, unary=("sqrt",), sympy_check=False)
    anodes = float(sum(e.size for e in apop))
    ak = {"symcore tier 1": symcore.compile(apop, tier=1)}
    if have_t0:
        ak["symcore tier 0"] = symcore.compile(apop, tier=0)
    arows: dict[str, dict[int, float]] = {n: {} for n in ak}
    for N, (X, y) in zip(sizes, Xs):
        at: dict[str, list[float]] = {n: [] for n in ak}
        for name, k in ak.items():
            k.score(X, y)
        for _ in range(max(reps, 5)):
            for name, k in ak.items():
                at[name].append(cpu(lambda: k.score(X, y), 1)[0])
        for name in ak:
            arows[name][N] = gpops(anodes, N, statistics.median(at[name]))
    try:
        _, run = peer_pyoperon(apop, Xs)
        arows["pyoperon (float32)"] = {}
        for N, (X, y) in zip(sizes, Xs):
            run(X, y)
            arows["pyoperon (float32)"][N] = gpops(anodes, N, cpu(lambda: run(X, y), reps)[0])
    except Exception as err:  # noqa: BLE001
        print(f"pyoperon: skipped ({err})")
    print(f"\narithmetic-only population (+ - * / x^k sqrt, P={P}, mean nodes {anodes / P:.1f}), "
          f"MSE task, GPops/s per CPU s:")
    for name, r in arows.items():
        print(f"{name:34s} {'':12s} " + " ".join(f"{r[N]:10.2f}" for N in sizes))
    if have_t0:
        print("  tier 1 / tier 0: " + ", ".join(
            f"N={N:.0e}: {arows['symcore tier 1'][N] / arows['symcore tier 0'][N]:.2f}x"
            for N in sizes))

    # threads: wall time, the largest N
    N = sizes[-1]
    X, y = Xs[-1]
    print(f"\nthreads at N={N:.0e} (wall-time speedup of 2 threads over 1, predict = full work):")
    for name, k, ks in (("tier 1", k1, subk["symcore tier 1"]),) + (
            (("tier 0", k0, subk["symcore tier 0"]),) if have_t0 else ()):
        res: dict[tuple[str, str], list[float]] = {}
        for _ in range(max(reps, 5)):       # interleaved: other load drifts
            for th in ("1", "2"):
                os.environ["SYMCORE_THREADS"] = th
                res.setdefault((th, "s"), []).append(cpu(lambda: k.score(X, y), 1)[1])
                res.setdefault((th, "p"), []).append(cpu(lambda: ks.predict(X), 1)[1])
        m = {key: statistics.median(v) for key, v in res.items()}
        print(f"  {name}: score {m[('1', 's')] / m[('2', 's')]:.2f}x, predict "
              f"{m[('1', 'p')] / m[('2', 'p')]:.2f}x")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
