"""`dedupe`'s and `simplify`'s time limits hold for the whole call: every phase (canonical pass,
also inside one big expression; numeric policy; e-graph insertion, saturation, extraction)
stops early enough for the work after it, priced at the speed measured during the call
(rules/budget.py).  These are limit tests, not speed tests: the bound is 1.1 x the limit plus
a generous constant for a loaded machine.  A result after a time stop is still sound."""

from __future__ import annotations

import random
import time

import pytest

from rules_numeric import points, same_where_finite
from symcore import SymcoreError, call, const, var
from symcore.rules import budget
from symcore.rules.api import StopReason, dedupe, simplify
from symcore.rules.canonical import canonical_all, clear_cache
from symcore.rules.policy import merge_candidates

_UN = ("sin", "cos", "exp", "log", "sqrt", "square", "neg", "abs", "tanh")
_BIN = ("add", "sub", "mul", "div")
SLACK = 0.5   # seconds: scheduling on a machine shared with other processes


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
    return [call(rng.choice(_BIN), _tree(rng, rng.randint(2, 8)), const(i + seed + 0.5))
            for i in range(n)]


def _with_variants(n: int, seed: int) -> list:
    # distinct bases, each also spelled two other ways: classes of three (when all are reached)
    rng = random.Random(seed)
    out = []
    for e in _adversarial(n, seed):
        out += [e, call("add", const(0.0), e), call("mul", e, const(1.0))]
    rng.shuffle(out)
    return out


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    _ = [[]]   # the collector's traversal of what the call allocated runs here: counted
    return out, time.perf_counter() - t


def _assert_partition(d, n: int) -> None:
    assert sorted(i for m in d.members for i in m) == list(range(n))
    assert all(d.class_of[i] == k for k, m in enumerate(d.members) for i in m)


def _assert_sound(d, pop: list, n_classes: int = 300) -> None:
    """Every member of a sample of classes (the multi-member ones first) equals its class's
    representative wherever the member is finite."""
    X = points(4, seed=1)
    order = sorted(range(len(d.members)), key=lambda k: -len(d.members[k]))
    for k in order[:n_classes]:
        for i in d.members[k]:
            assert same_where_finite(pop[i], d.representatives[k], X), (pop[i],
                                                                        d.representatives[k])


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
    _assert_partition(d, len(pop))
    assert d.stats["saturated_forms"] == 0


def test_the_collectors_tail_is_reserved(monkeypatch):
    # the objects allocated while the collector is paused are traversed after the call: their
    # count is priced too (here so high that nothing but the result fits)
    pop = _adversarial(400, seed=6)
    monkeypatch.setattr(budget, "GC_SECONDS_PER_OBJECT", 1.0)
    d = dedupe(pop, time_limit=60.0)
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert d.stats["saturated_forms"] == 0
    _assert_partition(d, len(pop))


def test_budget_prices_work_at_the_measured_speed():
    b = budget.Budget(10.0, 1000, time.perf_counter())
    idle = b.cost(1.0)
    slow = [3.0, 0.5, 0.5, 5.0, 5.0]   # times the idle cost, one measurement after another
    speeds = []
    for x in slow:
        b.calibrate(x * 5000 * 1e-6, 5000, 1e-6)
        speeds.append(b.speed)
    # the median of the last three (the upper of two), never below the idle speed: a single
    # slow measurement (a preemption) is ignored, a second one counts
    assert speeds == pytest.approx([3.0, 3.0, 1.0, 1.0, 5.0])
    assert b.cost(1.0) == pytest.approx(5.0 * idle)
    b.calibrate(1.0, 10, 1e-6)                    # too few inputs to measure: unchanged
    assert b.speed == pytest.approx(5.0)
    assert b.tail(egraph=True) > b.tail(egraph=False)
    assert b.tail(False, more_objects=1e6) > b.tail(False)
    assert budget.Budget(None, 10, 0.0).until(5.0) is None


