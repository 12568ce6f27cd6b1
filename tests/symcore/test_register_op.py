"""symcore.register_op: a user operator (erf) works in every layer, and leaves nothing behind."""

from __future__ import annotations

import ctypes
import importlib.util

import numpy as np
import pytest

scipy_special = pytest.importorskip("scipy.special")
sympy = pytest.importorskip("sympy")

import symcore  # noqa: E402
from symcore import ops  # noqa: E402
from symcore.errors import CompileError, OpFieldError, OpRegistrationError  # noqa: E402
from symcore.io.registry import registered_op  # noqa: E402


def _erf_op(**kw: object) -> symcore.Op:
    fields = dict(arity=1, np=scipy_special.erf, sympy=sympy.erf, c="erf({0})",
                  latex=r"\operatorname{erf}({0})",
                  deriv=("1.1283791670955126 * exp(-({0} * {0}))",))
    fields.update(kw)
    return symcore.Op("erf", **fields)  # type: ignore[arg-type]


@pytest.fixture
def erf():
    """The issue's snippet; the op is unregistered afterwards so no other test sees it."""
    assert "erf" not in symcore.OPS
    try:
        symcore.register_op(_erf_op())
        yield symcore.read("erf(x0) * x1 + 2.5", dialect="symcore")
    finally:
        symcore.unregister_op("erf")
    assert "erf" not in symcore.OPS


@pytest.fixture
def data():
    rng = np.random.default_rng(7)
    X = rng.normal(size=(500, 2)) * 1.5
    return X, scipy_special.erf(X[:, 0]) * X[:, 1] + 2.5


def test_evaluate_and_both_tiers(erf, data):
    X, ref = data
    np.testing.assert_allclose(symcore.evaluate(erf, X), ref, rtol=1e-15)
    for tier in (0, 1):
        got = np.asarray(symcore.compile(erf, tier=tier).predict(X)).ravel()
        np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_fit_recovers_known_parameters(erf, data):
    X, _ = data
    model = symcore.read("p0 * erf(p1 * x0)", dialect="symcore")
    y = 1.7 * scipy_special.erf(0.6 * X[:, 0])
    for tier in (0, 1):
        r = symcore.fit(model, X, y, params0=[1.0, 1.0], tier=tier)
        np.testing.assert_allclose(r.params, [1.7, 0.6], rtol=1e-6)


def test_derivative_template_is_erf_prime(erf):
    from symcore.deriv import derivatives
    x = np.linspace(-3, 3, 13)
    (d,) = derivatives("erf", [symcore.var(0)], erf)
    h = 1e-6
    fd = (scipy_special.erf(x + h) - scipy_special.erf(x - h)) / (2 * h)
    np.testing.assert_allclose(symcore.evaluate(d, x[:, None]), fd, rtol=1e-6, atol=1e-9)


def test_simplify_and_dedupe_treat_it_as_a_function(erf):
    same = symcore.read("x1 * erf(x0) + 2.5", dialect="symcore")
    other = symcore.read("erf(x1) * x1 + 2.5", dialect="symcore")
    d = symcore.dedupe([erf, same, other])
    assert d.class_of[0] == d.class_of[1] != d.class_of[2]
    s = symcore.simplify(symcore.read("erf(x0) * x1 + 2.5 + 0 * 3.0", dialect="symcore"))
    assert "erf" in str(s) and s.size <= erf.size


def test_exports_agree_with_scipy(erf, data, tmp_path):
    X, ref = data
    c_text = symcore.export(erf, tmp_path / "m.c").read_text()
    assert "erf(" in c_text
    py = symcore.export(erf, tmp_path / "m.py")
    spec = importlib.util.spec_from_file_location("m_erf", py)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    np.testing.assert_allclose(mod.model(X), ref, rtol=1e-12)
    ns: dict = {}
    exec(symcore.export(erf, tmp_path / "m_sym.py", format="sympy").read_text(), ns)
    f = sympy.lambdify(sorted(ns["model"].free_symbols, key=str), ns["model"], "scipy")
    np.testing.assert_allclose(f(X[:, 0], X[:, 1]), ref, rtol=1e-12)
    from symcore.codegen.export.api import find_compiler
    try:
        find_compiler()
    except symcore.ExportError:
        pytest.skip("no C compiler for the .so export")
    so = symcore.export(erf, tmp_path / "m.so")
    lib = ctypes.CDLL(str(so))
    lib.model.restype = ctypes.c_double
    lib.model.argtypes = [ctypes.POINTER(ctypes.c_double)]
    got = np.array([lib.model((ctypes.c_double * 2)(*row)) for row in X])
    np.testing.assert_allclose(got, ref, rtol=1e-12)


def test_missing_field_errors_only_where_needed(data):
    X, ref = data
    with registered_op(_erf_op(latex=None)):
        e = symcore.read("erf(x0) * x1 + 2.5", dialect="symcore")
        np.testing.assert_allclose(symcore.evaluate(e, X), ref, rtol=1e-15)
        assert "erf" in symcore.write(e, "symcore")
        with pytest.raises(OpFieldError, match="erf"):
            symcore.to_latex(e)
    assert "erf" not in symcore.OPS


def test_op_without_any_lowering_is_a_compile_error_naming_it(data):
    X, _ = data
    op = symcore.Op("erfish", arity=1, np=scipy_special.erf, c="(erf({0}))")
    with registered_op(op):
        e = symcore.read("erfish(x0)", dialect="symcore")
        for tier in (0, 1):
            with pytest.raises(CompileError, match="erfish"):
                symcore.compile(e, tier=tier).predict(X)
        with pytest.raises(CompileError, match="erfish"):
            symcore.fit(symcore.read("p0 * erfish(x0)", dialect="symcore"), X, X[:, 0], tier=0)
        # the op costs only the expressions that use it: tier 0 and its Jacobian still run
        # everything else while it is registered
        other = symcore.read("x0 * sin(x1)", dialect="symcore")
        np.testing.assert_allclose(symcore.compile(other, tier=0).predict(X).ravel(),
                                   symcore.evaluate(other, X), rtol=1e-13)
        model = symcore.read("p0 * x0 + p1", dialect="symcore")
        r = symcore.fit(model, X, 2.0 * X[:, 0] + 1.0, params0=[1.0, 0.0], tier=0)
        np.testing.assert_allclose(r.params, [2.0, 1.0], rtol=1e-8)


def test_table_is_read_only_and_registration_is_checked():
    with pytest.raises(TypeError):
        symcore.OPS["erf"] = _erf_op()  # type: ignore[index]
    with pytest.raises(OpRegistrationError, match="built-in"):
        symcore.register_op(symcore.Op("sin", arity=1, np=np.sin))
    with pytest.raises(OpRegistrationError):
        symcore.register_op(_erf_op(arity=3))
    gen = ops.generation()
    with registered_op(_erf_op()) as first:
        g1 = ops.generation()
        assert g1 > gen
        assert symcore.register_op(_erf_op()) is first       # identical: a no-op
        assert ops.generation() == g1
        with pytest.raises(OpRegistrationError, match="different"):
            symcore.register_op(_erf_op(c="erfc({0})"))
    assert "erf" not in symcore.OPS and ops.registry_key() == "builtin"
