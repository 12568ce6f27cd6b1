"""fit for the research frontends: shared-constant lift policies, time limits with the best point
so far, the LM -> BFGS switch, and `loss` equal to the reference metric of the returned model."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcore
from symcore import FitError, call, evaluate, param, var
from symcore.codegen.fit import api
from symcore.codegen.fit.api import STATUSES, fit

from strategies import data as strat_data, exprs

x0, x1 = var(0), var(1)


def ref_loss(expr, X, y):
    with np.errstate(all="ignore"):
        v = float(np.mean((evaluate(expr, X) - y) ** 2))
    return v if math.isfinite(v) else math.inf


def test_statuses_keep_their_order_and_add_time_limit():
    assert STATUSES[:4] == ("converged", "max_iter", "non-finite", "singular")
    assert "time limit" in STATUSES


def test_lift_policies_count_parameters():
    e = symcore.read("2.5*x0 + 2.5*x1 + 0.5*sin(2.5*x0)")
    X = np.random.default_rng(0).uniform(-1, 1, (40, 2))
    y = 2.0 * X[:, 0] + 3.0 * X[:, 1]
    assert fit(e, X, y, lift="occurrence").model.n_params == 4
    assert fit(e, X, y, lift=True).model.n_params == 4
    r = fit(e, X, y, lift="distinct")
    assert r.model.n_params == 2          # 2.5 shared by its three occurrences, and 0.5
    assert fit(e, X, y, lift="marked").model.n_params == 0
    # placeholders (RSRM's C) only: literals stay
    c = symcore.read("(C)*(X1) + 2.5*(X2)", dialect="sympy")
    r = fit(c, X, y, lift="marked")
    assert r.model.n_params == 1 and r.expr is not None
    assert fit(c, X, y, lift="distinct").model.n_params == 2
    with pytest.raises(FitError):
        fit(e, X, y, lift="shared")
    with pytest.raises(FitError):
        fit(e, X, y, lift=1)


def _slow_population(n: int):
    rng = np.random.default_rng(1)
    X = rng.uniform(0.5, 2.0, (20000, 1))
    y = 1.7 * np.exp(-0.4 * X[:, 0]) + 0.8 * np.sin(1.3 * X[:, 0])
    pop = [call("exp", param(0) * x0) * param(1) + call("sin", param(2) * x0) * param(3)
           + param(4) * call("cos", param(5) * x0 + param(6)) for _ in range(n)]
    return pop, X, y


@pytest.mark.parametrize("tier,method", [(0, "lm"), ("numpy", "lm"), (0, "bfgs")])
def test_max_time_returns_the_best_point_so_far(tier, method):
    pop, X, y = _slow_population(1)
    if tier == "numpy":
        X, y = X[:2000], y[:2000]
    p0 = np.array([0.1, 0.1, 3.0, 0.1, 0.1, 2.0, 0.3])
    start = ref_loss(api.bind_params(pop[0], p0), X, y)
    r = fit(pop[0], X, y, params0=p0, tier=tier, method=method, max_time=0.02,
            max_iter=10 ** 6, tol=0.0)
    assert r.status == "time limit"
    assert r.loss <= start
    assert r.loss == pytest.approx(ref_loss(r.expr, X, y), rel=1e-9)
    full = fit(pop[0], X, y, params0=p0, tier=tier, method=method, max_iter=30)
    assert full.status != "time limit"


def test_max_total_time_bounds_a_population_call():
    pop, X, y = _slow_population(6)
    p0 = [np.array([0.1, 0.1, 3.0, 0.1, 0.1, 2.0, 0.3])] * len(pop)
    t = time.monotonic()
    res = fit(pop, X, y, params0=p0, tier=0, max_total_time=0.05, max_iter=10 ** 6, tol=0.0,
              threads=1)
    assert all(r.status == "time limit" for r in res)
    # the problems that started past the deadline return their start, scored
    assert all(math.isfinite(r.loss) for r in res)
    assert time.monotonic() - t < 30  # not a timing assertion: the unlimited fit never ends
    with pytest.raises(FitError):
        fit(pop[0], X, y, max_time=0)
    with pytest.raises(FitError):
        fit(pop[0], X, y, max_total_time=float("nan"))


def test_auto_method_switches_to_bfgs_above_lm_max_params(monkeypatch):
    X = np.random.default_rng(2).uniform(0.5, 2.0, (200, 1))
    y = 1.5 * X[:, 0] + 0.5
    e = param(0) * x0 + param(1)
    calls = []
    real = api.bfgs

    def spy(*a, **k):
        calls.append(1)
        return real(*a, **k)
    monkeypatch.setattr(api, "bfgs", spy)
    fit(e, X, y, params0=[1.0, 0.0], tier=0)
    assert not calls
    monkeypatch.setattr(api, "LM_MAX_PARAMS", 1)
    r = fit(e, X, y, params0=[1.0, 0.0], tier=0)
    assert calls and r.loss < 1e-12
    calls.clear()
    fit(e, X, y, params0=[1.0, 0.0], tier=0, method="lm")
    assert not calls


@settings(deadline=None)
@given(e=exprs(n_vars=2, n_params=2, max_leaves=8),
       X=strat_data(n_vars=2, min_rows=1, max_rows=30, edge=True),
       seed=st.integers(0, 2 ** 16), tier=st.sampled_from([0, "numpy"]),
       lift=st.sampled_from(["auto", "distinct", "occurrence", "marked"]))
def test_loss_is_the_reference_metric_of_the_returned_model(e, X, seed, tier, lift):
    """Random expressions over every operator (protected ones included), data with NaN, inf
    and zeros: `loss` is the MSE `evaluate` gives for `expr`, +inf exactly when that is not
    finite."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=X.shape[0])
    p0 = rng.uniform(-2, 2, e.n_params) if e.n_params else None
    with np.errstate(all="ignore"):
        r = fit(e, X, y, params0=p0, tier=tier, lift=lift, max_iter=30)
    ref = ref_loss(r.expr, X, y)
    if math.isinf(ref):
        assert r.loss == math.inf
    else:
        assert r.loss == pytest.approx(ref, rel=1e-9, abs=1e-300)


