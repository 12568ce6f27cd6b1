"""Constant fitting: Levenberg–Marquardt and BFGS over compiled value + Jacobian kernels, one
candidate or a whole population (each candidate fitted independently, on every core).

Which numbers are fitted (``lift``):

* ``"auto"`` (default): an expression without parameters has its literals lifted into parameters,
  one per occurrence (starting at the literals, see `symcore.params.lift_constants` for which
  literals); an expression that already has parameters (a frontend's ``C`` placeholders, a model
  read with numbers as parameters) is fitted as it stands, its literals stay fixed.
* ``"occurrence"`` (or ``True``): every literal occurrence becomes its own parameter, in
  addition to existing parameters (``2*x + 2*y`` -> two parameters).
* ``"distinct"``: one parameter per distinct literal value, shared by its occurrences, in
  addition to existing parameters (``2*x + 2*y`` -> one; what DySymNet's refit does with
  SymPy's ``atoms(Float)``; a raw DySymNet expression with 243 literal occurrences has a few
  dozen distinct values).
* ``"marked"`` (or ``False``): only the parameters the expression already has (the literals a
  frontend marks as placeholders, RSRM's ``C``, NeSymReS's ``c``); literals stay fixed.

``params0`` are the starting values of the fitted model's parameters: either all of them (after
lifting) or only the expression's own parameters (lifted ones then start at their literals).
Without ``params0``, an expression's own parameters start at 1.

The loss is the (weighted) mean squared error Σ w (f(x) - y)² / Σ w.  A trial point whose
prediction or Jacobian is not finite is rejected like a step that increases the loss (LM raises
its damping, BFGS backtracks): the fit never crashes on NaN or inf.  Status:

* ``converged``: relative loss decrease, step or gradient below ``tol`` (or no step can decrease
  the loss any more);
* ``max_iter``: ``max_iter`` trial steps were used up;
* ``non-finite``: the start gives a non-finite loss or Jacobian (loss is +inf if the loss is);
* ``singular``: the Jacobian is identically zero at the start (no parameter changes the output);
* ``time limit``: ``max_time`` (per expression) or ``max_total_time`` (per call) ran out; the
  best point so far is returned (a problem that had not started by the call's deadline returns
  its start).

A parameter-free model returns at once (status ``converged``, 0 iterations).

``loss`` is always the (weighted) MSE of ``expr`` (the returned model, parameters bound) as the
reference `symcore.evaluate` computes it, up to rounding; +inf where that is not finite (NaN
or inf on some row with positive weight).

Method ``"auto"`` (default) runs Levenberg–Marquardt up to LM_MAX_PARAMS parameters and BFGS
above: LM's normal equations (an eigendecomposition of the P×P matrix per iteration) stop
paying there (see LM_MAX_PARAMS).

Levenberg–Marquardt follows MINPACK's lmder (what ``scipy.optimize.least_squares(method="lm")``
runs): Moré's trust region with Jacobian column scaling, the same step acceptance, radius
update and ftol/xtol/gtol tests (all equal to ``tol``), budget 100 × n_params trial steps by
default; the damped steps come from an eigendecomposition of the scaled normal matrix, so a
rank-deficient Jacobian (redundant constants, common in SR candidates) gets the minimum-norm
step.  In tier 0 a population (and every restart) is fitted entirely in native code
(`codegen/lm.py`: this loop emitted as LLVM IR over the tier-0 Jacobian interpreter, one call
per thread, problems taken from a shared counter).  In tier 1 and "numpy" the problems run in
lockstep: one trial step of every unfinished problem per round, the small linear algebra
batched across problems, the last few handed to the one-problem loop.

Restarts (``restarts=k``: k extra starts jittered log-normally around the first, seeded) run on
a quarter of the budget; the best run is kept.  In tier 0 on data of at least
2 × SUBSAMPLE_ROWS rows, restarts run on a seeded subsample of SUBSAMPLE_ROWS rows (they only
look for other basins), and a candidate's best restart is refined on all rows, with its budget
again, when it already ends below the first start's loss on all rows.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from symcore.columns import check_not_shifted
from symcore.errors import DataError, FitError
from symcore.evaluate import as_matrix, evaluate
from symcore.ir import Expr, topo
from symcore.params import bind_params, lift_constants
from symcore.types import FitMethod, Lift, Tier

from symcore.codegen import pool as _pool
from symcore.codegen.fit.bfgs import bfgs
from symcore.codegen.fit.lm import (STATUSES, NormalFn, batch_from_normals, levenberg_marquardt,
                                   lm_batch)
from symcore.codegen.fit.native import native_runs
from symcore.codegen.grad.data import prepare_data
from symcore.codegen.grad.reference import jacobian_reference
from symcore.codegen.grad.tier0 import Tier0Grad
from symcore.codegen.grad.tier1 import GradKernels

__all__ = ["fit", "FitResult", "levenberg_marquardt", "bfgs", "STATUSES", "METHODS", "LIFTS"]

METHODS = ("auto", "lm", "bfgs")
LIFTS = ("auto", "distinct", "occurrence", "marked", True, False)
#: method "auto" fits candidates with more parameters than this with BFGS, the rest with LM.
#: Measured (bench/bench_refit.py --switch: sums of P/2 `a*sin(b*x)` terms, 1000 rows, tier 0,
#: one thread), ms per trial step LM / BFGS: P=20 1.6/1.4, 40 3.6/1.6, 60 9.9/3.4, 80 15.8/7.4,
#: 120 71/90, 160 201/135.  LM's step grows as P³ (eigendecomposition) on top of the kernel's
#: rows·P² normal equations, and from ~60 parameters costs 2-3 BFGS steps; below, LM needs
#: far fewer steps to a lower loss.  Both pay the kernel's Jᵀ J: a gradient-only kernel would
#: move this point down.
LM_MAX_PARAMS = 64
TIERS = ("auto", 0, 1, "numpy")
#: tier "auto" compiles fused kernels (tier 1) when rows × expected kernel calls reaches this:
#: compiling one candidate costs ~15-30 ms, which the faster compiled calls only win back over
#: many row-evaluations, and tier 0 runs the whole fit in native code.  Measured on bench_fit's
#: population (200 candidates, one start, one thread, CPU s): tier 0 2.8 vs tier 1 4.1 at 40k
#: rows, 6.6 vs 7.8 at 100k rows; the compiled calls are ~1.6x faster, so tier 1 wins from
#: ~150-200k rows.  Restarts do not count: in tier 0 they run on a row subsample.
AUTO_TIER1_ROW_CALLS = 1e7
_EXPECTED_CALLS = 50
#: in tier 0, restarts run on this many rows (a seeded random subsample) when the data has at
#: least twice as many; only those that end below the first start there are refined on all rows
SUBSAMPLE_ROWS = 1024
#: restarts run on budget // RESTART_BUDGET_DIV (a start that does not converge quickly rarely
#: beats the first one; measured: same final losses as the full budget at half the time)
RESTART_BUDGET_DIV = 4


@dataclass(frozen=True)
class FitResult:
    """One fitted candidate."""

    expr: Expr            # the model with its parameters bound to the fitted values
    params: np.ndarray    # fitted parameter values (slots of `model`)
    loss: float           # final (weighted) MSE; +inf when the model is not finite there
    iterations: int       # trial steps taken (over all starts)
    status: str           # one of STATUSES
    model: Expr = field(repr=False)   # the parametrised model that was fitted



_ALGORITHMS = {"lm": levenberg_marquardt, "bfgs": bfgs}


# -------------------------------------------------------------------------------------------------
# Front end

def _n_params(expr: Expr) -> int:
    # Expr.n_params flattens the expression on every call: count once per model
    return max((n.value for n in topo([expr]) if n.op == "param"), default=-1) + 1


def _prepare_model(expr: Expr, params0: Any, lift: Any) -> tuple[Expr, np.ndarray]:
    if not isinstance(expr, Expr):
        raise FitError(f"fit takes Expr objects, got {type(expr).__name__}")
    if not any(lift is v or (isinstance(v, str) and lift == v) for v in LIFTS):
        raise FitError(f"lift must be one of {', '.join(map(repr, LIFTS))}, got {lift!r}")
    own = _n_params(expr)
    do_lift = (own == 0) if lift == "auto" else lift in (True, "occurrence", "distinct")
    start = None
    if params0 is not None:
        try:
            start = np.asarray(params0, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"params0 is not numeric: {err}") from None
        if start.ndim != 1:
            raise DataError(f"params0 must be a 1-D vector, got shape {start.shape}")
    base = np.ones(own) if start is None or start.shape[0] < own else start[:own]
    model, values = lift_constants(expr, params=base, share=lift == "distinct") if do_lift \
        else (expr, base)
    n_model = _n_params(model) if do_lift else own
    if start is not None:
        if start.shape[0] == n_model:
            values = start.copy()
        elif start.shape[0] != own:
            raise DataError(f"params0 has {start.shape[0]} value(s); the model has {own} "
                            f"parameter(s) of its own and {n_model} after lifting")
    if not np.all(np.isfinite(values)):
        raise DataError("params0 has non-finite values")
    return model, np.ascontiguousarray(values, dtype=np.float64)


def _check_data(X: Any, y: Any, weights: Any, exprs: Sequence[Expr]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    A = as_matrix(X, list(exprs))
    try:
        Y = np.asarray(y, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise DataError(f"y is not numeric: {err}") from None
    if Y.ndim != 1 or Y.shape[0] != A.shape[0]:
        raise DataError(f"y must be a vector of {A.shape[0]} values (one per row), got shape "
                        f"{Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise DataError("y has non-finite values")
    check_not_shifted(exprs, A.shape[1])
    need = max((n.value + 1 for n in topo(exprs) if n.op == "var"), default=0)
    if need > A.shape[1]:
        raise DataError(f"expressions use {need} column(s), data has {A.shape[1]}")
    W = None
    if weights is not None:
        W = np.asarray(weights, dtype=np.float64)
        if W.shape != Y.shape:
            raise DataError(f"weights must have shape {Y.shape}, got {W.shape}")
        if not np.all(np.isfinite(W)) or np.any(W < 0):
            raise DataError("weights must be finite and non-negative")
        if not W.sum() > 0:
            raise DataError("weights sum to zero: nothing to fit")
    if A.shape[0] == 0:
        raise DataError("no data rows: nothing to fit")
    return np.ascontiguousarray(A), np.ascontiguousarray(Y), W


def _normal_numpy(model: Expr, X: np.ndarray, y: np.ndarray, w: np.ndarray | None) -> NormalFn:
    ww = np.ones(y.shape[0]) if w is None else w
    keep = ww > 0

    def normal(p: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        pred, J = jacobian_reference(model, X, p)
        r = np.where(keep, pred - y, 0.0)
        J = np.where(keep[:, None], J, 0.0)
        with np.errstate(all="ignore"):
            return float(ww @ (r * r)), J.T @ (ww * r), J.T @ (ww[:, None] * J)
    return normal


def _starts(p0: np.ndarray, restarts: int, rng: np.random.Generator) -> list[np.ndarray]:
    out = [p0]
    for _ in range(restarts):
        # multiplicative log-normal jitter around the start, plus an additive one for zeros
        jitter = p0 * np.exp(rng.normal(0.0, 0.5, p0.shape)) + rng.normal(0.0, 0.1, p0.shape)
        out.append(np.where(rng.random(p0.shape) < 0.1, -jitter, jitter))
    return out


def _reference_loss(expr: Expr, A: np.ndarray, Y: np.ndarray, W: np.ndarray | None) -> float:
    """The returned model's loss as the reference evaluator gives it.  The kernels' loss agrees
    to rounding almost everywhere, but not where the compiled math and NumPy's differ beyond
    rounding (sin/cos of huge arguments: `sin(exp(x*x/cos(C)))` gave 100.95 vs 101.70 on an
    RSRM skeleton) nor on exact fits (1e-34 vs 2e-34): one NumPy pass per model makes `loss`
    the reference metric of `expr` by construction."""
    with np.errstate(all="ignore"):
        r = evaluate(expr, A) - Y
        if W is None:
            v = float(np.mean(r * r))
        else:
            v = float(np.sum(np.where(W > 0, W * r * r, 0.0)) / W.sum())
    return v if math.isfinite(v) else math.inf


def _best(model: Expr, runs: list[tuple[np.ndarray, float, int, str]], data: tuple
          ) -> FitResult:
    """The run with the lowest finite loss (the first start wins ties), its loss recomputed by
    the reference evaluator."""
    iters = sum(r[2] for r in runs)
    p, f, _, status = min(runs, key=lambda r: r[1] if math.isfinite(r[1]) else math.inf)
    e = bind_params(model, p)
    return FitResult(e, p, _reference_loss(e, *data), iters, status, model)


def _seconds(v: Any, name: str) -> float:
    if v is None:
        return math.inf
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or math.isnan(v):
        raise FitError(f"{name} must be a positive number of seconds or None, got {v!r}")
    return float(v)


def fit(expr_or_exprs: Expr | Sequence[Expr], X: Any, y: Any, params0: Any = None,
        method: FitMethod = "auto", max_iter: int | None = None, tol: float = 1e-8,
        weights: Any = None,
        restarts: int = 0, seed: int | None = None, *, lift: Lift = "auto",
        tier: Tier = "auto", threads: int | None = None, max_time: float | None = None,
        max_total_time: float | None = None) -> FitResult | list[FitResult]:
    """Fit the parameters of one expression (-> FitResult) or of each expression of a list
    (-> list of FitResult, fitted independently on `threads` threads, default
    `$SYMCORE_THREADS` or every core) to
    data X (rows × columns), y, minimising the (weighted) mean squared error.

    `params0`: starting values (one vector, or one per expression for a list; see the module
    docstring); `method`: "lm" (Levenberg–Marquardt), "bfgs", or "auto" (LM up to
    LM_MAX_PARAMS parameters, BFGS above); `lift`: which literals become parameters
    ("auto", "distinct", "occurrence", "marked"; module docstring); `max_time`: seconds per
    expression (split evenly over its starts and a restart's refinement), `max_total_time`:
    seconds for the whole call; a fit cut short ends with status "time limit" at its best
    point so far; `max_iter`: trial steps per
    start (default 100 × the number of parameters, MINPACK's default); `tol`: relative
    tolerance on loss decrease, step and gradient; `restarts`: extra
    starts jittered from the first (seeded by `seed`), the best kept; `tier`: 0 (the compiled-once
    Jacobian interpreter of `grad.Tier0Grad`, normal equations fused in-kernel, whole rounds of
    a population in one native call), 1 (fused kernels compiled per structure), "numpy" (the
    reference Jacobian; slow, for testing) or "auto" (1 when rows × expected kernel calls
    reaches AUTO_TIER1_ROW_CALLS, else 0)."""
    t_call = time.monotonic()
    single = isinstance(expr_or_exprs, Expr)
    exprs = [expr_or_exprs] if single else list(expr_or_exprs)  # type: ignore[arg-type]
    per_expr = _seconds(max_time, "max_time")
    call_deadline = t_call + _seconds(max_total_time, "max_total_time")
    # each start (and the refinement of the best restart) gets an equal share of max_time
    per_run = per_expr / (restarts + 2 if isinstance(restarts, int) and restarts > 0 else 1)
    if method not in METHODS:
        raise FitError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if isinstance(tier, bool) or tier not in TIERS:
        raise FitError(f"tier must be one of {TIERS}, got {tier!r}")
    if max_iter is not None and (isinstance(max_iter, bool) or not isinstance(max_iter, int)
                                 or max_iter < 0):
        raise FitError(f"max_iter must be a non-negative int, got {max_iter!r}")
    if not (isinstance(tol, (int, float)) and math.isfinite(tol) and tol >= 0):
        raise FitError(f"tol must be a finite non-negative number, got {tol!r}")
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 0:
        raise FitError(f"restarts must be a non-negative int, got {restarts!r}")
    if single:
        starts = [params0]
    elif params0 is None:
        starts = [None] * len(exprs)
    else:
        starts = list(params0)
        if len(starts) != len(exprs):
            raise DataError(f"params0 has {len(starts)} vector(s) for {len(exprs)} expressions")
    for e in exprs:
        if not isinstance(e, Expr):
            raise FitError(f"fit takes Expr objects, got {type(e).__name__}")
    n_threads = threads if threads is not None else _pool.n_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise FitError(f"threads must be a positive int, got {threads!r}")
    A, Y, W = _check_data(X, y, weights, exprs)
    models = [_prepare_model(e, s, lift) for e, s in zip(exprs, starts)]
    seeds = np.random.SeedSequence(seed).spawn(len(exprs))

    auto = tier == "auto"
    if auto:
        tier = 1 if A.shape[0] * _EXPECTED_CALLS >= AUTO_TIER1_ROW_CALLS else 0
    kernels: GradKernels | Tier0Grad | None = None
    if tier == "numpy":
        normals = [_normal_numpy(m, A, Y, W) for m, _ in models]
    else:
        fitted = [m for m, _ in models]
        kernels = GradKernels(fitted) if tier == 1 else Tier0Grad(fitted)
        data = prepare_data(A, Y, W, kernels.lanes)

        def _mk(k: int) -> NormalFn:
            return lambda p: kernels.normal(k, data, np.ascontiguousarray(p, dtype=np.float64))
        normals = [_mk(k) for k in range(len(models))]

    n_par = [_n_params(m) for m, _ in models]
    budgets = [max_iter if max_iter is not None else 100 * max(n, 1) for n in n_par]
    rngs = [np.random.default_rng(s) for s in seeds]
    # the process's one pool (`codegen.pool`, sized by SYMCORE_THREADS unless `threads` is given)
    pool = _pool.executor(n_threads) if n_threads > 1 and len(exprs) > 1 else None
    try:
        results: list[FitResult | None] = [None] * len(exprs)
        problems: list[tuple[int, np.ndarray]] = []
        first_of: list[int] = []
        for k, (model, p0) in enumerate(models):
            if n_par[k] == 0:
                results[k] = FitResult(model, p0, _reference_loss(model, A, Y, W), 0,
                                       "converged", model)
            else:
                problems += [(k, s) for s in _starts(p0, restarts, rngs[k])]
                first_of.append(len(problems) - restarts - 1)
        # per-problem budgets: restarts run on a quarter
        cids_all = np.array([k for k, _ in problems], dtype=np.int64)
        bud = np.array(budgets, dtype=np.int64)[cids_all] if problems else np.zeros(0, np.int64)
        is_first = np.zeros(len(problems), dtype=bool)
        is_first[first_of] = True
        bud = np.where(is_first, bud, np.maximum(bud // RESTART_BUDGET_DIV, 1))
        use_lm = [method == "lm" or (method == "auto" and n_par[k] <= LM_MAX_PARAMS)
                  for k, _ in problems]
        lm_idx = np.array([j for j, u in enumerate(use_lm) if u], dtype=np.int64)
        bf_idx = [j for j, u in enumerate(use_lm) if not u]
        runs: list[Any] = [None] * len(problems)
        if lm_idx.size:
            # every (candidate, start) in lockstep: batched linear algebra, threaded kernels
            Pm = max(max(n_par), 1)
            cids = np.array([problems[j][0] for j in lm_idx], dtype=np.int64)
            starts = np.zeros((len(lm_idx), Pm))
            for i, j in enumerate(lm_idx):
                s = problems[j][1]
                starts[i, :len(s)] = s
            if isinstance(kernels, Tier0Grad):
                sub = None
                if restarts and A.shape[0] >= 2 * SUBSAMPLE_ROWS:
                    pick = np.sort(np.random.default_rng(seed).choice(
                        A.shape[0], SUBSAMPLE_ROWS, replace=False))
                    sub = prepare_data(A[pick], Y[pick], None if W is None else W[pick],
                                       kernels.lanes)
                out = native_runs(kernels, cids, starts, bud[lm_idx], is_first[lm_idx], n_par,
                                  data, sub, float(tol), pool, n_threads, per_run,
                                  call_deadline)
            else:
                evaluate = batch_from_normals(normals, n_par, Pm, pool, n_threads)
                dls = np.full(len(lm_idx), min(time.monotonic() + per_run, call_deadline))
                out = lm_batch(cids, starts, np.array(n_par)[cids], bud[lm_idx],
                               float(tol), evaluate, normals, pool, deadlines=dls)
            for j, r in zip(lm_idx.tolist(), out):
                runs[j] = r
        if bf_idx:
            def one(j: int) -> tuple[np.ndarray, float, int, str]:
                k, s = problems[j]
                dl = min(time.monotonic() + per_run, call_deadline)
                return bfgs(normals[k], s, int(bud[j]), float(tol), dl)
            out = list(pool.map(one, bf_idx)) if pool is not None else [one(j) for j in bf_idx]
            for j, r in zip(bf_idx, out):
                runs[j] = r
        grouped: dict[int, list] = {}
        for (k, _), run in zip(problems, runs):
            grouped.setdefault(k, []).append(run)
        for k, rs in grouped.items():
            results[k] = _best(models[k][0], rs, (A, Y, W))
    finally:
        if kernels is not None:
            kernels.close()
    return results[0] if single else results  # type: ignore[return-value]

