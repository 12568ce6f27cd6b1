"""Printers: symcore's own text (read back to the identical node) and the other dialects.

All printers walk the flat form, so 10,000-deep trees print without recursion.
"""

from __future__ import annotations

from .ir import Expr, topo
from .ops import OPS

_LEAF_PREC = 100


def _num(v: float) -> str:
    return repr(float(v))


def _leaf_text(n: Expr) -> tuple[str, int]:
    if n.op == "var":
        return (f"x{n.value}" if n.name is None else f"x{n.value}:{n.name}"), _LEAF_PREC
    if n.op == "param":
        return f"p{n.value}", _LEAF_PREC
    v = float(n.value)
    if v < 0 or (v == 0 and str(v).startswith("-")):
        return f"({_num(v)})", _LEAF_PREC
    return _num(v), _LEAF_PREC


def _starts_numeric(s: str) -> bool:
    return s[:1].isdigit() or s[:1] == "." or s.startswith(("inf", "nan"))


def to_text(expr: Expr) -> str:
    """symcore's canonical infix text; `read(to_text(e), dialect="symcore") is e`."""
    memo: dict[Expr, tuple[str, int]] = {}
    for n in topo([expr]):
        if n.is_leaf:
            memo[n] = _leaf_text(n)
            continue
        op = OPS[n.op]
        if op.infix is not None and op.arity == 2:
            (ls, lp), (rs, rp) = memo[n.args[0]], memo[n.args[1]]
            if lp < op.prec or (lp == op.prec and op.right_assoc):
                ls = f"({ls})"
            if rp < op.prec or (rp == op.prec and not op.right_assoc):
                rs = f"({rs})"
            memo[n] = (f"{ls} {op.infix} {rs}" if op.prec < 40 else f"{ls}{op.infix}{rs}", op.prec)
        elif n.op == "neg":
            s, p = memo[n.args[0]]
            if _starts_numeric(s):
                memo[n] = (f"neg({s})", _LEAF_PREC)
            else:
                memo[n] = (f"-{s}" if p >= op.prec else f"-({s})", op.prec)
        else:
            memo[n] = (f"{n.op}({', '.join(memo[a][0] for a in n.args)})", _LEAF_PREC)
    return memo[expr][0]
