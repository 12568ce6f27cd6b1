"""symcore.fit: recovers known parameters, matches scipy.optimize.least_squares from the same
start, survives NaN/inf, honours its options and rejects bad input with typed errors."""

from __future__ import annotations

import json
import math
import pathlib
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symcore
from symcore import DataError, FitError, call, const, evaluate, param, var
from symcore.codegen.fit.api import (STATUSES, FitResult, bfgs, fit, levenberg_marquardt)
from symcore.codegen.grad.reference import jacobian_reference
from symcore.params import bind_params, lift_constants

from strategies import data as strat_data, exprs

x0, x1 = var(0), var(1)
p = [param(i) for i in range(4)]
FORMULAS = pathlib.Path(__file__).resolve().parents[2] / "fixtures/formulas/aifeynman_100.json"


def feynman_problems(n: int, seed: int):
    """AI Feynman ground truths with their literals lifted and perturbed: (truth, model, start,
    X, y).  Formulas without literals are skipped."""
    if not FORMULAS.exists():
        pytest.skip("AI Feynman formulas not available")
    rng = np.random.default_rng(seed)
    out = []
    for f in json.loads(FORMULAS.read_text()):
        names = [v["name"] for v in f["variables"]]
        truth = symcore.read(f["formula"], dialect="sympy", names=names)
        model, values = lift_constants(truth)
        if not 1 <= model.n_params <= 6:
            continue
        X = np.column_stack([rng.uniform(v["low"], v["high"], 300) for v in f["variables"]])
        y = evaluate(truth, X)
        if not np.all(np.isfinite(y)):
            continue
        start = values * (1 + 0.1 * rng.standard_normal(values.shape))
        if not np.all(np.isfinite(evaluate(model, X, start))):
            continue  # the perturbed model leaves its domain on this data (e.g. sqrt of < 0)
        out.append((truth, model, start, X, y))
        if len(out) == n:
            break
    return out


def scipy_loss(model, start, X, y):
    from scipy.optimize import least_squares

    def res(q):
        return evaluate(model, X, q) - y

    def jac(q):
        return jacobian_reference(model, X, q)[1]

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        r = least_squares(res, start, jac=jac, method="lm")
    return float(np.mean(res(r.x) ** 2))


def test_recovers_feynman_formulas_from_perturbed_constants():
    probs = feynman_problems(25, seed=1)
    assert len(probs) >= 20
    for truth, model, start, X, y in probs:
        r = fit(model, X, y, params0=start)
        scale = float(np.mean(y ** 2))
        assert r.status in ("converged",), (str(truth), r)
        assert r.loss <= 1e-16 * scale, (str(truth), r.loss, scale)
        np.testing.assert_allclose(evaluate(r.expr, X), y, rtol=1e-6, atol=1e-9 * math.sqrt(scale))


def test_loss_no_worse_than_scipy_least_squares_from_the_same_start():
    """Seeded set: Feynman models started far away (constants scaled by up to 3x) with noise."""
    rng = np.random.default_rng(5)
    probs = feynman_problems(20, seed=2)
    worse = []
    compared = 0
    for truth, model, start, X, y in probs:
        far = start * rng.uniform(0.3, 3.0, start.shape)
        yn = y + 0.01 * np.std(y) * rng.standard_normal(y.shape)
        if not np.all(np.isfinite(evaluate(model, X, far))):
            continue
        ours = fit(model, X, yn, params0=far).loss
        theirs = scipy_loss(model, far, X, yn)
        compared += 1
        if not ours <= theirs * (1 + 1e-6) + 1e-15:
            worse.append((str(model), ours, theirs))
    assert compared >= 12
    assert not worse, worse


