"""Printers: symcore's own text (read back to the identical node) and the other dialects.

All printers walk the flat form, so 10,000-deep trees print without recursion.
"""

from __future__ import annotations

from .ir import Expr, topo
from .ops import OPS

_LEAF_PREC = 100


def _num(v: float) -> str:
    return repr(float(v))


def _leaf_text(n: Expr) -> tuple[str, int]:
    if n.op == "var":
        return (f"x{n.value}" if n.name is None else f"x{n.value}:{n.name}"), _LEAF_PREC
    if n.op == "param":
        return f"p{n.value}", _LEAF_PREC
    v = float(n.value)
    if v < 0 or (v == 0 and str(v).startswith("-")):
        return f"({_num(v)})", _LEAF_PREC
    return _num(v), _LEAF_PREC


def _starts_numeric(s: str) -> bool:
    return s[:1].isdigit() or s[:1] == "." or s.startswith(("inf", "nan"))


def to_text(expr: Expr) -> str:
    """symcore's canonical infix text; `read(to_text(e), dialect="symcore") is e`."""
    memo: dict[Expr, tuple[str, int]] = {}
    for n in topo([expr]):
        if n.is_leaf:
            memo[n] = _leaf_text(n)
            continue
        op = OPS[n.op]
        if op.infix is not None and op.arity == 2:
            (ls, lp), (rs, rp) = memo[n.args[0]], memo[n.args[1]]
            if lp < op.prec or (lp == op.prec and op.right_assoc):
                ls = f"({ls})"
            if rp < op.prec or (rp == op.prec and not op.right_assoc):
                rs = f"({rs})"
            memo[n] = (f"{ls} {op.infix} {rs}" if op.prec < 40 else f"{ls}{op.infix}{rs}", op.prec)
        elif n.op == "neg":
            s, p = memo[n.args[0]]
            if _starts_numeric(s):
                memo[n] = (f"neg({s})", _LEAF_PREC)
            else:
                memo[n] = (f"-{s}" if p >= op.prec else f"-({s})", op.prec)
        else:
            memo[n] = (f"{n.op}({', '.join(memo[a][0] for a in n.args)})", _LEAF_PREC)
    return memo[expr][0]


# ---------------------------------------------------------------------------------------------
# Other dialects.  Binary operators are printed fully parenthesised, so every reader reads the
# same tree back whatever its precedence rules.

import math as _math
import re as _re
from typing import Any as _Any

from . import ops as _ops
from .errors import DialectError, ExportError

_IDENT = _re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

# dialect -> (variable format, default base, parameter format or None, layout)
#   layout: "infix" (symbols), "calls" (gplearn: every op is a call), "words" (E2E word infix),
#   "prefix" (comma-separated Polish tokens)
_WRITE: dict[str, tuple[str, int, str | None, str]] = {
    "gplearn": ("X{}", 0, None, "calls"),
    "operon": ("X{}", 1, None, "infix"),
    "eggp": ("x{}", 0, None, "infix"),
    "eggp_numpy": ("x[:, {}]", 0, "t[{}]", "infix"),
    "pysr": ("x{}", 0, None, "infix"),
    "sympy": ("x{}", 0, "C", "infix"),
    "dysymnet": ("x_{}", 1, None, "infix"),
    "e2e": ("x_{}", 0, None, "words"),
    "e2e_prefix": ("x_{}", 0, None, "prefix"),
    "dso": ("x{}", 1, "const", "prefix"),
    "nesymres": ("x_{}", 1, "c", "infix"),
}
# the tools' own vocabulary where the ops table lists a generic spelling first
_TOOL_NAME = {("e2e", "square"): "pow2", ("e2e", "cube"): "pow3",
              ("e2e_prefix", "square"): "pow2", ("e2e_prefix", "cube"): "pow3",
              ("dso", "square"): "n2", ("dso", "cube"): "n3"}
# dialects whose readers take `-x` as negation (the others spell neg as a call)
_MINUS_NEG = ("operon", "eggp", "eggp_numpy", "pysr", "sympy", "dysymnet", "nesymres")


def _names_by_col(names: _Any) -> dict[int, str]:
    if names is None:
        return {}
    if isinstance(names, dict):
        items = [(int(v), k) for k, v in names.items()]
    elif isinstance(names, str):
        raise DialectError("names must be a list of identifiers or a dict, not a string")
    else:
        items = list(enumerate(names))
    out: dict[int, str] = {}
    for i, k in items:
        if not isinstance(k, str) or not _IDENT.match(k):
            raise DialectError(f"variable names must be identifiers, got {k!r}")
        out.setdefault(i, k)
    return out


def _symbol(op: str, dialect: str) -> str | None:
    for s in _ops.OPS[op].spell.get(dialect, ()):
        if not _IDENT.match(s):
            return s
    return None


