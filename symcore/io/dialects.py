"""Dialect records: one frozen `Dialect` per frontend holds everything its reader and its printer
need (syntax, variable naming, constants and placeholders, operator spellings, protected ops,
detection order); `DIALECTS` is the registry and `register_dialect` adds a user's own.

dialect     syntax                         variables          parameters / placeholders
symcore     infix ^, calls by op name      x0, x0:name        p0 (explicit slot)
gplearn     calls only: add(X0, -0.5)      X0 (0-based)       -
operon      infix ^, parenthesised         X1 (1-based)       -
eggp        infix ^, Sin/Exp/...           x0                 -   (`-0.5 ^ x` is (-0.5)^x)
eggp_numpy  Python, np.sin, **             x[:, 0]            t[0] (values: theta)
pysr        Julia infix ^, 1.5f0           x0, or names       -
sympy       Python infix **                x0, x_0; X1 (RSRM) C (each one a new slot)
dysymnet    SymPy str, log/sqrt protected  x_1 (1-based)      -
e2e         (a add b), (a)**2 = pow2       x_0                -
e2e_prefix  add,mul,... + N3142 E-3, INT+  x_0                -
dso         traversal add,x1,n2,...        x1 (1-based)       const
nesymres    SymPy infix, or prefix tokens  x_1 (1-based)      c
bingo       implicit products (a)(b)       X_0                -   (read-only)
"""

from __future__ import annotations

import math
import re
import types
from dataclasses import dataclass, field
from typing import Literal, Mapping

from symcore import ops as _ops
from symcore.errors import DialectError
from symcore.io.lexer import OPERATOR_SYMBOLS

__all__ = ["Dialect", "DIALECTS", "register_dialect", "unregister_dialect", "get_dialect",
           "detection_order", "printable_dialects", "spellings", "printed_name"]

Layout = Literal["infix", "calls", "words", "prefix"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*\Z")


@dataclass(frozen=True)
class Dialect:
    """Everything one frontend's text needs, for reading and for printing.

    layout: "infix" (symbols such as `+ ^` between operands, other ops as calls), "calls" (every
    operator is a call: gplearn), "words" (E2E: `(a add b)`, binary ops spelled as words between
    operands), "prefix" (comma/space separated Polish tokens).
    ops: op name -> spellings; the first is the one the printer writes.  all_ops: every
    registered op (user ops included) is also spelled by its own name, except those in
    `excluded`.  protected: spelling -> protected op it means in this dialect (gplearn's `log` is
    plog); the spelling is taken from every other op.  aliases: also accept each spelled op's
    `Op.aliases` (ln, arcsin, ...) where the spelling is free.
    variables: (regex with one group = the index, base) tried in order; the printer writes
    `var_format.format(index + base of the first pattern)`.
    """

    name: str
    layout: Layout = "infix"
    ops: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    all_ops: bool = False
    excluded: tuple[str, ...] = ()
    protected: Mapping[str, str] = field(default_factory=dict)
    aliases: bool = False
    # -- leaves -------------------------------------------------------------------------------
    variables: tuple[tuple[str, int], ...] = ()
    var_format: str | None = None               # printer: "X{}"; None when variables are special
    constants: tuple[tuple[str, float], ...] = ()   # named constants (pi, E)
    placeholders: tuple[str, ...] = ()              # names read as a fresh parameter each
    param_format: str | None = None             # printer: "t[{}]", "C"; None = cannot print p_i
    canonical: bool = False                     # symcore's own text: p<i>, x<i>:name, inf/nan
    indexed: tuple[str, str] | None = None      # eggp Numpy: (`x` of x[:, j], `t` of t[k])
    split_floats: bool = False                  # E2E prefix vocabulary: `+ N314 E-2`, `INT+ 1 2`
    julia_floats: bool = False                  # Float32 literals 1.5f0
    # -- operator syntax ----------------------------------------------------------------------
    unary_minus: Literal["any", "literal"] = "any"  # "literal": only directly before a number
    unary_plus: bool = False
    neg_as_minus: bool = False                  # printer writes neg as `(-(a))`, not a call
    implicit_mul: bool = False                  # Bingo: `(a)(b)` is a product
    tight_neg_literal: bool = False             # eggp (Haskell show): `-2.5 ^ x` is (-2.5)^x
    fn_prefix: str = ""                         # eggp Numpy: `np.sin`
    literal_powers: tuple[tuple[str, str, float], ...] = ()  # (op, token, k): E2E `(a)**2`
    prefix_too: bool = False                    # NeSymReS: infix, or a prefix skeleton
    # -- registry -----------------------------------------------------------------------------
    printable: bool = True                      # bingo is read-only
    detect: bool = True                         # tried by dialect="auto"
    detect_rank: int = 100                      # lower is preferred among equal readings
    detect_hint: str | None = None              # regex a text must contain to be tried

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name) or self.name == "auto":
            raise DialectError(f"a dialect name must be an identifier (not 'auto'), "
                               f"got {self.name!r}")
        if self.layout not in ("infix", "calls", "words", "prefix"):
            raise DialectError(f"dialect {self.name}: layout must be infix, calls, words or "
                               f"prefix, got {self.layout!r}")
        if self.unary_minus not in ("any", "literal"):
            raise DialectError(f"dialect {self.name}: unary_minus must be 'any' or 'literal'")
        for op, sp in self.ops.items():
            if not isinstance(sp, tuple) or not sp or not all(isinstance(s, str) and s.strip()
                                                              and s == s.strip() for s in sp):
                raise DialectError(f"dialect {self.name}: spellings of {op!r} must be a "
                                   f"non-empty tuple of strings, got {sp!r}")
        for rx, base in self.variables:
            try:
                if re.compile(rx).groups != 1:
                    raise DialectError(f"dialect {self.name}: variable pattern {rx!r} needs "
                                       "exactly one group (the index)")
            except re.error as err:
                raise DialectError(f"dialect {self.name}: bad variable pattern {rx!r}: "
                                   f"{err}") from None
            if base not in (0, 1):
                raise DialectError(f"dialect {self.name}: variable base must be 0 or 1")
        if self.detect_hint is not None:
            try:
                re.compile(self.detect_hint)
            except re.error as err:
                raise DialectError(f"dialect {self.name}: bad detect_hint: {err}") from None
        object.__setattr__(self, "ops", types.MappingProxyType(dict(self.ops)))
        object.__setattr__(self, "protected", types.MappingProxyType(dict(self.protected)))

    # -- derived views (live: they follow ops registered at run time) --------------------------
    @property
    def kind(self) -> Literal["infix", "prefix"]:
        """The reader's grammar: prefix tokens, or infix (calls and words are infix too)."""
        return "prefix" if self.layout == "prefix" else "infix"

    @property
    def var_base(self) -> int:
        """The printer's variable numbering (that of the first variable pattern)."""
        return self.variables[0][1] if self.variables else 0

    def table(self) -> Mapping[str, tuple[str, ...]]:
        """op name -> spellings in this dialect (first = printed) over the ops registered now."""
        key = _ops_state()
        hit = _TABLES.get(self.name)
        if hit is not None and hit[0] == key and hit[1] is self:
            return hit[2]
        out = _build_table(self)
        _TABLES[self.name] = (key, self, out)
        return out

    def spellings_of(self, op: str) -> tuple[str, ...]:
        """The spellings of `op` here (first = printed); () if the dialect cannot express it."""
        return self.table().get(op, ())

    def reader_names(self) -> dict[str, str]:
        """Every spelling this dialect reads -> op name."""
        return {s: name for name, sp in self.table().items() for s in sp}


