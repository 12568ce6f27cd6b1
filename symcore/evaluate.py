"""The NumPy reference evaluator: exact tool semantics, the oracle every kernel is tested against.

Semantics table (IEEE-754 in the evaluation dtype; NaN and ±inf propagate; the kernels of tier 0
and tier 1 follow it, tests/codegen/test_edges.py checks every op on ±0, ±inf, NaN,
subnormals, integer-valued and huge exponents, values around the protected thresholds):

=========================  ======================================================  ===========
op                         value                                                   kernels
=========================  ======================================================  ===========
add sub mul div neg abs    the IEEE operation (square = x*x, cube = (x*x)*x,        bit-identical
square cube inv sqrt aq    inv = 1/x, aq = a/sqrt(1+b*b))
sign max min fmax fmin     NumPy's (np.sign, np.maximum/minimum, np.fmax/fmin);     bit-identical
                           a tie (+0 vs -0) gives the second operand (NumPy's
                           own fmax/fmin give either, by array length)
pdiv plog pinv             gplearn's: |x| > 0.001 (ordered: NaN takes the fallback)  bit-identical
sqrt_abs                   sqrt(|x|)                                               bit-identical
powi(x, k), |k| <= 16      binary powering: acc*=base on each set bit of |k|,      bit-identical
                           base squared between; k < 0: 1/x^|k|, or (1/x)^|k|
                           where x^|k| overflows for finite x (subnormal results
                           are kept); k = 0 gives 1 (also for NaN)
pow(x, y), pow_abs         y integer-valued with |y| <= 16: powi's sequence        bit-identical
                           (x^2.0 == x*x); other y: C99 pow (pow(-inf, 0.5) = inf)  LIBM_ULPS
powi(x, k), |k| > 16       C99 pow(x, float(k))                                    LIBM_ULPS
exp log sin cos tan sinh   the math library's (NumPy here; libm, libmvec or         LIBM_ULPS
cosh tanh asin acos atan   symcore's vector math in the kernels); log_abs/plog/
cbrt asinh acosh atanh     dlog are log of the exactly computed |x| (+1e-6)
log_abs plog dlog
=========================  ======================================================  ===========

"LIBM_ULPS": within LIBM_ULPS units in the last place of the reference and equal to it bit for
bit wherever either value is NaN, ±inf or ±0 (math libraries round differently; they agree on
special values).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from symcore.errors import DataError
from symcore.ir import Expr, topo
from symcore.ops import OPS


#: ops whose value comes from a math library (see the table above; pow, pow_abs and powi are
#: math-library values only for exponents that are not small integers)
LIBM_OPS = frozenset({"exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin",
                      "acos", "atan", "cbrt", "asinh", "acosh", "atanh", "log_abs", "plog",
                      "dlog"})
#: how many units in the last place a kernel's math-library value may differ from the reference
LIBM_ULPS = 2


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


def as_rows(v: Any, n: int, name: str, dtype: Any = np.float64) -> np.ndarray:
    """A per-row vector (y, weights) checked against n rows: float64 values rounded to the
    data's `dtype` (the kernels see them in that precision, then reduce in float64); a (n, 1)
    column is accepted; non-numeric, wrongly shaped or non-finite input raises DataError."""
    try:
        a = np.asarray(v, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"{name} is not numeric: {err}") from None
    if a.ndim == 2 and a.shape[1] == 1:
        a = a[:, 0]
    if a.ndim != 1 or a.shape[0] != n:
        raise DataError(f"{name} must have one value per row of X ({n}), got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise DataError(f"{name} has non-finite values")
    return np.ascontiguousarray(a.astype(dtype).astype(np.float64))


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
                dtype: Any = np.float64, vals: dict[Expr, Any] | None = None
                ) -> dict[Expr, Any]:
    """The value of every node of `order` (children before parents) on the rows of `A`: the
    forward sweep shared by the reference evaluator and the reference Jacobian.  Leaves stay
    scalars where they are constant, so callers broadcast.  `vals`: the dict to fill, holding
    the values of earlier nodes (a long order evaluated in slices)."""
    if vals is None:
        vals = {}
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

