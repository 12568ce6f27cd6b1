"""Conversions between symcore's IR and SymPy expressions (iterative both ways).

`to_sympy` uses each op's SymPy builder from the ops table (protected ops become Piecewise /
Abs forms with the tools' semantics).  `from_sympy` maps SymPy's n-ary Add/Mul to left-folded
binary add/mul, `Mul(-1, x)` to neg, integer powers to square (2), cube (3), inv (-1) or
powi (other integers), `Pow(x, 1/2)` to sqrt, other powers to pow; numbers (Integer, Rational,
Float, pi, E) become float constants.  A node without a symcore operator raises
UnknownOperatorError.
"""

from __future__ import annotations

import math
import re
from typing import Any

from symcore import ops as _ops
from symcore.errors import ParseError, SymcoreError, UnknownOperatorError
from symcore.ir import Expr, call, const, param, topo, var

__all__ = ["to_sympy", "from_sympy"]


def _sp() -> Any:
    import sympy
    return sympy


def _col_names(names: Any) -> dict[int, str]:
    if names is None:
        return {}
    if isinstance(names, dict):
        return {int(v): str(k) for k, v in names.items()}
    return {i: str(k) for i, k in enumerate(names)}


def to_sympy(expr: Expr, names: Any = None) -> Any:
    """The SymPy expression of `expr`: variables are Symbols x0.. (or their display names, or
    `names`), parameters p0.., constants Floats (±oo / nan for non-finite ones); a literal
    subterm SymPy evaluates to a non-real number or to AccumBounds becomes nan (its IEEE
    real-domain value), one beyond float64's range ±oo (IEEE overflow)."""
    try:
        return _to_sympy(expr, names)
    except RecursionError:
        raise SymcoreError(f"expression too deep for SymPy (depth {expr.depth})") from None


def _to_sympy(expr: Expr, names: Any) -> Any:
    sp = _sp()
    cols = _col_names(names)
    memo: dict[Expr, Any] = {}
    literal: set[Expr] = set()      # subterms without variables or parameters
    for n in topo([expr]):
        if n.op == "var":
            memo[n] = sp.Symbol(cols.get(n.value) or n.name or f"x{n.value}", real=True)
        elif n.op == "param":
            memo[n] = sp.Symbol(f"p{n.value}", real=True)
        elif n.op == "const":
            v = float(n.value)
            memo[n] = sp.nan if math.isnan(v) else (sp.oo if v == math.inf else
                                                   (-sp.oo if v == -math.inf else sp.Float(v)))
        elif n.op == "powi":
            memo[n] = memo[n.args[0]] ** sp.Integer(int(n.args[1].value))
        else:
            try:
                memo[n] = _ops.OPS[n.op].need("sympy", "to_sympy")(*(memo[a] for a in n.args))
            except (ArithmeticError, TypeError, KeyError, ValueError, MemoryError) as err:
                # SymPy raises on e.g. Float(1.0) / Float(0.0); mpmath runs out of memory
                # evaluating exp(exp(1e16)) exactly
                raise SymcoreError(f"SymPy cannot build {n.op} of these operands: "
                                   f"{type(err).__name__}") from None
        if n.op in ("var", "param", "const") or not all(
                a.op == "const" or a in literal for a in n.args):
            continue
        literal.add(n)
        v = memo[n]
        if v.has(sp.AccumBounds) or (v.is_number and v.is_finite and v.is_real is False):
            # SymPy folded a literal subterm to a complex number (acosh(0) = iπ/2) or to a set
            # of limits (sin(oo) = <-1, 1>); over the reals, where symcore computes in IEEE
            # arithmetic, it is NaN: keep that, or an enclosing protected op (plog(iπ/2) =
            # log(π/2)) turns it into a wrong real number
            memo[n] = sp.nan
        elif (v.is_Float or v.is_Rational) and abs(v) > _FLOAT_MAX:
            # a literal beyond float64's range is what IEEE makes of it, ±inf: SymPy keeps
            # cosh(-874241.66) exact (about 10^379670), and sinh of that runs mpmath for hours
            memo[n] = sp.oo if v > 0 else -sp.oo
    return memo[expr]


#: the largest float64
_FLOAT_MAX = 1.7976931348623157e308


_FUNC_MAP: tuple[int, dict[Any, str]] | None = None  # (ops generation, map)


def _func_map() -> dict[Any, str]:
    """SymPy function class -> op name, for every unary/binary op whose SymPy builder yields
    f(args) with the operands unchanged (derived from the ops table)."""
    global _FUNC_MAP
    if _FUNC_MAP is None or _FUNC_MAP[0] != _ops.generation():
        sp = _sp()
        a, b = sp.Symbol("a"), sp.Symbol("b")
        out: dict[Any, str] = {}
        for name, op in _ops.OPS.items():
            if op.protected or op.sympy is None or name in ("powi",):
                continue
            args = (a,) if op.arity == 1 else (a, b)
            try:
                r = op.sympy(*args)
            except Exception:  # pragma: no cover - a builder that needs special operands
                continue
            if isinstance(r, sp.Function) and tuple(r.args) == args:
                out.setdefault(r.func, name)
        _FUNC_MAP = (_ops.generation(), out)
    return _FUNC_MAP[1]


