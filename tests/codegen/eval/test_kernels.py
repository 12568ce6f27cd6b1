"""The public Kernel API: compile/predict/score on every tier, metrics equal NumPy, every bad
input raises a typed error before native code, the auto tier policy, threads."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import examples, exprs

import symcore
from symcore import CompileError, DataError, SymcoreError, call, const, evaluate, param, var
from symcore.codegen.eval import kernels
from symcore.codegen import pool

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

x0, x1, x2 = var(0), var(1), var(2)
POP = [
    call("add", call("mul", const(1.5), x0), call("sin", x1)),
    call("pdiv", x0, call("sub", x1, const(0.25))),
    call("exp", call("mul", const(0.3), x2)),
    call("log", x0),                                  # NaN on negative rows -> +inf loss
    call("powi", call("sub", x0, x2), const(2.0)),
    call("plog", call("mul", x1, x2)),
    x1,
]
TIERS = [0, 1, "auto"]


def _data(n=257, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(0, 1.5, (n, 3))
    y = 0.7 * X[:, 0] + np.sin(X[:, 1]) + rng.normal(0, 0.1, n)
    return X, y


def _ref_metric(pred, y, metric, w=None):
    w = np.ones_like(y) if w is None else w
    with np.errstate(all="ignore"):
        d = pred.astype(np.float64) - y
        sw = w.sum()
        if not np.all(np.isfinite(pred)):
            return -np.inf if metric == "r2" else np.inf
        mse = (w * d * d).sum() / sw
        ybar = (w * y).sum() / sw
        var = (w * (y - ybar) ** 2).sum() / sw
        val = {"mse": mse, "rmse": np.sqrt(mse), "mae": (w * np.abs(d)).sum() / sw,
               "r2": 1 - mse / var, "nmse": mse / var}[metric]
    if metric != "r2" and not np.isfinite(val):
        return np.inf
    return val


@pytest.mark.parametrize("tier", TIERS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_predict_and_every_metric_equal_numpy(tier, dtype):
    X, y = _data()
    k = symcore.compile(POP, dtype=dtype, tier=tier)
    P = k.predict(X)
    assert P.shape == (len(POP), X.shape[0]) and P.dtype == np.dtype(dtype)
    ref = np.array([evaluate(e, X, dtype=np.dtype(dtype).type) for e in POP])
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(P, ref, rtol=rtol, atol=rtol)
    yd = y.astype(dtype).astype(np.float64)     # y is data: rounded to the kernel's dtype
    w = np.random.default_rng(3).uniform(0, 2, y.shape[0])
    wd = w.astype(dtype).astype(np.float64)
    for metric in kernels.METRICS:
        for weights, wref in ((None, None), (w, wd)):
            got = k.score(X, y, metric=metric, weights=weights)
            want = np.array([_ref_metric(r, yd, metric, wref) for r in ref])
            assert got.shape == (len(POP),) and got.dtype == np.float64
            np.testing.assert_allclose(got, want, rtol=1e-9 if dtype == "float64" else 1e-4)
    assert k.score(X, y)[3] == np.inf and k.score(X, y, "r2")[3] == -np.inf


def test_tiers_agree_and_float32_sums_in_float64():
    X, y = _data(n=3001, seed=5)
    X = X.astype(np.float32)
    scores = [symcore.compile(POP, dtype="float32", tier=t).score(X, y) for t in (0, 1)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-5)
    # a float32 accumulator loses ~1e-5..1e-4 relative over 3001 rows; float64 keeps the
    # difference to ulp-level differences of the float32 predictions (~1e-8)
    pred = evaluate(POP[0], X, dtype=np.float32).astype(np.float64)
    exact = ((pred - y.astype(np.float32).astype(np.float64)) ** 2).mean()
    assert abs(scores[1][0] - exact) <= 1e-6 * exact
    # exact float32 predictions, errors ~100.3: a float32 running sum past 2^24 would be off by
    # ~1e-4 relative; float64 sums these squares essentially exactly
    rng = np.random.default_rng(9)
    X = rng.uniform(1000, 2000, (30001, 1)).astype(np.float32)
    y = (X[:, 0].astype(np.float64) - 100.3).astype(np.float32)
    exact = np.mean((X[:, 0].astype(np.float64) - y.astype(np.float64)) ** 2)
    for t in (0, 1):
        got = symcore.compile(x0, dtype="float32", tier=t).score(X, y)[0]
        assert abs(got - exact) <= 1e-12 * exact, (t, got, exact)


@given(e=exprs(n_vars=2, max_leaves=10), n=st.sampled_from([1, 2, 7, 64, 129]))
@settings(max_examples=examples(0.42))
def test_non_finite_prediction_gives_inf_others_unaffected(e, n):
    rng = np.random.default_rng(n)
    X = rng.normal(0, 2, (n, 2))
    y = rng.normal(size=n)
    k = symcore.compile([e, x0], tier=1)
    s = k.score(X, y)
    pred = evaluate(e, X)
    if not np.all(np.isfinite(pred)):
        assert s[0] == np.inf
    else:
        with np.errstate(all="ignore"):
            want = np.mean((pred - y) ** 2)
        assert s[0] == pytest.approx(want, rel=1e-6) or (not np.isfinite(want) and s[0] == np.inf)
    assert s[1] == pytest.approx(np.mean((X[:, 0] - y) ** 2), rel=1e-12)


def test_single_expression_params_and_forms():
    e = call("add", call("mul", param(0), x0), param(1))
    X = np.array([[1.0], [2.0], [-3.0]])
    k = symcore.compile(e)
    assert k.n_candidates == 1 and k.n_params == 2
    np.testing.assert_allclose(k.predict(X, [2.0, 1.0])[0], [3.0, 5.0, -5.0])
    k2 = symcore.compile([e, call("mul", param(0), x0)], tier=1)
    want = np.array([[3.0, 5.0, -5.0], [0.5, 1.0, -1.5]])
    np.testing.assert_allclose(k2.predict(X, np.array([[2.0, 1.0], [0.5, 9.0]])), want)
    np.testing.assert_allclose(k2.predict(X, [[2.0, 1.0], [0.5]]), want)      # ragged rows
    np.testing.assert_allclose(k2.predict(X, [2.0, 1.0]), [[3.0, 5.0, -5.0], [2.0, 4.0, -6.0]])
    # non-finite parameters propagate like the reference
    assert np.isnan(k2.predict(X, [np.nan, 1.0])).all()


def test_zero_rows_and_empty_population():
    k = symcore.compile(POP, tier=1)
    assert k.predict(np.zeros((0, 3))).shape == (len(POP), 0)
    with pytest.raises(DataError):
        k.score(np.zeros((0, 3)), np.zeros(0))
    k0 = symcore.compile([], tier=1)
    assert k0.predict(np.ones((4, 2))).shape == (0, 4)
    assert k0.score(np.ones((4, 2)), np.ones(4)).shape == (0,)


def test_dataframe_columns_by_name():
    pd = pytest.importorskip("pandas")
    e = call("sub", var(0, "a"), var(1, "b"))
    df = pd.DataFrame({"b": [1.0, 2.0], "a": [10.0, 20.0]})
    np.testing.assert_allclose(symcore.compile(e, tier=1).predict(df)[0], [9.0, 18.0])


@pytest.mark.parametrize("tier", [0, 1])
def test_bad_inputs_raise_typed_errors(tier):
    k = symcore.compile([call("mul", param(0), x1)], tier=tier)
    X = np.ones((5, 2))
    y = np.ones(5)
    p = [1.0]
    bad = [
        lambda: k.predict(np.ones((5, 1)), p),                  # too few columns
        lambda: k.predict(np.ones((2, 2, 2)), p),               # 3-D
        lambda: k.predict([["a", "b"]], p),                     # not numeric
        lambda: k.predict(X),                                   # params needed
        lambda: k.predict(X, []),                               # too few params
        lambda: k.predict(X, np.ones((2, 1))),                  # rows != P
        lambda: k.predict(X, np.ones((1, 1, 1))),               # 3-D params
        lambda: k.predict(X, [["x"]]),                          # non-numeric params
        lambda: k.score(X, np.ones(4), params=p),               # y length
        lambda: k.score(X, np.ones((5, 2)), params=p),          # y shape
        lambda: k.score(X, [1, 2, np.nan, 4, 5], params=p),     # y not finite
        lambda: k.score(X, ["a"] * 5, params=p),                # y not numeric
        lambda: k.score(X, y, metric="bogus", params=p),        # metric
        lambda: k.score(X, y, weights=np.ones(4), params=p),    # weights length
        lambda: k.score(X, y, weights=-np.ones(5), params=p),   # negative weights
        lambda: k.score(X, y, weights=[1, 1, np.inf, 1, 1], params=p),
        lambda: k.score(X, y, weights=np.zeros(5), params=p),   # weights sum to 0
    ]
    for i, f in enumerate(bad):
        with pytest.raises(DataError):
            f()
            pytest.fail(f"bad call {i} did not raise")
    assert k.score(X, y, params=p)[0] == 0.0


def test_compile_rejects_bad_arguments():
    with pytest.raises(SymcoreError):
        symcore.compile("x0 + 1")
    with pytest.raises(SymcoreError):
        symcore.compile([x0, 3.0])
    with pytest.raises(DataError):
        symcore.compile(x0, dtype="int32")
    with pytest.raises(DataError):
        symcore.compile(x0, dtype=["float64"])
    with pytest.raises(CompileError):
        symcore.compile(x0, tier=2)
    with pytest.raises(CompileError):
        symcore.compile(x0, tier=True)
    assert symcore.compile(x0, dtype=np.float32).dtype == "float32"


def test_auto_tier_moves_to_tier1_once_evaluation_pays_for_compiling(monkeypatch):
    if kernels._tier0_module() is None:
        assert symcore.compile(POP).tier == 1
        return
    X, y = _data(n=20000)
    monkeypatch.setattr(kernels, "_compile_estimate", [1e-6])
    k = symcore.compile(POP, tier="auto")
    assert k.tier == 0
    first = k.score(X, y)                 # tier 0, and it measures what that cost
    assert k.compile_stats is None
    second = k.score(X, y)                # the measured time now pays for compiling
    assert k.tier == 1 and k.compile_stats is not None
    np.testing.assert_allclose(first, second, rtol=1e-9)
    monkeypatch.setattr(kernels, "_compile_estimate", [1e9])
    k2 = symcore.compile(POP, tier="auto")
    for _ in range(3):
        k2.score(X, y)
    assert k2.tier == 0                   # compiling would never pay off


def test_thread_counts_give_identical_results(monkeypatch):
    X, y = _data(n=5000)
    pop = POP * 8
    k = symcore.compile(pop, tier=1)
    outs = []
    for t in ("1", "2", "3"):
        monkeypatch.setenv("SYMCORE_THREADS", t)
        outs.append((k.predict(X), k.score(X, y)))
    for P, s in outs[1:]:
        np.testing.assert_array_equal(P, outs[0][0])
        np.testing.assert_array_equal(s, outs[0][1])


def test_run_ranges_partitions_exactly():
    for n in (0, 1, 5, 97):
        seen: list[tuple[int, int]] = []
        pool.run_ranges(n, 1e12, lambda a, b: seen.append((a, b)), threads=2)
        covered = sorted(seen)
        assert sum(b - a for a, b in covered) == n
        assert all(covered[i][1] == covered[i + 1][0] for i in range(len(covered) - 1))

    def boom(a, b):
        raise DataError("propagates")

    with pytest.raises(DataError):
        pool.run_ranges(10, 1e12, boom, threads=2)


@pytest.mark.parametrize("tier", [0, 1])
def test_constant_expressions_and_extra_columns(tier):
    k = symcore.compile([const(2.5), call("exp", const(1.0)), x1], tier=tier)
    X = np.arange(12.0).reshape(4, 3)           # more columns than read: only x0, x1 copied
    P = k.predict(X)
    np.testing.assert_allclose(P, [[2.5] * 4, [np.e] * 4, X[:, 1]], rtol=1e-15)
    kc = symcore.compile(const(-1.0), tier=tier)
    np.testing.assert_allclose(kc.predict(np.zeros((3, 0))), [[-1.0] * 3])
    np.testing.assert_allclose(kc.score(np.zeros((3, 0)), [1.0, 1.0, 1.0]), [4.0])


def test_closed_kernel_raises():
    k = symcore.compile(x0, tier=1)
    k.close()
    assert "closed" in repr(k)
    with pytest.raises(SymcoreError):
        k.predict(np.ones((2, 1)))
