"""The canonicalising pass on the IR itself (before anything goes into egglog): one linear,
iterative sweep over the hash-consed DAG that folds, flattens, orders and gathers, so that most
equal candidates of a population become the very same `Expr`.

Two modes:
  "exact"       only rewrites that give bit-for-bit the same value as the original under
                symcore's kernels and the NumPy reference (every NaN counts as one NaN):
                add/mul arguments sorted (IEEE + and * are commutative; max/min are not on
                +-0), x*1, x/1, x-(+0), x+(-0), --x, x*-1 and x/-1 -> -x, powi(x, 1) -> x,
                (-a)*b -> -(a*b), (-a)/b and a/(-b) -> -(a/b), a-(-b) -> a+b, a+(-b) -> a-b,
                (-a)+b -> b-a, and folding of + - * / neg sqrt abs over constants (IEEE
                correctly rounded, so the kernels compute the same bits).  Never x+0.0
                (-0 + 0 = +0), never reassociation, never a libm function.
  "equivalent"  inside the soundness contract of symcore.rules.api: wherever the original is
                finite the result has the same value up to rounding, and (so that merging
                two inputs by their canonical form is symmetric) a cancellation x - x, x / x,
                0 * f only happens where f is provably finite / non-zero.  Sums become a
                constant plus sorted terms with gathered coefficients (2x + 3x = 5x),
                products a coefficient times sorted integer powers (x*x = square(x)), a
                numeric coefficient distributes over a sum (as SymPy does), every op over
                constants folds with the ops table's NumPy reference, odd/even operands
                (Op.parity) take out their sign, associative-commutative ops (Op.commutative
                and Op.associative) are flattened and sorted.  b^p / b^q keeps one b / b
                where b is not provably non-zero (NaN exactly where the quotient is); an
                IEEE + - * / with a NaN constant operand is NaN; a zero function is +0.0.

Output shape (equivalent mode): a sum is a left-leaning chain of `add`/`sub` starting at its
first positive term in key order, with the constant last (`x0 - x1 + 3`); an all-negative sum is
`neg` of the positive one; a product is `c * a * b^2 ... / (d * e^3)`; a negative coefficient
is `neg` on the outside.  The order of terms, factors and commutative operands is a total
order on a stable structural key (the same in every process).

Exact mode's per-node rewrites live in canonical_exact, the order in canonical_order, the
finite / non-zero guards in canonical_facts, direct builders of the frequent shapes (the same
forms, cheaper) in canonical_fast, the normal forms of sums and products in canonical_forms;
this module holds equivalent mode's per-node rules, the passes and the API.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Iterable, Literal

import numpy as np

from symcore.errors import SymcoreError
from symcore.ir import _INTERN, Expr, const, map_leaves, topo, var
from symcore.ops import GPLEARN_THRESHOLD, OPS, generation

from symcore.rules.canonical_exact import _EXACT_FOLD, _exact_node, _is_neg_zero  # noqa: F401
from symcore.rules.canonical_fast import FAST_PAIR, NOT_ATOM
from symcore.rules.canonical_forms import (MAX_EXPONENT, _MONO_OPS, _POW_OF,  # noqa: F401
                                           NormalForms, _Abort)
from symcore.rules.canonical_facts import _FINITE_OPS, _Facts, _finite_num  # noqa: F401
from symcore.rules.canonical_order import (IDEMPOTENT, _ac_chain, _chain,  # noqa: F401
                                           _leaf_key, _power, _set_skey, sort_key)

__all__ = ["canonical", "canonical_all", "canonical_key", "sort_key", "Mode", "CanonicalTimeout",
           "clear_cache"]

Mode = Literal["exact", "equivalent"]
_MODES = ("exact", "equivalent")

_LIN_OPS = frozenset({"add", "sub", "neg"})
#: sqrt(square(x)) = sqrt_abs(square(x)) = |x|
_ROOT_ABS = frozenset({"sqrt", "sqrt_abs"})
#: powi(x, k) for these k as the normal form spells it (None: x itself)
_POWI_SPELLING = {1.0: None, 2.0: "square", 3.0: "cube", -1.0: "inv"}
#: ops that are NaN whenever an operand is NaN (IEEE + - * /)
_NAN_STRICT = frozenset({"add", "sub", "mul", "div", "neg", "square", "cube", "inv"})


# ---------------------------------------------------------------------------------------------
# Equivalent mode: one node

class _Canon(NormalForms):
    """One equivalent-mode pass: the normal forms (NormalForms) and the per-node rules."""

    #: build the most frequent shapes directly (_fast_pair, _negated_atom: the same forms and
    #: memos as the general normal forms, at a fraction of the cost; False in tests to compare)
    fast = True

    def node(self, op: str, args: tuple[Expr, ...], orig: Expr | None = None) -> Expr:
        # every operand constant (powi: a constant base); ops are unary or binary
        if args[0].op == "const" and (len(args) == 1 or op == "powi" or
                                      all(a.op == "const" for a in args[1:])):
            with np.errstate(all="ignore"):
                v = OPS[op].np(*(np.float64(a.value) for a in args))
            return const(float(np.asarray(v, dtype=np.float64)))
        if op == "powi" and args[1].value == 0.0:
            return const(1.0)   # x**0 is 1 for every x, NaN included (C pow, np.power)
        if op == "pow" and args[1].op == "const":
            k = args[1].value
            if math.isfinite(k) and k == int(k) and abs(k) <= MAX_EXPONENT:
                op, args = "powi", (args[0], const(float(int(k))))
            elif k == 0.5:
                op, args = "sqrt", (args[0],)
        if op == "pdiv" and args[1].op == "const" and abs(args[1].value) > GPLEARN_THRESHOLD:
            op = "div"   # gplearn divides plainly by a constant above its threshold
        if self.fast:
            if op == "neg" and args[0].op not in NOT_ATOM:
                return self._negated_atom(args[0], orig)
            if len(args) == 2 and op in FAST_PAIR:
                out = self._fast_pair(op, args[0], args[1], orig)
                if out is not None:
                    return out
        if op in _LIN_OPS or op in _MONO_OPS:
            try:
                if op in _LIN_OPS:
                    return self.build_lin(*self.lin_of(None, _lin_seed(op, args)))
                coef, factors = self.mono_of(None, _mono_seed(op, args))
                if len(factors) == 1 and factors[0][1:] == (1, 0) and \
                        factors[0][0].op in ("add", "sub"):
                    return self.build_lin(*self.lin_of(None, [(factors[0][0], coef)]))
                return self.build_mono(coef, factors)
            except _Abort:
                if op in _NAN_STRICT and any(a.op == "const" and a.value != a.value
                                             for a in args):
                    return const(math.nan)   # NaN for every operand value: NaN everywhere
                if op == "powi" and args[1].value in _POWI_SPELLING:
                    # kept as written, in the spelling of the normal form (and the e-graph's)
                    spelled = _POWI_SPELLING[args[1].value]
                    if spelled is None:
                        return args[0]   # x^1 = x exactly
                    op, args = spelled, (args[0],)
                o = OPS[op]
                if o.commutative and len(args) == 2 and self.key(args[1]) < self.key(args[0]):
                    args = (args[1], args[0])
                return Expr(op, args)
        o = OPS[op]
        negate = False
        if o.parity:
            new = list(args)
            for i, p in enumerate(o.parity):
                if p is None:
                    continue
                b, flipped = self.positive(args[i])
                if flipped:
                    new[i] = b
                    negate ^= p == "odd"
                if p == "even" and b.op == "abs":   # f(|x|) = f(x) for even f, x canonical
                    new[i] = b.args[0]
            args = tuple(new)
        a0 = args[0]
        if op == "abs" and self.nonneg(a0):
            out = a0
        elif op in _ROOT_ABS and a0.op == "square":
            # sqrt(x*x) = |x| (up to rounding, and x*x overflowing)
            out = self.node("abs", (a0.args[0],))
        elif op in IDEMPOTENT and len(args) == 2 and a0 is args[1]:
            out = a0
        elif o.commutative and o.associative and len(args) == 2:
            out = _ac_chain(op, args)
        elif o.commutative and len(args) == 2 and self.key(args[1]) < self.key(args[0]):
            out = Expr(op, (args[1], args[0]))
        elif orig is not None and orig.op == op and orig.args == args:
            out = orig
        else:
            out = Expr(op, args)
        if negate:
            if self.fast and out.op not in NOT_ATOM:
                return self._negated_atom(out, None)
            return self.build_lin(*self.lin_of(Expr("neg", (out,))))
        return out


def _lin_seed(op: str, args: tuple[Expr, ...]) -> list[tuple[Expr, float]]:
    if op == "neg":
        return [(args[0], -1.0)]
    return [(args[0], 1.0), (args[1], -1.0 if op == "sub" else 1.0)]


def _mono_seed(op: str, args: tuple[Expr, ...]) -> list[tuple[Expr, int]]:
    if op == "mul":
        return [(args[0], 1), (args[1], 1)]
    if op == "div":
        return [(args[0], 1), (args[1], -1)]
    k = _POW_OF[op] if op != "powi" else int(args[1].value)
    if abs(k) > MAX_EXPONENT:
        raise _Abort
    return [(args[0], k)]


# ---------------------------------------------------------------------------------------------
# Public API

def _check(mode: str) -> None:
    if mode not in _MODES:
        raise SymcoreError(f"canonical mode must be one of {_MODES}, got {mode!r}")


# Cross-call memo: the equivalent-mode canonical form of a node lives in the node's `_canon`
# slot (True: the node is its own canonical form), so it dies with the node and never keeps a
# key alive.  Populations of one search share most subtrees from one generation to the next,
# and a canonical form's own subterms are mostly canonical: a later call stops at known nodes.
_set_canon = Expr.__dict__["_canon"].__set__
_CANON_GENERATION = [generation()]
#: roots between two clock reads of the deadline check
DEADLINE_STRIDE = 64


class CanonicalTimeout(SymcoreError):
    """The canonical pass ran past its deadline."""


def clear_cache() -> None:
    """Forget every cached canonical form and sort key (the next pass recomputes them)."""
    for ref in list(_INTERN.values()):
        n = ref()
        if n is not None:
            _set_canon(n, None)
            _set_skey(n, None)


def _sync_generation() -> None:
    # the ops table changed (register/unregister): a cached form may use an op's old facts
    g = generation()
    if g != _CANON_GENERATION[0]:
        for ref in list(_INTERN.values()):   # sort keys do not depend on the ops table
            n = ref()
            if n is not None:
                _set_canon(n, None)
        _CANON_GENERATION[0] = g


def _equivalent_until(roots: list[Expr], deadline: float | None
                      ) -> tuple[list[Expr | None], bool]:
    """Equivalent-mode forms of `roots` and whether all were reached before `deadline` (if
    not: None for the roots neither reached nor cached by an earlier pass)."""
    _sync_generation()
    canon = _Canon()
    out: list[Expr | None] = [None] * len(roots)
    intern_get = _INTERN.get   # keyed as symcore.ir.Expr.__new__ keys an op node
    clock = time.perf_counter
    for i, root in enumerate(roots):
        if deadline is not None and i % DEADLINE_STRIDE == 0 and clock() > deadline:
            for j in range(i, len(roots)):
                c = roots[j]._canon
                if c is not None:
                    out[j] = _root(roots[j] if c is True else c)
            return out, False
        c = root._canon
        if c is None:
            # iterative post-order walk that stops at nodes already canonicalised
            stack = [root]
            while stack:
                n = stack[-1]
                if n._canon is not None:
                    stack.pop()
                    continue
                if not n.args:
                    _set_canon(n, True)
                    stack.pop()
                    continue
                todo = [a for a in n.args if a._canon is None]
                if todo:
                    stack.extend(todo)
                    continue
                stack.pop()
                args = tuple([a if a._canon is True else a._canon for a in n.args])
                if args != n.args:
                    # the form is a function of (op, canonical operands): when that node
                    # exists and is canonicalised already, its form is this one's
                    ref = intern_get((n.op, args, None, None))
                    m = None if ref is None else ref()
                    if m is not None and m._canon is not None:
                        _set_canon(n, m if m._canon is True else m._canon)
                        continue
                r = canon.node(n.op, args, n)
                _set_canon(n, True if r is n else r)
                if r is not n and r._canon is None:
                    _set_canon(r, True)   # canonical forms are fixed points (idempotence)
            c = root._canon
        out[i] = _root(root if c is True else c)
    return out, True


def _root(form: Expr) -> Expr:
    # a zero function is +0.0: the sign of a zero result is rounding (soundness contract);
    # inside a form a signed zero stays (1/-0.0 is -inf, and atan of that is finite)
    if form.op == "const" and form.value == 0.0:
        return _ZERO
    return form


_ZERO = const(0.0)


def canonical_all(exprs: Iterable[Expr], mode: Mode = "equivalent",
                  deadline: float | None = None) -> list[Expr]:
    """`canonical` of every expression, in one sweep over their shared DAG.  `deadline` (a
    time.perf_counter() value): past it, CanonicalTimeout is raised."""
    _check(mode)
    roots = list(exprs)
    for i, e in enumerate(roots):
        if not isinstance(e, Expr):
            raise SymcoreError(f"canonical takes Expr, input {i} is {type(e).__name__}")
    if mode == "equivalent":
        res, complete = _equivalent_until(roots, deadline)
        if not complete:
            raise CanonicalTimeout(f"canonical pass over {len(roots)} expressions ran past "
                                   f"its deadline")
        return res  # type: ignore[return-value]
    memo: dict[Expr, Expr] = {}
    for k, n in enumerate(topo(roots)):
        if deadline is not None and k % 1024 == 0 and time.perf_counter() > deadline:
            raise CanonicalTimeout(f"canonical pass over {len(roots)} expressions ran past "
                                   f"its deadline")
        if not n.args:
            memo[n] = n
            continue
        memo[n] = _exact_node(n.op, tuple([memo[a] for a in n.args]))
    return [memo[e] for e in roots]


def canonical(e: Expr, mode: Mode = "equivalent") -> Expr:
    """The canonical form of `e` (see the module docstring for the two modes).  Idempotent;
    inputs that differ only by the rewrites of the mode give the identical `Expr`."""
    if not isinstance(e, Expr):
        raise SymcoreError(f"canonical takes an Expr, got {type(e).__name__}")
    return canonical_all([e], mode)[0]


def _unnamed(leaf: Expr) -> Expr:
    return var(leaf.value) if leaf.op == "var" and leaf.name is not None else leaf


def canonical_key(e: Expr, mode: Mode = "equivalent") -> bytes:
    """A 16-byte digest of the canonical form (variable display names ignored), equal across
    processes: a cache key for `e` as a function."""
    _check(mode)
    if not isinstance(e, Expr):
        raise SymcoreError(f"canonical_key takes an Expr, got {type(e).__name__}")
    c = canonical(map_leaves(e, _unnamed), mode)
    return hashlib.blake2b(sort_key(c), digest_size=16).digest()
