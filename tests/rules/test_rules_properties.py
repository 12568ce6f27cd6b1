"""Hypothesis properties of the e-graph stage: simplify keeps values where finite, never costs
more, dedup never merges numerically different candidates, saturation stays within limits."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

import symcore
from symcore.rules.extract import cost_model, tree_cost

from rules_numeric import numerically_different, points, same_where_finite
from strategies import examples, exprs, populations

X3 = points(3, seed=1)


@settings(max_examples=examples(0.67))
@given(exprs(n_vars=3, max_leaves=10))
def test_simplify_keeps_values_where_finite(e):
    s = symcore.simplify(e, iterations=4)
    assert same_where_finite(e, s, X3), f"{e}  ->  {s}"


@settings(max_examples=examples(0.5))
@given(exprs(n_vars=3, max_leaves=10), st.sampled_from(["size", "params"]))
def test_simplify_never_costlier(e, cost):
    s = symcore.simplify(e, cost=cost, iterations=4)
    fn = cost_model(cost)
    assert tree_cost(s, fn) <= tree_cost(e, fn)


@settings(max_examples=examples(0.25))
@given(populations(n_vars=3, max_size=12))
def test_dedupe_never_merges_different_candidates(pop):
    d = symcore.dedupe(pop, iterations=4)
    assert len(d.class_of) == len(pop)
    assert sorted(i for m in d.members for i in m) == list(range(len(pop)))
    for k, mem in enumerate(d.members):
        first = pop[mem[0]]
        for i in mem[1:]:
            assert not numerically_different(first, pop[i], X3), f"{first} merged with {pop[i]}"
        # the representative is the function of its class
        assert same_where_finite(first, d.representatives[k], X3)


@settings(max_examples=examples(0.17))
@given(exprs(n_vars=2, n_params=3, max_leaves=8, unary=("sin", "exp", "neg", "square"),
             binary=("add", "sub", "mul", "div"), powi=False))
def test_params_never_adds_parameters(e):
    s = symcore.simplify(e, rules="params", cost="params", iterations=4)
    assert len(s.parameters()) <= len(e.parameters())
    assert set(s.variables()) <= set(e.variables())


GPLEARN_LIKE = dict(unary=("plog", "pinv", "sqrt_abs", "neg", "abs", "sin", "cos", "dlog",
                           "log_abs"),
                    binary=("add", "sub", "mul", "pdiv", "max", "min", "aq", "pow_abs"))


@settings(max_examples=examples(0.42))
@given(exprs(n_vars=3, max_leaves=10, **GPLEARN_LIKE))
def test_protected_ops_keep_their_semantics(e):
    s = symcore.simplify(e, iterations=4)
    assert same_where_finite(e, s, X3), f"{e}  ->  {s}"
