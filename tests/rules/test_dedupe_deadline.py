"""`dedupe`'s time limit holds for the whole call: every phase (canonical pass, numeric policy,
e-graph) stops early enough for the result building after it, which is reserved per input."""

from __future__ import annotations

import random
import time

from symcore import call, const, var
from symcore.rules import budget
from symcore.rules.api import StopReason, dedupe
from symcore.rules.canonical import canonical_all
from symcore.rules.policy import merge_candidates

_UN = ("sin", "cos", "exp", "log", "sqrt", "square", "neg", "abs", "tanh")
_BIN = ("add", "sub", "mul", "div")


def _tree(rng: random.Random, size: int):
    if size <= 1:
        return var(rng.randrange(4)) if rng.random() < 0.7 else const(rng.choice((0.5, 2.0)))
    if size == 2 or rng.random() < 0.25:
        return call(rng.choice(_UN), _tree(rng, size - 1))
    left = rng.randint(1, size - 2)
    return call(rng.choice(_BIN), _tree(rng, left), _tree(rng, size - 1 - left))


def _adversarial(n: int, seed: int = 7) -> list:
    # all distinct (a different constant each): nothing merges, every phase sees every input
    rng = random.Random(seed)
    return [call(rng.choice(_BIN), _tree(rng, rng.randint(2, 8)), const(i + 0.5))
            for i in range(n)]


def test_policy_stops_at_its_deadline():
    forms = list(dict.fromkeys(canonical_all(_adversarial(300, seed=3))))
    forms += [call("add", f, const(0.0)) for f in forms[:20]]   # some do match numerically
    assert merge_candidates(forms, deadline=time.perf_counter() - 1.0) is None
    assert len(merge_candidates(forms, deadline=time.perf_counter() + 60.0)) >= 20
    assert merge_candidates(forms) == merge_candidates(forms, deadline=None)


def test_result_building_is_reserved_from_the_time_limit(monkeypatch):
    pop = _adversarial(400, seed=5)
    assert dedupe(pop, time_limit=60.0).stop_reason is not StopReason.TIME_LIMIT
    # a reserve larger than the limit: no phase may start, the result is still built
    monkeypatch.setattr(budget, "RESULT_SECONDS_PER_INPUT", 1.0)
    d = dedupe(pop, time_limit=60.0)
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert sorted(i for m in d.members for i in m) == list(range(len(pop)))
    assert d.stats["saturated_forms"] == 0


def test_time_limit_holds_on_many_distinct_candidates():
    pop = _adversarial(20_000)
    limit = 0.4
    t = time.perf_counter()
    d = dedupe(pop, time_limit=limit)
    elapsed = time.perf_counter() - t
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert len(d.class_of) == len(pop)
    assert elapsed <= 1.1 * limit + 1.0, d.stats["seconds"]   # generous: a loaded machine


def test_classes_without_an_e_graph_keep_first_seen_order():
    base = _adversarial(60, seed=11)
    pop = [base[i % 30] if i % 3 else base[i] for i in range(60)]   # repeats among them
    pop.append(call("add", const(0.0), base[1]))                  # equal to base[1] canonically
    d = dedupe(pop, time_limit=60.0)
    assert d.stats["chunks"] == 0
    assert [min(m) for m in d.members] == sorted(min(m) for m in d.members)
    assert all(d.class_of[i] == k for k, m in enumerate(d.members) for i in m)
    assert d.class_of[-1] == d.class_of[1]
    assert sorted(i for m in d.members for i in m) == list(range(len(pop)))
