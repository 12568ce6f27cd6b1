"""Bulk extraction over the frozen e-graph in Python (one Dijkstra pass for all roots; egglog's
per-root extract is superlinear in the number of roots) and the cost models."""

from __future__ import annotations

import heapq
import math
from typing import Any, Callable, Mapping, Sequence

from egglog import bindings

from symcore.errors import SymcoreError
from symcore.ir import Expr, call, const, param, topo, var
from symcore.ops import OPS

from .language import FREE, FREE_PARAM, OP_OF, ROOT, SPECIAL, fold_constants

#: lexicographic weight of one parameter in the "params" cost (parameter count, then size)
PARAM_WEIGHT = 1e6
_FREE = FREE  # marker slot of an anonymous parameter before renumbering

CostFn = Callable[[str, tuple[float, ...]], float]


def size_cost(op: str, kids: tuple[float, ...]) -> float:
    """Per-op weights from the ops table; a leaf costs 1."""
    return (OPS[op].cost if op in OPS else 1.0) + sum(kids)


def params_cost(op: str, kids: tuple[float, ...]) -> float:
    """Parameter count first, then size."""
    return (PARAM_WEIGHT if op == "param" else 0.0) + size_cost(op, kids)


def cost_model(cost: Any) -> CostFn:
    """'size', 'params', a mapping {op: weight}, or a callable (op, child_costs) -> cost that
    is larger than each of its child costs ('var', 'const', 'param' name the leaves)."""
    if cost == "size":
        return size_cost
    if cost == "params":
        return params_cost
    if isinstance(cost, Mapping):
        weights = {str(k): float(v) for k, v in cost.items()}
        bad = [k for k, v in weights.items() if not v > 0]
        if bad:
            raise SymcoreError(f"cost weights must be positive: {bad}")

        def weighted(op: str, kids: tuple[float, ...]) -> float:
            base = OPS[op].cost if op in OPS else 1.0
            return weights.get(op, base) + sum(kids)
        return weighted
    if callable(cost):
        return cost
    raise SymcoreError(f"unknown cost model {cost!r}: use 'size', 'params', a dict of weights "
                       "or a callable (op, child_costs) -> float")


def tree_cost(expr: Expr, fn: CostFn) -> float:
    """Cost of `expr` as a tree (shared subterms counted at every use)."""
    memo: dict[Expr, float] = {}
    for n in topo([expr]):
        memo[n] = float(fn(n.op, tuple(memo[a] for a in n.args)))
    return memo[expr]