_TABLES: dict[str, tuple[object, Dialect, Mapping[str, tuple[str, ...]]]] = {}


def _ops_state() -> object:
    gen = getattr(_ops, "generation", None)
    if callable(gen):
        return gen()
    return tuple((n, o.arity) for n, o in _ops.OPS.items())


def _build_table(d: Dialect) -> Mapping[str, tuple[str, ...]]:
    """Spellings by priority: protected > explicit > own name (all_ops) > alias; a spelling is
    owned by one op only, so reading is unambiguous."""
    registered = _ops.OPS
    owner: dict[str, str] = {}
    table: dict[str, list[str]] = {}

    def give(op: str, s: str) -> None:
        if op in registered and op not in d.excluded and s not in owner:
            owner[s] = op
            table.setdefault(op, []).append(s)

    for s, op in d.protected.items():
        give(op, s)
    for op, sp in d.ops.items():
        for s in sp:
            give(op, s)
    if d.all_ops:
        for op in registered:
            give(op, op)
    if d.aliases:
        for op in list(table):
            for s in registered[op].aliases:
                give(op, s)
    # the printed spelling is the explicit first one even when a protected spelling came first
    out: dict[str, tuple[str, ...]] = {}
    for op in registered:
        if op in table:
            sp = table[op]
            first = next((s for s in d.ops.get(op, ()) if s in sp), sp[0])
            out[op] = (first, *(s for s in sp if s != first))
    return types.MappingProxyType(out)


# ---------------------------------------------------------------------------------------------
# Built-in dialects.  Helpers keep the tables short: `_named` spells ops by their own names,
# `_infix` gives the four arithmetic symbols and the dialect's power symbol.

_ARITH = ("add", "sub", "mul", "div", "neg", "pow")
_FUNCS = ("square", "cube", "inv", "abs", "sign", "sqrt", "cbrt", "exp", "log", "sin", "cos",
          "tan", "tanh", "sinh", "cosh", "asin", "acos", "atan", "asinh", "acosh", "atanh")


