"""Dialect records: a new frontend is one `Dialect` record, defined here and nowhere else, and
the reader and the printer both follow it (round trips, protected ops, detection, errors)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from strategies import exprs

import symcore
from symcore import DialectError, call, const, param, var
from symcore.io.dialects import DIALECTS, Dialect, register_dialect, unregister_dialect
from symcore.io.printers import write
from symcore.io.files import read_many
from symcore.io.readers import detect_dialect, read, read_with_params

# A made-up tool: 1-based V1..Vn, word operators `(a plus b)`, its own function names, `K` as a
# fittable placeholder, and two protected ops: its `ln` is gplearn's protected log and its
# `root` is sqrt|x| (so plain log and sqrt are not expressible there).
VTOOL = Dialect(
    "vtool", layout="words",
    ops={"add": ("plus",), "sub": ("minus",), "mul": ("times",), "div": ("over",),
         "neg": ("negate",), "sin": ("sine",), "exp": ("expo",), "sqrt": ("root",),
         "square": ("sq",), "pow": ("to",)},
    protected={"ln": "plog", "root": "sqrt_abs"},
    variables=((r"V(\d+)", 1),), var_format="V{}",
    constants=(("PI", math.pi),), placeholders=("K",), param_format="K",
    literal_powers=(("square", "to", 2.0),))

# The same tool's prefix traversal, comma separated, with `pdiv` spelled `sdiv`.
VTOOL_PREFIX = Dialect(
    "vtool_prefix", layout="prefix",
    ops={"add": ("plus",), "mul": ("times",), "pdiv": ("sdiv",), "cos": ("cosine",),
         "neg": ("negate",)},
    protected={"ln": "plog"},
    variables=((r"V(\d+)", 1),), var_format="V{}", detect=False)

V_UNARY = ("neg", "sin", "exp", "plog", "sqrt_abs", "square")
V_BINARY = ("add", "sub", "mul", "div")
P_UNARY = ("neg", "cos", "plog")
P_BINARY = ("add", "mul", "pdiv")


@pytest.fixture(autouse=True, scope="module")
def _registered():
    register_dialect(VTOOL)
    register_dialect(VTOOL_PREFIX)
    yield
    unregister_dialect("vtool")
    unregister_dialect("vtool_prefix")


@given(exprs(n_vars=4, unary=V_UNARY, binary=V_BINARY, powi=False))
def test_new_words_dialect_round_trips(e):
    text = write(e, "vtool")
    assert read(text, "vtool") is e, text


@given(exprs(n_vars=4, unary=P_UNARY, binary=P_BINARY, powi=False))
def test_new_prefix_dialect_round_trips(e):
    text = write(e, "vtool_prefix")
    assert read(text, "vtool_prefix") is e, text


def test_new_dialect_conventions():
    x0, x1 = var(0), var(1)
    e = call("add", call("plog", x0), call("mul", const(-2.5), call("sqrt_abs", x1)))
    assert write(e, "vtool") == "(ln(V1) plus ((-2.5) times root(V2)))"
    assert write(call("square", x0), "vtool") == "(V1) to 2"
    assert read("(V1) to 2", "vtool") is call("square", x0)
    assert read("(V1 to V2)", "vtool") is call("pow", x0, x1)
    assert read("sq(V1)", "vtool") is call("square", x0)
    with pytest.raises(DialectError, match="sqrt_abs"):
        write(e, "vtool_prefix")
    assert write(call("pdiv", x0, call("plog", x1)), "vtool_prefix") == "sdiv,V1,ln,V2"
    # protected spellings: `ln`/`root` are plog/sqrt_abs; plain log and sqrt cannot be written
    for plain in ("log", "sqrt"):
        with pytest.raises(DialectError, match=plain):
            write(call(plain, x0), "vtool")
    assert read("root(V1)", "vtool") is call("sqrt_abs", x0)
    # placeholders become parameters, named constants stay constants, numbering is 1-based
    got, vals = read_with_params("(K times PI) plus V3", "vtool")
    assert got is call("add", call("mul", param(0), const(math.pi)), var(2))
    assert write(call("mul", param(0), x0), "vtool") == "(K times V1)"
    with pytest.raises(symcore.ParseError, match="out of range"):
        read("V0", "vtool")
    # words of another dialect are unknown here
    with pytest.raises(symcore.SymcoreError):
        read("(V1 add V2)", "vtool")


def test_new_dialect_takes_part_in_detection():
    assert detect_dialect("(V1 plus sine(V2))") == "vtool"
    assert symcore.read("(V1 plus 2.0)") is call("add", var(0), const(2.0))
    pop = read_many(["(V1 times V2)", "expo(V3)"])
    assert pop.dialect == "vtool" and len(pop) == 2
    # detect=False keeps a dialect out of "auto"
    with pytest.raises(DialectError):
        detect_dialect("plus,V1,V2")
    assert read("plus,V1,V2", "vtool_prefix") is call("add", var(0), var(1))


def test_registry_lists_and_protects_dialects():
    assert DIALECTS["vtool"] is VTOOL and "symcore" in DIALECTS
    with pytest.raises(TypeError):
        DIALECTS["x"] = VTOOL                      # type: ignore[index]
    with pytest.raises(DialectError, match="built-in"):
        register_dialect(Dialect("gplearn"))
    with pytest.raises(DialectError):
        register_dialect("vtool")                  # type: ignore[arg-type]
    with pytest.raises(DialectError):
        Dialect("bad", variables=((r"V\d+", 1),))  # no index group
    with pytest.raises(DialectError):
        Dialect("bad", layout="postfix")           # type: ignore[arg-type]


def test_unknown_dialect_is_a_typed_error_listing_the_known_ones():
    with pytest.raises(DialectError) as err:
        read("x0", "nosuchtool")
    msg = str(err.value)
    assert "nosuchtool" in msg
    for name in ("symcore", "gplearn", "operon", "sympy", "bingo", "vtool"):
        assert name in msg
    with pytest.raises(DialectError) as err:
        write(var(0), "nosuchtool")
    assert "gplearn" in str(err.value) and "vtool" in str(err.value)
    with pytest.raises(DialectError, match="writable"):
        write(var(0), "bingo")                     # read-only
    with pytest.raises(DialectError):
        read_many(["x0"], "nosuchtool")


def test_user_dialect_is_gone_after_unregistering():
    tmp = Dialect("tmp_tool", ops={"add": ("+",)}, variables=((r"a(\d+)", 0),), var_format="a{}")
    register_dialect(tmp)
    assert read("a0 + a1", "tmp_tool") is call("add", var(0), var(1))
    unregister_dialect("tmp_tool")
    with pytest.raises(DialectError):
        read("a0 + a1", "tmp_tool")
    with pytest.raises(DialectError):
        unregister_dialect("symcore")


def test_spellings_the_reader_cannot_tokenize_are_refused():
    with pytest.raises(DialectError, match="identifier"):
        register_dialect(Dialect("bad_sym", ops={"add": ("<+>",)}))
    with pytest.raises(DialectError, match="identifier"):
        register_dialect(Dialect("bad_prefix", layout="prefix", ops={"add": ("+",)}))
    with pytest.raises(DialectError, match="literal power"):
        register_dialect(Dialect("bad_pow", ops={"pow": ("^",)},
                                 literal_powers=(("square", "^^", 2.0),)))
    assert "bad_sym" not in DIALECTS and "bad_pow" not in DIALECTS


def test_a_user_op_is_read_and_written_by_the_all_ops_dialects_only():
    import numpy as np
    from symcore.ops import Op, registered
    x0 = var(0)
    with registered(Op("softplus_t", arity=1, np=np.logaddexp.reduce)):
        e = call("softplus_t", x0)
        for d in ("symcore", "sympy"):
            assert write(e, d) == "softplus_t(x0)"
            assert read("softplus_t(x0)", d) is e
        with pytest.raises(DialectError, match="softplus_t"):
            write(e, "gplearn")
        with pytest.raises(symcore.SymcoreError):
            read("softplus_t(X0)", "gplearn")
    with pytest.raises(symcore.SymcoreError):            # gone with the op
        read("softplus_t(x0)", "sympy")


def test_detect_hint_keeps_a_dialect_out_of_auto_unless_the_text_matches():
    hinted = Dialect("hinted_tool", ops={"add": ("+",)}, variables=((r"q(\d+)", 0),),
                     var_format="q{}", detect_hint=r"^\(")
    register_dialect(hinted)
    try:
        assert detect_dialect("(q0 + q1)") == "hinted_tool"
        with pytest.raises(DialectError):
            detect_dialect("q0 + q1")                 # no dialect tried reads it
        assert read("q0 + q1", "hinted_tool") is call("add", var(0), var(1))
    finally:
        unregister_dialect("hinted_tool")
