"""Calibration of the "cycles" cost model: the measured cost of each op as symcore lowers it, in
the two places a dynamical system's right-hand side runs, printed beside the ops table's
`cycles` estimate.

    python bench/bench_cycles.py [--quick] [--ops div,sin,...]

* vectorised: the column-batched rhs over K states (throughput: many independent states);
  each equation applies the op M times to distinct arguments, minus the same system without
  the op, per application.
* integrator: `odeint` RK4 with fixed steps, one application of the op on the path from the
  state to its derivative (latency: each stage waits for the previous one), minus the same
  system without the op, per rhs call.

Cycles are nanoseconds times the clock, the clock estimated from a dependent chain of
floating additions (4 cycles each on current x86-64 cores), so "1 cycle" means the same in
both columns and in the table.  Interleaved repeats, medians, CPU time of this process.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import numpy as np

import symcore
from symcore.codegen.export.system import rhs_function
from symcore.ops import OPS

#: ops calibrated by default: (op, argument template, argument scale of the states)
UNARY = ["neg", "abs", "square", "cube", "inv", "sqrt", "cbrt", "exp", "log", "sin", "cos",
         "tan", "tanh", "sinh", "cosh", "asin", "acos", "atan"]
BINARY = ["add", "sub", "mul", "div", "pow"]
#: ops whose argument must stay in [-1, 1]
SMALL_ARG = {"asin", "acos"}
#: applications of the op per equation (vectorised) and states per batch call
M, K = 8, 8192
#: fixed RK4 steps of one timed integration (4 rhs calls each)
STEPS = 20_000
#: latency of one dependent floating add, in cycles (the clock reference)
ADD_LATENCY = 4.0


def per_call(fn: Callable[[], object], min_time: float) -> float:
    k, t0 = 0, time.process_time()
    while True:
        fn()
        k += 1
        el = time.process_time() - t0
        if el >= min_time:
            return el / k


def ns_per_cycle(reps: int) -> float:
    """Nanoseconds of one cycle, from a compiled dependent chain of float additions (a system
    whose rhs is x0 + c1 + c2 + ..., evaluated on a few states; two chain lengths, so the call
    overhead cancels; chains long enough that the core cannot overlap two states)."""
    from symcore.ir import const

    def chain(m: int) -> symcore.System:
        e = symcore.read("x0", "symcore")
        for j in range(m):
            e = e + const(1.0 + j * 1e-3)
        return symcore.System([e])
    short, long_ = 200, 2200
    a, b = rhs_function(chain(short)), rhs_function(chain(long_))
    Y = np.random.default_rng(0).uniform(0.5, 2.0, size=(1, 16))
    ta, tb = [], []
    for _ in range(reps):
        ta.append(per_call(lambda: a(0.0, Y), 0.03))
        tb.append(per_call(lambda: b(0.0, Y), 0.03))
    per_add = (statistics.median(tb) - statistics.median(ta)) / (16 * (long_ - short))
    return per_add * 1e9 / ADD_LATENCY


def _arg(op: str, j: int) -> str:
    c = 0.5 + 0.05 * j
    return f"({c!r} * x0)" if op not in SMALL_ARG else f"({0.4 * c!r} * x0)"


def systems(op: str, m: int) -> tuple[symcore.System, symcore.System]:
    """(with the op, without it): m applications summed, each on its own argument."""
    if OPS[op].arity == 1:
        with_op = " + ".join(f"{op}({_arg(op, j)})" for j in range(m))
    else:
        with_op = " + ".join(f"{op}({_arg(op, j)}, x1)" if op == "pow" else
                             f"({_arg(op, j)} {dict(add='+', sub='-', mul='*', div='/')[op]} x1)"
                             for j in range(m))
    without = " + ".join(f"{_arg(op, j)}" + ("" if OPS[op].arity == 1 else " + x1")
                         for j in range(m))
    mk = lambda text: symcore.System([symcore.read(text, "symcore"), symcore.read("0.0 * x1",
                                                                                 "symcore")])
    return mk(with_op), mk(without)


def measure(op: str, reps: int) -> tuple[float, float]:
    """(vectorised ns per application, integrator ns per rhs call) of op."""
    wv, bv = systems(op, M)
    fa, fb = rhs_function(wv), rhs_function(bv)
    Y = np.random.default_rng(1).uniform(0.5, 2.0, size=(2, K))
    wi, bi = systems(op, 1)
    y0 = np.array([1.0, 1.5])
    t = np.array([0.0, 1e-3])
    h = 1e-3 / STEPS
    va, vb, ia, ib = [], [], [], []
    for _ in range(reps):   # interleaved
        va.append(per_call(lambda: fa(0.0, Y), 0.03))
        vb.append(per_call(lambda: fb(0.0, Y), 0.03))
        ia.append(per_call(lambda: symcore.odeint(wi, y0, t, method="rk4", h=h), 0.03))
        ib.append(per_call(lambda: symcore.odeint(bi, y0, t, method="rk4", h=h), 0.03))
    m = statistics.median
    vec = (m(va) - m(vb)) / (M * K) * 1e9
    integ = (m(ia) - m(ib)) / (4 * STEPS) * 1e9
    return vec, integ


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ops", default="")
    args = ap.parse_args()
    reps = 3 if args.quick else 7
    ops = args.ops.split(",") if args.ops else BINARY + UNARY
    cyc = ns_per_cycle(reps)
    print(f"clock: {cyc:.3f} ns per cycle ({1 / cyc:.2f} GHz; from dependent additions of "
          f"{ADD_LATENCY:g} cycles)")
    print(f"{'op':8s} {'table':>6s} {'vectorised':>11s} {'integrator':>11s}   (cycles per "
          f"application; vectorised: throughput over {K} states, integrator: on the RK4 "
          f"stage's path)")
    for op in ops:
        vec, integ = measure(op, reps)
        print(f"{op:8s} {OPS[op].cycles or float('nan'):6.0f} {vec / cyc:11.1f} "
              f"{integ / cyc:11.1f}", flush=True)


if __name__ == "__main__":
    main()
