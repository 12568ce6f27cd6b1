"""SRBench's symbolic-solution check done with SymPy (the slow path of
symcore.metrics.solution, run in a worker process under a timeout): the difference simplifies
to a constant, or the ratio to a non-zero constant; every positive is confirmed numerically.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

__all__ = ["round_float_literals", "sympy_check", "numeric_relation"]

# a float literal of SymPy text (SymPy reads these as Float; integers stay Integer)
_FLOAT = re.compile(r"(?<![\w.])(\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?"
                    r"|\d+[eE][+-]?\d+)(?![\w.])")


def round_float_literals(text: str, digits: int) -> str:
    """SRBench's rounding of a model's floats, on its text: |c| < 1e-4 becomes 0, any other
    float literal is rounded to `digits` decimals (integers and named constants untouched)."""
    def sub(m: re.Match) -> str:
        v = float(m.group(0))
        return "0" if abs(v) < 1e-4 else repr(round(v, digits))
    return _FLOAT.sub(sub, text)


def numeric_relation(P: np.ndarray, T: np.ndarray, rtol: float = 1e-9
                     ) -> tuple[bool, bool, float, float]:
    """Is P - T constant, is P / T a non-zero constant, on the rows where both are finite?
    Returns (diff_constant, ratio_constant, diff, ratio).  Both False without 8 usable rows."""
    ok = np.isfinite(P) & np.isfinite(T)
    P, T = P[ok], T[ok]
    if P.size < 8:
        return False, False, float("nan"), float("nan")
    D = P - T
    d = float(np.median(D))
    # rounding of two equal functions: a few ulps of the larger operand per row
    scale = np.abs(P) + np.abs(T)
    diff_c = bool(np.all(np.abs(D - d) <= rtol * scale + 1e-300))
    nz = T != 0
    ratio_c, r = False, float("nan")
    if nz.sum() >= 8:
        R = P[nz] / T[nz]
        r = float(np.median(R))
        ratio_c = bool(r != 0 and np.isfinite(r) and np.all(np.abs(R - r) <= rtol * abs(r)))
    return diff_c, ratio_c, d, r


def _numeric(sp: Any, p: Any, t: Any, seed: int) -> tuple[bool, bool]:
    syms = sorted(p.free_symbols | t.free_symbols, key=str)
    rng = np.random.default_rng(seed)
    fp = sp.lambdify(syms, p, "numpy")
    ft = sp.lambdify(syms, t, "numpy")
    for lo, hi in ((0.1, 10.0), (-10.0, 10.0), (0.5, 2.0), (-20.0, 20.0)):
        if hi == 20.0:
            # last resort, for models real only at extreme magnitudes: +-10**U(-20, 20)
            X = 10.0 ** rng.uniform(lo, hi, size=(len(syms), 64))
            X *= rng.choice([-1.0, 1.0], size=X.shape)
        else:
            X = rng.uniform(lo, hi, size=(len(syms), 64))
        with np.errstate(all="ignore"):
            P = np.broadcast_to(np.asarray(fp(*X), dtype=complex), (64,))
            T = np.broadcast_to(np.asarray(ft(*X), dtype=complex), (64,))
            real = (P.imag == 0) & (T.imag == 0)
            P = np.where(real, P.real, np.nan)
            T = np.where(real, T.real, np.nan)
        if (np.isfinite(P) & np.isfinite(T)).sum() >= 8:
            dc, rc, _, _ = numeric_relation(P, T)
            return dc, rc
    return False, False


def sympy_check(pred: str, true: str, seed: int = 0) -> dict:
    """SymPy's verdict: {"solution", "kind" ("zero" | "constant" | "ratio" | None),
    "numeric" (the numeric check agrees)}.  A positive without numeric agreement is refused."""
    import sympy as sp
    p = sp.sympify(pred)
    t = sp.sympify(true)
    if p in (sp.nan, sp.zoo) or p == 0:
        return {"solution": False, "kind": None, "numeric": False}
    diff = sp.simplify(t - p, ratio=1)
    kind = None
    if diff == 0:
        kind = "zero"
    elif diff.is_constant() and diff.is_finite is not False:
        kind = "constant"
    else:
        frac = sp.simplify(p / t, ratio=1)
        if frac.is_constant() and frac != 0 and frac.is_finite is not False:
            kind = "ratio"
    if kind is None:
        return {"solution": False, "kind": None, "numeric": None}
    dc, rc = _numeric(sp, p, t, seed)
    confirmed = (dc if kind in ("zero", "constant") else rc) or dc or rc
    return {"solution": bool(confirmed), "kind": kind, "numeric": bool(confirmed)}
