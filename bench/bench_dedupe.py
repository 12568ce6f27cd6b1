"""Population dedup: symcore.dedupe (one e-graph) vs sympy's automatic canonical form,
sympy.simplify (sampled) and symengine's canonical form.  Fixed seeds; prints one table.

Populations: N = 100, 1,000, 10,000 candidates, 40 % random base trees and 60 % equivalent
variants (commuted, re-associated, x*1, x+0, double negation, a-b as a+(-b), x*x as square),
plus the harvested gplearn / pyoperon populations in tests/fixtures when they exist.
Run: python bench/bench_dedupe.py [--sizes 100,1000,10000] [--simplify-sample 20] [--repeats 3]
symcore times are medians of --repeats end-to-end runs (insert + saturate + extract).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time

import numpy as np

import symcore
from symcore import Expr, call, const, var

UN = ("sin", "cos", "exp", "log", "sqrt", "square", "neg", "abs", "tanh")
BIN = ("add", "sub", "mul", "div")
CONSTS = (0.5, 1.5, 2.0, 3.0, -1.0, 0.1, 4.2)


def base_tree(rng: random.Random, n_vars: int, size: int) -> Expr:
    if size <= 1:
        return var(rng.randrange(n_vars)) if rng.random() < 0.7 else const(rng.choice(CONSTS))
    if size == 2 or rng.random() < 0.25:
        return call(rng.choice(UN), base_tree(rng, n_vars, size - 1))
    left = rng.randint(1, size - 2)
    return call(rng.choice(BIN), base_tree(rng, n_vars, left), base_tree(rng, n_vars,
                                                                           size - 1 - left))


def _variant_once(rng: random.Random, e: Expr) -> Expr:
    """Rewrite one random node of `e` into an equivalent spelling."""
    nodes = [n for n in symcore.ir.topo([e])]
    target = rng.choice(nodes)
    k = rng.randrange(7)
    if k == 0 and target.op in ("add", "mul"):
        new = call(target.op, target.args[1], target.args[0])
    elif k == 1 and target.op in ("add", "mul") and target.args[0].op == target.op:
        (a, b), c = target.args[0].args, target.args[1]
        new = call(target.op, a, call(target.op, b, c))
    elif k == 2:
        new = call("mul", target, const(1.0))
    elif k == 3:
        new = call("add", target, const(0.0))
    elif k == 4:
        new = call("neg", call("neg", target))
    elif k == 5 and target.op == "sub":
        new = call("add", target.args[0], call("neg", target.args[1]))
    elif k == 6 and target.op == "square":
        new = call("mul", target.args[0], target.args[0])
    else:
        new = call("mul", const(1.0), target)
    return symcore.ir.replace(e, target, new)


def population(n: int, seed: int, n_vars: int = 3) -> list[Expr]:
    rng = random.Random(seed)
    n_base = max(1, int(0.4 * n))
    bases = [base_tree(rng, n_vars, rng.randint(3, 14)) for _ in range(n_base)]
    out = list(bases)
    while len(out) < n:
        e = rng.choice(bases)
        for _ in range(rng.randint(1, 3)):
            e = _variant_once(rng, e)
        out.append(e)
    rng.shuffle(out)
    return out


# ---------------------------------------------------------------------------------------------
# peers

def to_sympy(exprs: list[Expr]) -> list:
    import sympy
    from symcore.ops import OPS
    syms: dict[int, object] = {}
    memo: dict[Expr, object] = {}
    for n in symcore.ir.topo(exprs):
        if n.op == "var":
            memo[n] = syms.setdefault(n.value, sympy.Symbol(f"x{n.value}"))
        elif n.op == "const":
            memo[n] = sympy.Float(n.value)
        elif n.op == "param":
            memo[n] = sympy.Symbol(f"p{n.value}")
        else:
            memo[n] = OPS[n.op].sympy(*(memo[a] for a in n.args))
    return [memo[e] for e in exprs]


def to_symengine(exprs: list[Expr]) -> list:
    import symengine as se
    fns = {"add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
           "div": lambda a, b: a / b, "neg": lambda a: -a, "square": lambda a: a ** 2,
           "cube": lambda a: a ** 3, "inv": lambda a: 1 / a, "abs": se.Abs,
           "pow": lambda a, b: a ** b, "powi": lambda a, b: a ** b}
    memo: dict[Expr, object] = {}
    for n in symcore.ir.topo(exprs):
        if n.op == "var":
            memo[n] = se.Symbol(f"x{n.value}")
        elif n.op == "const":
            memo[n] = se.RealDouble(n.value)
        elif n.op == "param":
            memo[n] = se.Symbol(f"p{n.value}")
        elif n.op in fns:
            memo[n] = fns[n.op](*(memo[a] for a in n.args))
        elif hasattr(se, n.op):
            memo[n] = getattr(se, n.op)(*(memo[a] for a in n.args))
        else:
            memo[n] = se.Function(n.op)(*(memo[a] for a in n.args))
    return [memo[e] for e in exprs]


def numeric_bad_merges(exprs: list[Expr], class_of: list[int], n_vars: int) -> int:
    """Classes holding two candidates that differ at random finite points."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-3, 3, size=(64, n_vars))
    bad = 0
    first: dict[int, np.ndarray] = {}
    for e, k in zip(exprs, class_of):
        y = symcore.evaluate(e, X)
        if k not in first:
            first[k] = y
            continue
        y0 = first[k]
        both = np.isfinite(y) & np.isfinite(y0)
        onenan = np.isnan(y) != np.isnan(y0)
        far = both & ~np.isclose(y, y0, rtol=1e-7, atol=1e-9)
        if far.any() or (onenan & (np.isfinite(y) | np.isfinite(y0))).any():
            bad += 1
    return bad