def test_time_limit_holds_on_many_distinct_candidates():
    clear_cache()
    pop = _adversarial(40_000, seed=8)
    limit = 0.4
    d, elapsed = _timed(lambda: dedupe(pop, time_limit=limit))
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert elapsed <= 1.1 * limit + SLACK, d.stats["seconds"]
    _assert_partition(d, len(pop))


def test_time_limit_holds_when_the_canonical_forms_are_cached():
    # a second call (a search's next generation): the pass is instant, the numeric policy
    # over every form gets the time and must stop at its deadline
    pop = _adversarial(30_000, seed=9)
    canonical_all(pop)
    limit = 0.2
    d, elapsed = _timed(lambda: dedupe(pop, time_limit=limit))
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert elapsed <= 1.1 * limit + SLACK, d.stats["seconds"]
    _assert_partition(d, len(pop))


def test_time_limit_holds_in_the_e_graph_and_the_result_is_sound():
    # every form through the e-graph: insertion is cut to what fits, saturation and
    # extraction stop in time; merged classes are still one function each
    pop = _with_variants(3_000, seed=10) + _adversarial(12_000, seed=11)
    canonical_all(pop)
    limit = 0.6
    d, elapsed = _timed(lambda: dedupe(pop, time_limit=limit, saturation="full"))
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert elapsed <= 1.1 * limit + SLACK, d.stats["seconds"]
    _assert_partition(d, len(pop))
    _assert_sound(d, pop)


def test_result_after_a_time_stop_in_the_canonical_pass_is_sound():
    clear_cache()
    pop = _with_variants(10_000, seed=12)
    d = dedupe(pop, time_limit=0.3)
    assert d.stop_reason is StopReason.TIME_LIMIT
    _assert_partition(d, len(pop))
    # the pass was cut: the variants reached merged with their base, the others stay apart
    assert d.n_classes > 1.2 * 10_000
    assert max(len(m) for m in d.members) >= 3
    _assert_sound(d, pop)


def _smooth_tree(rng: random.Random, size: int):
    # finite everywhere (no constant folds to NaN, which would end a sum's pass early)
    if size <= 1:
        return var(rng.randrange(4)) if rng.random() < 0.7 else const(rng.choice((0.5, 2.0)))
    if size == 2 or rng.random() < 0.25:
        return call(rng.choice(("sin", "cos", "tanh", "square")), _smooth_tree(rng, size - 1))
    left = rng.randint(1, size - 2)
    return call(rng.choice(("add", "sub", "mul")), _smooth_tree(rng, left),
                _smooth_tree(rng, size - 1 - left))


def _long_sum(n: int, seed: int):
    rng = random.Random(seed)
    e = None
    for i in range(n):
        term = call("mul", _smooth_tree(rng, rng.randint(2, 6)), const(i + 0.5))
        e = term if e is None else call("add", e, term)
    return e


def test_time_limit_holds_inside_one_big_expression():
    # the canonical pass is quadratic in the terms of a sum (26 s for 2,000 terms): the
    # deadline is checked between its nodes, not only between inputs
    e = _long_sum(2_500, seed=13)
    limit = 0.3
    out, elapsed = _timed(lambda: simplify(e, time_limit=limit))
    assert out is e   # out of time: the input as written
    assert elapsed <= 1.1 * limit + SLACK
    other = _long_sum(2_500, seed=14)
    d, elapsed = _timed(lambda: dedupe([other, var(0), other], time_limit=limit))
    assert d.stop_reason is StopReason.TIME_LIMIT
    assert elapsed <= 1.1 * limit + SLACK
    assert d.class_of == [0, 1, 0]


@pytest.mark.parametrize("rules", ["default", "aggressive"])
def test_simplify_checks_its_time_limit_first(rules):
    # a bad limit is a typed error on every path (not "no time left": the input returned)
    with pytest.raises(SymcoreError, match="time_limit"):
        simplify(call("add", var(0), var(1)), rules=rules, time_limit=-1.0)


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
