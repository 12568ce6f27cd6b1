"""Perturbed versions of ground-truth formulas (constant changed, a term dropped, an operator
swapped, a constant offset, a scale), for the metrics tests and bench/bench_metrics.py."""

from __future__ import annotations

import random

import sympy

_SWAP = {sympy.sin: sympy.cos, sympy.cos: sympy.sin, sympy.exp: sympy.log, sympy.log: sympy.exp,
         sympy.tan: sympy.sin, sympy.tanh: sympy.sinh, sympy.sinh: sympy.cosh,
         sympy.cosh: sympy.sinh, sympy.asin: sympy.acos, sympy.acos: sympy.asin,
         sympy.atan: sympy.tan}


def _nodes(e):
    return list(sympy.preorder_traversal(e))


def constant_changed(e, rng):
    nums = [a for a in e.atoms(sympy.Number) if a not in (sympy.S.One, sympy.S.NegativeOne)]
    if not nums:
        return 1.5 * e
    a = rng.choice(sorted(nums, key=str))
    return e.xreplace({a: a * sympy.Rational(3, 2)})


def term_dropped(e, rng):
    adds = [n for n in _nodes(e) if isinstance(n, sympy.Add)]
    if adds:
        n = rng.choice(adds)
        args = list(n.args)
        args.pop(rng.randrange(len(args)))
        return e.xreplace({n: sympy.Add(*args)})
    muls = [n for n in _nodes(e) if isinstance(n, sympy.Mul) and len(n.args) > 1]
    if muls:
        n = rng.choice(muls)
        args = list(n.args)
        args.pop(rng.randrange(len(args)))
        return e.xreplace({n: sympy.Mul(*args)})
    return e + 1


def operator_swapped(e, rng):
    fns = [n for n in _nodes(e) if n.func in _SWAP]
    if fns:
        n = rng.choice(fns)
        return e.xreplace({n: _SWAP[n.func](*n.args)})
    ops = [n for n in _nodes(e) if isinstance(n, (sympy.Add, sympy.Mul)) and len(n.args) > 1]
    if ops:
        n = rng.choice(ops)
        return e.xreplace({n: (sympy.Mul if isinstance(n, sympy.Add) else sympy.Add)(*n.args)})
    return sympy.sin(e)


def offset(e, rng):
    return e + sympy.Float(rng.choice([0.5, 2.0, -3.25]))


def scaled(e, rng):
    return sympy.Float(rng.choice([0.5, 2.0, -3.25])) * e


KINDS = {"identity": lambda e, rng: e, "constant": constant_changed, "drop": term_dropped,
         "swap": operator_swapped, "offset": offset, "scale": scaled}


def perturbed_pairs(truths, kinds=("identity", "constant", "drop", "swap", "offset"), seed=0):
    """[(kind, pred_text, true_text)] for every truth text and kind (fixed seed)."""
    rng = random.Random(seed)
    out = []
    for t in truths:
        e = sympy.sympify(t)
        for k in kinds:
            out.append((k, str(KINDS[k](e, rng)), t))
    return out
