"""Native ODE integration: exact solutions, failures as statuses, batch and population shapes,
agreement with SciPy on random systems."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st
from scipy.integrate import solve_ivp

import symcore
from symcore import DataError, SymcoreError, call, const, param, var
from symcore.codegen.ode.api import STATUSES, odeint
from strategies import examples, exprs

DECAY = symcore.system(["-p0 * x0"], params=[0.7])
OSC = symcore.system(["x1", "-x0"])
LORENZ = symcore.system(["p0*(x1-x0)", "x0*(p1-x2)-x1", "x0*x1-p2*x2"], params=[10, 28, 8 / 3])


@pytest.mark.parametrize("method,kw,tol", [("dopri5", {}, 1e-8), ("rk4", {"h": 1e-3}, 1e-10)])
def test_exponential_decay(method, kw, tol):
    t = np.linspace(0.0, 5.0, 21)
    y, info = odeint(DECAY, [2.0], t, method=method, full_output=True, **kw)
    assert y.shape == (21, 1) and info.names == "ok"
    np.testing.assert_allclose(y[:, 0], 2.0 * np.exp(-0.7 * t), rtol=tol, atol=1e-12)


def test_harmonic_oscillator_dense_output():
    t = np.sort(np.random.default_rng(1).uniform(0, 20, 50))
    t = np.concatenate([[0.0], t])
    y = odeint(OSC, [1.0, 0.0], t, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(y[:, 0], np.cos(t), atol=1e-8)
    np.testing.assert_allclose(y[:, 1], -np.sin(t), atol=1e-8)


def test_time_dependent_rhs_reads_t():
    s = symcore.system(["cos(t)"])          # y = y0 + sin(t)
    t = np.linspace(1.0, 4.0, 7)
    y = odeint(s, [0.5], t)
    np.testing.assert_allclose(y[:, 0], 0.5 + np.sin(t) - np.sin(1.0), atol=1e-8)


def test_rk4_converges_at_fourth_order():
    t = np.array([0.0, 2.0])
    errs = [abs(odeint(OSC, [1.0, 0.0], t, method="rk4", h=h)[-1, 0] - np.cos(2.0))
            for h in (0.1, 0.05)]
    assert 12 < errs[0] / errs[1] < 20     # 2^4 = 16


def test_blow_up_is_a_status_not_an_exception():
    s = symcore.system(["x0 * x0"])          # y = 1/(1-t): infinite at t = 1
    y, info = odeint(s, [1.0], [0.0, 0.5, 2.0], full_output=True)
    assert info.names != "ok" and not info.ok
    assert abs(y[1, 0] - 2.0) < 1e-6 and np.isnan(y[2, 0])


def test_non_finite_rate_and_step_limit():
    s = symcore.system([call("log", var(0))])
    y, info = odeint(s, [-1.0], [0.0, 1.0], full_output=True)
    assert info.names == "non-finite"
    assert y[0, 0] == -1.0 and np.isnan(y[1, 0])
    y, info = odeint(LORENZ, [1.0, 1.0, 1.0], [0.0, 10.0], max_steps=5, full_output=True)
    assert info.names == "step-limit" and int(info.steps) == 5
    assert np.isnan(y[1]).all()


def test_population_statuses_are_per_system():
    pop = [OSC, symcore.system(["x0*x0*x1", "x1"]), symcore.system(["log(x0)", "x0"])]
    y, info = odeint(pop, [[1.0, 0.0], [1.0, 1.0], [-1.0, 1.0]], np.linspace(0, 3, 4),
                     full_output=True)
    assert y.shape == (3, 4, 2)
    assert info.names[0] == "ok" and info.names[1] != "ok" and info.names[2] == "non-finite"
    np.testing.assert_allclose(y[0, :, 0], np.cos(np.linspace(0, 3, 4)), atol=1e-7)


def test_batch_and_population_shapes_match_single_calls():
    t = np.linspace(0, 1, 11)
    Y0 = np.array([[1.0, 1.0, 1.0], [2.0, -1.0, 3.0], [0.1, 0.2, 0.3]])
    yb = odeint(LORENZ, Y0, t)
    assert yb.shape == (3, 11, 3)
    for b in range(3):
        np.testing.assert_array_equal(yb[b], odeint(LORENZ, Y0[b], t))
    prm = np.array([[10, 28, 8 / 3], [9, 20, 2.0], [11, 30, 3.0]])
    yp = odeint([LORENZ] * 3, Y0[0], t, params=prm)
    assert yp.shape == (3, 11, 3)
    for k in range(3):
        np.testing.assert_array_equal(yp[k], odeint(LORENZ, Y0[0], t, params=prm[k]))
    pop = [LORENZ, symcore.system(["x1", "-x0", "t"])]
    ym = odeint(pop, Y0[:2], t)
    assert ym.shape == (2, 11, 3)
    np.testing.assert_array_equal(ym[1], odeint(pop[1], Y0[1], t))


def test_population_parameter_rows_of_each_kind():
    """Rows of different lengths (systems with different parameter counts), one shared vector,
    and a 2-D array all give each problem its own parameters."""
    t = np.linspace(0, 1, 6)
    pop = [symcore.system(["-p0 * x0", "0*x1", "0*x2"]),
           symcore.system(["p1 * x0", "p1 * x1", "p1 * x2"])]
    y0 = [[1.0, 0.0, 0.0], [1.0, 2.0, 3.0]]
    y = odeint(pop, y0, t, params=[[0.7], [0.0, -0.5]])
    np.testing.assert_allclose(y[0, :, 0], np.exp(-0.7 * t), rtol=1e-7)
    np.testing.assert_allclose(y[1], np.exp(-0.5 * t)[:, None] * [1.0, 2.0, 3.0], rtol=1e-7)
    shared = odeint([DECAY] * 3, [1.0], t, params=[0.3])
    np.testing.assert_allclose(shared, np.broadcast_to(np.exp(-0.3 * t)[:, None], (3, 6, 1)),
                               rtol=1e-7)
    rows = odeint([DECAY] * 3, [1.0], t, params=np.array([[0.1], [0.2], [0.3]]))
    for k, r in enumerate((0.1, 0.2, 0.3)):
        np.testing.assert_allclose(rows[k, :, 0], np.exp(-r * t), rtol=1e-7)


def test_threads_do_not_change_results():
    prm = np.array([10, 28, 8 / 3]) * (1 + 0.05 * np.random.default_rng(0).standard_normal((40, 3)))
    t = np.linspace(0, 2, 21)
    a = odeint([LORENZ] * 40, [1.0, 1.0, 1.0], t, params=prm, threads=1)
    b = odeint([LORENZ] * 40, [1.0, 1.0, 1.0], t, params=prm, threads=2)
    np.testing.assert_array_equal(a, b)


def test_bad_arguments_raise_typed_errors():
    with pytest.raises(DataError):
        odeint(OSC, [1.0], [0, 1])
    with pytest.raises(DataError):
        odeint(OSC, [1.0, 0.0], [1, 0])
    with pytest.raises(DataError):
        odeint(OSC, [1.0, 0.0], [0, 1], method="euler")
    with pytest.raises(DataError):
        odeint(symcore.system(["p0*x0"]), [1.0], [0, 1])      # no parameter values
    with pytest.raises(SymcoreError):
        odeint(var(0), [1.0], [0, 1])
    with pytest.raises(DataError):
        symcore.System([var(3)])                              # reads past t
    with pytest.raises(DataError):
        odeint([OSC, DECAY], [1.0, 0.0], [0, 1])              # different n


SMOOTH = exprs(n_vars=3, n_params=0, unary=("sin", "cos", "tanh", "neg"),
               binary=("add", "sub", "mul"), powi=False, max_leaves=6,
               constants=st.floats(-2, 2, allow_nan=False))


@settings(max_examples=examples(0.5))
@given(st.tuples(SMOOTH, SMOOTH), st.lists(st.floats(-1, 1), min_size=2, max_size=2))
def test_random_systems_agree_with_scipy(eqs, y0):
    s = symcore.System(list(eqs))             # x0, x1 state; x2 is t
    t = np.linspace(0.0, 0.5, 6)
    ref = solve_ivp(lambda tt, y: s.rhs(tt, y), (0.0, 0.5), y0, method="DOP853", t_eval=t,
                    rtol=1e-12, atol=1e-12)
    assume(ref.status == 0 and np.all(np.abs(ref.y) < 1e3))
    y, info = odeint(s, y0, t, rtol=1e-10, atol=1e-12, full_output=True)
    assert info.names == "ok"
    np.testing.assert_allclose(y, ref.y.T, rtol=1e-7, atol=1e-8)


def test_statuses_table():
    assert STATUSES == ("ok", "non-finite", "step-limit", "step-too-small")
    assert param(0) in symcore.system(["p0"]).exprs and const(1.0) in symcore.system([1]).exprs
