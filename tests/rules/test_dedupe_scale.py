"""dedupe at population scale: the canonical pass merges what the e-graph missed at size,
representatives are canonical (no trivially reducible node, equal classes print identically),
no unsound merge on the harvested populations, and the node / memory limits hold."""

from __future__ import annotations

import os

import pytest

import symcore
from symcore.ir import call, const, var
from symcore.rules.api import dedupe, simplify
from symcore.rules.saturate import StopReason

from rules_numeric import numerically_different, points
from test_canonical import trivially_reducible

FIX = os.path.join(os.path.dirname(__file__), "..", "fixtures")


def _population(name: str, dialect: str) -> list:
    with open(os.path.join(FIX, name)) as fh:
        return [symcore.read(ln.strip(), dialect=dialect) for ln in fh if ln.strip()]


@pytest.fixture(scope="module")
def operon():
    return _population("pyoperon_population.txt", "operon")


def test_issue_case_merges_inside_300_operon_candidates(operon):
    a = symcore.read("((1.000000 * X1) * sin((1.000000 * X2)))", dialect="operon")
    b = symcore.read("(X1 * sin(X2))", dialect="operon")
    d = dedupe(operon[:298] + [a, b])
    assert d.class_of[298] == d.class_of[299]


@pytest.mark.parametrize("name, dialect", [("pyoperon_population.txt", "operon"),
                                           ("gplearn_population.txt", "gplearn")])
def test_real_population_sound_and_canonical(name, dialect):
    pop = _population(name, dialect)[:300]
    d = dedupe(pop)
    n_vars = max(max(e.variables(), default=0) for e in pop) + 1
    X = points(n_vars, seed=5)
    for k, mem in enumerate(d.members):
        for i in mem[1:]:
            assert not numerically_different(pop[mem[0]], pop[i], X), \
                f"{pop[mem[0]]} merged with {pop[i]}"
        assert not trivially_reducible(d.representatives[k]), d.representatives[k]
    # equal classes print identically: pairs in one class get the same text from simplify
    same = total = 0
    for mem in d.members:
        if len(mem) < 2:
            continue
        texts = {str(simplify(pop[i])) for i in mem[:4]}
        total += 1
        same += len(texts) == 1
    assert total == 0 or same / total >= 0.99


def test_node_limit_holds():
    # sums of ten products of sums: commutativity, associativity and factoring blow up
    pop = []
    for i in range(60):
        terms = [call("mul", call("sin", var((i + j) % 7)),
                      call("add", var((i + 2 * j + 1) % 7), const(float(j)))) for j in range(10)]
        e = terms[0]
        for t in terms[1:]:
            e = call("add", e, t)
        pop.append(e)
    d = dedupe(pop, node_limit=6000, iterations=30, saturation="full")
    assert d.stats["enodes"] <= 6000 * 1.1
    assert d.stop_reason in (StopReason.NODE_LIMIT, StopReason.SATURATED)


def test_memory_limit_splits_or_refuses_with_a_result():
    pop = [call("add", var(i % 5), const(float(i))) for i in range(400)]
    d = dedupe(pop, memory_limit=2e6, saturation="full")
    assert d.stop_reason is StopReason.MEMORY_LIMIT
    assert d.stats["chunks"] > 1
    assert len(d.class_of) == len(pop) and d.n_classes == 400


def test_bad_memory_limit_is_a_typed_error():
    with pytest.raises(symcore.SymcoreError):
        dedupe([var(0)], memory_limit=-1)
