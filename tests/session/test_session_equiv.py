"""Session(cache="equivalent"): SymPy-style rewrites of seen candidates hit, a hit returns what a
fresh score of the hit candidate gives (within the equivalence contract: equal wherever both are
finite, up to rounding), the LRU bound and memory figure hold, keys keep no expression alive."""

import gc
import math
import weakref

import numpy as np
import pytest
from hypothesis import given

from symcore import call, const, evaluate, var
from symcore.rules.canonical import canonical
from symcore.session import Session
from symcore.session_stats import entry_bytes

import strategies

RNG = np.random.default_rng(11)
X = RNG.uniform(0.5, 3.0, (300, 3))
Y = X[:, 0] * X[:, 1] + np.sin(X[:, 2])
x0, x1, x2 = var(0), var(1), var(2)
c = const


def _f(op):
    return lambda a: call(op, a)


exp, sin, sq = _f("exp"), _f("sin"), _f("square")

SEEN = [(x0 + c(1.0)) * (x1 - c(2.0)), exp(x0 + c(2.0)) / x2, sq(x1 - x2),
        (x0 * x1 + c(1.0)) / x0, sin(c(3.0) * x1 * (c(2.0) * x2 + c(2.0)))]
# what sympy.expand / simplify print for them, read back
REWRITTEN = [x0 * x1 - c(2.0) * x0 + x1 - c(2.0), c(math.exp(2.0)) * exp(x0) / x2,
             sq(x1) - c(2.0) * x1 * x2 + sq(x2), x1 + c(1.0) / x0,
             sin(c(6.0) * x1 * x2 + c(6.0) * x1)]


def test_rewritten_forms_hit_and_match_their_fresh_scores():
    s = Session(X, Y, cache="equivalent")
    s.score(SEEN)
    h = s.stats.hits
    got = s.score(REWRITTEN)
    assert s.stats.hits - h == len(REWRITTEN)
    fresh = Session(X, Y, cache=None).score(REWRITTEN)
    np.testing.assert_allclose(got, fresh, rtol=1e-9)
    exact = Session(X, Y, cache="exact")
    exact.score(SEEN)
    exact.score(REWRITTEN)
    assert exact.stats.hits == 0                    # the exact cache keeps them apart


def _tame(e, bound=1e3):
    """Every intermediate of e (and of its canonical form) is within +-bound wherever finite:
    rounding differences between two spellings of e then stay near the last digits (a huge
    intermediate, e.g. sin(1/(x0-x1)^6) near x0 = x1, amplifies them without bound)."""
    with np.errstate(all="ignore"):
        for n in e.nodes() + canonical(e).nodes():
            v = evaluate(n, X)
            if np.any(np.abs(v[np.isfinite(v)]) > bound):
                return False
    return True


@given(strategies.algebraic_rewrites())
def test_hit_is_what_a_fresh_score_gives(forms):
    # forms: equal functions in several spellings next to near misses of the same shape
    warm = Session(X, Y, cache="equivalent", nonfinite="nan")
    warm.score(forms[::2])
    got = warm.score(forms)
    fresh = Session(X, Y, cache=None, nonfinite="nan").score(forms)
    classes: dict = {}
    for f, k in zip(forms, warm._keys(forms)[0]):
        classes.setdefault(k, []).append(f)
    for f, k, g, v in zip(forms, warm._keys(forms)[0], got, fresh):
        if np.isfinite(g) and np.isfinite(v) and all(map(_tame, classes[k])):
            assert g == pytest.approx(v, rel=1e-6, abs=1e-9), f


def test_lru_bound_and_memory_over_generations():
    s = Session(X, Y, cache="equivalent", max_entries=300)
    for g in range(100):
        pop = [x0 * c(g * 100 + i + 0.5) + x1 for i in range(20)]
        s.score(pop)
        assert len(s) <= 300 and len(s._canon) <= 40    # the memo follows the live candidates
    assert s.stats.evictions == 100 * 20 - 300
    assert s.stats.bytes == sum(entry_bytes(k, v) for k, v in s._cache.items())
    np.testing.assert_array_equal(s.score(pop), Session(X, Y, cache=None).score(pop))


def test_equivalent_keys_keep_no_expression_alive():
    s = Session(X, Y, cache="equivalent")
    e = sin(x0 * c(123.456) + x2)
    own = canonical(sin(x1 * c(654.321) - x2))          # its own canonical form
    refs = [weakref.ref(e), weakref.ref(own)]
    s.score([e, own])
    del e, own
    gc.collect()
    assert [r() for r in refs] == [None, None] and len(s) == 2
    assert not s._canon                                 # the per-expression memo emptied too
    assert s.score([sin(x2 + c(123.456) * x0)]).shape == (1,) and s.stats.hits == 1
