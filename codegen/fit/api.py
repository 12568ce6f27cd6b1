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
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from symcore.errors import DataError, FitError
from symcore.evaluate import as_matrix
from symcore.ir import Expr, topo
from symcore.params import bind_params, lift_constants

from symcore.codegen.grad.jacobian import GradKernels, Tier0Grad, jacobian_reference, prepare_data

__all__ = ["fit", "FitResult", "levenberg_marquardt", "bfgs", "STATUSES", "METHODS"]

STATUSES = ("converged", "max_iter", "non-finite", "singular")
METHODS = ("lm", "bfgs")
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
    return _lm_core(normal, p, f, g, A, D, delta, 0.0, 0, True, max_iter, tol)


def _lm_core(normal: NormalFn, p: np.ndarray, f: float, g: np.ndarray, A: np.ndarray,
             D: np.ndarray, delta: float, par: float, it: int, first: bool, max_iter: int,
             tol: float) -> tuple[np.ndarray, float, int, str]:
    """The iterations of `levenberg_marquardt` from a given state (at the start of an outer
    iteration), so a batched run can hand its last few problems over."""
    fnorm = math.sqrt(f)
    cn = np.sqrt(np.maximum(A.diagonal(), 0.0))
    Dp = D * p
    xnorm = math.sqrt(float(Dp @ Dp))
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


class _BatchEig:
    """`_Eig` for a stack of problems padded to a common size (padded parameters have zero
    Jacobian columns, unit scale and zero gradient, so they never move)."""

    def __init__(self, A: np.ndarray, g: np.ndarray, D: np.ndarray, n_real: np.ndarray) -> None:
        lam, V = _eigh(A / (D[:, :, None] * D[:, None, :]))
        self.lam = np.maximum(lam, 0.0)
        self.V = V
        self.c = np.einsum("kji,kj->ki", V, g / D)
        self.c2 = self.c * self.c
        self.keep = self.lam > _RANK_RCOND * self.lam[:, -1:]
        self.all_kept = self.keep.sum(axis=1) >= n_real
        self.gnorm = np.sqrt(self.c2.sum(axis=1))


