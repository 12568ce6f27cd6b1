"""Data laid out for the Jacobian kernels (column-major X, padded rows) and the unpacking of
the kernels' lane partial sums into normal equations."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from symcore.codegen.llvm.vecmath import width

__all__ = ["Data", "prepare_data", "unpack_square", "unpack_normal"]


@dataclass(frozen=True, eq=False)
class Data:
    """Data laid out for the kernels: X column-major (columns, n_pad), y and w of n_pad rows,
    n_pad a multiple of the vector width; padding rows copy row 0 and have weight 0."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    n: int
    n_pad: int
    sum_w: float

    @functools.cached_property
    def pointers(self) -> tuple[int, int, int]:
        """Addresses of X, y and w (taken once: `.ctypes` costs microseconds per access)."""
        return self.X.ctypes.data, self.y.ctypes.data, self.w.ctypes.data


def prepare_data(X: np.ndarray, y: np.ndarray | None = None, w: np.ndarray | None = None,
                 lanes: int | None = None) -> Data:
    """Pad and transpose validated float64 arrays (X (N, C), y (N,), w (N,) or None)."""
    lanes = lanes or width("float64")
    n = X.shape[0]
    n_pad = -(-n // lanes) * lanes
    Xc = np.empty((X.shape[1], n_pad))
    Xc[:, :n] = X.T
    yp = np.zeros(n_pad)
    wp = np.zeros(n_pad)
    if n:
        Xc[:, n:] = X[:1].T
        if y is not None:
            yp[:n] = y
            yp[n:] = y[0]
        wp[:n] = 1.0 if w is None else w
    return Data(Xc, yp, wp, n, n_pad, float(wp.sum()))


@functools.lru_cache(maxsize=64)
def _sym_index(P: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the upper and the lower triangle of a P×P matrix, row-major upper
    order (how the kernels store Jᵀ W J), and which packed entry goes to each."""
    iu = np.triu_indices(P)
    dest = np.concatenate([iu[0] * P + iu[1], iu[1] * P + iu[0]])
    src = np.concatenate([np.arange(len(iu[0]))] * 2)
    return dest, src


def unpack_square(outs: np.ndarray, Pm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 1 + Pm + Pm², lanes) lane partial sums, upper triangle of Jᵀ W J -> full."""
    S = outs.sum(axis=2)
    K = S.shape[0]
    U = S[:, 1 + Pm:].reshape(K, Pm, Pm)
    H = U + U.transpose(0, 2, 1)
    idx = np.arange(Pm)
    H[:, idx, idx] = U[:, idx, idx]
    return S[:, 0], S[:, 1:1 + Pm], H


def unpack_normal(out: np.ndarray, P: int) -> tuple[float, np.ndarray, np.ndarray]:
    s = out.sum(axis=1)
    dest, src = _sym_index(P)
    H = np.empty(P * P)
    H[dest] = s[1 + P:][src]
    return float(s[0]), s[1:1 + P], H.reshape(P, P)
