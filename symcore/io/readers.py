"""Readers: the text every SR frontend prints (one dialect each) into symcore's IR.

Each dialect is one `Dialect` record (symcore/io/dialects.py: syntax, variable and constant
conventions, operator spellings, protected ops, detection order; the real tools' formats are
described in the project's FORMATS notes).  Parsing is iterative (explicit stacks), so depth is
unbounded.

Decisions on awkward input (all raise a `SymcoreError` subclass, never anything else):
* empty text, unbalanced parentheses, trailing tokens, misplaced operators -> `ParseError`
  with the position; an unknown function -> `UnknownOperatorError`; a call with the wrong
  number of operands -> `ArityError`.
* `nan` / `inf` literals are symcore's own text only (its printer writes them); every other
  dialect rejects them.  A literal that overflows float64 (`1e999`) is a `ParseError`, never a
  silent inf; one that underflows (`1e-999`) rounds to 0 as IEEE-754 does.
* `-` directly before a bare number is part of the literal (`-2.5` is the constant -2.5), but it
  keeps the dialect's precedence: `-2**2` is `neg(pow(2, 2))` as in Python and Julia.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from symcore import ops as _ops
from symcore.io.dialects import DIALECTS, Dialect, detection_order, get_dialect
from symcore.io.lexer import ID, NUM, SYM, Token, parse_number, tokenize
from symcore.io.parser import Ctx, Infix, Lit, Prefix, parse_infix, parse_prefix
from symcore.errors import DataError, DialectError, ParseError, SymcoreError
from symcore.columns import columns_by_name
from symcore.ir import Expr, const, map_leaves, param, topo, var
from symcore.types import DialectName, Numbers

__all__ = ["read", "read_with_params", "detect_dialect", "READ_DIALECTS"]


def __getattr__(name: str) -> Any:
    if name == "READ_DIALECTS":     # every dialect `read` accepts, user dialects included
        return tuple(DIALECTS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_SYNTAX_CACHE: dict[tuple[str, str], tuple[object, tuple[dict[str, tuple[str, int, bool]],
                                                         dict[str, str]]]] = {}


def _syntax(d: Dialect, kind: str) -> tuple[dict[str, tuple[str, int, bool]], dict[str, str]]:
    """Binary infix operators and callable names of a dialect read as `kind`, from its record
    and the ops registered now."""
    table = d.table()
    hit = _SYNTAX_CACHE.get((d.name, kind))
    if hit is not None and hit[0] is table:
        return hit[1]
    binops: dict[str, tuple[str, int, bool]] = {}
    funcs: dict[str, str] = {}
    for s, name in d.reader_names().items():
        op = _ops.OPS[name]
        if _IDENT.match(s):
            if kind == "infix" and d.layout == "words" and op.arity == 2:
                # E2E: `**` applies to the group just before it, tighter than any word operator
                binops[s] = (name, min(op.prec, 35), op.right_assoc)
            else:
                funcs[s] = name
        elif op.arity == 2 and kind == "infix":
            binops[s] = (name, op.prec, op.right_assoc)
    _SYNTAX_CACHE[(d.name, kind)] = (table, (binops, funcs))
    return binops, funcs


# ---------------------------------------------------------------------------------------------
# Leaves

@dataclass
class _Leaves:
    spec: Dialect
    names: dict[str, int]
    var_base: int | None
    patterns: list[tuple[re.Pattern[str], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.patterns = [(re.compile(rx + r"\Z", re.ASCII),
                          b if self.var_base is None else self.var_base)
                         for rx, b in self.spec.variables]
        self.consts = dict(self.spec.constants)

    def ident(self, name: str, pos: int, ctx: Ctx) -> "Expr | Lit":
        """A variable, named constant or placeholder spelled `name`."""
        if name in self.names:
            return var(self.names[name], name)
        for rx, base in self.patterns:
            m = rx.match(name)
            if m:
                idx = _index(m.group(1), pos, ctx) - base
                if idx < 0:
                    raise ctx.error(f"variable {name!r} is out of range ({base}-based numbering)",
                                    pos)
                return var(idx)
        if name in self.consts:          # pi, E: constants even with numbers="params"
            return Lit(self.consts[name], None, pos)
        if name in self.spec.placeholders:
            return ctx.placeholder(pos, name)
        if name.lower() in ("nan", "inf", "infinity"):
            raise ctx.error(f"{name!r}: non-finite literals are not accepted in dialect "
                            f"{ctx.dialect}", pos)
        raise ctx.error(f"unknown name {name!r}", pos)


MAX_PARAMS = 1_000_000  # a parameter vector longer than this is a typo, not a model


def _index(digits: str, pos: int, ctx: Ctx) -> int:
    """A variable or parameter index written in decimal digits."""
    if len(digits) > 12:
        raise ctx.error(f"index {digits[:20]}... is too large", pos)
    return int(digits)


def _slot(k: int, pos: int, ctx: Ctx) -> int:
    if k >= MAX_PARAMS:
        raise ctx.error(f"parameter index {k} is too large (limit {MAX_PARAMS})", pos)
    return k


def _infix_leaf(lv: _Leaves):
    spec = lv.spec

    def leaf(toks: list[Token], i: int, ctx: Ctx) -> tuple["Expr | Lit", int]:
        t = toks[i]
        if spec.canonical:
            if t.text in ("inf", "nan"):     # never a parameter's starting value
                return Lit(math.inf if t.text == "inf" else math.nan, None, t.pos), i + 1
            m = re.match(r"p(\d+)\Z", t.text)
            if m and t.text not in lv.names:
                k = _slot(_index(m.group(1), t.pos, ctx), t.pos, ctx)
                ctx.values.setdefault(k, ctx.theta_value(k))
                return param(k), i + 1
            m = re.match(r"x(\d+)\Z", t.text)
            if m and t.text not in lv.names and i + 2 < len(toks) and toks[i + 1].text == ":" \
                    and toks[i + 1].kind == SYM:
                nm = toks[i + 2]
                if nm.kind != ID or nm.pos != toks[i + 1].pos + 1 \
                        or toks[i + 1].pos != t.pos + len(t.text):
                    raise ctx.error("expected a variable name after ':'", toks[i + 1].pos)
                k = _index(m.group(1), t.pos, ctx) - (lv.var_base or 0)
                if k < 0:
                    raise ctx.error(f"variable {t.text!r} is out of range", t.pos)
                return var(k, nm.text), i + 3
        elif spec.indexed is not None and t.text in spec.indexed and t.text not in lv.names:
            return _numpy_index(toks, i, ctx, t.text == spec.indexed[0])
        return lv.ident(t.text, t.pos, ctx), i + 1

    return leaf


def _expect(toks: list[Token], i: int, text: str, ctx: Ctx) -> int:
    t = toks[i] if i < len(toks) else toks[-1]
    if t.kind != SYM or t.text != text:
        raise ctx.error(f"expected {text!r}, found {t.text or 'end'!r}", t.pos)
    return i + 1


def _numpy_index(toks: list[Token], i: int, ctx: Ctx, is_x: bool) -> tuple["Expr | Lit", int]:
    """eggp's Numpy column: `x[:, j]` is column j, `t[k]` is theta k."""
    j = _expect(toks, i + 1, "[", ctx)
    if is_x:
        j = _expect(toks, j, ":", ctx)
        j = _expect(toks, j, ",", ctx)
    t = toks[j]
    if t.kind != NUM or not t.text.isdigit():
        raise ctx.error("expected an integer index", t.pos)
    k = _index(t.text, t.pos, ctx)
    if not is_x:
        k = _slot(k, t.pos, ctx)
    j = _expect(toks, j + 1, "]", ctx)
    if is_x:
        return var(k), j
    if ctx.numbers == "params" or ctx.theta is None:
        ctx.values[k] = ctx.theta_value(k)
        return param(k), j
    if k >= len(ctx.theta):
        raise ctx.error(f"t[{k}] but theta has {len(ctx.theta)} value(s)", toks[i].pos)
    return Lit(float(ctx.theta[k]), None, toks[i].pos, raw=False), j


