"""Exact mode of the canonicalising pass: per-node rewrites that keep the value bit for bit
(operand order, sign pushing, IEEE correctly rounded folding over constants)."""

from __future__ import annotations

import math

import numpy as np

from symcore.ir import Expr, const
from symcore.ops import OPS

from symcore.rules.canonical_order import sort_key

# Folding over constants in exact mode: IEEE correctly rounded operations only.
_EXACT_FOLD = frozenset({"add", "sub", "mul", "div", "neg", "sqrt", "abs"})


def _exact_node(op: str, args: tuple[Expr, ...]) -> Expr:
    a0 = args[0]
    if op in _EXACT_FOLD and all(a.op == "const" for a in args):
        with np.errstate(all="ignore"):
            v = OPS[op].np(*(np.float64(a.value) for a in args))
        return const(float(v))
    if op == "neg":
        if a0.op == "neg":
            return a0.args[0]
        return Expr(op, args)
    if op == "powi" and args[1].value == 1.0:
        return a0
    if len(args) != 2:
        return Expr(op, args)
    a1 = args[1]
    c1 = a1.value if a1.op == "const" else None
    c0 = a0.value if a0.op == "const" else None
    if op == "mul":
        if c1 == 1.0 or c0 == 1.0:
            return a0 if c1 == 1.0 else a1
        if c1 == -1.0 or c0 == -1.0:
            return _exact_node("neg", (a0 if c1 == -1.0 else a1,))
        if a0.op == "neg" or a1.op == "neg":
            n0, n1 = a0.op == "neg", a1.op == "neg"
            inner = _exact_node("mul", (a0.args[0] if n0 else a0, a1.args[0] if n1 else a1))
            return inner if n0 and n1 else _exact_node("neg", (inner,))
    elif op == "div":
        if c1 == 1.0:
            return a0
        if c1 == -1.0:
            return _exact_node("neg", (a0,))
        if a0.op == "neg" or a1.op == "neg":
            n0, n1 = a0.op == "neg", a1.op == "neg"
            inner = _exact_node("div", (a0.args[0] if n0 else a0, a1.args[0] if n1 else a1))
            return inner if n0 and n1 else _exact_node("neg", (inner,))
    elif op == "add":
        # x + (-0.0) is x bit for bit; x + 0.0 is not (-0 + 0 = +0)
        if _is_neg_zero(a1) or _is_neg_zero(a0):
            return a0 if _is_neg_zero(a1) else a1
        if a1.op == "neg":
            return _exact_node("sub", (a0, a1.args[0]))
        if a0.op == "neg":
            return _exact_node("sub", (a1, a0.args[0]))
    elif op == "sub":
        if a1.op == "const" and a1.value == 0.0 and not _is_neg_zero(a1):
            return a0
        if a1.op == "neg":
            return _exact_node("add", (a0, a1.args[0]))
    if OPS[op].commutative and op in ("add", "mul") and sort_key(a1) < sort_key(a0):
        return Expr(op, (a1, a0))
    return Expr(op, args)


def _is_neg_zero(e: Expr) -> bool:
    return e.op == "const" and e.value == 0.0 and math.copysign(1.0, e.value) < 0
