"""Bulk extraction over the frozen e-graph in Python (one Dijkstra pass for all roots; egglog's
per-root extract is superlinear in the number of roots); the cost models are in costs.py."""

from __future__ import annotations

import heapq
import math
from collections import defaultdict
from itertools import chain, count
from typing import Any, Mapping, Sequence

import numpy as np

from egglog import bindings

from symcore.errors import SymcoreError
from symcore.ir import Expr, call, const, param, topo, var
from symcore.ops import OPS

from symcore.rules.costs import (DAG_NODE_LIMIT, DEFAULT_CYCLES, LEAF_CYCLES, PARAM_WEIGHT,  # noqa: F401
                                 AdditiveCost, CostFn, CyclesCost, cost_model, cycles_cost,
                                 dag_cost, params_cost, size_cost, tree_cost)
from symcore.rules.language import FREE, FREE_PARAM, OP_OF, ROOT, SPECIAL

_FREE = FREE  # marker slot of an anonymous parameter before renumbering


class Extractor:
    """The frozen e-graph as Python arrays: nodes, their classes, and the root table."""

    def __init__(self, egraph: bindings.EGraph, frozen: bindings.FrozenEGraph) -> None:
        # e-class id (an egglog Value) -> dense index in first-seen order, at C speed
        ids: defaultdict[Any, int] = defaultdict(count().__next__)
        cid = ids.__getitem__
        self.node_op: list[str] = []
        self.node_val: list[Any] = []
        self.node_kids: list[tuple[int, ...]] = []
        self.node_cls: list[int] = []
        self.roots: dict[int, int] = {}
        ops, vals, kids_l, cls_l = self.node_op, self.node_val, self.node_kids, self.node_cls
        for name, fn in frozen.functions.items():
            if name == ROOT:
                to_i = egraph.value_to_i64
                for r in fn.rows:
                    self.roots[to_i(r.inputs[0])] = cid(r.output)
                continue
            if name in OP_OF:
                k0 = len(kids_l)
                for r in fn.rows:
                    if r.subsumed:
                        continue
                    kids_l.append(tuple(map(cid, r.inputs)))
                    cls_l.append(cid(r.output))
                k = len(kids_l) - k0
                ops.extend([OP_OF[name]] * k)
                vals.extend([None] * k)
                continue
            leaf = {"Num": "const", "Var": "var", "Par": "param", "Spec": "const",
                    FREE_PARAM: "param"}.get(name)
            if leaf is None:
                continue  # fact tables and analysis relations
            for r in fn.rows:
                if name == "Num":
                    val: Any = egraph.value_to_f64(r.inputs[0])
                elif name == "Spec":
                    val = SPECIAL[egraph.value_to_i64(r.inputs[0])]
                elif name == FREE_PARAM:
                    val = _FREE
                else:
                    val = egraph.value_to_i64(r.inputs[0])
                ops.append(leaf)
                vals.append(val)
                kids_l.append(())
                cls_l.append(cid(r.output))
        self.n_classes = len(ids)

    def node_weights(self, fn: AdditiveCost) -> np.ndarray:
        """Each e-node's own weight under `fn`; with an `invariant` factor (the "cycles"
        model), an op node whose child classes hold a variable-free term is weighted by it."""
        w = np.array([fn.base(op) for op in self.node_op], dtype=float)
        factor = getattr(fn, "invariant", None)
        if factor is None or not len(w):
            return w
        n = len(self.node_op)
        cls = np.array(self.node_cls, dtype=np.int64)
        k0 = np.array([k[0] if len(k) > 0 else -1 for k in self.node_kids], dtype=np.int64)
        k1 = np.array([k[1] if len(k) > 1 else -1 for k in self.node_kids], dtype=np.int64)
        is_var = np.array([op == "var" for op in self.node_op])
        fixed = np.zeros(self.n_classes, dtype=bool)   # class holds a variable-free term
        while True:
            ok = ~is_var & ((k0 < 0) | fixed[np.maximum(k0, 0)]) & \
                ((k1 < 0) | fixed[np.maximum(k1, 0)])
            new = np.zeros(self.n_classes, dtype=bool)
            new[cls[ok]] = True
            if np.array_equal(new, fixed):
                break
            fixed = new
        inner = ok & (k0 >= 0)
        w[inner] *= factor
        del n
        return w

    def best(self, fn: CostFn) -> tuple[list[float], list[int]]:
        """Cheapest tree cost and node of every class."""
        if isinstance(fn, AdditiveCost):
            cost, choice = self._best_additive(fn)
            if getattr(fn, "dag", False) and 0 < len(self.node_op) <= DAG_NODE_LIMIT:
                return self._best_dag(fn, cost, choice)
            return cost, choice
        return self._best_dijkstra(fn)

    def _closure(self, c: int, choice: list[int], memo: dict[int, frozenset[int]]
                 ) -> frozenset[int] | None:
        """Classes the chosen term of class c computes (c included); None on a cycle."""
        stack, on_path = [c], set()
        while stack:
            k = stack[-1]
            if k in memo:
                stack.pop()
                continue
            i = choice[k]
            if i < 0:
                return None
            todo = [a for a in self.node_kids[i] if a not in memo]
            if todo:
                if k in on_path:
                    return None
                on_path.add(k)
                stack.extend(todo)
                for a in todo:
                    if a in on_path:
                        return None
                continue
            stack.pop()
            on_path.discard(k)
            memo[k] = frozenset().union(*(memo[a] for a in self.node_kids[i])) | {k}
        return memo[c]

    def _best_dag(self, fn: AdditiveCost, tree: list[float], tree_choice: list[int]
                  ) -> tuple[list[float], list[int]]:
        # Greedy DAG extraction (extraction-gym's greedy-dag): a class's cost is the sum of the
        # own weights of every class its term computes, shared ones once; a node's candidate
        # cost is its weight plus the UNION of its children's class sets.  Started from the
        # optimal tree extraction, a class only moves to a strictly cheaper node, so the result
        # is never costlier than the tree choice (checked over all roots at the end).
        n_cls = self.n_classes
        base = self.node_weights(fn).tolist()
        choice = list(tree_choice)
        sets: list[dict[int, float] | None] = [None] * n_cls
        total = [math.inf] * n_cls
        memo: dict[int, frozenset[int]] = {}
        for c in range(n_cls):
            cl = self._closure(c, choice, memo) if choice[c] >= 0 else None
            if cl is not None:
                sets[c] = {k: base[choice[k]] for k in cl}
                total[c] = sum(sets[c].values())   # type: ignore[union-attr]
        parents: list[list[int]] = [[] for _ in range(n_cls)]
        for i, kids in enumerate(self.node_kids):
            for k in set(kids):
                parents[k].append(i)
        work = list(range(len(self.node_op)))
        queued = [True] * len(work)
        while work:
            i = work.pop()
            queued[i] = False
            c = self.node_cls[i]
            kids = self.node_kids[i]
            if choice[c] == i or any(sets[k] is None for k in kids):
                continue
            if any(c in sets[k] for k in kids):   # type: ignore[operator]
                continue   # the node would compute its own class: a cycle
            merged: dict[int, float] = {}
            for k in kids:
                merged.update(sets[k])   # type: ignore[arg-type]
            merged[c] = base[i]
            t = sum(merged.values())
            if t < total[c] * (1 - 1e-12):
                sets[c], total[c], choice[c] = merged, t, i
                for p in parents[c]:
                    if not queued[p]:
                        queued[p] = True
                        work.append(p)
        # the class sets of parents can be stale: check the final choice as a whole
        roots = sorted(set(self.roots.values()))

        def dag_total(ch: list[int]) -> float:
            m: dict[int, frozenset[int]] = {}
            seen: set[int] = set()
            for r in roots:
                cl = self._closure(r, ch, m)
                if cl is None:
                    return math.inf
                seen |= cl
            return sum(base[ch[k]] for k in seen)
        if dag_total(choice) <= dag_total(tree_choice):
            return total, choice
        return tree, tree_choice

    def refine_roots(self, fn: AdditiveCost, choice: list[int], roots: Sequence[int],
                     rounds: int = 4, max_evals: int = 400) -> list[int]:
        """Search for a cheaper choice judged by the DAG cost of all `roots` TOGETHER (a
        system's equations share one kernel).  The greedy DAG pass prices each class alone, so
        it cannot see that one reciprocal of d serves x/d and y/d (each alone is cheaper as a
        division), or that sin(a) and cos(a), needed elsewhere, make 2*sin(a)*cos(a) cheaper
        than sin(2a).  A move re-extracts every class with the classes already computed, plus
        one candidate class, counted as free (paid once, in the total); it is kept when the
        true total drops.  Never costlier than `choice`; at most `max_evals` re-extractions."""
        base = self.node_weights(fn)
        root_list = sorted(set(roots))

        def closure(ch: list[int]) -> set[int] | None:
            memo: dict[int, frozenset[int]] = {}
            seen: set[int] = set()
            for r in root_list:
                cl = self._closure(r, ch, memo)
                if cl is None:
                    return None
                seen |= cl
            return seen

        ch = list(choice)
        seen = closure(ch)
        if seen is None or not len(base):
            return ch
        cur = float(sum(base[ch[k]] for k in seen))
        evals = 0
        for _ in range(rounds):
            # candidates: classes outside the DAG that a node of a DAG class reads
            cand = sorted({k for i, c in enumerate(self.node_cls) if c in seen
                           for k in self.node_kids[i] if k not in seen})
            gained = False
            for extra in [None] + cand:
                if evals >= max_evals:
                    break
                evals += 1
                free = seen if extra is None else seen | {extra}
                trial = self._fixpoint_choice(base, free)
                s2 = closure(trial)
                if s2 is None:
                    continue
                t = float(sum(base[trial[k]] for k in s2))
                if t < cur - 1e-9:
                    ch, seen, cur, gained = trial, s2, t, True
                    break
            if not gained:
                break
        # then single switches: one class to another of its nodes (children as chosen)
        nodes_of: dict[int, list[int]] = defaultdict(list)
        for i, c in enumerate(self.node_cls):
            nodes_of[c].append(i)
        budget = 50 * max_evals
        for c in sorted(seen):
            for i in nodes_of[c]:
                if i == ch[c] or budget <= 0 or c not in seen:
                    continue
                budget -= 1
                old, ch[c] = ch[c], i
                s2 = closure(ch)
                t = math.inf if s2 is None else float(sum(base[ch[k]] for k in s2))
                if t < cur - 1e-9:
                    cur, seen = t, s2   # type: ignore[assignment]
                else:
                    ch[c] = old
        return ch

    def _fixpoint_choice(self, base: np.ndarray, free: set[int]) -> list[int]:
        """Cheapest node of every class when the classes in `free` cost nothing to their
        parents (the tree fixpoint of `_best_additive`, with those classes clamped to 0)."""
        n = len(self.node_op)
        cls = np.array(self.node_cls, dtype=np.int64)
        k0 = np.array([k[0] if len(k) > 0 else -1 for k in self.node_kids], dtype=np.int64)
        k1 = np.array([k[1] if len(k) > 1 else -1 for k in self.node_kids], dtype=np.int64)
        has0, has1 = k0 >= 0, k1 >= 0
        k0, k1 = np.where(has0, k0, 0), np.where(has1, k1, 0)
        free_mask = np.zeros(self.n_classes, dtype=bool)
        free_mask[list(free)] = True
        cost = np.full(self.n_classes, np.inf)
        seen_cost = np.where(free_mask, 0.0, cost)
        for _ in range(n + 1):
            c = base + np.where(has0, seen_cost[k0], 0.0) + np.where(has1, seen_cost[k1], 0.0)
            new = np.full(self.n_classes, np.inf)
            np.minimum.at(new, cls, c)
            if np.array_equal(new, cost):
                break
            cost = new
            seen_cost = np.where(free_mask, 0.0, cost)
        c = base + np.where(has0, seen_cost[k0], 0.0) + np.where(has1, seen_cost[k1], 0.0)
        order = np.lexsort((c, cls))          # per class, cheapest node first
        first = np.ones(n, dtype=bool)
        first[1:] = cls[order][1:] != cls[order][:-1]
        choice = np.full(self.n_classes, -1, dtype=np.int64)
        pick = order[first]
        ok = np.isfinite(c[pick])
        choice[cls[pick][ok]] = pick[ok]
        return choice.tolist()

    def _best_additive(self, fn: AdditiveCost) -> tuple[list[float], list[int]]:
        # Bellman-Ford style fixpoint, vectorised: node cost = weight + child class costs,
        # class cost = min over its nodes; positive weights make every chosen tree acyclic
        # (a child's cost is strictly below its parent's).
        n = len(self.node_op)
        if n == 0:
            return [], []
        weights = {op: fn.base(op) for op in set(self.node_op)}
        if min(weights.values()) <= 0:
            raise SymcoreError("cost weights must be positive")
        base = self.node_weights(fn) if getattr(fn, "invariant", None) is not None else \
            np.array([weights[op] for op in self.node_op])
        cls = np.array(self.node_cls, dtype=np.int64)
        # children as an (n, 2) array, -1 for a missing child; every op is unary or binary
        arity = np.fromiter(map(len, self.node_kids), dtype=np.int64, count=n)
        flat = np.fromiter(chain.from_iterable(self.node_kids), dtype=np.int64,
                           count=int(arity.sum()))
        row = np.repeat(np.arange(n), arity)
        col = np.arange(flat.size) - np.repeat(np.cumsum(arity) - arity, arity)
        k = np.full((n, 2), -1, dtype=np.int64)
        k[row, col] = flat
        has0, has1 = k[:, 0] >= 0, k[:, 1] >= 0
        k0, k1 = np.where(has0, k[:, 0], 0), np.where(has1, k[:, 1], 0)
        cost = np.full(self.n_classes, np.inf)
        while True:
            c = base + np.where(has0, cost[k0], 0.0) + np.where(has1, cost[k1], 0.0)
            new = np.full(self.n_classes, np.inf)
            np.minimum.at(new, cls, c)
            if np.array_equal(new, cost):
                break
            cost = new
        c = base + np.where(has0, cost[k0], 0.0) + np.where(has1, cost[k1], 0.0)
        ok = np.isfinite(c) & (c == cost[cls])
        idx = np.nonzero(ok)[0]
        first_cls, first = np.unique(cls[idx], return_index=True)
        choice = np.full(self.n_classes, -1, dtype=np.int64)
        choice[first_cls] = idx[first]
        return cost.tolist(), choice.tolist()

    def _best_dijkstra(self, fn: CostFn) -> tuple[list[float], list[int]]:
        # A node is priced once all its child classes are final; a monotone cost (a node costs
        # more than each child) makes the first price of a class final.
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

    def build(self, classes: Sequence[int], choice: list[int],
              names: Mapping[int, str | None] | None = None) -> list[Expr]:
        """IR of the chosen tree of every class in `classes` (memoised across classes), with
        variable display names restored and constant subtrees folded by the ops table's NumPy
        reference (this also turns the -0.0 spelling neg(0.0) back into a literal)."""
        names = names or {}
        memo: dict[int, Expr] = {}
        out = []
        with np.errstate(all="ignore"):
            for root in classes:
                stack = [root]
                while stack:
                    c = stack[-1]
                    if c in memo:
                        stack.pop()
                        continue
                    i = choice[c]
                    if i < 0:  # pragma: no cover - every class holds a finite-cost term
                        raise SymcoreError("e-class without a finite-cost term")
                    kids = self.node_kids[i]
                    todo = [k for k in kids if k not in memo]
                    if todo:
                        stack.extend(todo)
                        continue
                    stack.pop()
                    memo[c] = self._node(i, [memo[k] for k in kids], names)
                out.append(memo[root])
        return out

    def _node(self, i: int, args: list[Expr], names: Mapping[int, str | None]) -> Expr:
        op, val = self.node_op[i], self.node_val[i]
        if op == "const":
            return const(val)
        if op == "var":
            return var(val, names.get(val))
        if op == "param":
            return Expr("param", (), val) if val == _FREE else param(val)
        if all(a.op == "const" for a in args):
            v = OPS[op].np(*(np.float64(a.value) for a in args))
            return const(float(np.asarray(v, dtype=np.float64)))
        if op == "powi":
            return call(op, *args)   # checks the exponent
        # children are IR already and the arity comes from the constructor
        return Expr(op, tuple(args))


def renumber_all(exprs: Sequence[Expr]) -> list[Expr]:
    """Params mode: every anonymous parameter its own slot, tied slots share one; slots are
    numbered from 0 in tree order."""
    return [_renumber(e) if any(n.op == "param" for n in topo([e])) else e for e in exprs]


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
