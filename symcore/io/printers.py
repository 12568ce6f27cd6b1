"""Printers: symcore's own text (read back to the identical node) and the other dialects.

All printers walk the flat form and emit pieces through an explicit stack, so 10,000-deep trees
print without recursion and in time linear in the length of the text.
"""

from __future__ import annotations

import math as _math
import re as _re
import string as _string
from typing import Any as _Any, Union

from symcore import ops as _ops
from symcore.columns import names_by_column, with_names
from symcore.errors import DialectError, ExportError
from symcore.io.dialects import DIALECTS, Dialect, printable_dialects
from symcore.ir import Expr, topo
from symcore.ops import OPS
from symcore.text import LEAF_PREC, Parts, emit, to_text

# symcore's own text lives in the core (symcore.text) so that `str(expr)` needs no io import;
# re-exported here with the pieces every printer shares
_LEAF_PREC = LEAF_PREC
_Parts = Parts
_emit = emit


# ---------------------------------------------------------------------------------------------
# Other dialects.  Binary operators are printed fully parenthesised, so every reader reads the
# same tree back whatever its precedence rules.

_IDENT = _re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

def _symbol(d: Dialect, op: str) -> str | None:
    for s in d.spellings_of(op):
        if not _IDENT.match(s):
            return s
    return None


def _k_text(k: float) -> str:
    return str(int(k)) if float(k).is_integer() else repr(float(k))


def write(expr: Expr, dialect: "str | Dialect", *, names: _Any = None,
          var_base: int | None = None) -> str:
    """`expr` as text of `dialect`, for that dialect's reader (`read(write(e, d), d)` evaluates
    like `e`).  DialectError if the dialect cannot express an operator, a parameter or a
    non-finite constant.  `powi` is written with the dialect's power syntax where it has no
    integer power of its own.  Placeholder dialects (sympy `C`, nesymres `c`, dso `const`) number
    parameters by their order of appearance.  Driven by the dialect's `Dialect` record."""
    d = DIALECTS.get(dialect) if isinstance(dialect, str) else dialect
    if not isinstance(d, Dialect) or not d.printable:
        raise DialectError(f"cannot write dialect {dialect!r}; writable: "
                           f"{', '.join(printable_dialects())}")
    if d.canonical:
        return to_text(with_names(expr, names_by_column(names, DialectError)))
    name_ = d.name
    vfmt, pfmt, layout = d.var_format, d.param_format, d.layout
    base = d.var_base if var_base is None else var_base
    powers = {op: (tok, k) for op, tok, k in d.literal_powers}
    cols = names_by_column(names, DialectError)
    parts: dict[Expr, _Parts] = {}
    for n in topo([expr]):
        if n.op == "var":
            if n.value in cols:
                parts[n] = (cols[n.value],)
            elif vfmt is None:
                raise DialectError(f"dialect {name_} has no variable syntax (x{n.value})")
            else:
                parts[n] = (vfmt.format(n.value + base),)
            continue
        if n.op == "param":
            if pfmt is None:
                raise DialectError(f"dialect {name_} has no parameter syntax (p{n.value})")
            parts[n] = (pfmt.format(n.value),)
            continue
        if n.op == "const":
            v = float(n.value)
            if not _math.isfinite(v):
                raise DialectError(f"dialect {name_} cannot express the constant {v!r}")
            s = repr(v)
            parts[n] = (f"({s})" if s.startswith("-") and layout in ("infix", "words") else s,)
            continue
        args = n.args
        op = n.op
        if op == "powi" and not d.spellings_of("powi"):
            op = "pow"
        spelled = d.spellings_of(op)
        if not spelled:
            raise DialectError(f"dialect {name_} cannot express operator {n.op!r}")
        name = spelled[0]
        if layout == "prefix":
            parts[n] = _joined(name + ",", args, ",", "")
        elif layout == "calls":
            parts[n] = _joined(name + "(", args, ", ", ")")
        elif op in powers:
            tok, k = powers[op]
            sep = " " if _IDENT.match(tok) else ""
            parts[n] = ("(", args[0], ")" + sep + tok + sep + _k_text(k))
        elif op == "neg" and d.neg_as_minus:
            parts[n] = ("(-(", args[0], "))")
        elif layout == "words":
            if len(args) == 2:
                parts[n] = ("(", args[0], f" {name} ", args[1], ")")
            else:
                parts[n] = (f"{name}(", args[0], ")")
        else:
            sym = _symbol(d, op) if len(args) == 2 else None
            if sym is not None:
                parts[n] = ("(", args[0], f" {sym} ", args[1], ")")
            else:
                parts[n] = _joined(d.fn_prefix + name + "(", args, ", ", ")")
    return _emit(expr, parts)


