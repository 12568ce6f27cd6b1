"""SymPy bridge: to_sympy agrees with the reference evaluator; from_sympy reads SymPy back."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import sympy
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from strategies import PLAIN_BINARY, PLAIN_UNARY, examples, exprs, rounded

import symcore
from symcore import ParseError, UnknownOperatorError, call, const, evaluate, param, var
from symcore.ir import topo
from symcore.ops import OPS
from symcore.params import lift_constants
from symcore.io.readers import read
from symcore.io.sympy_bridge import from_sympy, to_sympy

x0, x1 = var(0), var(1)
ROWS = np.random.default_rng(11).uniform(-3, 3, size=(40, 3))
ROWS[0] = [0.0005, -0.0004, 0.0]


def lambdified(e: symcore.Expr, X: np.ndarray, p: np.ndarray | None = None) -> np.ndarray:
    s = to_sympy(e)
    syms = sympy.symbols([f"x{i}" for i in range(X.shape[1])], real=True)
    psyms = sympy.symbols([f"p{i}" for i in range(len(p) if p is not None else 0)], real=True)
    f = sympy.lambdify([*syms, *psyms], s, "numpy")
    with np.errstate(all="ignore"):
        out = np.asarray(f(*X.T, *([] if p is None else list(p))))
    if np.iscomplexobj(out):          # SymPy folds e.g. sqrt(-1) to I: NumPy's answer is NaN
        out = np.where(out.imag == 0, out.real, np.nan)
    return np.broadcast_to(np.asarray(out, dtype=np.float64), (X.shape[0],))


def close_where_finite(a: np.ndarray, b: np.ndarray) -> bool:
    ok = np.isfinite(a) & np.isfinite(b) & (np.abs(a) < 1e12)
    return bool(np.allclose(a[ok], b[ok], rtol=1e-7, atol=1e-9))


def no_overflow_or_underflow(e: symcore.Expr, X: np.ndarray, p: np.ndarray) -> bool:
    """True when no intermediate value of `e` over- or underflows float64 on X: there IEEE and
    SymPy's exact arithmetic can only differ by rounding."""
    vals: dict = {}
    try:
        with np.errstate(over="raise", under="raise", divide="ignore", invalid="ignore"):
            for n in topo([e]):
                if n.op == "var":
                    vals[n] = X[:, n.value]
                elif n.op == "const":
                    vals[n] = np.float64(n.value)
                elif n.op == "param":
                    vals[n] = np.float64(p[n.value])
                else:
                    vals[n] = OPS[n.op].np(*(vals[a] for a in n.args))
    except FloatingPointError:
        return False
    return True


# SymPy computes with unbounded exponents: (5e-303)**2 is positive there and 0.0 in IEEE
# doubles, so constants stay in the range where both arithmetics agree
MODERATE = st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))


@settings(max_examples=examples(0.67))  # lambdify: slow
@given(exprs(n_vars=3, n_params=2, max_leaves=6, constants=MODERATE))
def test_evaluate_equals_lambdify_of_to_sympy(e):
    p = np.array([0.75, -1.5])
    assume(no_overflow_or_underflow(e, ROWS, p))
    try:
        s = to_sympy(e)
    except symcore.SymcoreError:
        assume(False)                       # SymPy refuses e.g. Float(1) / Float(0)
    assume(not s.has(sympy.zoo))            # lambdify cannot print complex infinity
    assert close_where_finite(evaluate(e, ROWS, p), lambdified(e, ROWS, p)), str(e)


@given(exprs(n_vars=3, unary=tuple(u for u in PLAIN_UNARY if u != "cbrt"), binary=PLAIN_BINARY,
             max_leaves=8))
def test_from_sympy_of_to_sympy_evaluates_like_the_original(e):
    try:
        s = to_sympy(e)
    except symcore.SymcoreError:
        assume(False)
    # SymPy folded a division by zero to complex infinity, or asin(2) to a complex number
    assume(not s.has(sympy.zoo, sympy.I))
    # an intermediate that over- or underflows (c^x -> 0, then 0^k) is rounding under the
    # soundness contract: SymPy's exact rewrite (c^x)^k = c^(x k) may keep the value there
    assume(no_overflow_or_underflow(e, ROWS, np.zeros(0)))
    back = from_sympy(s)
    want, got = evaluate(e, ROWS), evaluate(back, ROWS)
    # SymPy rewrites (x^2)^-2 as x^-4 and so on: compare only where `e` is well conditioned
    # (a relative nudge of 1e-13 to the inputs, or to every intermediate result, moves it by
    # far less than the tolerance) — with respect to its literals too (SymPy folds sin(c**3)
    # exactly; float64 rounds c**3)
    lifted, p = lift_constants(e)
    with np.errstate(all="ignore"):
        stable = np.ones(len(ROWS), dtype=bool)
        for nudged in (evaluate(e, ROWS * (1 + 1e-13)),
                       evaluate(lifted, ROWS, p * (1 + 1e-13)),
                       evaluate(lifted, ROWS, p * (1 - 1e-13)),
                       rounded(e, ROWS, 1 + 1e-13), rounded(e, ROWS, 1 - 1e-13)):
            stable &= np.abs(nudged - want) <= 1e-10 * (1 + np.abs(want))
    assert close_where_finite(want[stable], got[stable]), (str(e), str(back))


