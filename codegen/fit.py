"""Constant fitting: Levenberg–Marquardt and BFGS over compiled value + Jacobian kernels, one
candidate or a whole population (each candidate fitted independently, on every core).

Which numbers are fitted (``lift``):

* ``"auto"`` (default): an expression without parameters has its literals lifted into parameters
  (starting at the literals, see `symcore.params.lift_constants` for which literals); an expression
  that already has parameters (a frontend's ``C`` placeholders, a model read with numbers as
  parameters) is fitted as it stands, its literals stay fixed.
* ``True``: literals are lifted in addition to existing parameters.  ``False``: never lifted.

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
* ``singular``: the Jacobian is identically zero at the start (no parameter changes the output).

A parameter-free model returns at once (status ``converged``, 0 iterations).
"""

from __future__ import annotations

import math
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from symcore.errors import DataError, FitError
from symcore.evaluate import as_matrix
from symcore.ir import Expr
from symcore.params import bind_params, lift_constants

from .grad import GradKernels, Tier0Grad, jacobian_reference, prepare_data

__all__ = ["fit", "FitResult", "levenberg_marquardt", "bfgs", "STATUSES", "METHODS"]

STATUSES = ("converged", "max_iter", "non-finite", "singular")
METHODS = ("lm", "bfgs")
TIERS = ("auto", 0, 1, "numpy")
#: tier "auto" compiles fused kernels (tier 1) when rows × expected kernel calls reaches this:
#: compiling one candidate costs ~15-30 ms, and a compiled call saves ~10 ns per row over the
#: tier-0 interpreter, so compiling pays off from ~2e6 row-evaluations (~40k rows for one
#: start with ~50 calls); below it the interpreter (no compilation at all) is faster end to end
AUTO_TIER1_ROW_CALLS = 2e6
_EXPECTED_CALLS = 50

#: (params) -> (Σ w r², Jᵀ W r, Jᵀ W J): everything both algorithms need
NormalFn = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class FitResult:
    """One fitted candidate."""

    expr: Expr            # the model with its parameters bound to the fitted values
    params: np.ndarray    # fitted parameter values (slots of `model`)
    loss: float           # final (weighted) MSE; +inf when the model is not finite there
    iterations: int       # trial steps taken (over all starts)
    status: str           # one of STATUSES
    model: Expr = field(repr=False)   # the parametrised model that was fitted


# -------------------------------------------------------------------------------------------------
# Algorithms (pure NumPy over a NormalFn)

def _finite(f: float, *arrays: np.ndarray) -> bool:
    # one reduction per array: a NaN or ±inf anywhere makes the sum non-finite
    s = f
    for a in arrays:
        s += float(a.sum())
    return math.isfinite(s)


_DWARF = np.finfo(np.float64).tiny
_EPS = np.finfo(np.float64).eps

#: eigenvalues of the scaled normal matrix below this fraction of the largest are treated as
#: zero for the undamped (Gauss–Newton) step: the Jacobian is then rank deficient to working
#: precision (cond(J) > 1e7) and the minimum-norm step is taken in those directions
_RANK_RCOND = 1e-14


