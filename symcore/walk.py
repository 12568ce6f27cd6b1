"""Traversal of expression DAGs: distinct nodes children-before-parents, without recursion.

It needs only `.args`, so both the IR (symcore.ir) and the text printer (symcore.text) use it
without importing each other.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:  # pragma: no cover
    from symcore.ir import Expr

__all__ = ["topo"]


def topo(roots: "Iterable[Expr]") -> "list[Expr]":
    """Distinct nodes reachable from `roots`, children before parents (iterative: no recursion
    limit on deep trees)."""
    seen: set[int] = set()
    out: list[Expr] = []
    for root in roots:
        if id(root) in seen:
            continue
        stack: list[tuple[Expr, int]] = [(root, 0)]
        while stack:
            node, i = stack[-1]
            if i < len(node.args):
                stack[-1] = (node, i + 1)
                child = node.args[i]
                if id(child) not in seen:
                    stack.append((child, 0))
            else:
                stack.pop()
                if id(node) not in seen:
                    seen.add(id(node))
                    out.append(node)
    return out