_SYM_PATTERNS = ((re.compile(r"(?a)x_?(\d+)\Z"), 0), (re.compile(r"(?a)X_?(\d+)\Z"), 1))


def _symbol(s: Any, names: dict[str, int]) -> Expr:
    nm = s.name
    if nm in names:
        return var(names[nm], nm if nm.isidentifier() else None)
    m = re.match(r"(?a)p(\d{1,6})\Z", nm)
    if m:
        return param(int(m.group(1)))
    for rx, base in _SYM_PATTERNS:
        m = rx.match(nm)
        if m and len(m.group(1)) <= 12 and int(m.group(1)) - base >= 0:
            return var(int(m.group(1)) - base)
    raise ParseError(f"unknown symbol {nm!r} (pass names=)", nm, None, "sympy")


def from_sympy(sexpr: Any, names: Any = None) -> Expr:
    """symcore IR of a SymPy expression (see the module docstring for the mapping)."""
    sp = _sp()
    if isinstance(names, dict):
        nmap = {str(k): int(v) for k, v in names.items()}
    elif names is not None:
        nmap = {str(k): i for i, k in enumerate(names)}
    else:
        nmap = {}
    try:
        sexpr = sp.sympify(sexpr, strict=True)
    except Exception:
        raise UnknownOperatorError(f"not a SymPy expression: {type(sexpr).__name__}") from None
    fmap = _func_map()
    try:
        return _from_sympy(sexpr, nmap, fmap, sp)
    except RecursionError:
        raise SymcoreError("SymPy expression too deep") from None


def _from_sympy(sexpr: Any, nmap: dict[str, int], fmap: dict[Any, str], sp: Any) -> Expr:
    memo: dict[Any, Expr] = {}
    stack: list[tuple[Any, bool]] = [(sexpr, False)]
    while stack:
        node, done = stack.pop()
        if node in memo:
            continue
        if not done and node.args and not node.is_Number:
            if not (isinstance(node, (sp.Add, sp.Mul, sp.Pow, sp.Max, sp.Min))
                    or node.func in fmap):
                raise UnknownOperatorError(f"SymPy {node.func.__name__} has no symcore operator")
            stack.append((node, True))
            stack.extend((a, False) for a in node.args if a not in memo)
            continue
        memo[node] = _convert(node, memo, nmap, fmap, sp)
    return memo[sexpr]


def _fold(op: str, items: list[Expr]) -> Expr:
    acc = items[0]
    for x in items[1:]:
        acc = call(op, acc, x)
    return acc


def _convert(node: Any, memo: dict[Any, Expr], nmap: dict[str, int],
             fmap: dict[Any, str], sp: Any) -> Expr:
    if node.is_Symbol:
        return _symbol(node, nmap)
    if node is sp.nan:
        return const(math.nan)
    if node is sp.oo:
        return const(math.inf)
    if node is sp.S.NegativeInfinity:
        return const(-math.inf)
    if node.is_Number or node in (sp.pi, sp.E):
        if node.is_real is False or getattr(node, "is_finite", True) is False:
            raise UnknownOperatorError(f"unsupported SymPy number {node}")
        return const(float(node))
    if node.is_NumberSymbol:
        return const(float(node))
    kids = [memo[a] for a in node.args]
    if isinstance(node, sp.Add):
        return _fold("add", kids)
    if isinstance(node, sp.Mul):
        if node.args[0] == sp.Integer(-1) and len(node.args) >= 2:
            return call("neg", _fold("mul", kids[1:]))
        return _fold("mul", kids)
    if isinstance(node, sp.Pow):
        e = node.args[1]
        if e.is_Integer:
            k = int(e)
            if k == 2:
                return call("square", kids[0])
            if k == 3:
                return call("cube", kids[0])
            if k == -1:
                return call("inv", kids[0])
            return call("powi", kids[0], const(float(k)))
        if e == sp.Rational(1, 2):
            return call("sqrt", kids[0])
        if e == sp.Rational(1, 3):
            return call("cbrt", kids[0])
        return call("pow", kids[0], kids[1])
    if isinstance(node, (sp.Max, sp.Min)):
        return _fold("max" if isinstance(node, sp.Max) else "min", kids)
    op = fmap.get(node.func)
    if op is not None and _ops.OPS[op].arity == len(kids):
        return call(op, *kids)
    raise UnknownOperatorError(f"SymPy {node.func.__name__} has no symcore operator")
