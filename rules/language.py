"""The e-graph term language, generated from symcore.ops.OPS, and IR -> egglog program text.

Constants stay float64 bit-exact: finite non-negative-zero values travel as `(Num f64)`, -0.0 as
`(o_neg (Num 0.0))` (egglog's f64 identifies -0.0 with 0.0), NaN/±inf as opaque `(Spec i64)`.
"""

from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np

from symcore.errors import SymcoreError
from symcore.ir import Expr, call, const, topo
from symcore.ops import OPS

SORT = "M"
#: ops-table name -> egglog constructor name (one constructor per op, generated)
CTOR: dict[str, str] = {name: f"o_{name}" for name in OPS}
OP_OF: dict[str, str] = {c: n for n, c in CTOR.items()}
#: non-finite constants (codes of the Spec leaf)
SPECIAL: dict[int, float] = {0: math.nan, 1: math.inf, 2: -math.inf}
#: anonymous free parameter (params mode): every occurrence is its own fittable slot
FREE_PARAM = "PFree"
ROOT = "Root"
_MAXF = "1.7976931348623157e308"


def declarations() -> str:
    """The datatype: leaves, one constructor per op, and the unextractable root table."""
    ctors = [f"(Num f64)", "(Var i64)", "(Par i64)", "(Spec i64)", f"({FREE_PARAM})"]
    for name, op in OPS.items():
        ctors.append(f"({CTOR[name]} {' '.join([SORT] * op.arity)})")
    return (f"(datatype {SORT} {' '.join(ctors)})\n"
            f"(constructor {ROOT} (i64) {SORT} :unextractable)\n")


def fnum(v: float) -> str:
    """egglog f64 literal that parses back to exactly `v` (finite)."""
    s = repr(float(v))
    if "e" in s or "E" in s:
        mant, ex = s.lower().split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{ex}"
    return s


def const_text(v: float) -> str:
    v = float(v)
    if math.isnan(v):
        return "(Spec 0)"
    if math.isinf(v):
        return "(Spec 1)" if v > 0 else "(Spec 2)"
    if v == 0.0 and math.copysign(1.0, v) < 0:
        return f"({CTOR['neg']} (Num 0.0))"
    return f"(Num {fnum(v)})"


def fold_constants(expr: Expr) -> Expr:
    """Fold every parameter- and variable-free subtree with the ops table's NumPy reference,
    so a folded constant is bit-identical to what the reference evaluator computes."""
    memo: dict[Expr, Expr] = {}
    with np.errstate(all="ignore"):
        for n in topo([expr]):
            if n.is_leaf:
                memo[n] = n
                continue
            args = tuple(memo[a] for a in n.args)
            if all(a.op == "const" for a in args) and n.op != "powi":
                val = OPS[n.op].np(*(np.float64(a.value) for a in args))
                memo[n] = const(float(np.asarray(val, dtype=np.float64)))
            elif n.op == "powi" and args[0].op == "const":
                val = OPS["powi"].np(np.float64(args[0].value), np.float64(args[1].value))
                memo[n] = const(float(np.asarray(val, dtype=np.float64)))
            else:
                memo[n] = n if args == n.args else call(n.op, *args)
    return memo[expr]


class Encoder:
    """Writes IR expressions as egglog terms (memoised per node: a population shares text)."""

    def __init__(self, anonymous_params: bool = False) -> None:
        self.anonymous_params = anonymous_params
        self._memo: dict[Expr, str] = {}

    def term(self, expr: Expr, free: frozenset[int] = frozenset()) -> str:
        memo = self._memo if not free else {}
        for n in topo([expr]):
            if n in memo:
                continue
            if n.op == "var":
                memo[n] = f"(Var {n.value})"
            elif n.op == "param":
                memo[n] = f"({FREE_PARAM})" if n.value in free else f"(Par {n.value})"
            elif n.op == "const":
                memo[n] = const_text(n.value)
            elif n.op in CTOR:
                memo[n] = f"({CTOR[n.op]} {' '.join(memo[a] for a in n.args)})"
            else:  # pragma: no cover - call() only builds ops of the table
                raise SymcoreError(f"operator {n.op!r} has no e-graph constructor")
        return memo[expr]

    def program(self, exprs: Sequence[Expr], free: Sequence[frozenset[int]] | None = None,
                offset: int = 0) -> str:
        """One text program that unions `Root(i)` with every candidate's term."""
        lines = []
        for i, e in enumerate(exprs):
            f = free[i] if free is not None else frozenset()
            lines.append(f"(union ({ROOT} {offset + i}) {self.term(e, f)})")
        return "\n".join(lines)


def single_use_params(expr: Expr) -> frozenset[int]:
    """Parameter slots that occur once in the tree (those can be fused; tied slots cannot)."""
    counts: dict[int, int] = {}
    stack = [expr]
    while stack:
        n = stack.pop()
        if n.op == "param":
            counts[n.value] = counts.get(n.value, 0) + 1
        stack.extend(n.args)
    return frozenset(k for k, c in counts.items() if c == 1)


def ops_covered(names: Iterable[str]) -> set[str]:
    """Ops of the table that have no constructor among `names` (used by tests)."""
    return set(OPS) - {OP_OF[n] for n in names if n in OP_OF}
