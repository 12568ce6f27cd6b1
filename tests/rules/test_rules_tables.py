"""Rule tables: (start, expected) per topic, every rule sound on its own, every guard respected,
and the language covers the whole ops table."""

from __future__ import annotations

import math

import numpy as np
import pytest

import symcore
from symcore import OPS, call, const, var
from symcore.errors import SymcoreError
from symcore.rules import analysis, language, rulesets
from symcore.rules.rulesets import TOPICS, Rule, pattern_to_ir

from rules_numeric import numerically_different, points, same_where_finite

x, y, z = var(0), var(1), var(2)


def c(v: float):
    return const(v)


def f(op, *a):
    return call(op, *a)


# (start, expected, rule set) -- expected is THE cheapest form under the size cost
TABLE = [
    # identities
    (x + 0.0, x, "default"), (x - 0.0, x, "default"), (x * 1.0, x, "default"),
    (x / 1.0, x, "default"), (-(-x), x, "default"), (0.0 - x, -x, "default"),
    (x * -1.0, -x, "default"), (x - x, c(0.0), "default"), (x * 0.0, c(0.0), "default"),
    (x - (-y), x + y, "default"), ((x + y) - x, y, "default"), (x + (y - x), y, "default"),
    # folding (exact IEEE) and the sign of zero
    (c(2.0) + c(3.0), c(5.0), "default"), (c(0.1) + c(0.2), c(0.1 + 0.2), "default"),
    (f("exp", c(1.0)), c(float(np.exp(1.0))), "default"),
    (f("log", c(-1.0)), c(math.nan), "default"),
    # powers
    (x * x, f("square", x), "default"), (x * x * x, f("cube", x), "default"),
    (f("powi", x, c(0.0)), c(1.0), "default"), (f("powi", x, c(2.0)), f("square", x), "default"),
    (f("pow", x, c(1.0)), x, "default"), (f("sqrt", f("square", x)), f("abs", x), "default"),
    (f("abs", f("neg", x)), f("abs", x), "default"), (f("inv", f("inv", x)), x, "default"),
    (f("exp", f("log", f("square", x))), f("square", x), "default"),
    (f("abs", f("exp", x)), f("exp", x), "default"),
    # trig parity
    (f("cos", -x), f("cos", x), "default"), (f("sin", -x) + f("sin", x), c(0.0), "default"),
    # protected ops keep their own semantics
    (f("plog", -x), f("plog", x), "default"), (f("sqrt_abs", -x), f("sqrt_abs", x), "default"),
    (f("pdiv", x, c(1.0)), x, "default"), (f("pdiv", x, c(4.0)), c(0.25) * x, "default"),
    (f("pdiv", x, x), c(1.0), "default"), (f("aq", x, c(0.0)), x, "default"),
    (f("max", x, x), x, "default"), (f("min", f("max", x, y), y), y, "default"),
    (f("sqrt_abs", f("square", x)), f("abs", x), "default"),
    # commutativity / associativity / factoring
    ((x + y) - (y + x), c(0.0), "default"), ((x * y) * z - x * (z * y), c(0.0), "default"),
    # guarded: stays
    (f("exp", f("log", x)), f("exp", f("log", x)), "default"), (x / x, x / x, "default"),
    (f("exp", x) * 0.0, c(0.0) * f("exp", x), "default"),
    # aggressive (opt-in)
    (f("log", f("exp", x)), x, "aggressive"), (x / x, c(1.0), "aggressive"),
    (f("exp", f("log", x)), x, "aggressive"),
]


@pytest.mark.parametrize("start,expected,rules", TABLE, ids=[str(t[0]) for t in TABLE])
def test_table(start, expected, rules):
    got = symcore.simplify(start, rules=rules)
    if expected.op == "const" and math.isnan(expected.value):
        assert got.op == "const" and math.isnan(got.value)
    else:
        assert got is expected, f"{start} -> {got}, expected {expected}"


P = symcore.param


PARAM_TABLE = [
    (P(0) * x + P(1) * x, 1), (P(0) * (P(1) * x + P(2)), 2), (P(0) + P(1) + x, 1),
    (P(0) * P(1) * f("sin", x), 1), ((P(0) - P(1)) * x, 1), (P(0) * x + P(0) * y, 1),
    (P(0) / P(1), 1),
]


@pytest.mark.parametrize("start,n_params", PARAM_TABLE, ids=[str(t[0]) for t in PARAM_TABLE])
def test_params_table(start, n_params):
    got = symcore.simplify(start, rules="params", cost="params")
    assert len(got.parameters()) == n_params, f"{start} -> {got}"
    assert got.parameters() == list(range(n_params))  # renumbered from 0


def test_params_tied_slots_are_kept():
    e = P(0) * x + P(0) * y           # p0 used twice: one parameter, never split
    got = symcore.simplify(e, rules="params", cost="params")
    assert len(got.parameters()) == 1
    # P - P with independent slots is a parameter, not 0
    got = symcore.simplify(P(0) - P(1), rules="params", cost="params")
    assert got.op == "param"


# ---------------------------------------------------------------------------------------------
# Every rule on its own: sound where its left side is finite (aggressive rules excluded).

def _plain_rules():
    for topic, rules in TOPICS.items():
        if topic in ("aggressive", "params"):
            continue
        for r in rules:
            if isinstance(r, Rule):
                yield pytest.param(r, id=r.name)


