"""Compact spelling of a canonical form: undoes, where it saves nodes, the expansions the
canonicalising pass makes for its normal form (signs pulled to the top, constants distributed).
A function of the form alone, so that inputs with one canonical form get one compact text.

Rewrites (bottom-up, each never grows the tree; sound under the default contract: equal up to
rounding, an intermediate that over- or underflows included):
  * c*a + c*b -> c*(a + b), c*a - c*b -> c*(a - b)   (same constant c, either operand of mul,
    or in a quotient's numerator), also as the last two terms of a longer sum;
  * powi(a, 4) -> square(square(a)); an add/sub/mul/div/neg of a NaN constant -> NaN;
    a zero result -> 0.0;
  * square(a) * p / square(b) -> square(a / b) * p, square(a) * p * square(b) -> square(a*b) * p;
  * -x -> x' where the negation is absorbed for free: -c = (-c), -(-a) = a, -(a - b) = b - a,
    -(a + b) = b' - a (b' = -b absorbed), -f(a) = f(-a) for an operand where f is odd (sin,
    tanh, mul, div, ...).
"""

from __future__ import annotations

import math

from symcore.ir import Expr, call, const, topo
from symcore.ops import OPS

__all__ = ["compact"]

_SUMS = ("add", "sub")
#: ops that are NaN wherever an operand is NaN
_NAN_STRICT = ("add", "sub", "mul", "div", "neg")


def _absorb(x: Expr, depth: int = 0) -> Expr | None:
    """An expression equal to -x with at most x's nodes and no new negation, or None."""
    if depth > 32:   # deep chains of odd ops: give up rather than recurse without bound
        return None
    op = x.op
    if op == "const":
        return const(-x.value)
    if op == "neg":
        return x.args[0]
    if op == "sub":
        return call("sub", x.args[1], x.args[0])
    if op == "add":
        a, b = x.args
        nb = _absorb(b, depth + 1)
        if nb is not None:
            return call("sub", nb, a)
        na = _absorb(a, depth + 1)
        if na is not None:
            return call("sub", na, b)
        return None
    spec = OPS.get(op)
    parity = getattr(spec, "parity", ()) if spec is not None else ()
    for i, p in enumerate(parity):
        if p == "odd" and i < len(x.args):
            y = _absorb(x.args[i], depth + 1)
            if y is not None:
                args = list(x.args)
                args[i] = y
                return call(op, *args)
    return None


def _const_factor(m: Expr) -> tuple[float, Expr] | None:
    """(c, a) when m is c*a or a*c with a constant c, or (c*a)/b (then a/b)."""
    if m.op == "div":
        f = _const_factor(m.args[0])
        return None if f is None else (f[0], call("div", f[1], m.args[1]))
    if m.op != "mul":
        return None
    a, b = m.args
    if a.op == "const":
        return a.value, b
    if b.op == "const":
        return b.value, a
    return None


def _square_into(p: Expr, b: Expr, depth: int, op: str = "div") -> Expr | None:
    """p / square(b) (op "div") or p * square(b) (op "mul") with the first square(a) factor of
    the product p made square(a / b) or square(a * b), or None when p has no such factor."""
    if p.op == "square":
        return call("square", call(op, p.args[0], b))
    if p.op != "mul" or depth > 32:
        return None
    for i in (0, 1):
        y = _square_into(p.args[i], b, depth + 1, op)
        if y is not None:
            args = list(p.args)
            args[i] = y
            return call("mul", *args)
    return None


def _node(n: Expr, args: tuple[Expr, ...]) -> Expr:
    op = n.op
    e = n if args == n.args else call(op, *args)
    if op in _NAN_STRICT and any(a.op == "const" and math.isnan(a.value) for a in args):
        return const(math.nan)    # NaN wherever defined: the function is NaN everywhere
    if op in _SUMS:
        fa, fb = _const_factor(args[0]), _const_factor(args[1])
        # same constant (never -0.0 against 0.0: != 0; nan never equals) on both sides
        if fa is not None and fb is not None and fa[0] == fb[0] and fa[0] != 0.0:
            return call("mul", const(fa[0]), call(op, fa[1], fb[1]))
        inner = args[0]
        if fb is not None and inner.op in _SUMS:
            # (A + c*a) - c*b = A + c*(a - b);  (A - c*a) - c*b = A - c*(a + b)
            fa = _const_factor(inner.args[1])
            if fa is not None and fa[0] == fb[0] and fa[0] != 0.0:
                o = op if inner.op == "add" else ("add" if op == "sub" else "sub")
                return call(inner.op, inner.args[0],
                            call("mul", const(fa[0]), call(o, fa[1], fb[1])))
        return e
    if op == "powi" and args[1].op == "const" and args[1].value == 4.0:
        return call("square", call("square", args[0]))   # as many nodes, cheaper ops
    if op in ("div", "mul") and args[1].op == "square":
        y = _square_into(args[0], args[1].args[0], 0, op)
        if y is not None:
            return y
    if op == "neg":
        y = _absorb(args[0])
        if y is not None and y.size <= args[0].size:
            return y
    return e


def compact(e: Expr) -> Expr:
    """The compact spelling of `e` (never more nodes than `e`; `e` itself when none applies)."""
    done: dict[Expr, Expr] = {}
    for n in topo([e]):
        if not n.args:
            done[n] = n
            continue
        done[n] = _node(n, tuple(done[a] for a in n.args))
    out = done[e]
    if out.op == "const" and out.value == 0.0:
        out = const(0.0)   # the sign of a zero result is rounding (soundness contract)
    return out if out.size <= e.size else e