def run_symcore(name: str, exprs: list[Expr], n_vars: int, repeats: int) -> dict:
    """Median of `repeats` end-to-end dedupe runs (insert + saturate + extract)."""
    times, last = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        last = symcore.dedupe(exprs)
        times.append(time.perf_counter() - t)
    assert last is not None
    return {"d": last, "t": statistics.median(times), "bad": numeric_bad_merges(
        exprs, last.class_of, n_vars)}


def run_peers(name: str, exprs: list[Expr], ours: dict, sample: int) -> list[tuple]:
    d, t_sc, bad = ours["d"], ours["t"], ours["bad"]
    s = d.stats["seconds"]
    rows = [(name, len(exprs), "symcore.dedupe", d.n_classes, t_sc, d.stats["enodes"],
             f"{d.stop_reason.value}; ins {s['insert']:.2f} sat {s['saturate']:.2f} "
             f"ext {s['extract']:.2f}; bad merges {bad}")]
    t = time.perf_counter()
    sp = to_sympy(exprs)
    t_sp = time.perf_counter() - t
    rows.append((name, len(exprs), "sympy canonical", len(set(sp)), t_sp, "",
                 f"symcore {t_sp / t_sc:.1f}x faster, {len(set(sp)) - d.n_classes} fewer classes"))
    try:
        times = []
        for _ in range(3):
            t = time.perf_counter()
            se = to_symengine(exprs)
            times.append(time.perf_counter() - t)
        rows.append((name, len(exprs), "symengine canonical", len(set(se)),
                     statistics.median(times), "",
                     f"{len(set(se)) - d.n_classes} more classes than symcore"))
    except ImportError:  # pragma: no cover
        pass
    if sample:
        import sympy
        rng = random.Random(1)
        picks = rng.sample(range(len(exprs)), min(sample, len(exprs)))
        per = []
        for i in picks:
            t = time.perf_counter()
            sympy.simplify(sp[i])
            per.append(time.perf_counter() - t)
        per_expr = statistics.median(per)
        ours_per = t_sc / len(exprs)
        rows.append((name, len(exprs), f"sympy.simplify (x{len(picks)})", "",
                     per_expr * len(exprs), "",
                     f"median {per_expr * 1e3:.1f} ms/expr (extrapolated); symcore "
                     f"{ours_per * 1e3:.3f} ms/expr = {per_expr / ours_per:.0f}x faster"))
    return rows


def harvested() -> list[tuple[str, list[Expr], int]]:
    here = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures")
    out = []
    for fname, dialect in (("gplearn_population.txt", "gplearn"),
                           ("pyoperon_population.txt", "operon")):
        path = os.path.join(here, fname)
        if not os.path.exists(path):
            continue
        try:
            lines = [ln.strip() for ln in open(path) if ln.strip()]
            exprs = [symcore.read(ln, dialect=dialect) for ln in lines]
        except (AttributeError, ImportError, symcore.SymcoreError) as err:
            print(f"# skipped {fname}: {err}", file=sys.stderr)
            continue
        n_vars = max((max(e.variables(), default=-1) for e in exprs), default=-1) + 1
        out.append((fname.split(".")[0], exprs, max(n_vars, 1)))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="100,1000,10000")
    ap.add_argument("--simplify-sample", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    symcore.dedupe(population(50, 99))  # warm up imports
    pops = [(f"random-{n}", population(n, seed=n), 3)
            for n in [int(s) for s in args.sizes.split(",") if s]] + harvested()
    # symcore first, before sympy fills the heap (its caches slow every later allocation)
    ours = [run_symcore(name, exprs, n_vars, args.repeats) for name, exprs, n_vars in pops]
    rows = []
    for (name, exprs, _), res in zip(pops, ours):
        rows += run_peers(name, exprs, res, args.simplify_sample)
    print(f"{'population':<22}{'N':>7}  {'method':<28}{'classes':>8}{'seconds':>10}"
          f"{'e-nodes':>9}  notes")
    for r in rows:
        cls = f"{r[3]}" if r[3] != "" else "-"
        print(f"{r[0]:<22}{r[1]:>7}  {r[2]:<28}{cls:>8}{r[4]:>10.3f}{str(r[5]):>9}  {r[6]}")


if __name__ == "__main__":
    main()