_PREFIX_TOKEN = re.compile(r"[^,\s]+")
_PREFIX_NUM = re.compile(r"(?a)[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?\Z")
_DIGIT_TOKENS = frozenset("0123456789")
_MANT = re.compile(r"(?a)N(\d+)\Z")
_EXPO = re.compile(r"(?a)E([+-]?\d+)\Z")


def _split_float(sign: str, digits: str, expo: str, pos: int, ctx: Ctx) -> float:
    """E2E's float encoding `sign N<mantissa>... E<exponent>`, decoded with E2E's own arithmetic
    (sign * int(mantissa) * 10 ** exponent, a float product for negative exponents) so the value
    is bit-identical to what the tool evaluated."""
    if len(expo) > 5 or len(digits) > 400:
        raise ctx.error("split float out of range", pos)
    e = int(expo)
    if abs(e) > 400:
        raise ctx.error("split float out of range", pos)
    try:
        v = float((1 if sign == "+" else -1) * int(digits) * (10 ** e))
    except OverflowError:
        v = math.inf
    if math.isinf(v):
        raise ctx.error("split float overflows float64", pos)
    return v


def _prefix_leaf(lv: _Leaves):
    spec = lv.spec

    def leaf(toks: list[tuple[str, int]], i: int, ctx: Ctx) -> tuple["Expr | Lit", int]:
        tok, pos = toks[i]
        if _PREFIX_NUM.match(tok):
            return ctx.value(ctx.literal(parse_number(tok, pos, ctx.src, ctx.dialect), pos)), i + 1
        if spec.split_floats:
            if tok in ("+", "-"):           # split float: sign, N<digits>..., E<exponent>
                j = i + 1
                digits = ""
                while j < len(toks) and _MANT.match(toks[j][0]):
                    digits += toks[j][0][1:]
                    j += 1
                if not digits or j >= len(toks) or not _EXPO.match(toks[j][0]):
                    raise ctx.error("malformed split float (expected N<digits>... E<exp>)", pos)
                return ctx.value(ctx.literal(_split_float(tok, digits, toks[j][0][1:], pos, ctx),
                                             pos)), j + 1
            if tok in ("INT+", "INT-"):      # integer: sign token, then base-10 digit tokens
                j = i + 1
                val = 0
                while j < len(toks) and toks[j][0] in _DIGIT_TOKENS and j - i <= 400:
                    val = val * 10 + int(toks[j][0])
                    j += 1
                if j == i + 1:
                    raise ctx.error("INT token without digits", pos)
                try:
                    v = float(-val if tok == "INT-" else val)
                except OverflowError:
                    raise ctx.error("INT overflows float64", pos) from None
                return ctx.value(ctx.literal(v, pos)), j
        return ctx.value(lv.ident(tok, pos, ctx)), i + 1

    return leaf