@pytest.mark.parametrize("tier", [0, 1, "numpy"])
@pytest.mark.parametrize("method", ["lm", "bfgs"])
def test_tiers_and_methods_find_the_same_optimum(tier, method):
    rng = np.random.default_rng(3)
    X = rng.uniform(-1, 1, (200, 2))
    truth = 2.0 * call("exp", 0.5 * x0) * call("sin", 1.1 + x1) + 0.4
    y = evaluate(truth, X)
    start = 1.5 * call("exp", 0.3 * x0) * call("sin", 0.7 + x1) + 0.2
    r = fit(start, X, y, tier=tier, method=method)
    assert isinstance(r, FitResult) and r.status == "converged"
    np.testing.assert_allclose(r.params, [2.0, 0.5, 1.1, 0.4], rtol=1e-6)
    assert r.loss < 1e-14
    assert r.expr is bind_params(r.model, r.params)
    np.testing.assert_allclose(r.loss, np.mean((evaluate(r.expr, X) - y) ** 2), rtol=1e-6,
                               atol=1e-20)


def test_population_threads_and_order():
    rng = np.random.default_rng(4)
    X = rng.uniform(0.5, 2, (100, 2))
    y = 3.0 * X[:, 0] + np.cos(X[:, 1])
    pop = [1.0 * x0 + 1.0, call("cos", 2.0 * x1) + 0.5 * x0, 2.0 * x0 + call("cos", x1),
           call("exp", 0.1 * x0)]
    one = fit(pop, X, y, threads=1)
    two = fit(pop, X, y, threads=2)
    assert isinstance(one, list) and len(one) == 4
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.params, b.params)
        assert a.loss == b.loss and a.status == b.status
    assert one[2].loss < 1e-20  # the right structure fits exactly
    assert one[0].model is lift_constants(pop[0])[0]


def test_parameter_free_expression_returns_immediately():
    X = np.arange(5.0).reshape(-1, 1)
    y = np.zeros(5)
    r = fit(call("square", x0), X, y)
    assert r.iterations == 0 and r.status == "converged" and r.params.shape == (0,)
    assert r.loss == pytest.approx(np.mean(X[:, 0] ** 4))
    r = fit(call("square", x0) + 2.0, X, y, lift=False)
    assert r.iterations == 0 and r.expr is call("square", x0) + 2.0


def test_lift_policy_and_params0():
    X = np.linspace(0.1, 1, 30).reshape(-1, 1)
    y = 3.0 * X[:, 0] + 1.0
    e = p[0] * x0 + 1.0                     # has a parameter: its literal stays fixed by default
    r = fit(e, X, y)
    assert r.model is e and r.params == pytest.approx([3.0])
    r = fit(e, X, y, lift=True, params0=[2.0])   # literal lifted too, starting at 1.0
    assert r.model.n_params == 2 and r.params == pytest.approx([3.0, 1.0])
    r = fit(e, X, y, lift=True, params0=[2.0, 5.0])
    assert r.params == pytest.approx([3.0, 1.0])
    with pytest.raises(DataError, match="params0"):
        fit(e, X, y, lift=True, params0=[1.0, 2.0, 3.0])
    with pytest.raises(FitError, match="lift"):
        fit(e, X, y, lift="yes")
    with pytest.raises(DataError, match="non-finite"):
        fit(e, X, y, params0=[math.nan])


def test_weights_ignore_outliers():
    X = np.linspace(0, 1, 50).reshape(-1, 1)
    y = 2.0 * X[:, 0]
    y[10] = 100.0
    w = np.ones(50)
    w[10] = 0.0
    r = fit(1.0 * x0, X, y, weights=w)
    assert r.params == pytest.approx([2.0]) and r.loss < 1e-20
    assert fit(1.0 * x0, X, y).params[0] > 2.1


def test_non_finite_start_and_path():
    X = np.linspace(1, 2, 20).reshape(-1, 1)
    y = np.log(X[:, 0] + 1.0)
    r = fit(call("log", x0 + p[0]), X, y, params0=[-5.0])     # NaN everywhere at the start
    assert r.status == "non-finite" and r.loss == math.inf and r.iterations == 0
    # the full Gauss–Newton step from here leaves the domain (log of negatives): rejected and
    # damped, never a crash, and the fit still reaches the optimum
    r = fit(call("log", x0 + p[0]), X, y, params0=[-0.9])
    assert r.status == "converged" and r.params == pytest.approx([1.0], rel=1e-6)
    for method in ("lm", "bfgs"):
        r = fit(call("sqrt", p[0] - x0) + p[1], X, np.sqrt(3.0 - X[:, 0]) + 1, params0=[2.01, 0.0],
                method=method)
        assert r.status in STATUSES and math.isfinite(r.loss)
        assert r.loss < 1e-10


