"""symcore.metrics.is_symbolic_solution / accuracy_solution: SRBench's judgements, decided by a
numeric check + canonical form / e-graph + SymPy, never a false positive."""

import os
import sys

import numpy as np
import pytest
import sympy

pytest.importorskip("zss")
sys.path.insert(0, os.path.dirname(__file__))

from perturb import perturbed_pairs  # noqa: E402

from symcore.metrics import (MetricsError, accuracy_solution, is_symbolic_solution,  # noqa: E402
                             r2_score, symbolic_solutions)

POSITIVES = [
    ("x0*x1", "x0*x1", "zero"),
    ("x0*x1 + 3.5", "x0*x1", "constant"),          # constant offset
    ("x0*x1 - 2", "x0*x1 + 1", "constant"),
    ("2.5*x0*x1", "x0*x1", "ratio"),               # constant scale
    ("-x0/(7*x1)", "x0/x1", "ratio"),
    ("3.3*x0*(x1 + 1)", "x0*x1 + x0", "ratio"),
    ("x0*(x1 + 1)", "x0*x1 + x0", "zero"),
    ("sin(x0)**2", "1 - cos(x0)**2", "zero"),       # needs SymPy
    ("sqrt(2)*exp(-x0**2/(2*x1**2))/(2*sqrt(pi)*x1)", "exp(-(x0/x1)**2/2)/(sqrt(2*pi)*x1)", "zero"),
]

NEGATIVES = [
    ("x0*x1 + x0", "x0*x1"),
    ("exp(1.000001*x0)", "exp(x0)"),               # near-misses: a constant inside a function
    ("x0 + 1e-9*x0**2", "x0"),
    ("sin(1.0001*x0)", "sin(x0)"),
    ("x0**2.0001", "x0**2"),
    ("0*x0", "x0"),                                 # ratio 0 is not a solution
    ("0", "x0"),
    ("log(x0)", "x0"),
    ("foo(x0)", "x0"),                              # unreadable for symcore, SymPy says no
    ("log(x0*x1)", "log(x0) + log(x1)"),            # equal only for positive x: SymPy says no
]


@pytest.mark.parametrize("pred,true,kind", POSITIVES)
def test_positives(pred, true, kind):
    r = is_symbolic_solution(pred, true)
    assert r.solution and bool(r), r
    assert r.kind == kind


@pytest.mark.parametrize("pred,true", NEGATIVES)
def test_negatives(pred, true):
    r = is_symbolic_solution(pred, true)
    assert not r.solution and not bool(r), r


def test_cheap_paths_decide_most():
    assert is_symbolic_solution("x0*x1 + 3", "x0*x1").decided_by == "canonical"
    assert is_symbolic_solution("exp(1.01*x0)", "exp(x0)").decided_by == "numeric"


def test_rounding_like_srbench():
    # SRBench rounds the model's floats to 3 decimals before judging
    assert not is_symbolic_solution("exp(1.0001*x0)", "exp(x0)")
    assert is_symbolic_solution("exp(1.0001*x0)", "exp(x0)", digits=3)
    assert is_symbolic_solution("x0 + 0.00001*x1", "x0", digits=3)


def _numerically_related(p, t):
    """Independent check: SymPy lambdify at random points, difference or ratio constant."""
    x = sympy.symbols("x0:10")
    fp, ft = (sympy.lambdify(x, sympy.sympify(s), "numpy") for s in (p, t))
    X = np.random.default_rng(7).uniform(0.5, 5, size=(10, 200))
    with np.errstate(all="ignore"):
        P = np.broadcast_to(np.asarray(fp(*X), dtype=complex), (200,))
        T = np.broadcast_to(np.asarray(ft(*X), dtype=complex), (200,))
    ok = np.isfinite(P) & np.isfinite(T) & (P.imag == 0) & (T.imag == 0)
    P, T = P[ok].real, T[ok].real
    with np.errstate(all="ignore"):
        D, R = P - T, P / T
    tol = 1e-7
    return (np.ptp(D) <= tol * np.max(np.abs(P) + np.abs(T))
            or (np.all(T != 0) and np.ptp(R) <= tol * np.max(np.abs(R)) and np.median(R) != 0))


def test_no_false_solution_on_perturbed_formulas():
    import json
    from test_edit_distance import DATA
    with open(DATA) as f:
        truths = [r["sympy"] for r in json.load(f)][::6]
    pairs = perturbed_pairs(truths, kinds=("identity", "constant", "drop", "swap", "offset",
                                           "scale"), seed=3)
    got = symbolic_solutions([(p, t) for _, p, t in pairs], timeout=60)
    for (kind, p, t), r in zip(pairs, got):
        if r.solution:
            assert _numerically_related(p, t), (kind, p, t, r)
        if kind in ("identity", "offset", "scale"):
            assert r.solution, (kind, p, t, r)


def test_accuracy_solution():
    rng = np.random.default_rng(0)
    X = rng.uniform(1, 5, size=(200, 2))
    y = X[:, 0] * X[:, 1]
    assert accuracy_solution("x0*x1", X, y)
    assert accuracy_solution("x0*x1*1.0001", X, y)
    assert not accuracy_solution("x0*x1 + x0", X, y)
    assert not accuracy_solution("log(x0 - 3)", X, y)        # NaN predictions
    assert r2_score("x0*x1", X, y) == pytest.approx(1.0)
    with pytest.raises(MetricsError, match="predictions for"):
        r2_score("x0*x1", X, y[:10])


def test_missing_and_bad_input():
    assert symbolic_solutions([(None, "x0")])[0].decided_by == "missing"
    with pytest.raises(MetricsError, match="ground-truth"):
        symbolic_solutions([("x0", None)])
