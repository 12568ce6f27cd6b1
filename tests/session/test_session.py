"""Session: every metric against a NumPy reference, weights and row sets, the non-finite policy,
cache correctness (a hit is what a fresh score gives), the LRU bound, stats, the prefix path."""

import numpy as np
import pytest
from hypothesis import given
from scipy.stats import rankdata

from symcore import DataError, SymcoreError, call, const, evaluate, var
from symcore.scoring import rank_rows
from symcore.session import Session

import strategies

RNG = np.random.default_rng(7)
X = RNG.uniform(0.5, 3.0, (257, 3))          # 257: not a multiple of any block
Y = X[:, 0] * X[:, 1] + np.sin(X[:, 2])
W = RNG.uniform(0.1, 2.0, 257)

x0, x1, x2 = var(0), var(1), var(2)
POP = [x0 * x1, x0 + x1, call("sin", x2), x0 * x1 + call("sin", x2), const(1.5), x1 * x0,
       call("pdiv", x0, x2 - x2), call("plog", x1)]


def ref_metric(metric, p, y, w):
    w = np.ones_like(y) if w is None else w
    sw = w.sum()
    err = p - y
    if metric == "mse":
        return np.sum(w * err ** 2) / sw
    if metric == "rmse":
        return np.sqrt(np.sum(w * err ** 2) / sw)
    if metric == "mae":
        return np.sum(w * np.abs(err)) / sw
    ybar = np.sum(w * y) / sw
    sst = np.sum(w * (y - ybar) ** 2)
    if metric == "r2":
        return 1 - np.sum(w * err ** 2) / sst
    if metric == "nmse":
        return (np.sum(w * err ** 2) / sw) / (sst / sw)
    if metric == "spearman":
        p, y = rankdata(p), rankdata(y)
    pm, ym = np.sum(w * p) / sw, np.sum(w * y) / sw
    return np.sum(w * (p - pm) * (y - ym)) / np.sqrt(np.sum(w * (p - pm) ** 2)
                                                      * np.sum(w * (y - ym) ** 2))


@pytest.mark.parametrize("metric", ["mse", "rmse", "mae", "nmse", "r2", "pearson", "spearman"])
@pytest.mark.parametrize("weighted", [False, True])
def test_every_metric_matches_numpy(metric, weighted):
    w = W if weighted else None
    s = Session(X, Y, metric=metric, weights=w)
    pop = [e for e in POP if e.op not in ("const", "pdiv")]   # defined for every metric
    got = s.score(pop)
    want = [ref_metric(metric, evaluate(e, X), Y, w) for e in pop]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@given(strategies.populations(n_vars=3, max_size=12))
def test_hit_is_bitwise_a_fresh_score(pop):
    warm = Session(X, Y, metric="mse", nonfinite="nan")
    first = warm.score(pop)
    again = warm.score(pop[::-1])[::-1]
    fresh = Session(X, Y, metric="mse", nonfinite="nan").score(pop)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, fresh)
    assert warm.stats.hits >= len(pop)


def test_exact_cache_merges_commuted_forms_only():
    s = Session(X, Y, cache="exact")
    v = s.score([x0 * x1, x1 * x0, x0 + x1])
    assert v[0] == v[1] and s.stats.classes == 2 and s.stats.hits == 1
    s2 = Session(X, Y, cache=None)
    s2.score([x0 * x1, x0 * x1])
    assert s2.stats.hits == 1 and len(s2) == 0     # no cache: only the repeat within the call


def test_lru_bound_over_200_generations():
    s = Session(X, Y, max_entries=500)
    for g in range(200):
        pop = [x0 * const(g * 100 + i + 0.5) + x1 for i in range(40)]
        s.score(pop)
        assert len(s) <= 500
    assert s.stats.evictions == 200 * 40 - 500
    assert 0 < s.stats.bytes < 500 * 2000
    np.testing.assert_array_equal(s.score(pop), Session(X, Y).score(pop))