def test_singular_and_max_iter():
    X = np.linspace(0, 1, 10).reshape(-1, 1)
    y = X[:, 0]
    r = fit(p[0] * const(0.0) + x0 * 2.0, X, y, lift=False, params0=[1.0])
    assert r.status == "singular"
    r = fit(call("exp", 3.0 * x0) * 0.1, X, np.exp(X[:, 0]), max_iter=2)
    assert r.status == "max_iter" and r.iterations == 2


def test_restarts_are_seeded_and_never_worse():
    rng = np.random.default_rng(9)
    X = rng.uniform(-3, 3, (120, 1))
    y = np.sin(2.5 * X[:, 0])
    e = call("sin", 0.4 * x0)                    # a local minimum from this start
    base = fit(e, X, y)
    a = fit(e, X, y, restarts=6, seed=1)
    b = fit(e, X, y, restarts=6, seed=1)
    assert a.loss <= base.loss
    np.testing.assert_array_equal(a.params, b.params)
    assert a.iterations > base.iterations


def test_restarts_on_a_row_subsample_refine_on_all_rows():
    """On data of 2 x SUBSAMPLE_ROWS rows or more, tier-0 restarts run on a subsample and the
    winners are refined on every row: each result's loss is its parameters' MSE on all rows
    (reference evaluator), no candidate ends worse than with the first start alone, and the
    sine below, stuck in a local minimum from its start, is rescued."""
    from symcore.codegen.fit import api as fit_module
    n = 2 * fit_module.SUBSAMPLE_ROWS + 37
    rng = np.random.default_rng(4)
    X = rng.uniform(-3, 3, (n, 2))
    y = np.sin(2.5 * X[:, 0]) + 0.3 * X[:, 1]
    pop = [call("sin", 4.2 * x0) + 0.1 * x1, call("sin", 2.0 * x0) + 0.5 * x1,
           1.5 * call("exp", -0.2 * x1) * call("cos", 0.3 * x0)]
    base = fit(pop, X, y, tier=0)
    more = fit(pop, X, y, tier=0, restarts=4, seed=2)
    for b, m in zip(base, more):
        assert m.loss <= b.loss
        ref = float(np.mean((evaluate(m.expr, X) - y) ** 2))
        np.testing.assert_allclose(m.loss, ref, rtol=1e-9, atol=1e-20)
    assert base[0].loss > 0.1 and more[0].loss < 1e-20


def test_algorithms_on_a_plain_callback():
    # Rosenbrock as least squares: r = (10 (p1 - p0²), 1 - p0)
    def normal(q):
        r = np.array([10 * (q[1] - q[0] ** 2), 1 - q[0]])
        J = np.array([[-20 * q[0], 10.0], [-1.0, 0.0]])
        return float(r @ r), J.T @ r, J.T @ J
    for algo in (levenberg_marquardt, bfgs):
        q, f, it, status = algo(normal, np.array([-1.2, 1.0]), 500, 1e-12)
        assert status == "converged" and f < 1e-20
        np.testing.assert_allclose(q, [1.0, 1.0], rtol=1e-8)


