"""The metric side of a `Session` (a mixin): the chosen metric and non-finite policy of
candidates from the interpreter's loss sums, or from predictions (its own, or a caller's:
`score_predictions`)."""

from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.scoring import from_sums, pearson_rows, rank_rows

__all__ = ["SessionMetrics"]

#: metrics the interpreter reduces in native code (the rest come from predictions)
_NATIVE = frozenset({"mse", "rmse", "mae", "nmse", "r2"})
#: predictions computed at once on the predictions path: (candidates x rows) <= this
_PRED_BLOCK = 1 << 21


class SessionMetrics:
    """`Session`'s metrics: from loss sums (`_finish`) or predictions (`_from_predictions`),
    with the non-finite policy applied (`_policy_apply`)."""

    metric: str
    greater_is_better: bool
    n_rows: int
    stats: Any
    _np: Any
    _y: np.ndarray
    _w: np.ndarray | None
    _sw: float
    _nonfinite: float | None
    _ranked_y: np.ndarray | None
    _local: Any

    @staticmethod
    def _policy(nonfinite: Any) -> float | None:
        if isinstance(nonfinite, str):
            if nonfinite == "nan":
                return float("nan")
            if nonfinite == "inf":
                return None          # the worst value of the metric
            raise SymcoreError(f"nonfinite must be 'nan', 'inf' or a number, got {nonfinite!r}")
        if isinstance(nonfinite, bool) or not isinstance(nonfinite, (int, float, np.floating)):
            raise SymcoreError(f"nonfinite must be 'nan', 'inf' or a number, got {nonfinite!r}")
        return float(nonfinite)

    def _metric_of(self, P: int, W: np.ndarray | None, accumulate: Callable[[np.ndarray], None],
                   predict: Callable[[int, int, np.ndarray], None]) -> np.ndarray:
        """The metric of P candidates (W: per-candidate weights): from the interpreter's own
        sums where it has the metric (`accumulate(acc)`: (sum w*err**2, sum w*|err|) into the
        (P, 2) array acc), otherwise from predictions, a block of candidates at a time
        (`predict(c0, c1, pred)`: candidates c0..c1-1 into pred).  The callbacks count their
        own running time in stats."""
        N = self.n_rows
        seconds = self.stats.seconds
        if W is None and self.metric in _NATIVE:
            acc = np.zeros((P, 2), dtype=np.float64)
            accumulate(acc)
            t = time.perf_counter()
            out = self._finish(acc[:, 0], acc[:, 1], ~np.isfinite(acc[:, 0]), self._w)
            seconds["score"] += time.perf_counter() - t
            return out
        out = np.empty(P, dtype=np.float64)
        step = max(1, _PRED_BLOCK // N)
        for c0 in range(0, P, step):
            c1 = min(P, c0 + step)
            pred = np.empty((c1 - c0, N), dtype=self._np)
            predict(c0, c1, pred)
            t = time.perf_counter()
            out[c0:c1] = self._from_predictions(pred, None if W is None else W[c0:c1])
            seconds["score"] += time.perf_counter() - t
        return out

    def score_predictions(self, predictions: Any, weights: Any = None) -> np.ndarray:
        """The session's metric (and non-finite policy) for predictions a caller computed
        itself: `predictions` is (P, N) (or (N,) for one candidate) on the session's rows;
        `weights` None (the session's) or a (P, N) array of per-candidate row weights.
        Not cached."""
        self._local("score_predictions")
        try:
            pred = np.asarray(predictions, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"predictions are not numeric: {err}") from None
        if pred.ndim == 1:
            pred = pred[None, :]
        if pred.ndim != 2 or pred.shape[1] != self.n_rows:
            raise DataError(f"predictions must have shape (P, {self.n_rows}), got "
                            f"{np.shape(predictions)}")
        W = None
        if weights is not None:
            W = np.asarray(weights, dtype=np.float64)
            if W.shape != pred.shape:
                raise DataError(f"weights must have the predictions' shape {pred.shape}, got "
                                f"{W.shape}")
            if not np.all(np.isfinite(W)) or np.any(W < 0) or np.any(W.sum(axis=1) <= 0):
                raise DataError("weights must be finite, non-negative, not all zero per row")
        return self._from_predictions(pred, W)

    def _from_predictions(self, pred: np.ndarray, W: np.ndarray | None) -> np.ndarray:
        """Metric of each row of `pred` ((P, N)), with per-row weights W or the session's."""
        p = pred.astype(np.float64, copy=False)
        bad = ~np.isfinite(p).all(axis=1)
        y = self._y
        w = self._w if W is None else W
        with np.errstate(all="ignore"):
            if self.metric in _NATIVE:
                err = p - y
                ww = np.ones(self.n_rows) if w is None else w
                sse = (ww * (err * err)).sum(axis=1)
                sae = (ww * np.abs(err)).sum(axis=1)
                return self._finish(sse, sae, bad, w)
            ones = np.ones(self.n_rows) if w is None else w
            if self.metric == "pearson":
                r = pearson_rows(p, y, ones, pred_first=True)
            else:
                if self._ranked_y is None:
                    self._ranked_y = rank_rows(y[None, :])[0]
                pr = rank_rows(np.where(bad[:, None], 0.0, p))
                r = pearson_rows(pr, self._ranked_y, ones, pred_first=False)
        return self._policy_apply(r, bad | ~np.isfinite(r))

    def _finish(self, sse: np.ndarray, sae: np.ndarray, bad: np.ndarray,
                w: np.ndarray | None) -> np.ndarray:
        """mse rmse mae nmse r2 from the sums; `w` is None, the session's (N,) or per-row
        (P, N) weights."""
        y = self._y
        m = self.metric
        with np.errstate(all="ignore"):
            sw = self._sw if w is None else (w.sum() if w.ndim == 1 else w.sum(axis=1))
            sst: Any = 0.0
            if m in ("r2", "nmse"):
                ww = np.ones_like(y) if w is None else w
                if ww.ndim == 1:
                    ybar = (ww * y).sum() / sw
                    sst = (ww * (y - ybar) ** 2).sum()
                else:
                    ybar = (ww * y).sum(axis=1) / sw
                    sst = (ww * (y[None, :] - ybar[:, None]) ** 2).sum(axis=1)
        out = np.asarray(from_sums(m, sse, sae, sw, sst), dtype=np.float64)
        return self._policy_apply(out, bad | ~np.isfinite(out))

    def _policy_apply(self, out: np.ndarray, bad: np.ndarray) -> np.ndarray:
        if bad.any():
            v = self._nonfinite
            if v is None:
                v = -np.inf if self.greater_is_better else np.inf
            out = np.where(bad, v, out)
        return np.asarray(out, dtype=np.float64)
