"""Normal forms of sums and products (the gathering half of the canonical pass's equivalent
mode, symcore.rules.canonical): a sum is a constant plus unit terms with coefficients, a product
a coefficient times integer powers of bases; both are read from a node (walking down to nodes
whose forms are known) and built back as the one spelling the pass emits."""

from __future__ import annotations

import math

from symcore.ir import Expr, const

from symcore.rules.canonical_facts import _Facts
from symcore.rules.canonical_fast import FastShapes
from symcore.rules.canonical_order import _chain, _power, sort_key

__all__ = ["MAX_EXPONENT", "Factors", "NormalForms", "Terms"]

#: largest |integer exponent| the product form keeps (beyond it pow(x, k) stays as written)
MAX_EXPONENT = 64

# Ops whose value is >= 0 or NaN for every operand: abs() of them is the identity.
_NONNEG_OR_NAN = frozenset({"abs", "square", "exp", "sqrt", "sqrt_abs", "cosh", "pow_abs"})
_MONO_OPS = frozenset({"mul", "div", "inv", "square", "cube", "powi"})
_POW_OF = {"square": 2, "cube": 3, "inv": -1}


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


class NormalForms(FastShapes):
    """State of one equivalent-mode pass: normal forms of the canonical nodes built so far (so
    a walk stops at a known node instead of descending: linear time on chains)."""

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
                    terms[fs] = terms.get(fs, -0.0) + _mul_coef(s, c)
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
                    terms[factors] = terms.get(factors, -0.0) + _mul_coef(s, coef)
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


def _even_powi(e: Expr) -> bool:
    return e.op == "powi" and int(e.args[1].value) % 2 == 0