def _named(*names: str) -> dict[str, tuple[str, ...]]:
    return {n: (n,) for n in names}


def _infix(power: str) -> dict[str, tuple[str, ...]]:
    return {"add": ("add", "+"), "sub": ("sub", "-"), "mul": ("mul", "*"), "div": ("div", "/"),
            "pow": ("pow", power)}


_PI_E = (("pi", math.pi), ("E", math.e))
# eggp prints capitalised functions (Haskell constructors); it also reads the lower-case ones
_EGGP_FUNCS = {**{f: (f.capitalize(), f) for f in _FUNCS}, "inv": ("Inv", "inv", "Recip"),
               **{f: (f.capitalize(), f, "A" + f[1:].capitalize())
                  for f in ("asin", "acos", "atan", "asinh", "acosh", "atanh")}}
_PYSR_OPS = {**_named(*_ARITH, *_FUNCS, "aq", "sqrt_abs", "log_abs", "pow_abs", "max", "min"),
             **_infix("^")}
_SYMPY_ABS = {"abs": ("abs", "Abs")}

_BUILTIN = (
    Dialect("symcore", ops=_infix("^"), all_ops=True, variables=((r"x(\d+)", 0),),
            var_format="x{}", param_format="p{}", canonical=True, detect_rank=0),
    Dialect("gplearn", layout="calls", ops=_named(*_ARITH, *_FUNCS, "max", "min"),
            protected={"div": "pdiv", "log": "plog", "sqrt": "sqrt_abs", "inv": "pinv"},
            variables=((r"X(\d+)", 0),), var_format="X{}", unary_minus="literal",
            detect_rank=1),
    Dialect("operon", ops={**_named(*_ARITH, *_FUNCS, "aq"), **_infix("^"),
                           "fmax": ("max", "fmax"), "fmin": ("min", "fmin")},
            variables=((r"X(\d+)", 1),), var_format="X{}", neg_as_minus=True, detect_rank=2),
    Dialect("eggp", ops={**_named("neg", "aq"), **_infix("^"), **_EGGP_FUNCS},
            variables=((r"x(\d+)", 0),), var_format="x{}", neg_as_minus=True,
            tight_neg_literal=True, detect_rank=3),
    Dialect("eggp_numpy", ops={**_named(*_ARITH, *_FUNCS), **_infix("**"),
                               "inv": ("inv", "reciprocal")}, aliases=True,
            constants=(("np.pi", math.pi), ("np.e", math.e)), var_format="x[:, {}]",
            param_format="t[{}]", indexed=("x", "t"), fn_prefix="np.", unary_plus=True,
            neg_as_minus=True, detect_rank=4),
    Dialect("pysr", ops=_PYSR_OPS, variables=((r"x(\d+)", 0),), var_format="x{}",
            constants=(("pi", math.pi),), julia_floats=True, neg_as_minus=True, detect_rank=5),
    Dialect("sympy", ops={**_infix("**"), **_SYMPY_ABS, "max": ("Max", "max"),
                          "min": ("Min", "min")},
            all_ops=True, excluded=("powi",), aliases=True,
            variables=((r"x(\d+)", 0), (r"x_(\d+)", 0), (r"X(\d+)", 1)), var_format="x{}",
            constants=_PI_E, placeholders=("C",), param_format="C", unary_plus=True,
            neg_as_minus=True, detect_rank=9),
    Dialect("dysymnet", ops={**_named(*_ARITH, *_FUNCS), **_infix("**"), **_SYMPY_ABS},
            protected={"log": "dlog", "sqrt": "sqrt_abs"},
            variables=((r"x_(\d+)", 1),), var_format="x_{}", constants=_PI_E, unary_plus=True,
            neg_as_minus=True, detect_rank=10),
    Dialect("e2e", layout="words", ops={**_named(*_ARITH, *_FUNCS), **_infix("**"),
                                        "square": ("pow2", "square"), "cube": ("pow3", "cube")},
            aliases=True, variables=((r"x_(\d+)", 0),), var_format="x_{}",
            literal_powers=(("square", "**", 2.0), ("cube", "**", 3.0)), detect_rank=6),
    Dialect("e2e_prefix", layout="prefix", ops={**_named(*_ARITH, *_FUNCS),
                                                "square": ("pow2", "square"),
                                                "cube": ("pow3", "cube")},
            aliases=True, variables=((r"x_(\d+)", 0),), var_format="x_{}", split_floats=True,
            detect_rank=7),
    Dialect("dso", layout="prefix", ops={**_named(*_ARITH, *_FUNCS), "square": ("n2", "square"),
                                         "cube": ("n3", "cube")},
            variables=((r"x(\d+)", 1),), var_format="x{}", placeholders=("const",),
            param_format="const", detect_rank=8),
    Dialect("nesymres", ops={**_named(*_ARITH, *_FUNCS), **_infix("**"), **_SYMPY_ABS},
            variables=((r"x_(\d+)", 1),), var_format="x_{}", constants=_PI_E,
            placeholders=("c",), param_format="c", unary_plus=True, neg_as_minus=True,
            prefix_too=True, detect_rank=11),
    # read-only: Bingo strings as stored in reggression's test files (implicit products)
    Dialect("bingo", ops=_PYSR_OPS, variables=((r"X_(\d+)", 0),), julia_floats=True,
            implicit_mul=True, printable=False, detect_rank=12),
)

