"""Systems as one kernel (shared subterms lowered once), reading systems, and the trajectory /
derivative fitness of populations."""

from __future__ import annotations

import numpy as np
import sympy as sp
from llvmlite import ir

import symcore
from symcore import call, var
from symcore.codegen.ode.api import score_derivatives, score_trajectories
from symcore.codegen.ode.emit import emit_rhs
from symcore.codegen.ode.native import rhs_functions

OSC = symcore.system(["x1", "-x0"])


def test_shared_subterm_is_lowered_once():
    shared = call("sin", var(0) * var(1))
    s = symcore.System([shared + var(0), shared * var(1), call("exp", shared)])
    mod = ir.Module()
    text = str(emit_rhs(mod, "f", s))
    assert text.count("fmul") == 2          # x0*x1 once, shared*x1 once
    assert text.count("load double") == 2   # each state variable read once


def test_compiled_rhs_equals_reference():
    s = symcore.system(["p0*(x1-x0) + sin(t)", "x0*(p1-x2)-x1", "x0*x1-p2*x2*x2"],
                       params=[10, 28, 8 / 3])
    c = rhs_functions([s])[0]
    y = np.array([1.5, -2.0, 3.0])
    out = np.empty(3)
    c.call(0.3, y.ctypes.data, s.params.ctypes.data, out.ctypes.data)
    np.testing.assert_allclose(out, s.rhs(0.3, y), rtol=1e-15)
    Y = np.random.default_rng(0).normal(size=(3, 5))
    outb = np.empty((3, 5))
    c.call_batch(5, 0.3, Y.ctypes.data, s.params.ctypes.data, outb.ctypes.data)
    np.testing.assert_allclose(outb, s.rhs(0.3, Y), rtol=1e-15)


def test_system_from_sympy_and_names():
    a, b, t, k = sp.symbols("a b t p0")
    s = symcore.system([b, -k * a + sp.cos(t)], names=["a", "b"], params=[2.0])
    assert s.n == 2 and s.n_params == 1 and s.names == ("a", "b")
    np.testing.assert_allclose(s.rhs(0.5, [1.0, 2.0]), [2.0, -2.0 + np.cos(0.5)])
    s2 = symcore.system(["b", "-p0*a + cos(t)"], names=["a", "b"], params=[2.0])
    assert s2.exprs[1].digest() == s.exprs[1].digest() or \
        np.allclose(s2.rhs(0.5, [1.0, 2.0]), s.rhs(0.5, [1.0, 2.0]))


def test_score_trajectories_ranks_the_truth_first():
    t = np.linspace(0, 6, 31)
    Y = np.stack([np.cos(t), -np.sin(t)], axis=1)
    pop = [OSC, symcore.system(["x1", "-1.1*x0"]), symcore.system(["x0*x0", "x1"])]
    sc = score_trajectories(pop, [1.0, 0.0], t, Y)
    assert sc[0] < 1e-14 and 1e-4 < sc[1] < np.inf and sc[2] == np.inf
    rm = score_trajectories(pop[:2], [1.0, 0.0], t, Y, metric="rmse")
    np.testing.assert_allclose(rm, np.sqrt(sc[:2]))
    Ys = Y * [1.0, 100.0]
    pop2 = [symcore.system(["100*x1", "-0.01*x0"]), symcore.system(["100*x1", "-0.011*x0"])]
    raw = score_trajectories(pop2, [1.0, 0.0], t, Ys)
    nrm = score_trajectories(pop2, [1.0, 0.0], t, Ys, normalize=True)
    sd = Ys.std(axis=0)
    y1 = symcore.odeint(pop2[1], [1.0, 0.0], t)
    np.testing.assert_allclose(nrm[1], np.mean(((y1 - Ys) / sd) ** 2), rtol=1e-10)
    assert raw[1] != nrm[1]


def test_score_derivatives_against_numpy():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(50, 2))
    tt = rng.uniform(0, 1, 50)
    dX = np.stack([X[:, 1], -X[:, 0]], axis=1)
    pop = [OSC, symcore.system(["x1 + t", "-p0*x0"], params=[2.0])]
    sc = score_derivatives(pop, X, dX, t=tt)
    assert sc[0] == 0.0
    want = np.mean(np.stack([tt, -X[:, 0]], axis=1) ** 2)
    np.testing.assert_allclose(sc[1], want, rtol=1e-12)
    bad = score_derivatives([symcore.system(["log(x0)", "x1"])], X, dX)
    assert bad[0] == np.inf
