"""symcore.metrics against the benchmarks' own loops: the 120 SRSD formulas vs perturbed versions
of themselves (identity, constant changed, a term dropped, an operator swapped, a constant
offset; 600 pairs).  Prints: equality of tree_edit_distance(method="srsd") with the SRSD reference
loop and the speed-up of the whole table; method="symcore"'s speed-up and agreement; and
is_symbolic_solution against SRBench's SymPy check, both judged by an exact ground truth
(tests/metrics/exact_truth.py: mpmath at 80/160 digits inside the variables' ranges), with every
disagreement classified by its cause.

    .venv/bin/python bench/bench_metrics.py [--limit N] [--ref-timeout S] [--chunks K]
        [--only-solution] [--srbench-json FILE]

--srbench-json FILE reuses SRBench's verdicts and per-pair seconds recorded in FILE (written
there when FILE does not exist yet) so the solution part can be iterated without its ~20 min.

The disk cache of normal forms is pointed at a temporary folder (the user's is never used).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time

import numpy as np
import sympy

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "metrics"))

import srsd_reference as ref  # noqa: E402
from exact_truth import exact_relation  # noqa: E402
from perturb import perturbed_pairs  # noqa: E402

from symcore.metrics import (clear_cache, normal_forms, symbolic_solutions,  # noqa: E402
                             tree_edit_distances)
from symcore.metrics import diskcache  # noqa: E402
from symcore.metrics.srbench import round_float_literals  # noqa: E402
from symcore.metrics.workers import shutdown  # noqa: E402

DATA = os.path.join(HERE, "..", "tests", "fixtures", "formulas", "srsd_feynman_120.json")


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


def _srbench_child(conn, pred: str, true: str) -> None:
    conn.send(srbench_check(pred, true))


def srbench_timed(pred: str, true: str, timeout: float) -> bool | None:
    """srbench_check in a forked child joined with a timeout (None: it did not finish; SymPy's
    simplify hangs on a few perturbed formulas)."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    a, b = ctx.Pipe(duplex=False)
    p = ctx.Process(target=_srbench_child, args=(b, pred, true))
    p.start()
    b.close()
    got = a.recv() if a.poll(timeout) else None
    p.terminate()
    p.join()
    a.close()
    return got


def related(p: str, t: str) -> bool:
    """The loose secondary column: difference or ratio constant to 1e-7 at 400 random points in
    float64 (SymPy lambdify): a dropped 3.3e-9*x1 passes, an overflowing exp fails."""
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


def _fresh_cache(root: str, name: str) -> None:
    """Point symcore.metrics' disk cache at an empty folder of this run."""
    d = os.path.join(root, name)
    os.makedirs(d, exist_ok=True)
    os.environ["SYMCORE_CACHE"] = d


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=0, help="first N formulas only")
    ap.add_argument("--ref-timeout", type=float, default=120.0)
    ap.add_argument("--chunks", type=int, default=4,
                    help="interleave the reference and symcore per chunk of formulas (same load)")
    ap.add_argument("--only-solution", action="store_true",
                    help="skip the tree edit distance part")
    ap.add_argument("--srbench-json", default="",
                    help="reuse (or record) SRBench's verdicts and seconds per pair")
    a = ap.parse_args()
    with open(DATA) as f:
        rows = json.load(f)
    if a.limit:
        rows = rows[:a.limit]
    truths = [r["sympy"] for r in rows]
    variables = {r["sympy"]: r["variables"] for r in rows}
    pairs = perturbed_pairs(truths, kinds=("identity", "constant", "drop", "swap", "offset"),
                            seed=0)
    print(f"{len(truths)} SRSD formulas, {len(pairs)} pairs, {os.cpu_count()} CPUs, "
          f"load {os.getloadavg()[0]:.1f}")
    per = 5
    n_chunks = max(1, min(a.chunks, len(truths)))
    bounds = [round(i * len(truths) / n_chunks) * per for i in range(n_chunks + 1)]
    loads = [os.getloadavg()[0]]
    if not a.only_solution:
        edit_distance_section(a, pairs, bounds, loads)
    solution_section(a, pairs, variables, bounds, loads)


