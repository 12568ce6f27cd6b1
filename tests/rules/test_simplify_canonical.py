"""`simplify` is canonical within dedupe's classes: members of one class print identically
(issue 13), on the harvested populations and seeded random ones; and the compact spelling it
uses (rules/canonical_compact) is sound and never larger."""

from __future__ import annotations

import os
import sys

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from rules_numeric import points, same_where_finite
from strategies import algebraic_exprs, exprs, plain_exprs
from symcore.rules.api import dedupe, simplify
from symcore.rules.canonical import canonical
from symcore.rules.canonical_compact import compact

import symcore
from symcore import call, const, var
from symcore.ir import Expr

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))


def _fixture(name: str, dialect: str) -> list[Expr]:
    with open(os.path.join(HERE, "..", "fixtures", name)) as fh:
        return [symcore.read(ln.strip(), dialect=dialect) for ln in fh if ln.strip()]


def _random_population(n: int, seed: int) -> list[Expr]:
    from bench_dedupe import population  # the bench's seeded equivalent-variant populations
    return population(n, seed)


def _differing_classes(pop: list[Expr]) -> list[set[str]]:
    d = dedupe(pop)
    text: dict[Expr, str] = {}
    bad = []
    for m in d.members:
        ts = {text.setdefault(pop[i], str(simplify(pop[i]))) for i in m}
        if len(ts) > 1:
            bad.append(ts)
    return bad


@pytest.mark.parametrize("name, dialect", [("gplearn_population.txt", "gplearn"),
                                           ("pyoperon_population.txt", "operon")])
def test_members_of_a_class_simplify_alike_on_harvested_populations(name, dialect):
    assert _differing_classes(_fixture(name, dialect)) == []


@pytest.mark.parametrize("seed", [1000, 7])
def test_members_of_a_class_simplify_alike_on_random_populations(seed):
    assert _differing_classes(_random_population(400, seed)) == []


@pytest.mark.parametrize("a, b", [
    ("(-1.0) - 1.0 * x1", "(-1.0) - x1"),                                 # -(x1 + 1)
    ("(cos(1.0 * x0) - 1.0 * x0) / abs(0.1)", "(cos(x0) - x0) / abs(0.1)"),   # 10*a - 10*b
    ("tanh(abs(1.0 * (4.2 - x2)) / (1.0 * square(x2) - x2))",
     "tanh(abs(4.2 - x2) / (square(x2) - x2))"),                          # -tanh(a / (b - c))
    ("square(1.0 * x0 / x1) * (sqrt(3.0 / x1) * tanh(x2))",
     "square(x0 / x1) * (sqrt(3.0 / x1) * tanh(x2))"),                    # square(a) / square(b)
    ("log(-neg(1.0 * 0.1)) * --(x1 + x0)", "log(0.1) * (x1 + x0)"),
])
def test_equal_inputs_simplify_to_one_text(a, b):
    ea, eb = (symcore.read(t, dialect="symcore") for t in (a, b))
    assert canonical(ea) is canonical(eb)
    assert str(simplify(ea)) == str(simplify(eb))
    assert simplify(eb).size <= eb.size


@pytest.mark.parametrize("text, want", [
    ("-(x1 + 1.0)", "(-1.0) - x1"),
    ("10.0 * cos(x0) - 10.0 * x0", "10.0 * (cos(x0) - x0)"),
    ("-tanh(x0 - x1)", "tanh(x1 - x0)"),
    ("square(x0) * sin(x2) / square(x1)", "square(x0 / x1) * sin(x2)"),
    ("-(2.0 * x0 + 2.0 * x1)", "(-2.0) * (x0 + x1)"),
    ("-exp(x0 - x1)", "-exp(x0 - x1)"),                                # even/no parity: kept
    ("1.5 * x2 / x1 + 1.5 * x2", "1.5 * (x2 / x1 + x2)"),
    ("0.5 / x0 + 4.0 * x0 - 4.0 * log(x2)", "0.5 / x0 + 4.0 * (x0 - log(x2))"),
    ("x1 - 2.0 * x0 - 2.0 * x2", "x1 - 2.0 * (x0 + x2)"),
    ("x1 - 2.0 * x0 + 2.0 * x2", "x1 - 2.0 * (x0 - x2)"),
    ("powi(x0, 4.0)", "square(square(x0))"),
    ("powi(x2, 4.0) * square(x0 + x2) * square(x1 + 0.5)",
     "square(square(x2) * (x0 + x2) * (x1 + 0.5))"),
])
def test_compact_spelling(text, want):
    e = symcore.read(text, dialect="symcore")
    assert str(compact(e)) == want


def test_compact_zero_and_nan():
    assert compact(const(-0.0)) is const(0.0)        # the sign of a zero result is rounding
    assert compact(call("neg", const(0.0))) is const(0.0)
    assert str(compact(call("add", const(float("nan")), var(0) + call("cos", var(0))))) == "nan"
    assert compact(call("sub", const(-0.0), var(0))) is call("sub", const(-0.0), var(0))
    a, b = (symcore.read(t, dialect="symcore") for t in (
        "abs((x1 - x1) * 1.0) * 1.0", "neg(1.0 * 1.0 * (sin(2.0) * (x2 - x2)))"))
    assert str(simplify(a)) == str(simplify(b)) == "0.0"


@given(st.one_of(plain_exprs(n_vars=3, max_leaves=10).map(lambda e: call("neg", e)),
                 exprs(n_vars=3, max_leaves=10)))
@example(call("neg", call("sin", var(0) - var(1))))
@example(call("neg", 2.0 * var(0) + const(1.5) * var(1)))
@example(call("square", var(0)) * var(2) / call("square", var(1)))
@example(var(1) - 2.0 * var(0) + 2.0 * var(2))
@example(var(0) * call("square", call("sin", var(2))) * call("square", var(1) + 0.5))
@example(0.5 / var(0) + 4.0 * var(0) - 4.0 * call("log", var(2)))
@example(1.5 * var(2) / var(1) - 1.5 * var(2))
def test_compact_is_sound_and_never_larger(e):
    c = compact(e)
    assert c.size <= e.size
    assert same_where_finite(e, c, points(3))


@given(algebraic_exprs(8))
def test_compact_of_canonical_forms_is_sound(e):
    f = canonical(e)
    c = compact(f)
    assert c.size <= f.size
    assert same_where_finite(f, c, points(2))
