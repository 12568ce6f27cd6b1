"""Extraction cost models: additive per-node weights (size, parameter count, user weights) and
estimated CPU cycles (a DAG cost: a shared subterm is paid once); tree and DAG costs of an IR."""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from symcore.errors import SymcoreError
from symcore.ir import Expr, topo
from symcore.ops import OPS

#: lexicographic weight of one parameter in the "params" cost (parameter count, then size)
PARAM_WEIGHT = 1e6

CostFn = Callable[[str, tuple[float, ...]], float]


class AdditiveCost:
    """A cost that is a per-node weight plus the children's costs (size, params, weights).
    Such costs are extracted with a vectorised fixpoint instead of a Python priority queue."""

    def __init__(self, weights: Mapping[str, float] | None = None, param_weight: float = 0.0):
        self.weights = dict(weights or {})
        self.param_weight = param_weight

    def base(self, op: str) -> float:
        w = self.weights.get(op)
        if w is None:
            w = OPS[op].cost if op in OPS else 1.0
        return w + (self.param_weight if op == "param" else 0.0)

    def __call__(self, op: str, kids: tuple[float, ...]) -> float:
        return self.base(op) + sum(kids)


#: cycles of an op without a `cycles` estimate (a libm call), and of the leaves (a load of a
#: variable or parameter, a constant folded into an instruction)
DEFAULT_CYCLES = 40.0
LEAF_CYCLES = {"var": 1.0, "param": 1.0, "const": 0.5}


#: e-graphs above this many e-nodes are extracted under "cycles" as trees (the DAG pass keeps
#: one closure per e-class: memory and time grow with nodes x depth)
DAG_NODE_LIMIT = 50_000


class CyclesCost(AdditiveCost):
    """Estimated CPU cycles: each op's `cycles` field (ops table), leaves from LEAF_CYCLES.
    A DAG cost (`dag`): a subterm computed once is paid once however often it is used, so the
    extraction may share a reciprocal or a common factor between uses."""

    dag = True
    #: weight factor of an op whose operands hold no variable (parameters and constants only):
    #: the vectorised rhs hoists it out of its loop over states, and in the integrator it runs
    #: beside the state's loads, off the path from state to derivative (measured: x*inv(p)
    #: beats x/p in both places, while the per-op table would say the opposite)
    invariant = 0.25

    def base(self, op: str) -> float:
        leaf = LEAF_CYCLES.get(op)
        if leaf is not None:
            return leaf
        o = OPS.get(op)
        c = o.cycles if o is not None else None
        return float(c) if c is not None and c > 0 else DEFAULT_CYCLES


#: per-op weights from the ops table; a leaf costs 1
size_cost = AdditiveCost()
#: estimated CPU cycles (Symbolics.jl's cost model)
cycles_cost = CyclesCost()
#: parameter count first, then size
params_cost = AdditiveCost(param_weight=PARAM_WEIGHT)


def cost_model(cost: Any) -> CostFn:
    """'size', 'params', 'cycles' (estimated CPU cycles), a mapping {op: weight}, or a callable
    (op, child_costs) -> cost that is larger than each of its child costs ('var', 'const',
    'param' name the leaves)."""
    if isinstance(cost, str):
        if cost == "size":
            return size_cost
        if cost == "params":
            return params_cost
        if cost == "cycles":
            return cycles_cost
    elif isinstance(cost, Mapping):
        try:
            weights = {str(k): float(v) for k, v in cost.items()}
        except (TypeError, ValueError):
            raise SymcoreError("cost weights must be numbers") from None
        bad = [k for k, v in weights.items() if not v > 0]
        if bad:
            raise SymcoreError(f"cost weights must be positive: {bad}")
        return AdditiveCost(weights)
    elif callable(cost):
        return cost
    raise SymcoreError(f"unknown cost model {cost!r}: use 'size', 'params', 'cycles', a dict of "
                       "weights or a callable (op, child_costs) -> float")


def tree_cost(expr: Expr, fn: CostFn) -> float:
    """Cost of `expr` as a tree (shared subterms counted at every use); under a DAG cost model
    (`fn.dag`, e.g. "cycles") every distinct subterm once (`dag_cost`)."""
    if getattr(fn, "dag", False):
        return dag_cost([expr], fn)   # type: ignore[arg-type]
    memo: dict[Expr, float] = {}
    for n in topo([expr]):
        memo[n] = float(fn(n.op, tuple(memo[a] for a in n.args)))
    return memo[expr]


def dag_cost(exprs: Sequence[Expr], fn: AdditiveCost) -> float:
    """Cost of `exprs` computed together: every distinct node's own weight once (times the
    model's `invariant` factor for an op without variables beneath it, if it has one)."""
    factor = getattr(fn, "invariant", None)
    total = 0.0
    varies: dict[Expr, bool] = {}
    for n in topo(list(exprs)):
        v = n.op == "var" or any(varies[a] for a in n.args)
        varies[n] = v
        w = fn.base(n.op)
        total += w * factor if factor is not None and n.args and not v else w
    return float(total)
