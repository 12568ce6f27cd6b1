"""Dynamical systems: symcore.odeint vs SciPy solve_ivp over every dysts flow whose rhs traces,
a population of perturbed Lorenz systems vs a solve_ivp loop, and the "cycles" cost model's
effect on the evaluation time of the traced right-hand sides.

    python bench/bench_dynamics.py [--quick] [--repeats 3]

Fixed seeds; interleaved repeats, medians, ratios.  symcore times are warm (the rhs compiled
and cached; compile time is printed separately).  One symcore call takes tens of microseconds:
each timing (both peers) is a loop of calls lasting at least MIN_TIME seconds (per-call time =
loop time / calls), so a single preemption on a loaded machine cannot pass for a slow
integration; CPU-time ratios are printed beside the wall-clock ones.  The
machine load (os.getloadavg) is printed at the start and the end: ratios matter, not seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np
import sympy as sp
from scipy.integrate import solve_ivp

import symcore
from symcore.codegen.export.system import rhs_function
from symcore.codegen.pool import n_threads
from symcore.integrations.dysts import traced_flows

#: a timing loop runs at least this long (seconds)
MIN_TIME = 0.05


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


def per_call(fn, min_time: float = MIN_TIME, clock=time.perf_counter) -> float:
    """Seconds per call of fn: calls repeated until min_time has elapsed on `clock`."""
    k, t0 = 0, clock()
    while True:
        fn()
        k += 1
        el = clock() - t0
        if el >= min_time:
            return el / k


def per_call_both(fn, min_time: float = MIN_TIME) -> tuple[float, float]:
    """(wall, CPU) seconds per call of fn, calls repeated until min_time of wall time."""
    k, t0, c0 = 0, time.perf_counter(), time.process_time()
    while True:
        fn()
        k += 1
        el = time.perf_counter() - t0
        if el >= min_time:
            return el / k, (time.process_time() - c0) / k


def simplify_system(s: symcore.System) -> symcore.System:
    """The system rewritten under cost="cycles": all equations in one e-graph with the "cycles"
    rules, the cheapest DAG over all of them (symcore.rules.systems; never costlier)."""
    from symcore.rules.systems import simplify_system as simplify_eqs
    return symcore.System(simplify_eqs(s.exprs), params=s.params, names=s.names)


def load() -> str:
    return "load average %.1f %.1f %.1f on %d cores" % (*os.getloadavg(), os.cpu_count() or 0)


def cycles_section(rep, names: list[str], reps: int) -> None:
    """Nodes, estimated cycles and measured time of every traced rhs before and after the
    "cycles" simplification."""
    # cycles cost model: the rhs as the integrator calls it (one state per call, through a
    # function pointer: fixed-step RK4, the same number of calls before and after; STEPS steps
    # so that odeint's fixed Python cost is a small part), and the vectorised rhs (inlined in a
    # loop over K states).  A system the rewrite leaves unchanged compiles to the same kernel
    # (same digest): its ratio is 1 by construction and it is not timed.
    K, STEPS = 20_000, 20_000
    before_n, after_n, before_c, after_c, speed, speed_v = 0, 0, 0.0, 0.0, [], []
    from symcore.rules.systems import system_cost
    changes, same, simp_s = [], 0, 0.0
    for name in names:
        s, flow = rep.systems[name]
        c0 = time.perf_counter()
        try:
            s2 = simplify_system(s)
        except symcore.SymcoreError:
            continue
        simp_s += time.perf_counter() - c0
        ic = np.asarray(flow.ic, dtype=float).reshape(-1)
        period = float(getattr(flow, "period", 1.0) or 1.0)
        t2, h = np.array([0.0, period]), period / STEPS
        ok = [symcore.odeint(x, ic, t2, method="rk4", h=h, full_output=True)[1].ok
              for x in (s, s2)]
        if not all(ok):
            continue
        before_n += s.size
        after_n += s2.size
        before_c += system_cost(s.exprs)
        after_c += system_cost(s2.exprs)
        if s2.digest() == s.digest():
            same += 1
            speed.append(1.0)
            speed_v.append(1.0)
            continue
        Y = np.random.default_rng(1).uniform(-2, 2, size=(s.n, K))
        fa, fb = rhs_function(s), rhs_function(s2)
        ta, tb, va, vb = [], [], [], []
        for _ in range(max(reps, 5)):   # interleaved, CPU time (one thread)
            ta.append(per_call(lambda: symcore.odeint(s, ic, t2, method="rk4", h=h), 0.03,
                               time.process_time))
            tb.append(per_call(lambda: symcore.odeint(s2, ic, t2, method="rk4", h=h), 0.03,
                               time.process_time))
            va.append(per_call(lambda: fa(0.5, Y), 0.02, time.process_time))
            vb.append(per_call(lambda: fb(0.5, Y), 0.02, time.process_time))
        speed.append(statistics.median(tb) / statistics.median(ta))
        speed_v.append(statistics.median(vb) / statistics.median(va))
        changes.append((speed[-1], speed_v[-1], name, system_cost(s.exprs),
                        system_cost(s2.exprs)))
    changes.sort()
    print(f"cycles cost model over {len(speed)} traced rhs (symcore.rules.systems."
          f"simplify_system: one e-graph per system, rules default + cycles, DAG cost over all "
          f"equations; {simp_s:.1f} s): nodes {before_n} -> {after_n}, estimated cycles "
          f"{before_c:.0f} -> {after_c:.0f}; {len(changes)} rewritten, {same} unchanged (same "
          f"kernel, ratio 1); CPU time ratio after/before (< 1 = faster after):")
    for label, r, i in ((f"in the integrator (RK4, {STEPS} fixed steps)", speed, 0),
                        (f"vectorised rhs ({K} states)", speed_v, 1)):
        rw = [c[i] for c in changes]
        print(f"  {label}: all {len(r)}: mean {np.mean(r):.3f}, median {np.median(r):.3f}; "
              f"the {len(rw)} rewritten: mean {np.mean(rw):.3f}, median {np.median(rw):.3f}, "
              f"min {min(rw):.3f} ({min(changes, key=lambda c: c[i])[2]}), max {max(rw):.3f} "
              f"({max(changes, key=lambda c: c[i])[2]})")
    print("  largest gains (integrator ratio, vectorised ratio, estimated cycles before -> "
          "after):")
    for a, b, name, cb, ca in changes[:8]:
        print(f"    {name:24s} {a:.3f} {b:.3f}  {cb:.0f} -> {ca:.0f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cycles-only", action="store_true",
                    help="only the cycles cost model's before/after table")
    args = ap.parse_args()
    reps = 1 if args.quick else args.repeats
    warnings.simplefilter("ignore")
    print(f"start: {load()}; threads {n_threads()}")
    rep = traced_flows()
    names = sorted(rep.systems)
    if args.quick:
        names = names[:15]
    print(f"dysts flows: {len(rep.systems)} trace, {len(rep.skipped)} skipped")
    if args.cycles_only:
        cycles_section(rep, names, reps)
        print(f"end: {load()}")
        return
    rtol, atol = 1e-8, 1e-10
    ratios, cpu_ratios, agree, fails, rows, errs = [], [], 0, [], [], []
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
        # agreement at the reference's tolerances (a chaotic flow amplifies the 1e-8 local
        # error over a period: ThomasLabyrinth is 4e-4 off at rtol 1e-8, SciPy's RK45 6e-4)
        yt, it = symcore.odeint(s, ic, t, rtol=1e-12, atol=1e-12, full_output=True)
        if ref.status != 0 or not info.ok or not it.ok:
            fails.append(f"{name} (scipy {ref.status}, symcore {info.names}/{it.names})")
            continue
        scale = 1.0 + np.max(np.abs(ref.y))
        err = np.max(np.abs(yt - ref.y.T)) / scale
        errs.append(np.max(np.abs(y - ref.y.T)) / scale)
        ok = err < 1e-6
        agree += ok
        if not ok:   # a second reference: is DOP853 itself converged on this flow?
            rk = solve_ivp(f, (0, period), ic, method="RK45", t_eval=t, rtol=1e-12,
                           atol=1e-12)
            e2 = np.max(np.abs(yt - rk.y.T)) / scale if rk.status == 0 else np.nan
            e3 = np.max(np.abs(rk.y.T - ref.y.T)) / scale if rk.status == 0 else np.nan
            fails.append(f"{name} (rel. err {err:.1e} vs DOP853, {e2:.1e} vs RK45 at the "
                         f"same tolerances; RK45 vs DOP853 {e3:.1e})")
        ts, tr, cs, cr = [], [], [], []
        nfev = 0
        for _ in range(reps):   # interleaved
            w, c = per_call_both(lambda: symcore.odeint(s, ic, t, rtol=rtol, atol=atol))
            ts.append(w)
            cs.append(c)
            w, c = per_call_both(lambda: solve_ivp(f, (0, period), ic, method="RK45",
                                                   t_eval=t, rtol=rtol, atol=atol))
            tr.append(w)
            cr.append(c)
        nfev = solve_ivp(f, (0, period), ic, method="RK45", t_eval=t, rtol=rtol,
                         atol=atol).nfev
        ratio = statistics.median(tr) / statistics.median(ts)
        ratios.append(ratio)
        cpu_ratios.append(statistics.median(cr) / statistics.median(cs))
        rows.append((ratio, name, s.n, period, int(info.steps), nfev,
                     statistics.median(ts), statistics.median(tr)))
    print(f"one period from the flow's ic, {len(names)} systems: {agree} agree with DOP853 "
          f"(both at rtol = atol = 1e-12: max rel. err < 1e-6); failures: {fails}; at rtol "
          f"{rtol}: max rel. err median {np.median(errs):.1e}, max {np.max(errs):.1e}")
    print(f"speed-up vs solve_ivp RK45 (rtol={rtol}, atol={atol}, lambdified rhs): median "
          f"{statistics.median(ratios):.0f}x, min {min(ratios):.0f}x, max {max(ratios):.0f}x; "
          f"{sum(r >= 20 for r in ratios)}/{len(ratios)} systems >= 20x; "
          f"first-call time incl. compile {compile_s:.2f} s total")
    print(f"  the same in CPU time (immune to preemption by other processes): median "
          f"{statistics.median(cpu_ratios):.0f}x, min {min(cpu_ratios):.0f}x; "
          f"{sum(r >= 20 for r in cpu_ratios)}/{len(cpu_ratios)} systems >= 20x")
    print("  slowest ratios: system (n, period, symcore steps, scipy nfev): symcore / scipy")
    for ratio, name, n, period, steps, nfev, a, b in sorted(rows)[:6]:
        print(f"    {name:24s} ({n}, {period:.3g}, {steps}, {nfev}): {a * 1e6:.0f} us / "
              f"{b * 1e3:.1f} ms = {ratio:.0f}x")

    # population of perturbed Lorenz systems
    P = 100 if args.quick else 1000
    lor = rep.systems["Lorenz"][0]
    ic = np.asarray(rep.systems["Lorenz"][1].ic, dtype=float)
    rng = np.random.default_rng(0)
    prm = lor.params * (1 + 0.05 * rng.standard_normal((P, lor.n_params)))
    t = np.linspace(0, 1.5, 50)
    symcore.odeint([lor] * P, ic, t, params=prm)

    def peer(k: int) -> None:
        p = prm[k]      # Lorenz's p0 = beta, p1 = rho, p2 = sigma; a hand-written NumPy rhs
        solve_ivp(lambda tt, y: np.array([p[2] * (y[1] - y[0]), p[1] * y[0] - y[0] * y[2] - y[1],
                                          y[0] * y[1] - p[0] * y[2]]),
                  (0, 1.5), ic, method="RK45", t_eval=t, rtol=rtol, atol=atol)
    t0 = time.perf_counter()
    for k in range(20):
        peer(k)
    estimate = (time.perf_counter() - t0) / 20 * P
    sub = P if estimate * reps <= 600 else max(20, int(600 / reps / estimate * P))
    pts, pti = [], []
    for _ in range(reps):   # interleaved
        pts += timed(lambda: symcore.odeint([lor] * P, ic, t, params=prm), 1)
        pti += [x * P / sub for x in timed(lambda: [peer(k) for k in range(sub)], 1)]
    how = "the full loop" if sub == P else f"extrapolated from {sub} runs"
    print(f"population of {P} perturbed Lorenz systems ({n_threads()} "
          f"thread(s)): symcore {statistics.median(pts) * 1e3:.1f} ms, solve_ivp loop "
          f"{statistics.median(pti):.2f} s ({how}); ratio "
          f"{statistics.median(pti) / statistics.median(pts):.0f}x")

    cycles_section(rep, names, reps)
    print(f"end: {load()}")


if __name__ == "__main__":
    main()
