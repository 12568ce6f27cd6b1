"""Public API of the e-graph stage: `simplify` one expression, `dedupe` a whole population in
one e-graph.  Only IR travels in and out; egglog objects stay inside symcore.rules.

Soundness contract of the default rules: for finite inputs, wherever the original expression is
finite the result has the same value up to floating rounding (rounding includes an intermediate
that over- or underflows, and the sign of a zero).  `aggressive` adds rules that are wrong on part
of the domain (log(exp x) -> x, x*0 -> 0 for any x, ...).  `params` fuses fittable parameters:
the result spans the same family of functions, with parameters renumbered (values must be refit).
"""

from __future__ import annotations

import functools
import gc
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from symcore.errors import SymcoreError
from symcore.ir import Expr, topo
from symcore.types import CostName, RulesPreset

from symcore.rules import budget as costs_of
from symcore.rules import rulesets
from symcore.rules.budget import Budget, gc_paused
from symcore.rules.canonical import _Canon, _equivalent_until, canonical
from symcore.rules.canonical_compact import compact
from symcore.rules.canonical_fixpoint import needs_saturation
from symcore.rules.policy import merge_candidates
from symcore.rules.extract import Extractor, cost_model, renumber_all, size_cost, tree_cost
from symcore.rules.language import (INLINE_NODES, fact_directory, prepare_all, single_use_params,
                                    write_tables)
from symcore.rules.saturate import Limits, StopReason, session as open_session

__all__ = ["simplify", "dedupe", "DedupeResult", "StopReason"]

MATCH_LIMIT_PER_INPUT = 1    # back-off match limit = population size (measured: 10x N grew 5x the
#                                e-nodes for the same classes on 10,000 inputs)
MIN_MATCH_LIMIT = 300
#: topics whose rewrites the canonicalising pass performs (it runs when all are chosen)
CANONICAL_TOPICS = ("fold", "identities", "powers", "trig", "protected", "commute", "assoc")
#: default e-node limit: this many times the nodes inserted (canonical forms), at least
#: MIN_NODE_LIMIT (measured: more saturation found no further merges on the real populations)
NODES_PER_INSERTED = 8
MIN_NODE_LIMIT = 20_000
#: estimated peak bytes of egglog per e-node (tables, indexes, analysis relations)
BYTES_PER_ENODE = 1_000
DEFAULT_MEMORY_FRACTION = 0.25
#: inputs of the first chunk of the canonical pass; each next chunk doubles, up to 1/32 of the
#: population (between chunks the tail's speed is measured and the deadline recomputed)
FIRST_CANONICAL_CHUNK = 8192
#: roots of more (tree) nodes than this are canonicalised a slice of nodes per call of the
#: pass, which checks its deadline between roots only (one node of a long sum can cost
#: milliseconds: the pass is quadratic in the terms of a sum); the slice adapts so that a
#: call lasts about SLICE_SECONDS (a new call loses the pass' memo: small slices cost more)
BIG_ROOT = 256
SLICE_SECONDS = 0.01
#: objects the canonical pass allocates per input, until measured (measured 6-9 on random
#: candidates of 3-10 nodes)
OBJECTS_PER_INPUT = 10.0


@dataclass(frozen=True)
class DedupeResult:
    """What `dedupe` returns for a population: `class_of[i]` is the class of input i, class k has
    `members[k]` (input indices) and `representatives[k]` (its cheapest extracted term)."""

    class_of: list[int]
    representatives: list[Expr]
    members: list[list[int]]
    stop_reason: StopReason
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.representatives)

    def __len__(self) -> int:
        return len(self.representatives)


def __getattr__(name: str) -> Any:
    # the result class was called `Dedup` in 0.1; the old name works for one more release
    if name == "Dedup":
        import warnings
        warnings.warn("symcore.rules.api.Dedup is renamed DedupeResult", DeprecationWarning,
                      stacklevel=2)
        return DedupeResult
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_exprs(exprs: Iterable[Expr]) -> list[Expr]:
    if isinstance(exprs, Expr):
        raise SymcoreError("dedupe takes a sequence of expressions, got one Expr")
    out = list(exprs)
    for i, e in enumerate(out):
        if not isinstance(e, Expr):
            raise SymcoreError(f"input {i} is not an Expr but {type(e).__name__}")
    return out


