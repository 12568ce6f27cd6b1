"""How fast does symcore read real populations?  symcore.read_many against the peers a frontend
would otherwise use to turn text into a tree: sympy.parse_expr (evaluate=False, so no
simplification) and Python's ast.parse (syntax only, no tree of ours).  Same texts, same run.

Populations: the harvested gplearn and pyoperon populations in tests/fixtures (1,000 lines
each), the TPSR/SNIP E2E files, and 200 fixed-seed random symcore texts of ~60 nodes.
Times are medians of --repeats runs; us/node = time / total nodes read; ratio = peer / symcore.
sympy is nan where parse_expr(evaluate=False) raises on the texts (e.g. Max(...) in gplearn's).
Run: python bench/bench_readers.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import ast
import random
import statistics
import time
from pathlib import Path

import symcore
from symcore import call, const, var
from symcore.io.printers import write

ROOT = Path(__file__).resolve().parents[1]
FIX = ROOT / "tests" / "fixtures"


def random_text(rng: random.Random, size: int) -> symcore.Expr:
    stack = [var(rng.randrange(3)) if rng.random() < 0.6 else const(round(rng.uniform(-5, 5), 3))
             for _ in range(size // 2 + 1)]
    while len(stack) > 1:
        if rng.random() < 0.3:
            stack.append(call(rng.choice(("sin", "cos", "exp", "log", "sqrt")), stack.pop()))
        else:
            b, a = stack.pop(), stack.pop()
            stack.append(call(rng.choice(("add", "sub", "mul", "div")), a, b))
        rng.shuffle(stack)
    return stack[0]


def timed(fn, repeats: int) -> float:
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    import sympy
    from sympy.parsing.sympy_parser import parse_expr

    rng = random.Random(0)
    rand = [random_text(rng, 60) for _ in range(200)]
    cases = []
    for name, path, dialect in (("gplearn", FIX / "gplearn_population.txt", "gplearn"),
                                ("pyoperon", FIX / "pyoperon_population.txt", "operon"),
                                ("tpsr e2e", FIX / "frontends" /
                                 "tpsr_srbench_feynman.predicted_tree.txt", "e2e")):
        if path.is_file():
            lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
            cases.append((name, dialect, lines))
    cases.append(("random sympy", "sympy", [write(e, "sympy") for e in rand]))

    print(f"{'population':<14}{'lines':>6}{'nodes':>8}{'symcore ms':>12}{'us/node':>9}"
          f"{'distinct':>9}{'sympy ms':>10}{'ratio':>8}{'ast ms':>9}{'ratio':>8}")
    for name, dialect, lines in cases:
        pop = symcore.read_many(lines, dialect)
        nodes = sum(e.size for e in pop)
        t_sc = timed(lambda: symcore.read_many(lines, dialect), args.repeats)
        # peers read the Python spelling of the same models (sympy dialect text)
        py = [write(e, "sympy") for e in pop]
        local = {f"x{i}": sympy.Symbol(f"x{i}") for i in range(20)}
        try:
            t_sp = timed(lambda: [parse_expr(s, local_dict=local, evaluate=False) for s in py],
                         max(1, args.repeats // 2))
        except Exception:  # protected ops have no SymPy spelling: parse what SymPy can
            t_sp = float("nan")
        t_ast = timed(lambda: [ast.parse(s, mode="eval") for s in py], args.repeats)
        print(f"{name:<14}{len(lines):>6}{nodes:>8}{t_sc * 1e3:>12.1f}{t_sc / nodes * 1e6:>9.2f}"
              f"{len(set(pop.exprs)):>9}{t_sp * 1e3:>10.1f}{t_sp / t_sc:>8.1f}"
              f"{t_ast * 1e3:>9.1f}{t_ast / t_sc:>8.2f}")


if __name__ == "__main__":
    main()