def test_per_candidate_weights_and_row_sets():
    s = Session(X, Y, metric="mae", weights=W)
    rows = [np.arange(0, 100), np.array([3, 3, 5]), np.arange(257)]
    got = s.score([x0 * x1, x0 + x1, x0 + x1], weights=rows)
    for e, r, g in zip([x0 * x1, x0 + x1, x0 + x1], rows, got):
        w = np.bincount(r, minlength=257) * W
        assert g == pytest.approx(ref_metric("mae", evaluate(e, X), Y, w), rel=1e-12)
    Wm = RNG.uniform(0, 1, (2, 257))
    got = s.score([x0, x0], weights=Wm)
    assert got[0] != got[1]                       # same candidate, other weights: no hit
    assert got[1] == pytest.approx(ref_metric("mae", X[:, 0], Y, Wm[1]), rel=1e-12)
    with pytest.raises(DataError):
        s.score([x0], weights=[np.array([300])])
    with pytest.raises(DataError):
        s.score([x0], weights=np.ones((2, 257)))


@pytest.mark.parametrize("policy,loss,gain", [("inf", np.inf, -np.inf), ("nan", np.nan, np.nan),
                                              (1e9, 1e9, 1e9)])
def test_nonfinite_policy(policy, loss, gain):
    bad = call("log", x0 - x0)                    # -inf on every row
    for metric, want in (("mse", loss), ("r2", gain), ("pearson", gain)):
        v = Session(X, Y, metric=metric, nonfinite=policy).score([bad, const(2.0)])
        np.testing.assert_array_equal(v[0], want)
    # a constant prediction has no correlation: the policy too
    v = Session(X, Y, metric="pearson", nonfinite=policy).score([const(2.0)])
    np.testing.assert_array_equal(v, [gain])


def test_rank_rows_matches_scipy():
    A = np.round(RNG.normal(size=(5, 40)), 1)     # many ties
    np.testing.assert_array_equal(rank_rows(A), np.vstack([rankdata(a) for a in A]))


def test_prefix_path_equals_expr_path():
    syms = {"+": "add", "*": "mul", "s": "sin", "/": "pdiv"}
    progs = [["+", "*", 0, 1, "s", 2], ["*", 0.5, "/", 0, 2], [1], [0.25]]
    exprs = [x0 * x1 + call("sin", x2), const(0.5) * call("pdiv", x0, x2), x1, const(0.25)]
    s = Session(X, Y, metric="rmse")
    got = s.score_prefix(progs, syms)
    np.testing.assert_allclose(got, Session(X, Y, metric="rmse").score(exprs), rtol=1e-15)
    again = s.score_prefix([list(p) for p in progs], syms)
    np.testing.assert_array_equal(got, again)
    assert s.stats.hits == 4
    np.testing.assert_allclose(s.predict_prefix(progs, syms),
                               np.vstack([evaluate(e, X) for e in exprs]), rtol=1e-15)


def test_prefix_tokens_compare_by_identity_not_value():
    # 1 == 1.0 in a dict: column 1 and the constant 1.0 must not share a cache entry
    s = Session(X, Y)
    a = s.score_prefix([["*", 1, 0]], {"*": "mul"})
    b = s.score_prefix([["*", 1.0, 0]], {"*": "mul"})
    assert a[0] == Session(X, Y).score([x1 * x0])[0]
    assert b[0] == Session(X, Y).score([const(1.0) * x0])[0]


def test_bad_input_raises_typed_errors():
    with pytest.raises(DataError):
        Session(X, Y[:-1])
    with pytest.raises(DataError):
        Session(X, np.where(Y > 2, np.nan, Y))
    with pytest.raises(DataError):
        Session(X, Y, metric="bogus")
    with pytest.raises(SymcoreError):
        Session(X, Y, nonfinite="zero")
    s = Session(X, Y)
    with pytest.raises(DataError):
        s.score([var(5)])
    with pytest.raises(SymcoreError):
        s.score_prefix([["*", 0]], {"*": "mul"})     # incomplete
    with pytest.raises(SymcoreError):
        s.score_prefix([["?", 0]], {"*": "mul"})     # unknown token
    with pytest.raises(DataError):
        s.score_prefix([["*", 0, 7]], {"*": "mul"})  # column out of range


def test_strings_and_stats():
    s = Session(X, Y)
    v = s.score(["x0*x1", "x1*x0"], dialect="sympy")
    assert v[0] == v[1] == pytest.approx(ref_metric("mse", X[:, 0] * X[:, 1], Y, None))
    st = s.stats
    assert (st.calls, st.candidates, st.hits, st.misses, st.classes) == (1, 2, 1, 1, 1)
    assert set(st.seconds) == {"read", "canonicalise", "compile", "score"}
