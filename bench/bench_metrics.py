"""symcore.metrics against the benchmarks' own loops: the 120 SRSD formulas vs perturbed versions
of themselves (identity, constant changed, a term dropped, an operator swapped, a constant
offset; 600 pairs).  Prints: equality of tree_edit_distance(method="srsd") with the SRSD reference
loop and the speed-up of the whole table; method="symcore"'s speed-up and agreement; and
is_symbolic_solution against SRBench's SymPy check (agreement, false solutions).

    .venv/bin/python bench/bench_metrics.py [--limit N] [--ref-timeout S]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import sympy

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "metrics"))

import srsd_reference as ref  # noqa: E402
from perturb import perturbed_pairs  # noqa: E402

from symcore.metrics import (clear_cache, symbolic_solutions, tree_edit_distances)  # noqa: E402
from symcore.metrics.workers import shutdown  # noqa: E402

DATA = os.path.join(HERE, "..", "..", "shared", "data", "formulas", "srsd_feynman_120.json")


def srbench_check(pred: str, true: str) -> bool:
    """SRBench's assess_symbolic_model, transcribed (round floats to 3 decimals / tiny to 0,
    simplify(ratio=1), difference zero or constant, or fraction constant; '0'/'nan' models are
    no solution)."""
    def round_floats(ex):
        out = ex
        for a in sympy.preorder_traversal(ex):
            if isinstance(a, sympy.Float):
                out = out.subs(a, sympy.Integer(0) if abs(a) < 1e-4 else round(a, 3))
        return out
    try:
        model = sympy.simplify(round_floats(sympy.sympify(pred)), ratio=1)
        truth = sympy.sympify(true)
        if str(model) in ("0", "nan"):
            return False
        diff = round_floats(truth - model)
        frac = round_floats(model / truth)
        if not diff.is_constant() or frac.is_constant():
            diff = round_floats(sympy.simplify(diff, ratio=1))
        return bool(str(diff) == "0" or diff.is_constant() or frac.is_constant())
    except Exception:
        return False


def related(p: str, t: str) -> bool:
    """Ground truth for 'no false solution': difference or ratio constant at 400 random points
    (SymPy lambdify, independent of symcore)."""
    x = sympy.symbols("x0:12")
    fp, ft = (sympy.lambdify(x, sympy.sympify(s), "numpy") for s in (p, t))
    X = np.random.default_rng(11).uniform(0.5, 5, size=(12, 400))
    with np.errstate(all="ignore"):
        P = np.broadcast_to(np.asarray(fp(*X), dtype=complex), (400,))
        T = np.broadcast_to(np.asarray(ft(*X), dtype=complex), (400,))
        ok = np.isfinite(P) & np.isfinite(T) & (P.imag == 0) & (T.imag == 0)
        P, T = P[ok].real, T[ok].real
        if P.size < 8:
            return False
        D, R = P - T, P / T
    tol = 1e-7
    return bool(np.ptp(D) <= tol * np.max(np.abs(P) + np.abs(T))
                or (np.all(T != 0) and np.median(R) != 0
                    and np.ptp(R) <= tol * np.max(np.abs(R))))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="first N formulas only")
    ap.add_argument("--ref-timeout", type=float, default=120.0)
    a = ap.parse_args()
    with open(DATA) as f:
        truths = [r["sympy"] for r in json.load(f)]
    if a.limit:
        truths = truths[:a.limit]
    pairs = perturbed_pairs(truths, kinds=("identity", "constant", "drop", "swap", "offset"),
                            seed=0)
    table = [(p, t) for _, p, t in pairs]
    print(f"{len(truths)} SRSD formulas, {len(pairs)} pairs, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")

    # the reference loop: one pair after another, as the SRSD comparator runs
    t0 = time.perf_counter()
    ref_d = [ref.compare(p, t, True, a.ref_timeout) for p, t in table]
    t_ref = time.perf_counter() - t0

    clear_cache()
    shutdown()
    t0 = time.perf_counter()
    got = tree_edit_distances(table, method="srsd", timeout=120)
    t_srsd = time.perf_counter() - t0
    same = sum(g.distance == r for g, r in zip(got, ref_d))

    clear_cache()
    t0 = time.perf_counter()
    sc = tree_edit_distances(table, method="symcore", timeout=120)
    t_sc = time.perf_counter() - t0
    agree = sum(s.distance == g.distance for s, g in zip(sc, got))
    mae = sum(abs(s.distance - g.distance) for s, g in zip(sc, got)) / len(got)

    print("\n== tree edit distance (normalised) ==")
    print(f"{'':28}{'seconds':>9}{'speed-up':>10}  result")
    print(f"{'SRSD reference loop':28}{t_ref:9.1f}{1.0:10.1f}  -")
    print(f"{'symcore srsd (cold cache)':28}{t_srsd:9.1f}{t_ref / t_srsd:10.1f}  "
          f"equal to reference on {same}/{len(pairs)} pairs")
    print(f"{'symcore symcore':28}{t_sc:9.2f}{t_ref / t_sc:10.1f}  "
          f"agrees with srsd on {agree}/{len(pairs)} ({100 * agree / len(pairs):.1f} %), "
          f"mean |diff| {mae:.3f}")
    kinds = sorted({k for k, _, _ in pairs})
    for k in kinds:
        idx = [i for i, (kk, _, _) in enumerate(pairs) if kk == k]
        print(f"   {k:<10} mean NED srsd {np.mean([got[i].distance for i in idx]):.3f}  "
              f"symcore {np.mean([sc[i].distance for i in idx]):.3f}  agree "
              f"{sum(sc[i].distance == got[i].distance for i in idx)}/{len(idx)}")
    for g, r, (k, p, t) in list(zip(got, ref_d, pairs)):
        if g.distance != r:
            print(f"   MISMATCH {k}: {p!r} vs {t!r}: symcore {g.distance} reference {r}")

    # symbolic solution vs SRBench's SymPy check
    t0 = time.perf_counter()
    sb = [srbench_check(p, t) for p, t in table]
    t_sb = time.perf_counter() - t0
    t0 = time.perf_counter()
    ours = symbolic_solutions(table, timeout=60)
    t_ours = time.perf_counter() - t0
    truth_rel = [related(p, t) for p, t in table]
    agree_s = sum(bool(o) == s for o, s in zip(ours, sb))
    false_ours = sum(bool(o) and not r for o, r in zip(ours, truth_rel))
    false_sb = sum(s and not r for s, r in zip(sb, truth_rel))
    missed = sum((not bool(o)) and r for o, r in zip(ours, truth_rel))
    by = {}
    for o in ours:
        by[o.decided_by] = by.get(o.decided_by, 0) + 1
    print("\n== symbolic solution ==")
    print(f"SRBench SymPy check  {t_sb:8.1f} s   solutions {sum(sb)}   false solutions {false_sb}")
    print(f"is_symbolic_solution {t_ours:8.1f} s   solutions {sum(map(bool, ours))}   false "
          f"solutions {false_ours}   ({t_sb / t_ours:.1f}x faster)")
    print(f"agreement with SRBench {agree_s}/{len(pairs)} ({100 * agree_s / len(pairs):.1f} %); "
          f"numerically related pairs not proven: {missed}; decided by {by}")
    for o, s, r, (k, p, t) in zip(ours, sb, truth_rel, pairs):
        if bool(o) != s:
            print(f"   differs {k}: ours {bool(o)} ({o.decided_by}) SRBench {s} related {r}: "
                  f"{p[:70]!r}")


if __name__ == "__main__":
    main()
