"""Dynamical systems: symcore.odeint vs SciPy solve_ivp over every dysts flow whose rhs traces,
a population of perturbed Lorenz systems vs a solve_ivp loop, and the "cycles" cost model's
effect on the evaluation time of the traced right-hand sides.

    python bench/bench_dynamics.py [--quick]

Fixed seeds; interleaved repeats, medians, ratios.  symcore times are warm (the rhs compiled
and cached; compile time is printed separately).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

import symcore
from symcore.codegen.export.system import rhs_function
from symcore.integrations.dysts import traced_flows


def lambdified(s: symcore.System):
    xs = sp.symbols(f"x0:{s.n}", real=True)
    t = sp.Symbol("t", real=True)
    names = {f"x{i}": i for i in range(s.n)}
    exprs = [symcore.to_sympy(e, names=[*names, "t"]) for e in s.exprs]
    subs = {sp.Symbol(f"p{i}", real=True): float(v) for i, v in enumerate(s.params)} \
        if s.params is not None else {}
    f = sp.lambdify((t, xs), [e.xreplace(subs) for e in exprs], "numpy")
    return lambda tt, y: np.asarray(f(tt, y), dtype=float)


def timed(fn, reps):
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    reps = 1 if args.quick else 3
    warnings.simplefilter("ignore")
    rep = traced_flows()
    names = sorted(rep.systems)
    if args.quick:
        names = names[:15]
    print(f"dysts flows: {len(rep.systems)} trace, {len(rep.skipped)} skipped")
    rtol, atol = 1e-8, 1e-10
    ratios, agree, fails = [], 0, []
    compile_s = 0.0
    for name in names:
        s, flow = rep.systems[name]
        ic = np.asarray(flow.ic, dtype=float).reshape(-1)
        period = float(getattr(flow, "period", 1.0) or 1.0)
        t = np.linspace(0.0, period, 50)
        f = lambdified(s)
        c0 = time.perf_counter()
        y, info = symcore.odeint(s, ic, t, rtol=rtol, atol=atol, full_output=True)
        compile_s += time.perf_counter() - c0
        ref = solve_ivp(f, (0, period), ic, method="DOP853", t_eval=t, rtol=1e-12, atol=1e-12)
        if ref.status != 0 or not info.ok:
            fails.append(f"{name} (scipy {ref.status}, symcore {info.names})")
            continue
        err = np.max(np.abs(y - ref.y.T)) / (1.0 + np.max(np.abs(ref.y)))
        ok = err < 1e-4
        agree += ok
        if not ok:
            fails.append(f"{name} (rel. err {err:.1e})")
        ts, tr = [], []
        for _ in range(reps):   # interleaved
            ts += timed(lambda: symcore.odeint(s, ic, t, rtol=rtol, atol=atol), 1)
            tr += timed(lambda: solve_ivp(f, (0, period), ic, method="RK45", t_eval=t,
                                          rtol=rtol, atol=atol), 1)
        ratios.append(statistics.median(tr) / statistics.median(ts))
    print(f"one period from the flow's ic, {len(names)} systems: {agree} agree with DOP853 "
          f"(rel. err < 1e-4); failures: {fails}")
    print(f"speed-up vs solve_ivp RK45 (rtol={rtol}, atol={atol}, lambdified rhs): median "
          f"{statistics.median(ratios):.0f}x, min {min(ratios):.0f}x, max {max(ratios):.0f}x; "
          f"first-call time incl. compile {compile_s:.2f} s total")

    # population of perturbed Lorenz systems
    P = 100 if args.quick else 1000
    lor = rep.systems["Lorenz"][0]
    ic = np.asarray(rep.systems["Lorenz"][1].ic, dtype=float)
    rng = np.random.default_rng(0)
    prm = lor.params * (1 + 0.05 * rng.standard_normal((P, lor.n_params)))
    t = np.linspace(0, 1.5, 50)
    symcore.odeint([lor] * P, ic, t, params=prm)
    f0 = lambdified(lor)
    sub = 20 if args.quick else 100
    pts, pti = [], []
    for _ in range(reps):
        pts += timed(lambda: symcore.odeint([lor] * P, ic, t, params=prm), 1)

        def loop():
            for k in range(sub):
                fk = rhs_function(lor, prm[k])     # same vector field, other parameters
                del fk
                p = prm[k]
                solve_ivp(lambda tt, y: np.array([p[2] * (y[1] - y[0]),
                                                  p[1] * y[0] - y[0] * y[2] - y[1],
                                                  y[0] * y[1] - p[0] * y[2]]),
                          (0, 1.5), ic, method="RK45", t_eval=t, rtol=rtol, atol=atol)
        pti += [x * P / sub for x in timed(loop, 1)]
    del f0
    print(f"population of {P} perturbed Lorenz systems: symcore {statistics.median(pts)*1e3:.1f}"
          f" ms, solve_ivp loop {statistics.median(pti):.2f} s (extrapolated from {sub}); "
          f"ratio {statistics.median(pti) / statistics.median(pts):.0f}x")

    # cycles cost model
    K = 20_000
    before_n, after_n, speed = 0, 0, []
    for name in names:
        s, _ = rep.systems[name]
        try:
            simp = [symcore.simplify(e, cost="cycles") for e in s.exprs]
        except symcore.SymcoreError:
            continue
        s2 = symcore.System(simp, params=s.params)
        before_n += s.size
        after_n += s2.size
        Y = np.random.default_rng(1).uniform(-2, 2, size=(s.n, K))
        fa, fb = rhs_function(s), rhs_function(s2)
        ta, tb = [], []
        for _ in range(max(reps, 3)):
            ta += timed(lambda: fa(0.5, Y), 1)
            tb += timed(lambda: fb(0.5, Y), 1)
        speed.append(statistics.median(ta) / statistics.median(tb))
    print(f"cycles cost model over {len(speed)} traced rhs: nodes {before_n} -> {after_n}; "
          f"evaluation time ratio before/after: mean {np.mean(speed):.3f}, median "
          f"{np.median(speed):.3f} (>1 = faster after)")


if __name__ == "__main__":
    main()
