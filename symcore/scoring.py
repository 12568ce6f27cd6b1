"""The error metrics as functions of the sums every scorer accumulates: Σw·r², Σw·|r|, Σw and
the target's Σw·(y - ȳ)².  The kernels (`Kernel.score`), `Session` and `symcore.dask` compute
the sums their own way and all finish here, so a metric is defined once.  Also the mergeable
per-partition statistics symcore.dask combines, the correlation metrics from predictions and
per-candidate row weights."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from symcore.errors import DataError

__all__ = ["SUM_METRICS", "from_sums", "Stats", "combine", "combine_all", "block_stats",
           "empty_stats", "metric_from_stats", "pearson_rows", "rank_rows", "candidate_weights"]

#: metrics that are functions of (sse, sae, sw, sst)
SUM_METRICS: tuple[str, ...] = ("mse", "rmse", "mae", "nmse", "r2")


def from_sums(metric: str, sse: Any, sae: Any, sw: Any, sst: Any) -> np.ndarray:
    """mse rmse mae nmse r2 from the sums (arrays broadcast).  With a constant target
    (sst = 0), r2 is 1 for a perfect fit and 0 otherwise (as scikit-learn) and nmse 0 or +inf.
    Non-finite sums give non-finite results; each caller applies its own policy to them."""
    sse, sae = np.asarray(sse, dtype=np.float64), np.asarray(sae, dtype=np.float64)
    with np.errstate(all="ignore"):
        if metric == "mae":
            return sae / sw
        mse = sse / sw
        if metric == "mse":
            return mse
        if metric == "rmse":
            return np.sqrt(mse)
        sst = np.broadcast_to(np.asarray(sst, dtype=np.float64), sse.shape)
        pos = sst > 0
        safe = np.where(pos, sst, 1.0)
        if metric == "r2":
            return np.where(pos, 1.0 - sse / safe, np.where(sse == 0, 1.0, 0.0))
        if metric == "nmse":
            return np.where(pos, mse / (safe / sw), np.where(mse == 0, 0.0, np.inf))
    raise ValueError(f"not a sum metric: {metric!r}")


# -- sufficient statistics of row partitions (symcore.dask combines them in a tree) -----------------------------------------------------------------------

@dataclass
class Stats:
    """Per-candidate sums over a set of rows: total weight, weighted moments of y (mean, M2)
    and, for the error metrics, Σ w r² and Σ w |r|; for pearson the moments of the
    predictions and their co-moment with y.  `bad` marks candidates with a non-finite
    prediction on some row."""

    n: float
    rows: int
    mean_y: float
    m2_y: float
    sse: np.ndarray
    sae: np.ndarray
    bad: np.ndarray
    mean_f: np.ndarray | None = None
    m2_f: np.ndarray | None = None
    c_fy: np.ndarray | None = None


def combine(a: Stats, b: Stats) -> Stats:
    """Chan et al.'s pairwise update: exact in exact arithmetic, stable in floating point."""
    if a.n == 0 and a.rows == 0:
        return b
    if b.n == 0 and b.rows == 0:
        return a
    n = a.n + b.n
    bad = a.bad | b.bad
    if n == 0:
        return Stats(0.0, a.rows + b.rows, 0.0, 0.0, a.sse + b.sse, a.sae + b.sae, bad,
                      a.mean_f, a.m2_f, a.c_fy)
    fb = b.n / n
    dy = b.mean_y - a.mean_y
    out = Stats(n, a.rows + b.rows, a.mean_y + dy * fb, a.m2_y + b.m2_y + dy * dy * a.n * fb,
                 a.sse + b.sse, a.sae + b.sae, bad)
    if a.mean_f is not None and b.mean_f is not None:
        with np.errstate(all="ignore"):
            df = b.mean_f - a.mean_f
            out.mean_f = a.mean_f + df * fb
            out.m2_f = a.m2_f + b.m2_f + df * df * a.n * fb
            out.c_fy = a.c_fy + b.c_fy + df * dy * a.n * fb
    return out


def combine_all(parts: Sequence[Stats]) -> Stats:
    out = parts[0]
    for p in parts[1:]:
        out = combine(out, p)
    return out


def block_stats(pred: np.ndarray, y: np.ndarray, w: np.ndarray, moments: bool) -> Stats:
    """Statistics of one block of rows from its predictions (P, m)."""
    n = float(w.sum())
    P = pred.shape[0]
    with np.errstate(all="ignore"):
        bad = ~np.isfinite(pred).all(axis=1)
        r = pred - y
        sse = (r * r) @ w
        sae = np.abs(r) @ w
        # means shifted by the first value: exact for a constant column, so a constant
        # prediction keeps a zero variance through every combination
        y0 = float(y[0]) if y.shape[0] else 0.0
        mean_y = y0 + float(w @ (y - y0)) / n if n else 0.0
        dyv = y - mean_y
        m2_y = float(w @ (dyv * dyv))
        st = Stats(n, y.shape[0], mean_y, m2_y, sse, sae, bad)
        if moments:
            f0 = pred[:, 0] if pred.shape[1] else np.zeros(P)
            mean_f = f0 + ((pred - f0[:, None]) @ w) / n if n else np.zeros(P)
            dfv = pred - mean_f[:, None]
            st.mean_f = mean_f
            st.m2_f = (dfv * dfv) @ w
            st.c_fy = dfv @ (w * dyv)
    return st


def empty_stats(P: int, moments: bool) -> Stats:
    z = np.zeros(P)
    st = Stats(0.0, 0, 0.0, 0.0, z, z.copy(), np.zeros(P, dtype=bool))
    if moments:
        st.mean_f, st.m2_f, st.c_fy = z.copy(), z.copy(), z.copy()
    return st