class Extractor:
    """The frozen e-graph as Python arrays: nodes, their classes, and the root table."""

    def __init__(self, egraph: bindings.EGraph, frozen: bindings.FrozenEGraph) -> None:
        ids: dict[Any, int] = {}

        def cid(v: Any) -> int:
            i = ids.get(v)
            if i is None:
                i = ids[v] = len(ids)
            return i

        self.node_op: list[str] = []
        self.node_val: list[Any] = []
        self.node_kids: list[tuple[int, ...]] = []
        self.node_cls: list[int] = []
        self.roots: dict[int, int] = {}
        for name, fn in frozen.functions.items():
            if name == ROOT:
                for r in fn.rows:
                    self.roots[egraph.value_to_i64(r.inputs[0])] = cid(r.output)
                continue
            if name in OP_OF:
                op = OP_OF[name]
                for r in fn.rows:
                    if r.subsumed:
                        continue
                    self.node_op.append(op)
                    self.node_val.append(None)
                    self.node_kids.append(tuple(cid(v) for v in r.inputs))
                    self.node_cls.append(cid(r.output))
                continue
            leaf = {"Num": "const", "Var": "var", "Par": "param", "Spec": "const",
                    FREE_PARAM: "param"}.get(name)
            if leaf is None:
                continue  # analysis relations
            for r in fn.rows:
                if name == "Num":
                    val: Any = egraph.value_to_f64(r.inputs[0])
                elif name == "Spec":
                    val = SPECIAL[egraph.value_to_i64(r.inputs[0])]
                elif name == FREE_PARAM:
                    val = _FREE
                else:
                    val = egraph.value_to_i64(r.inputs[0])
                self.node_op.append(leaf)
                self.node_val.append(val)
                self.node_kids.append(())
                self.node_cls.append(cid(r.output))
        self.n_classes = len(ids)

    def best(self, fn: CostFn) -> tuple[list[float], list[int]]:
        """Cheapest tree cost and node of every class (Dijkstra: a node is priced once all its
        child classes are final; a monotone cost makes the first price of a class final)."""
        n = len(self.node_op)
        cost = [math.inf] * self.n_classes
        choice = [-1] * self.n_classes
        final = [False] * self.n_classes
        parents: list[list[int]] = [[] for _ in range(self.n_classes)]
        pending = [0] * n
        heap: list[tuple[float, int, int]] = []
        for i in range(n):
            kids = set(self.node_kids[i])
            pending[i] = len(kids)
            for k in kids:
                parents[k].append(i)
            if not kids:
                c = float(fn(self.node_op[i], ()))
                heap.append((c, self.node_cls[i], i))
        heapq.heapify(heap)
        while heap:
            c, cls, i = heapq.heappop(heap)
            if final[cls]:
                continue
            final[cls] = True
            cost[cls] = c
            choice[cls] = i
            for p in parents[cls]:
                pending[p] -= 1
                if pending[p] == 0 and not final[self.node_cls[p]]:
                    kc = tuple(cost[k] for k in self.node_kids[p])
                    pc = float(fn(self.node_op[p], kc))
                    if not pc > max(kc):
                        raise SymcoreError("cost model must give a node more than each of its "
                                           f"children ({self.node_op[p]}: {pc} <= {max(kc)})")
                    heapq.heappush(heap, (pc, self.node_cls[p], p))
        return cost, choice

    def build(self, classes: Sequence[int], choice: list[int]) -> list[Expr]:
        """IR of the chosen tree of every class in `classes` (memoised across classes)."""
        memo: dict[int, Expr] = {}
        out = []
        for root in classes:
            stack = [root]
            while stack:
                c = stack[-1]
                if c in memo:
                    stack.pop()
                    continue
                i = choice[c]
                if i < 0:
                    raise SymcoreError("e-class without a finite-cost term")  # pragma: no cover
                kids = self.node_kids[i]
                todo = [k for k in kids if k not in memo]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                op = self.node_op[i]
                if op == "const":
                    memo[c] = const(self.node_val[i])
                elif op == "var":
                    memo[c] = var(self.node_val[i])
                elif op == "param":
                    memo[c] = Expr("param", (), self.node_val[i]) if self.node_val[i] == _FREE \
                        else param(self.node_val[i])
                else:
                    memo[c] = call(op, *(memo[k] for k in kids))
            out.append(memo[root])
        return out


def finish(expr: Expr, names: Mapping[int, str | None] | None = None,
           renumber: bool = False) -> Expr:
    """Fold constants exactly (turns the -0.0 encoding back into a literal), restore variable
    names, and in params mode give every anonymous parameter its own slot (tied slots share)."""
    if names:
        memo: dict[Expr, Expr] = {}
        for n in topo([expr]):
            if n.op == "var":
                memo[n] = var(n.value, names.get(n.value))
            elif n.is_leaf:
                memo[n] = n
            else:
                memo[n] = Expr(n.op, tuple(memo[a] for a in n.args))
        expr = memo[expr]
    expr = fold_constants(expr)
    if renumber and any(n.op == "param" for n in topo([expr])):
        expr = _renumber(expr)
    return expr


def _renumber(expr: Expr) -> Expr:
    slots: dict[int, int] = {}
    counter = [0]

    def fresh() -> int:
        counter[0] += 1
        return counter[0] - 1

    # Walk the TREE (not the DAG): each anonymous occurrence is its own parameter.
    stack: list[tuple[Expr, int, list[Expr]]] = [(expr, 0, [])]
    result: Expr | None = None
    while stack:
        node, i, built = stack[-1]
        if node.op == "param":
            stack.pop()
            if node.value == _FREE:
                new = param(fresh())
            else:
                if node.value not in slots:
                    slots[node.value] = fresh()
                new = param(slots[node.value])
        elif node.is_leaf or i == len(node.args):
            stack.pop()
            new = node if node.is_leaf else Expr(node.op, tuple(built))
        else:
            stack[-1] = (node, i + 1, built)
            stack.append((node.args[i], 0, []))
            continue
        if stack:
            stack[-1][2].append(new)
        else:
            result = new
    assert result is not None
    return result
