"""The NumPy reference evaluator: exact tool semantics, the oracle every kernel is tested against."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from symcore.errors import DataError
from symcore.ir import Expr, topo
from symcore.ops import OPS


def as_matrix(X: Any, exprs: Sequence[Expr] = (), dtype: Any = np.float64) -> np.ndarray:
    """Data as a (rows, columns) float array.  A pandas DataFrame's columns are matched to the
    variables' display names where they have one, otherwise taken by position."""
    if hasattr(X, "columns") and hasattr(X, "to_numpy"):
        cols = [str(c) for c in X.columns]
        named = {n.value: n.name for e in exprs for n in topo([e]) if n.op == "var" and n.name}
        if named and all(nm in cols for nm in named.values()):
            width = max(max(named) + 1, len(cols))
            order = [cols.index(named[i]) if i in named else i for i in range(width)]
            if any(o >= len(cols) for o in order):
                raise DataError("DataFrame has fewer columns than the expression's variables")
            X = X.iloc[:, order]
        try:
            X = X.to_numpy(dtype=dtype)
        except (TypeError, ValueError) as err:
            raise DataError(f"DataFrame has non-numeric data: {err}") from None
    try:
        A = np.asarray(X, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise DataError(f"data is not numeric: {err}") from None
    if A.ndim == 1:
        A = A.reshape(-1, 1)
    if A.ndim != 2:
        raise DataError(f"data must be 2-D (rows, columns), got shape {A.shape}")
    return A


def evaluate(expr: Expr, X: Any, params: Any = None, dtype: Any = np.float64) -> np.ndarray:
    """Values of `expr` on every row of `X` (rows × columns); `params` fills parameter slots.

    IEEE semantics: NaN and ±inf propagate, nothing raises or warns during evaluation."""
    if not isinstance(expr, Expr):
        raise DataError(f"evaluate takes an Expr, got {type(expr).__name__}")
    try:
        dtype = np.dtype(dtype).type
    except TypeError as err:
        raise DataError(f"unknown dtype {dtype!r}: {err}") from None
    A = as_matrix(X, [expr], dtype)
    n = A.shape[0]
    order = topo([expr])
    need = max((nd.value + 1 for nd in order if nd.op == "param"), default=0)
    p = np.zeros(0, dtype=np.float64) if params is None else np.asarray(params, dtype=np.float64)
    if p.ndim != 1:
        raise DataError(f"params must be a 1-D vector, got shape {p.shape}")
    if p.shape[0] < need:
        raise DataError(f"expression uses {need} parameter(s), got {p.shape[0]} value(s)")
    vals = node_values(order, A, p, dtype)
    out = vals[expr]
    return np.broadcast_to(np.asarray(out, dtype=dtype), (n,)).copy()


def node_values(order: Sequence[Expr], A: np.ndarray, p: np.ndarray,
                dtype: Any = np.float64) -> dict[Expr, Any]:
    """The value of every node of `order` (children before parents) on the rows of `A`: the
    forward sweep shared by the reference evaluator and the reference Jacobian.  Leaves stay
    scalars where they are constant, so callers broadcast."""
    vals: dict[Expr, Any] = {}
    with np.errstate(all="ignore"):
        for nd in order:
            if nd.op == "var":
                if nd.value >= A.shape[1]:
                    raise DataError(f"variable x{nd.value} needs column {nd.value}, data has "
                                    f"{A.shape[1]} column(s)")
                vals[nd] = A[:, nd.value]
            elif nd.op == "const":
                vals[nd] = dtype(nd.value)
            elif nd.op == "param":
                vals[nd] = np.asarray(p[nd.value], dtype=dtype)
            else:
                fn = OPS[nd.op].np
                if fn is None:
                    OPS[nd.op].need("np", "evaluate")
                vals[nd] = fn(*(vals[a] for a in nd.args))
    return vals

