"""Guards on canonical nodes: a per-call memo of which nodes are provably finite / non-zero,
mirroring the e-graph analysis (symcore.rules.analysis)."""

from __future__ import annotations

import math

from symcore.ir import Expr

from symcore.rules import analysis

# Ops whose value is finite for finite operands (the e-graph analysis' tables: + - * of finite
# values count as finite, an overflow there being rounding at an intermediate).
_FINITE_OPS = frozenset(getattr(analysis, "FINITE_ARITH", ()) + getattr(analysis, "FINITE_ARITH_UNARY", ())
                        + getattr(analysis, "FINITE_UNARY", ()) + getattr(analysis, "FINITE_BINARY", ()))


class _Facts:
    """Per-call memo of `finite` (finite wherever the inputs are) and `nonzero` (finite and
    never 0) over canonical nodes, mirroring the e-graph analysis."""

    def __init__(self) -> None:
        self.fin: dict[Expr, bool] = {}

    def finite(self, e: Expr) -> bool:
        fin = self.fin
        r = fin.get(e)
        if r is not None:
            return r
        stack = [e]
        while stack:
            n = stack[-1]
            if n in fin:
                stack.pop()
                continue
            if not n.args:
                fin[n] = n.op != "const" or math.isfinite(n.value)
                stack.pop()
                continue
            todo = [a for a in n.args if a not in fin]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            if n.op == "powi":
                fin[n] = fin[n.args[0]] and n.args[1].value >= 0
            else:
                fin[n] = n.op in _FINITE_OPS and all(fin[a] for a in n.args)
        return fin[e]

    def nonzero(self, e: Expr) -> bool:
        while e.op in ("neg", "abs"):
            e = e.args[0]
        return e.op == "const" and math.isfinite(e.value) and e.value != 0.0


def _finite_num(v: float) -> bool:
    return math.isfinite(v)
