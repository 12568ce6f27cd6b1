"""Ground truth for "is pred a symbolic solution of true" that does not use symcore: is pred - true
a constant, or pred / true a non-zero constant, decided with mpmath at 80 and 160 digits at random
points inside the variables' ranges (the SRSD json), float literals read as the exact decimals
they spell.  Used by tests/metrics and bench/bench_metrics.py to judge both symbolic checks.

The rule: rounding error shrinks ~1e-80-fold from 80 to 160 digits, a real variation does not.
So the relation holds iff the spread of pred - true (or pred / true) over the points, relative to
the values, is 0 or <= 1e-60 at 160 digits and has shrunk >= 1e20-fold from 80 digits.  A real
relative variation below 1e-60 over the whole range would be missed; nothing of that size occurs
in physics formulas with double-precision constants.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Literal, Sequence

import mpmath
import sympy

Verdict = Literal["zero", "constant", "ratio"]

_DPS = (80, 160)
_TINY = mpmath.mpf(10) ** -60


#: a non-solution closer than this is "near" (the variation of pred - true against the truth's
#: own variation, or the relative spread of the ratio): equal to double precision, as when a
#: printed product of two 15-digit constants stands for the product
NEAR = 1e-12


@dataclass(frozen=True)
class Exact:
    """solution: True/False, or None when neither side is real at any point of the ranges."""
    solution: bool | None
    kind: Verdict | None
    spread_diff: float          # relative spread of pred - true at 160 digits
    spread_ratio: float         # relative spread of pred / true at 160 digits (inf: unusable)
    points: int
    reason: str = ""
    unexplained: float = math.inf   # spread of pred - true over the spread of true

    @property
    def closeness(self) -> float:
        """How far from a solution: min(unexplained variation, ratio spread)."""
        return min(self.unexplained, self.spread_ratio)

    @property
    def near(self) -> bool:
        """Not a solution, but equal to one to double precision."""
        return self.solution is False and self.closeness <= NEAR


def _sampler(var: dict | None):
    """A draw from a variable's range as SRSD samples it (log-uniform for DefaultSampling when the
    range is positive, else uniform; a random sign when negatives are used).  Integer variables
    are drawn as reals: the question is symbolic, not about the integer lattice."""
    lo, hi = (0.1, 10.0) if var is None else (float(var["min"]), float(var["max"]))
    neg = False if var is None else bool(var.get("uses_negative"))
    log = (var is None or var.get("sampling") == "DefaultSampling") and lo > 0

    def draw(rng: random.Random) -> float:
        v = 10 ** rng.uniform(math.log10(lo), math.log10(hi)) if log else rng.uniform(lo, hi)
        return -v if neg and rng.random() < 0.5 else v
    return draw


def _real(v) -> mpmath.mpf | None:
    if isinstance(v, mpmath.mpc):
        if v.imag != 0:
            return None
        v = v.real
    if not isinstance(v, mpmath.mpf):
        try:
            v = mpmath.mpf(v)
        except (TypeError, ValueError):
            return None
    return v if mpmath.isfinite(v) else None


def _spreads(fp, ft, pts, dps: int):
    """Relative spreads of the difference and the ratio at `pts` with `dps` digits."""
    with mpmath.workdps(dps):
        P, T = [], []
        for x in pts:
            P.append(_real(fp(*[mpmath.mpf(v) for v in x])))
            T.append(_real(ft(*[mpmath.mpf(v) for v in x])))
        if any(v is None for v in P + T):
            return None
        D = [p - t for p, t in zip(P, T)]
        scale = max(abs(p) + abs(t) for p, t in zip(P, T))
        sd = max(abs(d - D[0]) for d in D) / scale if scale else mpmath.mpf(0)
        sr = mpmath.inf
        if all(t != 0 for t in T) and P[0] != 0:
            R = [p / t for p, t in zip(P, T)]
            sr = max(abs(r - R[0]) for r in R) / abs(R[0])
        vt = max(abs(x - T[0]) for x in T)
        un = max(abs(d - D[0]) for d in D) / vt if vt else mpmath.inf
        return sd, sr, un


def _holds(lo, hi) -> bool:
    if hi == mpmath.inf:
        return False
    if hi == 0:
        return True
    return hi <= _TINY and (lo == 0 or hi <= lo * mpmath.mpf(10) ** -20)


def _call(f, x):
    try:
        return f(*x)
    except (ZeroDivisionError, ValueError, OverflowError, TypeError):
        return None


def exact_relation(pred: str, true: str, variables: Sequence[dict] = (), *, points: int = 16,
                   tries: int = 400, seed: int = 0) -> Exact:
    """Is `pred` - `true` a constant, or `pred` / `true` a non-zero constant (SymPy text; the
    variables' ranges as in the SRSD json, unlisted symbols drawn from [0.1, 10])?"""
    p = sympy.sympify(pred, rational=True)
    t = sympy.sympify(true, rational=True)
    syms = sorted(p.free_symbols | t.free_symbols, key=lambda s: s.name)
    if p.has(sympy.nan, sympy.zoo) or p == 0:
        return Exact(False, None, math.inf, math.inf, 0)
    byname = {v["var"]: v for v in variables}
    draws = [_sampler(byname.get(s.name)) for s in syms]
    fp = sympy.lambdify(syms, p, "mpmath")
    ft = sympy.lambdify(syms, t, "mpmath")
    rng = random.Random(seed)
    pts = []
    with mpmath.workdps(_DPS[0]):
        for _ in range(tries):
            x = [d(rng) for d in draws]
            xm = [mpmath.mpf(v) for v in x]
            a, b = _call(fp, xm), _call(ft, xm)
            if a is not None and b is not None and _real(a) is not None \
                    and _real(b) is not None:
                pts.append(x)
                if len(pts) == points:
                    break
    if len(pts) < 8:
        if _real_somewhere(ft, draws, rng, tries):
            return Exact(False, None, math.inf, math.inf, len(pts),
                         "pred is not real where the truth is")
        return Exact(None, None, math.nan, math.nan, len(pts), "no real point")
    lo, hi = _spreads(fp, ft, pts, _DPS[0]), _spreads(fp, ft, pts, _DPS[1])
    if lo is None or hi is None:
        return Exact(None, None, math.nan, math.nan, len(pts))
    kind: Verdict | None = None
    if _holds(lo[0], hi[0]):
        kind = "zero" if _is_zero(fp, ft, pts) else "constant"
    elif _holds(lo[1], hi[1]):
        kind = "ratio"
    return Exact(kind is not None, kind, float(hi[0]), float(hi[1]), len(pts),
                 unexplained=float(hi[2]))


def _real_somewhere(f, draws, rng: random.Random, tries: int) -> bool:
    with mpmath.workdps(_DPS[0]):
        for _ in range(tries):
            v = _call(f, [mpmath.mpf(d(rng)) for d in draws])
            if v is not None and _real(v) is not None:
                return True
    return False


def _is_zero(fp, ft, pts) -> bool:
    """pred - true is 0 (not merely constant): |P - T| negligible against |P| + |T| at 160
    digits."""
    with mpmath.workdps(_DPS[1]):
        for x in pts:
            xm = [mpmath.mpf(v) for v in x]
            a, b = _real(fp(*xm)), _real(ft(*xm))
            if abs(a - b) > _TINY * (abs(a) + abs(b)):
                return False
    return True