# ---------------------------------------------------------------------------------------------
# read

def _theta(theta: Any) -> list[float] | None:
    if theta is None:
        return None
    if isinstance(theta, str):
        s = theta.strip()
        if not s:
            return []
        try:
            return [float(x) for x in s.split(";")]
        except ValueError:
            raise DataError(f"theta must be ';'-separated numbers, got {theta[:60]!r}") from None
    try:
        return [float(x) for x in np.asarray(theta, dtype=np.float64).ravel()]
    except (TypeError, ValueError):
        raise DataError("theta must be a sequence of numbers") from None


def _capped(digits: str) -> int:
    # an index this large is reported by _slot when the parser reaches it
    return int(digits) if len(digits) <= 7 else MAX_PARAMS


def _explicit_slots(spec: Dialect, toks: list[Token], names: dict[str, int]) -> int:
    """1 + the highest explicitly numbered parameter (symcore `p3`, eggp `t[3]`)."""
    hi = -1
    if spec.canonical:
        for t in toks:
            if t.kind == ID and t.text not in names:
                m = re.match(r"p(\d+)\Z", t.text)
                if m:
                    hi = max(hi, _capped(m.group(1)))
    elif spec.indexed is not None:
        for a, b, c in zip(toks, toks[1:], toks[2:]):
            if a.kind == ID and a.text == spec.indexed[1] and b.text == "[" and c.kind == NUM \
                    and c.text.isdigit():
                hi = max(hi, _capped(c.text))
    return hi + 1


def _compact(expr: Expr, ctx: Ctx) -> tuple[Expr, dict[int, float]]:
    """Renumber automatically allocated slots that ended up unused (e.g. the `2` of E2E's
    `(a)**2`) so the parameter vector has no holes; explicit slots keep their numbers."""
    used = {n.value for n in topo([expr]) if n.op == "param"}
    auto = ctx.auto_slots
    if all(s in used for s in auto):
        return expr, ctx.values
    remap: dict[int, int] = {}
    nxt = auto[0] if auto else 0
    for s in auto:
        if s in used:
            remap[s] = nxt
            nxt += 1
    vals = {k: v for k, v in ctx.values.items() if k not in auto}
    for s, t in remap.items():
        vals[t] = ctx.values.get(s, math.nan)
    new = map_leaves(expr, lambda n: param(remap[n.value])
                     if n.op == "param" and n.value in remap else n)
    return new, vals


