"""Export of a system: the shared library's C function through ctypes and through solve_ivp,
the JIT callable through solve_ivp (plain and vectorised)."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from scipy.integrate import solve_ivp

import symcore
from symcore import ExportError
from symcore.codegen.export.native import find_compiler
from symcore.codegen.export.system import load_rhs, rhs_function

LORENZ = symcore.system(["p0*(x1-x0) + 0*t", "x0*(p1-x2)-x1", "x0*x1-p2*x2"],
                        params=[10, 28, 8 / 3])


def _has_cc() -> bool:
    try:
        find_compiler()
        return True
    except ExportError:
        return False


def test_jit_callable_in_solve_ivp_plain_and_vectorised():
    f = rhs_function(LORENZ)
    y = np.array([1.0, 2.0, 3.0])
    np.testing.assert_allclose(f(0.0, y), LORENZ.rhs(0.0, y), rtol=1e-15)
    Y = np.random.default_rng(0).normal(size=(3, 7))
    np.testing.assert_allclose(f(0.0, Y), LORENZ.rhs(0.0, Y), rtol=1e-15)
    t = np.linspace(0, 1, 11)
    ref = solve_ivp(lambda tt, yy: LORENZ.rhs(tt, yy), (0, 1), y, t_eval=t, rtol=1e-10,
                    atol=1e-12)
    a = solve_ivp(f, (0, 1), y, t_eval=t, rtol=1e-10, atol=1e-12)
    b = solve_ivp(f, (0, 1), y, t_eval=t, rtol=1e-10, atol=1e-12, method="BDF",
                  vectorized=True)
    np.testing.assert_allclose(a.y, ref.y, rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(b.y, ref.y, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(a.y.T, symcore.odeint(LORENZ, y, t, rtol=1e-10, atol=1e-12),
                               rtol=1e-6, atol=1e-6)


@pytest.mark.skipif(not _has_cc(), reason="no C compiler to link the library")
def test_shared_library_round_trip(tmp_path):
    path = symcore.export(LORENZ, tmp_path / "rhs.so")
    header = (tmp_path / "rhs.h").read_text()
    assert "void rhs(double t, const double *y, const double *p, double *dydt);" in header
    lib = ctypes.CDLL(str(path))
    lib.rhs.argtypes = [ctypes.c_double] + [ctypes.POINTER(ctypes.c_double)] * 3
    y = (ctypes.c_double * 3)(1.0, -2.0, 0.5)
    p = (ctypes.c_double * 3)(10.0, 28.0, 8 / 3)
    d = (ctypes.c_double * 3)()
    lib.rhs(0.25, y, p, d)
    np.testing.assert_allclose(list(d), LORENZ.rhs(0.25, [1.0, -2.0, 0.5]), rtol=1e-15)
    f = load_rhs(path, 3, params=[10, 28, 8 / 3], n_params=3)
    t = np.linspace(0, 0.5, 6)
    a = solve_ivp(f, (0, 0.5), [1.0, 1.0, 1.0], t_eval=t, rtol=1e-10, atol=1e-12,
                  vectorized=True)
    ref = solve_ivp(lambda tt, yy: LORENZ.rhs(tt, yy), (0, 0.5), [1.0, 1.0, 1.0], t_eval=t,
                    rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(a.y, ref.y, rtol=1e-12, atol=1e-12)
    ll = symcore.export(LORENZ, tmp_path / "rhs.ll", name="lorenz")
    assert "define void @\"lorenz\"" in ll.read_text() or "@lorenz(" in ll.read_text()
