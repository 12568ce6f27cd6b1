"""`register_op`: add a user operator at run time, reading its text templates (derivatives,
expansion) with symcore's own reader; the core registry primitive is `symcore.ops.register`."""

from __future__ import annotations

import contextlib
import re
from dataclasses import replace
from typing import Any, Iterator

from symcore import ops as _ops
from symcore.errors import OpRegistrationError, SymcoreError
from symcore.ir import Expr
from symcore.ops import Op, Template

__all__ = ["register_op", "unregister_op", "registered_op"]

_PLACEHOLDER = re.compile(r"\{(\d+|y)\}")


def _is_text(t: Any) -> bool:
    # a bare placeholder ("{0}", "{y}") is already a template; any other string is text
    return isinstance(t, str) and _PLACEHOLDER.fullmatch(t) is None


def _to_template(e: Expr, op: Op, src: str) -> Template:
    if e.op == "var":
        if e.value < op.arity:
            return f"{{{e.value}}}"
        if e.value == op.arity:
            return "{y}"
        raise OpRegistrationError(f"operator {op.name!r}: template {src!r} refers to operand "
                                  f"{e.value}, but the op takes {op.arity}")
    if e.op == "const":
        return float(e.value)
    if e.op == "param":
        raise OpRegistrationError(f"operator {op.name!r}: template {src!r} has a parameter")
    return (e.op, *(_to_template(a, op, src) for a in e.args))


def _parse(src: str, op: Op) -> Template:
    from symcore.io.readers import read

    def sub(m: re.Match[str]) -> str:
        g = m.group(1)
        return f"x{op.arity if g == 'y' else int(g)}"
    try:
        e = read(_PLACEHOLDER.sub(sub, src), dialect="symcore")
    except SymcoreError as err:
        raise OpRegistrationError(f"operator {op.name!r}: cannot read template {src!r}: "
                                  f"{err}") from None
    return _to_template(e, op, src)


def _format_template(t: str | None) -> str | None:
    # LaTeX is full of braces: a template without "{{" is taken as written by a person
    # (r"\operatorname{erf}({0})"), so braces other than placeholders are literal
    if t is None or "{{" in t:
        return t
    parts = re.split(r"(\{\d+\})", t)
    return "".join(p if re.fullmatch(r"\{\d+\}", p) else p.replace("{", "{{").replace("}", "}}")
                   for p in parts)


def _parsed(op: Op) -> Op:
    kw: dict[str, Any] = {}
    for fld in ("latex", "c", "np_src"):
        v = getattr(op, fld)
        if isinstance(v, str) and _format_template(v) != v:
            kw[fld] = _format_template(v)
    if isinstance(op.deriv, (tuple, list)) and any(_is_text(t) for t in op.deriv):
        kw["deriv"] = tuple(_parse(t, op) if _is_text(t) else t for t in op.deriv)
    elif isinstance(op.deriv, list):
        kw["deriv"] = tuple(op.deriv)
    if _is_text(op.expand):
        kw["expand"] = _parse(op.expand, op)
    return replace(op, **kw) if kw else op


def register_op(op: Op) -> Op:
    """Add a user operator; it then works in every layer (read, evaluate, compile, fit, simplify,
    dedupe, export).  `deriv` may be symcore text over {0}, {1} (and {y}, the op's own value),
    one string per operand; `expand` likewise.  Registering the same op again is a no-op; a
    built-in name or a different op under a registered name is an OpRegistrationError.
    Returns the registered record (templates parsed)."""
    if not isinstance(op, Op):
        raise OpRegistrationError(f"register_op takes an Op, got {type(op).__name__}")
    if op.name in _ops.BUILTIN:
        raise OpRegistrationError(f"{op.name!r} is a built-in operator; choose another name")
    needs_text = (isinstance(op.deriv, (tuple, list)) and any(_is_text(t) for t in op.deriv)) \
        or _is_text(op.expand)
    if not needs_text or op.name in _ops.OPS:
        return _ops.register(_parsed(op))
    # the templates may use the op itself (tan' = 1 + tan^2): read them with it registered
    _ops.register(replace(_parsed(replace(op, deriv=None, expand=None))))
    try:
        final = _parsed(op)
    finally:
        _ops.unregister(op.name)
    return _ops.register(final)


def unregister_op(name: str) -> None:
    """Remove a user operator (see symcore.ops.unregister)."""
    _ops.unregister(name)


@contextlib.contextmanager
def registered_op(op: Op) -> Iterator[Op]:
    """`register_op(op)` for the duration of a with-block (tests; scoped extensions)."""
    added = op.name not in _ops.OPS
    got = register_op(op)
    try:
        yield got
    finally:
        if added:
            _ops.unregister(op.name)
