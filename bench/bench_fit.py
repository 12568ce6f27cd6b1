"""Constant fitting of a seeded population: symcore.fit (compiled reverse-mode kernels + LM) against
scipy.optimize.least_squares over a lambdified NumPy residual and Jacobian (how frontends do it),
from the same starts.  End to end: the peer's time includes sympy differentiation and lambdify,
symcore's includes lifting and compiling.

    python bench/bench_fit.py [--size 200] [--rows 1000 10000] [--seed 0]
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import numpy as np

import symcore
from symcore.codegen.llvm import cache
from symcore import OPS, call, const, evaluate, var
from symcore.ir import Expr, topo
from symcore.params import bind_params, lift_constants

UNARY = ("exp", "log", "sin", "cos", "sqrt", "square")
BINARY = ("add", "sub", "mul", "div")


def random_candidate(rng: np.random.Generator, n_vars: int, depth: int) -> Expr:
    """A random SR-like candidate; every variable term carries a scale constant."""
    if depth == 0 or rng.random() < 0.25:
        if rng.random() < 0.35:
            return const(float(np.round(rng.uniform(-2, 2), 3)) or 0.5)
        return call("mul", const(float(np.round(rng.uniform(0.2, 2), 3))),
                    var(int(rng.integers(n_vars))))
    if rng.random() < 0.35:
        op = str(rng.choice(UNARY))
        arg = random_candidate(rng, n_vars, depth - 1)
        if op in ("log", "sqrt"):  # keep the domain: log(|.| + c), sqrt(|.| + c)
            arg = call("add", call("abs", arg), const(float(np.round(rng.uniform(0.5, 2), 3))))
        return call(op, arg)
    op = str(rng.choice(BINARY))
    a, b = random_candidate(rng, n_vars, depth - 1), random_candidate(rng, n_vars, depth - 1)
    if op == "div":
        b = call("add", call("square", b), const(1.0))
    return call(op, a, b)


def population(rng: np.random.Generator, size: int, n_vars: int) -> list[Expr]:
    out: list[Expr] = []
    while len(out) < size:
        e = random_candidate(rng, n_vars, int(rng.integers(2, 5)))
        m, p = lift_constants(e)
        if 1 <= m.n_params <= 8:
            out.append(e)
    return out


def to_sympy(e: Expr, syms: list, psyms: list):
    memo = {}
    for n in topo([e]):
        if n.op == "var":
            memo[n] = syms[n.value]
        elif n.op == "param":
            memo[n] = psyms[n.value]
        elif n.op == "const":
            import sympy
            memo[n] = sympy.Float(n.value)
        else:
            memo[n] = OPS[n.op].sympy(*(memo[a] for a in n.args))
    return memo[e]


def scipy_fit(model: Expr, p0: np.ndarray, X: np.ndarray, y: np.ndarray) -> tuple[float, bool]:
    """The peer's fit from p0: (final MSE of the candidate itself, by symcore's reference
    evaluator at the peer's parameters; whether sympy's own function disagreed there).

    SymPy rewrites some candidates while building them (``sqrt(u)**2`` becomes ``u``, ``log(exp(
    u))`` becomes ``u`` for real u, ...), so the peer fits a function that is defined where the
    candidate is not and can end at parameters where the candidate is NaN.  Its result is scored
    as the candidate it was asked to fit, like symcore's."""
    import sympy
    from scipy.optimize import least_squares
    syms = sympy.symbols(f"x0:{X.shape[1]}", real=True)
    psyms = sympy.symbols(f"p0:{model.n_params}", real=True)
    f = to_sympy(model, list(syms), list(psyms))
    f_np = sympy.lambdify([psyms, syms], f, "numpy")
    J_np = sympy.lambdify([psyms, syms], [sympy.diff(f, q) for q in psyms], "numpy")
    cols = [X[:, i] for i in range(X.shape[1])]
    n = X.shape[0]

    def res(p):
        return np.broadcast_to(f_np(p, cols), (n,)) - y

    def jac(p):
        return np.column_stack([np.broadcast_to(c, (n,)) for c in J_np(p, cols)])

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        try:
            r = least_squares(res, p0, jac=jac, method="lm")
        except Exception:
            return math.inf, False
        own = float(np.mean((np.broadcast_to(f_np(r.x, cols), (n,)) - y) ** 2))
        true = float(np.mean((evaluate(bind_params(model, r.x), X) - y) ** 2))
    true = true if math.isfinite(true) else math.inf
    return true, not (true == own or abs(true - own) <= 1e-9 * abs(own))


def compare(sc: np.ndarray, sp: np.ndarray) -> tuple[int, int, int, float]:
    """(better, same, worse) counts at a relative tolerance of 1e-6, and the geometric mean of
    symcore's loss over the peer's (finite pairs)."""
    tol = 1e-6
    worse = int(np.sum(sc > sp * (1 + tol) + 1e-15))
    better = int(np.sum(sc < sp * (1 - tol) - 1e-15))
    ok = np.isfinite(sc) & np.isfinite(sp) & (sc > 0) & (sp > 0)
    gm = float(np.exp(np.mean(np.log(sc[ok] / sp[ok])))) if ok.any() else math.nan
    return better, len(sc) - better - worse, worse, gm