def test_bad_input_raises_typed_errors():
    X = np.ones((4, 1))
    e = 2.0 * x0
    with pytest.raises(DataError, match="y"):
        fit(e, X, np.ones(3))
    with pytest.raises(DataError, match="non-finite"):
        fit(e, X, [1, 2, math.nan, 4])
    with pytest.raises(DataError, match="column"):
        fit(2.0 * x1, X, np.ones(4))
    with pytest.raises(DataError, match="weights"):
        fit(e, X, np.ones(4), weights=[1, -1, 1, 1])
    with pytest.raises(DataError, match="zero"):
        fit(e, X, np.ones(4), weights=[0, 0, 0, 0])
    with pytest.raises(DataError, match="no data"):
        fit(e, np.ones((0, 1)), np.ones(0))
    with pytest.raises(FitError, match="method"):
        fit(e, X, np.ones(4), method="newton")
    with pytest.raises(FitError, match="tier"):
        fit(e, X, np.ones(4), tier=2)
    with pytest.raises(FitError, match="max_iter"):
        fit(e, X, np.ones(4), max_iter=-1)
    with pytest.raises(FitError, match="tol"):
        fit(e, X, np.ones(4), tol=math.nan)
    with pytest.raises(FitError, match="restarts"):
        fit(e, X, np.ones(4), restarts=-1)
    with pytest.raises(FitError, match="threads"):
        fit([e, e], X, np.ones(4), threads=0)
    with pytest.raises(FitError, match="Expr"):
        fit(["2*x0"], X, np.ones(4))
    with pytest.raises(DataError, match="params0"):
        fit([e, e], X, np.ones(4), params0=[[1.0]])


def test_facade():
    assert symcore.fit is fit and symcore.FitResult is FitResult


def test_population_same_result_on_every_tier():
    rng = np.random.default_rng(11)
    X = rng.uniform(0.5, 2, (150, 2))
    y = 1.7 * np.exp(-0.4 * X[:, 0]) + 0.8 * np.sin(1.3 * X[:, 1])
    pop = [1.0 * call("exp", -0.5 * x0) + 1.0 * call("sin", 1.0 * x1),
           1.0 * x0 + 2.0 * x1 + 0.5, call("sqrt", 1.2 * x0 + 0.3) * 0.9,
           call("log", 2.0 * x0) - 0.5 * call("cos", 0.7 * x1),
           call("pow_abs", x0, const(1.5)) * 0.5 + call("aq", 1.0 * x1, 0.5 * x0)]
    by_tier = {t: fit(pop, X, y, tier=t) for t in (0, 1, "numpy")}
    for rs in zip(*by_tier.values()):
        for r in rs[1:]:
            assert r.status == rs[0].status
            np.testing.assert_allclose(r.loss, rs[0].loss, rtol=1e-7, atol=1e-25)
            np.testing.assert_allclose(r.params, rs[0].params, rtol=1e-5, atol=1e-8)
    assert by_tier[0][0].loss < 1e-20


def test_bfgs_population_on_threads_and_restart_budget():
    rng = np.random.default_rng(12)
    X = rng.uniform(0.5, 2, (80, 2))
    y = 2.0 * X[:, 0] - np.log(X[:, 1])
    pop = [1.0 * x0 - 1.0 * call("log", x1), call("exp", 0.3 * x0) + 0.1 * x1, 0.5 * x0]
    one = fit(pop, X, y, method="bfgs", threads=1, restarts=2, seed=3)
    two = fit(pop, X, y, method="bfgs", threads=2, restarts=2, seed=3)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.params, b.params)
    assert one[0].loss < 1e-14
    # restarts get a quarter of the budget: 3 starts of a 4-step budget use at most 4 + 1 + 1
    r = fit(call("exp", 3.0 * x0) * 0.1, X, np.exp(X[:, 0]), max_iter=4, restarts=2, seed=0)
    assert r.iterations <= 6
    r = fit(call("exp", 3.0 * x0) * 0.1, X, np.exp(X[:, 0]), max_iter=4, restarts=2, seed=0,
            method="bfgs")
    assert r.iterations <= 6


def _smooth_population(seed: int, n: int = 30):
    rng = np.random.default_rng(seed)
    X = rng.uniform(0.2, 1.5, (300, 2))
    y = 1.3 * np.exp(-0.7 * X[:, 0]) + 0.4 * np.sin(2.0 * X[:, 1]) + 0.01 * rng.normal(size=300)
    pop = [float(a) * call("exp", float(b) * x0) + float(c) * call("sin", float(d) * x1)
           for a, b, c, d in rng.uniform(-2, 2, (n, 4))]
    return X, y, pop