def _read_one(text: str, dialect: "str | Dialect", *, var_base: int | None, names: Any, numbers: str,
              placeholders: bool, theta: Any) -> tuple[Expr, np.ndarray]:
    spec = get_dialect(dialect)
    dialect = spec.name
    if not isinstance(text, str):
        raise ParseError(f"expected a string, got {type(text).__name__}", None, None, dialect)
    if numbers not in ("const", "params"):
        raise DataError(f"numbers must be 'const' or 'params', got {numbers!r}")
    if var_base is not None and (isinstance(var_base, bool) or not isinstance(var_base, int)):
        raise DataError(f"var_base must be an int, got {var_base!r}")
    nm = columns_by_name(names)
    th = _theta(theta)
    lv = _Leaves(spec, nm, var_base)
    ctx = Ctx(text, dialect, numbers, placeholders, th)
    if not text.strip():
        raise ParseError("empty expression", text, 0, dialect)
    if spec.kind == "prefix" or (spec.prefix_too and _looks_prefix(text, spec)):
        _, funcs = _syntax(spec, "prefix")
        ptoks = _prefix_tokens(text)
        ctx.next_slot = 0
        expr = parse_prefix(ptoks, Prefix(funcs, _prefix_leaf(lv)), ctx)
    else:
        binops, funcs = _syntax(spec, "infix")
        toks = tokenize(text, dialect, dotted=bool(spec.fn_prefix), julia=spec.julia_floats)
        base = _explicit_slots(spec, toks, nm)
        if spec.indexed is not None and th is not None:
            base = max(base, len(th))
        ctx.next_slot = base
        syn = Infix(binops, funcs, _infix_leaf(lv), unary_minus=spec.unary_minus,
                    unary_plus=spec.unary_plus, implicit_mul=spec.implicit_mul,
                    literal_powers={(tok, k): op for op, tok, k in spec.literal_powers},
                    fn_prefix=spec.fn_prefix,
                    tight_neg_literal=spec.tight_neg_literal)
        expr = ctx.value(parse_infix(toks, syn, ctx))
    if not ctx.values and not ctx.auto_slots:
        return expr, np.empty(0)
    expr, vals = _compact(expr, ctx)
    n = expr.n_params
    values = np.full(n, math.nan)
    for k, v in vals.items():
        if k < n:
            values[k] = v
    return expr, values


_QUOTED = re.compile(r"'([^',\s]*)'|\"([^\",\s]*)\"")


def _prefix_tokens(text: str) -> list[tuple[str, int]]:
    """Prefix tokens separated by commas and/or spaces; a Python list of strings
    (`['mul', 'c', 'x_1']`, as NeSymReS and E2E store token sequences) is accepted too."""
    s = text.strip()
    if s.startswith("[") and s.endswith("]"):
        off = text.index("[") + 1
        inner = text[off:text.rindex("]")]
        out = []
        for m in _PREFIX_TOKEN.finditer(inner):
            q = _QUOTED.fullmatch(m.group())
            out.append(((q.group(1) if q.group(1) is not None else q.group(2)) if q
                        else m.group(), off + m.start()))
        return out
    return [(m.group(), m.start()) for m in _PREFIX_TOKEN.finditer(text)]


def _looks_prefix(text: str, spec: Dialect) -> bool:
    s = text.strip()
    if s.startswith("[") and s.endswith("]") and ("'" in s or '"' in s):
        return True
    toks = _PREFIX_TOKEN.findall(text)
    if "(" in text or len(toks) < 2:
        return False
    _, funcs = _syntax(spec, "prefix")
    return toks[0] in funcs


def read(text: str, dialect: "DialectName | Dialect" = "auto", *, var_base: int | None = None,
         names: Any = None, numbers: Numbers = "const", placeholders: bool = True,
         theta: Any = None, with_params: bool = False) -> "Expr | tuple[Expr, np.ndarray]":
    """Read one expression written in `dialect` ("auto" detects it where unambiguous).

    var_base: override the dialect's 0/1-based variable numbering.  names: identifiers -> columns
    (a list, or a dict name -> column).  numbers="params": every numeric literal becomes a
    parameter slot, numbered in text order (named constants pi/E and inf/nan stay constants;
    structural integers such as powi's exponent or E2E's `**2` are not parameters).
    Placeholders (`C`, `c`, `const`, `t[i]`) become parameters (placeholders=False rejects
    them).  theta: values of eggp's `t[i]` (a sequence or its `;`-separated CSV text;
    substituted as constants unless numbers="params"), of symcore's `p<i>`, or of the
    placeholders in their order.  with_params=True (deprecated: use `read_with_params`) returns
    (expr, starting parameter values)."""
    expr, values = read_with_params(text, dialect, var_base=var_base, names=names,
                                    numbers=numbers, placeholders=placeholders, theta=theta)
    if with_params:
        import warnings
        warnings.warn("read(..., with_params=True) is deprecated: use read_with_params, which "
                      "always returns (expr, params)", DeprecationWarning, stacklevel=2)
        return expr, values
    return expr


