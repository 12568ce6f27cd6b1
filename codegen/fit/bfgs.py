"""BFGS over the normal equations a kernel returns (inverse-Hessian update, backtracking Armijo
line search that also backs off non-finite trial points)."""

from __future__ import annotations

import math
import time

import numpy as np

from symcore.codegen.fit.lm import NormalFn, finite

__all__ = ["bfgs"]


def _gradient_small(f: float, g: np.ndarray, diag: np.ndarray, tol: float) -> bool:
    # MINPACK's gtol: the cosine between r and every Jacobian column
    norms = np.sqrt(np.maximum(diag, 0.0)) * math.sqrt(f)
    with np.errstate(all="ignore"):
        cos = np.where(norms > 0, np.abs(g) / np.where(norms > 0, norms, 1.0), 0.0)
    return bool(cos.max(initial=0.0) <= tol)


def bfgs(normal: NormalFn, p0: np.ndarray, max_iter: int = 200, tol: float = 1e-8,
         deadline: float = math.inf) -> tuple[np.ndarray, float, int, str]:
    """Minimise Σ w r² with BFGS (inverse-Hessian update, backtracking Armijo line search that
    also backs off non-finite trial points).  Past `deadline` (a time.monotonic() value) it
    stops before the next trial step with status "time limit" at its best point.  Returns
    (params, Σ w r², trial steps, status)."""
    p = np.array(p0, dtype=np.float64)
    n = p.shape[0]
    f, g, A = normal(p)
    if not finite(f, g):
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
            if deadline < math.inf and time.monotonic() > deadline:
                return p, f, it, "time limit"
            it += 1
            pn = p + t * d
            fn, gn, An = normal(pn)
            if finite(fn, gn) and fn <= f + 1e-4 * t * slope:
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

