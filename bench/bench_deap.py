"""DEAP's symbolic-regression example, end to end: plain Python evaluation vs symcore's Evaluator.

Same primitive set as deap/examples/gp/symbreg.py (add, sub, mul, protectedDiv, neg, cos, sin,
an ephemeral randint(-1, 1)), same operators (eaSimple, cxpb 0.5, mutpb 0.1, tournament 3,
height limit 17), target x**4 + x**3 + x**2 + x on N evenly spaced points in [-1, 1).  The
plain run evaluates as the example does (`math.fsum((func(x) - y)**2 ...) / len(points)`, +inf
where Python raises); the symcore run registers `Evaluator` as `evaluate` and its `map` as
`map`.  Both runs use the same seed; the script checks the logbooks are identical (nevals
exactly, min/avg fitness within 1e-9 relative) with the same hall of fame and final population,
and prints total time, evaluation-stage time and the ratios (medians over interleaved repeats).

Run: python bench/bench_deap.py [--points 1000,10000] [--pop 1000] [--gens 20] [--repeats 2]
     python bench/bench_deap.py --quick      (points 1000,10000, pop 300, 10 gens, 1 repeat)
"""

from __future__ import annotations

import argparse
import math
import operator
import random
import statistics
import sys
import time
from functools import partial

import numpy as np
from deap import algorithms, base, creator, gp, tools

from symcore.integrations.deap import Evaluator


def protectedDiv(left, right):  # verbatim from DEAP's example
    try:
        return left / right
    except ZeroDivisionError:
        return 1


def make_pset() -> gp.PrimitiveSet:
    pset = gp.PrimitiveSet("MAIN", 1)
    pset.addPrimitive(operator.add, 2)
    pset.addPrimitive(operator.sub, 2)
    pset.addPrimitive(operator.mul, 2)
    pset.addPrimitive(protectedDiv, 2)
    pset.addPrimitive(operator.neg, 1)
    pset.addPrimitive(math.cos, 1)
    pset.addPrimitive(math.sin, 1)
    pset.addEphemeralConstant("rand101", partial(random.randint, -1, 1))
    pset.renameArguments(ARG0="x")
    return pset


PSET = make_pset()
creator.create("FitnessMin", base.Fitness, weights=(-1.0,))
creator.create("Individual", gp.PrimitiveTree, fitness=creator.FitnessMin)


def eval_symbreg(individual, rows, ys):
    """The example's evaluation on given (x, y) points; +inf where Python raises."""
    func = gp.compile(individual, PSET)
    try:
        v = math.fsum((func(*r) - t) ** 2 for r, t in zip(rows, ys)) / len(rows)
    except (ArithmeticError, ValueError):
        return (math.inf,)
    return (v if math.isfinite(v) else math.inf,)


class Timed:
    """Wraps the evaluation stage (toolbox.map over toolbox.evaluate) to time it."""

    def __init__(self, mapper):
        self.mapper, self.seconds = mapper, 0.0

    def __call__(self, func, *its):
        t = time.perf_counter()
        out = list(self.mapper(func, *its))
        self.seconds += time.perf_counter() - t
        return out