def edit_distance_section(a, pairs: list, bounds: list[int], loads: list[float]) -> None:
    """tree_edit_distance (srsd cold / truths on disk, symcore) against the reference loop."""
    table = [(p, t) for _, p, t in pairs]
    n_chunks = len(bounds) - 1
    root = tempfile.mkdtemp(prefix="bench_metrics_")
    # per chunk of formulas, one after another under the same machine load: the reference loop
    # (one pair after another, as the SRSD comparator runs); symcore "srsd" with an empty disk
    # cache and fresh workers; again with only the ground truths on disk (as after any earlier
    # run on the same benchmark); symcore "symcore"
    ref_d: list = []
    got: list = []
    warm: list = []
    sc: list = []
    t_ref = t_srsd = t_warm = t_sc = 0.0
    for c in range(n_chunks):
        part = table[bounds[c]:bounds[c + 1]]
        t0 = time.perf_counter()
        ref_d += [ref.compare(p, t, True, a.ref_timeout) for p, t in part]
        t_ref += time.perf_counter() - t0

        _fresh_cache(root, f"cold{c}")
        clear_cache()
        if c == 0:
            shutdown()      # cold: worker start-up counted once, as in a whole-table run
        t0 = time.perf_counter()
        cold = tree_edit_distances(part, method="srsd", timeout=120)
        t_srsd += time.perf_counter() - t0
        got += cold

        # the ground truths' normal forms, as an earlier run left them on disk
        _fresh_cache(root, f"truths{c}")
        forms = dict(zip([t for _, t in part], normal_forms([t for _, t in part], "srsd")))
        diskcache.put_many("srsd", [(t, o.status, o.form, o.tree, o.message)
                                    for t, o in forms.items() if o.status == "ok"])
        clear_cache()
        shutdown()          # fresh workers: SymPy's own cache must not remember the cold run
        t0 = time.perf_counter()
        warm += tree_edit_distances(part, method="srsd", timeout=120)
        t_warm += time.perf_counter() - t0

        clear_cache()
        t0 = time.perf_counter()
        sc += tree_edit_distances(part, method="symcore", timeout=120)
        t_sc += time.perf_counter() - t0
        loads.append(os.getloadavg()[0])
        print(f"  chunk {c + 1}/{n_chunks}: {len(part)} pairs, reference {t_ref:.1f} s so far, "
              f"load {loads[-1]:.1f}", flush=True)
    same = sum(g.distance == r for g, r in zip(got, ref_d))
    same_w = sum(g.distance == r for g, r in zip(warm, ref_d))
    agree = sum(s.distance == g.distance for s, g in zip(sc, got))
    mae = sum(abs(s.distance - g.distance) for s, g in zip(sc, got)) / len(got)

    print("\n== tree edit distance (normalised) ==")
    print(f"load average during the runs: {min(loads):.1f} .. {max(loads):.1f} on "
          f"{os.cpu_count()} CPUs (other engineers' jobs too)")
    print(f"{'':32}{'seconds':>9}{'speed-up':>10}  result")
    print(f"{'SRSD reference loop':32}{t_ref:9.1f}{1.0:10.1f}  -")
    print(f"{'symcore srsd (cold: no cache)':32}{t_srsd:9.1f}{t_ref / t_srsd:10.1f}  "
          f"equal to reference on {same}/{len(pairs)} pairs")
    print(f"{'symcore srsd (truths on disk)':32}{t_warm:9.1f}{t_ref / t_warm:10.1f}  "
          f"equal to reference on {same_w}/{len(pairs)} pairs")
    print(f"{'symcore symcore':32}{t_sc:9.2f}{t_ref / t_sc:10.1f}  "
          f"agrees with srsd on {agree}/{len(pairs)} ({100 * agree / len(pairs):.1f} %), "
          f"mean |diff| {mae:.3f}")
    kinds = sorted({k for k, _, _ in pairs})
    for k in kinds:
        idx = [i for i, (kk, _, _) in enumerate(pairs) if kk == k]
        print(f"   {k:<10} mean NED srsd {np.mean([got[i].distance for i in idx]):.3f}  "
              f"symcore {np.mean([sc[i].distance for i in idx]):.3f}  agree "
              f"{sum(sc[i].distance == got[i].distance for i in idx)}/{len(idx)}")
    for g, w, r, (k, p, t) in list(zip(got, warm, ref_d, pairs)):
        if g.distance != r or w.distance != r:
            print(f"   MISMATCH {k}: {p!r} vs {t!r}: symcore {g.distance} / {w.distance} "
                  f"({g.status}) reference {r}")


