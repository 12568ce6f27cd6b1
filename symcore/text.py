"""symcore's own text form of an expression (`str(expr)`), in the core so the IR can print itself.

The other dialects, LaTeX, C and NumPy source live in symcore.io.printers, which re-exports
`to_text`.  Printing walks the flat form through an explicit stack: 10,000-deep trees print
without recursion and in time linear in the length of the text.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Union

from symcore.ops import OPS
from symcore.walk import topo

if TYPE_CHECKING:  # pragma: no cover - the IR imports this module, not the reverse
    from symcore.ir import Expr

__all__ = ["to_text"]

LEAF_PREC = 100  # binding power of leaves and call-like forms: never parenthesised

Parts = tuple[Union[str, "Expr"], ...]


def emit(root: "Expr", parts: "dict[Expr, Parts]") -> str:
    """Expand the piece lists from `root` (strings are output, Exprs expand in place)."""
    out: list[str] = []
    stack: list[Union[str, Expr]] = [root]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
        else:
            stack.extend(reversed(parts[item]))
    return "".join(out)


def _leaf_text(n: "Expr") -> str:
    if n.op == "var":
        return f"x{n.value}" if n.name is None else f"x{n.value}:{n.name}"
    if n.op == "param":
        return f"p{n.value}"
    v = float(n.value)
    # repr round-trips every float64; -0.0 and negatives are parenthesised so `a - (-1.0)` and
    # `x0 * (-0.0)` read back as the same constants
    if v < 0 or (v == 0 and str(v).startswith("-")):
        return f"({v!r})"
    return repr(v)


def _starts_numeric(s: str) -> bool:
    return s[:1].isdigit() or s[:1] == "." or s.startswith(("inf", "nan"))


def to_text(expr: "Expr") -> str:
    """symcore's canonical infix text; `read(to_text(e), dialect="symcore") is e`.

    Conventions: variables `x0` (with a display name `x0:mass`), parameters `p0`, negative
    constants parenthesised `(-2.5)`, `neg(2.5)` for the negation of a numeric-leading operand,
    other operators by name as calls, e.g. `powi(x0, 3.0)`."""
    parts: dict[Expr, Parts] = {}
    prec: dict[Expr, int] = {}
    numeric: dict[Expr, bool] = {}      # does the node's text start with a number?
    for n in topo([expr]):
        if n.is_leaf:
            t = _leaf_text(n)
            parts[n], prec[n], numeric[n] = (t,), LEAF_PREC, _starts_numeric(t)
            continue
        op = OPS[n.op]
        if op.infix is not None and op.arity == 2:
            a, b = n.args
            wl = prec[a] < op.prec or (prec[a] == op.prec and op.right_assoc)
            wr = prec[b] < op.prec or (prec[b] == op.prec and not op.right_assoc)
            sym = f" {op.infix} " if op.prec < 40 else op.infix
            parts[n] = (*(("(", a, ")") if wl else (a,)), sym, *(("(", b, ")") if wr else (b,)))
            prec[n], numeric[n] = op.prec, (not wl) and numeric[a]
        elif n.op == "neg":
            a = n.args[0]
            if numeric[a]:
                parts[n], prec[n] = ("neg(", a, ")"), LEAF_PREC
            else:
                parts[n] = ("-", a) if prec[a] >= op.prec else ("-(", a, ")")
                prec[n] = op.prec
            numeric[n] = False
        else:
            items: list[Union[str, Expr]] = [f"{n.op}("]
            for i, a in enumerate(n.args):
                if i:
                    items.append(", ")
                items.append(a)
            items.append(")")
            parts[n], prec[n], numeric[n] = tuple(items), LEAF_PREC, False
    return emit(expr, parts)
