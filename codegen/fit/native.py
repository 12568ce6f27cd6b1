"""Driving the native Levenberg–Marquardt loop (`native_lm`, linked into the tier-0 Jacobian
library): problem ordering, restarts on a row subsample and their refinement on all rows."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from symcore.codegen.fit.lm import STATUSES
from symcore.codegen.grad.tier0 import Tier0Grad

__all__ = ["native_runs"]


def _native_lm(kernels: Tier0Grad, cids: np.ndarray, starts: np.ndarray, bud: np.ndarray,
               data: Any, tol: float, pool: Any, n_threads: int, max_time: float = math.inf,
               deadline: float = math.inf
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tier0Grad.fit_lm with the largest budgets first (so the slow problems do not start
    last on one thread); results in the problems' order."""
    order = np.argsort(-bud, kind="stable")
    out = kernels.fit_lm(cids[order], starts[order], bud[order], data, tol, pool=pool,
                         n_threads=n_threads, max_time=max_time, deadline=deadline)
    back = np.empty_like(order)
    back[order] = np.arange(order.shape[0])
    return tuple(a[back] for a in out)  # type: ignore[return-value]


def native_runs(kernels: Tier0Grad, cids: np.ndarray, starts: np.ndarray, bud: np.ndarray,
                 is_first: np.ndarray, n_par: Sequence[int], data: Any, sub: Any, tol: float,
                 pool: Any, n_threads: int, max_time: float = math.inf,
                 deadline: float = math.inf
                 ) -> list[tuple[np.ndarray, float, int, str]]:
    """Every (candidate, start) problem in native code.  With a row subsample `sub`, restarts
    run on it; the best restart of a candidate whose end is already below the first start's
    loss on all rows is refined on all rows from there, with its own budget again.  Each run
    (a start, a refinement) stops after `max_time` seconds, every run at `deadline`."""
    lim = dict(max_time=max_time, deadline=deadline)
    if sub is None:
        rp, rf, rit, rst = _native_lm(kernels, cids, starts, bud, data, tol, pool, n_threads,
                                      **lim)
    else:
        first = np.flatnonzero(is_first)
        rest = np.flatnonzero(~is_first)
        rp, rf = starts.copy(), np.full(len(cids), np.inf)
        rit, rst = np.zeros(len(cids), np.int64), np.zeros(len(cids), np.int64)
        for idx, d in ((first, data), (rest, sub)):
            out = _native_lm(kernels, cids[idx], starts[idx], bud[idx], d, tol, pool,
                             n_threads, **lim)
            rp[idx], rf[idx], rit[idx], rst[idx] = out
        # every restart's end on all rows: refine the best one of a candidate when it is
        # already below the first start's loss there (a better basin; the same basin seen
        # through the subsample ends slightly above, measured: refining those too, or all
        # within 0.1-10 %, costs 5-6x the refinement for no better final losses)
        f_all, _, _ = kernels.normal_batch(cids[rest], np.ascontiguousarray(rp[rest]), data,
                                           pool, n_threads)
        first_f = dict(zip(cids[first].tolist(), rf[first].tolist()))
        best: dict[int, tuple[float, int]] = {}
        for j, fj in zip(rest.tolist(), f_all.tolist()):
            k = int(cids[j])
            if fj < best.get(k, (np.inf, -1))[0]:
                best[k] = (fj, j)
        again = np.array(sorted(j for k, (fj, j) in best.items()
                                if fj < first_f[k]),
                         dtype=np.int64)
        rf[rest] = np.inf   # a restart counts only once refined on every row
        if again.size:
            out = _native_lm(kernels, cids[again], np.ascontiguousarray(rp[again]), bud[again],
                             data, tol, pool, n_threads, **lim)
            rp[again], rf[again] = out[0], out[1]
            rit[again] += out[2]
            rst[again] = out[3]
    return [(rp[j, :n_par[cids[j]]].copy(), float(rf[j]), int(rit[j]), STATUSES[rst[j]])
            for j in range(len(cids))]

