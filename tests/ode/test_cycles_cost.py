"""The "cycles" cost model: every built-in op has a cycle estimate, and extraction under it
turns powers into multiplications and never returns something costlier."""

from __future__ import annotations

import numpy as np
import pytest

import symcore
from symcore import OPS, evaluate
from symcore.rules.extract import DEFAULT_CYCLES, cost_model, cycles_cost, tree_cost


def test_every_builtin_op_has_a_cycle_estimate():
    missing = [n for n, o in OPS.items() if o.cycles is None]
    assert missing == []
    assert OPS["mul"].cycles < OPS["div"].cycles < OPS["exp"].cycles < OPS["pow"].cycles
    assert cost_model("cycles") is cycles_cost
    assert cycles_cost.base("pow") == OPS["pow"].cycles and cycles_cost.base("var") > 0
    assert cycles_cost.base("not-an-op") == DEFAULT_CYCLES


@pytest.mark.parametrize("text,want", [("x0^2", "square(x0)"), ("x0^3", "cube(x0)"),
                                       ("pow(x0, 2.0) + x1", "square(x0) + x1")])
def test_powers_become_multiplications(text, want):
    e = symcore.read(text, "symcore")
    out = symcore.simplify(e, cost="cycles")
    assert str(out) == want
    assert tree_cost(out, cycles_cost) < tree_cost(e, cycles_cost)


def test_cycles_extraction_is_never_costlier_and_equal():
    X = np.random.default_rng(0).uniform(0.5, 2.0, size=(40, 3))
    for text in ["x0/x1 + x2/x1", "exp(x0)*exp(x1)", "x0*x0*x0 + pow(x1, 3.0)",
                 "sin(x0)*x1/x2 + sin(x0)/x2"]:
        e = symcore.read(text, "symcore")
        out = symcore.simplify(e, cost="cycles")
        assert tree_cost(out, cycles_cost) <= tree_cost(e, cycles_cost)
        np.testing.assert_allclose(evaluate(out, X), evaluate(e, X), rtol=1e-12)


def test_shared_subterms_are_counted_once():
    from symcore.rules.extract import dag_cost
    e = symcore.read("sin(x0)*x1 + sin(x0)", "symcore")
    as_tree = tree_cost(e, lambda op, kids: cycles_cost(op, kids))   # a plain callable: a tree
    assert dag_cost([e], cycles_cost) == tree_cost(e, cycles_cost)
    assert as_tree - tree_cost(e, cycles_cost) == OPS["sin"].cycles + cycles_cost.base("var")


@pytest.mark.parametrize("text", ["x0*x0*x0 + x0*x0", "x0/x2 + x1/x2*x0"])
def test_cycles_extraction_shares_subterms(text):
    """The DAG extraction beats the best tree (x0*x0 computed once, used twice) and keeps the
    value; the tree extraction under the same weights is the reference."""
    from symcore.rules.extract import dag_cost
    X = np.random.default_rng(1).uniform(0.5, 2.0, size=(30, 3))
    e = symcore.read(text, "symcore")
    dag = symcore.simplify(e, cost="cycles")
    tree = symcore.simplify(e, cost=lambda op, kids: cycles_cost(op, kids))
    assert dag_cost([dag], cycles_cost) < dag_cost([tree], cycles_cost)
    np.testing.assert_allclose(evaluate(dag, X), evaluate(e, X), rtol=1e-12)


def test_system_kernel_computes_a_shared_subterm_once():
    """The multi-output rhs lowers every distinct node of the system once: sin(x0 - x1) and the
    reciprocal used by three equations are one call and one division in the emitted IR."""
    from symcore.codegen.export.system import system_ir
    d = symcore.read("inv(x2 + 1.5)", "symcore")
    s_ = symcore.read("sin(x0 - x1)", "symcore")
    sysm = symcore.System([s_ * d, s_ + d, d * symcore.read("x2", "symcore")])
    text = system_ir(sysm, "f")
    body = text[text.index('define void @"f"('):]
    body = body[:body.index("}")]
    assert body.count('@"sin"(') == 1 and body.count("fdiv") == 1
