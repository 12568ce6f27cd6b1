"""Public native evaluation API: `compile(exprs, dtype, tier)` -> `Kernel` with `predict` and
`score`; validates every array before it reaches native code and spreads candidates over cores.

Tier policy (`tier="auto"`), a ski-rental cost model:
tier 0 (the compiled-once interpreter) costs nothing to start but runs slower than tier 1
(fused kernels), which costs ~`COMPILE_SECONDS` per new structure to compile.  An auto kernel
starts on tier 0 and measures the (wall) time it spends there; once that time times the
fraction tier 1 would save (1 - `TIER0_SPEED_RATIO`, tier 1's time relative to tier 0's)
reaches the estimated compile cost of its candidates, it compiles them and runs on tier 1 from
then on.  So an expression evaluated once or on little data is never compiled, a model
evaluated many times or on large data is, and the time the policy loses is at most about twice
what the better of the two fixed choices would have lost, in hindsight (the ski-rental bound).
The compile-cost estimate follows the compile times this process has measured.  When tier 0
is not available (or cannot run the population), auto means tier 1.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Sequence

import numpy as np

from symcore.columns import check_not_shifted
from symcore.errors import CompileError, DataError, SymcoreError
from symcore.evaluate import as_matrix, as_rows
from symcore.scoring import from_sums
from symcore.ir import Expr
from symcore.types import Dtype, Metric, Tier

from symcore.codegen import pool as _pool
from symcore.codegen.eval.tier1 import info as _info

__all__ = ["compile", "Kernel", "METRICS", "COMPILE_SECONDS", "TIER0_SPEED_RATIO"]

METRICS = ("mse", "rmse", "mae", "r2", "nmse")
#: initial estimate of tier-1 compile time per new structure (seconds); refined by measurement
COMPILE_SECONDS = 1.5e-3
#: tier-1 time / tier-0 time for the same work, as the auto policy assumes it: since tier 1's
#: own exp/log/sin/cos helpers, bench/bench_eval.py measures ~0.66-0.71 (tier 1 1.4-1.5x
#: faster at N=1e3-1e4); the policy keeps the conservative 0.9, so auto compiles only once
#: tier 0 has spent ~10x the compile cost
TIER0_SPEED_RATIO = 0.9

_DTYPES = {"float64": "float64", "float32": "float32", np.float64: "float64",
           np.float32: "float32", "f8": "float64", "f4": "float32", "double": "float64",
           "single": "float32"}

_compile_estimate = [COMPILE_SECONDS]
_estimate_lock = threading.Lock()


def _record_compile(seconds: float, n: int) -> None:
    if n <= 0 or seconds <= 0:
        return
    with _estimate_lock:  # exponential average of the measured cost per structure
        _compile_estimate[0] = 0.7 * _compile_estimate[0] + 0.3 * (seconds / n)


def _tier0_module() -> Any | None:
    try:
        from symcore.codegen.eval import tier0
    except ImportError:
        return None
    return tier0 if hasattr(tier0, "Tier0Program") else None


def _aligned(shape: tuple[int, ...], dtype: Any, fill: float | None = None) -> np.ndarray:
    """A C-contiguous array whose data starts on a 64-byte boundary."""
    dt = np.dtype(dtype)
    n = int(np.prod(shape)) if shape else 1
    raw = np.empty(n * dt.itemsize + 64, dtype=np.uint8)
    off = (-raw.ctypes.data) % 64
    a = raw[off:off + n * dt.itemsize].view(dt).reshape(shape)
    if fill is not None:
        a.fill(fill)
    return a


class Kernel:
    """A compiled population: `predict` and `score` over any data with enough columns."""

    def __init__(self, exprs: Sequence[Expr], dtype: str, tier: Any) -> None:
        self.exprs: tuple[Expr, ...] = tuple(exprs)
        self.dtype = dtype
        self._np = np.dtype(dtype)
        self.requested_tier = tier
        self.n_candidates = len(self.exprs)
        infos = [_info(e) for e in self.exprs]
        self.n_vars = max((i.n_vars for i in infos), default=0)
        self.n_params = max((i.n_params for i in infos), default=0)
        self._cand_params = [i.n_params for i in infos]
        self._nodes = float(sum(e.size for e in self.exprs))
        self._t0: Any = None
        self._t1: Any = None
        self._tier0_seconds = 0.0
        self._closed = False
        self._lock = threading.Lock()
        if tier == 1:
            self._tier1()
        elif tier == 0:
            self._tier0()
        elif _tier0_module() is None:
            self._tier1()
        else:
            try:
                self._tier0()
            except CompileError:   # something tier 0 cannot run: tier 1 can
                self._tier1()

    # -- programs ---------------------------------------------------------------------------
    def _tier0(self) -> Any:
        if self._t0 is None:
            mod = _tier0_module()
            if mod is None:
                raise CompileError("tier 0 (the batch interpreter) is not available in this "
                                   "installation; use tier=1 or tier='auto'")
            self._t0 = mod.Tier0Program(self.exprs, self.dtype)
        return self._t0

    def _tier1(self) -> Any:
        if self._t1 is None:
            from symcore.codegen.eval.tier1 import Tier1Program
            self._t1 = Tier1Program(self.exprs, self.dtype)
            st = self._t1.stats
            _record_compile(st.seconds, st.compiled)
        return self._t1

    @property
    def tier(self) -> int:
        """The tier the kernel runs on now (an auto kernel may move from 0 to 1)."""
        with self._lock:
            return 1 if self._t1 is not None else 0

    @property
    def compile_stats(self) -> Any:
        """Tier-1 compile statistics (None while the kernel runs on tier 0)."""
        return None if self._t1 is None else self._t1.stats

    def _choose(self) -> tuple[int, Any]:
        """(tier, program) for the next call."""
        with self._lock:
            if self._closed:
                raise SymcoreError("this kernel was closed; compile the expressions again")
            if self._t1 is not None:
                return 1, self._t1
            if self.requested_tier == "auto":
                saved = self._tier0_seconds * (1.0 - TIER0_SPEED_RATIO)
                if saved >= _compile_estimate[0] * self.n_candidates:
                    prog = self._tier1()
                    self._t0 = None    # calls in flight keep their own reference
                    return 1, prog
            return 0, self._t0

    # -- data -------------------------------------------------------------------------------
    def _matrix(self, X: Any) -> np.ndarray:
        A = as_matrix(X, self.exprs, self._np)
        if getattr(self, "_unshifted", None) != A.shape[1]:  # once per data width
            check_not_shifted(self.exprs, A.shape[1])
            self._unshifted = A.shape[1]
        if A.shape[1] < self.n_vars:
            raise DataError(f"the candidates read {self.n_vars} column(s), X has {A.shape[1]}")
        return A

    def _params(self, params: Any) -> np.ndarray | None:
        P = self.n_candidates
        if params is None:
            if self.n_params:
                raise DataError(f"the candidates use {self.n_params} parameter(s); pass params")
            return None
        if isinstance(params, np.ndarray) and params.ndim == 2 and params.dtype.kind in "fiu":
            if params.shape[0] != P:
                raise DataError(f"params has {params.shape[0]} row(s) for {P} candidate(s)")
            if params.shape[1] < self.n_params:
                raise DataError(f"the candidates use {self.n_params} parameter(s), params has "
                                f"{params.shape[1]} column(s)")
            pa = np.ascontiguousarray(params, dtype=np.float64)
            return pa if pa.shape[1] else np.zeros((P, 1))
        if isinstance(params, np.ndarray) and params.ndim == 2 or (
                not isinstance(params, np.ndarray) and _is_matrix_like(params)):
            try:
                rows = [np.asarray(r, dtype=np.float64) for r in params]
            except (TypeError, ValueError) as err:
                raise DataError(f"params are not numeric: {err}") from None
            if len(rows) != P:
                raise DataError(f"params has {len(rows)} row(s) for {P} candidate(s)")
            for c, r in enumerate(rows):
                if r.ndim != 1:
                    raise DataError(f"params row {c} must be 1-D, got shape {r.shape}")
                need = self._cand_params[c]
                if r.shape[0] < need:
                    raise DataError(f"candidate {c} uses {need} parameter(s), got {r.shape[0]}")
            K = max([r.shape[0] for r in rows] + [self.n_params, 1])
            out = np.zeros((P, K), dtype=np.float64)
            for c, r in enumerate(rows):
                out[c, :r.shape[0]] = r
            return out
        try:
            v = np.asarray(params, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"params are not numeric: {err}") from None
        if v.ndim != 1:
            raise DataError(f"params must be None, one 1-D vector (shared by every candidate), "
                            f"one vector per candidate or a (P, K) array; got shape {v.shape}")
        if v.shape[0] < self.n_params:
            raise DataError(f"the candidates use {self.n_params} parameter(s), got {v.shape[0]}")
        v = v if v.size else np.zeros(1)
        return np.ascontiguousarray(np.broadcast_to(v, (P, v.shape[0])))

    def _target(self, y: Any, n: int) -> np.ndarray:
        return as_rows(y, n, "y", self._np)

    def _weights(self, weights: Any, n: int) -> np.ndarray | None:
        if weights is None:
            return None
        try:
            w = np.asarray(weights, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"weights are not numeric: {err}") from None
        if w.ndim != 1 or w.shape[0] != n:
            raise DataError(f"weights must have one value per row of X ({n}), got shape {w.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite and non-negative")
        if not w.sum() > 0:
            raise DataError("weights sum to zero")
        return w.astype(self._np).astype(np.float64)

    # -- evaluation -------------------------------------------------------------------------
    def predict(self, X: Any, params: Any = None) -> np.ndarray:
        """Predictions of every candidate on every row: a (P, N) array of the kernel's dtype."""
        A = self._matrix(X)
        pa = self._params(params)
        P, N = self.n_candidates, A.shape[0]
        if P == 0 or N == 0:
            return np.zeros((P, N), dtype=self._np)
        tier, prog = self._choose()
        work = self._nodes * N
        if tier == 1:
            Xp, ldx = self._padded(A, prog.lanes)
            out = np.empty((P, N), dtype=self._np)
            _pool.run_ranges(P, work, lambda c0, c1: prog.predict_range(Xp, N, pa, out, c0, c1))
            return out
        Xc = self._columns(A)
        out = np.empty((P, N), dtype=self._np)
        t = time.perf_counter()
        _pool.run_ranges(P, work, lambda c0, c1: prog.predict_range(Xc, pa, out, c0, c1))
        self._count_tier0(time.perf_counter() - t)
        return out

    def score(self, X: Any, y: Any, metric: Metric = "mse", weights: Any = None,
              params: Any = None) -> np.ndarray:
        """Fitness of every candidate, (P,) float64: mse, rmse, mae, nmse (lower is better) or
        r2 (higher is better), optionally weighted.  A candidate with a non-finite prediction
        on any row gets +inf (-inf for r2).  With constant y, r2 is 1 for a perfect fit and 0
        otherwise (as scikit-learn) and nmse 0 or +inf."""
        if metric not in METRICS:
            raise DataError(f"unknown metric {metric!r}; one of {', '.join(METRICS)}")
        A = self._matrix(X)
        N = A.shape[0]
        if N == 0:
            raise DataError("cannot score on zero rows")
        yv = self._target(y, N)
        wv = self._weights(weights, N)
        pa = self._params(params)
        P = self.n_candidates
        acc = np.zeros((P, 2), dtype=np.float64)
        if P:
            tier, prog = self._choose()
            work = self._nodes * N
            if tier == 1:
                Xp, ldx = self._padded(A, prog.lanes)
                yp = np.zeros(ldx)
                yp[:N] = yv
                wp = np.zeros(ldx)
                wp[:N] = 1.0 if wv is None else wv
                _pool.run_ranges(P, work, lambda c0, c1: prog.loss_range(Xp, N, yp, wp, pa, acc,
                                                                         c0, c1))
            else:
                Xc = self._columns(A)
                yd = yv.astype(self._np)
                wd = None if wv is None else wv.astype(self._np)
                t = time.perf_counter()
                _pool.run_ranges(P, work, lambda c0, c1: prog.loss_range(Xc, yd, wd, acc, c0, c1,
                                                                         params=pa))
                self._count_tier0(time.perf_counter() - t)
        return _metric(metric, acc[:, 0], acc[:, 1], yv, wv)

    def _count_tier0(self, seconds: float) -> None:
        # wall time against wall time: tier 1 would run on the same threads, and its compile
        # cost estimate is the wall time of a (parallel) compile per structure
        with self._lock:
            self._tier0_seconds += seconds

    def _columns(self, A: np.ndarray) -> np.ndarray:
        """Column-major copy of the columns the candidates read (at least one)."""
        F = max(self.n_vars, 1)
        if A.shape[1] < F:   # no variables at all and no columns: one dummy column
            return np.zeros((F, A.shape[0]), dtype=self._np)
        return np.ascontiguousarray(A[:, :F].T)

    def _padded(self, A: np.ndarray, lanes: int) -> tuple[np.ndarray, int]:
        N = A.shape[0]
        F = min(A.shape[1], max(self.n_vars, 1))
        ldx = -(-N // lanes) * lanes
        Xp = _aligned((max(F, 1), ldx), self._np)
        Xp[:F, :N] = A[:, :F].T
        Xp[:, N:] = 1.0   # padded rows: benign values, computed but never reported
        if F == 0:
            Xp[:, :N] = 0.0
        return Xp, ldx

    def close(self) -> None:
        """Release the compiled code now (otherwise when the kernel is garbage-collected)."""
        with self._lock:
            self._t1 = None
            self._t0 = None
            self._closed = True

    def __len__(self) -> int:
        return self.n_candidates

    def __reduce__(self) -> tuple:
        # only the IR travels (to Dask workers, other processes): the receiver compiles anew
        return (Kernel, (self.exprs, self.dtype, self.requested_tier))

    def __repr__(self) -> str:
        return (f"Kernel({self.n_candidates} candidate(s), dtype={self.dtype}, "
                f"tier={'closed' if self._closed else self.tier})")


def _is_matrix_like(params: Any) -> bool:
    if isinstance(params, (str, bytes)):
        return False
    try:
        first = params[0]
    except (TypeError, IndexError, KeyError):
        return False
    return isinstance(first, (list, tuple, np.ndarray))


def _metric(metric: str, sse: np.ndarray, sae: np.ndarray, y: np.ndarray,
            w: np.ndarray | None) -> np.ndarray:
    sw = float(y.shape[0]) if w is None else float(w.sum())
    bad = ~(np.isfinite(sse) & np.isfinite(sae))
    sst = 0.0
    if metric in ("r2", "nmse"):
        ww = np.ones_like(y) if w is None else w
        ybar = float((ww * y).sum() / sw)
        sst = float((ww * (y - ybar) ** 2).sum())
    out = from_sums(metric, sse, sae, sw, sst)
    if metric == "r2":
        return np.asarray(np.where(bad, -np.inf, out), dtype=np.float64)
    return np.asarray(np.where(bad | ~np.isfinite(out), np.inf, out), dtype=np.float64)


def compile(exprs: Expr | Sequence[Expr], dtype: Dtype = "float64",  # noqa: A001 - public name
            tier: Tier = "auto") -> Kernel:
    """Compile one expression or a population into a `Kernel`.

    dtype: "float64" or "float32" (data and arithmetic; losses are summed in float64).
    tier: 0 (batch interpreter, no compilation), 1 (fused JIT kernels, compiled per
    structure and cached in memory and on disk) or "auto" (see the module docstring)."""
    if isinstance(exprs, Expr):
        exprs = [exprs]
    elif isinstance(exprs, (str, bytes)) or not hasattr(exprs, "__iter__"):
        raise SymcoreError(f"compile takes an Expr or a sequence of Expr, "
                           f"got {type(exprs).__name__}")
    exprs = list(exprs)
    for i, e in enumerate(exprs):
        if not isinstance(e, Expr):
            raise SymcoreError(f"candidate {i} is not an Expr (got {type(e).__name__})")
    try:
        dt = _DTYPES.get(dtype if not isinstance(dtype, np.dtype) else dtype.type)
    except TypeError:   # unhashable
        dt = None
    if dt is None:
        raise DataError(f"dtype must be float64 or float32, got {dtype!r}")
    if isinstance(tier, bool) or tier not in (0, 1, "auto"):
        raise CompileError(f"tier must be 0, 1 or 'auto', got {tier!r}")
    return Kernel(exprs, dt, tier)