_REGISTRY: dict[str, Dialect] = {d.name: d for d in _BUILTIN}
_BUILTIN_NAMES = frozenset(_REGISTRY)

#: every dialect by name (read-only; `register_dialect` adds one)
DIALECTS: Mapping[str, Dialect] = types.MappingProxyType(_REGISTRY)


def register_dialect(d: Dialect) -> Dialect:
    """Add a user's dialect; `read`, `write` and `dialect="auto"` (unless `detect=False`) then
    use it.  Re-registering a built-in name is an error; re-registering an identical record is a
    no-op; a different record under a user name replaces it."""
    if not isinstance(d, Dialect):
        raise DialectError(f"register_dialect takes a Dialect, got {type(d).__name__}")
    if d.name in _BUILTIN_NAMES:
        raise DialectError(f"{d.name!r} is a built-in dialect and cannot be replaced")
    for op, sp in d.ops.items():
        for s in sp:
            if _IDENT.match(s):
                continue
            if d.layout in ("calls", "prefix") or s not in OPERATOR_SYMBOLS:
                raise DialectError(f"dialect {d.name}: {s!r} (for {op}) must be an identifier"
                                   + ("" if d.layout in ("calls", "prefix") else
                                      f" or one of {' '.join(OPERATOR_SYMBOLS)}"))
    if d.literal_powers:
        binary = {s for op, sp in d.table().items() if _ops.OPS[op].arity == 2 for s in sp}
        for op, tok, k in d.literal_powers:
            if tok not in binary or d.kind != "infix":
                raise DialectError(f"dialect {d.name}: literal power {tok!r} of {op} must be "
                                   "a binary operator spelling of an infix dialect")
    _REGISTRY[d.name] = d
    _TABLES.pop(d.name, None)
    return d


def unregister_dialect(name: str) -> None:
    """Remove a user's dialect (built-ins stay)."""
    if name in _BUILTIN_NAMES:
        raise DialectError(f"{name!r} is a built-in dialect and cannot be removed")
    if name not in _REGISTRY:
        raise DialectError(f"no user dialect {name!r}")
    del _REGISTRY[name]
    _TABLES.pop(name, None)


def get_dialect(name: "str | Dialect") -> Dialect:
    """The dialect called `name` (a record passes through), or DialectError listing the known."""
    if isinstance(name, Dialect):
        return name
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise DialectError(f"unknown dialect {name!r}; known: {', '.join(_REGISTRY)}") from None


def detection_order() -> tuple[Dialect, ...]:
    """The dialects `dialect="auto"` tries, preferred first (rank, then registration order)."""
    ds = [d for d in _REGISTRY.values() if d.detect]
    return tuple(sorted(ds, key=lambda d: d.detect_rank))


def printable_dialects() -> tuple[str, ...]:
    """Names of the dialects `write` can print."""
    return tuple(n for n, d in _REGISTRY.items() if d.printable)


def spellings(dialect: str) -> dict[str, str]:
    """Every spelling `dialect` reads -> op name."""
    return get_dialect(dialect).reader_names()


def printed_name(op: str, dialect: str) -> str | None:
    """The spelling the dialect's printer uses for `op`, or None if it cannot express it."""
    sp = get_dialect(dialect).spellings_of(op)
    return sp[0] if sp else None


class _OpsView:
    """The deprecated spelling views of symcore.ops (`Op.spell`, `ops.DIALECTS`,
    `ops.spellings`, `ops.printed_name`), answered from the records for one release."""

    @property
    def DIALECTS(self) -> tuple[str, ...]:  # noqa: N802 - the old module constant's name
        return printable_dialects()

    spellings = staticmethod(spellings)
    printed_name = staticmethod(printed_name)

    @staticmethod
    def spell(op: str) -> Mapping[str, tuple[str, ...]]:
        return types.MappingProxyType({n: sp for n, d in _REGISTRY.items() if d.printable
                                       for sp in (d.spellings_of(op),) if sp})


_ops._dialect_view = _OpsView()