def _joined(open_: str, args: tuple[Expr, ...], sep: str, close: str) -> _Parts:
    items: list[Union[str, Expr]] = [open_]
    for i, a in enumerate(args):
        if i:
            items.append(sep)
        items.append(a)
    if close:
        items.append(close)
    return tuple(items)


# ---------------------------------------------------------------------------------------------
# LaTeX

def _latex_num(v: float) -> str:
    if _math.isnan(v):
        return r"\mathrm{NaN}"
    if _math.isinf(v):
        return r"\infty" if v > 0 else r"-\infty"
    s = repr(v)
    if "e" in s:
        m, e = s.split("e")
        s = rf"{m} \cdot 10^{{{int(e)}}}"
    return s


def to_latex(expr: Expr, names: _Any = None) -> str:
    """LaTeX math (no surrounding $); variables as x_{i} or their names, parameters as p_{i}."""
    cols = names_by_column(names, DialectError)
    parts: dict[Expr, _Parts] = {}
    prec: dict[Expr, int] = {}
    lead: dict[Expr, str] = {}          # the first characters of each node's text

    def leaf(n: Expr, text: str) -> None:
        parts[n], prec[n], lead[n] = (text,), _LEAF_PREC, text[:8]

    for n in topo([expr]):
        if n.op == "var":
            nm = cols.get(n.value, n.name)
            if nm is None:
                leaf(n, f"x_{{{n.value}}}")
            else:
                leaf(n, nm if len(nm) == 1 else rf"\mathrm{{{nm.replace('_', r'\_')}}}")
            continue
        if n.op == "param":
            leaf(n, f"p_{{{n.value}}}")
            continue
        if n.op == "const":
            t = _latex_num(float(n.value))
            leaf(n, rf"\left({t}\right)" if t.startswith("-") else t)
            continue
        op = OPS[n.op]

        def wrap(k: Expr, below: int) -> _Parts:
            return (r"\left(", k, r"\right)") if prec[k] < below else (k,)

        if n.op in ("add", "sub", "mul"):
            a, b = n.args
            left = wrap(a, op.prec)
            right = wrap(b, op.prec + (1 if n.op == "sub" else 0))
            if n.op == "mul":
                rl = r"\left(" if len(right) == 3 else lead[b]
                ll = r"\left(" if len(left) == 3 else lead[a]
                sep = r" \cdot " if rl[:1].isdigit() or rl.startswith(("-", r"\left(")) \
                    or ll.startswith(r"\left(") else " "
                parts[n] = (*left, sep, *right)
            else:
                parts[n] = (*left, " + " if n.op == "add" else " - ", *right)
            prec[n] = op.prec
        elif n.op == "neg":
            parts[n], prec[n] = ("-", *wrap(n.args[0], 20)), 30
        elif op.need("latex", "to_latex").startswith("{{{0}}}^"):
            base = n.args[0]
            inner = _template_parts(op.latex, (base, *n.args[1:]))
            if prec[base] < _LEAF_PREC:   # the template's "{" then the base: wrap the base
                inner = tuple(x for p in inner for x in ((r"\left(", p, r"\right)")
                                                         if p is base else (p,)))
            parts[n], prec[n] = inner, 40
        else:
            parts[n], prec[n] = _template_parts(op.latex, n.args), _LEAF_PREC
        first = parts[n][0]
        lead[n] = first[:8] if isinstance(first, str) and first else lead[first]  # type: ignore
    return _emit(expr, parts)


# ---------------------------------------------------------------------------------------------
# C and NumPy source

_MAX_SOURCE = 50_000_000  # templates that repeat an operand can blow up nested expressions


def _c_num(v: float) -> str:
    if _math.isnan(v):
        return "NAN"
    if _math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    s = repr(v)
    return f"({s})" if s.startswith("-") else s


_TEMPLATES: dict[str, list[tuple[str, int | None]]] = {}


def _template_parts(tmpl: str, args: tuple[Expr, ...]) -> _Parts:
    """Pieces of a `{0}`/`{1}` format template with the operands in place."""
    pieces = _TEMPLATES.get(tmpl)
    if pieces is None:
        pieces = [(lit, None if field is None else int(field))
                  for lit, field, _, _ in _string.Formatter().parse(tmpl)]
        _TEMPLATES[tmpl] = pieces
    out: list[Union[str, Expr]] = []
    for lit, field in pieces:
        if lit:
            out.append(lit)
        if field is not None:
            out.append(args[field])
    return tuple(out)


def _size_guard(expr: Expr, parts: dict[Expr, _Parts], what: str) -> None:
    # templates that repeat an operand (square, aq, protected ops) double the text per level
    length: dict[Expr, int] = {}
    for n in topo([expr]):
        length[n] = sum(len(p) if isinstance(p, str) else length[p] for p in parts[n])
        if length[n] > _MAX_SOURCE:
            raise ExportError(f"{what} too large (operands repeated by templates); "
                              "export compiled code instead")