CAUSES = {
    "round": "SRBench rounds constants (tiny ones to 0, others to 3 decimals)",
    "timeout": "SRBench timed out",
    "sb_near": "SRBench accepts a near-solution (equal to ~15 digits only)",
    "sb_false": "SRBench accepts a non-solution",
    "sb_miss": "SRBench misses a solution",
    "ours_miss": "symcore misses a solution",
    "ours_false": "symcore accepts a non-solution",
    "undecided": "ground truth undecided (no real point)",
}


def disagreement_cause(ours: bool, sb: bool | None, ex, p: str, t: str, variables) -> str:
    """Why is_symbolic_solution and SRBench's check differ on (p, t), judged by the exact
    truth `ex` (one of CAUSES)."""
    if sb is None:
        return "timeout"
    if ex.solution is None:
        return "undecided"
    if sb != ex.solution:
        rp, rt = round_float_literals(p, 3), round_float_literals(t, 3)
        if (rp, rt) != (p, t):
            try:
                rounded = exact_relation(rp, rt, variables).solution
            except Exception:       # a truth rounded to 0 or worse: rounding explains it
                rounded = False
            if bool(rounded) == sb:
                return "round"
        if sb:
            return "sb_near" if ex.near else "sb_false"
        return "sb_miss"
    return "ours_false" if ours else "ours_miss"


def _srbench_verdicts(a, pairs: list) -> list | None:
    """SRBench's verdicts and seconds from --srbench-json (None: not recorded yet)."""
    if not a.srbench_json or not os.path.exists(a.srbench_json):
        return None
    with open(a.srbench_json) as f:
        rec = {(r["pred"], r["true"]): (r["srbench"], r["sec"]) for r in json.load(f)}
    return [rec[(p, t)] for _, p, t in pairs]


