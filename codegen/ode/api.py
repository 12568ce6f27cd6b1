"""Public dynamical-systems API: `odeint` (native DOPRI5 / RK4 for one system, a batch of
initial conditions, or a population of systems in one native call), `score_trajectories` and
`score_derivatives` (the two ways SR on dynamics judges a candidate vector field).

A failed integration (non-finite state, step limit, step too small) is a status, never an
exception: its trajectory is NaN from the failure on, its score +inf.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.ir import Expr

from symcore.codegen.ode.emit import STATUSES
from symcore.codegen.ode.native import integrate, rhs_functions
from symcore.dynamics import System, as_system

__all__ = ["odeint", "OdeInfo", "score_trajectories", "score_derivatives", "STATUSES",
           "Method", "TrajectoryMetric"]

Method = Literal["dopri5", "rk4"]
TrajectoryMetric = Literal["mse", "rmse", "mae"]


@dataclass(frozen=True)
class OdeInfo:
    """Per-problem outcome of `odeint(..., full_output=True)`: `status` codes (index into
    `STATUSES`: 0 ok, 1 non-finite, 2 step-limit, 3 step-too-small) and accepted `steps`, shaped
    like the batch (() for one problem, (B,) or (P,))."""

    status: np.ndarray
    steps: np.ndarray

    @property
    def ok(self) -> np.ndarray:
        return self.status == 0

    @property
    def names(self) -> list[str] | str:
        """Status names (one string for a single problem)."""
        if self.status.ndim == 0:
            return STATUSES[int(self.status)]
        return [STATUSES[int(s)] for s in self.status.reshape(-1)]


def _is_population(rhs: Any) -> bool:
    if isinstance(rhs, System) or isinstance(rhs, (str, bytes, Expr)):
        return False
    try:
        items = list(rhs)
    except TypeError:
        return False
    return bool(items) and all(isinstance(r, System) or (
        not isinstance(r, (str, bytes, Expr)) and hasattr(r, "__iter__")
        and not type(r).__module__.startswith("sympy")) for r in items)


def _population(rhs: Any) -> tuple[list[System], bool]:
    if _is_population(rhs):
        pop = [as_system(r) for r in rhs]
        if len({s.n for s in pop}) > 1:
            raise DataError(f"the systems of a population must have the same number of state "
                            f"variables, got {sorted({s.n for s in pop})}")
        return pop, True
    return [as_system(rhs)], False


def _times(t: Any) -> np.ndarray:
    ts = np.ascontiguousarray(t, dtype=np.float64)
    if ts.ndim != 1 or ts.shape[0] == 0:
        raise DataError(f"t must be a 1-D array of output times, got shape {ts.shape}")
    if not np.isfinite(ts).all():
        raise DataError("t has non-finite times")
    if ts.shape[0] > 1 and not (ts[1:] > ts[:-1]).all():
        raise DataError("t must be strictly increasing")
    return ts


def _param_rows(pop: list[System], params: Any, K: int, per_problem: bool) -> list[np.ndarray]:
    """One parameter vector per problem (K of them)."""
    need = max(s.n_params for s in pop)
    if params is None:
        rows = []
        for i, s in enumerate(pop):
            if s.n_params and s.params is None:
                raise DataError(f"system {i} has {s.n_params} parameter(s) and no values: "
                                f"pass params")
            rows.append(s.params if s.params is not None else np.zeros(1))
        if len(rows) == 1:
            rows = rows * K
        return [np.ascontiguousarray(r, dtype=np.float64) for r in rows]
    if isinstance(params, np.ndarray) and params.ndim == 2 or (
            not isinstance(params, np.ndarray) and len(params) and
            isinstance(params[0], (list, tuple, np.ndarray))):
        rows = [np.ascontiguousarray(r, dtype=np.float64).reshape(-1) for r in params]
        if len(rows) != K:
            raise DataError(f"params has {len(rows)} row(s) for {K} "
                            f"{'problem' if per_problem else 'system'}(s)")
    else:
        rows = [np.ascontiguousarray(params, dtype=np.float64).reshape(-1)] * K
    for i, r in enumerate(rows):
        s = pop[i] if len(pop) == K else pop[0]
        if r.shape[0] < s.n_params:
            raise DataError(f"problem {i}: the system has {s.n_params} parameter(s), "
                            f"{r.shape[0]} value(s) given")
        if not r.shape[0]:
            rows[i] = np.zeros(1)
    del need
    return rows


def _param_block(pop: list[System], params: Any, K: int, per_problem: bool
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The K parameter vectors as one float64 block and each problem's row address (one
    row shared when every problem has the same vector)."""
    if K == 1 and params is None and pop[0].params is not None:   # the common single call
        block = pop[0].params
        return block, np.array([block.__array_interface__["data"][0]], dtype=np.int64)
    need = max(1, max(s.n_params for s in pop))
    if isinstance(params, np.ndarray) and params.ndim == 2 and params.shape[0] == K \
            and params.shape[1] >= need:
        block = np.ascontiguousarray(params, dtype=np.float64)   # checked: enough columns
    else:
        rows = _param_rows(pop, params, K, per_problem)
        if all(r is rows[0] for r in rows):
            block = rows[0].reshape(1, -1)
        else:
            block = np.zeros((K, max(r.shape[0] for r in rows)))
            for i, r in enumerate(rows):
                block[i, :r.shape[0]] = r
    base = block.__array_interface__["data"][0]
    step = block.strides[0] if block.shape[0] > 1 else 0
    return block, base + step * np.arange(K, dtype=np.int64)


