"""The bundled example behind `symcore run --example`: data from AI Feynman formula I.6.2 and a
seeded population of candidates shaped like a real search's (Operon infix text).

Regenerate the committed files with `python -m symcore.app.example [DIR]` (deterministic).
"""

from __future__ import annotations

import json
import math
import sys
from importlib import resources
from pathlib import Path
from typing import Callable

import numpy as np

from symcore.evaluate import evaluate
from symcore.ir import Expr, call, const, replace, topo, var

__all__ = ["formula", "true_expr", "example_data", "example_population", "write_example",
           "bundled_paths", "SEED", "N_ROWS", "N_CANDIDATES", "DIALECT"]

SEED = 20260601
N_ROWS = 1000
N_CANDIDATES = 3000
DIALECT = "operon"          # Operon's InfixFormatter text: fully parenthesised, X1.. 1-based
POPULATION_FILE = "example_population.txt"
DATA_FILE = "example_data.csv"
FORMULA_FILE = "example_formula.json"

_A = 1.0 / math.sqrt(2.0 * math.pi)   # 0.3989422804014327
_B = -0.5
_C = math.sqrt(2.0 * math.pi)         # 2.5066282746310002


def formula() -> dict:
    """The AI Feynman record the example is generated from (name, formula, variable ranges)."""
    return json.loads(resources.files("symcore").joinpath("data", FORMULA_FILE).read_text())


def true_expr() -> Expr:
    """I.6.2, f = exp(-(theta/sigma)^2 / 2) / (sqrt(2 pi) sigma), over x0 = sigma, x1 = theta."""
    x0, x1 = var(0), var(1)
    return call("exp", const(_B) * call("square", x1 / x0)) / (const(_C) * x0)


def example_data(n_rows: int = N_ROWS, seed: int = SEED) -> tuple[np.ndarray, np.ndarray,
                                                                   list[str]]:
    """(X, y, column names): variables drawn uniformly from the formula's ranges, y exact."""
    rec = formula()
    rng = np.random.default_rng(seed)
    cols = [rng.uniform(v["low"], v["high"], n_rows) for v in rec["variables"]]
    X = np.column_stack(cols)
    y = evaluate(true_expr(), X)
    return X, y, [v["name"] for v in rec["variables"]] + [rec["output"]]


# ---------------------------------------------------------------------------------------------
# Population: what a search's final generations look like -- the right structure with constants
# of every accuracy, the same function written many ways, near misses, early-generation junk and
# many exact duplicates.

def _printed(rng: np.random.Generator, v: float) -> float:
    # a tool prints 3 to 17 significant digits
    digits = int(rng.choice([3, 4, 5, 6, 8, 17], p=[0.2, 0.2, 0.15, 0.15, 0.1, 0.2]))
    return float(f"{v:.{digits}g}")


def _perturb(rng: np.random.Generator, v: float) -> float:
    scale = float(rng.choice([0.0, 1e-4, 1e-3, 1e-2, 5e-2, 0.2], p=[0.15, 0.2, 0.2, 0.2, 0.15,
                                                                        0.1]))
    return _printed(rng, v * (1.0 + scale * rng.standard_normal()))


def _right_forms(rng: np.random.Generator) -> Expr:
    """The true structure, written one of several ways, constants perturbed and rounded."""
    x0, x1 = var(0), var(1)
    a, b, c = _perturb(rng, _A), _perturb(rng, _B), _perturb(rng, _C)
    r = x1 / x0
    forms: list[Callable[[], Expr]] = [
        lambda: const(a) * call("exp", const(b) * call("square", r)) / x0,
        lambda: call("exp", const(b) * call("square", r)) / (const(c) * x0),
        lambda: const(a) / x0 * call("exp", const(b) * (r * r)),
        lambda: call("exp", call("square", x1) * const(b) / call("square", x0)) * const(a) / x0,
        lambda: const(a) * call("exp", call("square", r) * const(b)) / x0,
        lambda: call("exp", const(b) * call("square", r)) * (const(a) / x0),
        lambda: const(a) * (call("exp", const(b) * call("square", r)) / x0),
        lambda: call("exp", const(b) * call("square", r) - call("log", x0)) * const(a),
        lambda: call("exp", const(2 * b) * call("square", r) / const(2.0)) / (const(c) * x0),
    ]
    return forms[int(rng.integers(len(forms)))]()


def _rewrite(rng: np.random.Generator, e: Expr, n: int) -> Expr:
    """Apply `n` value-preserving rewrites at random nodes (commute, square <-> product,
    regroup, add a neutral element): the same function as a search re-derives it."""
    for _ in range(n):
        nodes = [m for m in topo([e]) if not m.is_leaf]
        if not nodes:
            return e
        target = nodes[int(rng.integers(len(nodes)))]
        new = _rewrite_node(rng, target)
        if new is target:
            continue
        e = replace(e, target, new)
    return e


def _rewrite_node(rng: np.random.Generator, m: Expr) -> Expr:
    op, args = m.op, m.args
    choices: list[Callable[[], Expr]] = []
    if op in ("add", "mul"):
        choices.append(lambda: call(op, args[1], args[0]))
        if args[1].op == op:  # a o (b o c) -> (a o b) o c
            choices.append(lambda: call(op, call(op, args[0], args[1].args[0]), args[1].args[1]))
    if op == "square":
        choices.append(lambda: args[0] * args[0])
    if op == "div":
        choices.append(lambda: args[0] * call("div", const(1.0), args[1]))
        if args[1].op == "mul":
            choices.append(lambda: args[0] / args[1].args[0] / args[1].args[1])
    if op == "sub":
        choices.append(lambda: args[0] + call("neg", args[1]))
    choices.append(lambda: m * const(1.0))
    choices.append(lambda: m + const(0.0))
    return choices[int(rng.integers(len(choices)))]()


