"""Expression trees for the SRSD edit distance: the normal forms (SRSD's SymPy pipeline, or
symcore's canonical pass), their labelled trees and the Zhang-Shasha distance between them.

A tree is a nested tuple `(label, (child, ...))`: hashable, picklable and JSON-friendly, so the
worker processes send trees back and the caches keep them without SymPy objects.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from symcore.errors import SymcoreError

__all__ = ["Tree", "Method", "srsd_form", "srsd_expr", "symcore_form", "sympify_form",
           "sympify_expr", "sympy_tree", "count_nodes", "tree_distance", "MetricsError"]

Tree = tuple  # (label: str, children: tuple[Tree, ...])
Method = Literal["srsd", "symcore"]


class MetricsError(SymcoreError, ValueError):
    """A metric asked of input it cannot judge (unknown method, unreadable table, ...)."""


def _sympy() -> Any:
    import sympy
    return sympy


def srsd_form(text: str) -> str:
    """SRSD's normal form of a SymPy-text expression, as the benchmark computes it for an
    estimated equation: sympify, substitute pi by its Float, evalf, factor, simplify, replace the
    Float 1.0 by the Integer 1, and print/re-read the result (which fixes SymPy's argument
    order).  Slow (sympy.simplify): run it under a timeout (symcore.metrics.workers)."""
    return str(srsd_expr(text))


def srsd_expr(text: str) -> Any:
    """The SymPy object whose text srsd_form returns (its tree is the benchmark's tree)."""
    sp = _sympy()
    e = sp.sympify(str(sp.sympify(text)))
    e = e.subs(sp.pi, sp.pi.evalf()).evalf().factor().simplify().subs(1.0, 1)
    return sp.sympify(str(e))


def symcore_form(text: str) -> tuple[str, Tree]:
    """symcore's normal form of a SymPy-text expression and its tree: read into the IR, one
    canonicalising pass (equivalent mode: folded constants, flattened and ordered sums and
    products, gathered coefficients), then the SymPy object of that form built node by node
    (plain symbols as sympify makes them, float literals, 1.0 -> 1, integer exponents), whose
    tree is labelled like the benchmark's (variables as x<column>, however the text spells
    them).  No simplification and no parsing of SymPy text; shared subterms are built once per
    process.  Raises SymcoreError for text symcore cannot read (the caller falls back to
    SymPy, under a timeout)."""
    from symcore.io.readers import read
    from symcore.rules.canonical import canonical
    obj = _plain_sympy(canonical(read(text, "sympy"), "equivalent"))
    return str(obj), sympy_tree(obj, _TREES)


# IR node -> SymPy object, SymPy object -> tree: perturbed and repeated expressions share
# most subterms, so each is built once (bounded: cleared when full)
_SYMPY: dict = {}
_TREES: dict = {}
_MEMO_SIZE = 1 << 18


def _plain_sympy(expr: Any) -> Any:
    """The SymPy object of an IR expression as sympify would build it from the text."""
    sp = _sympy()
    from symcore import ops as _ops
    from symcore.ir import topo
    memo = _SYMPY
    if len(memo) > _MEMO_SIZE or len(_TREES) > _MEMO_SIZE:
        memo.clear()
        _TREES.clear()
    for n in topo([expr]):
        if n in memo:
            continue
        if n.op == "var":
            v = sp.Symbol(f"x{n.value}")
        elif n.op == "param":
            v = sp.Symbol(f"p{n.value}")
        elif n.op == "const":
            c = float(n.value)
            # the benchmark's 1.0 -> 1; other literals are Floats as after its evalf
            v = (sp.Integer(1) if c == 1.0 else sp.nan if math.isnan(c) else
                 sp.oo if c == math.inf else -sp.oo if c == -math.inf else sp.Float(c))
        elif n.op == "powi":
            v = memo[n.args[0]] ** sp.Integer(int(n.args[1].value))
        else:
            try:
                v = _ops.OPS[n.op].need("sympy", "to_sympy")(*(memo[a] for a in n.args))
            except (ArithmeticError, TypeError, KeyError, ValueError, MemoryError) as err:
                raise SymcoreError(f"SymPy cannot build {n.op} of these operands: "
                                   f"{type(err).__name__}") from None
        memo[n] = v
    return memo[expr]


def sympify_form(text: str) -> str:
    """SymPy's own evaluation of the text, nothing more (symcore's fallback for text its
    reader refuses)."""
    return str(sympify_expr(text))


def sympify_expr(text: str) -> Any:
    """The SymPy object whose text sympify_form returns."""
    sp = _sympy()
    return sp.sympify(str(sp.sympify(text)))


def sympy_tree(form: Any, memo: dict | None = None) -> Tree:
    """The labelled tree of a normal form (SymPy text or object): a number is `Const`, a symbol its
    name, anything else its SymPy function name; children in SymPy's argument order.  `memo`
    (SymPy object -> tree) is read and extended: subtrees shared with earlier calls."""
    sp = _sympy()
    from sympy.utilities.misc import func_name
    root = sp.sympify(form) if isinstance(form, str) else form
    done: dict = {} if memo is None else memo
    # iterative post-order: SymPy trees of real results can be deeper than the recursion limit
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, ready = stack.pop()
        if node in done:
            continue
        if node.is_number:
            done[node] = ("Const", ())
            continue
        if isinstance(node, sp.Symbol):
            done[node] = (str(node), ())
            continue
        if not ready:
            stack.append((node, True))
            stack.extend((a, False) for a in reversed(node.args) if a not in done)
            continue
        done[node] = (func_name(node), tuple(done[a] for a in node.args))
    return done[root]


def count_nodes(tree: Tree) -> int:
    """Number of nodes of a tree."""
    n, stack = 0, [tree]
    while stack:
        t = stack.pop()
        n += 1
        stack.extend(t[1])
    return n


def _children(t: Tree) -> list:
    return list(t[1])


def _label(t: Tree) -> str:
    return t[0]


def _preorder(t: Tree) -> tuple[list[str], list[list[int]]]:
    """A tree as edist wants it: labels in depth-first preorder and each node's child indices."""
    nodes: list[str] = []
    adj: list[list[int]] = []
    stack: list[tuple[Tree, int]] = [(t, -1)]
    while stack:
        node, parent = stack.pop()
        i = len(nodes)
        nodes.append(node[0])
        adj.append([])
        if parent >= 0:
            adj[parent].append(i)
        # children pushed last-first: popped (and numbered) in their own order, each subtree
        # numbered completely before its right sibling
        stack.extend((c, i) for c in reversed(node[1]))
    return nodes, adj


def _ted() -> Any:
    """edist's compiled Zhang-Shasha (unit costs), or None without it (then zss, pure Python:
    the same optimal distance, some 100x slower)."""
    global _TED
    if _TED is None:
        try:
            from edist.ted import standard_ted
            _TED = standard_ted
        except ImportError:
            _TED = False
    return _TED or None


_TED: Any = None


def tree_distance(pred: Tree, true: Tree, normalize: bool = True,
                  backend: Literal["auto", "edist", "zss"] = "auto") -> float:
    """Zhang-Shasha edit distance (unit costs, labels equal or not) from `pred` to `true`;
    normalised as min(d, |true|) / |true| (SRSD's NED).  backend: "auto" is edist's compiled
    implementation where installed, else zss (the reference's library); both give the same
    optimal distance."""
    if backend not in ("auto", "edist", "zss"):
        raise MetricsError(f"unknown tree-edit-distance backend {backend!r}")
    try:
        same = pred == true
    except RecursionError:      # nested tuples deeper than the C stack allows: compare by TED
        same = False
    if same:
        d = 0
    else:
        ted = _ted() if backend != "zss" else None
        if ted is None and backend == "edist":
            raise MetricsError("backend='edist' needs the edist package (pip install edist)")
        if ted is not None:
            d = ted(*_preorder(pred), *_preorder(true))
        else:
            import zss
            d = zss.simple_distance(pred, true, get_children=_children, get_label=_label)
    if not normalize:
        return float(d)
    n = count_nodes(true)
    return min(d, n) / n
