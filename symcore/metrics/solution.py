"""SRBench's judgements of a model: symbolic solution (the difference from the truth is a
constant, or the ratio a non-zero constant) and accuracy solution (R^2 > 0.999 on held-out data).

The symbolic check is decided cheaply first: a numeric check at random points refutes most
candidates outright, the canonical pass (and the e-graph) proves most true ones; only what is
left goes to SymPy, in a worker process under a timeout.  No positive is ever returned without
the numeric check agreeing, and a positive is confirmed again at 40/80 digits with the literals
as the decimals they spell (symcore.metrics.precise): float64 constant folding in the proof
cannot make a solution of a model that differs below double precision.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import numpy as np

from symcore.errors import SymcoreError
from symcore.metrics.edit_distance import as_text
from symcore.metrics.srbench import numeric_relation, round_float_literals
from symcore.metrics.trees import MetricsError
from symcore.metrics.workers import run_tasks

__all__ = ["SolutionCheck", "is_symbolic_solution", "symbolic_solutions", "accuracy_solution",
           "r2_score"]

Kind = Literal["zero", "constant", "ratio"]
DecidedBy = Literal["numeric", "canonical", "egraph", "sympy", "sympy_timeout", "sympy_error",
                    "no_finite_points", "missing", "precise"]

#: relative tolerance of the numeric check (equal functions differ by rounding only)
RTOL = 1e-9
_RANGES = ((0.1, 10.0), (-10.0, 10.0), (0.5, 2.0))
#: last resort for models real only at extreme magnitudes (sqrt(1.1e-17*x0**2 - pi**2/x1**2)):
#: +-10**U(-20, 20), wide enough for SI-unit physics formulas
_WIDE = 20.0
#: rows re-evaluated at high precision to confirm a positive
_CONFIRM_ROWS = 12


@dataclass(frozen=True)
class SolutionCheck:
    """The verdict, its kind (difference zero, a constant, or a constant ratio) and what
    decided it."""
    solution: bool
    kind: Kind | None
    decided_by: DecidedBy
    message: str = ""

    def __bool__(self) -> bool:
        return self.solution


def _read(text: str):
    from symcore.io.readers import read
    return read(text, "sympy")


def _sample(pred, true, n: int, seed: int):
    """Points and values of both there: the first range with >= 8 rows where both are finite
    (the wide log-uniform range last, with 4n points)."""
    from symcore.evaluate import evaluate
    from symcore.ir import topo
    cols = max(1, 1 + max((nd.value for nd in topo([pred, true]) if nd.op == "var"),
                          default=-1))
    rng = np.random.default_rng(seed)
    X = P = T = np.zeros(0)
    for lo, hi in _RANGES + ((-_WIDE, _WIDE),):
        if hi == _WIDE:
            X = 10.0 ** rng.uniform(lo, hi, size=(4 * n, cols))
            X *= rng.choice([-1.0, 1.0], size=X.shape)
        else:
            X = rng.uniform(lo, hi, size=(n, cols))
        with np.errstate(all="ignore"):
            P, T = evaluate(pred, X), evaluate(true, X)
        if (np.isfinite(P) & np.isfinite(T)).sum() >= 8:
            return X, P, T
    return X, P, T


def _confirm(pe, te, p: str, t: str, X, P, T, kind: Kind) -> tuple[str, Kind]:
    """symcore.metrics.precise.confirm at the first rows where both are finite."""
    from symcore.metrics.precise import confirm
    rows = X[np.isfinite(P) & np.isfinite(T)][:_CONFIRM_ROWS].tolist()
    verdict, k = confirm(pe, te, p, t, rows, kind)
    return verdict, ("zero" if k == "zero" else "constant" if k == "constant" else "ratio")


_NOT_CONFIRMED = ("differs from the truth at 80 digits (a constant below double precision "
                  "made them look equal)")


def _const_value(e) -> float | None:
    return float(e.value) if e.op == "const" else None


def _lead(e) -> float:
    """The numeric coefficient of a canonical form (its first term's, for a sum)."""
    sign = 1.0
    while True:
        if e.op == "neg":
            sign, e = -sign, e.args[0]
        elif e.op in ("add", "sub", "mul", "div"):
            e = e.args[0]       # canonical chains lean left: the coefficient is leftmost
        else:
            return sign * float(e.value) if e.op == "const" else sign


def _offset(e) -> float:
    """The constant term of a canonical sum (it comes last), else 0."""
    if e.op in ("add", "sub") and e.args[1].op == "const":
        return float(e.args[1].value) * (1.0 if e.op == "add" else -1.0)
    return 0.0


def _normalised(e, kind: Kind):
    """e without its constant term (kind zero/constant) or scaled to coefficient 1 (ratio);
    canonical, so two of them are equal iff they are the same node."""
    from symcore.ir import call, const
    from symcore.rules.canonical import canonical
    c = canonical(e, "equivalent")
    if kind == "ratio":
        k = _lead(c)
        # IEEE k / k is exactly 1: the coefficient cancels without rounding
        return canonical(call("div", c, const(k)), "equivalent") if k not in (0.0, 1.0) else c
    k = _offset(c)
    return canonical(call("sub", c, const(k)), "equivalent") if k != 0.0 else c


def _prove(pred, true, kind: Kind, egraph: bool) -> tuple[bool, DecidedBy]:
    """Show pred - true is a constant (or pred / true a non-zero constant): by symcore's
    canonical form of the difference (ratio), by the canonical forms of both with the constant
    term (coefficient) taken out, then by the e-graph putting those two in one class."""
    from symcore.ir import call
    from symcore.rules.canonical import canonical
    e = call("sub", pred, true) if kind != "ratio" else call("div", pred, true)
    c = _const_value(canonical(e, "equivalent"))
    if c is not None and math.isfinite(c) and (kind != "ratio" or c != 0):
        return True, "canonical"
    a, b = _normalised(pred, kind), _normalised(true, kind)
    if a is b:
        return True, "canonical"
    if egraph:
        from symcore.rules.api import dedupe
        try:
            d = dedupe([a, b], time_limit=2.0)
        except SymcoreError:
            return False, "egraph"
        if d.class_of[0] == d.class_of[1]:
            return True, "egraph"
    return False, "canonical"


def symbolic_solutions(pairs: Iterable[tuple[Any, Any]], *, digits: int | None = None,
                       points: int = 64, seed: int = 0, egraph: bool = True,
                       timeout: float = 60.0, workers: int | None = None) -> list[SolutionCheck]:
    """`is_symbolic_solution` over a table of (pred, true) pairs; the pairs that need SymPy run
    in parallel worker processes, each under `timeout` seconds."""
    pairs = [(as_text(p), as_text(t)) for p, t in pairs]
    out: list[SolutionCheck | None] = [None] * len(pairs)
    slow: list[int] = []
    read_: dict[int, tuple] = {}
    for i, (p, t) in enumerate(pairs):
        if t is None:
            raise MetricsError("a ground-truth expression is missing")
        if p is None:
            out[i] = SolutionCheck(False, None, "missing", "no prediction")
            continue
        if digits is not None:
            p = round_float_literals(p, digits)
            pairs[i] = (p, t)
        try:
            pe, te = _read(p), _read(t)
        except SymcoreError:
            slow.append(i)      # symcore cannot read it: SymPy decides (and checks numerically)
            continue
        X, P, T = _sample(pe, te, points, seed)
        if not (np.isfinite(P) & np.isfinite(T)).sum() >= 8:
            out[i] = SolutionCheck(False, None, "no_finite_points",
                                   "no random point where both are finite: cannot confirm")
            continue
        dc, rc, d, r = numeric_relation(P, T, RTOL)
        if not (dc or rc):
            out[i] = SolutionCheck(False, None, "numeric", "neither the difference nor the "
                                   "ratio is constant at random points")
            continue
        kind: Kind = ("zero" if d == 0 else "constant") if dc else "ratio"
        ok, how = _prove(pe, te, kind, egraph)
        if not ok and dc and rc:
            kind = "ratio"
            ok, how = _prove(pe, te, kind, egraph)
        read_[i] = (pe, te, X, P, T)
        if ok:
            verdict, kind = _confirm(pe, te, p, t, X, P, T, kind)
            if verdict == "holds":
                out[i] = SolutionCheck(True, kind, how)
                continue
            if verdict == "fails":
                out[i] = SolutionCheck(False, None, "precise", _NOT_CONFIRMED)
                continue
        slow.append(i)
    if slow:
        res = run_tasks([{"method": "srbench", "pred": pairs[i][0], "true": pairs[i][1]}
                         for i in slow], timeout, workers)
        for i, r in zip(slow, res):
            if r["status"] == "ok" and r["solution"] and i in read_:
                pe, te, X, P, T = read_[i]
                verdict, _ = _confirm(pe, te, pairs[i][0], pairs[i][1], X, P, T, r["kind"])
                if verdict == "fails":
                    out[i] = SolutionCheck(False, None, "precise", _NOT_CONFIRMED)
                    continue
            if r["status"] == "ok":
                out[i] = SolutionCheck(bool(r["solution"]), r["kind"] if r["solution"] else None,
                                       "sympy", "" if r["solution"] or r["kind"] is None
                                       else "SymPy's positive not confirmed numerically")
            else:
                out[i] = SolutionCheck(False, None, "sympy_" + r["status"], r.get("message", ""))
    return [o for o in out if o is not None]


def is_symbolic_solution(pred: Any, true: Any, *, digits: int | None = None, points: int = 64,
                         seed: int = 0, egraph: bool = True, timeout: float = 60.0
                         ) -> SolutionCheck:
    """SRBench's symbolic solution: pred - true is a constant, or pred / true a non-zero
    constant (a model off by an offset or a scale counts).  Truthy iff a solution.

    digits: round the prediction's float literals first as SRBench does (3 there; None: the
    model as written).  Decided by a numeric check at `points` random points, a proof by
    symcore's canonical form / e-graph, and SymPy (under `timeout` seconds) for the rest; a
    positive always has the numeric check's agreement."""
    return symbolic_solutions([(pred, true)], digits=digits, points=points, seed=seed,
                              egraph=egraph, timeout=timeout, workers=1)[0]


def r2_score(pred: Any, X: Any, y: Any) -> float:
    """R^2 of the model on (X, y), as SRBench computes it (1 - MSE / Var(y), Var 0 -> 1e-9);
    a non-finite prediction gives -inf."""
    from symcore.evaluate import evaluate
    e = pred if not isinstance(pred, str) else _read(pred)
    if isinstance(e, str) or e is None:
        raise MetricsError("accuracy needs a model")
    from symcore.ir import Expr
    if not isinstance(e, Expr):
        e = _read(as_text(e))
    y = np.asarray(y, dtype=np.float64).ravel()
    p = evaluate(e, X)
    if p.shape != y.shape:
        raise MetricsError(f"{p.shape[0]} predictions for {y.shape[0]} targets")
    if not np.all(np.isfinite(p)):
        return -math.inf
    var = float(np.var(y)) or 1e-9
    return 1.0 - float(np.mean((y - p) ** 2)) / var


def accuracy_solution(pred: Any, X: Any, y: Any, threshold: float = 0.999) -> bool:
    """SRBench's accuracy solution: R^2 > `threshold` (0.999) on held-out data (X, y)."""
    return r2_score(pred, X, y) > threshold
