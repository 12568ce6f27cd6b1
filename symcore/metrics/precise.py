"""High-precision confirmation of a symbolic-solution positive (symcore.metrics.solution): the
canonical form and the e-graph fold constants in float64, so `exp(x0 + 1e-17*x0)` "equals"
`exp(x0)` there; here both models are evaluated again with mpmath, every literal taken as the
exact decimal its text spells, and the difference (ratio) must stay constant at 40 and 80 digits
(80 and 160 when that does not settle it).
"""

from __future__ import annotations

import math
import re
from fractions import Fraction
from typing import Any, Literal, Sequence

from symcore.numerics import DYSYMNET_LOG_EPS, GPLEARN_THRESHOLD

__all__ = ["literal_values", "confirm"]

#: "unsupported": an op without an mpmath version here (fmax, fmin, a user's op)
Verdict = Literal["holds", "fails", "unknown", "unsupported"]

# a number literal of model text (float or integer), not part of a name such as x0
_NUMBER = re.compile(r"(?<![\w.])(\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)(?![\w.])")


def literal_values(text: str) -> dict[float, str] | None:
    """{float64 value: the decimal literal it was read from} for every number in `text`; None
    when two different decimals round to one float64 (the decimal could not be told apart)."""
    out: dict[float, str] = {}
    for m in _NUMBER.finditer(text):
        s = m.group(0)
        v = float(s)
        if v in out and Fraction(out[v]) != Fraction(s):
            return None
        out[v] = s
    for name, v in (("pi", math.pi), ("E", math.e)):
        if re.search(rf"\b{name}\b", text):
            if v in out:
                return None
            out[v] = name
    return out


def _ops(mp: Any) -> dict[str, Any]:
    """mpmath versions of the ops with symcore's real semantics (None: undefined there)."""
    def pw(a, b):
        if b == int(b):
            return a ** int(b) if (a != 0 or b >= 0) else None
        return a ** b if a > 0 else (mp.mpf(0) if a == 0 and b > 0 else None)

    def dv(a, b):
        return a / b if b != 0 else None

    def dom(f, ok):
        return lambda a: f(a) if ok(a) else None
    # the protected variants' switch points and epsilons are the float64 values symcore uses
    thr, eps = mp.mpf(GPLEARN_THRESHOLD), mp.mpf(DYSYMNET_LOG_EPS)
    return {
        "pdiv": lambda a, b: a / b if abs(b) > thr else mp.mpf(1),
        "plog": lambda a: mp.log(abs(a)) if abs(a) > thr else mp.mpf(0),
        "pinv": lambda a: 1 / a if abs(a) > thr else mp.mpf(0),
        "sqrt_abs": lambda a: mp.sqrt(abs(a)), "log_abs": dom(lambda a: mp.log(abs(a)), bool),
        "dlog": lambda a: mp.log(abs(a) + eps), "pow_abs": lambda a, b: pw(abs(a), b),
        "aq": lambda a, b: a / mp.sqrt(1 + b * b),
        "add": lambda a, b: a + b, "sub": lambda a, b: a - b, "mul": lambda a, b: a * b,
        "div": dv, "neg": lambda a: -a, "pow": pw, "powi": pw,
        "square": lambda a: a * a, "cube": lambda a: a * a * a,
        "inv": lambda a: dv(mp.mpf(1), a), "abs": abs, "sign": mp.sign,
        "sqrt": dom(mp.sqrt, lambda a: a >= 0), "cbrt": lambda a: mp.sign(a) * mp.cbrt(abs(a)),
        "exp": mp.exp, "log": dom(mp.log, lambda a: a > 0),
        "sin": mp.sin, "cos": mp.cos, "tan": mp.tan, "tanh": mp.tanh, "sinh": mp.sinh,
        "cosh": mp.cosh, "asin": dom(mp.asin, lambda a: abs(a) <= 1),
        "acos": dom(mp.acos, lambda a: abs(a) <= 1), "atan": mp.atan, "asinh": mp.asinh,
        "acosh": dom(mp.acosh, lambda a: a >= 1), "atanh": dom(mp.atanh, lambda a: abs(a) < 1),
        "max": max, "min": min,
    }


