"""Printers: write -> read round trips for every dialect, LaTeX, C and NumPy source."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from strategies import PLAIN_BINARY, PLAIN_UNARY, data, exprs, plain_exprs

import symcore
from symcore import DialectError, call, const, evaluate, param, var
from symcore.ir import map_leaves, topo
from symcore.ops import DIALECTS, OPS
from symcore.io.printers import to_c, to_latex, to_numpy_source, to_text, write
from symcore.io.readers import read

x0, x1, x2 = var(0), var(1), var(2)
OTHER = tuple(d for d in DIALECTS if d != "symcore")


def powi_as_pow(e: symcore.Expr) -> symcore.Expr:
    memo: dict = {}
    for n in topo([e]):
        if n.is_leaf:
            memo[n] = n
        else:
            memo[n] = call("pow" if n.op == "powi" else n.op, *(memo[a] for a in n.args))
    return memo[e]


@given(exprs(powi=False))
def test_write_read_is_identity_in_every_dialect(e):
    for d in DIALECTS:
        try:
            text = write(e, d)
        except DialectError:
            continue
        assert read(text, d) is e, (d, text)


@given(exprs(n_vars=3), data(n_vars=3, max_rows=12))
def test_write_read_evaluates_identically_in_every_dialect(e, X):
    want = evaluate(e, X)
    for d in DIALECTS:
        try:
            text = write(e, d)
        except DialectError:
            continue
        back = read(text, d)
        assert back is powi_as_pow(e) or back is e, (d, text)   # powi is written as a power
        assert np.array_equal(evaluate(back, X), want, equal_nan=True), (d, text)


@given(plain_exprs())
def test_plain_operators_are_expressible_in_every_infix_dialect(e):
    for d in ("operon", "eggp", "eggp_numpy", "pysr", "sympy", "e2e", "e2e_prefix", "dso",
              "nesymres"):
        assert read(write(e, d), d) is e


def test_each_dialect_expresses_the_ops_it_spells():
    for d in OTHER:
        for name, op in OPS.items():
            args = [x0, const(3.0)] if name == "powi" else [x0, x1][:op.arity]
            e = call(name, *args)
            if symcore.ops.printed_name(name, d) is None and name != "powi":
                with pytest.raises(DialectError):
                    write(e, d)
            else:
                back = read(write(e, d), d)
                assert back is e or back is powi_as_pow(e)


def test_protected_ops_keep_their_tools_spelling():
    e = call("add", call("pdiv", x0, x1), call("plog", call("sqrt_abs", call("pinv", x2))))
    assert write(e, "gplearn") == "add(div(X0, X1), log(sqrt(inv(X2))))"
    with pytest.raises(DialectError):
        write(call("log", x0), "gplearn")          # gplearn's log is protected
    assert write(call("dlog", call("sqrt_abs", x0)), "dysymnet") == "log(sqrt(x_1))"
    with pytest.raises(DialectError):
        write(call("pdiv", x0, x1), "operon")


def test_dialect_conventions_in_writing():
    e = call("add", call("mul", const(-2.5), x0), call("square", x1))
    assert write(e, "operon") == "(((-2.5) * X1) + square(X2))"
    assert write(e, "e2e") == "(((-2.5) mul x_0) add (x_1)**2)"
    assert write(e, "e2e_prefix") == "add,mul,-2.5,x_0,pow2,x_1"
    assert write(e, "dso") == "add,mul,-2.5,x1,n2,x2"
    assert write(e, "eggp") == "(((-2.5) * x0) + Square(x1))"
    assert write(e, "eggp_numpy") == "(((-2.5) * x[:, 0]) + np.square(x[:, 1]))"
    assert write(e, "sympy", names=["a", "b"]) == "(((-2.5) * a) + square(b))"
    assert write(e, "operon", var_base=0) == "(((-2.5) * X0) + square(X1))"
    assert write(e, "symcore", names=["mass"]) == "(-2.5) * x0:mass + square(x1)"
    assert read(write(e, "sympy", names=["a", "b"]), "sympy", names=["a", "b"]) is \
        map_leaves(e, lambda n: var(n.value, "ab"[n.value]) if n.op == "var" else n)


def test_parameters_and_placeholders():
    e = call("add", call("mul", param(0), x0), param(1))
    assert write(e, "eggp_numpy") == "((t[0] * x[:, 0]) + t[1])"
    assert read(write(e, "eggp_numpy"), "eggp_numpy") is e
    assert write(e, "sympy") == "((C * x0) + C)"
    assert read(write(e, "sympy"), "sympy") is e       # placeholders number by appearance
    assert read(write(e, "dso"), "dso") is e
    assert read(write(e, "nesymres"), "nesymres") is e
    for d in ("gplearn", "operon", "eggp", "pysr", "e2e", "e2e_prefix", "dysymnet"):
        with pytest.raises(DialectError):
            write(e, d)


def test_non_finite_constants_only_in_symcore():
    for v in (math.inf, -math.inf, math.nan):
        e = call("mul", const(v), x0)
        assert read(write(e, "symcore"), "symcore") is e
        for d in OTHER:
            with pytest.raises(DialectError):
                write(e, d)


def test_write_rejects_unknown_dialect():
    with pytest.raises(DialectError):
        write(x0, "fortran")
    with pytest.raises(DialectError):
        write(x0, "bingo")            # read-only


# ---------------------------------------------------------------------------------------------
# NumPy source, C, LaTeX

@given(exprs(n_vars=3, n_params=2), data(n_vars=3, max_rows=12),
       st.lists(st.floats(-3, 3), min_size=2, max_size=2))
def test_numpy_source_computes_what_evaluate_does(e, X, p):
    src = to_numpy_source(e)
    with np.errstate(all="ignore"):
        got = eval(src, {"np": np, "X": X, "p": np.array(p)})  # the printer's own output
    got = np.broadcast_to(np.asarray(got, dtype=np.float64), (X.shape[0],))
    assert np.array_equal(got, evaluate(e, X, p), equal_nan=True), src


def test_every_op_has_numpy_c_and_latex_forms():
    for name, op in OPS.items():
        args = [x0, const(3.0)] if name == "powi" else [x0, x1][:op.arity]
        e = call(name, *args)
        assert "X[:, 0]" in to_numpy_source(e)
        assert "x[0]" in to_c(e)
        tex = to_latex(e)
        assert "x_{0}" in tex and "{0}" not in tex.replace("x_{0}", "").replace("x_{1}", "")


def test_latex_examples():
    assert to_latex(call("div", x0, call("add", x1, const(1.0)))) == r"\frac{x_{0}}{x_{1} + 1.0}"
    assert to_latex(call("mul", call("add", x0, x1), x2)) == \
        r"\left(x_{0} + x_{1}\right) \cdot x_{2}"
    assert to_latex(call("sub", x0, call("sub", x1, x2))) == r"x_{0} - \left(x_{1} - x_{2}\right)"
    assert to_latex(call("pow", call("add", x0, x1), const(2.0))) == \
        r"{\left(x_{0} + x_{1}\right)}^{2.0}"
    assert to_latex(call("mul", const(1e-5), var(0, "theta"))) == r"1 \cdot 10^{-5} \mathrm{theta}"
    assert to_latex(x0, names=["m"]) == "m"


def test_c_examples():
    e = call("add", call("mul", const(-2.5), x0), call("pdiv", param(1), x1))
    assert to_c(e, x="in", p="theta") == \
        "(((-2.5) * in[0]) + (fabs(in[1]) > 0.001 ? theta[1] / in[1] : 1.0))"
    assert to_c(call("add", const(math.inf), const(math.nan))) == "(INFINITY + NAN)"


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler")
def test_c_source_compiles_and_matches_evaluate(tmp_path):
    import ctypes
    rng = np.random.default_rng(7)
    es = [call("add", call(u, x0), call(b, x1, x2)) for u in PLAIN_UNARY for b in PLAIN_BINARY]
    es += [call(n, x0, x1) if OPS[n].arity == 2 else call(n, x0) for n in OPS if n != "powi"]
    es.append(call("powi", x0, const(-3.0)))
    body = "\n".join(f"double f{i}(const double *x, const double *p) {{ return {to_c(e)}; }}"
                     for i, e in enumerate(es))
    src = tmp_path / "k.c"
    src.write_text("#include <math.h>\n" + body + "\n")
    so = tmp_path / "k.so"
    subprocess.run(["cc", "-O0", "-std=c99", "-shared", "-fPIC", str(src), "-o", str(so), "-lm"],
                   check=True)
    lib = ctypes.CDLL(str(so))
    X = np.column_stack([rng.uniform(-2, 2, 12), rng.uniform(-2, 2, 12), rng.uniform(0.1, 2, 12)])
    X[0] = [0.0005, -0.0002, 1.0]
    dp = ctypes.POINTER(ctypes.c_double)
    for i, e in enumerate(es):
        f = getattr(lib, f"f{i}")
        f.restype = ctypes.c_double
        f.argtypes = [dp, dp]
        got = np.array([f(np.ascontiguousarray(r).ctypes.data_as(dp), None) for r in X])
        want = evaluate(e, X)
        assert np.allclose(got, want, rtol=1e-12, atol=0, equal_nan=True), to_c(e)


def test_deep_expressions_print():
    e = x0
    for i in range(10_000):
        e = call("sin" if i % 2 else "neg", e)
    assert read(to_text(e), "symcore") is e
    for d in ("gplearn", "sympy", "e2e_prefix"):
        assert read(write(e, d), d) is e
    assert to_c(e).count("sin(") == 5_000
    assert to_numpy_source(e).count("np.sin(") == 5_000
    assert to_latex(e).count(r"\sin") == 5_000


def test_to_json_round_trips_through_read_file(tmp_path):
    import json

    from symcore.io.printers import to_json
    from symcore.io.files import read_file
    es = [call("add", x0, const(-0.0)), call("pow", x1, param(0))]
    text = to_json(es, params=[None, [math.inf]])
    assert json.loads(text)[1] == {"expr": "x1^p0", "params": [None]}
    (tmp_path / "p.json").write_text(text)
    pop = read_file(tmp_path / "p.json")
    assert list(pop) == es and np.isnan(pop.params[1]).all()
    with pytest.raises(symcore.ExportError):
        to_json(["x0"])  # type: ignore[list-item]
    with pytest.raises(symcore.ExportError):
        to_json(es, params=[[1.0]])
