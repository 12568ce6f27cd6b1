"""lift_constants / bind_params: literals become parameter slots and come back unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from strategies import data, exprs

import symcore
from symcore import DataError, SymcoreError, call, const, evaluate, param, var
from symcore.params import bind_params, lift_constants

x, y = var(0), var(1)


@given(exprs(n_vars=3, max_leaves=10))
def test_lift_then_bind_is_identity(e):
    m, v = lift_constants(e)
    assert bind_params(m, v) is e
    assert m.n_params == len(v)


@given(exprs(n_vars=3, max_leaves=10), st.sampled_from(["int_exponents", "integers", "none"]))
def test_which_literals_stay(e, skip):
    m, v = lift_constants(e, skip=skip)
    for n in m.nodes():
        for i, a in enumerate(n.args):
            if a.op != "const":
                continue
            kept_ok = ((n.op == "powi" and i == 1) or not math.isfinite(a.value)
                       or (skip == "int_exponents" and n.op in ("pow", "pow_abs") and i == 1
                           and a.value == int(a.value))
                       or (skip == "integers" and a.value == int(a.value)))
            assert kept_ok, (str(e), skip, n.op, a.value)


@given(exprs(n_vars=2, max_leaves=8), data(n_vars=2, min_rows=1, max_rows=10, edge=False))
def test_lifted_model_evaluates_the_same(e, X):
    m, v = lift_constants(e, skip="none")
    np.testing.assert_array_equal(evaluate(m, X, v), evaluate(e, X))


def test_slots_follow_the_printed_order_and_occurrences():
    e = 2.0 * x + call("pow", x, const(2.0)) + call("powi", x, const(3.0)) + 2.0 * y + 0.5
    m, v = lift_constants(e)
    assert str(m) == "p0 * x0 + x0^2.0 + powi(x0, 3.0) + p1 * x1 + p2"
    np.testing.assert_array_equal(v, [2.0, 2.0, 0.5])
    ms, vs = lift_constants(e, share=True)
    assert str(ms) == "p0 * x0 + x0^2.0 + powi(x0, 3.0) + p0 * x1 + p1"
    np.testing.assert_array_equal(vs, [2.0, 0.5])


def test_skip_modes():
    e = 2.0 * x + call("pow", x, const(2.0)) + call("pow", y, const(1.5)) + const(math.nan)
    assert str(lift_constants(e, skip="none")[0]) == "p0 * x0 + x0^p1 + x1^p2 + nan"
    assert str(lift_constants(e, skip="integers")[0]) == "2.0 * x0 + x0^2.0 + x1^p0 + nan"
    keep_small = lift_constants(e, skip=lambda v, parent, pos: abs(v) < 1.8)[0]
    assert str(keep_small) == "p0 * x0 + x0^p1 + x1^1.5 + nan"
    with pytest.raises(SymcoreError, match="skip"):
        lift_constants(e, skip="everything")


def test_existing_parameters_keep_their_slots():
    e = param(0) * x + 3.0
    with pytest.raises(DataError, match="already has 1 parameter"):
        lift_constants(e)
    m, v = lift_constants(e, params=[7.0])
    assert str(m) == "p0 * x0 + p1"
    np.testing.assert_array_equal(v, [7.0, 3.0])
    with pytest.raises(DataError):
        lift_constants(e, params=[[1.0]])


def test_leaves_and_constant_free_expressions():
    assert lift_constants(const(4.0))[0] is param(0)
    assert lift_constants(x)[0] is x
    assert lift_constants(call("sin", x))[1].shape == (0,)
    assert lift_constants(const(math.inf))[0] is const(math.inf)


def test_bind_params_errors():
    with pytest.raises(DataError, match="2 parameter"):
        bind_params(param(1) * x, [1.0])
    with pytest.raises(DataError, match="1-D"):
        bind_params(param(0), np.ones((1, 1)))
    with pytest.raises(SymcoreError):
        bind_params("p0", [1.0])
    with pytest.raises(SymcoreError):
        lift_constants(1.0)


def test_deep_expressions_do_not_recurse():
    e = x
    for i in range(5000):
        e = call("add", e, const(float(i % 7) + 0.5))
    m, v = lift_constants(e)
    assert len(v) == 5000 and m.n_params == 5000
    assert bind_params(m, v) is e


def test_facade_names():
    assert symcore.lift_constants is lift_constants
    assert symcore.bind_params is bind_params
