"""The NumPy reference Jacobian (the test oracle): a forward sweep keeping every node's values,
a reverse sweep whose local derivatives are the ops table's templates evaluated in NumPy."""

from __future__ import annotations

from typing import Any

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.evaluate import as_matrix, evaluate, node_values
from symcore.ir import Expr, topo

from symcore.codegen.grad.templates import active_nodes, deriv_template, node_consts

__all__ = ["jacobian_reference", "params_vector"]


def params_vector(expr: Expr, params: Any) -> np.ndarray:
    need = expr.n_params
    p = np.zeros(0) if params is None else np.asarray(params, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] < need:
        raise DataError(f"expression uses {need} parameter(s), got params of shape {p.shape}")
    return p


def jacobian_reference(expr: Expr, X: Any, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (N,) and Jacobian d pred / d p_j (N, n_params) with NumPy: a forward sweep
    keeping every node's values, then a reverse sweep accumulating adjoints whose local
    derivatives are the ops table's derivative IR evaluated by the reference evaluator."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"jacobian_reference takes an Expr, got {type(expr).__name__}")
    A = as_matrix(X, [expr])
    n = A.shape[0]
    p = params_vector(expr, params)
    order = topo([expr])
    vals = {nd: np.broadcast_to(v, (n,)) for nd, v in node_values(order, A, p).items()}
    with np.errstate(all="ignore"):
        J = np.zeros((n, expr.n_params))
        act = active_nodes(order)
        adj: dict[Expr, np.ndarray] = {expr: np.ones(n)} if expr in act else {}
        for nd in reversed(order):
            if nd not in adj:
                continue
            bar = adj.pop(nd)
            if nd.op == "param":
                J[:, nd.value] += bar
                continue
            cs = node_consts(nd)
            cols = np.empty((n, len(nd.args) + 1))
            for j, a in enumerate(nd.args):
                cols[:, j] = vals[a]
            cols[:, -1] = vals[nd]
            for i, a in enumerate(nd.args):
                if a not in act:
                    continue
                d = evaluate(deriv_template(nd.op, cs, i), cols)
                adj[a] = adj[a] + bar * d if a in adj else bar * d
    return np.array(vals[expr], dtype=np.float64), J
