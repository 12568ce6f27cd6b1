"""Expanded equivalence keys: a bounded rational normal form of canonical expressions, so that
SymPy-style rewrites (expand, together/apart, exp(a+b) = exp(a)*exp(b)) of one function share one
key.  Used by `Session(cache="equivalent")`; never changes what `canonical`/`dedupe` return.

The key of `e` is a digest of a normal form K(e) with e(x) = K(e)(x) wherever e(x) is finite (up
to rounding), so two expressions with one key are equal wherever both are finite.  The form:

  * a sum of terms ``c * m * D^-1``: c a float, m a Laurent monomial of *atoms* (variables,
    parameters, function applications f(normal forms of the arguments), at most one exp atom),
    D an optional denominator: an expanded polynomial with no common monomial factor, leading
    coefficient 1 (graded lex order over atoms), at most one per term;
  * products distribute over sums, small positive integer powers of sums expand, a power of a
    sum in a denominator expands inside it (SymPy's ``1/(x**2 - 4*x + 4)``), like terms collect;
  * a numerator over D is reduced modulo D (one polynomial is a Groebner basis of its ideal), so
    ``(a*D + b)/D`` and ``a + b/D`` meet; ``x * x^-1`` cancels (where it does not, e is NaN);
  * ``exp(c + P) = e^c * exp(P)``, ``exp(P) * exp(Q) = exp(P + Q)``, ``exp(P)^k = exp(k*P)``;
  * odd/even arguments (Op.parity) take out their sign; commutative operands are sorted.

Never ``log(a*b) -> log(a) + log(b)``, ``sqrt(a*b) -> sqrt(a)*sqrt(b)`` or ``(a^2)^(1/2) -> a``:
log, sqrt, pow and every other op are atoms over normal-form arguments.  Coefficients enter the
digest rounded to COEF_BITS mantissa bits, so SymPy's own constant folding (a few ulps away from
ours) still meets.  Bounded: a product or power beyond MAX_TERMS / MAX_PRODUCT stays an opaque
atom (its canonical structure), and a candidate whose normal form needs more than MAX_WORK term
operations keys on its canonical form alone (the key before expansion).
"""

from __future__ import annotations

import hashlib
import math
import struct
from typing import Iterable, Sequence

from symcore.errors import SymcoreError
from symcore.ir import Expr
from symcore.ops import OPS

from symcore.rules.canonical_order import sort_key

__all__ = ["expanded_keys", "expanded_key", "COEF_BITS", "MAX_TERMS", "MAX_PRODUCT", "MAX_POWER",
           "MAX_WORK"]

#: mantissa bits of a coefficient in the digest (53 is exact; 40 absorbs a few ulps of folding)
COEF_BITS = 40
#: most terms of one polynomial; a larger product/power stays an opaque atom
MAX_TERMS = 128
#: most term pairs of one polynomial product
MAX_PRODUCT = 2048
#: largest positive integer power of a sum that is expanded
MAX_POWER = 6
#: term operations for one candidate before it falls back to its canonical key
MAX_WORK = 50_000

Mono = tuple  # ((atom id, exponent), ...) sorted by atom id
Poly = dict   # Mono -> float coefficient (never mutated once built)

_ONE: Mono = ()
_EXP, _DEN = 1, 2          # kinds of special atoms
# an atom id is 16 bytes whose first byte tells its kind: exp and denominator atoms sort
# first in a monomial, so a monomial without them is told by its first atom alone
_EXP_TAG, _DEN_TAG, _PLAIN_TAG = b"\x00", b"\x01", b"\x10"
_Q = float(1 << COEF_BITS)


class _TooBig(Exception):
    """A local expansion would exceed its cap: the node stays an opaque atom."""


class _OutOfWork(Exception):
    """The candidate's budget is spent: it keys on its canonical form."""


def _digest(*parts: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=16)
    for p in parts:
        h.update(len(p).to_bytes(4, "little"))
        h.update(p)
    return h.digest()


def _qcoef(c: float) -> bytes:
    """c rounded to COEF_BITS mantissa bits, as bytes (sign, mantissa, exponent)."""
    m, e = math.frexp(c)
    q = round(m * _Q)
    if abs(q) >= _Q:          # rounded up to the next power of two
        q //= 2
        e += 1
    return struct.pack("<qh", q, e)


