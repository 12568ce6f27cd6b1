"""When can the e-graph still improve a canonical form?  A conservative test on the form's own
nodes, so that `simplify` skips egglog (milliseconds per call) for forms that equality
saturation with the default rules would return unchanged.

The canonicalising pass performs the default shrinking rules itself (folding, identities,
powers, parity, protected-op identities, AC ordering, like-term gathering).  What saturation
adds on top, and what this test looks for (any hit sends the form to the e-graph):
  * a node that is not itself a canonical fixpoint (extraction may rebuild that subterm, and
    the canonical pass over the extracted term then rewrites it, e.g. c * (a + b) distributed);
  * factoring: two terms of one sum sharing a factor or a constant's magnitude (a*b + a*c ->
    a*(b + c), also through a/b = a * inv(b) and a + a*b = a*(1 + b));
  * the shrinking rules the pass does not perform (`EGRAPH_ONLY`: nonneg-guarded ones such as
    square(sqrt a) -> a, exp(log a) -> a, sqrt_abs(a) -> sqrt(a); square(abs a) -> square(a);
    min/max absorption; protected-op identities on equal operands);
  * an op that is not built in (a registered op may bring rules of its own).
tests/rules/test_canonical.py checks on the harvested and random populations that `simplify`
gives what saturation gives, and that every default shrinking rule is either performed by the
pass or looked for here.
"""

from __future__ import annotations

import math

from symcore.ir import Expr, topo
from symcore.ops import BUILTIN, OPS

__all__ = ["needs_saturation", "EGRAPH_ONLY", "NONNEG_GUARDED", "EQUAL_OPERANDS", "CONST_OPERAND"]

#: default rules the canonicalising pass does not perform, and the parent/child op pair on
#: which this test sends a form to the e-graph for them
EGRAPH_ONLY: dict[str, tuple[str, str]] = {
    "square-sqrt": ("square", "sqrt"), "exp-log": ("exp", "log"),
    "square-abs": ("square", "abs"), "min-max": ("min", "max"), "max-min": ("max", "min"),
}
#: rules guarded by `nonneg` on the first operand (looked for where it may hold)
NONNEG_GUARDED = {"sqrt_abs-nonneg": "sqrt_abs", "log_abs-nonneg": "log_abs",
                  "pow_abs-nonneg": "pow_abs", "abs-nonneg": "abs"}
#: rules on two equal operands (looked for where the operands are one node)
EQUAL_OPERANDS = {"pdiv-self": "pdiv"}
#: rules on a constant operand (looked for where an operand is a constant)
CONST_OPERAND = {"aq-0": "aq"}

_NONNEG_AT = frozenset(NONNEG_GUARDED.values())
_EQUAL_AT = frozenset(EQUAL_OPERANDS.values())
_CONST_AT = frozenset(CONST_OPERAND.values())
_PAIRS = frozenset(EGRAPH_ONLY.values())
_SUMS = frozenset({"add", "sub"})
_PRODUCTS = frozenset({"mul", "div", "inv", "neg"})


def _sum_shares_factor(n: Expr) -> bool:
    """The add/sub chain at `n` has two terms sharing a factor (through mul, div, inv, neg):
    a*b + a*c, a/b + c/b, a + a*b, 2*a + 2*b."""
    terms: list[Expr] = []
    stack = [n]
    while stack:
        m = stack.pop()
        if m.op in _SUMS:
            stack.extend(m.args)
        elif m.op == "neg" and m.args[0].op in _SUMS:
            stack.append(m.args[0])
        else:
            terms.append(m)
    seen: set[object] = set()
    for t in terms:
        bases: set[object] = set()
        fs = [t]
        while fs:
            f = fs.pop()
            if f.op in _PRODUCTS:
                fs.extend(f.args)
            else:   # a constant by magnitude: k*a + k*b = k*(a + b), k*a - k = k*(a - 1)
                bases.add(abs(f.value) if f.op == "const" else f)
        if not bases.isdisjoint(seen):
            return True
        seen |= bases
    return False


def _relations(nodes: list[Expr]) -> dict[str, set[Expr]]:
    """The e-graph analysis' `finite` and `nonneg` (symcore.rules.analysis: the ops' facts)
    derived bottom-up over `nodes` (children before parents)."""
    rel: dict[str, set[Expr]] = {"finite": set(), "nonneg": set()}
    for n in nodes:
        if n.op == "const":
            if math.isfinite(n.value):
                rel["finite"].add(n)
                if n.value >= 0.0:
                    rel["nonneg"].add(n)
        elif not n.args:
            rel["finite"].add(n)
        else:
            for r, needs in OPS[n.op].facts:
                if r in rel and all(a in rel[need] for need in needs for a in n.args):
                    rel[r].add(n)
    return rel


def needs_saturation(form: Expr, canon: object) -> bool:
    """Whether equality saturation under the default rules might give something other than
    `form` (a canonical form; `canon` the pass state, symcore.rules.canonical._Canon).  False
    means: saturating `form` and canonicalising the extracted term gives `form` back."""
    nodes = topo([form])
    inner: set[Expr] = set()   # sums inside a longer chain (checked with the chain's head)
    for n in nodes:
        if n.op in _SUMS:
            for a in n.args:
                if a.op in _SUMS:
                    inner.add(a)
                elif a.op == "neg" and a.args[0].op in _SUMS:
                    inner.add(a.args[0])
    node = canon.node  # type: ignore[attr-defined]
    rel: dict[str, set[Expr]] | None = None
    for n in nodes:
        op = n.op
        if not n.args:
            # folding over non-finite constants is left to the e-graph's own rules
            if op == "const" and not math.isfinite(n.value):
                return True
            continue
        if op not in BUILTIN:
            return True
        # x / 0.0 is x * inf (exactly, signs and NaN included): a non-finite constant too
        if op == "div" and n.args[1].op == "const" and n.args[1].value == 0.0:
            return True
        for a in n.args:
            if (op, a.op) in _PAIRS:
                return True
        if op in _NONNEG_AT:
            if rel is None:
                rel = _relations(nodes)
            if n.args[0] in rel["nonneg"] or canon.nonneg(n.args[0]):  # type: ignore[attr-defined]
                return True
        if op in _EQUAL_AT and n.args[0] is n.args[1]:
            return True
        if op in _CONST_AT and any(a.op == "const" for a in n.args):
            return True
        if op in _SUMS and n not in inner and _sum_shares_factor(n):
            return True
        # every subterm a fixpoint of the pass: extraction may rebuild any of them
        if node(op, n.args, n) is not n:
            return True
    return False