_UNARY = ("exp", "sin", "cos", "sqrt", "log", "square", "neg")
_BINARY = ("add", "sub", "mul", "div")


def _random_tree(rng: np.random.Generator, depth: int) -> Expr:
    if depth <= 0 or rng.random() < 0.3:
        if rng.random() < 0.65:
            return var(int(rng.integers(2)))
        return const(_printed(rng, float(rng.uniform(-3, 3))))
    if rng.random() < 0.35:
        return call(str(rng.choice(_UNARY)), _random_tree(rng, depth - 1))
    return call(str(rng.choice(_BINARY)), _random_tree(rng, depth - 1),
                _random_tree(rng, depth - 1))


def _mutate(rng: np.random.Generator, e: Expr) -> Expr:
    """A near miss: one subtree replaced, or one operator swapped for another of its arity."""
    nodes = topo([e])
    target = nodes[int(rng.integers(len(nodes)))]
    if target.is_leaf or rng.random() < 0.5:
        new = _random_tree(rng, int(rng.integers(0, 3)))
    else:
        pool = _UNARY if len(target.args) == 1 else _BINARY
        new = call(str(rng.choice([o for o in pool if o != target.op])), *target.args)
    return replace(e, target, new)


def _distinct_candidates(rng: np.random.Generator, n: int) -> list[tuple[Expr, float]]:
    """(expression, popularity) pairs; popular candidates get duplicated more."""
    out: list[tuple[Expr, float]] = []
    partial = [
        lambda: const(_perturb(rng, _A)) / var(0),
        lambda: const(_perturb(rng, _A)) * call("exp", const(_perturb(rng, _B)) * var(1)) / var(0),
        lambda: call("exp", const(_perturb(rng, _B)) * call("square", var(1))),
        lambda: const(_perturb(rng, 0.3)) - const(_perturb(rng, 0.05)) * var(1) / var(0),
    ]
    rights: list[Expr] = []
    while len(out) < n:
        u = rng.random()
        if u < 0.30 or not rights:
            rights.append(_right_forms(rng))
            out.append((rights[-1], 6.0))
        elif u < 0.50:  # the same function re-derived in another form
            seen = rights[int(rng.integers(len(rights)))]
            out.append((_rewrite(rng, seen, int(rng.integers(1, 4))), 2.0))
        elif u < 0.75:
            out.append((_mutate(rng, rights[int(rng.integers(len(rights)))]), 1.5))
        elif u < 0.85:
            out.append((partial[int(rng.integers(len(partial)))](), 3.0))
        else:
            out.append((_random_tree(rng, int(rng.integers(1, 5))), 0.5))
    return out


def example_population(n: int = N_CANDIDATES, seed: int = SEED) -> list[str]:
    """`n` candidate lines in Operon's infix text (deterministic for a seed)."""
    from symcore.io.printers import write
    rng = np.random.default_rng(seed)
    base = _distinct_candidates(rng, max(1, (n * 9) // 20))
    texts: list[str] = []
    weights: list[float] = []
    for e, w in base:
        try:
            texts.append(write(e, DIALECT))
        except Exception:  # noqa: BLE001 - an operator the dialect cannot print: skip it
            continue
        weights.append(w)
    p = np.array(weights) * rng.pareto(1.5, len(weights))  # heavy-tailed duplication
    p /= p.sum()
    extra = rng.choice(len(texts), size=max(0, n - len(texts)), p=p)
    lines = texts + [texts[i] for i in extra]
    order = rng.permutation(len(lines))
    return [lines[i] for i in order][:n]


def write_example(directory: str | Path, n_rows: int = N_ROWS, n_candidates: int = N_CANDIDATES,
                  seed: int = SEED) -> tuple[Path, Path]:
    """Write the population and the data CSV into `directory`; return their paths."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    X, y, names = example_data(n_rows, seed)
    data = d / DATA_FILE
    with data.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(",".join(names) + "\n")
        for row, t in zip(X, y):
            fh.write(",".join(repr(float(v)) for v in (*row, t)) + "\n")
    rec = formula()
    pop = d / POPULATION_FILE
    with pop.open("w", encoding="utf-8", newline="\n") as fh:
        fh.write(f"# symcore example population: {n_candidates} candidates for AI Feynman "
                 f"{rec['name']}, f = {rec['formula']}\n")
        fh.write(f"# generated by symcore.app.example (seed {seed}) in Operon's infix text; "
                 f"X1 = {names[0]}, X2 = {names[1]}\n")
        for line in example_population(n_candidates, seed):
            fh.write(line + "\n")
    return pop, data


def bundled_paths() -> tuple[Path, Path]:
    """(population file, data CSV) shipped inside the package."""
    root = resources.files("symcore").joinpath("data")
    return Path(str(root.joinpath(POPULATION_FILE))), Path(str(root.joinpath(DATA_FILE)))


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else Path(__file__).parent.parent / "data"
    pop, data = write_example(target)
    print(f"wrote {pop} and {data}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