def test_non_finite_models_report_inf_not_a_number():
    """Regression (RSRM skeletons whose start is NaN on the data): the reported loss is +inf,
    the reference MSE is NaN: never a finite loss for a model that is not finite."""
    X = np.random.default_rng(3).uniform(1.0, 5.0, (50, 3))
    y = X[:, 0] * X[:, 1]
    for text in ["sin(sqrt(sin((C)-(X1))))", "(C)+(log(sin(X1)))",
                 "((X1)/(((X3)**2)/((X3)/(C))))+((sqrt(cos(X1)))-(log((C)*(C))))"]:
        r = fit(symcore.read(text, dialect="sympy"), X, y)
        assert r.loss == math.inf and math.isinf(ref_loss(r.expr, X, y))


def test_loss_is_the_reference_where_compiled_math_differs():
    """Regression (RSRM skeleton): sin of a huge argument, where the compiled sin and NumPy's
    differ beyond rounding, and exact fits whose loss is rounding noise: `loss` is the
    reference MSE of `expr`, bit for bit."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.uniform(1.0, 5.0, 200), rng.uniform(1.0, 3.0, 200)])
    y = np.exp(-X[:, 0] ** 2 / 2) / np.sqrt(2 * np.pi)
    for text in ["sin(exp(((X1)*(X1))/(cos(C))))", "exp(-X1**2.0 / C) / sqrt(C * C)"]:
        for tier in (0, "numpy"):
            r = fit(symcore.read(text, dialect="sympy"), X, y, tier=tier)
            assert r.loss == ref_loss(r.expr, X, y)
