"""Simplification of a whole system of equations (a dynamical system's right-hand side) for
evaluation speed: all equations in ONE e-graph, extracted under a DAG cost over all of them
together (the system compiles to one kernel that computes a shared subterm once)."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from symcore.errors import SymcoreError
from symcore.ir import Expr, topo
from symcore.types import CostName

from symcore.rules import rulesets
from symcore.rules.canonical import canonical_all
from symcore.rules.extract import AdditiveCost, Extractor, cost_model, dag_cost, tree_cost
from symcore.rules.language import INLINE_NODES, fact_directory, prepare_all, write_tables
from symcore.rules.saturate import Limits, session as open_session

__all__ = ["simplify_system", "system_cost", "CYCLES_RULES"]

#: the rules `simplify_system` uses by default: the sound default topics and the "cycles" topic
CYCLES_RULES = ("default", "cycles")
#: e-nodes per inserted node before saturation stops (and at least MIN_NODES)
NODES_PER_INSERTED = 40
MIN_NODES = 20_000
#: e-graphs above this many e-nodes skip the all-roots local search (Extractor.refine_roots)
REFINE_NODE_LIMIT = 30_000


def system_cost(exprs: Sequence[Expr], cost: Any = "cycles") -> float:
    """Cost of evaluating `exprs` together: under a DAG cost ("cycles") each distinct subterm
    once over all equations; otherwise the sum of the equations' tree costs."""
    fn = cost_model(cost)
    if isinstance(fn, AdditiveCost) and getattr(fn, "dag", False):
        return dag_cost(exprs, fn)
    return sum(tree_cost(e, fn) for e in exprs)


def simplify_system(exprs: Sequence[Expr], *, cost: CostName | Mapping[str, float] |
                    Callable[..., float] = "cycles",
                    rules: str | Sequence[str] = CYCLES_RULES, iterations: int = 8,
                    node_limit: int | None = None,
                    time_limit: float | None = 10.0) -> list[Expr]:
    """The equations rewritten to evaluate faster together: one e-graph over all of them
    (canonical forms first), the cheapest DAG over all roots (`Extractor.best`, then
    `Extractor.refine_roots`), and a guard: an equation keeps its input form where that makes
    the system cheaper, so the result never costs more than the input (`system_cost`).
    Sound under the default rules' contract (equal wherever the input is finite, up to
    rounding)."""
    eqs = list(exprs)
    if not eqs:
        raise SymcoreError("simplify_system needs at least one equation")
    for i, e in enumerate(eqs):
        if not isinstance(e, Expr):
            raise SymcoreError(f"equation {i} is not an Expr but {type(e).__name__}")
    topics = rulesets.resolve(rules)
    if "params" in topics:
        raise SymcoreError("simplify_system keeps parameter values: the 'params' rules "
                           "(which fuse parameters) do not apply")
    fn = cost_model(cost)
    limits = Limits(iterations, node_limit, time_limit)
    limits.check()
    use_canon = set(rulesets.PRESETS["default"]) <= set(topics)
    start = canonical_all(eqs) if use_canon else eqs
    prepared, names = prepare_all(start)
    with open_session(topics, 300) as session:
        if len(topo(prepared)) <= INLINE_NODES:
            text, node_ids = write_tables(prepared, None)
            session.insert(text)
        else:
            with fact_directory(len(topo(prepared))) as tmp:
                text, node_ids = write_tables(prepared, tmp)
                session.insert(text)
        inserted = session.enodes()
        session.saturate(Limits(iterations, node_limit or max(
            MIN_NODES, NODES_PER_INSERTED * inserted), None), inserted, seconds=time_limit)
        ex = Extractor(session.egraph, session.freeze())
    _, choice = ex.best(fn)
    roots = [ex.roots[n] for n in node_ids]
    if isinstance(fn, AdditiveCost) and getattr(fn, "dag", False) \
            and len(ex.node_op) <= REFINE_NODE_LIMIT:
        choice = ex.refine_roots(fn, choice, roots)
    got = ex.build(roots, choice, names)
    return _guarded(eqs, [start, got], cost)


def _guarded(inputs: list[Expr], candidates: list[list[Expr]], cost: Any) -> list[Expr]:
    """The cheapest system: the best whole candidate, then each equation replaced by any
    candidate's form of it while that lowers the system's cost (a form cheaper alone may stop
    sharing a subterm with another equation, and the other way round)."""
    cur = list(inputs)
    best = system_cost(cur, cost)
    for cand in candidates:
        c = system_cost(cand, cost)
        if c < best:
            cur, best = list(cand), c
    for _ in range(2):
        changed = False
        for i in range(len(cur)):
            for form in [inputs[i]] + [cand[i] for cand in candidates]:
                if form is cur[i]:
                    continue
                trial = cur[:i] + [form] + cur[i + 1:]
                c = system_cost(trial, cost)
                if c < best:
                    cur, best, changed = trial, c, True
        if not changed:
            break
    return cur