@pytest.mark.parametrize("tier", [0, 1])
def test_population_fit_equals_one_problem_loop(tier):
    """Tier 0 fits a population in native code (codegen/lm.py), tier 1 in lockstep rounds with
    a tail hand-over: both give the iterates of the Python one-problem Levenberg–Marquardt loop
    (same status and step count, same loss up to rounding)."""
    from symcore.codegen.grad.data import prepare_data
    from symcore.codegen.grad.tier0 import Tier0Grad
    X, y, pop = _smooth_population(21)
    batched = fit(pop, X, y, tier=tier)
    models = [r.model for r in batched]
    k = Tier0Grad(models)
    data = prepare_data(X, y, None, k.lanes)
    for j, (e, r) in enumerate(zip(pop, batched)):
        p0 = lift_constants(e)[1]
        q, f, it, status = levenberg_marquardt(lambda v: k.normal(j, data, v), p0, 400, 1e-8)
        assert status == r.status and it == r.iterations, (str(e), status, r.status)
        np.testing.assert_allclose(f / 300, r.loss, rtol=1e-6, atol=1e-15)


def test_native_fit_does_not_depend_on_threads():
    """Problems are handed to threads from a shared counter; each one's result is computed by
    one thread alone, so the results are bit-identical for any thread count."""
    X, y, pop = _smooth_population(5, 40)
    one = fit(pop, X, y, tier=0, threads=1, restarts=1, seed=3)
    two = fit(pop, X, y, tier=0, threads=2, restarts=1, seed=3)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a.params, b.params)
        assert (a.loss, a.iterations, a.status) == (b.loss, b.iterations, b.status)


def test_native_fit_statuses_and_edge_problems():
    """The native loop reports every status like the Python one: a start that is not finite, a
    Jacobian that is zero, a budget that runs out, an exact fit; mixed in one population."""
    X = np.linspace(0.5, 2.0, 50)[:, None]
    y = 2.0 * X[:, 0] + 1.0
    pop = [call("log", param(0) * x0 - 5.0),            # log of negatives at the start: NaN
           param(0) * call("sin", 0.0 * x0) + 0.0 * x0,  # d/dp is sin(0) = 0 everywhere
           call("exp", param(0) * x0) * param(1),       # needs many steps
           param(0) * x0 + param(1)]                     # exact
    starts = [np.array([1.0]), np.array([1.0]), np.array([3.0, 0.01]), np.array([0.0, 0.0])]
    res = fit(pop, X, y, params0=starts, tier=0, max_iter=3)
    assert [r.status for r in res[:3]] == ["non-finite", "singular", "max_iter"]
    assert res[0].loss == math.inf and res[0].iterations == 0
    assert res[2].iterations == 3
    exact = fit(pop[3], X, y, params0=starts[3], tier=0)
    assert exact.status == "converged" and exact.loss < 1e-20
    np.testing.assert_allclose(exact.params, [2.0, 1.0], rtol=1e-10)


@settings(deadline=None)
@given(e=exprs(n_vars=2, n_params=3, max_leaves=8), X=strat_data(n_vars=2, min_rows=1,
                                                                  max_rows=40, edge=False),
       seed=st.integers(0, 2 ** 16))
def test_native_fit_never_increases_the_loss_and_reports_it_truly(e, X, seed):
    """Random expressions over every operator, random data: the native loop returns a status,
    never ends above its start, and its loss is the reference MSE at the returned parameters."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=X.shape[0])
    P = e.n_params
    p0 = rng.uniform(-2, 2, P)
    with np.errstate(all="ignore"):
        start = float(np.mean((evaluate(bind_params(e, p0), X) - y) ** 2)) if P else None
        r = fit(e, X, y, params0=p0, tier=0, lift=False, max_iter=60)
        ref = float(np.mean((evaluate(r.expr, X) - y) ** 2))
    assert r.status in STATUSES
    if math.isfinite(r.loss):
        np.testing.assert_allclose(r.loss, ref, rtol=1e-6, atol=1e-12)
    if start is not None and math.isfinite(start):
        assert r.loss <= start * (1 + 1e-12) + 1e-300