def main() -> None:
    os.environ["SYMCORE_CACHE"] = ""  # no disk cache: nothing carried over between runs
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--rows", type=int, nargs="+", default=[1000, 10000])
    ap.add_argument("--restarts", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    pop = population(rng, args.size, 3)
    target = call("add", call("mul", const(1.7), call("exp", call("mul", const(-0.4), var(0)))),
                  call("mul", const(0.8), call("sin", call("mul", const(1.3), var(1)))))
    # the tier-0 interpreter is compiled once per machine (cached on disk in normal use):
    # build it before timing, like the peer's imports
    symcore.fit(call("mul", const(1.0), var(0)), np.ones((4, 1)), np.ones(4))
    print(f"population: {len(pop)} candidates, mean size {np.mean([e.size for e in pop]):.1f}, "
          f"mean params {np.mean([lift_constants(e)[0].n_params for e in pop]):.2f}; "
          f"peer: scipy.optimize.least_squares(method='lm') on sympy.lambdify residual + "
          f"Jacobian (sympy.diff), same starts (the candidates' own constants)")
    print(f"{'rows':>6} {'config':<16} {'wall s':>7} {'cpu s':>7} {'peer wall':>9} {'peer cpu':>9}"
          f" {'x wall':>7} {'x cpu':>6} {'better':>6} {'same':>5} {'worse':>5} {'same|better':>11}"
          f" {'gmean loss ratio':>16}")
    for rows in args.rows:
        X = rng.uniform(0.5, 2.0, (rows, 3))
        y = evaluate(target, X) + rng.normal(0, 0.05, rows)
        t0, c0 = time.perf_counter(), time.process_time()
        peer = [scipy_fit(*lift_constants(e), X, y) for e in pop]
        t_sp, c_sp = time.perf_counter() - t0, time.process_time() - c0
        sp = np.array([loss for loss, _ in peer])
        print(f"{rows:>6} rows: the peer's SymPy function differed from the candidate at its "
              f"final parameters for {sum(d for _, d in peer)} of {len(pop)} candidates "
              f"({int(np.sum(~np.isfinite(sp)))} of them NaN there)")
        for restarts in args.restarts:
            cache.object_cache().clear_memory()
            t0, c0 = time.perf_counter(), time.process_time()
            res = symcore.fit(pop, X, y, restarts=restarts, seed=args.seed)
            t_sc, c_sc = time.perf_counter() - t0, time.process_time() - c0
            sc = np.array([r.loss for r in res])
            better, same, worse, gm = compare(sc, sp)
            print(f"{rows:>6} {'restarts=' + str(restarts):<16} {t_sc:>7.3f} {c_sc:>7.3f} "
                  f"{t_sp:>9.3f} {c_sp:>9.3f} {t_sp / t_sc:>6.1f}x {c_sp / c_sc:>5.1f}x "
                  f"{better:>6} {same:>5} {worse:>5} {(better + same) / len(sc):>11.1%} "
                  f"{gm:>16.4f}")
    grad_cost(pop, rng, args.rows)


def _cpu(fn, reps: int = 5) -> float:
    """Median CPU seconds of fn() (CPU time: threads of both sides counted alike)."""
    fn()
    out = []
    for _ in range(reps):
        c = time.process_time()
        fn()
        out.append(time.process_time() - c)
    return float(np.median(out))


def grad_cost(pop: list[Expr], rng: np.random.Generator, rows_list: list[int]) -> None:
    """What the reverse sweep costs over one evaluation.  Tier 1: the same fused kernel in three
    modes, called the same way (raw ctypes, one call per candidate): "value" (Σ w r²),
    "gradient" (+ Σ w r J: value and loss gradient in one pass) and "normal" (+ Σ w J Jᵀ, what
    Levenberg–Marquardt needs).  Tier 0: the codegen's tier-0 interpreter `predict` against
    grad.tier0.Tier0Grad's normal equations, both one population call."""
    from symcore.codegen.grad import data as grad_data, tier0 as grad_t0, tier1 as grad_t1
    models = [lift_constants(e)[0] for e in pop]
    starts = [lift_constants(e)[1] for e in pop]
    Pm = max(m.n_params for m in models)
    params = np.zeros((len(models), Pm))
    for i, p in enumerate(starts):
        params[i, :len(p)] = p
    kernels = {mode: grad_t1.compile_loss_kernels(models, mode) for mode in grad_t1.NORMAL_MODES}
    k0v = symcore.compile(models, tier=0)
    g0 = grad_t0.Tier0Grad(models)
    print("\nreverse-mode cost over one evaluation (CPU s for the whole population, median of 5):")
    print(f"{'rows':>6} {'t1 value':>9} {'t1 value+grad':>13} {'ratio':>6} {'t1 normal eq':>12} "
          f"{'ratio':>6} {'t0 predict':>10} {'t0 normal eq':>12} {'ratio':>6}")
    for rows in rows_list:
        X = rng.uniform(0.5, 2.0, (rows, 3))
        y = np.sin(X[:, 0])
        t = {}
        for mode, (lib, fns, lanes) in kernels.items():
            d = grad_data.prepare_data(X, y, None, lanes)
            outs = [np.empty((1 + m.n_params + m.n_params * (m.n_params + 1) // 2, lanes))
                    for m in models]
            args = [(*d.pointers, d.n_pad, d.n_pad, starts[i].ctypes.data, outs[i].ctypes.data)
                    for i in range(len(models))]

            def run(fns: list = fns, args: list = args) -> None:
                for f, a in zip(fns, args):
                    f(*a)
            t[mode] = _cpu(run)
        d0 = grad_data.prepare_data(X, y, None, g0.lanes)
        ids = np.arange(len(models))
        t0v = _cpu(lambda: k0v.predict(X, params))
        t0n = _cpu(lambda: g0.normal_batch(ids, params, d0))
        print(f"{rows:>6} {t['value']:>9.4f} {t['gradient']:>13.4f} "
              f"{t['gradient'] / t['value']:>5.2f}x {t['normal']:>12.4f} "
              f"{t['normal'] / t['value']:>5.2f}x {t0v:>10.4f} {t0n:>12.4f} {t0n / t0v:>5.2f}x")
    for lib, _, _ in kernels.values():
        lib.close()


if __name__ == "__main__":
    main()