def odeint(rhs: Any, y0: Any, t: Any, *, params: Any = None, method: Method = "dopri5",
           rtol: float = 1e-8, atol: float = 1e-10, max_steps: int = 100_000,
           h: float | None = None, full_output: bool = False,
           threads: int | None = None) -> "np.ndarray | tuple[np.ndarray, OdeInfo]":
    """Integrate dy/dt = rhs(t, y; p) natively and return y at the times `t`.

    rhs: a `System` (or a sequence of equations: Expr, text in symcore's dialect with `t` for
    time, SymPy) -> (len(t), n); with y0 of shape (B, n) -> (B, len(t), n).  A population (a
    list of systems of equal n) -> (P, len(t), n) in one native call, y0 (n,) or (P, n).
    params: one vector, or one row per problem (batch element or system); default: the
    systems' own `params`.  method "dopri5" (adaptive Dormand–Prince 5(4), dense output at
    `t`; rtol/atol as in Hairer's code, at most `max_steps` steps; `h` caps the step) or "rk4"
    (fixed steps: each output interval in ceil(Δt/h) steps, one when `h` is None).  t strictly
    increasing, t[0] the initial time.  A failure is reported, not raised: the trajectory is NaN
    from the failure on; full_output=True also returns an `OdeInfo` (status, steps)."""
    if method not in ("dopri5", "rk4"):
        raise DataError(f"method must be 'dopri5' or 'rk4', got {method!r}")
    for name, v in (("rtol", rtol), ("atol", atol)):
        if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
            raise DataError(f"{name} must be a finite number >= 0, got {v!r}")
    if rtol == 0 and atol == 0:
        raise DataError("rtol and atol cannot both be 0")
    if isinstance(max_steps, bool) or not isinstance(max_steps, (int, np.integer)) \
            or max_steps < 1:
        raise DataError(f"max_steps must be a positive integer, got {max_steps!r}")
    hmax = math.inf if h is None else float(h)
    if not hmax > 0:
        raise DataError(f"h must be > 0, got {h!r}")
    pop, is_pop = _population(rhs)
    ts = _times(t)
    n = pop[0].n
    Y0 = np.asarray(y0, dtype=np.float64)
    if Y0.ndim not in (1, 2) or Y0.shape[-1] != n:
        raise DataError(f"y0 must have shape (n,) or (B, n) with n = {n}, got {Y0.shape}")
    batched = Y0.ndim == 2
    if is_pop:
        P = len(pop)
        if batched and Y0.shape[0] != P:
            raise DataError(f"y0 has {Y0.shape[0]} rows for a population of {P} systems")
        K = P
    else:
        K = Y0.shape[0] if batched else 1
    Yk = Y0 if batched else Y0.reshape(1, n)
    if Yk.shape[0] != K:
        Yk = np.repeat(Yk, K, axis=0)
    block, pars = _param_block(pop, params, K, not is_pop)
    comp = rhs_functions(pop)
    if is_pop:
        fns = np.array([c.address for c in comp], dtype=np.int64)
    else:
        fns = np.array([comp[0].address] * K, dtype=np.int64)
    out, status, steps = integrate(fns, pars, Yk, ts, method, float(rtol), float(atol),
                                   int(max_steps), hmax, threads)
    del block   # the addresses in `pars` were valid until here
    if not (is_pop or batched):
        out, status, steps = out[0], status.reshape(()), steps.reshape(())
    if full_output:
        return out, OdeInfo(status, steps)
    return out


