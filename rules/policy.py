"""How much saturation a population's dedupe pays for: after the canonical pass, only the
canonical forms that some other form matches numerically can still be merged by sound rules.

A sound rule keeps the value wherever the original is finite, so two forms that one e-class
holds agree (up to rounding) at every point where both are finite.  The forms are evaluated
once, over their shared DAG, at a few fixed points inside every op's ordinary domain; forms
whose values (rounded to `DIGITS` significant digits) match no other form's cannot merge with
anything, and the e-graph only gets the rest.  A form that is non-finite at some point matches
any form that agrees on its finite points.  Rounding at a bucket edge, or an intermediate
overflow, can hide a pair: that pair then stays in two classes (never an unsound merge).
"""

from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from symcore.evaluate import node_values
from symcore.ir import Expr, topo

__all__ = ["merge_candidates", "POINTS", "DIGITS"]

#: sample points per form (the rows of one small matrix, fixed seed)
POINTS = 5
#: significant digits compared (rounding of two equal functions differs far below this)
DIGITS = 7
#: values below this magnitude count as 0 (cancellations leave ~1e-16 instead of 0)
ZERO = 1e-9
_SEED = 20240613


#: further points, one per magnitude band below and above the ordinary ones, signs mixed:
#: piecewise functions that coincide on the ordinary points (max(|x|, x^2), min(log x, c),
#: |x| vs x, min(sqrt|x|, 0.27)) differ there; a form non-finite at one of them (log of a
#: negative) is compared on its other points
WIDE_POINTS = 12
_WIDE_BANDS = ((0.004, 0.04), (0.04, 0.14), (1.05, 1.8), (1.8, 3.0))


