"""The prepared e-graph reused across dedupe calls through (push)/(pop) leaks no state: every
result equals the one from a fresh e-graph, whatever ran before."""

from __future__ import annotations

import random
from contextlib import contextmanager

import pytest

import symcore
from symcore import Expr, call, const, var
from symcore.ops import generation
from symcore.rules import rulesets, saturate

_UN = ("sin", "exp", "log", "sqrt", "square", "neg", "abs")
_BIN = ("add", "sub", "mul", "div")


def _tree(rng: random.Random, size: int) -> Expr:
    if size <= 1:
        return var(rng.randrange(3)) if rng.random() < 0.7 else const(rng.choice((0.0, 1.0, 2.5)))
    if size == 2 or rng.random() < 0.25:
        return call(rng.choice(_UN), _tree(rng, size - 1))
    left = rng.randint(1, size - 2)
    return call(rng.choice(_BIN), _tree(rng, left), _tree(rng, size - 1 - left))


def _population(seed: int, n: int) -> list[Expr]:
    rng = random.Random(seed)
    base = [_tree(rng, rng.randint(2, 9)) for _ in range(n)]
    # equivalent spellings so that classes merge
    return base + [call("add", const(0.0), e) for e in base[: n // 2]] + \
        [call("mul", e, const(1.0)) for e in base[n // 3:]]


@contextmanager
def _fresh(rules: str):
    """Force fresh e-graphs: hold the prepared e-graph's lock so session() builds a new one."""
    key = rulesets.resolve(rules)
    with saturate.session(key, 1):   # makes sure the prepared e-graph exists
        pass
    prep = saturate._PREPARED[(tuple(key), generation())]
    with prep.lock:
        yield


def _summary(d: symcore.DedupeResult) -> tuple:
    s = d.stats
    return (d.class_of, d.representatives, d.members, d.stop_reason, s["enodes_inserted"],
            s["enodes"], s["eclasses"], s["iterations"])


@pytest.mark.parametrize("rules", ["default", "params"])
def test_reuse_equals_fresh_egraph(rules):
    pop_a, pop_b = _population(1, 30), _population(2, 40)
    if rules == "params":
        p = symcore.param
        pop_a = pop_a + [p(0) * e + p(1) for e in pop_a[:10]]
        pop_b = pop_b + [p(0) * (p(1) * e + p(2)) for e in pop_b[:10]]
    with _fresh(rules):
        fresh_a = _summary(symcore.dedupe(pop_a, rules=rules))
        fresh_b = _summary(symcore.dedupe(pop_b, rules=rules))
    reused = [_summary(symcore.dedupe(pop, rules=rules)) for pop in (pop_a, pop_b, pop_a)]
    assert reused == [fresh_a, fresh_b, fresh_a]


def test_reuse_after_a_limit_stop_and_an_error():
    pop = _population(3, 30)
    with _fresh("default"):
        fresh = _summary(symcore.dedupe(pop))
    stopped = symcore.dedupe(pop, node_limit=1)
    assert stopped.stop_reason is symcore.StopReason.NODE_LIMIT
    with pytest.raises(RuntimeError):
        with saturate.session(rulesets.resolve("default"), 300) as s:
            s.insert("(union (Num 0.0) (Num 1.0))")     # poisons this scope only
            raise RuntimeError("failure inside the session")
    assert _summary(symcore.dedupe(pop)) == fresh