def _metric(err: np.ndarray, metric: str, axis: tuple[int, ...]) -> np.ndarray:
    with np.errstate(all="ignore"):
        if metric == "mae":
            v = np.mean(np.abs(err), axis=axis)
        else:
            v = np.mean(err * err, axis=axis)
            if metric == "rmse":
                v = np.sqrt(v)
    return np.where(np.isfinite(v), v, np.inf)


def _scale(Y: np.ndarray, normalize: bool) -> np.ndarray:
    """Per-state-variable divisor: the standard deviation of the reference (1 where it is 0)."""
    if not normalize:
        return np.ones(Y.shape[-1])
    sd = np.std(Y.reshape(-1, Y.shape[-1]), axis=0)
    return np.where(sd > 0, sd, 1.0)


def _check_metric(metric: str) -> None:
    if metric not in ("mse", "rmse", "mae"):
        raise DataError(f"metric must be 'mse', 'rmse' or 'mae', got {metric!r}")


def score_trajectories(population: Sequence[Any], y0: Any, t: Any, Y: Any,
                       metric: TrajectoryMetric = "mse", normalize: bool = False,
                       params: Any = None, **odeint_options: Any) -> np.ndarray:
    """Trajectory fitness of every system of `population`: integrate each from y0 over t (one
    native call, `odeint` options apply) and compare with the observed Y (len(t), n); with
    normalize, each state variable's error is divided by the standard deviation of its
    observations.  (P,) float64, lower is better; a failed integration scores +inf."""
    _check_metric(metric)
    pop = [as_system(s) for s in population] if not isinstance(population, System) \
        else [population]
    if not pop:
        return np.zeros(0)
    ts = _times(t)
    Yr = np.asarray(Y, dtype=np.float64)
    if Yr.shape != (ts.shape[0], pop[0].n):
        raise DataError(f"Y must have shape (len(t), n) = {(ts.shape[0], pop[0].n)}, "
                        f"got {Yr.shape}")
    out, info = odeint(pop, y0, ts, params=params, full_output=True, **odeint_options)
    err = (out - Yr[None]) / _scale(Yr, normalize)
    score = _metric(err, metric, (1, 2))
    return np.where(info.ok, score, np.inf)


def score_derivatives(population: Sequence[Any], X: Any, dXdt: Any, t: Any = None,
                      metric: TrajectoryMetric = "mse", normalize: bool = False,
                      params: Any = None) -> np.ndarray:
    """Derivative fitness of every system: rhs(t, X[i]) against dXdt[i] over the rows of X
    (N, n), t the rows' times (None: 0).  Evaluated by the batch evaluator (`symcore.compile`,
    no compilation per candidate); (P,) float64, lower is better, +inf when non-finite."""
    from symcore.codegen.eval.kernels import compile as _compile

    _check_metric(metric)
    pop = [as_system(s) for s in population] if not isinstance(population, System) \
        else [population]
    if not pop:
        return np.zeros(0)
    n = pop[0].n
    if any(s.n != n for s in pop):
        raise SymcoreError("the systems of a population must have the same number of states")
    Xa = np.asarray(X, dtype=np.float64)
    D = np.asarray(dXdt, dtype=np.float64)
    if Xa.ndim != 2 or Xa.shape[1] != n or D.shape != Xa.shape:
        raise DataError(f"X and dXdt must both have shape (N, {n}), got {Xa.shape} and "
                        f"{D.shape}")
    N = Xa.shape[0]
    A = np.empty((N, n + 1))
    A[:, :n] = Xa
    A[:, n] = 0.0 if t is None else np.broadcast_to(np.asarray(t, dtype=np.float64), (N,))
    exprs = [e for s in pop for e in s.exprs]
    rows = _param_rows(pop, params, len(pop), False)
    prm = [rows[i] for i, s in enumerate(pop) for _ in s.exprs]
    kern = _compile(exprs)
    try:
        pred = kern.predict(A, prm if any(s.n_params for s in pop) else None)
    finally:
        kern.close()
    err = (pred.reshape(len(pop), n, N).transpose(0, 2, 1) - D[None]) / _scale(D, normalize)
    return _metric(err, metric, (1, 2))