def metric_from_stats(st: Stats, metric: str) -> np.ndarray:
    """The in-memory `Kernel.score` definitions (codegen/eval/kernels.py) from statistics."""
    if st.rows == 0:
        raise DataError("cannot score on zero rows")
    if st.n <= 0:
        raise DataError("weights sum to zero")
    sw, sst = st.n, st.m2_y
    bad = st.bad | ~(np.isfinite(st.sse) & np.isfinite(st.sae))
    with np.errstate(all="ignore"):
        if metric == "pearson":
            den = np.sqrt(st.m2_f * sst)
            # undefined (NaN) when either side is constant, as in memory (Session)
            out = np.where(den > 0, st.c_fy / np.where(den > 0, den, 1.0), np.nan)
            return np.where(bad | ~np.isfinite(out), np.nan, out)
    out = from_sums(metric, st.sse, st.sae, sw, sst)
    if metric == "r2":
        return np.asarray(np.where(bad, -np.inf, out), dtype=np.float64)
    return np.asarray(np.where(bad | ~np.isfinite(out), np.inf, out), dtype=np.float64)


# -- correlation metrics from predictions (Session; gplearn's own formulas)

def pearson_rows(A: np.ndarray, b: np.ndarray, w: np.ndarray, pred_first: bool) -> np.ndarray:
    """Weighted Pearson correlation of every row of A with b, written as gplearn writes it
    (`_weighted_pearson(y, y_pred, w)` with y_pred = A, y = b when pred_first, else swapped),
    so the rounding is the same: means as np.average, products in gplearn's order."""
    sw = np.sum(w)
    w2 = w if w.ndim == 2 else w[None, :]
    ad = A - (np.multiply(A, w2).sum(axis=1) / (w2.sum(axis=1)))[:, None]
    if w.ndim == 2:
        bd = b[None, :] - (np.multiply(b[None, :], w).sum(axis=1) / w.sum(axis=1))[:, None]
        sw = w.sum(axis=1)
    else:
        bd = (b - np.multiply(b, w).sum() / w.sum())[None, :]
    if pred_first:     # gplearn: y_pred_demean = A, y_demean = b
        num = (w2 * ad * bd).sum(axis=1) / sw
        den = np.sqrt(((w2 * ad ** 2).sum(axis=1) * (w2 * bd ** 2).sum(axis=1)) / sw ** 2)
    else:              # spearman: gplearn passes (pred ranks, y ranks) as (y, y_pred)
        num = (w2 * bd * ad).sum(axis=1) / sw
        den = np.sqrt(((w2 * bd ** 2).sum(axis=1) * (w2 * ad ** 2).sum(axis=1)) / sw ** 2)
    return num / den


def rank_rows(A: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of every row, as
    scipy.stats.rankdata(method="average")."""
    P, N = A.shape
    order = np.argsort(A, axis=1, kind="mergesort")
    s = np.take_along_axis(A, order, axis=1)
    new = np.ones((P, N), dtype=bool)
    new[:, 1:] = s[:, 1:] != s[:, :-1]
    flat = new.ravel()
    starts = np.flatnonzero(flat)
    ends = np.append(starts[1:], flat.size)
    # a group never spans two rows (each row starts a new group)
    pos0 = starts % N
    avg = pos0 + (ends - starts + 1) / 2.0
    gid = np.cumsum(flat) - 1
    ranked_sorted = avg[gid].reshape(P, N)
    out = np.empty((P, N), dtype=np.float64)
    np.put_along_axis(out, order, ranked_sorted, axis=1)
    return out


def candidate_weights(weights: Any, P: int, N: int, base: np.ndarray | None, dtype: Any
                      ) -> tuple[list[bytes], np.ndarray]:
    """Per-candidate row weights for P candidates on N rows: a (P, N) array, or P row-index
    sets (a bootstrap sample: a repeated index counts again, times the `base` row weights).
    Returns (a digest per candidate, the (P, N) float64 weights rounded to `dtype`)."""
    if isinstance(weights, np.ndarray) and weights.ndim == 2:
        if weights.shape != (P, N):
            raise DataError(f"per-candidate weights must have shape ({P}, {N}), "
                            f"got {weights.shape}")
        try:
            W = np.ascontiguousarray(weights, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"weights are not numeric: {err}") from None
    else:
        sets = list(weights)
        if len(sets) != P:
            raise DataError(f"{len(sets)} row-index set(s) for {P} candidate(s)")
        W = np.empty((P, N), dtype=np.float64)
        for c, s in enumerate(sets):
            idx = np.asarray(s)
            if idx.ndim != 1 or (idx.size and idx.dtype.kind not in "iu"):
                raise DataError(f"row-index set {c} must be a 1-D integer array")
            if idx.size and (idx.min() < 0 or idx.max() >= N):
                raise DataError(f"row-index set {c} has an index outside 0..{N - 1}")
            cnt = np.bincount(idx.astype(np.int64), minlength=N).astype(np.float64)
            W[c] = cnt if base is None else cnt * base
    if not np.all(np.isfinite(W)) or np.any(W < 0):
        raise DataError("per-candidate weights must be finite and non-negative")
    W = W.astype(dtype).astype(np.float64)
    if np.any(W.sum(axis=1) <= 0):
        raise DataError("a candidate's weights sum to zero")
    keys = [hashlib.blake2b(r.tobytes(), digest_size=16).digest() for r in W]
    return keys, W
