"""Levenberg–Marquardt in NumPy, as MINPACK's lmder runs it: one problem (`levenberg_marquardt`)
and many problems in lockstep with their small linear algebra batched (`lm_batch`), over the
normal equations a kernel returns."""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["levenberg_marquardt", "lm_batch", "batch_from_normals", "NormalFn", "BatchFn",
           "STATUSES", "finite"]

#: every fit ends in one of these (the native loop returns their indices)
STATUSES = ("converged", "max_iter", "non-finite", "singular", "time limit")

#: (params) -> (Σ w r², Jᵀ W r, Jᵀ W J): everything both algorithms need
NormalFn = Callable[[np.ndarray], tuple[float, np.ndarray, np.ndarray]]


def finite(f: float, *arrays: np.ndarray) -> bool:
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
                        factor: float = 100.0, deadline: float = math.inf
                        ) -> tuple[np.ndarray, float, int, str]:
    """Minimise Σ w r² with Levenberg–Marquardt as MINPACK's lmder does it (Moré's trust region
    with column scaling; the same acceptance, radius update and ftol/xtol/gtol tests), on the
    normal equations the kernels return.  A non-finite trial point counts as a failed step (the
    radius shrinks).  Past `deadline` (a time.monotonic() value) it stops before the next
    trial step with status "time limit" at its best point.  Returns (params, Σ w r², trial
    steps, status)."""
    p = np.array(p0, dtype=np.float64)
    f, g, A = normal(p)
    if not finite(f, g, A):
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
    return _lm_core(normal, p, f, g, A, D, delta, 0.0, 0, True, max_iter, tol, deadline)


def _lm_core(normal: NormalFn, p: np.ndarray, f: float, g: np.ndarray, A: np.ndarray,
             D: np.ndarray, delta: float, par: float, it: int, first: bool, max_iter: int,
             tol: float, deadline: float = math.inf) -> tuple[np.ndarray, float, int, str]:
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
                if deadline < math.inf and time.monotonic() > deadline:
                    return p, f, it, "time limit"
                it += 1
                h = hs / D
                pn = p + h
                fn, gn, An = normal(pn)
                ok = finite(fn, gn, An)
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


def lm_batch(cands: np.ndarray, starts: np.ndarray, sizes: np.ndarray, budgets: np.ndarray,
              tol: float, evaluate: BatchFn, normals: Sequence[NormalFn],
              pool: Any = None, factor: float = 100.0, deadlines: np.ndarray | None = None
              ) -> list[tuple[np.ndarray, float, int, str]]:
    """`levenberg_marquardt` on K independent problems in lockstep: one trial step of every
    unfinished problem per round, the small linear algebra batched across problems and the
    trial points evaluated in one `evaluate` call per round (so a round's Python cost is shared
    by the whole population).  Problem k fits candidate cands[k] from starts[k, :sizes[k]]
    (padded parameters have zero Jacobian columns and never move).  Same iterates as the
    one-problem version up to rounding.  Problem k stops with status "time limit" before a
    trial step past deadlines[k] (time.monotonic() values; None: no limit)."""
    K, Pm = starts.shape
    dls = np.full(K, math.inf) if deadlines is None else np.asarray(deadlines, dtype=np.float64)
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
                                    bool(first[k]), int(budgets[k]), tol, float(dls[k]))
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
            late = ~over & (dls[act] < time.monotonic())
            finish(act[late], "time limit")
            over |= late
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


def batch_from_normals(normals: Sequence[NormalFn], n_params: Sequence[int], Pm: int,
                        pool: Any, n_threads: int) -> BatchFn:
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