def test_every_op_converts():
    for name, op in OPS.items():
        args = [x0, const(3.0)] if name == "powi" else [x0, x1][:op.arity]
        e = call(name, *args)
        assert close_where_finite(evaluate(e, ROWS), lambdified(e, ROWS)), name
        if not op.protected:
            assert close_where_finite(evaluate(e, ROWS), evaluate(from_sympy(to_sympy(e)), ROWS))


def test_from_sympy_conventions():
    a, b = sympy.symbols("x0 x_1")
    assert from_sympy(a + b) is call("add", x0, x1)
    assert from_sympy(sympy.Symbol("X1")) is x0
    assert from_sympy(sympy.Symbol("p3")) is param(3)
    assert from_sympy(a ** 2) is call("square", x0)
    assert from_sympy(a ** 3) is call("cube", x0)
    assert from_sympy(1 / a) is call("inv", x0)
    assert from_sympy(a ** -4) is call("powi", x0, const(-4.0))
    assert from_sympy(sympy.sqrt(a)) is call("sqrt", x0)
    assert from_sympy(a ** sympy.Float(2.5)) is call("pow", x0, const(2.5))
    assert from_sympy(-a) is call("neg", x0)
    assert from_sympy(sympy.Rational(1, 4) + sympy.pi) is \
        call("add", const(0.25), const(math.pi))
    assert from_sympy(sympy.Max(a, b, sympy.Symbol("x2"))).op == "max"
    t = sympy.Symbol("theta")
    assert from_sympy(sympy.sin(t), names=["theta"]) is call("sin", var(0, "theta"))
    assert to_sympy(call("mul", var(0, "m"), param(0))) == sympy.Symbol("m", real=True) * \
        sympy.Symbol("p0", real=True)


def test_from_sympy_rejects_what_it_cannot_express():
    a = sympy.Symbol("x0")
    with pytest.raises(UnknownOperatorError):
        from_sympy(sympy.gamma(a))
    with pytest.raises(UnknownOperatorError):
        from_sympy(to_sympy(call("pdiv", x0, x1)))     # Piecewise
    with pytest.raises(ParseError):
        from_sympy(sympy.Symbol("velocity"))
    with pytest.raises(UnknownOperatorError):
        from_sympy(a + sympy.I)
    with pytest.raises(symcore.SymcoreError):
        to_sympy(call("div", const(1.0), const(0.0)))


def test_deep_sympy_trees_convert():
    s = sympy.Symbol("x0")
    for _ in range(400):              # SymPy's own constructors recurse beyond this
        s = sympy.sin(s)
    e = from_sympy(s)
    assert e.depth == 401
    deep = x0
    for _ in range(3_000):
        deep = call("exp", deep)
    try:                                           # SymPy itself may recurse on such depth:
        assert to_sympy(deep).func is sympy.exp    # then a typed error, never RecursionError
    except symcore.SymcoreError as err:
        assert "too deep" in str(err)
    with pytest.raises(UnknownOperatorError):
        from_sympy(sympy.zoo * sympy.Symbol("x0"))


FORMULAS = Path(__file__).resolve().parents[2] / "fixtures" / "formulas" / "aifeynman_100.json"


@pytest.mark.skipif(not FORMULAS.is_file(), reason="shared data not present")
def test_ai_feynman_via_sympy_agrees_with_the_reader():
    rng = np.random.default_rng(12)
    for d in json.loads(FORMULAS.read_text()):
        X = np.column_stack([rng.uniform(v["low"], v["high"], 12) for v in d["variables"]])
        ours = read(d["sympy_positional"], "sympy")
        theirs = from_sympy(sympy.sympify(d["sympy_positional"]))
        assert np.allclose(evaluate(ours, X), evaluate(theirs, X), rtol=1e-10, equal_nan=True)


def test_literal_subterms_sympy_makes_complex_stay_nan():
    """SymPy folds acosh(0) to iπ/2 and asin(2) to a complex number; symcore computes over the
    reals, where both are NaN.  The bridge keeps NaN, so an enclosing protected op cannot turn
    the value into a wrong real number (plog(iπ/2) would be log(π/2) in SymPy, 0 in symcore)."""
    assert to_sympy(call("acosh", const(0.0))) is sympy.nan
    assert to_sympy(call("asin", const(2.0)) + x0) is sympy.nan
    assert to_sympy(call("sin", const(math.inf))) is sympy.nan      # SymPy: AccumBounds(-1, 1)
    e = call("atanh", call("powi", const(0.0), const(-1.0))) + x0
    assert close_where_finite(evaluate(e, ROWS), lambdified(e, ROWS))
    e = call("plog", call("acosh", const(0.0))) + x0
    try:
        s = to_sympy(e)
    except symcore.SymcoreError:
        return                                  # refusing is sound too
    assert close_where_finite(evaluate(e, ROWS), lambdified(e, ROWS))


def test_literals_beyond_float64_are_ieee_infinities():
    # SymPy keeps cosh(-874241.66) exact (~10^379670) and mpmath then runs sinh of it for
    # hours; IEEE (and symcore) make it inf, so the bridge does too, and finishes at once
    # (checked first: without the mapping it fails here rather than hanging below)
    assert to_sympy(call("neg", call("exp", const(800.0)))) == -sympy.oo
    e = call("atan", call("sinh", call("cosh", const(-874241.6605389551))))
    assert to_sympy(e) == sympy.pi / 2
    assert float(evaluate(e, ROWS)[0]) == math.pi / 2
    big = call("mul", call("exp", const(709.0)), x0)      # within range: kept as it is
    assert to_sympy(big).has(sympy.Float(math.exp(709.0)))