def _points(n_vars: int, n_params: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(_SEED)
    # inside the ordinary domain of every op (logs, roots, asin/acos of small values, gplearn's
    # protected thresholds), away from 0 and 1 where distinct functions often coincide
    X = rng.uniform(0.15, 0.95, size=(POINTS, max(n_vars, 1)))
    p = rng.uniform(0.3, 1.7, size=max(n_params, 1))
    wide = np.random.default_rng(_SEED + 1)
    # every variable meets every band, in its own order (so bands mix within a point)
    bands = np.array(_WIDE_BANDS)
    k = np.stack([wide.permutation(WIDE_POINTS) % len(bands) for _ in range(max(n_vars, 1))],
                 axis=1)
    W = wide.uniform(bands[k, 0], bands[k, 1]) * wide.choice([-1.0, 1.0], size=k.shape)
    return np.vstack([X, W]), p


def _rounded(v: np.ndarray) -> np.ndarray:
    """Values to DIGITS significant digits as exact floats (NaN where non-finite)."""
    out = np.where(np.abs(v) < ZERO, 0.0, v)
    with np.errstate(all="ignore"):
        mag = np.floor(np.log10(np.abs(np.where(out == 0.0, 1.0, out))))
        scale = 10.0 ** (DIGITS - 1 - mag)
        r = np.round(out * scale) / scale
    r[~np.isfinite(v)] = np.nan
    return r


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser, elementwise on uint64 (wrapping arithmetic)."""
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x = x ^ (x >> np.uint64(27))
    x = x * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _cell_hashes(R: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every cell of `R` (its bits, mixed with its column's seed)."""
    bits = np.ascontiguousarray(R, dtype=np.float64).view(np.uint64)
    return _mix(bits + _mix(np.arange(1, R.shape[1] + 1, dtype=np.uint64)))


def _groups(cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Group equal rows of `R` given their cells' hashes: each row's group and each group's
    size.  A row's key is the (wrapping) sum of its cells' hashes: one integer per row is
    sorted instead of the rows' bytes (50x faster, so every step between two deadline checks
    stays short).  Two distinct rows share a key with probability ~2^-64: both would then
    only be sent to the e-graph, which decides soundly."""
    if cells.shape[0] == 0:
        return np.zeros(0, dtype=np.intp), np.zeros(0, dtype=np.intp)
    _, inv, counts = np.unique(cells.sum(axis=1, dtype=np.uint64), return_inverse=True,
                               return_counts=True)
    return inv.ravel(), counts


#: roots walked, nodes evaluated and rows copied between two deadline checks (each stride is
#: milliseconds of work: the check, not the stride, bounds the overshoot)
STRIDE = 4096


def _order_until(forms: Sequence[Expr], deadline: float | None
                 ) -> tuple[list[Expr], int, int] | None:
    """topo(forms) walked STRIDE roots at a time, and the numbers of variables and parameters
    (1 + the largest index, at least 1); None past `deadline`."""
    order: list[Expr] = []
    seen: set[Expr] = set()
    n_vars = n_params = 1
    for a in range(0, len(forms), STRIDE):
        if deadline is not None and time.perf_counter() > deadline:
            return None
        start = len(order)
        for nd in topo(forms[a:a + STRIDE]):
            if nd not in seen:   # reached from an earlier stride (its children were too)
                seen.add(nd)
                order.append(nd)
        new = order[start:]
        n_vars = max(n_vars, 1 + max((nd.value for nd in new if nd.op == "var"), default=0))
        n_params = max(n_params, 1 + max((nd.value for nd in new if nd.op == "param"),
                                         default=0))
    return order, n_vars, n_params


def merge_candidates(forms: Sequence[Expr], deadline: float | None = None) -> list[int] | None:
    """Indices of the (distinct, canonical) `forms` that might share an e-class with another
    form: every form whose sampled values match another's where both are finite.  None when
    the work passes `deadline` (a time.perf_counter() value) before it is done."""
    n = len(forms)
    if n < 2:
        return []

    def late(i: int = 0) -> bool:
        return deadline is not None and i % STRIDE == 0 and time.perf_counter() > deadline
    walked = _order_until(forms, deadline)
    if walked is None:
        return None
    order, n_vars, n_params = walked
    X, p = _points(n_vars, n_params)
    vals: dict[Expr, object] = {}
    for a in range(0, len(order), STRIDE):
        if late():
            return None
        node_values(order[a:a + STRIDE], X, p, vals=vals)
    n_pts = X.shape[0]
    V = np.empty((n, n_pts))
    for i, e in enumerate(forms):
        if late(i):
            return None
        V[i] = np.broadcast_to(np.asarray(vals[e], dtype=np.float64), (n_pts,))
    del vals, order
    if late():
        return None
    R = _rounded(V)
    H = _cell_hashes(R)
    finite = ~np.isnan(R)
    keep = np.zeros(n, dtype=bool)
    # fully finite forms: equal rounded vectors
    all_finite = finite.all(axis=1)
    full = np.flatnonzero(all_finite)
    inv, counts = _groups(H[full])
    keep[full[counts[inv] > 1]] = True
    # forms with a non-finite value: compared on their finite points with every other form
    partial = np.flatnonzero(~all_finite)
    if partial.size == 0:
        return [int(i) for i in np.flatnonzero(keep)]
    # finite points as the bits of one integer per form (a form is finite on a mask when its
    # bits cover the mask's), and each form's key over its finite points: a form finite on
    # mask m has key(m) = that key minus the hashes of its finite cells outside m (few)
    fbits = finite.astype(np.int64) @ (np.int64(1) << np.arange(n_pts, dtype=np.int64))
    Hf = np.where(finite, H, np.uint64(0))
    rowsum = Hf.sum(axis=1, dtype=np.uint64)
    masks, mask_of = np.unique(fbits[partial], return_inverse=True)
    by_mask = np.argsort(mask_of.ravel(), kind="stable")
    bounds = np.searchsorted(mask_of.ravel()[by_mask], np.arange(len(masks) + 1))
    for k, mb in enumerate(masks):
        if late():
            return None
        rows = np.sort(partial[by_mask[bounds[k]:bounds[k + 1]]])
        if mb == 0:          # non-finite at every point: nothing to compare, keep it
            keep[rows] = True
            continue
        # every form finite on m, projected to m (forms non-finite on m are wild there too)
        ok = np.flatnonzero((fbits & mb) == mb)    # sorted; holds every row of `rows`
        outside = [j for j in range(n_pts) if not (int(mb) >> j) & 1]
        keys = rowsum[ok] - Hf[np.ix_(ok, outside)].sum(axis=1, dtype=np.uint64)
        mine = keys[np.searchsorted(ok, rows)]
        # a form of this mask matches when its key occurs at least twice among the forms
        # finite on m; those others match it too
        shared, counts = np.unique(keys[np.isin(keys, mine)], return_counts=True)
        hit = np.isin(mine, shared[counts > 1])
        keep[rows[hit]] = True
        keep[ok[np.isin(keys, mine[hit])]] = True
    return [int(i) for i in np.flatnonzero(keep)]