def read_with_params(text: str, dialect: "DialectName | Dialect" = "auto", *,
                     var_base: int | None = None, names: Any = None, numbers: Numbers = "const",
                     placeholders: bool = True, theta: Any = None) -> tuple[Expr, np.ndarray]:
    """`read`, also returning the starting values of the expression's parameters (one per slot,
    from `theta` or from the literals that numbers="params" lifted; NaN where none is known)."""
    opts = dict(var_base=var_base, names=names, numbers=numbers, placeholders=placeholders,
                theta=theta)
    if dialect == "auto":
        _, expr, values = _detect([text], opts)[0:3]
    else:
        expr, values = _read_one(text, dialect, **opts)
    return expr, values


def _detect(texts: list[str], opts: dict[str, Any], only: Sequence[str] | None = None
            ) -> tuple[str, Expr, np.ndarray]:
    """The dialect that reads every text, choosing the first in the detection order (the
    records' `detect_rank`) when several read them to the same expressions; DialectError when
    they disagree or none reads them.  `only`: the dialects to try (default: all)."""
    results: dict[str, list[tuple[Expr, np.ndarray]]] = {}
    first_err: SymcoreError | None = None
    for dia in detection_order():
        if only is not None and dia.name not in only:
            continue
        if dia.detect_hint is not None and not all(re.search(dia.detect_hint, t) for t in texts):
            continue
        d = dia.name
        try:
            results[d] = [_read_one(t, dia, **opts) for t in texts]
        except SymcoreError as err:
            first_err = first_err or err
    if not results:
        raise DialectError(f"no dialect reads this text: {texts[0][:60]!r} "
                           f"(symcore's reader says: {first_err})")
    ds = list(results)
    ref = results[ds[0]]
    for d in ds[1:]:
        for (e1, v1), (e2, v2) in zip(ref, results[d]):
            if e1 is not e2 or not np.array_equal(v1, v2, equal_nan=True):
                hint = " (DySymNet's x_1.. output: dialect=\"dysymnet\")" \
                    if "dysymnet" in ds else ""
                raise DialectError(f"ambiguous dialect: {ds[0]} and {d} read "
                                   f"{texts[0][:60]!r} differently; pass dialect={hint}")
    return ds[0], ref[0][0], ref[0][1]


def _settle(texts: list[str], sample: list[str], opts: dict[str, Any]) -> str:
    """Settle a sample that several dialects read differently with every line of the file:
    a dialect drops out on a line it cannot read that another one reads (one `x_0` settles
    e2e against dysymnet's 1-based `x_1`); the lines that dropped one are added to the sample
    and detection runs again over the dialects left."""
    left = []
    for dia in detection_order():
        try:
            for t in sample:
                _read_one(t, dia, **opts)
            left.append(dia)
        except SymcoreError:
            continue
    deciding: list[str] = []
    for t in dict.fromkeys(texts):   # each distinct line once
        if len(left) < 2:
            break
        ok = []
        for dia in left:
            try:
                _read_one(t, dia, **opts)
                ok.append(dia)
            except SymcoreError:
                pass
        if ok and len(ok) < len(left):
            left = ok
            deciding.append(t)
    return _detect(sample + deciding, opts, only=[d.name for d in left])[0]


def detect_dialect(text: "str | Sequence[str]") -> str:
    """The dialect of `text` (or of a few lines): the one that reads it, or the preferred one
    among those that read it to the same expression.  DialectError when ambiguous or unknown."""
    texts = [text] if isinstance(text, str) else [t for t in text if t.strip()]
    if not texts or not all(isinstance(t, str) and t.strip() for t in texts):
        raise DialectError("cannot detect the dialect of empty text")
    opts = dict(var_base=None, names=None, numbers="const", placeholders=True, theta=None)
    return _detect(list(texts), opts)[0]
