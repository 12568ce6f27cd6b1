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
forms, cheaper) in canonical_fast; this module holds equivalent mode and the API.
"""

from __future__ import annotations

import hashlib
import math
import time
from typing import Iterable, Literal, Sequence

import numpy as np

from symcore.errors import SymcoreError
from symcore.ir import _INTERN, Expr, const, map_leaves, topo, var
from symcore.ops import GPLEARN_THRESHOLD, OPS, generation

from symcore.rules.canonical_exact import _EXACT_FOLD, _exact_node, _is_neg_zero  # noqa: F401
from symcore.rules.canonical_fast import FAST_PAIR, NOT_ATOM, FastShapes
from symcore.rules.canonical_facts import _FINITE_OPS, _Facts, _finite_num  # noqa: F401
from symcore.rules.canonical_order import (IDEMPOTENT, _ac_chain, _chain,  # noqa: F401
                                           _leaf_key, _power, _set_skey, sort_key)

__all__ = ["canonical", "canonical_all", "canonical_key", "sort_key", "Mode", "CanonicalTimeout",
           "clear_cache"]

Mode = Literal["exact", "equivalent"]
_MODES = ("exact", "equivalent")

#: largest |integer exponent| the product form keeps (beyond it pow(x, k) stays as written)
MAX_EXPONENT = 64

# Ops whose value is >= 0 or NaN for every operand: abs() of them is the identity.
_NONNEG_OR_NAN = frozenset({"abs", "square", "exp", "sqrt", "sqrt_abs", "cosh", "pow_abs"})
_LIN_OPS = frozenset({"add", "sub", "neg"})
#: sqrt(square(x)) = sqrt_abs(square(x)) = |x|
_ROOT_ABS = frozenset({"sqrt", "sqrt_abs"})
_MONO_OPS = frozenset({"mul", "div", "inv", "square", "cube", "powi"})
_POW_OF = {"square": 2, "cube": 3, "inv": -1}
#: powi(x, k) for these k as the normal form spells it (None: x itself)
_POWI_SPELLING = {1.0: None, 2.0: "square", 3.0: "cube", -1.0: "inv"}
#: ops that are NaN whenever an operand is NaN (IEEE + - * /)
_NAN_STRICT = frozenset({"add", "sub", "mul", "div", "neg", "square", "cube", "inv"})


# ---------------------------------------------------------------------------------------------
# Equivalent mode: sums and products as normal forms

class _Abort(Exception):
    """A normal form would change a value (coefficient over/underflow, a non-finite constant):
    the node stays as written."""


def _mul_coef(a: float, b: float) -> float:
    r = a * b
    if not math.isfinite(r) or (r == 0.0 and a != 0.0 and b != 0.0):
        raise _Abort
    return r


def _pow_coef(c: float, k: int) -> float:
    try:
        r = c ** k
    except (OverflowError, ZeroDivisionError):
        raise _Abort from None
    if not math.isfinite(r) or (r == 0.0 and c != 0.0):
        raise _Abort
    return float(r)


Factors = tuple[tuple[Expr, int, int], ...]   # ((base, positive exp, negative exp), ...)
Terms = tuple[tuple[Factors, float], ...]      # ((factors of a unit term, coefficient), ...)


class _Canon(FastShapes):
    """State of one equivalent-mode pass: normal forms of the canonical nodes built so far (so
    a walk stops at a known node instead of descending: linear time on chains)."""

    #: build the most frequent shapes directly (_fast_pair, _negated_atom: the same forms and
    #: memos as the general normal forms, at a fraction of the cost; False in tests to compare)
    fast = True
    abort = _Abort

    def __init__(self) -> None:
        self.facts = _Facts()
        self.mono: dict[Expr, tuple[float, Factors]] = {}
        self.lin: dict[Expr, tuple[float, Terms]] = {}
        self.keys: dict[Expr, bytes] = {}
        # built products by (coefficient, its sign bit, factors): a pass rebuilds the same
        # product for many parents (measured 58 % repeats on the harvested populations)
        self.built: dict[tuple[float, float, Factors], Expr] = {}

    def key(self, e: Expr) -> bytes:
        k = self.keys.get(e)
        if k is None:
            k = self.keys[e] = sort_key(e)
        return k

    def _base_key(self, bk: tuple[Expr, int]) -> bytes:
        return self.key(bk[0])

    def fkey(self, factors: Factors) -> tuple:
        """Stable order of a term by its factors (which a pass keeps in its own order)."""
        if len(factors) == 1:
            b, p, q = factors[0]
            return ((self.key(b), p, q),)
        return tuple(sorted([(self.key(b), p, q) for b, p, q in factors]))

    # -- products ----------------------------------------------------------------------------
    def mono_of(self, e: Expr | None, seed: list[tuple[Expr, int]] | None = None
                ) -> tuple[float, Factors]:
        """(coefficient, ((base, positive exponent, negative exponent), ...)) sorted by base;
        bases are never products, powers, negations or negative-led sums.  `seed` instead of
        `e`: the (operand, exponent) pairs of a node not built yet."""
        if e is not None:
            hit = self.mono.get(e)
            if hit is not None:
                return hit
        coef = 1.0
        pows: dict[Expr, list[int]] = {}
        stack: list[tuple[Expr, int]] = [(e, 1)] if seed is None else seed
        memo = self.mono
        while stack:
            n, m = stack.pop()
            op = n.op
            known = memo.get(n) if n is not e else None
            if known is not None:
                c, fs = known
                coef = _mul_coef(coef, c if m == 1 else _pow_coef(c, m))
                for b, p, q in fs:
                    if p:
                        self._add_pow(pows, b, p * m)
                    if q:
                        self._add_pow(pows, b, -q * m)
            elif op == "const":
                v = n.value
                if not math.isfinite(v):
                    raise _Abort
                coef = _mul_coef(coef, v if m == 1 else _pow_coef(v, m))
            elif op == "mul":
                stack.append((n.args[0], m))
                stack.append((n.args[1], m))
            elif op == "div":
                stack.append((n.args[0], m))
                stack.append((n.args[1], -m))
            elif op == "neg":
                if m % 2:
                    coef = -coef
                stack.append((n.args[0], m))
            elif op in _POW_OF or op == "powi":
                k = _POW_OF[op] if op != "powi" else int(n.args[1].value)
                if k == 0 or abs(k * m) > MAX_EXPONENT:
                    self._add_pow(pows, n, m)
                else:
                    stack.append((n.args[0], k * m))
            else:
                b, flipped = self.positive(n)
                if flipped and m % 2:
                    coef = -coef
                self._add_pow(pows, b, m)
        fin = self.facts
        out = []
        # factors in the pass' own order (by identity: a dict key for like terms within this
        # pass); the stable order (sort keys) is applied only where the built form shows it
        for b in (pows if len(pows) < 2 else sorted(pows, key=id)):
            p, q = pows[b]
            if p and q:
                if fin.nonzero(b):
                    p, q = max(p - q, 0), max(q - p, 0)
                else:
                    # b^p / b^q with b possibly 0: keep one b/b, which is NaN exactly where
                    # b^p / b^q is (b = 0, +-inf, NaN; elsewhere over/underflow is rounding)
                    m = min(p, q) - 1
                    p, q = p - m, q - m
            if p or q:
                out.append((b, p, q))
        res = (coef, tuple(out))
        if e is not None:
            memo[e] = res
        return res

    @staticmethod
    def _add_pow(pows: dict[Expr, list[int]], b: Expr, m: int) -> None:
        pq = pows.setdefault(b, [0, 0])
        if m > 0:
            pq[0] += m
            if pq[0] > MAX_EXPONENT:
                raise _Abort
        else:
            pq[1] -= m
            if pq[1] > MAX_EXPONENT:
                raise _Abort

    def build_mono(self, coef: float, factors: Factors) -> Expr:
        key = (coef, math.copysign(1.0, coef), factors)   # -0.0 == 0.0: the sign bit apart
        hit = self.built.get(key)
        if hit is None:
            hit = self.built[key] = self._build_mono(coef, factors)
        return hit

    def _build_mono(self, coef: float, factors: Factors) -> Expr:
        if not factors:
            return const(coef)
        # 0 * f = 0 where f is provably finite (the sign of a zero is rounding)
        if coef == 0.0 and all(q == 0 and self.facts.finite(b) for b, _, q in factors):
            return const(0.0)
        # one sign convention, the most compact: -x is neg(x), -2.5*x is (-2.5)*x
        if coef == -1.0 or (coef == 0.0 and math.copysign(1.0, coef) < 0):
            out = Expr("neg", (self.build_mono(-coef, factors),))
            self.mono.setdefault(out, (coef, factors))
            return out
        # a common power of every factor stays outside: square(a / b), not square(a)/square(b)
        k = 1
        if len(factors) > 1:
            ks = {p or q for _, p, q in factors}
            if len(ks) == 1 and all(bool(p) != bool(q) for _, p, q in factors):
                k = ks.pop()
        if k > 1:
            inner = tuple((b, p // k, q // k) for b, p, q in factors)
            num = [_power(self.build_mono(1.0, inner), k)]
            den = []
        else:
            up = [(b, p) for b, p, _ in factors if p]
            down = [(b, q) for b, _, q in factors if q]
            if len(up) > 1:
                up.sort(key=self._base_key)
            if len(down) > 1:
                down.sort(key=self._base_key)
            num = [_power(b, p) for b, p in up]
            den = [_power(b, q) for b, q in down]
        if coef != 1.0:
            num.insert(0, const(coef))
        top = _chain("mul", num) if num else None
        if not den:
            assert top is not None
            out = top
        else:
            bottom = _chain("mul", den)
            out = Expr("inv", (bottom,)) if top is None else Expr("div", (top, bottom))
        self.mono.setdefault(out, (coef, factors))
        return out

    # -- sums --------------------------------------------------------------------------------
    def lin_of(self, e: Expr | None, seed: list[tuple[Expr, float]] | None = None
               ) -> tuple[float, Terms]:
        """(constant, ((factors of a unit term, coefficient), ...)) sorted by term; `seed`
        instead of `e`: the (operand, sign) pairs of a node not built yet."""
        if e is not None:
            hit = self.lin.get(e)
            if hit is not None:
                return hit
        c0 = 0.0
        terms: dict[Factors, float] = {}
        stack: list[tuple[Expr, float]] = [(e, 1.0)] if seed is None else seed
        memo = self.lin
        while stack:
            n, s = stack.pop()
            op = n.op
            known = memo.get(n) if n is not e else None
            if known is not None:
                k0, ts = known
                c0 += _mul_coef(s, k0)
                for fs, c in ts:
                    terms[fs] = terms.get(fs, 0.0) + _mul_coef(s, c)
            elif op == "add":
                stack.append((n.args[0], s))
                stack.append((n.args[1], s))
            elif op == "sub":
                stack.append((n.args[0], s))
                stack.append((n.args[1], -s))
            elif op == "neg":
                stack.append((n.args[0], -s))
            elif op == "const":
                if not math.isfinite(n.value):
                    raise _Abort
                c0 += _mul_coef(s, n.value)
            else:
                coef, factors = self.mono_of(n)
                if len(factors) == 1 and factors[0][1] == 1 and factors[0][2] == 0 and \
                        factors[0][0].op in ("add", "sub"):
                    stack.append((factors[0][0], _mul_coef(s, coef)))   # c*(a + b) = c*a + c*b
                elif factors:
                    terms[factors] = terms.get(factors, 0.0) + _mul_coef(s, coef)
                else:
                    c0 += _mul_coef(s, coef)
        if not math.isfinite(c0) or not all(map(math.isfinite, terms.values())):
            raise _Abort
        fin = self.facts
        out = tuple((fs, terms[fs]) for fs in (terms if len(terms) < 2 else
                                               sorted(terms, key=self.fkey))
                    if terms[fs] != 0.0 or not all(q == 0 and fin.finite(b) for b, _, q in fs))
        res = (c0 + 0.0, out)
        if e is not None:
            memo[e] = res
        return res

    def build_lin(self, c0: float, terms: Terms) -> Expr:
        items: list[tuple[bool, Expr]] = []
        for fs, c in terms:
            items.append((c >= 0, self.build_mono(abs(c), fs)))
        if not items:   # everything cancelled: the signed constant itself
            items.append((True, const(c0)))
        elif c0 != 0.0:
            items.append((not c0 < 0, const(abs(c0))))
        if len(items) == 1 and len(terms) == 1 and c0 == 0.0:
            fs, c = terms[0]
            out = self.build_mono(c, fs)       # a signed monomial: its own sign convention
        elif len(items) == 1:
            pos, x = items[0]
            out = x if pos else Expr("neg", (x,))
        else:
            head = next((i for i, (pos, _) in enumerate(items) if pos), None)
            if head is None:
                out = Expr("neg", (self._sum_chain(items, 0, flip=True),))
            else:
                out = self._sum_chain(items, head, flip=False)
        if out.op in ("add", "sub", "neg"):
            self.lin.setdefault(out, (c0, terms))
        return out

    @staticmethod
    def _sum_chain(items: list[tuple[bool, Expr]], head: int, flip: bool) -> Expr:
        acc = items[head][1]
        for i, (pos, x) in enumerate(items):
            if i != head:
                acc = Expr("add" if pos != flip else "sub", (acc, x))
        return acc

    def nonneg(self, e: Expr) -> bool:
        """e >= 0 or NaN wherever defined (so abs(e) is e): a non-negative op, constant, or a
        product with a non-negative coefficient whose factors are even powers or non-negative."""
        if e.op in _NONNEG_OR_NAN or _even_powi(e):
            return True
        if e.op == "const":
            return e.value >= 0.0
        if e.op not in _MONO_OPS:
            return False
        try:
            coef, factors = self.mono_of(e)
        except _Abort:
            return False
        return coef >= 0.0 and all((p + q) % 2 == 0 or b.op in _NONNEG_OR_NAN or _even_powi(b)
                                   for b, p, q in factors)

    def negative_led(self, e: Expr) -> bool:
        c0, terms = self.lin_of(e)
        return terms[0][1] < 0 if terms else c0 < 0

    def positive(self, e: Expr) -> tuple[Expr, bool]:
        """(e or -e, whether negated): the sign convention for operands of odd/even ops and
        for bases of powers (a sum whose first term in key order is positive)."""
        if e.op == "neg":
            return e.args[0], True
        if e.op in ("add", "sub"):
            try:
                c0, terms = self.lin_of(e)
            except _Abort:
                return e, False
            if (terms[0][1] < 0) if terms else (c0 < 0):
                return self.build_lin(-c0, tuple((u, -c) for u, c in terms)), True
        return e, False

    # -- one node ----------------------------------------------------------------------------
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


def _even_powi(e: Expr) -> bool:
    return e.op == "powi" and int(e.args[1].value) % 2 == 0


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
