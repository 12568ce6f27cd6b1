"""An independent, literal transcription of the SRSD benchmark's edit-distance steps (as read in
its eq_comparator / eq.conversion / eq.eval modules), used as the oracle for symcore.metrics'
method="srsd" in tests and in bench/bench_metrics.py.  Written from the steps, not copied."""

from __future__ import annotations

import multiprocessing

import sympy
from sympy.utilities.misc import func_name
from zss import Node, simple_distance


def load_eq(text):
    """The comparator's loading of one equation: SymPy object (here: from its text), printed and
    re-read, pi -> Float, evalf, factor, simplify, 1.0 -> 1, printed and re-read."""
    eq = sympy.sympify(text)
    eq = sympy.sympify(str(eq))
    eq = eq.subs(sympy.pi, sympy.pi.evalf()).evalf().factor().simplify().subs(1.0, 1)
    return sympy.sympify(str(eq))


def to_zss(eq, parent=None):
    if eq.is_number:
        label = "Const"
    elif isinstance(eq, sympy.Symbol):
        label = str(eq)
    else:
        label = func_name(eq)
    node = Node(label)
    if parent is not None:
        parent.addkid(node)
    for arg in eq.args:
        to_zss(arg, node)
    return node


def count(node):
    return 1 + sum(count(c) for c in node.children)


def distance(est_tree, gt_tree, normalizes=True):
    d = simple_distance(est_tree, gt_tree)
    if not normalizes:
        return d
    n = count(gt_tree)
    return min([d, n]) / n


def _load_quiet(text):
    try:
        load_eq(text)
    except Exception:
        pass


def compare(est_text, gt_text, normalizes=True, timeout=120):
    """The comparator's per-pair loop body: truth loaded; the estimate loaded first in a child
    process joined with a timeout (killed -> worst score), then again in this process."""
    gt_tree = to_zss(load_eq(gt_text))
    worst = 1 if normalizes else count(gt_tree)
    if est_text is None:
        return worst
    p = multiprocessing.get_context("fork").Process(target=_load_quiet, args=[est_text])
    p.start()
    p.join(timeout=timeout)
    p.terminate()
    if p.exitcode is None:
        return worst
    try:
        est_tree = to_zss(load_eq(est_text))
    except Exception:
        return worst
    return distance(est_tree, gt_tree, normalizes)