def _evaluate(e, lits: dict[float, str], row: Sequence[float], mp: Any, fns: dict):
    """Value of IR `e` at `row` with mpmath's current precision; None where undefined;
    KeyError for an op without an mpmath version here."""
    from symcore.ir import topo
    val: dict[int, Any] = {}
    for nd in topo([e]):
        if nd.op == "var":
            v = mp.mpf(row[nd.value])
        elif nd.op == "const":
            x = float(nd.value)
            s, sign = lits.get(x), 1
            if s is None and -x in lits:
                s, sign = lits[-x], -1
            if s is None:
                v = mp.mpf(x)       # made by the reader (a folded rational): exact binary value
            else:
                v = sign * (mp.pi if s == "pi" else mp.e if s == "E" else mp.mpf(s))
        elif nd.op == "param":
            raise KeyError("param")
        else:
            args = [val[id(a)] for a in nd.args]
            if any(a is None for a in args):
                return None
            try:
                v = fns[nd.op](*args)
            except (ZeroDivisionError, ValueError, OverflowError):
                v = None
            if v is not None and (isinstance(v, mp.mpc) or not mp.isfinite(v)):
                v = None
        val[id(nd)] = v
    return val[id(e)]


def _spreads(pred, true, lp, lt, rows, dps: int):
    """Relative spreads of pred - true and of pred / true over the rows (None: too few rows
    where both are defined)."""
    import mpmath as mp
    fns = _ops(mp)
    with mp.workdps(dps):
        P, T = [], []
        for r in rows:
            a, b = _evaluate(pred, lp, r, mp, fns), _evaluate(true, lt, r, mp, fns)
            if a is not None and b is not None:
                P.append(a)
                T.append(b)
        if len(P) < 4:
            return None
        D = [p - t for p, t in zip(P, T)]
        scale = max(abs(p) + abs(t) for p, t in zip(P, T))
        sd = max(abs(d - D[0]) for d in D) / scale if scale else mp.mpf(0)
        sr = mp.inf
        if all(t != 0 for t in T) and P[0] != 0:
            R = [p / t for p, t in zip(P, T)]
            sr = max(abs(x - R[0]) for x in R) / abs(R[0])
        return sd, sr


def _verdict(lo, hi, dps_lo: int, dps_hi: int) -> Verdict:
    """Rounding error shrinks ~10**-(dps_hi - dps_lo)-fold from lo to hi digits; a real
    variation keeps its size."""
    import mpmath as mp
    if hi == mp.inf:
        return "fails"
    if hi == 0:
        return "holds"
    if hi <= mp.mpf(10) ** (-0.375 * dps_hi) and (lo == 0 or hi <= lo * mp.mpf(10) ** (
            -0.3 * (dps_hi - dps_lo))):
        return "holds"
    if hi >= lo * mp.mpf(10) ** -2:
        return "fails"
    return "unknown"


def confirm(pred, true, pred_text: str, true_text: str, rows: Sequence[Sequence[float]],
            kind: str) -> tuple[Verdict, str]:
    """Does pred - true (kind "zero"/"constant") or pred / true (kind "ratio") stay constant
    at high precision at these rows?  Returns (verdict, the kind that holds)."""
    lp, lt = literal_values(pred_text), literal_values(true_text)
    if lp is None or lt is None:
        return "unknown", kind
    verdict: Verdict = "unknown"
    for lo_d, hi_d in ((40, 80), (80, 160)):
        try:
            lo = _spreads(pred, true, lp, lt, rows, lo_d)
            hi = _spreads(pred, true, lp, lt, rows, hi_d)
        except KeyError:
            return "unsupported", kind
        if lo is None or hi is None:
            return "unknown", kind
        first, second = (0, 1) if kind != "ratio" else (1, 0)
        v = _verdict(lo[first], hi[first], lo_d, hi_d)
        if v == "holds":
            return "holds", kind
        w = _verdict(lo[second], hi[second], lo_d, hi_d)
        if w == "holds":
            return "holds", "ratio" if second == 1 else "constant"
        if v == "fails" and w == "fails":
            return "fails", kind
        verdict = "unknown"
    return verdict, kind