def to_c(expr: Expr, x: str = "x", p: str = "p") -> str:
    """A C99 expression (needs <math.h>) over `x[i]` and `p[i]`, from the ops table's C
    templates; protected operators keep their tools' exact semantics."""
    if not (isinstance(x, str) and isinstance(p, str) and _IDENT.match(x) and _IDENT.match(p)):
        raise ExportError("x and p must be C identifiers")
    parts: dict[Expr, _Parts] = {}
    for n in topo([expr]):
        if n.op == "var":
            parts[n] = (f"{x}[{n.value}]",)
        elif n.op == "param":
            parts[n] = (f"{p}[{n.value}]",)
        elif n.op == "const":
            parts[n] = (_c_num(float(n.value)),)
        else:
            parts[n] = _template_parts(OPS[n.op].need("c", "to_c"), n.args)
    _size_guard(expr, parts, "C expression")
    return _emit(expr, parts)


def _np_template(op: str) -> str:
    # the op's `np_src`; else a NumPy ufunc by name; else its callable imported by module and
    # name (a user op's scipy.special.erf); operands used twice go through a lambda in np_src
    o = OPS[op]
    if o.np_src is not None:
        return o.np_src
    args = ", ".join(f"{{{i}}}" for i in range(o.arity))
    qual = _np_qualname(o.np)
    if qual is None:
        raise ExportError(f"no NumPy source for operator {op!r}: give it `np_src`, or an `np` "
                          f"callable importable by module and name")
    return f"{qual}({args})"


def _np_qualname(fn: _Any) -> str | None:
    import importlib
    import sys

    import numpy as np
    name = getattr(fn, "__name__", None)
    if fn is None or not isinstance(name, str) or not name.isidentifier():
        return None
    if getattr(np, name, None) is fn:
        return f"np.{name}"
    mods = [getattr(fn, "__module__", None)]
    if mods[0] is None:  # ufuncs do not record their module: the public module exposing it
        mods = sorted((m for m, mod in list(sys.modules.items())
                       if mod is not None and not any(p.startswith("_") for p in m.split("."))
                       and getattr(mod, name, None) is fn), key=lambda m: (m.count("."), m))
    for m in mods:
        if not m or any(p.startswith("_") for p in m.split(".")) or m == "__main__":
            continue
        try:
            if getattr(importlib.import_module(m), name, None) is fn:
                return f"{m}.{name}"
        except ImportError:
            continue
    return None


def numpy_imports(expr: Expr) -> list[str]:
    """Modules other than NumPy that `to_numpy_source(expr)` refers to (`import` them)."""
    mods: set[str] = set()
    for op in {n.op for n in topo([expr]) if n.args}:
        for m in _re.findall(r"\b([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)\.[A-Za-z_]\w*\(",
                             _np_template(op)):
            if m != "np":
                mods.add(m)
    return sorted(mods)


def _np_num(v: float) -> str:
    if _math.isnan(v):
        return "np.nan"
    if _math.isinf(v):
        return "np.inf" if v > 0 else "(-np.inf)"
    s = repr(v)
    return f"({s})" if s.startswith("-") else s


def to_numpy_source(expr: Expr) -> str:
    """A Python expression over `X[:, i]`, `p[i]` and `np.` that computes what `evaluate` does."""
    parts: dict[Expr, _Parts] = {}
    for n in topo([expr]):
        if n.op == "var":
            parts[n] = (f"X[:, {n.value}]",)
        elif n.op == "param":
            parts[n] = (f"p[{n.value}]",)
        elif n.op == "const":
            parts[n] = (_np_num(float(n.value)),)
        else:
            parts[n] = _template_parts(_np_template(n.op), n.args)
    _size_guard(expr, parts, "NumPy source")
    return _emit(expr, parts)


# ---------------------------------------------------------------------------------------------
# JSON (read back by symcore.read_file)

def to_json(exprs: "Expr | list[Expr]", params: _Any = None) -> str:
    """A JSON list of symcore texts; with `params` (one vector per expression, or None) a list of
    {"expr": text, "params": [...]} objects.  Non-finite parameter values are written as null."""
    import json

    items = [exprs] if isinstance(exprs, Expr) else list(exprs)
    for e in items:
        if not isinstance(e, Expr):
            raise ExportError(f"to_json takes expressions, got {type(e).__name__}")
    if params is None:
        return json.dumps([to_text(e) for e in items])
    if len(params) != len(items):
        raise ExportError(f"{len(items)} expression(s) but {len(params)} parameter vector(s)")
    out = []
    for e, p in zip(items, params):
        vals = None if p is None else [float(v) if _math.isfinite(float(v)) else None for v in p]
        out.append({"expr": to_text(e), "params": vals})
    return json.dumps(out)
