"""The saturation policy (symcore.rules.policy): only canonical forms that another form matches
numerically go into the e-graph, and that loses no merge the full saturation finds; the
canonical pass honours dedupe's time limit with a result."""

from __future__ import annotations

import os

import pytest

import symcore
from symcore.ir import call, const, var
from symcore.rules.api import dedupe
from symcore.rules.canonical import canonical_all
from symcore.rules.policy import merge_candidates
from symcore.rules.saturate import StopReason

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")
x0, x1 = var(0), var(1)


def test_candidates_are_the_numerically_matching_forms():
    forms = canonical_all([
        call("exp", call("log", x0)), x0,                                # equal, apart
        call("square", call("sqrt", x1)), x1,
        call("sin", x0), call("exp", x1), call("add", x0, x1),           # alone
        call("log", call("neg", call("square", x0))),                    # NaN everywhere
    ])
    assert len(set(forms)) == len(forms)
    assert merge_candidates(forms) == [0, 1, 2, 3, 7]
    assert merge_candidates(forms[4:7]) == []
    assert merge_candidates(forms[:1]) == []


def test_a_form_non_finite_somewhere_matches_on_its_finite_points():
    # sqrt(x)^2 is x wherever it is finite (NaN for x < 0): a sound merge to consider
    a = call("square", call("sqrt", call("sub", x0, const(0.5))))
    b = call("sub", x0, const(0.5))
    forms = canonical_all([a, b, call("cos", x0)])
    assert merge_candidates(forms) == [0, 1]


@pytest.mark.parametrize("name, dialect, n, egraph_merges",
                         [("gplearn_population.txt", "gplearn", 400, True),
                          ("pyoperon_population.txt", "operon", 400, False)])
def test_auto_loses_no_merge_of_full_saturation(name, dialect, n, egraph_merges):
    with open(os.path.join(FIX, name)) as fh:
        pop = [symcore.read(ln.strip(), dialect=dialect) for ln in fh if ln.strip()][:n]
    auto = dedupe(pop)
    full = dedupe(pop, saturation="full")
    assert auto.stats["saturated_forms"] < full.stats["saturated_forms"]
    assert auto.n_classes <= full.n_classes
    if egraph_merges:   # the e-graph still merged some the canonical pass left apart
        assert auto.n_classes < auto.stats["canonical_classes"]


def _spellings(offset: float, n: int) -> list:
    # 100 functions (f = i // 2 mod 100) in two spellings (i mod 2): 100 classes when complete
    out = []
    for i in range(n):
        f = (i // 2) % 100
        x, c = var(f % 4), const(offset + f)
        out.append(call("add", call("mul", x, const(1.0)), c) if i % 2 else call("add", c, x))
    return out


def test_time_limit_inside_the_canonical_pass_gives_a_result():
    assert dedupe(_spellings(1000.0, 400)).n_classes == 100
    pop = _spellings(2000.0, 3000)   # nodes no earlier pass has seen
    d = dedupe(pop, time_limit=1e-4)
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert len(d.class_of) == len(pop) and d.n_classes > 100   # the pass was cut short
    # one input (the same node) is one class wherever it sits
    assert all(d.class_of[i] == d.class_of[i + 200] for i in range(len(pop) - 200))


def test_bad_saturation_choice_is_a_typed_error():
    with pytest.raises(symcore.SymcoreError):
        dedupe([x0], saturation="some")  # type: ignore[arg-type]


def test_piecewise_forms_equal_on_the_unit_interval_are_not_candidates():
    # max(|x|, x^2) = |x| and min(sqrt|x|, 0.27) = 0.27 for 0.15 < |x| < 0.95: the points beyond
    # that interval tell them apart, so they stay out of the e-graph
    forms = canonical_all([call("max", call("abs", x0), call("square", x0)), call("abs", x0),
                           call("min", call("sqrt_abs", x1), const(0.27)), const(0.27)])
    assert merge_candidates(forms) == []
