"""Expanded equivalence keys (rules/canonical_expand.py): SymPy-style rewrites meet, the key is
sound (one key: equal wherever both are finite) and bounded (caps, then the canonical key)."""

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st

from symcore import call, const, evaluate, var
from symcore.rules import canonical_expand as ce
from symcore.rules.canonical import canonical_all

import strategies
from strategies import rounded

x0, x1, x2 = var(0), var(1), var(2)


def _f(op):
    return lambda a: call(op, a)


exp, sin, cos, log, sqrt, sq = map(_f, ("exp", "sin", "cos", "log", "sqrt", "square"))
c = const

# points on both signs of every variable, away from the poles of the examples below
GRID = np.random.default_rng(3).uniform(-3.0, 3.0, (400, 3))


def keys(*es):
    return ce.expanded_keys(canonical_all(list(es)))


MEET = [
    ((x0 + c(1.0)) * (x1 - c(2.0)), x0 * x1 - c(2.0) * x0 + x1 - c(2.0)),
    (sq(x0 - c(2.0)), sq(x0) - c(4.0) * x0 + c(4.0)),
    (call("powi", x0 + x1, c(3.0)),
     call("cube", x0) + c(3.0) * sq(x0) * x1 + c(3.0) * x0 * sq(x1) + call("cube", x1)),
    (x1 / sq(x2 - c(2.0)), x1 / (sq(x2) - c(4.0) * x2 + c(4.0))),
    (exp(x0 + c(2.0)), c(math.exp(2.0)) * exp(x0)),
    (exp(x0) * exp(x1), exp(x0 + x1)),
    (sq(exp(x0)), exp(c(2.0) * x0)),
    (c(1.0) / exp(x0), exp(-x0)),
    (exp(x1 * (x0 + c(0.5))), exp(x0 * x1) * exp(c(0.5) * x1)),
    ((x0 * x1 + c(1.0)) / x0, x1 + c(1.0) / x0),
    ((x1 + (x1 - c(1.75)) * (x0 + c(1.0))) / (x1 - c(1.75)), x0 + c(1.0) + x1 / (x1 - c(1.75))),
    (x0 / (x2 * (cos(x2) + c(4.0))), x0 / (x2 * cos(x2) + c(4.0) * x2)),
    ((x0 + c(1.0)) / (x1 * (x0 + c(2.0))),
     x0 / (x0 * x1 + c(2.0) * x1) + c(1.0) / (x0 * x1 + c(2.0) * x1)),
    (c(1.0) / ((x0 + c(1.0)) * (x0 + c(2.0))), c(1.0) / (sq(x0) + c(3.0) * x0 + c(2.0))),
    (sq(x1) / (exp(c(2.0) / x2) * (x1 + x2)), sq(x1) * exp(c(-2.0) / x2) / (x1 + x2)),
    (sin(-x0 - x1), -sin(x0 + x1)),
    (cos(x1 - x0), cos(x0 - x1)),
    (sin(c(3.0) * x1 * (c(2.0) * x2 + c(2.0))), sin(c(6.0) * x1 * x2 + c(6.0) * x1)),
    (c(0.1 * 3) * x0, c(0.3) * x0),                      # a few ulps of constant folding
]

APART = [
    (log(x0 * x1), log(x0) + log(x1)),                   # log(ab) = log a + log b needs a, b > 0
    (sqrt(x0 * x1), sqrt(x0) * sqrt(x1)),
    (sqrt(sq(x0)), x0),
    (call("pow", sq(x0), c(0.5)), x0),
    (c(1.0000001) * x0, x0),
    (x0 + c(1e-9), x0),
    (exp(x0) + exp(x1), exp(x0 + x1)),
    (sq(x0 + x1), sq(x0) + sq(x1)),
    ((x0 + x1) / x1, x0 / x1),
    (sin(x0 - x1), sin(x1 - x0)),
    (c(1.0) / (x0 - x1), c(1.0) / (x1 - x0)),
]


@pytest.mark.parametrize("a,b", MEET, ids=range(len(MEET)))
def test_sympy_style_rewrites_meet(a, b):
    ka, kb = keys(a, b)
    assert ka == kb
    va, vb = evaluate(a, GRID), evaluate(b, GRID)
    both = np.isfinite(va) & np.isfinite(vb)
    assert both.mean() > 0.9
    assert np.all(np.abs(va[both] - vb[both]) <= 1e-9 * (1.0 + np.abs(va[both])))


@pytest.mark.parametrize("a,b", APART, ids=range(len(APART)))
def test_other_functions_stay_apart(a, b):
    ka, kb = keys(a, b)
    assert ka != kb


def _assert_sound(pop):
    """Every two expressions with one key are equal wherever both are finite (up to rounding,
    amplified where an expression is ill-conditioned)."""
    groups: dict = {}
    for e, k in zip(pop, keys(*pop)):
        groups.setdefault(k, []).append(e)
    with np.errstate(all="ignore"):
        for members in groups.values():
            v0 = evaluate(members[0], GRID)
            for e in members[1:]:
                v = evaluate(e, GRID)
                both = np.isfinite(v0) & np.isfinite(v)
                # plus what rounding can amplify: every intermediate nudged by 1e-12 (far
                # above an ulp) shows it (x0 - 1/(1/x0) is 0 up to ~1e-16 |x0|, which
                # exp(cube(x1)) lifts past any fixed tolerance)
                noise = sum(np.abs(rounded(m, GRID, f) - evaluate(m, GRID))
                            for m in (members[0], e) for f in (1 + 1e-12, 1 - 1e-12))
                # a nudge that makes a finite value non-finite (or back): a subterm sits on a
                # singularity there (inv(x0 - log(x0 - x0)) is 0 through log(0) = -inf, nudged
                # it is log of +-1e-12 x0): rounding decides the value, nothing bounds it
                noise = np.where(np.isnan(noise), np.inf, noise)
                scale = 1.0 + np.abs(v0[both])
                assert np.all(np.abs(v0[both] - v[both]) <= 1e-6 * scale + noise[both]), \
                    (members[0], e)


@given(strategies.algebraic_rewrites())
def test_key_is_sound_on_rewrites_and_near_misses(forms):
    _assert_sound(forms)


@given(st.lists(strategies.algebraic_exprs(), min_size=2, max_size=40))
def test_key_is_sound_on_random_populations(pop):
    _assert_sound(pop)


def test_expansion_is_capped():
    # a product of 12 binomials has 4096 terms: beyond MAX_TERMS it stays an opaque atom
    big = c(1.0)
    for i in range(12):
        big = big * (var(i) + c(float(i + 1)))
    p = ce._Expander().poly(canonical_all([big])[0])
    assert len(p) <= ce.MAX_TERMS
    # a deep tower of squares of sums: bounded, and still tells different functions apart
    t = x0 + c(1.0)
    for _ in range(12):
        t = sq(t + x1)
    k1, k2 = keys(t, t + c(1.0))
    assert k1 != k2


def test_work_budget_falls_back_to_the_canonical_key(monkeypatch):
    a, b = sq(x0 - c(2.0)), sq(x0) - c(4.0) * x0 + c(4.0)
    assert keys(a, b)[0] == keys(a, b)[1]
    monkeypatch.setattr(ce, "MAX_WORK", 1)
    ka, kb = keys(a, b)
    assert ka != kb                                  # no expansion: the canonical forms differ
    assert ka == keys(sq(c(-2.0) + x0))[0]           # ... which still merge commuted forms