def _memory_budget(memory_limit: float | None) -> float:
    if memory_limit is not None:
        if isinstance(memory_limit, bool) or not isinstance(memory_limit, (int, float)) or \
                not memory_limit > 0:
            raise SymcoreError(f"memory_limit must be a positive number of bytes, "
                               f"got {memory_limit!r}")
        return float(memory_limit)
    try:
        phys = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        phys = 8 << 30
    return DEFAULT_MEMORY_FRACTION * phys


def _chunks(uniq: list[Expr], max_nodes: int) -> list[list[int]]:
    """Indices of `uniq` in groups whose node count (over each group's shared DAG, counted
    per expression as an upper bound) stays within `max_nodes`."""
    out: list[list[int]] = [[]]
    used = 0
    for i, e in enumerate(uniq):
        n = e.size if e.size < max_nodes else len(topo([e]))
        if out[-1] and used + n > max_nodes:
            out.append([])
            used = 0
        out[-1].append(i)
        used += n
    return out


def _without_gc(fn: Callable[..., DedupeResult]) -> Callable[..., DedupeResult]:
    # a cold pass builds tens of thousands of (acyclic) nodes per 1,000 inputs: with the cyclic
    # GC on, its full collections traverse every live Expr again and again (measured 1-9 % of
    # a cold dedupe of 10,000)
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> DedupeResult:
        with gc_paused():
            return fn(*args, **kwargs)
    return run