def _atom_id(tag: bytes, *parts: bytes) -> bytes:
    return tag + _digest(*parts)[1:]


def _plain(m: Mono) -> bool:
    """m has no exp and no denominator atom."""
    return not m or m[0][0][0] > 1


def _plain_mul(a: Mono, b: Mono) -> Mono:
    d = dict(a)
    for x, k in b:
        d[x] = d.get(x, 0) + k
    return tuple(sorted([(x, k) for x, k in d.items() if k]))


def _mono_bytes(m: Mono) -> bytes:
    return b"".join([a + struct.pack("<h", k) for a, k in m])


class _Expander:
    """State of one call: normal forms of the nodes seen, the special atoms' polynomials."""

    def __init__(self) -> None:
        self.memo: dict[Expr, Poly] = {}
        self.special: dict[bytes, tuple[int, Poly]] = {}   # atom id -> (_EXP|_DEN, polynomial)
        self.digests: dict[int, tuple[Poly, bytes]] = {}   # id(poly) -> (poly, digest)
        self.work = 0

    def spend(self, n: int) -> None:
        self.work += n
        if self.work > MAX_WORK:
            raise _OutOfWork

    # -- digests and atoms ---------------------------------------------------------------
    def digest(self, p: Poly) -> bytes:
        hit = self.digests.get(id(p))
        if hit is not None and hit[0] is p:
            return hit[1]
        items = sorted((_mono_bytes(m), c) for m, c in p.items())
        d = _digest(b"P", *[mb + _qcoef(c) for mb, c in items])
        self.digests[id(p)] = (p, d)
        return d

    def exp_atom(self, arg: Poly) -> bytes:
        a = _atom_id(_EXP_TAG, b"exp", self.digest(arg))
        self.special[a] = (_EXP, arg)
        return a

    def den_atom(self, den: Poly) -> bytes:
        a = _atom_id(_DEN_TAG, b"den", self.digest(den))
        self.special[a] = (_DEN, den)
        return a

    # -- monomials -----------------------------------------------------------------------
    def mono_mul(self, a: Mono, b: Mono) -> Poly:
        """a * b as a polynomial (two denominators multiply out into one, two exps merge)."""
        if not a:
            return {b: 1.0}
        if not b:
            return {a: 1.0}
        if a[0][0][0] > 1 and b[0][0][0] > 1:
            return {_plain_mul(a, b): 1.0}
        exps: dict[bytes, int] = dict(a)
        sp = self.special
        exp_arg: Poly | None = None
        dens: list[bytes] = []
        for x, k in a:
            s = sp.get(x)
            if s is not None:
                del exps[x]
                if s[0] == _EXP:
                    exp_arg = s[1]
                else:
                    dens.append(x)
        for x, k in b:
            s = sp.get(x)
            if s is None:
                exps[x] = exps.get(x, 0) + k
            elif s[0] == _EXP:
                exp_arg = s[1] if exp_arg is None else _add(exp_arg, s[1])
            else:
                dens.append(x)
        if exp_arg:
            exps[self.exp_atom(exp_arg)] = 1
        if len(dens) == 1:
            exps[dens[0]] = -1
        out: Mono = tuple(sorted((x, k) for x, k in exps.items() if k))
        if not dens or len(dens) == 1:
            return {out: 1.0}
        den = self.mul(sp[dens[0]][1], sp[dens[1]][1])
        # (D1 * D2)^-1: the product normalised again (coefficient and monomial content out)
        lc, content, d = self.primitive(den)
        rest = self.mul({out: 1.0}, _mono_inv(content, self)) if content else {out: 1.0}
        if d is None:
            return _scale(rest, 1.0 / lc)
        da = self.den_atom(d)
        res: Poly = {}
        for m, c in rest.items():
            for m2, c2 in self.mono_mul(m, ((da, -1),)).items():
                res[m2] = res.get(m2, 0.0) + c * c2 / lc
        return res

    # -- polynomials ---------------------------------------------------------------------
    def mul(self, p: Poly, q: Poly) -> Poly:
        n = len(p) * len(q)
        if n > MAX_PRODUCT:
            raise _TooBig
        self.spend(n)
        out: dict[Mono, float] = {}
        for m1, c1 in p.items():
            plain1 = _plain(m1)
            for m2, c2 in q.items():
                if plain1 and _plain(m2):
                    m = _plain_mul(m1, m2)
                    out[m] = out.get(m, 0.0) + c1 * c2
                    continue
                for m, c in self.mono_mul(m1, m2).items():
                    out[m] = out.get(m, 0.0) + c1 * c2 * c
        out = {m: c for m, c in out.items() if c != 0.0}
        if len(out) > MAX_TERMS:
            raise _TooBig
        return out

    def power(self, p: Poly, k: int) -> Poly:
        if k == 0:
            return {_ONE: 1.0}
        if k < 0:
            return self.recip(self.power(p, -k))
        if len(p) == 1:
            (m, c), = p.items()
            acc: Poly = {_ONE: 1.0}
            for _ in range(k):
                acc = self.mul(acc, {m: 1.0})
            return _scale(acc, _ipow(c, k))
        if k > MAX_POWER:
            raise _TooBig
        acc = p
        for _ in range(k - 1):
            acc = self.mul(acc, p)
        return acc

    def recip(self, p: Poly) -> Poly:
        """1 / p."""
        if not p:
            raise _TooBig                      # 1/0: an opaque atom
        if len(p) == 1:
            (m, c), = p.items()
            if c == 0.0 or not math.isfinite(1.0 / c):
                raise _TooBig
            return self.fin(_scale(_mono_inv(m, self), 1.0 / c))
        # over a common denominator L (the product of the distinct denominators in p): 1/p = L/N
        dens = {x for m in p for x, _ in m if self.special.get(x, (0,))[0] == _DEN}
        big_l: Poly = {_ONE: 1.0}
        num = p
        if dens:
            polys = {x: self.special[x][1] for x in sorted(dens)}
            for x in polys:
                big_l = self.mul(big_l, polys[x])
            num = {}
            for m, c in p.items():
                own = next((x for x, _ in m if x in polys), None)
                t: Poly = {tuple(y for y in m if y[0] != own): c}
                for x, d in polys.items():
                    if x != own:
                        t = self.mul(t, d)
                num = _add(num, t)
            if len(num) <= 1:
                return self.fin(self.mul(big_l, self.recip(num)))
        lc, content, d = self.primitive(num)
        inv_m = _mono_inv(content, self) if content else {_ONE: 1.0}
        if d is not None:
            inv_m = self.mul(inv_m, {((self.den_atom(d), -1),): 1.0})
        return self.fin(_scale(self.mul(big_l, inv_m), 1.0 / lc))

    def primitive(self, n: Poly) -> tuple[float, Mono, Poly | None]:
        """n = lc * content * d: content the common monomial factor (exponents may be
        negative), d None (n is one term) or with leading coefficient 1 (graded lex)."""
        if len(n) == 1:
            (m, c), = n.items()
            return c, m, None
        sp = self.special
        # a common exp factor: the terms every exp argument shares, exp(C + A_i) = exp(C) exp(A_i)
        eargs = [next((sp[x][1] for x, _ in m if sp.get(x, (0,))[0] == _EXP), None) for m in n]
        common_exp: Mono = ()
        if all(a is not None for a in eargs):
            a0 = eargs[0]
            common = {m: c for m, c in a0.items()                       # type: ignore[union-attr]
                      if all(a.get(m) == c for a in eargs[1:])}        # type: ignore[union-attr]
            if common:
                neg = _scale(common, -1.0)
                n2: Poly = {}
                for m, c in n.items():
                    for m2, c2 in self.mono_mul(m, ((self.exp_atom(neg), 1),)).items():
                        n2[m2] = n2.get(m2, 0.0) + c * c2
                n = n2
                common_exp = ((self.exp_atom(common), 1),)
        atoms = sorted({x for m in n for x, _ in m})
        mins = {x: 0 for x in atoms}
        for x in atoms:
            mins[x] = min(dict(m).get(x, 0) for m in n)
        mono_content: Mono = tuple((x, k) for x, k in mins.items() if k)
        if mono_content:
            n = {_mono_div(m, mono_content): c for m, c in n.items()}
            atoms = sorted({x for m in n for x, _ in m})
        content: Mono = tuple(sorted(common_exp + mono_content))
        lead = max(n, key=lambda m: _order(m, atoms))
        lc = n[lead]
        return lc, content, {m: c / lc for m, c in n.items()}

    def fin(self, p: Poly) -> Poly:
        """Reduce each numerator modulo its denominator: sum_D N_D/D -> Q + sum_D R_D/D."""
        groups: dict[bytes, dict[Mono, float]] = {}
        for m, c in p.items():
            if _plain(m):
                continue
            for x, k in m:
                if k < 0 and self.special.get(x, (0,))[0] == _DEN:
                    groups.setdefault(x, {})[m] = c
                    break
        if not groups:
            return p
        out = {m: c for m, c in p.items()}
        for da, g in groups.items():
            d = self.special[da][1]
            atoms = sorted({x for m in d for x, _ in m})
            lead = max(d, key=lambda m: _order(m, atoms))
            num = {tuple(y for y in m if y[0] != da): c for m, c in g.items()}
            steps = 0
            while True:
                div = [(m, _divide(m, lead, self.special)) for m in num]
                div = [(m, q) for m, q in div if q is not None]
                if not div:
                    break
                steps += 1
                if steps > MAX_TERMS:
                    raise _TooBig
                m, q = max(div, key=lambda t: _order(t[0], atoms))
                c = num[m]
                sub = self.mul({q: c}, d)
                num = _add(num, _scale(sub, -1.0))
                num.pop(m, None)           # the leading terms cancel (exactly, not by rounding)
                out[q] = out.get(q, 0.0) + c
            for m in g:
                del out[m]
            for m, c in num.items():
                for m2, c2 in self.mono_mul(m, ((da, -1),)).items():
                    out[m2] = out.get(m2, 0.0) + c * c2
        return {m: c for m, c in out.items() if c != 0.0}

    # -- nodes ---------------------------------------------------------------------------
    def atom(self, op: str, args: Sequence[Poly]) -> Poly:
        o = OPS[op]
        sign = 1.0
        parts = list(args)
        for i, par in enumerate(o.parity or ()):
            if par is None or i >= len(parts) or not parts[i]:
                continue
            a = parts[i]
            first = min(a, key=_mono_bytes)
            if a[first] < 0:
                parts[i] = _scale(a, -1.0)
                if par == "odd":
                    sign = -sign
        ds = [self.digest(a) for a in parts]
        if o.commutative and len(ds) == 2:
            ds.sort()
        return {((_atom_id(_PLAIN_TAG, op.encode(), *ds), 1),): sign}

    def node(self, e: Expr, a: list[Poly]) -> Poly:
        op = e.op
        if op == "const":
            v = e.value
            if not math.isfinite(v):
                return {((_atom_id(_PLAIN_TAG, b"const", struct.pack("<d", v)), 1),): 1.0}
            return {_ONE: v} if v != 0.0 else {}
        if op in ("var", "param"):
            return {((_atom_id(_PLAIN_TAG, op.encode(), str(e.value).encode()), 1),): 1.0}
        if op == "add":
            return _add(a[0], a[1])
        if op == "sub":
            return _add(a[0], _scale(a[1], -1.0))
        if op == "neg":
            return _scale(a[0], -1.0)
        if op == "mul":
            return self.fin(self.mul(a[0], a[1]))
        if op == "div":
            return self.fin(self.mul(a[0], self.recip(a[1])))
        if op == "inv":
            return self.recip(a[0])
        if op in ("square", "cube"):
            return self.fin(self.power(a[0], 2 if op == "square" else 3))
        if op == "powi" and e.args[1].op == "const":
            k = e.args[1].value
            if math.isfinite(k) and k == int(k) and abs(k) <= 64:
                return self.fin(self.power(a[0], int(k)))
        if op == "exp":
            p = a[0]
            c0 = p.get(_ONE, 0.0)
            rest = {m: c for m, c in p.items() if m != _ONE}
            if not rest:
                v = math.exp(c0) if c0 < 709.0 else math.inf
                return {_ONE: v} if math.isfinite(v) and v != 0.0 else \
                    {((_atom_id(_PLAIN_TAG, b"exp", self.digest(p)), 1),): 1.0}
            k = math.exp(c0) if c0 < 709.0 else math.inf
            if not (math.isfinite(k) and k != 0.0):
                k, rest = 1.0, p
            return {((self.exp_atom(rest), 1),): k}
        return self.atom(op, a)

    def poly(self, root: Expr) -> Poly:
        memo = self.memo
        stack = [root]
        while stack:
            n = stack[-1]
            if n in memo:
                stack.pop()
                continue
            todo = [a for a in n.args if a not in memo]
            if todo:
                stack.extend(todo)
                continue
            stack.pop()
            try:
                p = self.node(n, [memo[a] for a in n.args])
                if any(not math.isfinite(c) for c in p.values()):
                    raise _TooBig
            except (_TooBig, OverflowError, ZeroDivisionError):
                p = {((_atom_id(_PLAIN_TAG, b"opaque", sort_key(n)), 1),): 1.0}
            memo[n] = p
        return memo[root]


