"""The gplearn drop-ins against plain gplearn on small runs: same programs (printed), same
run_details_ (fitness within 1e-9 relative), same predict — random states, max_samples < 1,
a custom function, a custom fitness, the transformer, n_jobs > 1."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

gg = pytest.importorskip("gplearn.genetic")
from gplearn.fitness import make_fitness  # noqa: E402
from gplearn.functions import make_function  # noqa: E402

from symcore.integrations import gplearn as sg  # noqa: E402

RNG = np.random.default_rng(3)
X = RNG.uniform(1, 5, (300, 4))
Y = X[:, 0] * X[:, 1] * X[:, 2] * np.sin(X[:, 3])
BASE = dict(population_size=300, generations=4, tournament_size=10)


def _same(ref, ours, oob=False):
    assert str(ref._program) == str(ours._program)
    rd, od = ref.run_details_, ours.run_details_
    for key in ("generation", "average_length", "best_length"):
        assert rd[key] == od[key], key
    keys = ["average_fitness", "best_fitness"] + (["best_oob_fitness"] if oob else [])
    for key in keys:
        np.testing.assert_allclose(od[key], rd[key], rtol=1e-9, err_msg=key)
    np.testing.assert_allclose(ours.predict(X), ref.predict(X), rtol=1e-12)
    for pa, pb in zip(ref._programs[-1], ours._programs[-1]):
        assert pa.program == pb.program
        # per program: tier 0's sin/tan/log are within an ulp or two of NumPy's, which a
        # program can amplify (tan near a pole); run_details_ above holds to 1e-9
        np.testing.assert_allclose(pb.raw_fitness_, pa.raw_fitness_, rtol=1e-7)


def _pair(cls_ref, cls_ours, **kw):
    return (cls_ref(**BASE, **kw).fit(X, Y), cls_ours(**BASE, **kw).fit(X, Y))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["mse", "mean absolute error"])
def test_regressor_identical(seed, metric):
    kw = dict(random_state=seed, metric=metric,
              function_set=("add", "sub", "mul", "div", "sqrt", "log", "inv", "neg", "abs",
                            "max", "min", "sin", "cos", "tan"))
    ref, ours = _pair(gg.SymbolicRegressor, sg.SymbolicRegressor, **kw)
    _same(ref, ours)
    assert ours.symcore_stats_.candidates == BASE["population_size"] * BASE["generations"]


def test_max_samples_and_oob():
    ref, ours = _pair(gg.SymbolicRegressor, sg.SymbolicRegressor, random_state=5,
                      max_samples=0.7, metric="rmse")
    _same(ref, ours, oob=True)
    for pa, pb in zip(ref._programs[-1], ours._programs[-1]):
        np.testing.assert_allclose(pb.oob_fitness_, pa.oob_fitness_, rtol=1e-9)


def test_custom_function_and_fitness():
    def _cube(x):
        return x * x * x
    cube = make_function(function=_cube, name="cube", arity=1, wrap=False)
    expo = make_function(function=np.exp, name="expo", arity=1)       # known by its callable
    assert sg.op_name(cube) is None and sg.op_name(expo) == "exp"

    def _mape(y, y_pred, w):
        with np.errstate(all="ignore"):
            return np.average(np.abs((y - y_pred) / y), weights=w)
    mape = make_fitness(function=_mape, greater_is_better=False, wrap=False)
    ref, ours = _pair(gg.SymbolicRegressor, sg.SymbolicRegressor, random_state=4,
                      function_set=("add", "mul", "sub", cube), metric=mape)
    _same(ref, ours)
    ref, ours = _pair(gg.SymbolicRegressor, sg.SymbolicRegressor, random_state=4,
                      function_set=("add", "mul", "div", expo, cube), max_samples=0.8)
    _same(ref, ours, oob=True)


@pytest.mark.parametrize("metric", ["pearson", "spearman"])
def test_correlation_metrics(metric):
    ref, ours = _pair(gg.SymbolicRegressor, sg.SymbolicRegressor, random_state=6, metric=metric)
    _same(ref, ours)


def test_transformer_and_n_jobs():
    kw = dict(random_state=8, n_components=3, hall_of_fame=10, n_jobs=2)
    ref = gg.SymbolicTransformer(**BASE, **kw).fit(X, Y)
    ours = sg.SymbolicTransformer(**BASE, **kw).fit(X, Y)
    assert [str(p) for p in ref._best_programs] == [str(p) for p in ours._best_programs]
    np.testing.assert_allclose(ours.transform(X), ref.transform(X), rtol=1e-12)


def test_classifier():
    yc = (Y > np.median(Y)).astype(int)
    ref = gg.SymbolicClassifier(**BASE, random_state=9).fit(X, yc)
    ours = sg.SymbolicClassifier(**BASE, random_state=9).fit(X, yc)
    assert str(ref._program) == str(ours._program)
    np.testing.assert_allclose(ours.predict_proba(X), ref.predict_proba(X), rtol=1e-12)


def test_plain_gplearn_untouched_and_global_rng_kept():
    np.random.seed(11)
    gg.SymbolicRegressor(**BASE, random_state=0).fit(X, Y)
    after_ref = np.random.random()
    np.random.seed(11)
    sg.SymbolicRegressor(**BASE, random_state=0).fit(X, Y)
    assert np.random.random() == after_ref
    assert gg.Parallel is sg._ORIG_PARALLEL     # the hook is gone after fit


@given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 5))
def test_reseeded_state_is_a_new_random_state(first, seed, gauss):
    # the drop-in re-seeds one RandomState per generation instead of making one per program:
    # the stream must be a new RandomState(seed)'s, whatever the reused one drew before
    # (including a cached Gaussian)
    reused = np.random.RandomState(first)
    reused.standard_normal(gauss)
    got = sg._random_state(np.int64(seed), reused)
    want = np.random.RandomState(seed)
    for a, b in zip(got.get_state(), want.get_state()):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(got.standard_normal(3), want.standard_normal(3))
    np.testing.assert_array_equal(got.randint(0, 1000, 5), want.randint(0, 1000, 5))
    assert sg._random_state(want, reused) is want
