"""The error metrics as functions of the sums every scorer accumulates: Σw·r², Σw·|r|, Σw and
the target's Σw·(y - ȳ)².  The kernels (`Kernel.score`), `Session` and `symcore.dask` compute
the sums their own way and all finish here, so a metric is defined once."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["SUM_METRICS", "from_sums"]

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
