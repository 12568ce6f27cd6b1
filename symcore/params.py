"""Numeric literals <-> fittable parameters: lift a frontend's printed constants into parameter
slots (starting values = the literals) so the model can be refit, and bind fitted values back.

Which literals are lifted (``skip``):

* ``"int_exponents"`` (default): every literal except integer-valued exponents of ``pow`` and
  ``pow_abs`` (``x**2`` stays a square: lifting it to a real exponent would make the model NaN for
  negative ``x`` as soon as the exponent moves off the integer).
* ``"integers"``: every literal that is not integer-valued (``2*x`` keeps its 2).
* ``"none"``: every literal.
* a callable ``keep(value, parent_op, position) -> bool``: literals for which it returns True stay.

Always kept as literals whatever ``skip`` says: the exponent of ``powi`` (the IR requires an integer
constant there) and non-finite literals (NaN or ±inf is no starting point for a fit).

Slots: every *occurrence* of a literal gets its own slot (``2*x + 2*y`` gives two parameters, as
frontends fit them), numbered left to right as the literals appear in the printed expression,
after the parameters the expression already has.  ``share=True`` gives one slot per distinct
literal value instead.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Union

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.ir import Expr, const, map_leaves, param, topo

__all__ = ["lift_constants", "bind_params"]

KeepFn = Callable[[float, Union[str, None], int], bool]
_MODES = ("int_exponents", "integers", "none")
_POW_OPS = ("pow", "pow_abs")


def _is_int(v: float) -> bool:
    return math.isfinite(v) and v == int(v)


def _keeper(skip: Any) -> KeepFn:
    if callable(skip):
        return skip
    if skip == "int_exponents":
        return lambda v, parent, pos: parent in _POW_OPS and pos == 1 and _is_int(v)
    if skip == "integers":
        return lambda v, parent, pos: _is_int(v)
    if skip == "none":
        return lambda v, parent, pos: False
    raise SymcoreError(f"skip must be one of {', '.join(_MODES)} or a callable, got {skip!r}")


def _liftable(keep: KeepFn, leaf: Expr, parent: str | None, pos: int) -> bool:
    if leaf.op != "const" or not math.isfinite(leaf.value):
        return False
    if parent == "powi" and pos == 1:
        return False
    return not keep(float(leaf.value), parent, pos)


def lift_constants(expr: Expr, *, skip: Any = "int_exponents", share: bool = False,
                   params: Any = None) -> tuple[Expr, np.ndarray]:
    """Turn numeric literals of `expr` into parameter slots; return the new expression and the
    full parameter vector (existing slots from `params`, lifted slots = the literals).

    An expression that already has parameters keeps their slots; `params` gives their values
    (required then).  Lifted slots are appended after them."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"lift_constants takes an Expr, got {type(expr).__name__}")
    keep = _keeper(skip)
    base = expr.n_params
    if base:
        if params is None:
            raise DataError(f"expression already has {base} parameter(s): pass their values "
                            f"as params=")
        start = np.asarray(params, dtype=np.float64)
        if start.ndim != 1 or start.shape[0] < base:
            raise DataError(f"params must be a 1-D vector of at least {base} value(s), got shape "
                            f"{start.shape}")
        values: list[float] = [float(v) for v in start[:base]]
    else:
        values = []

    # Which nodes contain a liftable literal occurrence somewhere below them (context = parent).
    has: dict[Expr, bool] = {}
    for n in topo([expr]):
        has[n] = any(has[a] or _liftable(keep, a, n.op, i) for i, a in enumerate(n.args))
    if expr.is_leaf:
        if not _liftable(keep, expr, None, 0):
            return expr, np.asarray(values, dtype=np.float64)
        return param(base), np.asarray(values + [float(expr.value)], dtype=np.float64)
    if not has[expr]:
        return expr, np.asarray(values, dtype=np.float64)

    shared: dict[float, Expr] = {}

    def new_slot(leaf: Expr) -> Expr:
        v = float(leaf.value)
        if share and v in shared:
            return shared[v]
        p = param(len(values))
        values.append(v)
        if share:
            shared[v] = p
        return p

    # Iterative post-order walk over tree positions (a shared subtree is visited once per
    # occurrence, so every literal occurrence gets its own slot), left to right.
    stack: list[tuple[Expr, int, list[Expr]]] = [(expr, 0, [])]
    result: Expr | None = None
    while stack:
        node, i, built = stack[-1]
        if i < len(node.args):
            stack[-1] = (node, i + 1, built)
            child = node.args[i]
            if child.is_leaf:
                built.append(new_slot(child) if _liftable(keep, child, node.op, i) else child)
            elif has[child]:
                stack.append((child, 0, []))
            else:
                built.append(child)
            continue
        stack.pop()
        out = Expr(node.op, tuple(built))
        if stack:
            stack[-1][2].append(out)
        else:
            result = out
    assert result is not None
    return result, np.asarray(values, dtype=np.float64)


def bind_params(expr: Expr, values: Any) -> Expr:
    """Replace every parameter slot `p_i` of `expr` by the literal `values[i]`."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"bind_params takes an Expr, got {type(expr).__name__}")
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise DataError(f"values must be a 1-D vector, got shape {v.shape}")
    need = expr.n_params
    if v.shape[0] < need:
        raise DataError(f"expression uses {need} parameter(s), got {v.shape[0]} value(s)")
    return map_leaves(expr, lambda leaf: const(float(v[leaf.value])) if leaf.op == "param"
                      else leaf)