@pytest.mark.parametrize("rule", list(_plain_rules()))
def test_rule_is_sound_on_its_own(rule):
    env: dict = {}
    pattern_to_ir(rule.lhs, env)
    for rel, v in rule.when:      # a guarded rule is checked where its guard holds
        env[v] = _GOOD[rel](env[v])
    lhs = pattern_to_ir(rule.lhs, dict(env))
    rhs = pattern_to_ir(rule.rhs, dict(env))
    X = points(max(len(env), 1))
    assert same_where_finite(lhs, rhs, X), f"{rule.name}: {lhs} vs {rhs}"
    # and the e-graph applies it: the two sides land in one class when the guards hold (an
    # opt-in topic such as "cycles" is checked with its topic switched on)
    topics = [t for t, rs in TOPICS.items() if rule in rs and t not in rulesets.PRESETS["default"]]
    d = symcore.dedupe([lhs, rhs], iterations=4, rules=("default", *topics))
    if not rule.when:
        assert d.class_of[0] == d.class_of[1], rule.name


# Terms for which each relation is false on some finite input (NaN- or inf-producing).
_BAD = {"finite": (lambda v: f("log", v), lambda v: f("exp", v * 1000.0)),
        "nonneg": (lambda v: v - 2.0,), "nonzero": (lambda v: v - 1.0,)}
_GOOD = {"finite": lambda v: f("sin", v), "nonneg": lambda v: f("square", v),
         "nonzero": lambda v: c(2.0)}


def _guarded_rules():
    for topic, rules in TOPICS.items():
        for r in rules:
            if isinstance(r, Rule) and r.when:
                yield pytest.param(r, id=r.name)


@pytest.mark.parametrize("rule", list(_guarded_rules()))
def test_guard_false_does_not_fire(rule):
    env: dict = {}
    pattern_to_ir(rule.lhs, env)
    X = points(max(len(env), 1))
    for k in range(2):
        bad_env = dict(env)
        for rel, v in rule.when:
            makers = _BAD[rel]
            bad_env[v] = makers[min(k, len(makers) - 1)](env[v])
        lhs = pattern_to_ir(rule.lhs, dict(bad_env))
        rhs = pattern_to_ir(rule.rhs, dict(bad_env))
        if numerically_different(lhs, rhs, X):
            break
    else:
        pytest.fail(f"no test term breaks {rule.name}")
    d = symcore.dedupe([lhs, rhs], iterations=4)
    assert d.class_of[0] != d.class_of[1], f"{rule.name} fired on {lhs}"


@pytest.mark.parametrize("rule", list(_guarded_rules()))
def test_guard_true_fires(rule):
    env: dict = {}
    pattern_to_ir(rule.lhs, env)
    good = dict(env)
    for rel, v in rule.when:
        good[v] = _GOOD[rel](env[v])
    lhs = pattern_to_ir(rule.lhs, dict(good))
    rhs = pattern_to_ir(rule.rhs, dict(good))
    d = symcore.dedupe([lhs, rhs], iterations=4)
    assert d.class_of[0] == d.class_of[1], f"{rule.name} did not fire on {lhs}"


def test_aggressive_rules_are_not_default_and_documented():
    default = {r.name for t in rulesets.PRESETS["default"] for r in TOPICS[t]}
    for r in TOPICS["aggressive"]:
        assert r.name not in default and r.note


# ---------------------------------------------------------------------------------------------
# The language is generated from the ops table.

def test_every_op_has_a_constructor_and_a_loader():
    decl = language.declarations()
    for name, op in OPS.items():
        assert f"({language.CTOR[name]} {' '.join(['M'] * op.arity)})" in decl
        assert f"({language.CTOR[name]} " in language.loader_declarations()
    assert language.ops_without_constructor(language.CTOR.values()) == set()


def test_every_op_round_trips_through_the_egraph():
    for name, op in OPS.items():
        args = (x, c(2.0)) if op.arity == 2 else (x,)
        e = call(name, *args)
        d = symcore.dedupe([e], rules=[], iterations=0)
        assert d.representatives[0] is e


@pytest.mark.parametrize("v", [0.1, -0.0, 0.0, 1e-310, -1e300, 5e-324, 1.7976931348623157e308,
                               math.inf, -math.inf, math.nan, 0.30000000000000004, -2.5])
def test_constants_bit_exact(v):
    e = x + c(v)
    d = symcore.dedupe([e], rules=["identities"], iterations=1)
    got = d.representatives[0]
    if v == 0.0:
        assert got is x or got is e
        return
    k = [n for n in got.nodes() if n.op == "const"]
    assert len(k) == 1
    if math.isnan(v):
        assert math.isnan(k[0].value)
    else:
        assert k[0] is c(v)  # constants are keyed by their bits


def test_unknown_rules_and_patterns_raise():
    with pytest.raises(SymcoreError):
        rulesets.resolve("nonsense")
    with pytest.raises(SymcoreError):
        rulesets.pattern_to_egg("(frobnicate a)")
    with pytest.raises(SymcoreError):
        rulesets.rule_to_egg(Rule("bad", "(neg a)", "a", when=(("happy", "a"),)), "shrink")


def test_analysis_relations_are_the_guards():
    used = {rel for rs in TOPICS.values() for r in rs if isinstance(r, Rule) for rel, _ in r.when}
    assert used <= set(analysis.RELATIONS)