def write(expr: Expr, dialect: str, *, names: _Any = None, var_base: int | None = None) -> str:
    """`expr` as text of `dialect`, for that dialect's reader (`read(write(e, d), d)` evaluates
    like `e`).  DialectError if the dialect cannot express an operator, a parameter or a
    non-finite constant.  `powi` is written with the dialect's power syntax where it has no
    integer power of its own.  Placeholder dialects (sympy `C`, nesymres `c`, dso `const`) number
    parameters by their order of appearance."""
    if dialect == "symcore":
        cols = _names_by_col(names)
        if cols:
            from .ir import map_leaves, var
            expr = map_leaves(expr, lambda n: var(n.value, cols[n.value])
                              if n.op == "var" and n.value in cols else n)
        return to_text(expr)
    try:
        vfmt, base, pfmt, layout = _WRITE[dialect]
    except (KeyError, TypeError):
        raise DialectError(f"cannot write dialect {dialect!r}; writable: symcore, "
                           f"{', '.join(_WRITE)}") from None
    if var_base is not None:
        base = var_base
    cols = _names_by_col(names)
    memo: dict[Expr, str] = {}
    for n in topo([expr]):
        if n.op == "var":
            memo[n] = cols[n.value] if n.value in cols else vfmt.format(n.value + base)
            continue
        if n.op == "param":
            if pfmt is None:
                raise DialectError(f"dialect {dialect} has no parameter syntax (p{n.value})")
            memo[n] = pfmt.format(n.value)
            continue
        if n.op == "const":
            v = float(n.value)
            if not _math.isfinite(v):
                raise DialectError(f"dialect {dialect} cannot express the constant {v!r}")
            s = repr(v)
            memo[n] = f"({s})" if s.startswith("-") and layout in ("infix", "words") else s
            continue
        args = [memo[a] for a in n.args]
        op = n.op
        if op == "powi" and _ops.printed_name("powi", dialect) is None:
            op = "pow"
        name = _TOOL_NAME.get((dialect, op)) or _ops.printed_name(op, dialect)
        if name is None:
            raise DialectError(f"dialect {dialect} cannot express operator {n.op!r}")
        if layout == "prefix":
            memo[n] = ",".join([name, *args])
        elif layout == "calls":
            memo[n] = f"{name}({', '.join(args)})"
        elif op == "neg" and dialect in _MINUS_NEG:
            memo[n] = f"(-({args[0]}))"
        elif layout == "words":
            if op in ("square", "cube") and name in ("pow2", "pow3"):
                memo[n] = f"({args[0]})**{name[-1]}"
            elif len(args) == 2:
                memo[n] = f"({args[0]} {name} {args[1]})"
            else:
                memo[n] = f"{name}({args[0]})"
        else:
            sym = _symbol(op, dialect) if len(args) == 2 else None
            if sym is not None:
                memo[n] = f"({args[0]} {sym} {args[1]})"
            else:
                fn = ("np." + name) if dialect == "eggp_numpy" else name
                memo[n] = f"{fn}({', '.join(args)})"
    return memo[expr]


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
    cols = _names_by_col(names)
    memo: dict[Expr, tuple[str, int]] = {}
    for n in topo([expr]):
        if n.op == "var":
            nm = cols.get(n.value, n.name)
            if nm is None:
                s = f"x_{{{n.value}}}"
            else:
                s = nm if len(nm) == 1 else rf"\mathrm{{{nm.replace('_', r'\_')}}}"
            memo[n] = (s, _LEAF_PREC)
            continue
        if n.op == "param":
            memo[n] = (f"p_{{{n.value}}}", _LEAF_PREC)
            continue
        if n.op == "const":
            s = _latex_num(float(n.value))
            memo[n] = (rf"\left({s}\right)" if s.startswith("-") else s,
                       _LEAF_PREC if not s.startswith("-") else _LEAF_PREC)
            continue
        op = OPS[n.op]
        kids = [memo[a] for a in n.args]

        def wrap(k: tuple[str, int], below: int) -> str:
            return rf"\left({k[0]}\right)" if k[1] < below else k[0]

        if n.op in ("add", "sub", "mul"):
            left = wrap(kids[0], op.prec)
            right = wrap(kids[1], op.prec + (1 if n.op == "sub" else 0))
            if n.op == "mul":
                sep = r" \cdot " if right[:1].isdigit() or right.startswith(("-", r"\left(")) \
                    or left.startswith(r"\left(") else " "
                memo[n] = (f"{left}{sep}{right}", op.prec)
            else:
                memo[n] = (op.latex.format(left, right), op.prec)
        elif n.op == "neg":
            memo[n] = (op.latex.format(wrap(kids[0], 20)), 30)
        elif op.latex.startswith("{{{0}}}^"):
            memo[n] = (op.latex.format(wrap(kids[0], _LEAF_PREC), *[k[0] for k in kids[1:]]), 40)
        else:
            memo[n] = (op.latex.format(*[k[0] for k in kids]), _LEAF_PREC)
    return memo[expr][0]


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


def to_c(expr: Expr, x: str = "x", p: str = "p") -> str:
    """A C99 expression (needs <math.h>) over `x[i]` and `p[i]`, from the ops table's C
    templates; protected operators keep their tools' exact semantics."""
    if not (_IDENT.match(x) and _IDENT.match(p)):
        raise ExportError("x and p must be C identifiers")
    memo: dict[Expr, str] = {}
    for n in topo([expr]):
        if n.op == "var":
            memo[n] = f"{x}[{n.value}]"
        elif n.op == "param":
            memo[n] = f"{p}[{n.value}]"
        elif n.op == "const":
            memo[n] = _c_num(float(n.value))
        else:
            s = OPS[n.op].c.format(*(memo[a] for a in n.args))
            if len(s) > _MAX_SOURCE:
                raise ExportError("C expression too large (operands repeated by templates); "
                                  "export compiled code instead")
            memo[n] = s
    return memo[expr]


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
    memo: dict[Expr, str] = {}
    for n in topo([expr]):
        if n.op == "var":
            memo[n] = f"X[:, {n.value}]"
        elif n.op == "param":
            memo[n] = f"p[{n.value}]"
        elif n.op == "const":
            memo[n] = _np_num(float(n.value))
        else:
            memo[n] = _np_template(n.op).format(*(memo[a] for a in n.args))
    return memo[expr]
