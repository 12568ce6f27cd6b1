"""Fuzzing the readers: random text and random token lists only ever raise symcore errors."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st
from strategies import exprs

import symcore
from symcore import SymcoreError
from symcore.ops import DIALECTS, OPS
from symcore.io.printers import write
from symcore.io.files import read_many
from symcore.io.readers import READ_DIALECTS, detect_dialect, read, read_with_params

SPELLINGS = sorted({s for op in OPS.values() for names in op.spell.values() for s in names})
VOCAB = SPELLINGS + [
    "(", ")", ",", "[", "]", ":", "-", "+", "*", "/", "^", "**", " ", "x0", "X1", "x_1", "X_0",
    "x", "t", "p0", "C", "c", "const", "pi", "E", "np.sin", "nan", "inf", "1e999", "1e-999",
    "0", "2.5", "-3", ".5", "1.", "N314", "E-3", "INT+", "INT-", "7", "x0:mass", "x[:, 0]",
    "t[0]", "t[9]", "p123456789012", "t[123456789012]", "x" + "9" * 5000, "INT+ " + "9 " * 500,
    "1.5f0", "['mul', 'x_0']", "neg(2.5)", "(-2.5)", "\t", "\n", "\x00", "é", "$", "#",
]
TEXT_ALPHABET = st.characters(codec="utf-8", exclude_categories=("Cs",))


def only_symcore_errors(text: str) -> None:
    for d in READ_DIALECTS:
        for fn, opts in ((read, {}), (read_with_params, {"numbers": "params"}),
                         (read, {"theta": [1.0, 2.0], "var_base": 0})):
            try:
                fn(text, d, **opts)
            except SymcoreError:
                pass


@given(st.text(TEXT_ALPHABET, max_size=40))
def test_random_text_raises_only_symcore_errors(text):
    only_symcore_errors(text)


@given(st.lists(st.sampled_from(VOCAB), max_size=25), st.sampled_from([" ", ",", ""]))
def test_random_token_lists_raise_only_symcore_errors(tokens, sep):
    only_symcore_errors(sep.join(tokens))


@given(st.lists(st.text(TEXT_ALPHABET, max_size=20) |
                st.lists(st.sampled_from(VOCAB), max_size=10).map(" ".join), max_size=6))
def test_read_many_and_detect_raise_only_symcore_errors(lines):
    try:
        pop = read_many(lines, on_error="collect")
        assert len(pop) + len(pop.errors) <= len(lines)
    except SymcoreError:
        pass
    for ln in lines:
        try:
            assert detect_dialect(ln) in READ_DIALECTS
        except SymcoreError:
            pass


@given(st.lists(st.sampled_from(VOCAB), max_size=25))
def test_mutated_valid_text_raises_only_symcore_errors(tokens):
    base = "mul(add(X0, -0.5), sin(div(X1, 2.0)))"
    cut = len(tokens) % (len(base) + 1)
    only_symcore_errors(base[:cut] + "".join(tokens) + base[cut:])


def test_options_are_validated():
    for bad in ({"names": "abc"}, {"names": [1, 2]}, {"names": {"a": -1}},
                {"theta": "1;x"}, {"var_base": "1"}, {"numbers": 3}):
        try:
            read("x0", "symcore", **bad)
        except SymcoreError:
            continue
        raise AssertionError(f"accepted {bad}")
    assert symcore.read("x0", "symcore", names={"a": 1}) is symcore.var(0)


@given(exprs(max_leaves=6), st.sampled_from([d for d in DIALECTS if d != "symcore"]),
       st.integers(0, 10_000), st.integers(0, 3), st.sampled_from(VOCAB))
def test_mutated_dialect_text_raises_only_symcore_errors(e, dialect, at, cut, insert):
    try:
        text = write(e, dialect)
    except SymcoreError:
        text = str(e)
    k = at % (len(text) + 1)
    only_symcore_errors(text[:k] + insert + text[k + cut:])
