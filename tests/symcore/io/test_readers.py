"""Readers: symcore's own text, every frontend dialect, real files, options, errors, depth."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from strategies import any_consts, exprs

import symcore
from symcore import (ArityError, DataError, DialectError, ParseError, SymcoreError,
                     UnknownOperatorError, call, const, evaluate, param, var)
from symcore.ir import topo
from symcore.io.files import Population, read_file, read_many
from symcore.io.readers import READ_DIALECTS, detect_dialect, read, read_with_params

_FIXTURES = Path(__file__).resolve().parents[2] / "fixtures"   # copies of ../shared/data
FRONTENDS = next((p for p in (_FIXTURES / "frontends", Path("/work/shared/data/frontends"))
                  if p.is_dir()), _FIXTURES / "frontends")
FORMULAS = next((p for p in (_FIXTURES / "formulas", Path("/work/shared/data/formulas"))
                 if p.is_dir()), _FIXTURES / "formulas")
needs_frontends = pytest.mark.skipif(not FRONTENDS.is_dir(), reason="shared data not present")
needs_formulas = pytest.mark.skipif(not FORMULAS.is_dir(), reason="shared data not present")

x0, x1, x2 = var(0), var(1), var(2)


def same_values(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(a, b, equal_nan=True))


def ops_of(e: symcore.Expr) -> set[str]:
    return {n.op for n in topo([e])}


# ---------------------------------------------------------------------------------------------
# symcore's own text

@given(exprs(constants=any_consts))
def test_symcore_text_reads_back_to_the_identical_node(e):
    assert read(str(e), dialect="symcore") is e


@given(exprs(n_params=3, names=("mass", "t", "v")))
def test_symcore_text_with_names_and_params_reads_back(e):
    assert read(str(e), dialect="symcore") is e


@pytest.mark.parametrize("v", [0.0, -0.0, math.inf, -math.inf, math.nan, 1e-300, -1e300, 5e-324,
                               1.7976931348623157e308, -2.5])
def test_symcore_special_constants(v):
    for e in (const(v), call("neg", const(v)), call("mul", const(v), x0),
              call("pow", x0, const(v)), call("neg", call("neg", const(v)))):
        got = read(str(e), "symcore")
        assert got is e, (str(e), str(got))
    assert math.copysign(1.0, read("(-0.0)", "symcore").value) == -1.0


def test_symcore_every_op_of_the_table_reads():
    for name, op in symcore.OPS.items():
        args = [x0, const(3.0)] if name == "powi" else [x0, x1][:op.arity]
        e = call(name, *args)
        assert read(str(e), "symcore") is e
        assert read(f"{name}({', '.join(map(str, args))})", "symcore") is e


def test_symcore_conventions():
    assert read("x0:mass * p2", "symcore") is call("mul", var(0, "mass"), param(2))
    assert read("(-2.5)", "symcore") is const(-2.5)
    assert read("neg(2.5)", "symcore") is call("neg", const(2.5))
    assert read("-x0^2.0", "symcore") is call("neg", call("pow", x0, const(2.0)))
    assert read("x0 - x1 - x2", "symcore") is call("sub", call("sub", x0, x1), x2)
    assert read("x0^x1^x2", "symcore") is call("pow", x0, call("pow", x1, x2))
    assert read("x0 - x0", "symcore") is call("sub", x0, x0)   # no simplification on read


# ---------------------------------------------------------------------------------------------
# The examples of FORMATS.md, one per tool

FORMATS_EXAMPLES = [
    ("gplearn", "mul(mul(X0, div(X1, X2)), inv(inv(inv(X2))))"),
    ("operon", "((5.941703 * X1) / (((-1.413045) * X3) ^ 2))"),
    ("eggp", "(x0 * (2.9134167720133894 * (x2 ^ -1.9325764692656369)))"),
    ("eggp_numpy", "(x[:, 0] * (t[0] * x[:, 2] ** t[1]))"),
    ("sympy", "(sin((X1)-(C)))-(((((sin(X3))**2)-(((C)+(X2))*((X2)/(X3))))*(X3))/(sin(X2)))"),
    ("dysymnet", "-0.0238078882714232*x_1**2 + 0.325935*cos(0.162251605550402*x_1**2 + "
                 "0.50177*sin(0.527160941550089*x_1**2))"),
    ("pysr", "(x0 + 1.4724599)"),
    ("e2e", "(5.271648193232864e-07 add ((-1.240136440688671e-07 mul x_1) add "
            "((0.15915489740325098 mul (x_1 mul x_0)) sub (-1.6246101673634498e-07 mul x_0))))"),
    ("e2e_prefix", "mul,add,0.018028194776216335,mul,0.006944899620054441,x_1,x_0"),
    ("dso", "add,x1,sin,x1"),
    ("nesymres", "-x_1 + log(x_1 + x_2**4)"),
    ("bingo", "(55844.23526117547 - ((-732.121576878678)(X_1) - (X_1 + X_1)))"),
]


@pytest.mark.parametrize("dialect,text", FORMATS_EXAMPLES)
def test_formats_examples_read(dialect, text):
    e = read(text, dialect)
    assert isinstance(e, symcore.Expr)


def test_formats_examples_values():
    X = np.array([[0.7, 1.3, -0.4], [2.0, -0.3, 1.7]])
    a, b, c = X[:, 0], X[:, 1], X[:, 2]
    got = evaluate(read("((5.941703 * X1) / (((-1.413045) * X3) ^ 2))", "operon"), X)
    assert np.allclose(got, (5.941703 * a) / ((-1.413045 * c) ** 2), rtol=1e-14)
    got = evaluate(read("(x0 * (2.9134167720133894 * (x2 ^ -1.9325764692656369)))", "eggp"),
                   np.abs(X))
    assert np.allclose(got, np.abs(a) * (2.9134167720133894 * np.abs(c) ** -1.9325764692656369))
    e = read("(55844.2 - ((-732.1)(X_1) - (X_1 + X_0)))", "bingo")
    assert np.allclose(evaluate(e, X), 55844.2 - (-732.1 * b - (b + a)))
    assert ops_of(read("add,x1,sin,x1", "dso")) == {"add", "sin", "var"}


# ---------------------------------------------------------------------------------------------
# Dialect conventions and protected semantics

def test_gplearn_protected_semantics():
    e = read("add(div(X0, X1), add(log(X2), add(sqrt(X0), inv(X1))))", "gplearn")
    assert ops_of(e) == {"add", "pdiv", "plog", "sqrt_abs", "pinv", "var"}
    X = np.array([[-4.0, 0.0005, 0.0], [9.0, 2.0, -1.0]])
    want = np.array([1.0 + 0.0 + 2.0 + 0.0, 4.5 + 0.0 + 3.0 + 0.5])
    assert np.allclose(evaluate(e, X), want)
    assert read("add(X0, -0.500)", "gplearn") is call("add", x0, const(-0.5))
    with pytest.raises(ParseError):
        read("X0 + X1", "gplearn")        # gplearn has no infix operators


def test_dysymnet_protected_semantics():
    e = read("log(x_1) + sqrt(x_2)", "dysymnet")
    assert ops_of(e) == {"add", "dlog", "sqrt_abs", "var"}
    X = np.array([[0.0, -4.0]])
    assert np.allclose(evaluate(e, X), [math.log(1e-6) + 2.0])


def test_variable_conventions():
    assert read("X1", "operon") is x0
    assert read("X1", "gplearn") is x1
    assert read("x_1", "dysymnet") is x0
    assert read("x_1", "e2e") is x1
    assert read("x1", "dso") is x0
    assert read("X1 + x0 + x_0", "sympy") is call("add", call("add", x0, x0), x0)
    assert read("x_1", "nesymres") is x0
    assert read("X_0", "bingo") is x0
    assert read("X2", "operon", var_base=0) is x2
    assert read("theta * sigma", "sympy", names=["sigma", "theta"]) is \
        call("mul", var(1, "theta"), var(0, "sigma"))
    assert read("f0 + 1", "pysr", names={"f0": 2}) is call("add", var(2, "f0"), const(1.0))
    with pytest.raises(ParseError, match="out of range"):
        read("X0", "operon")


def test_named_constants():
    assert read("pi", "sympy") is const(math.pi)
    assert read("2*E", "sympy") is call("mul", const(2.0), const(math.e))
    assert read("E", "sympy", names=["E"]) is var(0, "E")   # names win over constants


def test_precedence_follows_python_and_julia():
    assert read("-2**2", "sympy") is call("neg", call("pow", const(2.0), const(2.0)))
    assert read("-2*x0", "sympy") is call("mul", const(-2.0), x0)
    assert read("2**-x0**2", "sympy") is call("pow", const(2.0),
                                              call("neg", call("pow", x0, const(2.0))))
    assert read("x0/x1*x2", "sympy") is call("mul", call("div", x0, x1), x2)
    assert read("x0 ^ -1.5", "eggp") is call("pow", x0, const(-1.5))
    assert read("x0 + -0.5", "pysr") is call("add", x0, const(-0.5))
    assert read("+x0", "sympy") is x0
    e = read("t[3] * x[:, 0] ** x[:, 1] ** t[4]", "eggp_numpy")
    assert e is call("mul", param(3), call("pow", x0, call("pow", x1, param(4))))


def test_e2e_words_and_powers():
    e = read("((x_0)**2 add (x_1)**3)", "e2e")
    assert e is call("add", call("square", x0), call("cube", x1))
    assert read("(x_0 pow 2.0)", "e2e") is call("pow", x0, const(2.0))
    assert read("(x_0)**2.5", "e2e") is call("pow", x0, const(2.5))
    assert read("arctan(inv(x_0))", "e2e") is call("atan", call("inv", x0))


def test_e2e_prefix_encodings():
    assert read("mul,+,N3142,E-3,x_0", "e2e_prefix") is call("mul", const(3.142), x0)
    assert read("mul - N31 N42 E-3 x_0", "e2e_prefix") is call("mul", const(-3.142), x0)
    assert read("add,INT-,1,2,x_0", "e2e_prefix") is call("add", const(-12.0), x0)
    assert read("pow2,x_1", "e2e_prefix") is call("square", x1)
    with pytest.raises(ParseError):
        read("mul,+,N31,x_0", "e2e_prefix")


def test_token_lists_as_python_lists():
    assert read("['mul', 'c', 'add', 'x_1', 'pow', 'x_2', '2']", "nesymres") is \
        call("mul", param(0), call("add", x0, call("pow", x1, const(2.0))))
    assert read('["add", "x1", "sin", "x1"]', "dso") is call("add", x0, call("sin", x0))
    assert read("['mul', '+', 'N3142', 'E-3', 'x_0']", "e2e_prefix") is \
        call("mul", const(3142 * 10 ** -3), x0)
    with pytest.raises(ParseError):
        read("['mul', 'x_0'", "e2e_prefix")


def test_pysr_julia_float32_literals():
    assert read("(x0 * 1.5f0) + -2.0f-5", "pysr") is \
        call("add", call("mul", x0, const(1.5)), const(float(np.float32(-2e-5))))
    with pytest.raises(ParseError, match="float32"):
        read("3.0f99", "pysr")
    with pytest.raises(ParseError):
        read("1.5f0", "eggp")


def test_placeholders_become_parameters():
    e, v = read_with_params("C*sin(X1) + C", "sympy")
    assert e is call("add", call("mul", param(0), call("sin", x0)), param(1))
    assert v.shape == (2,) and np.isnan(v).all()
    e, v = read_with_params("C*sin(X1) + C", "sympy", theta=[1.5, 2.5])
    assert list(v) == [1.5, 2.5]
    e, v = read_with_params("2.0*C + C", "sympy", theta=[1.5, 2.5], numbers="params")
    assert e is call("add", call("mul", param(0), param(1)), param(2))
    assert list(v) == [2.0, 1.5, 2.5]      # theta fills the placeholders in order
    assert read("mul,const,n2,x1", "dso") is call("mul", param(0), call("square", x0))
    assert read("c*x_1 + c", "nesymres") is call("add", call("mul", param(0), x0), param(1))
    assert read("mul,c,add,x_1,pow,x_2,2", "nesymres") is \
        call("mul", param(0), call("add", x0, call("pow", x1, const(2.0))))
    with pytest.raises(ParseError, match="placeholder"):
        read("C*X1", "sympy", placeholders=False)


def test_numbers_as_params():
    e, v = read_with_params("2.5*x0 + -1.5 - x0^2.0", "eggp", numbers="params")
    assert e is call("sub", call("add", call("mul", param(0), x0), param(1)),
                     call("pow", x0, param(2)))
    assert list(v) == [2.5, -1.5, 2.0]
    e, v = read_with_params("powi(x0, 3.0) * 1.5 + p0", "symcore", numbers="params")
    assert e is call("add", call("mul", call("powi", x0, const(3.0)), param(1)), param(0))
    assert v[1] == 1.5 and np.isnan(v[0])
    e, v = read_with_params("2*pi*x0", "sympy", numbers="params")
    assert e is call("mul", call("mul", param(0), const(math.pi)), x0) and list(v) == [2.0]
    e, v = read_with_params("x0 + inf", "symcore", numbers="params")
    assert e is call("add", x0, const(math.inf)) and len(v) == 0
    e, v = read_with_params("((x_0)**2 mul 3.0)", "e2e", numbers="params")
    assert e is call("mul", call("square", x0), param(0)) and list(v) == [3.0]
    X = np.random.default_rng(1).normal(size=(20, 3))
    for d, text in FORMATS_EXAMPLES:
        if d in ("eggp_numpy", "sympy", "nesymres", "dso"):
            continue
        e1 = read(text, d)
        e2, v2 = read_with_params(text, d, numbers="params")
        assert same_values(evaluate(e1, X), evaluate(e2, X, v2))


def test_eggp_numpy_theta():
    text = "(x[:, 0] * (t[0] * x[:, 2] ** t[1]))"
    e = read(text, "eggp_numpy", theta="1.5;-2.0")
    assert e is call("mul", x0, call("mul", const(1.5), call("pow", x2, const(-2.0))))
    e, v = read_with_params(text, "eggp_numpy", theta="1.5;-2.0", numbers="params")
    assert e is call("mul", x0, call("mul", param(0), call("pow", x2, param(1))))
    assert list(v) == [1.5, -2.0]
    e, v = read_with_params(text, "eggp_numpy")
    assert np.isnan(v).all() and len(v) == 2
    with pytest.raises(ParseError, match="theta"):
        read(text, "eggp_numpy", theta=[1.0])
    # the reader's result evaluates exactly as eggp's own Numpy column does in Python
    X = np.abs(np.random.default_rng(0).normal(size=(30, 3))) + 0.1
    theta = np.array([0.37, -1.25, 2.5])
    numpy_text = "(np.exp(x[:, 1] * t[2]) + (np.sqrt(x[:, 0]) ** t[0] - x[:, 2] / t[1]))"
    want = eval(numpy_text, {"np": np, "x": X, "t": theta})  # test oracle only
    got = evaluate(read(numpy_text, "eggp_numpy", theta=theta), X)
    assert np.array_equal(got, want)


# ---------------------------------------------------------------------------------------------
# Real files

FRONTEND_FILES = {
    "reggression_test_equations.bingo": "bingo",
    "reggression_test_equations.operon": "operon",
    "reggression_test_equations.pysr": "pysr",
    "snip_blackbox.predicted_tree.txt": "e2e",
    "snip_feynman.predicted_tree.txt": "e2e",
    "snip_strogatz.predicted_tree.txt": "e2e",
    "tpsr_e2e_feynman_eval.predicted_tree.txt": "e2e",
    "tpsr_e2e_feynman_eval.predicted_tree_prefix.txt": "e2e_prefix",
    "tpsr_srbench_feynman.predicted_tree.txt": "e2e",
}


@needs_frontends
def test_every_frontend_file_is_covered():
    files = {p.name for p in FRONTENDS.iterdir()}
    tsv = {f for f in files if f.endswith(".tsv")}
    assert files - tsv == set(FRONTEND_FILES)


@needs_frontends
@pytest.mark.parametrize("name,dialect", sorted(FRONTEND_FILES.items()))
def test_real_frontend_files_read_every_line(name, dialect):
    path = FRONTENDS / name
    n_lines = sum(1 for ln in path.read_text().splitlines() if ln.strip())
    pop = read_file(path)                  # auto: suffix, or detection over the first lines
    assert pop.dialect == dialect
    assert not pop.errors and len(pop) == n_lines
    X = np.random.default_rng(2).uniform(0.5, 2.0, size=(8, 10))
    for e in pop:
        evaluate(e, X)


@needs_frontends
@pytest.mark.parametrize("name", ["snip_blackbox", "snip_feynman", "snip_strogatz",
                                  "tpsr_e2e_feynman_eval", "tpsr_srbench_feynman"])
def test_problem_formula_pairs_match_the_tree_files(name):
    with open(FRONTENDS / f"{name}.problem_formula_pairs.tsv", newline="") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    pop = read_many([r["predicted_tree"] for r in rows], "e2e")
    trees = read_file(FRONTENDS / f"{name}.predicted_tree.txt", "e2e")
    assert len(pop) == len(rows) and all(a is b for a, b in zip(pop, trees))


@needs_frontends
def test_tpsr_prefix_and_infix_files_hold_the_same_models():
    infix = read_file(FRONTENDS / "tpsr_e2e_feynman_eval.predicted_tree.txt", "e2e")
    prefix = read_file(FRONTENDS / "tpsr_e2e_feynman_eval.predicted_tree_prefix.txt",
                       "e2e_prefix")
    assert len(infix) == len(prefix) == 20
    X = np.random.default_rng(3).uniform(1.0, 5.0, size=(64, 10))
    for a, b in zip(infix, prefix):
        assert same_values(evaluate(a, X), evaluate(b, X))
        assert a is b


@needs_formulas
def test_ai_feynman_formulas_read_and_agree():
    rng = np.random.default_rng(4)
    for d in json.loads((FORMULAS / "aifeynman_100.json").read_text()):
        names = [v["name"] for v in d["variables"]]
        X = np.column_stack([rng.uniform(v["low"], v["high"], 16) for v in d["variables"]])
        raw = read(d["formula"], "sympy", names=names)
        named = read(d["sympy_named"], "sympy", names=names)
        positional = read(d["sympy_positional"], "sympy")
        a, b, c = evaluate(raw, X), evaluate(named, X), evaluate(positional, X)
        assert np.allclose(a, b, rtol=1e-9, equal_nan=True), d["name"]
        assert np.allclose(b, c, rtol=1e-9, equal_nan=True), d["name"]


@needs_formulas
def test_srsd_formulas_read():
    import sympy
    rng = np.random.default_rng(5)
    for d in json.loads((FORMULAS / "srsd_feynman_120.json").read_text()):
        e = read(d["sympy"], "sympy")
        X = rng.uniform(1.0, 3.0, size=(16, max(1, d["num_vars"])))
        syms = sympy.symbols([f"x{i}" for i in range(X.shape[1])])
        f = sympy.lambdify(syms, sympy.sympify(d["sympy"]), "numpy")
        with np.errstate(all="ignore"):
            want = np.broadcast_to(np.asarray(f(*X.T), dtype=float), (16,))
        assert np.allclose(evaluate(e, X), want, rtol=1e-9, equal_nan=True), d["eq_name"]
        names = [v["name"] for v in sorted(d["variables"], key=lambda v: int(v["var"][1:]))]
        try:
            read(d["raw"], "sympy", names=names)
        except ParseError as err:     # raw texts name physical constants that are not inputs
            assert "unknown name" in str(err)


# ---------------------------------------------------------------------------------------------
# Errors

BAD = [
    ("", "symcore", ParseError),
    ("   ", "sympy", ParseError),
    ("(x0 + x1", "symcore", ParseError),
    ("x0 + x1)", "symcore", ParseError),
    ("x0 +", "symcore", ParseError),
    ("x0 x1", "symcore", ParseError),
    ("x0 + * x1", "symcore", ParseError),
    ("foo(x0)", "symcore", UnknownOperatorError),
    ("sin(x0, x1)", "symcore", ArityError),
    ("add(X0)", "gplearn", ArityError),
    ("sin()", "sympy", ArityError),
    ("nan", "sympy", ParseError),
    ("inf * x0", "pysr", ParseError),
    ("1e999 * x0", "symcore", ParseError),
    ("x0 $ x1", "symcore", ParseError),
    ("y0 + 1", "symcore", ParseError),
    ("x_0", "dysymnet", ParseError),
    ("add,x1", "dso", ArityError),
    ("add,x1,x1,x1", "dso", ParseError),
    ("x0 ^ 2", "sympy", ParseError),
    ("powi(x0, 2.5)", "symcore", ParseError),
    ("powi(x0, x1)", "symcore", ParseError),
    ("x0 +", "nope", DialectError),
    ("sin x0", "symcore", ParseError),
    ("x[:, 0]", "eggp", ParseError),
    ("x[0]", "eggp_numpy", ParseError),
    ("2x0", "symcore", ParseError),
    ("(x_0 add)", "e2e", ParseError),
    ("add", "e2e", ParseError),
    ("x0,", "symcore", ParseError),
    ("(,)", "symcore", ParseError),
    ("p99999999999", "symcore", ParseError),
    ("INT+ " + " ".join(["9"] * 400), "e2e_prefix", ParseError),
    ("x" + "9" * 5000, "symcore", ParseError),
    ("p" + "9" * 5000, "symcore", ParseError),
    ("x_" + "9" * 5000, "e2e_prefix", ParseError),
    ("+ N1 E" + "9" * 5000, "e2e_prefix", ParseError),
    ("t[99999999999]", "eggp_numpy", ParseError),
]


@pytest.mark.parametrize("text,dialect,err", BAD)
def test_bad_input_raises_a_typed_error(text, dialect, err):
    with pytest.raises(err):
        read(text, dialect)


def test_parse_errors_name_the_position():
    with pytest.raises(ParseError) as ei:
        read("x0 + (x1 * ", "symcore")
    assert ei.value.pos is not None
    with pytest.raises(ParseError) as ei:
        read("x0 + x1)", "symcore")
    assert ei.value.pos == 7 and "position 7" in str(ei.value)
    with pytest.raises(ParseError) as ei:
        read("x0 * 1e999", "symcore")
    assert ei.value.pos == 5 and "overflow" in str(ei.value)


def test_non_string_input():
    with pytest.raises(ParseError):
        read(None, "symcore")  # type: ignore[arg-type]
    with pytest.raises(DataError):
        read("x0", "symcore", numbers="bogus")


# ---------------------------------------------------------------------------------------------
# Depth

DEPTH = 10_000


def test_deep_nesting_reads_without_recursion():
    e = read("sin(" * DEPTH + "X0" + ")" * DEPTH, "gplearn")
    assert e.depth == DEPTH + 1
    e = read("(" * DEPTH + "x0" + ")" * DEPTH, "sympy")
    assert e is x0
    e = read("-" * DEPTH + "x0", "symcore")
    assert e.depth == DEPTH + 1
    e = read("x0^" * DEPTH + "x1", "symcore")
    assert e.depth == DEPTH + 1
    e = read("add,x1," * DEPTH + "x1", "dso")
    assert e.depth == DEPTH + 1
    e = read("(x_0 add " * DEPTH + "x_1" + ")" * DEPTH, "e2e")
    assert e.depth == DEPTH + 1
    deep = read("neg(" * DEPTH + "x0" + ")" * DEPTH, "symcore")
    assert read(str(deep), "symcore") is deep


def test_deep_unbalanced_is_a_parse_error():
    with pytest.raises(ParseError):
        read("(" * DEPTH + "x0", "symcore")
    with pytest.raises(ArityError):
        read("sin," * DEPTH, "dso")


# ---------------------------------------------------------------------------------------------
# read_many, read_file, detection

def test_read_many_skips_blanks_and_comments():
    lines = ["# header", "", "mul(X0, X1)", "   ", "add(X0, 1.0)", "# end"]
    pop = read_many(lines, "gplearn")
    assert isinstance(pop, Population) and len(pop) == 2
    assert pop.line_numbers == [3, 5]
    assert pop[0] is call("mul", x0, x1) and list(pop)[1] is call("add", x0, const(1.0))
    assert read_many("mul(X0, X1)\nsin(X1)\n", "gplearn").line_numbers == [1, 2]


def test_read_many_collects_or_raises():
    lines = ["mul(X0, X1)", "mul(X0,", "foo(X0)", "sin(X1)"]
    pop = read_many(lines, "gplearn", on_error="collect")
    assert len(pop) == 2 and pop.line_numbers == [1, 4]
    assert [ln for ln, _ in pop.errors] == [2, 3]
    assert isinstance(pop.errors[0][1], ParseError)
    assert isinstance(pop.errors[1][1], UnknownOperatorError)
    with pytest.raises(ParseError, match="line 2"):
        read_many(lines, "gplearn")
    with pytest.raises(DataError):
        read_many(lines, "gplearn", on_error="ignore")


def test_read_many_auto_detects_once():
    pop = read_many(["mul(X0, X1)", "add(X0, X1)"])
    assert pop.dialect == "gplearn" and len(pop) == 2


def test_read_file_formats(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        read_file(tmp_path / "missing.txt")
    p = tmp_path / "pop.txt"
    p.write_text("# gplearn\nmul(X0, X1)\n\nsin(X0)\nbad(\n")
    pop = read_file(p, "gplearn")
    assert len(pop) == 2 and pop.line_numbers == [2, 4] and pop.errors[0][0] == 5

    hof = tmp_path / "hall_of_fame.csv"
    hof.write_text('Complexity,Loss,Equation\n1,0.5,"x0"\n3,0.12717344,"(x0 + 1.4724599)"\n'
                   '5,0.01,"sin(x1) * -0.5"\n')
    pop = read_file(hof)
    assert pop.dialect == "pysr" and len(pop) == 3 and pop.line_numbers == [2, 3, 4]
    assert pop[1] is call("add", x0, const(1.4724599))

    old = tmp_path / "hall_of_fame.csv.bkup"
    old.write_text("Complexity|MSE|Equation\n1|0.5|x0\n3|0.1|(x0 * 2.5)\n")
    pop = read_file(old)
    assert pop.dialect == "pysr" and pop[1] is call("mul", x0, const(2.5))

    res = tmp_path / "results.csv"
    with open(res, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "Expression", "Numpy", "theta", "size"])
        w.writerow([0, "(x0 * 2.5)", "(x[:, 0] * t[0])", "2.5", 3])
        w.writerow([1, "Exp((x1 + -1.0))", "np.exp((x[:, 1] + t[0]))", "-1.0", 4])
    a = read_file(res)
    b = read_file(res, "eggp_numpy")
    assert a.dialect == "eggp" and b.dialect == "eggp_numpy"
    assert all(x is y for x, y in zip(a, b)) and len(a) == 2
    bp = read_file(res, "eggp_numpy", numbers="params")
    assert bp[0] is call("mul", x0, param(0)) and list(bp.params[0]) == [2.5]

    regg = tmp_path / "eqs.operon"
    regg.write_text("((-0.5) * X1),,1.0\n(X2 + 1.0),,0.5\n")
    pop = read_file(regg)
    assert pop.dialect == "operon" and pop[0] is call("mul", const(-0.5), x0)

    js = tmp_path / "pop.json"
    js.write_text(json.dumps(["x0 + p0", {"expr": "sin(x1) * p0", "params": [2.0]}]))
    pop = read_file(js)
    assert pop[0] is call("add", x0, param(0)) and list(pop.params[1]) == [2.0]
    from symcore.io.printers import to_json
    es = [call("mul", param(0), x0), call("sin", param(1))]
    (tmp_path / "ours.json").write_text(to_json(es, params=[[2.0], [np.nan, 0.5]]))
    pop = read_file(tmp_path / "ours.json")
    assert list(pop) == es and list(pop.params[0]) == [2.0]
    assert np.isnan(pop.params[1][0]) and pop.params[1][1] == 0.5
    (tmp_path / "plain.json").write_text(to_json(es))
    assert list(read_file(tmp_path / "plain.json")) == es
    lists = tmp_path / "dso.txt"
    lists.write_text('["add", "x1", "sin", "x1"]\n')
    assert read_file(lists, "dso")[0] is call("add", x0, call("sin", x0))

    tsv = tmp_path / "pairs.tsv"
    tsv.write_text("problem\tformula\tpredicted_tree\np1\t???\t(x_0 add (2.0 mul x_1))\n")
    pop = read_file(tsv)
    assert pop.dialect == "e2e" and pop[0] is call("add", x0, call("mul", const(2.0), x1))

    (tmp_path / "bad.json").write_text("[1, 2")
    with pytest.raises(DataError):
        read_file(tmp_path / "bad.json")


def test_detect_dialect():
    assert detect_dialect("mul(X0, sin(X1))") == "gplearn"
    assert detect_dialect("((5.941703 * X1) / (((-1.413045) * X3) ^ 2))") == "operon"
    assert detect_dialect("(x[:, 0] * t[0])") == "eggp_numpy"
    assert detect_dialect("(x_0 add (1.5 mul x_1))") == "e2e"
    assert detect_dialect("add,x1,sin,x1") == "dso"
    assert detect_dialect("mul,0.5,x_0") == "e2e_prefix"
    assert detect_dialect("(sin((X1)-(C)))") == "sympy"
    assert detect_dialect("x0 + 1.5") == "symcore"     # symcore, eggp, pysr, sympy all agree
    assert read("mul(X0, X1)") is call("mul", x0, x1)
    with pytest.raises(DialectError, match="ambiguous"):
        detect_dialect("log(x_1)")                    # dysymnet dlog vs nesymres log
    with pytest.raises(DialectError):
        detect_dialect("$$$")
    with pytest.raises(DialectError):
        detect_dialect("")


def test_read_dialects_cover_the_ops_table():
    assert set(symcore.ops.DIALECTS) <= set(READ_DIALECTS)
    for d in READ_DIALECTS:
        with pytest.raises(SymcoreError):
            read("", d)


def test_facade_exposes_the_readers_and_printers():
    import symcore.io.printers as printers
    import symcore.io.files as files
    import symcore.io.readers as readers
    import symcore.io.sympy_bridge as bridge
    for name in ("read", "detect_dialect"):
        assert getattr(symcore, name) is getattr(readers, name)
    for name in ("read_many", "read_file"):
        assert getattr(symcore, name) is getattr(files, name)
    for name in ("write", "to_latex", "to_c", "to_numpy_source"):
        assert getattr(symcore, name) is getattr(printers, name)
    for name in ("to_sympy", "from_sympy"):
        assert getattr(symcore, name) is getattr(bridge, name)