try:  # the LAPACK gufunc behind np.linalg.eigh, without its ~10 µs of Python checks
    from numpy.linalg import _umath_linalg as _ul

    def _eigh(S: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _ul.eigh_lo(S, signature="d->dd")
    _eigh(np.eye(2))
except Exception:  # pragma: no cover - other NumPy layouts
    _eigh = np.linalg.eigh  # type: ignore[assignment]


class _Eig:
    """Eigendecomposition of the scaled normal matrix D⁻¹ A D⁻¹ and the scaled gradient in its
    basis: every LM trial step (any damping) then costs O(n) to size and one product to form."""

    __slots__ = ("lam", "V", "c", "c2", "keep", "all_kept", "gnorm")

    def __init__(self, A: np.ndarray, g: np.ndarray, D: np.ndarray) -> None:
        lam, V = _eigh(A / (D[:, None] * D))
        self.lam = np.maximum(lam, 0.0)
        self.V = V
        self.c = V.T @ (g / D)
        self.c2 = self.c * self.c
        self.keep = self.lam > _RANK_RCOND * self.lam[-1]
        self.all_kept = bool(self.keep.all())
        self.gnorm = math.sqrt(float(self.c2.sum()))

    def inv(self, par: float) -> np.ndarray:
        if par == 0.0:
            return np.where(self.keep, 1.0 / np.where(self.keep, self.lam, 1.0), 0.0)
        return 1.0 / (self.lam + par)

    def size(self, inv: np.ndarray) -> tuple[float, float]:
        """(||D h||, Σ c² inv³) for the step with these inverse eigenvalues."""
        q = self.c2 * inv * inv
        return math.sqrt(float(q.sum())), float((q * inv).sum())

    def step(self, inv: np.ndarray) -> np.ndarray:
        """The scaled step D h."""
        return -(self.V @ (inv * self.c))


def _lmpar(E: _Eig, delta: float, par: float) -> tuple[np.ndarray, float]:
    """Moré's LM parameter: the scaled step D h, h = -(A + par D²)⁻¹ g, with ||D h|| within 10 %
    of `delta` (par = 0 when the Gauss–Newton step is already inside), by MINPACK's safeguarded
    Newton iteration on par.  On the eigendecomposition, a rank-deficient Jacobian gives the
    minimum-norm Gauss–Newton step (MINPACK's pivoted QR gives an arbitrary huge one)."""
    inv = E.inv(0.0)
    dxnorm, s = E.size(inv)
    fp = dxnorm - delta
    if fp <= 0.1 * delta:
        return E.step(inv), 0.0
    parl = fp * dxnorm * dxnorm / (delta * s) if E.all_kept and s > 0 else 0.0
    paru = E.gnorm / delta
    if paru == 0.0:
        paru = _DWARF / min(delta, 0.1)
    par = min(max(par, parl), paru)
    if par == 0.0:
        par = E.gnorm / dxnorm
    for it in range(10):
        if par == 0.0:
            par = max(_DWARF, 0.001 * paru)
        inv = E.inv(par)
        dxnorm, s = E.size(inv)
        prev, fp = fp, dxnorm - delta
        if abs(fp) <= 0.1 * delta or (parl == 0.0 and fp <= prev < 0.0) or it == 9 \
                or not s > 0:
            break
        parc = fp * dxnorm * dxnorm / (delta * s)
        if fp > 0:
            parl = max(parl, par)
        elif fp < 0:
            paru = min(paru, par)
        par = max(parl, par + parc)
    return E.step(inv), par


def levenberg_marquardt(normal: NormalFn, p0: np.ndarray, max_iter: int = 200, tol: float = 1e-8,
                        factor: float = 100.0) -> tuple[np.ndarray, float, int, str]:
    """Minimise Σ w r² with Levenberg–Marquardt as MINPACK's lmder does it (Moré's trust region
    with column scaling; the same acceptance, radius update and ftol/xtol/gtol tests), on the
    normal equations the kernels return.  A non-finite trial point counts as a failed step (the
    radius shrinks).  Returns (params, Σ w r², trial steps, status)."""
    p = np.array(p0, dtype=np.float64)
    f, g, A = normal(p)
    if not _finite(f, g, A):
        return p, (f if math.isfinite(f) else math.inf), 0, "non-finite"
    if f == 0.0:
        return p, f, 0, "converged"
    cn = np.sqrt(np.maximum(A.diagonal(), 0.0))
    if not cn.any():
        return p, f, 0, "singular"
    D = np.where(cn > 0, cn, 1.0)
    Dp = D * p
    xnorm = math.sqrt(float(Dp @ Dp))
    delta = factor * xnorm if xnorm > 0 else factor
    par = 0.0
    fnorm = math.sqrt(f)
    it = 0
    first = True
    with np.errstate(all="ignore"):
        while True:
            # gtol: the cosine between r and every (scaled) Jacobian column
            if float((np.abs(g) / np.where(cn > 0, cn, np.inf)).max()) <= tol * fnorm:
                return p, f, it, "converged"
            D = np.maximum(D, cn)
            E = _Eig(A, g, D)
            while True:
                hs, par = _lmpar(E, delta, par)
                pnorm = math.sqrt(float(hs @ hs))
                if first:
                    delta = min(delta, pnorm)
                if it >= max_iter:
                    return p, f, it, "max_iter"
                it += 1
                h = hs / D
                pn = p + h
                fn, gn, An = normal(pn)
                ok = _finite(fn, gn, An)
                fnorm1 = math.sqrt(fn) if ok else math.inf
                actred = 1.0 - (fnorm1 / fnorm) ** 2 if 0.1 * fnorm1 < fnorm else -1.0
                t1 = math.sqrt(max(float(h @ A @ h), 0.0)) / fnorm
                t2 = math.sqrt(par) * pnorm / fnorm
                prered = t1 * t1 + t2 * t2 / 0.5
                dirder = -(t1 * t1 + t2 * t2)
                ratio = actred / prered if prered != 0.0 else 0.0
                if ratio <= 0.25:
                    temp = 0.5 if actred >= 0 else 0.5 * dirder / (dirder + 0.5 * actred)
                    if 0.1 * fnorm1 >= fnorm or temp < 0.1:
                        temp = 0.1
                    delta = temp * min(delta, pnorm / 0.1)
                    par /= temp
                elif par == 0.0 or ratio >= 0.75:
                    delta = pnorm / 0.5
                    par *= 0.5
                if ratio >= 1e-4:
                    p, f, g, A, fnorm = pn, fn, gn, An, fnorm1
                    cn = np.sqrt(np.maximum(A.diagonal(), 0.0))
                    Dp = D * p
                    xnorm = math.sqrt(float(Dp @ Dp))
                    first = False
                if f == 0.0:
                    return p, f, it, "converged"
                if abs(actred) <= tol and prered <= tol and 0.5 * ratio <= 1.0:
                    return p, f, it, "converged"
                if delta <= tol * xnorm or delta <= _EPS * xnorm or delta < _DWARF:
                    return p, f, it, "converged"
                if abs(actred) <= _EPS and prered <= _EPS and 0.5 * ratio <= 1.0:
                    return p, f, it, "converged"
                if ratio >= 1e-4:
                    break


def _gradient_small(f: float, g: np.ndarray, diag: np.ndarray, tol: float) -> bool:
    # MINPACK's gtol: the cosine between r and every Jacobian column
    norms = np.sqrt(np.maximum(diag, 0.0)) * math.sqrt(f)
    with np.errstate(all="ignore"):
        cos = np.where(norms > 0, np.abs(g) / np.where(norms > 0, norms, 1.0), 0.0)
    return bool(cos.max(initial=0.0) <= tol)


def bfgs(normal: NormalFn, p0: np.ndarray, max_iter: int = 200, tol: float = 1e-8
         ) -> tuple[np.ndarray, float, int, str]:
    """Minimise Σ w r² with BFGS (inverse-Hessian update, backtracking Armijo line search that
    also backs off non-finite trial points).  Returns (params, Σ w r², trial steps, status)."""
    p = np.array(p0, dtype=np.float64)
    n = p.shape[0]
    f, g, A = normal(p)
    if not _finite(f, g):
        return p, (f if math.isfinite(f) else math.inf), 0, "non-finite"
    if f == 0.0:
        return p, f, 0, "converged"
    if not np.any(np.diag(A) > 0):
        return p, f, 0, "singular"
    grad = 2.0 * g
    Hinv = np.eye(n)
    first = True
    it = 0
    while it < max_iter:
        if _gradient_small(f, 0.5 * grad, np.diag(A), tol):
            return p, f, it, "converged"
        d = -Hinv @ grad
        slope = d @ grad
        if not slope < 0.0:
            Hinv = np.eye(n)
            d, slope = -grad, -(grad @ grad)
            if slope == 0.0:
                return p, f, it, "converged"
        if first:  # first step: a Newton-like length from the Gauss–Newton curvature
            curv = d @ A @ d
            t = min(1.0, -slope / (2.0 * curv)) if curv > 0 else 1.0
        else:
            t = 1.0
        accepted = False
        while it < max_iter:
            it += 1
            pn = p + t * d
            fn, gn, An = normal(pn)
            if _finite(fn, gn) and fn <= f + 1e-4 * t * slope:
                accepted = True
                break
            t *= 0.5
            if t * np.linalg.norm(d) <= tol * (np.linalg.norm(p) + tol):
                return p, f, it, "converged"
        if not accepted:
            return p, f, it, "max_iter"
        s = pn - p
        gradn = 2.0 * gn
        yv = gradn - grad
        sy = s @ yv
        f_old = f
        p, f, grad, A = pn, fn, gradn, An
        if sy > 1e-12 * np.linalg.norm(s) * np.linalg.norm(yv):
            if first:
                Hinv = np.eye(n) * (sy / (yv @ yv))
            rho = 1.0 / sy
            V = np.eye(n) - rho * np.outer(s, yv)
            Hinv = V @ Hinv @ V.T + rho * np.outer(s, s)
            first = False
        if f == 0.0 or f_old - f <= tol * f_old:
            return p, f, it, "converged"
        if np.linalg.norm(s) <= tol * (np.linalg.norm(p) + tol):
            return p, f, it, "converged"
    return p, f, it, "max_iter"


_ALGORITHMS = {"lm": levenberg_marquardt, "bfgs": bfgs}


# -------------------------------------------------------------------------------------------------
# Front end

def _prepare_model(expr: Expr, params0: Any, lift: Any) -> tuple[Expr, np.ndarray]:
    if not isinstance(expr, Expr):
        raise FitError(f"fit takes Expr objects, got {type(expr).__name__}")
    if lift not in ("auto", True, False):
        raise FitError(f"lift must be 'auto', True or False, got {lift!r}")
    own = expr.n_params
    do_lift = (own == 0) if lift == "auto" else bool(lift)
    start = None
    if params0 is not None:
        start = np.asarray(params0, dtype=np.float64)
        if start.ndim != 1:
            raise DataError(f"params0 must be a 1-D vector, got shape {start.shape}")
    base = np.ones(own) if start is None or start.shape[0] < own else start[:own]
    model, values = lift_constants(expr, params=base) if do_lift else (expr, base)
    if start is not None:
        if start.shape[0] == model.n_params:
            values = start.copy()
        elif start.shape[0] != own:
            raise DataError(f"params0 has {start.shape[0]} value(s); the model has {own} "
                            f"parameter(s) of its own and {model.n_params} after lifting")
    if not np.all(np.isfinite(values)):
        raise DataError("params0 has non-finite values")
    return model, np.ascontiguousarray(values, dtype=np.float64)


def _check_data(X: Any, y: Any, weights: Any, exprs: Sequence[Expr]
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    A = as_matrix(X, list(exprs))
    Y = np.asarray(y, dtype=np.float64)
    if Y.ndim != 1 or Y.shape[0] != A.shape[0]:
        raise DataError(f"y must be a vector of {A.shape[0]} values (one per row), got shape "
                        f"{Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise DataError("y has non-finite values")
    need = max((c + 1 for e in exprs for c in e.variables()[-1:]), default=0)
    if need > A.shape[1]:
        raise DataError(f"expressions use {need} column(s), data has {A.shape[1]}")
    W = None
    if weights is not None:
        W = np.asarray(weights, dtype=np.float64)
        if W.shape != Y.shape:
            raise DataError(f"weights must have shape {Y.shape}, got {W.shape}")
        if not np.all(np.isfinite(W)) or np.any(W < 0):
            raise DataError("weights must be finite and non-negative")
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


def _fit_one(model: Expr, p0: np.ndarray, normal: NormalFn, sum_w: float, method: str,
             max_iter: int, tol: float, restarts: int, rng: np.random.Generator) -> FitResult:
    if model.n_params == 0:
        f, _, _ = normal(p0)
        loss = f / sum_w if math.isfinite(f) and sum_w > 0 else (math.inf if not math.isfinite(f)
                                                                 else 0.0)
        return FitResult(model, p0, loss, 0, "converged", model)
    algo = _ALGORITHMS[method]
    best: tuple[float, np.ndarray, str] | None = None
    iters = 0
    for start in _starts(p0, restarts, rng):
        p, f, it, status = algo(normal, start, max_iter, tol)
        iters += it
        score = f if math.isfinite(f) else math.inf
        if best is None or score < best[0]:
            best = (score, p, status)
    assert best is not None
    f, p, status = best
    loss = f / sum_w if sum_w > 0 and math.isfinite(f) else (math.inf if not math.isfinite(f)
                                                             else 0.0)
    return FitResult(bind_params(model, p), p, loss, iters, status, model)


def fit(expr_or_exprs: Expr | Sequence[Expr], X: Any, y: Any, params0: Any = None,
        method: str = "lm", max_iter: int | None = None, tol: float = 1e-8, weights: Any = None,
        restarts: int = 0, seed: int | None = None, *, lift: Any = "auto",
        tier: Any = "auto", threads: int | None = None) -> FitResult | list[FitResult]:
    """Fit the parameters of one expression (-> FitResult) or of each expression of a list
    (-> list of FitResult, fitted independently on `threads` threads, default every core) to
    data X (rows × columns), y, minimising the (weighted) mean squared error.

    `params0`: starting values (one vector, or one per expression for a list; see the module
    docstring); `method`: "lm" (Levenberg–Marquardt) or "bfgs"; `max_iter`: trial steps per
    start (default 100 × the number of parameters, MINPACK's default); `tol`: relative
    tolerance on loss decrease, step and gradient; `restarts`: extra
    starts jittered from the first (seeded by `seed`), the best kept; `tier`: 0 (the compiled-once
    Jacobian interpreter), 1 (fused kernels compiled per structure), "numpy" (the reference
    Jacobian; slow, for testing) or "auto" (1 when rows × expected kernel calls reaches
    AUTO_TIER1_ROW_CALLS, else 0)."""
    single = isinstance(expr_or_exprs, Expr)
    exprs = [expr_or_exprs] if single else list(expr_or_exprs)  # type: ignore[arg-type]
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
    n_threads = threads if threads is not None else (os.cpu_count() or 1)
    if isinstance(n_threads, bool) or not isinstance(n_threads, int) or n_threads < 1:
        raise FitError(f"threads must be a positive int, got {threads!r}")
    A, Y, W = _check_data(X, y, weights, exprs)
    models = [_prepare_model(e, s, lift) for e, s in zip(exprs, starts)]
    seeds = np.random.SeedSequence(seed).spawn(len(exprs))

    if tier == "auto":
        tier = 1 if A.shape[0] * _EXPECTED_CALLS * (1 + restarts) >= AUTO_TIER1_ROW_CALLS else 0
    kernels: GradKernels | Tier0Grad | None = None
    if tier == "numpy":
        sum_w = float(Y.shape[0] if W is None else W.sum())
        normals = [_normal_numpy(m, A, Y, W) for m, _ in models]
    else:
        fitted = [m for m, _ in models]
        kernels = GradKernels(fitted) if tier == 1 else Tier0Grad(fitted)
        data = prepare_data(A, Y, W, kernels.lanes)
        sum_w = data.sum_w

        def _mk(k: int) -> NormalFn:
            return lambda p: kernels.normal(k, data, np.ascontiguousarray(p, dtype=np.float64))
        normals = [_mk(k) for k in range(len(models))]

    def run(k: int) -> FitResult:
        model, p0 = models[k]
        budget = max_iter if max_iter is not None else 100 * max(model.n_params, 1)
        return _fit_one(model, p0, normals[k], sum_w, method, budget, float(tol), restarts,
                        np.random.default_rng(seeds[k]))

    try:
        if n_threads == 1 or len(exprs) == 1:
            results = [run(k) for k in range(len(exprs))]
        else:
            with ThreadPoolExecutor(max_workers=min(n_threads, len(exprs))) as pool:
                results = list(pool.map(run, range(len(exprs))))
    finally:
        if kernels is not None:
            kernels.close()
    return results[0] if single else results