@_without_gc
def dedupe(exprs: Iterable[Expr], *, rules: RulesPreset | Sequence[str] = "default",
           cost: CostName | Mapping[str, float] | Callable[..., float] | None = None,
           iterations: int = 8, node_limit: int | None = None,
           time_limit: float | None = 10.0,
           memory_limit: float | None = None,
           saturation: Literal["auto", "full"] = "auto") -> DedupeResult:
    """Deduplicate a population: the canonicalising pass (symcore.rules.canonical) first, which
    merges most equal candidates in linear time; then the distinct canonical forms are
    saturated in ONE e-graph (inputs whose roots share an e-class are one function); the
    representatives are the canonical forms of the extracted terms, and classes whose
    representatives are identical are merged, so equal classes print identically.

    Limits hold for the whole call, extraction included: `time_limit` seconds (a saturation
    step starts only when its predicted time, and the extraction after it, fit), `node_limit`
    e-nodes (a step that crosses it is undone), `memory_limit` bytes (default: a quarter of
    physical memory; estimated per e-node before anything is inserted: a population too large
    is saturated in chunks, a single candidate too large keeps its canonical form).
    `stop_reason` names the limit that stopped it.

    `rules`: a preset ('default', 'aggressive', 'params') or a sequence of topic/preset names.
    `cost`: 'size' (ops-table weights), 'params' (parameter count, then size), a dict of per-op
    weights, or a callable (op, child_costs) -> cost; None means 'params' when the params rules
    are on, else 'size'.
    `saturation`: 'auto' (with the default rules) saturates only the canonical forms that
    another form matches numerically (symcore.rules.policy: the others cannot merge under sound
    rules, and keep their canonical form as representative); 'full' saturates every form."""
    t0 = time.perf_counter()
    items = _check_exprs(exprs)
    topics = rulesets.resolve(rules)
    fn = cost_model(_auto_cost(cost, topics))
    limits = Limits(iterations, node_limit, time_limit)
    limits.check()
    budget_bytes = _memory_budget(memory_limit)
    params_mode = "params" in topics
    stats: dict[str, Any] = {"inputs": len(items)}
    # every phase stops early enough for the work after it (result building, extraction),
    # priced at the speed measured during the call (rules/budget.py)
    # params mode renumbers every representative: a walk over its tree (sizes capped: a form's
    # tree can be exponentially larger than its DAG; the cap only affects the reserve)
    budget = Budget(time_limit, len(items), t0, renumber_nodes=sum(
        min(e.size, 64) for e in items) if params_mode and time_limit is not None else 0)

    # the canonical pass applies the rewrites of the default topics: with a narrower choice of
    # topics the e-graph alone decides (x + y and y + x stay apart without "commute")
    if saturation not in ("auto", "full"):
        raise SymcoreError(f"saturation must be 'auto' or 'full', got {saturation!r}")
    use_canon = set(CANONICAL_TOPICS) <= set(topics)
    stop = StopReason.SATURATED
    group_of, uniq, complete = _grouped(items, use_canon, budget)
    if not complete:   # out of time: the rest stay as written, no e-graph
        stop = StopReason.TIME_LIMIT
    t1 = time.perf_counter()
    stats["canonical_classes"] = len(uniq)
    if stop is StopReason.TIME_LIMIT:
        sat = []
    elif saturation == "auto" and use_canon and set(topics) == set(rulesets.PRESETS["default"]):
        sat = merge_candidates(uniq, budget.until(budget.tail(egraph=False)))
        if sat is None:   # out of time deciding: no e-graph
            stop, sat = StopReason.TIME_LIMIT, []
    else:
        sat = list(range(len(uniq)))
    stats["saturated_forms"] = len(sat)
    t_pol = time.perf_counter()

    # e-node budget: the node limit, and what memory holds (a guarded step keeps one copy)
    max_nodes = int(budget_bytes / (2 * BYTES_PER_ENODE))
    default_nodes = max(MIN_NODE_LIMIT, NODES_PER_INSERTED * sum(min(uniq[i].size, 64)
                                                             for i in sat))
    limit_nodes = min(node_limit or default_nodes, max_nodes)
    if limit_nodes < (node_limit or default_nodes) and sat:
        stop = StopReason.MEMORY_LIMIT
    # a chunk is inserted only if it leaves room to saturate (a quarter of the budget)
    room = max(1, max_nodes // 4)
    chunks = [[sat[j] for j in c] for c in _chunks([uniq[i] for i in sat], room)] if sat else []
    if len(chunks) > 1:
        stop = StopReason.MEMORY_LIMIT
    rep_of_uniq: list[Expr] = list(uniq)
    eclass_of = list(range(len(uniq)))   # one class per canonical form until merged
    enodes = eclasses = inserted_total = iterations_done = 0
    t_sat = t_ins = 0.0
    for chunk in chunks:
        big = [i for i in chunk if uniq[i].size > room and len(topo([uniq[i]])) > room]
        if big:   # refused before insertion: keeps its canonical form
            stop = StopReason.MEMORY_LIMIT
            chunk = [i for i in chunk if i not in set(big)]
            if not chunk:
                continue
        fits = _fitting([uniq[i] for i in chunk], room, budget)
        if fits < len(chunk):   # the rest keep their canonical forms, as their own classes
            if _rank(stop) < _rank(StopReason.TIME_LIMIT):
                stop = StopReason.TIME_LIMIT
            chunk = chunk[:fits]
            if not chunk:
                break
        res = _saturate_chunk([uniq[i] for i in chunk], topics, fn, params_mode, limits,
                              limit_nodes, budget)
        sub_stop, cls, reps, info = res
        enodes += info["enodes"]
        eclasses += info["eclasses"]
        inserted_total += info["enodes_inserted"]
        iterations_done = max(iterations_done, info["iterations"])
        t_sat += info["saturate"]
        t_ins += info["insert"]
        if _rank(sub_stop) > _rank(stop):
            stop = sub_stop
        base = len(rep_of_uniq)
        for j, i in enumerate(chunk):
            eclass_of[i] = base + cls[j]
        rep_of_uniq.extend(reps)
    t2 = time.perf_counter()
    reps, class_of, members, late = _result(uniq, rep_of_uniq, eclass_of, group_of, use_canon,
                                            params_mode, budget)
    if late:
        stop = StopReason.TIME_LIMIT
    t3 = time.perf_counter()
    stats.update({"enodes_inserted": inserted_total, "enodes": enodes, "eclasses": eclasses,
                  "chunks": len(chunks),
                  "iterations": iterations_done, "node_limit": limit_nodes,
                  "memory_limit": budget_bytes, "speed": budget.speed,
                  "seconds": {"canonical": t1 - t0, "policy": t_pol - t1,
                              "insert": t1 - t0 + t_ins, "saturate": t_sat,
                              "egraph": t2 - t1, "extract": t3 - t2, "total": t3 - t0}})
    return DedupeResult(class_of, reps, members, stop, stats)


def _grouped(items: list[Expr], use_canon: bool, budget: Budget
             ) -> tuple[list[int], list[Expr], bool]:
    """The group of every input (distinct canonical forms, or distinct inputs without the
    canonical pass, in first-seen order), the distinct forms, and whether the pass was complete.

    The pass runs in chunks, each with a deadline that leaves room for the tail (grouping the
    rest, building the result), whose speed is measured on every chunk's grouping.  Past the
    deadline the rest keep the forms cached by earlier passes, or stay as written: they merge
    only with identical forms."""
    index: dict[Expr, int] = {}
    group_of: list[int] = []
    complete = True
    clock = time.perf_counter
    n, a, step = len(items), 0, FIRST_CANONICAL_CHUNK
    young0, per_input = gc.get_count()[0], OBJECTS_PER_INPUT
    while a < n:
        part = items[a:a + step]
        if a:   # objects the pass allocates per input (the collector traverses them later)
            per_input = max(0.0, (gc.get_count()[0] - young0) / a)
        a += len(part)
        if not use_canon:
            forms: list[Expr | None] = part  # type: ignore[assignment]
        elif complete:
            rest = budget.cost(costs_of.INDEX_SECONDS_PER_INPUT * (n - a))
            tail = budget.tail(False, more_objects=per_input * len(part))
            forms, complete = _canonical_until(part, budget.until(tail + rest))
        else:   # a deadline in the past: only the forms cached by earlier passes
            forms, _ = _equivalent_until(part, 0.0)
        ts = clock()
        setd = index.setdefault
        group_of += [setd(e if c is None else c, len(index)) for e, c in zip(part, forms)]
        budget.calibrate(clock() - ts, len(part), costs_of.INDEX_SECONDS_PER_INPUT)
        step = min(2 * step, max(FIRST_CANONICAL_CHUNK, n // 32))
    return group_of, list(index), complete


def _canonical_until(roots: list[Expr], deadline: float | None
                     ) -> tuple[list[Expr | None], bool]:
    """canonical._equivalent_until, checking the deadline inside big roots too: their nodes
    are canonicalised first, a few per call, children first (the pass caches every node's
    form, so the call on the roots then finds them done)."""
    if deadline is not None:
        for r in roots:
            if r.size <= BIG_ROOT or _equivalent_until([r], 0.0)[0][0] is not None:
                continue   # small, or its form cached by an earlier pass
            order = topo([r])
            a, step = 0, 8
            while a < len(order):
                ts = time.perf_counter()
                if not _equivalent_until(order[a:a + step], deadline)[1]:
                    return _equivalent_until(roots, 0.0)[0], False
                a += step
                dt = time.perf_counter() - ts
                # capped: after cached nodes (no time) the next uncached ones may be slow
                step = min(64, 2 * step) if dt < SLICE_SECONDS / 2 else \
                    max(1, step // 2) if dt > 2 * SLICE_SECONDS else step
    return _equivalent_until(roots, deadline)


def _fitting(forms: list[Expr], room: int, budget: Budget) -> int:
    """How many of `forms` (a prefix) fit in the time left: their insertion, extraction of at
    least the inserted e-nodes, the building of their terms, and the result after them."""
    left = budget.left(budget.tail(egraph=True))
    if left is None:
        return len(forms)
    per_node = budget.cost(costs_of.INSERT_SECONDS_PER_NODE + costs_of.EXTRACT_SECONDS_PER_ENODE)
    per_root = budget.cost(costs_of.BUILD_SECONDS_PER_ROOT)
    spent = 0.0
    for k, e in enumerate(forms):
        # nodes: the tree size, an upper bound of what the form adds to the e-graph
        spent += per_root + per_node * min(e.size, room)
        if spent > left:
            return k
    return len(forms)


def _result(uniq: list[Expr], rep_of_uniq: list[Expr], eclass_of: list[int],
            group_of: list[int], use_canon: bool, params_mode: bool, budget: Budget
            ) -> tuple[list[Expr], list[int], list[list[int]], bool]:
    """(representatives, class_of, members, whether the canonical pass over the extracted
    terms ran out of time: those not reached stay as extracted)."""
    if len(rep_of_uniq) == len(uniq):
        # no e-graph ran (out of time, or nothing to saturate): each canonical form is its own
        # class in first-seen order, as the general path below gives, at a fifth of its cost
        # per input (the tail after a time limit on millions of inputs)
        reps = renumber_all(list(uniq)) if params_mode else list(uniq)
        members0: list[list[int]] = [[] for _ in reps]
        for i, k in enumerate(group_of):
            members0[k].append(i)
        return reps, group_of, members0, False
    late = False
    # canonical representatives; equal ones merge classes (across chunks too)
    used = sorted(set(eclass_of))
    pos = {k: j for j, k in enumerate(used)}
    reps_used = [rep_of_uniq[k] if k >= len(uniq) else uniq[k] for k in used]
    if use_canon and not params_mode:
        # only extracted terms need the pass: the others are canonical forms already (or, past
        # the time limit, inputs left as written)
        ext = [j for j, k in enumerate(used) if k >= len(uniq)]
        # stops early enough for the class merging and class lists after it
        forms, complete = _canonical_until([reps_used[j] for j in ext],
                                           budget.until(budget.tail(egraph=True)))
        late = not complete
        for j, r in zip(ext, forms):
            if r is not None:
                reps_used[j] = r
    final: dict[Expr, int] = {}
    k_of_used = [final.setdefault(r, len(final)) for r in reps_used]
    order: dict[int, int] = {}
    class_of = [order.setdefault(k_of_used[pos[eclass_of[g]]], len(order)) for g in group_of]
    inv = {k: r for r, k in final.items()}
    reps = [inv[k] for k in order]
    if params_mode:
        reps = renumber_all(reps)
    members: list[list[int]] = [[] for _ in reps]
    for i, k in enumerate(class_of):
        members[k].append(i)
    return reps, class_of, members, late


_RANK = {StopReason.SATURATED: 0, StopReason.ITERATION_LIMIT: 1, StopReason.NODE_LIMIT: 2,
         StopReason.TIME_LIMIT: 3, StopReason.MEMORY_LIMIT: 4}


def _rank(stop: StopReason) -> int:
    return _RANK.get(stop, 1)


def _saturate_chunk(items: list[Expr], topics: Sequence[str], fn: Any, params_mode: bool,
                    limits: Limits, node_limit: int, budget: Budget
                    ) -> tuple[StopReason, list[int], list[Expr], dict[str, Any]]:
    """One e-graph over `items` (distinct canonical forms): e-class index per item (dense,
    first-seen order) and the extracted term of every class.  Saturation steps only while the
    extraction after them, the terms' building and the result still fit in `budget`."""
    free = [single_use_params(e) for e in items] if params_mode else None
    t_in = time.perf_counter()
    prepared, names = prepare_all(items, free)
    with open_session(topics, max(MIN_MATCH_LIMIT, MATCH_LIMIT_PER_INPUT * len(items))) \
            as session:
        order = topo(prepared)
        if len(order) <= INLINE_NODES:
            text, node_ids = write_tables(prepared, None, order)
            session.insert(text)
        else:
            with fact_directory(len(order)) as tmp:
                text, node_ids = write_tables(prepared, tmp, order)
                session.insert(text)
        inserted = session.enodes()
        ts = time.perf_counter()
        budget.calibrate(ts - t_in, inserted, costs_of.INSERT_SECONDS_PER_NODE)
        after = budget.tail(egraph=True) + \
            budget.cost(costs_of.BUILD_SECONDS_PER_ROOT * len(items))
        seconds = budget.left(after)
        per_enode = budget.cost(costs_of.EXTRACT_SECONDS_PER_ENODE)
        if seconds is not None and seconds <= per_enode * inserted:
            stop = StopReason.TIME_LIMIT
        else:
            stop = session.saturate(Limits(limits.iterations, node_limit, None), inserted,
                                    seconds=None if seconds is None else max(0.0, seconds),
                                    reserve_per_enode=per_enode)
        t_sat = time.perf_counter() - ts
        frozen = session.freeze()
        ex = Extractor(session.egraph, frozen)
        iterations = session.iterations
    _, choice = ex.best(fn)
    root_cls = [ex.roots[n] for n in node_ids]
    order: dict[int, int] = {}
    cls = [order.setdefault(c, len(order)) for c in root_cls]
    reps = ex.build(list(order), choice, names)
    return stop, cls, reps, {"enodes": len(ex.node_op), "eclasses": ex.n_classes,
                             "enodes_inserted": inserted,
                             "iterations": iterations, "saturate": t_sat,
                             "insert": ts - t_in}


def _auto_cost(cost: Any, topics: Sequence[str]) -> Any:
    if cost is None:
        return "params" if "params" in topics else "size"
    return cost


def simplify(expr: Expr, *, rules: RulesPreset | Sequence[str] = "default",
             cost: CostName | Mapping[str, float] | Callable[..., float] | None = None,
             iterations: int = 8, node_limit: int | None = None,
             time_limit: float | None = 10.0) -> Expr:
    """The cheapest equivalent of `expr` found under `cost` (never costlier than `expr`).  With
    the default rules the result is the compact spelling of the canonical form (a function of
    the form alone), so inputs that `dedupe` puts in one class print alike, except where that
    spelling costs more than the input itself (then `expr` is returned)."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"simplify takes an Expr, got {type(expr).__name__}")
    t0 = time.perf_counter()
    topics = rulesets.resolve(rules)
    fn = cost_model(_auto_cost(cost, topics))
    Limits(iterations, node_limit, time_limit).check()
    out = None
    deadline = None if time_limit is None else t0 + time_limit
    if fn is size_cost and set(topics) == set(rulesets.PRESETS["default"]):
        # the canonical form, when saturation could not change it (canonical_fixpoint): no
        # e-graph (its fixed cost per call is milliseconds, the pass' is microseconds)
        # the pass leaves room for the walks after it (saturation test, compact spelling,
        # both costs): linear in the nodes (the tree size bounds them)
        after = Budget(time_limit, 1, t0).cost(
            costs_of.SIMPLIFY_TAIL_SECONDS_PER_NODE * min(expr.size, 1 << 20))
        forms, complete = _canonical_until([expr], None if deadline is None else
                                           deadline - after)
        if not complete:   # out of time: the input as written (never costlier)
            return expr
        if not needs_saturation(forms[0], _Canon()):
            out = _compacted(forms[0], fn, topics)
    if out is None:
        # the e-graph gets the time left (the limit holds for the whole call)
        left = None if deadline is None else deadline - time.perf_counter()
        if left is not None and left <= 0:
            return expr
        out = _simplify_saturated(expr, rules, cost, iterations, node_limit, left)
    if tree_cost(out, fn) > tree_cost(expr, fn):
        return expr
    return out


def _simplify_saturated(expr: Expr, rules: Any, cost: Any, iterations: int,
                        node_limit: int | None, time_limit: float | None) -> Expr:
    """`simplify` through the e-graph, always (the fast path's reference)."""
    d = dedupe([expr], rules=rules, cost=cost, iterations=iterations, node_limit=node_limit,
               time_limit=time_limit, saturation="full")
    topics = rulesets.resolve(rules)
    return _compacted(d.representatives[0], cost_model(_auto_cost(cost, topics)), topics)


def _compacted(form: Expr, fn: Any, topics: Sequence[str]) -> Expr:
    """The compact spelling of a canonical form (rules/canonical_compact) when it costs no more:
    a function of the form alone, so members of one class print alike even where the form
    costs more than some member (which `simplify` would otherwise return as written)."""
    if set(topics) != set(rulesets.PRESETS["default"]):
        return form
    c = compact(form)
    return c if c is not form and tree_cost(c, fn) <= tree_cost(form, fn) else form
