"""Local derivatives as IR: instantiates the ops table's derivative templates (symcore.ops
holds them as data, so ops never needs the IR constructors and ir -> ops stays one-way)."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from symcore.errors import OpFieldError, SymcoreError
from symcore.ir import Expr, call, const
from symcore.ops import OPS, Template

__all__ = ["derivatives", "instantiate"]


def instantiate(t: Template, args: Sequence[Expr], out: Expr | None = None) -> Expr:
    """The IR of template `t` with "{i}" bound to args[i] and "{y}" to `out`."""
    if isinstance(t, str):
        if t == "{y}":
            if out is None:
                raise SymcoreError("template refers to {y}, the op's own value, which is unbound")
            return out
        return args[int(t[1:-1])]
    if isinstance(t, tuple):
        head = t[0]
        kids = [instantiate(a, args, out) for a in t[1:]]
        if head.startswith("@"):  # fold numerically: operands must be literals
            if any(k.op != "const" for k in kids):
                raise SymcoreError(f"template {t!r}: {head} needs literal operands")
            with np.errstate(all="ignore"):
                v = OPS[head[1:]].np(*(np.float64(k.value) for k in kids))
            return const(float(v))
        return call(head, *kids)
    return const(float(t))


def derivatives(op: str, args: Sequence[Expr], out: Expr) -> tuple[Expr, ...]:
    """d out / d args[i] of `op` applied to `args` (with value `out`), one per operand."""
    o = OPS[op]
    d: Any = o.need("deriv", "derivatives (fit, Jacobians)")
    if callable(d):
        res = tuple(d(*args, out))
    else:
        res = tuple(instantiate(t, args, out) for t in d)
    if len(res) != o.arity:
        raise OpFieldError(f"operator {op!r}: deriv gave {len(res)} derivative(s) for "
                           f"{o.arity} operand(s)")
    return res
