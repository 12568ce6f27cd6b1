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
        elif op.latex.startswith("{{{0}}}^"):
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
            parts[n] = _template_parts(OPS[n.op].c, n.args)
    _size_guard(expr, parts, "C expression")
    return _emit(expr, parts)


# NumPy source of the operators whose reference implementation is not a NumPy ufunc.  Operands
# used twice go through a lambda so nested expressions do not grow exponentially.
_NP_SRC = {
    "cube": "(lambda a: a * a * a)({0})",
    "powi": "np.power({0}, {1})",
    "aq": "(lambda a, b: a / np.sqrt(1.0 + b * b))({0}, {1})",
    "pdiv": f"(lambda a, b: np.where(np.abs(b) > {_ops.GPLEARN_THRESHOLD!r}, np.divide(a, b), "
            "1.0))({0}, {1})",
    "plog": f"(lambda a: np.where(np.abs(a) > {_ops.GPLEARN_THRESHOLD!r}, np.log(np.abs(a)), "
            "0.0))({0})",
    "pinv": f"(lambda a: np.where(np.abs(a) > {_ops.GPLEARN_THRESHOLD!r}, np.divide(1.0, a), "
            "0.0))({0})",
    "sqrt_abs": "np.sqrt(np.abs({0}))",
    "log_abs": "np.log(np.abs({0}))",
    "dlog": f"np.log(np.abs({{0}}) + {_ops.DYSYMNET_LOG_EPS!r})",
    "pow_abs": "np.power(np.abs({0}), {1})",
}


def _np_template(op: str) -> str:
    fn = OPS[op].np
    if op in _NP_SRC:
        return _NP_SRC[op]
    import numpy as np
    if isinstance(fn, np.ufunc):
        return f"np.{fn.__name__}(" + ", ".join(f"{{{i}}}" for i in range(OPS[op].arity)) + ")"
    raise ExportError(f"no NumPy source for operator {op!r}")


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