def run(mode: str, n_points: int, pop_size: int, ngen: int, seed: int = 318) -> dict:
    x = -1.0 + 2.0 * np.arange(n_points) / n_points
    y = x ** 4 + x ** 3 + x ** 2 + x
    t0 = time.perf_counter()
    toolbox = base.Toolbox()
    toolbox.register("expr", gp.genHalfAndHalf, pset=PSET, min_=1, max_=2)
    toolbox.register("individual", tools.initIterate, creator.Individual, toolbox.expr)
    toolbox.register("population", tools.initRepeat, list, toolbox.individual)
    if mode == "symcore":
        ev = Evaluator(PSET, x, y)
        toolbox.register("evaluate", ev)
        timed = Timed(ev.map)
    else:
        toolbox.register("evaluate", eval_symbreg, rows=[(v,) for v in x.tolist()],
                         ys=y.tolist())
        timed = Timed(map)
    toolbox.register("map", timed)
    toolbox.register("select", tools.selTournament, tournsize=3)
    toolbox.register("mate", gp.cxOnePoint)
    toolbox.register("expr_mut", gp.genFull, min_=0, max_=2)
    toolbox.register("mutate", gp.mutUniform, expr=toolbox.expr_mut, pset=PSET)
    limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=17)
    toolbox.decorate("mate", limit)
    toolbox.decorate("mutate", limit)
    random.seed(seed)
    pop = toolbox.population(n=pop_size)
    hof = tools.HallOfFame(1)
    stats = tools.Statistics(lambda ind: ind.fitness.values)
    stats.register("avg", np.mean)
    stats.register("min", np.min)
    pop, log = algorithms.eaSimple(pop, toolbox, 0.5, 0.1, ngen, stats=stats, halloffame=hof,
                                   verbose=False)
    total = time.perf_counter() - t0
    return {"total": total, "eval": timed.seconds, "log": log, "hof": [str(h) for h in hof],
            "pop": [str(p) for p in pop], "evals": sum(r["nevals"] for r in log),
            "nodes": sum(len(p) for p in pop) / len(pop),
            "stats": dict(ev.stats) if mode == "symcore" else {}}


def same(a: dict, b: dict) -> tuple[bool, float]:
    """(identical runs?, worst relative difference of min/avg fitness)."""
    worst = 0.0
    ok = len(a["log"]) == len(b["log"]) and a["hof"] == b["hof"] and a["pop"] == b["pop"]
    for ra, rb in zip(a["log"], b["log"]):
        ok &= ra["nevals"] == rb["nevals"]
        for k in ("min", "avg"):
            u, v = float(ra[k]), float(rb[k])
            if u == v:
                continue
            if not (math.isfinite(u) and math.isfinite(v)):
                ok = False
                continue
            rel = abs(u - v) / max(abs(u), abs(v))
            worst = max(worst, rel)
    return ok and worst <= 1e-9, worst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--points", default="1000,10000")
    ap.add_argument("--pop", type=int, default=1000)
    ap.add_argument("--gens", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args(argv)
    if a.quick:
        a.pop, a.gens, a.repeats = 300, 10, 1
    sizes = [int(s) for s in a.points.split(",")]
    print(f"DEAP symbreg example: population {a.pop}, {a.gens} generations, "
          f"{a.repeats} interleaved repeat(s)")
    hdr = (f"{'points':>7} {'evals':>6} {'nodes':>6} {'python s':>9} {'symcore s':>9} "
           f"{'speedup':>8} {'py eval s':>9} {'sc eval s':>9} {'eval x':>7} {'identical':>9}"
           f" {'max rel':>8}")
    print(hdr)
    all_ok = True
    for n in sizes:
        res: dict[str, list[dict]] = {"python": [], "symcore": []}
        for r in range(a.repeats):
            order = ("python", "symcore") if r % 2 == 0 else ("symcore", "python")
            for mode in order:
                res[mode].append(run(mode, n, a.pop, a.gens))
        py, sc = res["python"], res["symcore"]
        ok, worst = True, 0.0
        for p, s in zip(py, sc):
            o, w = same(p, s)
            ok &= o
            worst = max(worst, w)
        all_ok &= ok
        tp, ts = statistics.median(r["total"] for r in py), statistics.median(r["total"] for r in sc)
        ep, es = statistics.median(r["eval"] for r in py), statistics.median(r["eval"] for r in sc)
        print(f"{n:>7} {py[0]['evals']:>6} {py[0]['nodes']:>6.1f} {tp:>9.2f} {ts:>9.2f} "
              f"{tp / ts:>7.1f}x {ep:>9.2f} {es:>9.3f} {ep / es:>6.0f}x {str(ok):>9} "
              f"{worst:>8.1e}")
        print(f"        symcore evaluator stats: {sc[0]['stats']}")
        sys.stdout.flush()
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
