"""The canonicalising pass (symcore.rules.canonical): equivalent mode keeps values wherever
finite (and merges nothing numerically different), exact mode is bit-for-bit through the tier-0
kernel and the NumPy reference, both are idempotent and blind to commutative argument order."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import symcore
from symcore.errors import SymcoreError
from symcore.ir import Expr, call, const, topo, var
from symcore.ops import OPS
from symcore.rules.canonical import (CanonicalTimeout, canonical, canonical_all, canonical_key,
                                     clear_cache)

from rules_numeric import numerically_different, points, same_where_finite
from strategies import algebraic_exprs, data, exprs

X3 = points(3, seed=3)


def trivially_reducible(e: Expr) -> list[str]:
    """Nodes any canonical form must not keep: an op over constants only, x*1, x+0, x-0, x/1,
    --x, powi/pow(x, 1)."""
    bad = []
    for n in topo([e]):
        if not n.args:
            continue
        consts = [a.value for a in n.args if a.op == "const"]
        if len(consts) == len(n.args) or (n.op == "powi" and n.args[0].op == "const"):
            bad.append(f"constant {n.op}")
        elif n.op == "mul" and 1.0 in consts or n.op == "add" and 0.0 in consts:
            bad.append(f"identity {n.op}")
        elif n.op in ("sub", "div", "pow", "powi") and n.args[1].op == "const" and \
                n.args[1].value == (0.0 if n.op == "sub" else 1.0):
            bad.append(f"identity {n.op}")
        elif n.op == "neg" and n.args[0].op == "neg":
            bad.append("double negation")
    return bad


def _swap_commutative(e: Expr, flips: list[bool], only: tuple[str, ...] | None = None) -> Expr:
    """`e` with the operands of commutative nodes (of `only`) swapped where flips says so."""
    memo: dict[Expr, Expr] = {}
    i = 0
    for n in topo([e]):
        if not n.args:
            memo[n] = n
            continue
        args = tuple(memo[a] for a in n.args)
        if OPS[n.op].commutative and (only is None or n.op in only) and flips[i % len(flips)]:
            args = args[::-1]
        i += 1
        memo[n] = Expr(n.op, args)
    return memo[e]


def _same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    nan = np.isnan(a)
    if not np.array_equal(nan, np.isnan(b)):
        return False
    return bool(np.array_equal(a[~nan].view(np.int64), b[~nan].view(np.int64)))


# -- equivalent mode ------------------------------------------------------------------------

@given(exprs(n_vars=3, max_leaves=12))
def test_equivalent_keeps_values_and_merges_nothing_different(e):
    c = canonical(e)
    assert same_where_finite(e, c, X3), f"{e}  ->  {c}"
    assert not numerically_different(e, c, X3), f"{e}  ->  {c}"


@given(exprs(n_vars=3, max_leaves=12), st.sampled_from(["exact", "equivalent"]))
@example(call("sub", var(1), call("neg", var(0))), "exact")
@example(call("mul", call("neg", var(2)), call("sin", call("sub", var(1), var(0)))), "equivalent")
@example(call("div", call("neg", const(0.0)), var(0)), "equivalent")   # a -0.0 coefficient
def test_idempotent(e, mode):
    c = canonical(e, mode)
    clear_cache()   # recomputed, not read back from the per-node cache
    assert canonical(c, mode) is c, f"{e} -> {c} -> {canonical(c, mode)}"


def test_a_negative_zero_term_keeps_its_sign():
    # -(0/x0) is -0.0 where x0 > 0, and 1/-0.0 = -inf: atan of the two is -pi/2 vs pi/2, so a
    # single term's -0.0 coefficient must survive the sum it is gathered into
    neg_zero = symcore.read("atan(inv(neg(0.0 / x0)))", dialect="symcore")
    zero = symcore.read("atan(inv(0.0 / x0))", dialect="symcore")
    assert canonical(neg_zero) is not canonical(zero)
    for e in (neg_zero, zero):
        assert not numerically_different(e, canonical(e), X3), e


@given(exprs(n_vars=3, max_leaves=12), st.lists(st.booleans(), min_size=1, max_size=8),
       st.sampled_from(["exact", "equivalent"]))
def test_commutative_permutations_give_identical_output(e, flips, mode):
    # exact mode orders add and mul only (max/min give different bits on +0 vs -0)
    f = _swap_commutative(e, flips, ("add", "mul") if mode == "exact" else None)
    assert canonical(f, mode) is canonical(e, mode), f"{e} vs {f}"
    assert canonical_key(f, mode) == canonical_key(e, mode)


@given(exprs(n_vars=3, max_leaves=12))
def test_equivalent_leaves_nothing_trivially_reducible(e):
    c = canonical(e)
    assert not trivially_reducible(c), f"{e} -> {c}: {trivially_reducible(c)}"


# -- exact mode -----------------------------------------------------------------------------

EXACT_CONSTS = st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, 0.5]),
                         st.floats(-1e3, 1e3, allow_subnormal=False))


@given(exprs(n_vars=3, max_leaves=12, constants=EXACT_CONSTS), data(n_vars=3, min_rows=1))
def test_exact_is_bitwise_through_reference_and_tier0(e, X):
    c = canonical(e, "exact")
    with np.errstate(all="ignore"):
        assert _same_bits(symcore.evaluate(e, X), symcore.evaluate(c, X)), f"{e} -> {c}"
    k = symcore.compile([e, c], tier=0).predict(X)
    assert _same_bits(k[0], k[1]), f"{e} -> {c}"


def test_exact_keeps_the_sign_of_zero():
    x = var(0)
    X = np.array([[-0.0], [0.0], [1.0]])
    e = call("add", x, const(0.0))                       # -0 + 0 = +0: must stay
    assert canonical(e, "exact").op == "add"
    assert canonical(call("add", x, const(-0.0)), "exact") is x
    assert canonical(call("sub", x, const(0.0)), "exact") is x
    assert canonical(call("sub", x, const(-0.0)), "exact") is not x
    m = call("max", x, const(-0.0))                      # max(+0, -0) depends on the order
    assert canonical(m, "exact") is m
    assert _same_bits(symcore.evaluate(canonical(call("sub", x, const(0.0)), "exact"), X),
                      symcore.evaluate(call("sub", x, const(0.0)), X))


def test_exact_folds_only_correctly_rounded_ops():
    assert canonical(call("mul", const(3.0), const(0.1)), "exact").value == 3.0 * 0.1
    assert canonical(call("sqrt", const(2.0)), "exact").value == math.sqrt(2.0)
    s = call("sin", const(1.0))
    assert canonical(s, "exact") is s
    assert canonical(s).value == math.sin(1.0)


# -- examples of the issue ------------------------------------------------------------------

def _r(text: str) -> Expr:
    return symcore.read(text, dialect="operon")


@pytest.mark.parametrize("a, b", [
    ("((1.000000 * X1) * sin((1.000000 * X2)))", "(X1 * sin(X2))"),
    ("sin(X2) * X1", "X1 * sin(X2)"),
    ("(X1 + 0.0) / 1.0 - 0.0", "X1"),
    ("2*X1 + 3*X1", "5*X1"),
    ("X1*X1", "X1^2"),
    ("sin(-X1)", "-sin(X1)"),
    ("cos(-X1)", "cos(X1)"),
    ("sin(X2 - X1)", "-sin(X1 - X2)"),
    ("(X2 - X1)^2", "(X1 - X2)^2"),
    ("X1 - X1 + X2", "X2"),
    ("0 * sin(X1)", "0"),
    ("2*(X1 + X2) - X2", "X2 + 2*X1"),
    ("--X1", "X1"),
    ("X1 ^ 1", "X1"),
])
def test_issue_examples_merge(a, b):
    assert canonical(_r(a)) is canonical(_r(b)), f"{canonical(_r(a))} vs {canonical(_r(b))}"


@pytest.mark.parametrize("a, b", [
    ("0 * log(X1)", "0"),              # log may be -inf / NaN: 0*f needs f finite
    ("exp(X1) - exp(X1)", "0"),        # exp may overflow: inf - inf is NaN
    ("X1 / X1", "1"),                  # 0/0
    ("X1 * X1 / X1", "X1"),
    ("sqrt(X1 * X1)", "X1"),
])
def test_unsound_merges_are_not_made(a, b):
    assert canonical(_r(a)) is not canonical(_r(b))


def test_deep_expression_is_iterative():
    e = var(0)
    for i in range(20000):
        e = call("add" if i % 3 else "mul", e, var(i % 4) if i % 5 else const(1.0))
    c = canonical(e)
    assert c.depth < e.depth
    assert canonical(c) is c
    canonical(e, "exact")


def test_canonical_all_matches_canonical():
    pop = [_r("X1 * 1"), _r("sin(X1) + X2"), _r("X2 + sin(X1)")]
    assert canonical_all(pop) == [canonical(e) for e in pop]


def test_key_is_stable_across_processes_and_ignores_display_names():
    e = _r("sin(X2 - X1) * 2.5 + X1 ^ 2")
    k = canonical_key(e)
    assert isinstance(k, bytes) and len(k) == 16
    code = ("import symcore; from symcore.rules.canonical import canonical_key; "
            "print(canonical_key(symcore.read('X1 ^ 2 + 2.5 * sin(X2 - X1)', dialect='operon')).hex())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"PYTHONHASHSEED": "123"})
    assert out.stdout.strip() == k.hex()
    assert canonical_key(call("sin", var(0, "a"))) == canonical_key(call("sin", var(0)))
    assert canonical_key(call("sin", var(0))) != canonical_key(call("sin", var(1)))


def test_bad_input_raises_typed_errors():
    with pytest.raises(SymcoreError):
        canonical(var(0), mode="fast")  # type: ignore[arg-type]
    with pytest.raises(SymcoreError):
        canonical("x0")  # type: ignore[arg-type]
    with pytest.raises(SymcoreError):
        canonical_key(var(0), mode="nope")  # type: ignore[arg-type]


@given(st.lists(exprs(n_vars=3, max_leaves=12), min_size=1, max_size=6))
def test_cached_forms_equal_fresh_forms(pop):
    # the per-node cache (filled by earlier calls, in any order) gives what a fresh pass gives
    for n in reversed(topo(pop)):   # parents first: children are then met as cached roots
        canonical(n)
    warm = [canonical(e) for e in reversed(pop)][::-1]
    warm_all = canonical_all(pop)
    clear_cache()
    fresh = canonical_all(pop)
    assert warm == fresh and warm_all == fresh


def test_cache_keeps_no_expression_alive():
    import gc
    import weakref
    e = call("sin", call("add", call("mul", var(917), const(1.0)), const(17.25)))
    c = canonical(e)
    assert c is not e
    refs = [weakref.ref(n) for n in topo([e, c]) if n.args or n.op == "var"]
    del e, c
    gc.collect()
    assert all(r() is None for r in refs)


def test_deadline_raises_a_typed_error():
    clear_cache()
    pop = [call("add", var(i % 3), const(float(i))) for i in range(200)]
    with pytest.raises(CanonicalTimeout):
        canonical_all(pop, deadline=0.0)
    with pytest.raises(CanonicalTimeout):
        canonical_all(pop, "exact", deadline=0.0)
    assert canonical_all(pop, deadline=None) == [canonical(e) for e in pop]


@pytest.mark.parametrize("before, after", [
    (call("sqrt_abs", call("abs", var(0))), call("sqrt_abs", var(0))),        # even f(|x|)
    (call("cos", call("abs", call("neg", var(0)))), call("cos", var(0))),
    (call("max", call("square", var(1)), call("square", var(1))), call("square", var(1))),
    (call("min", call("min", var(0), var(1)), var(0)), call("min", var(0), var(1))),
    (call("sqrt_abs", call("square", var(0))), call("abs", var(0))),
    (call("sqrt", call("square", call("neg", var(2)))), call("abs", var(2))),
    (call("abs", call("mul", const(0.4), call("square", var(0)))),
     call("mul", const(0.4), call("square", var(0)))),
])
def test_equivalent_abs_idempotent_and_root_of_square(before, after):
    c = canonical(before)
    assert c is canonical(after), f"{before} -> {c}"
    assert same_where_finite(before, c, X3)
    # a sign that is not provably non-negative stays inside abs
    assert canonical(call("abs", call("mul", var(0), var(1)))).op == "abs"


def test_sum_that_cancels_to_a_negative_constant():
    # x0 + (1*(-1) - x0) is -1 (it was printed -(-1.0), i.e. +1, and merged with 1)
    e = call("add", var(0), call("sub", call("mul", const(1.0), const(-1.0)), var(0)))
    assert canonical(e) is const(-1.0)
    assert canonical(call("sub", call("sub", var(1), const(2.5)), var(1))) is const(-2.5)


@pytest.mark.parametrize("text,want", [
    ("(-0.5) * x0", "(-0.5) * x0"),                      # sign in the coefficient, no neg node
    ("neg(x0) * 3", "(-3.0) * x0"),
    ("neg(x0)", "-x0"),
    ("square(x0 / x1)", "square(x0 / x1)"),              # a common power stays outside
    ("x0 * x0 / (x1 * x1)", "square(x0 / x1)"),
    ("exp((-0.5) * square(x1 / x0))", "exp((-0.5) * square(x1 / x0))"),
])
def test_canonical_form_is_compact(text, want):
    e = symcore.read(text, dialect="symcore")
    c = canonical(e)
    assert str(c) == want
    assert c.size <= e.size and canonical(c) is c


# -- simplify without the e-graph where saturation cannot change the canonical form ----------

def _saturated(e: Expr) -> Expr:
    """What `simplify` gives through the e-graph (the reference of the fast path)."""
    from symcore.rules.api import _simplify_saturated
    from symcore.rules.extract import size_cost, tree_cost
    out = _simplify_saturated(e, "default", None, 8, None, 10.0)
    return e if tree_cost(out, size_cost) > tree_cost(e, size_cost) else out


def _fixture(name: str, dialect: str, n: int) -> list[Expr]:
    import os
    path = os.path.join(os.path.dirname(__file__), "..", "fixtures", name)
    with open(path) as fh:
        exprs = [symcore.read(ln.strip(), dialect=dialect) for ln in fh if ln.strip()]
    return list(dict.fromkeys(exprs))[:n]


def test_every_default_shrinking_rule_is_performed_by_the_pass_or_looked_for():
    from symcore.rules import canonical_fixpoint as fx, rulesets
    from symcore.rules.rulesets import Rule, pattern_to_ir
    listed = set(fx.EGRAPH_ONLY) | set(fx.NONNEG_GUARDED) | set(fx.EQUAL_OPERANDS) | \
        set(fx.CONST_OPERAND)
    names = {r.name for t in rulesets.PRESETS["default"] for r in rulesets.TOPICS[t]}
    assert listed <= names
    guard_terms = {"finite": var(5), "nonneg": call("exp", var(6)), "nonzero": const(2.5)}
    missing = []
    for t in rulesets.PRESETS["default"]:
        for r in rulesets.TOPICS[t]:
            if not isinstance(r, Rule) or r.grows or r.name in listed:
                continue
            env = {v: guard_terms[rel] for rel, v in r.when}
            lhs, rhs = pattern_to_ir(r.lhs, env), pattern_to_ir(r.rhs, env)
            if canonical(lhs) is not canonical(rhs):
                missing.append(f"{r.name}: {canonical(lhs)} vs {canonical(rhs)}")
    assert not missing, missing


@pytest.mark.parametrize("text", [
    "x0 * x1 + x0 * x2", "x0 / x1 + x2 / x1", "x0 + x0 * x1", "2.5 * x0 * (x1 + x2) + 2.5",
    "square(sqrt(exp(x0)))", "exp(log(x0))", "square(abs(x0 - x1))", "sqrt_abs(exp(x0))",
    "abs(exp(x0) + square(x1))", "min(x0, max(x0, x1))", "log(-1) + x0",
])
def test_forms_saturation_can_change_go_to_the_egraph(text):
    from symcore.rules.canonical import _Canon
    from symcore.rules.canonical_fixpoint import needs_saturation
    c = canonical(symcore.read(text, dialect="symcore"))
    assert needs_saturation(c, _Canon()), c


@pytest.mark.parametrize("name, dialect", [("gplearn_population.txt", "gplearn"),
                                           ("pyoperon_population.txt", "operon")])
def test_simplify_equals_saturation_on_harvested_populations(name, dialect):
    from symcore.rules.api import simplify
    from symcore.rules.canonical import _Canon
    from symcore.rules.canonical_fixpoint import needs_saturation
    exprs = _fixture(name, dialect, 150)
    fast = [e for e in exprs if not needs_saturation(canonical(e), _Canon())]
    assert len(fast) > len(exprs) // 2      # the fast path is the common case
    for e in exprs:
        assert simplify(e) is _saturated(e), str(e)


@given(st.one_of(exprs(n_vars=3, max_leaves=10), algebraic_exprs(8)))
@example(symcore.read("x0 * (x1 * x2) * (2.0 - log(x2 * cos(x1)))", dialect="symcore"))
@example(symcore.read("(x0 + 1.0 + x1) * log(9.0) / x1", dialect="symcore"))
@example(symcore.read("powi(x0 * 9.346775184041062e-254, 2.0)", dialect="symcore"))  # c^2 = 0
@example(symcore.read("powi(3.858878624916397e-224 * (x0 + 9.346775184041062e-254), 1.0)",
                      dialect="symcore"))
@example(symcore.read("powi(x0 * 9.346775184041062e-254, -1.0)", dialect="symcore"))
@example(symcore.read("(x0 + x0) / 0.0", dialect="symcore"))           # x / 0 = x * inf
def test_simplify_equals_saturation(e):
    from symcore.rules.api import simplify
    assert simplify(e) is _saturated(e), str(e)
