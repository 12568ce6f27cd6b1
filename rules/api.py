"""Public API of the e-graph stage: `simplify` one expression, `dedupe` a whole population in
one e-graph.  Only IR travels in and out; egglog objects stay inside symcore.rules.

Soundness contract of the default rules: for finite inputs, wherever the original expression is
finite the result has the same value up to floating rounding (rounding includes an intermediate
that over- or underflows, and the sign of a zero).  `aggressive` adds rules that are wrong on part
of the domain (log(exp x) -> x, x*0 -> 0 for any x, ...).  `params` fuses fittable parameters:
the result spans the same family of functions, with parameters renumbered (values must be refit).
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Sequence

from symcore.errors import SymcoreError
from symcore.ir import Expr
from symcore.types import CostName, RulesPreset

from symcore.rules import rulesets
from symcore.rules.extract import Extractor, cost_model, renumber_all, tree_cost
from symcore.rules.language import prepare_all, single_use_params, write_tables
from symcore.rules.saturate import Limits, StopReason, session as open_session

__all__ = ["simplify", "dedupe", "DedupeResult", "StopReason"]

MATCH_LIMIT_PER_INPUT = 1    # back-off match limit = population size (measured: 10x N grew 5x the
#                                e-nodes for the same classes on 10,000 inputs)
MIN_MATCH_LIMIT = 300


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


def dedupe(exprs: Iterable[Expr], *, rules: RulesPreset | Sequence[str] = "default",
           cost: CostName | Mapping[str, float] | Callable[..., float] | None = None,
           iterations: int = 8, node_limit: int | None = None,
           time_limit: float | None = 10.0) -> DedupeResult:
    """Saturate the whole population in ONE e-graph; inputs whose roots share an e-class are one
    function.  Limits (iterations, e-nodes, seconds) are checked after every iteration.

    `rules`: a preset ('default', 'aggressive', 'params') or a sequence of topic/preset names.
    `cost`: 'size' (ops-table weights), 'params' (parameter count, then size), a dict of per-op
    weights, or a callable (op, child_costs) -> cost; None means 'params' when the params rules
    are on, else 'size'."""
    items = _check_exprs(exprs)
    topics = rulesets.resolve(rules)
    fn = cost_model(_auto_cost(cost, topics))
    limits = Limits(iterations, node_limit, time_limit)
    limits.check()
    params_mode = "params" in topics
    stats: dict[str, Any] = {"inputs": len(items)}

    t0 = time.perf_counter()
    free = [single_use_params(e) for e in items] if params_mode else None
    prepared, names = prepare_all(items, free)
    with open_session(topics, max(MIN_MATCH_LIMIT, MATCH_LIMIT_PER_INPUT * len(items))) \
            as session:
        with tempfile.TemporaryDirectory(prefix="symcore-egg-") as tmp:
            text, node_ids = write_tables(prepared, tmp)
            session.insert(text)
        inserted = session.enodes()
        t1 = time.perf_counter()
        stop = session.saturate(limits, inserted)
        t2 = time.perf_counter()
        frozen = session.freeze()
        ex = Extractor(session.egraph, frozen)
        iterations = session.iterations
    _, choice = ex.best(fn)
    root_cls = [ex.roots[n] for n in node_ids]
    order: dict[int, int] = {}
    class_of = [order.setdefault(c, len(order)) for c in root_cls]
    classes = list(order)
    reps = ex.build(classes, choice, names)
    if params_mode:
        reps = renumber_all(reps)
    members: list[list[int]] = [[] for _ in classes]
    for i, k in enumerate(class_of):
        members[k].append(i)
    t3 = time.perf_counter()
    stats.update({"enodes_inserted": inserted, "enodes": len(ex.node_op),
                  "eclasses": ex.n_classes, "iterations": iterations,
                  "seconds": {"insert": t1 - t0, "saturate": t2 - t1, "extract": t3 - t2,
                              "total": t3 - t0}})
    return DedupeResult(class_of, reps, members, stop, stats)


def _auto_cost(cost: Any, topics: Sequence[str]) -> Any:
    if cost is None:
        return "params" if "params" in topics else "size"
    return cost


def simplify(expr: Expr, *, rules: RulesPreset | Sequence[str] = "default",
             cost: CostName | Mapping[str, float] | Callable[..., float] | None = None,
             iterations: int = 8, node_limit: int | None = None,
             time_limit: float | None = 10.0) -> Expr:
    """The cheapest equivalent of `expr` found under `cost` (never costlier than `expr`)."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"simplify takes an Expr, got {type(expr).__name__}")
    d = dedupe([expr], rules=rules, cost=cost, iterations=iterations, node_limit=node_limit,
               time_limit=time_limit)
    out = d.representatives[0]
    fn = cost_model(_auto_cost(cost, rulesets.resolve(rules)))
    if tree_cost(out, fn) > tree_cost(expr, fn):
        return expr
    return out