def _order(m: Mono, atoms: list[bytes]) -> tuple:
    """Graded lex key of m over `atoms` (a monomial order on the non-negative part)."""
    d = dict(m)
    ks = tuple(d.get(x, 0) for x in atoms)
    return (sum(ks), ks)


def _mono_div(m: Mono, by: Mono) -> Mono:
    """m / by by exponents alone (atoms of `by` that m lacks get negative exponents)."""
    d = dict(m)
    for x, k in by:
        d[x] = d.get(x, 0) - k
    return tuple(sorted((x, k) for x, k in d.items() if k))


def _divide(m: Mono, lead: Mono, special: dict) -> Mono | None:
    """m / lead if lead divides m (exponents of lead's atoms at least lead's), else None."""
    d = dict(m)
    for x, k in lead:
        have = d.get(x, 0)
        if have < k or (k > 0 and x in special and have != k):
            return None
        d[x] = have - k
    return tuple(sorted((x, k) for x, k in d.items() if k))


def _mono_inv(m: Mono, ex: _Expander) -> Poly:
    """1 / m as a polynomial (a denominator comes up as its polynomial, exp(P) as exp(-P))."""
    out: Poly = {_ONE: 1.0}
    for x, k in m:
        s = ex.special.get(x)
        if s is None:
            f: Poly = {((x, -k),): 1.0}
        elif s[0] == _EXP:
            f = {((ex.exp_atom(_scale(s[1], -1.0)), 1),): 1.0}
        else:
            f = s[1]
        out = ex.mul(out, f)
    return out