def solution_section(a, pairs: list, variables: dict, bounds: list[int],
                     loads: list[float]) -> None:
    """is_symbolic_solution vs SRBench's SymPy check (interleaved per chunk, same load), both
    judged by the exact ground truth; disagreements classified by cause."""
    table = [(p, t) for _, p, t in pairs]
    recorded = _srbench_verdicts(a, pairs)
    sb: list = []
    sb_sec: list[float] = []
    ours: list = []
    t_ours = 0.0
    for c in range(len(bounds) - 1):
        part = table[bounds[c]:bounds[c + 1]]
        if recorded is None:
            for p, t in part:
                t0 = time.perf_counter()
                sb.append(srbench_timed(p, t, a.ref_timeout))
                sb_sec.append(time.perf_counter() - t0)
        else:
            sb += [v for v, _ in recorded[bounds[c]:bounds[c + 1]]]
            sb_sec += [s for _, s in recorded[bounds[c]:bounds[c + 1]]]
        t0 = time.perf_counter()
        ours += symbolic_solutions(part, timeout=60)
        t_ours += time.perf_counter() - t0
        loads.append(os.getloadavg()[0])
    if recorded is None and a.srbench_json:
        with open(a.srbench_json, "w") as f:
            json.dump([{"kind": k, "pred": p, "true": t, "srbench": v, "sec": s}
                       for (k, p, t), v, s in zip(pairs, sb, sb_sec)], f)
    t_sb = sum(sb_sec)
    t0 = time.perf_counter()
    ex = [exact_relation(p, t, variables[t]) for p, t in table]
    t_ex = time.perf_counter() - t0
    rel = [related(p, t) for p, t in table]
    sb_timeouts = sum(s is None for s in sb)
    ob = [bool(o) for o in ours]
    sbb = [bool(s) for s in sb]
    n = len(pairs)

    def figures(v: list[bool]) -> str:
        sol = sum(v)
        false = sum(x and e.solution is False for x, e in zip(v, ex))
        near = sum(x and e.near for x, e in zip(v, ex))
        miss = sum((not x) and e.solution is True for x, e in zip(v, ex))
        agree = sum(x == bool(e.solution) for x, e in zip(v, ex))
        false_rel = sum(x and not r for x, r in zip(v, rel))
        return (f"{sol:>10}{f'{false} ({near} near)':>18}{miss:>8}{f'{agree}/{n}':>12}"
                f"{false_rel:>12}")

    print("\n== symbolic solution ==")
    print(f"load average during the runs: {min(loads):.1f} .. {max(loads):.1f}"
          + ("" if recorded is None else f"; SRBench verdicts and seconds from "
             f"{a.srbench_json} (an earlier run)"))
    n_true = sum(e.solution is True for e in ex)
    n_near = sum(e.near for e in ex)   # pred - true varies by < 1e-12 of the truth's variation
    n_none = sum(e.solution is None for e in ex)
    print(f"exact ground truth (mpmath 80/160 digits at 16 points in the variables' ranges, "
          f"{t_ex:.1f} s): solutions {n_true}, non-solutions {n - n_true - n_none} (of which "
          f"near, equal to ~15 digits only: {n_near}), undecided {n_none}")
    print(f"{'':24}{'seconds':>8}{'solutions':>10}{'false (vs exact)':>18}{'missed':>8}"
          f"{'= exact':>12}{'false vs':>12}")
    print(f"{'':24}{'':>8}{'':>10}{'':>18}{'':>8}{'':>12}{'related':>12}")
    print(f"{'SRBench SymPy check':24}{t_sb:8.1f}{figures(sbb)}   "
          f"(timed out after {a.ref_timeout:g} s: {sb_timeouts})")
    print(f"{'is_symbolic_solution':24}{t_ours:8.1f}{figures(ob)}   "
          f"({t_sb / t_ours:.1f}x faster)")
    agree_s = sum(o == s for o, s in zip(ob, sbb))
    print(f"agreement with SRBench {agree_s}/{n} ({100 * agree_s / n:.1f} %)")
    by: dict = {}
    for o in ours:
        by[o.decided_by] = by.get(o.decided_by, 0) + 1
    print(f"is_symbolic_solution decided by {by}")

    groups: dict[str, list[int]] = {}
    for i, ((k, p, t), o, s, e) in enumerate(zip(pairs, ob, sb, ex)):
        if o != bool(s):
            groups.setdefault(disagreement_cause(o, s, e, p, t, variables[t]), []).append(i)
    print(f"\ndisagreements with SRBench by cause ({n - agree_s}):")
    for key, label in CAUSES.items():
        idx = groups.get(key, [])
        who = {kk: sum(pairs[i][0] == kk for i in idx) for kk in sorted({pairs[i][0]
                                                                          for i in idx})}
        print(f"   {label:<66}{len(idx):>4}   {who if idx else ''}")
    for key, label in CAUSES.items():
        idx = groups.get(key, [])
        show = idx if key.startswith("ours") else idx[:4]
        for i in show:
            k, p, t = pairs[i]
            e = ex[i]
            print(f"   [{key}] {k}: ours {ob[i]} ({ours[i].decided_by}) SRBench {sb[i]} exact "
                  f"{e.solution} (off by {e.closeness:.1e}) related "
                  f"{rel[i]}: {p[:72]!r}")
        if len(idx) > len(show):
            print(f"   [{key}] ... {len(idx) - len(show)} more")
    related_only = [i for i in range(n) if rel[i] != bool(ex[i].solution)]
    print(f"\nsecondary: float 'related' (1e-7 at 400 points) differs from the exact truth on "
          f"{len(related_only)} pairs ({sum(rel[i] for i in related_only)} related but not a "
          f"solution, {sum(not rel[i] for i in related_only)} a solution but not related)")
    for i in related_only:
        if not rel[i] and ob[i]:
            k, p, t = pairs[i]
            print(f"   ours True, related False, exact {ex[i].solution} ({ex[i].kind}): "
                  f"{k}: {p[:80]!r}")


if __name__ == "__main__":
    main()
