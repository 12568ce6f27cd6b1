"""Numeric equality helpers for the e-graph tests: 'same value up to rounding' on finite inputs."""

from __future__ import annotations

import numpy as np

from symcore import Expr
from symcore.ir import topo
from symcore.ops import OPS

# Protected ops switch branch at |x| = 0.001: a rounding-level change of their argument there
# is a different branch, which the contract counts as rounding.  Such points are skipped.
_THRESHOLD_OPS = {"pdiv": 1, "plog": 0, "pinv": 0}


def trace(expr: Expr, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, scale, fragile): the value per row, the largest finite intermediate magnitude
    per row, and rows where a protected op's argument sits at its branch threshold."""
    n = X.shape[0]
    vals: dict[Expr, np.ndarray] = {}
    scale = np.ones(n)
    fragile = np.zeros(n, dtype=bool)
    with np.errstate(all="ignore"):
        for nd in topo([expr]):
            if nd.op == "var":
                v = X[:, nd.value].astype(np.float64)
            elif nd.op == "const":
                v = np.full(n, nd.value)
            elif nd.op == "param":
                v = np.full(n, 0.5 + nd.value)
            else:
                v = np.broadcast_to(OPS[nd.op].np(*(vals[a] for a in nd.args)), (n,)).astype(
                    np.float64)
                if nd.op in _THRESHOLD_OPS:
                    arg = np.abs(vals[nd.args[_THRESHOLD_OPS[nd.op]]])
                    fragile |= np.abs(arg - 0.001) < 1e-6
            vals[nd] = v
            a = np.abs(v)
            scale = np.where(np.isfinite(a), np.maximum(scale, a), scale)
    return vals[expr], scale, fragile


def same_where_finite(original: Expr, other: Expr, X: np.ndarray, rtol: float = 1e-6) -> bool:
    """`other` equals `original` (up to rounding relative to the largest intermediate) at every
    row where `original` is finite."""
    y0, s0, f0 = trace(original, X)
    y1, s1, f1 = trace(other, X)
    scale = np.maximum(s0, s1)
    m = np.isfinite(y0) & ~f0 & ~f1 & (scale < 1e100)
    if not m.any():
        return True
    ok = np.abs(y1[m] - y0[m]) <= rtol * np.maximum(np.abs(y0[m]), 1.0) + 1e-9 * scale[m]
    return bool(ok.all())


def numerically_different(a: Expr, b: Expr, X: np.ndarray, rtol: float = 1e-6) -> bool:
    """Two candidates differ: at a row where one is finite, the other is NaN or far off."""
    ya, sa, fa = trace(a, X)
    yb, sb, fb = trace(b, X)
    scale = np.maximum(sa, sb)
    m = (np.isfinite(ya) | np.isfinite(yb)) & ~fa & ~fb & (scale < 1e100)
    if not m.any():
        return False
    ya, yb, sc = ya[m], yb[m], scale[m]
    nan_vs_num = np.isnan(ya) != np.isnan(yb)
    both = np.isfinite(ya) & np.isfinite(yb)
    far = both & (np.abs(ya - yb) > rtol * np.maximum(np.abs(ya), 1.0) + 1e-9 * sc)
    return bool((nan_vs_num | far).any())


def points(n_vars: int, seed: int = 0, n: int = 64) -> np.ndarray:
    """Random finite points plus domain edges: 0, +-1, negatives, small and large values."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(-4, 4, size=(n, n_vars))
    edges = np.array([0.0, 1.0, -1.0, 0.5, -0.5, 1e-3, -2.5, 1e3, -1e3, 1e6, 3.0, 1e-7])
    E = np.stack([np.roll(edges, k)[:n_vars] for k in range(len(edges))])
    return np.vstack([X, E])