def _add(p: Poly, q: Poly) -> Poly:
    out = dict(p)
    for m, c in q.items():
        v = out.get(m, 0.0) + c
        if v == 0.0:
            out.pop(m, None)
        else:
            out[m] = v
    return out


def _scale(p: Poly, k: float) -> Poly:
    return {m: c * k for m, c in p.items()} if k != 0.0 else {}


def _ipow(c: float, k: int) -> float:
    try:
        return float(c ** k)
    except OverflowError:
        return math.inf


def expanded_keys(canon: Iterable[Expr]) -> list[bytes]:
    """The expanded equivalence key (16 bytes) of every expression; `canon` should already be
    in equivalent canonical form (`canonical_all`), whose structure is the fallback key."""
    ex = _Expander()
    out: list[bytes] = []
    for i, e in enumerate(canon):
        if not isinstance(e, Expr):
            raise SymcoreError(f"expanded_keys takes Expr, input {i} is {type(e).__name__}")
        ex.work = 0
        try:
            p = ex.poly(e)
            out.append(ex.digest(p))
        except _OutOfWork:
            # the memo may hold this candidate's partial forms: they are complete nodes
            out.append(_digest(b"canonical", sort_key(e)))
    return out


def expanded_key(e: Expr) -> bytes:
    """`expanded_keys` of one expression."""
    return expanded_keys([e])[0]