def _lmpar_batch(E: _BatchEig, delta: np.ndarray, par: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """`_lmpar` for every problem of the stack at once (same iteration, masked)."""
    lam, c2 = E.lam, E.c2
    inv = np.where(E.keep, 1.0 / np.where(E.keep, lam, 1.0), 0.0)
    q = c2 * inv * inv
    dxnorm = np.sqrt(q.sum(axis=1))
    s = (q * inv).sum(axis=1)
    fp = dxnorm - delta
    gn_done = fp <= 0.1 * delta
    done = gn_done.copy()
    parl = np.where(E.all_kept & (s > 0), fp * dxnorm * dxnorm / (delta * s), 0.0)
    paru = E.gnorm / delta
    paru = np.where(paru == 0.0, _DWARF / np.minimum(delta, 0.1), paru)
    par = np.minimum(np.maximum(par, parl), paru)
    par = np.where(par == 0.0, E.gnorm / dxnorm, par)
    for it in range(10):
        live = ~done
        if not live.any():
            break
        par = np.where(live & (par == 0.0), np.maximum(_DWARF, 0.001 * paru), par)
        inv_t = 1.0 / (lam + par[:, None])
        inv = np.where(live[:, None], inv_t, inv)
        q = c2 * inv_t * inv_t
        dx = np.sqrt(q.sum(axis=1))
        s = (q * inv_t).sum(axis=1)
        prev = fp
        fp = np.where(live, dx - delta, fp)
        stop = live & ((np.abs(fp) <= 0.1 * delta) | ((parl == 0.0) & (fp <= prev) & (prev < 0.0))
                       | (it == 9) | ~(s > 0))
        done |= stop
        upd = live & ~stop
        parc = fp * dx * dx / (delta * s)
        parl = np.where(upd & (fp > 0), np.maximum(parl, par), parl)
        paru = np.where(upd & (fp < 0), np.minimum(paru, par), paru)
        par = np.where(upd, np.maximum(parl, par + parc), par)
    hs = -np.einsum("kij,kj->ki", E.V, inv * E.c)
    return hs, np.where(gn_done, 0.0, par)


#: (candidate ids (K,), params (K, Pm)) -> (Σ w r² (K,), Jᵀ W r (K, Pm), Jᵀ W J (K, Pm, Pm))
BatchFn = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


#: when this few problems are left, the batch hands them to the one-problem loop (a batched
#: round costs ~0.5 ms of NumPy overhead however few problems it carries)
HANDOVER = 4


def _lm_batch(cands: np.ndarray, starts: np.ndarray, sizes: np.ndarray, budgets: np.ndarray,
              tol: float, evaluate: BatchFn, normals: Sequence[NormalFn],
              pool: ThreadPoolExecutor | None = None, factor: float = 100.0
              ) -> list[tuple[np.ndarray, float, int, str]]:
    """`levenberg_marquardt` on K independent problems in lockstep: one trial step of every
    unfinished problem per round, the small linear algebra batched across problems and the
    trial points evaluated in one `evaluate` call per round (so a round's Python cost is shared
    by the whole population).  Problem k fits candidate cands[k] from starts[k, :sizes[k]]
    (padded parameters have zero Jacobian columns and never move).  Same iterates as the
    one-problem version up to rounding."""
    K, Pm = starts.shape
    result: list[tuple[np.ndarray, float, int, str] | None] = [None] * K
    p = np.ascontiguousarray(starts, dtype=np.float64)
    f, g, A = evaluate(cands, p)
    live = np.ones(K, dtype=bool)
    it = np.zeros(K, dtype=np.int64)

    def finish(ks: np.ndarray, status: str) -> None:
        for k in ks:
            fk = float(f[k])
            result[k] = (p[k, :sizes[k]].copy(), fk if math.isfinite(fk) else math.inf,
                         int(it[k]), status)
            live[k] = False

    with np.errstate(all="ignore"):
        ok = np.isfinite(f + g.sum(axis=1) + A.sum(axis=(1, 2)))
        finish(np.flatnonzero(~ok), "non-finite")
        finish(np.flatnonzero(live & (f == 0.0)), "converged")
        diag = np.einsum("kii->ki", A)
        finish(np.flatnonzero(live & ~(diag > 0).any(axis=1)), "singular")
        cn = np.sqrt(np.maximum(diag, 0.0))
        D = np.where(cn > 0, cn, 1.0)
        xnorm = np.sqrt(((D * p) ** 2).sum(axis=1))
        delta = np.where(xnorm > 0, factor * xnorm, factor)
        par = np.zeros(K)
        fnorm = np.sqrt(np.where(ok, f, 0.0))
        first = np.ones(K, dtype=bool)
        outer = live.copy()           # problems starting an outer iteration (new point)
        lam = np.zeros((K, Pm))
        V = np.zeros((K, Pm, Pm))
        c = np.zeros((K, Pm))
        keep = np.zeros((K, Pm), dtype=bool)
        all_kept = np.zeros(K, dtype=bool)
        gnorm = np.zeros(K)
        while live.any():
            if live.sum() <= HANDOVER:
                # resume each at the start of an outer iteration: after a rejected trial that
                # recomputes the same scaling and eigendecomposition, so the iterates are equal
                rest = np.flatnonzero(live)

                def resume(k: int) -> tuple[np.ndarray, float, int, str]:
                    P = sizes[k]
                    nf = normals[cands[k]]
                    return _lm_core(nf, p[k, :P].copy(), float(f[k]),
                                    g[k, :P].copy(), A[k, :P, :P].copy(), D[k, :P].copy(),
                                    float(delta[k]), float(par[k]), int(it[k]),
                                    bool(first[k]), int(budgets[k]), tol)
                done = list(pool.map(resume, rest)) if pool is not None and rest.size > 1 \
                    else [resume(k) for k in rest]
                for k, r in zip(rest, done):
                    result[k] = r
                live[rest] = False
                break
            o = np.flatnonzero(outer & live)
            if o.size:
                cos = (np.abs(g[o]) / np.where(cn[o] > 0, cn[o], np.inf)).max(axis=1)
                small = cos <= tol * fnorm[o]
                finish(o[small], "converged")
                o = o[~small]
                D[o] = np.maximum(D[o], cn[o])
                E = _BatchEig(A[o], g[o], D[o], sizes[o])
                lam[o], V[o], c[o], keep[o] = E.lam, E.V, E.c, E.keep
                all_kept[o], gnorm[o] = E.all_kept, E.gnorm
            act = np.flatnonzero(live)
            if not act.size:
                break
            E = _BatchEig.__new__(_BatchEig)
            E.lam, E.V, E.c, E.keep = lam[act], V[act], c[act], keep[act]
            E.c2, E.all_kept, E.gnorm = c[act] ** 2, all_kept[act], gnorm[act]
            hs, par_a = _lmpar_batch(E, delta[act], par[act])
            par[act] = par_a
            pnorm = np.sqrt((hs * hs).sum(axis=1))
            delta[act] = np.where(first[act], np.minimum(delta[act], pnorm), delta[act])
            over = it[act] >= budgets[act]
            finish(act[over], "max_iter")
            act, hs, pnorm, par_a = act[~over], hs[~over], pnorm[~over], par_a[~over]
            if not act.size:
                break
            it[act] += 1
            h = hs / D[act]
            pn = np.ascontiguousarray(p[act] + h)
            fn, gn, An = evaluate(cands[act], pn)
            ok = np.isfinite(fn + gn.sum(axis=1) + An.sum(axis=(1, 2)))
            fnorm1 = np.where(ok, np.sqrt(np.where(ok, fn, 0.0)), np.inf)
            fno = fnorm[act]
            actred = np.where(0.1 * fnorm1 < fno, 1.0 - (fnorm1 / fno) ** 2, -1.0)
            hAh = np.einsum("ki,kij,kj->k", h, A[act], h)
            t1 = np.sqrt(np.maximum(hAh, 0.0)) / fno
            t2 = np.sqrt(par_a) * pnorm / fno
            prered = t1 * t1 + t2 * t2 / 0.5
            dirder = -(t1 * t1 + t2 * t2)
            ratio = np.where(prered != 0.0, actred / np.where(prered != 0.0, prered, 1.0), 0.0)
            low = ratio <= 0.25
            temp = np.where(actred >= 0, 0.5, 0.5 * dirder / (dirder + 0.5 * actred))
            temp = np.where((0.1 * fnorm1 >= fno) | (temp < 0.1), 0.1, temp)
            high = ~low & ((par_a == 0.0) | (ratio >= 0.75))
            da = delta[act]
            delta[act] = np.where(low, temp * np.minimum(da, pnorm / 0.1),
                                  np.where(high, pnorm / 0.5, da))
            par[act] = np.where(low, par_a / temp, np.where(high, par_a * 0.5, par_a))
            acc = ratio >= 1e-4
            ka = act[acc]
            p[ka], f[ka], g[ka], A[ka] = pn[acc], fn[acc], gn[acc], An[acc]
            fnorm[ka] = fnorm1[acc]
            cn[ka] = np.sqrt(np.maximum(np.einsum("kii->ki", An[acc]), 0.0))
            xnorm[ka] = np.sqrt(((D[ka] * p[ka]) ** 2).sum(axis=1))
            first[ka] = False
            outer[:] = False
            outer[ka] = True
            fa = f[act]
            conv = ((fa == 0.0)
                    | ((np.abs(actred) <= tol) & (prered <= tol) & (0.5 * ratio <= 1.0))
                    | (delta[act] <= tol * xnorm[act]) | (delta[act] <= _EPS * xnorm[act])
                    | (delta[act] < _DWARF)
                    | ((np.abs(actred) <= _EPS) & (prered <= _EPS) & (0.5 * ratio <= 1.0)))
            finish(act[conv], "converged")
    return result  # type: ignore[return-value]


def _native_lm(kernels: Tier0Grad, cids: np.ndarray, starts: np.ndarray, bud: np.ndarray,
               data: Any, tol: float, pool: ThreadPoolExecutor | None, n_threads: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tier0Grad.fit_lm with the largest budgets first (so the slow problems do not start
    last on one thread); results in the problems' order."""
    order = np.argsort(-bud, kind="stable")
    out = kernels.fit_lm(cids[order], starts[order], bud[order], data, tol, pool=pool,
                         n_threads=n_threads)
    back = np.empty_like(order)
    back[order] = np.arange(order.shape[0])
    return tuple(a[back] for a in out)  # type: ignore[return-value]


def _native_runs(kernels: Tier0Grad, cids: np.ndarray, starts: np.ndarray, bud: np.ndarray,
                 is_first: np.ndarray, n_par: Sequence[int], data: Any, sub: Any, tol: float,
                 pool: ThreadPoolExecutor | None, n_threads: int
                 ) -> list[tuple[np.ndarray, float, int, str]]:
    """Every (candidate, start) problem in native code.  With a row subsample `sub`, restarts
    run on it; the best restart of a candidate whose end is already below the first start's
    loss on all rows is refined on all rows from there, with its own budget again."""
    if sub is None:
        rp, rf, rit, rst = _native_lm(kernels, cids, starts, bud, data, tol, pool, n_threads)
    else:
        first = np.flatnonzero(is_first)
        rest = np.flatnonzero(~is_first)
        rp, rf = starts.copy(), np.full(len(cids), np.inf)
        rit, rst = np.zeros(len(cids), np.int64), np.zeros(len(cids), np.int64)
        for idx, d in ((first, data), (rest, sub)):
            out = _native_lm(kernels, cids[idx], starts[idx], bud[idx], d, tol, pool,
                             n_threads)
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
                             data, tol, pool, n_threads)
            rp[again], rf[again] = out[0], out[1]
            rit[again] += out[2]
            rst[again] = out[3]
    return [(rp[j, :n_par[cids[j]]].copy(), float(rf[j]), int(rit[j]), STATUSES[rst[j]])
            for j in range(len(cids))]


def _batch_from_normals(normals: Sequence[NormalFn], n_params: Sequence[int], Pm: int,
                        pool: ThreadPoolExecutor | None, n_threads: int) -> BatchFn:
    """A BatchFn over one-candidate callbacks (tier 1, NumPy), chunks on the threads."""
    def run(cids: np.ndarray, params: np.ndarray, f: np.ndarray, g: np.ndarray,
            A: np.ndarray, lo: int, hi: int) -> None:
        for j in range(lo, hi):
            k = int(cids[j])
            P = n_params[k]
            fk, gk, Ak = normals[k](params[j, :P].copy())
            f[j] = fk
            g[j, :P] = gk
            A[j, :P, :P] = Ak

    def evaluate(cids: np.ndarray, params: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        K = len(cids)
        f, g, A = np.empty(K), np.zeros((K, Pm)), np.zeros((K, Pm, Pm))
        T = max(1, min(n_threads, K // 8)) if pool is not None else 1
        bounds = [K * t // T for t in range(T + 1)]
        futures = [pool.submit(run, cids, params, f, g, A, bounds[t], bounds[t + 1])
                   for t in range(1, T)]
        run(cids, params, f, g, A, bounds[0], bounds[1])
        for fut in futures:
            fut.result()
        return f, g, A
    return evaluate


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

def _n_params(expr: Expr) -> int:
    # Expr.n_params flattens the expression on every call: count once per model
    return max((n.value for n in topo([expr]) if n.op == "param"), default=-1) + 1


def _prepare_model(expr: Expr, params0: Any, lift: Any) -> tuple[Expr, np.ndarray]:
    if not isinstance(expr, Expr):
        raise FitError(f"fit takes Expr objects, got {type(expr).__name__}")
    if lift not in ("auto", True, False):
        raise FitError(f"lift must be 'auto', True or False, got {lift!r}")
    own = _n_params(expr)
    do_lift = (own == 0) if lift == "auto" else bool(lift)
    start = None
    if params0 is not None:
        start = np.asarray(params0, dtype=np.float64)
        if start.ndim != 1:
            raise DataError(f"params0 must be a 1-D vector, got shape {start.shape}")
    base = np.ones(own) if start is None or start.shape[0] < own else start[:own]
    model, values = lift_constants(expr, params=base) if do_lift else (expr, base)
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
    Y = np.asarray(y, dtype=np.float64)
    if Y.ndim != 1 or Y.shape[0] != A.shape[0]:
        raise DataError(f"y must be a vector of {A.shape[0]} values (one per row), got shape "
                        f"{Y.shape}")
    if not np.all(np.isfinite(Y)):
        raise DataError("y has non-finite values")
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


def _loss(f: float, sum_w: float) -> float:
    if not math.isfinite(f):
        return math.inf
    return f / sum_w if sum_w > 0 else 0.0


def _best(model: Expr, runs: list[tuple[np.ndarray, float, int, str]], sum_w: float
          ) -> FitResult:
    """The run with the lowest finite loss (the first start wins ties)."""
    iters = sum(r[2] for r in runs)
    p, f, _, status = min(runs, key=lambda r: r[1] if math.isfinite(r[1]) else math.inf)
    return FitResult(bind_params(model, p), p, _loss(f, sum_w), iters, status, model)


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
    Jacobian interpreter of `grad.Tier0Grad`, normal equations fused in-kernel, whole rounds of
    a population in one native call), 1 (fused kernels compiled per structure), "numpy" (the
    reference Jacobian; slow, for testing) or "auto" (1 when rows × expected kernel calls
    reaches AUTO_TIER1_ROW_CALLS, else 0)."""
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

    auto = tier == "auto"
    if auto:
        tier = 1 if A.shape[0] * _EXPECTED_CALLS >= AUTO_TIER1_ROW_CALLS else 0
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

    n_par = [_n_params(m) for m, _ in models]
    budgets = [max_iter if max_iter is not None else 100 * max(n, 1) for n in n_par]
    rngs = [np.random.default_rng(s) for s in seeds]
    pool = ThreadPoolExecutor(max_workers=n_threads) if n_threads > 1 and len(exprs) > 1 else None
    try:
        results: list[FitResult | None] = [None] * len(exprs)
        problems: list[tuple[int, np.ndarray]] = []
        first_of: list[int] = []
        for k, (model, p0) in enumerate(models):
            if n_par[k] == 0:
                f, _, _ = normals[k](p0)
                results[k] = FitResult(model, p0, _loss(f, sum_w), 0, "converged", model)
            else:
                problems += [(k, s) for s in _starts(p0, restarts, rngs[k])]
                first_of.append(len(problems) - restarts - 1)
        # per-problem budgets: restarts run on a quarter
        cids_all = np.array([k for k, _ in problems], dtype=np.int64)
        bud = np.array(budgets, dtype=np.int64)[cids_all] if problems else np.zeros(0, np.int64)
        is_first = np.zeros(len(problems), dtype=bool)
        is_first[first_of] = True
        bud = np.where(is_first, bud, np.maximum(bud // RESTART_BUDGET_DIV, 1))
        if method == "lm" and problems:
            # every (candidate, start) in lockstep: batched linear algebra, threaded kernels
            Pm = max(max(n_par), 1)
            cids = np.array([k for k, _ in problems], dtype=np.int64)
            starts = np.zeros((len(problems), Pm))
            for j, (k, s) in enumerate(problems):
                starts[j, :len(s)] = s
            if isinstance(kernels, Tier0Grad):
                sub = None
                if restarts and A.shape[0] >= 2 * SUBSAMPLE_ROWS:
                    pick = np.sort(np.random.default_rng(seed).choice(
                        A.shape[0], SUBSAMPLE_ROWS, replace=False))
                    sub = prepare_data(A[pick], Y[pick], None if W is None else W[pick],
                                       kernels.lanes)
                runs = _native_runs(kernels, cids, starts, bud, is_first, n_par, data, sub,
                                    float(tol), pool, n_threads)
            else:
                evaluate = _batch_from_normals(normals, n_par, Pm, pool, n_threads)
                runs = _lm_batch(cids, starts, np.array(n_par)[cids], bud,
                                 float(tol), evaluate, normals, pool)
        else:
            def one(j: int) -> tuple[np.ndarray, float, int, str]:
                k, s = problems[j]
                return bfgs(normals[k], s, int(bud[j]), float(tol))
            runs = list(pool.map(one, range(len(problems)))) if pool is not None else \
                [one(j) for j in range(len(problems))]
        grouped: dict[int, list] = {}
        for (k, _), run in zip(problems, runs):
            grouped.setdefault(k, []).append(run)
        for k, rs in grouped.items():
            results[k] = _best(models[k][0], rs, sum_w)
    finally:
        if pool is not None:
            pool.shutdown()
        if kernels is not None:
            kernels.close()
    return results[0] if single else results  # type: ignore[return-value]

