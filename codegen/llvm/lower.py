"""Lowering of every ops-table operator to LLVM IR, for scalar (double/float) and vector
(<W x double/float>) values, with exactly the NumPy reference semantics (symcore/ops.py).

Each op's `lower` (in symcore/ops.py) is written against `Vocabulary`; `LOWER` maps op names
to `(builder, *values) -> value` over the live table and `lower_expr` lowers a whole
expression given how to materialise its leaves.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, Iterator, Mapping

from llvmlite import ir

from symcore.errors import CompileError
from symcore.ir import Expr, Flat, flatten
from symcore.ops import OPS, POWI_MAX_MULTIPLY, Op

from symcore.codegen.llvm.values import splat  # noqa: F401 - re-exported
from symcore.codegen.llvm.vecmath import math_call

__all__ = ["LOWER", "Vocabulary", "lowering", "libm_name", "lower_expr", "lower_powi", "splat",
           "needed_rows", "POWI_MAX_MULTIPLY", "lower_pow"]

#: POWI_MAX_MULTIPLY (symcore.ops, the semantics' home): |k| above which powi calls pow
#: instead of multiplying (k multiplications lose ~k/2 ulp)


def _intrinsic(builder: ir.IRBuilder, base: str, ty: ir.Type, nargs: int = 1) -> ir.Function:
    if isinstance(ty, ir.VectorType):
        suffix = f"v{ty.count}{'f64' if isinstance(ty.element, ir.DoubleType) else 'f32'}"
    else:
        suffix = "f64" if isinstance(ty, ir.DoubleType) else "f32"
    name = f"llvm.{base}.{suffix}"
    m = builder.module
    fn = m.globals.get(name)
    if fn is None:
        fn = ir.Function(m, ir.FunctionType(ty, [ty] * nargs), name=name)
    return fn


def _fabs(b: ir.IRBuilder, a: ir.Value) -> ir.Value:
    return b.call(_intrinsic(b, "fabs", a.type), [a])


def _sqrt(b: ir.IRBuilder, a: ir.Value) -> ir.Value:
    return b.call(_intrinsic(b, "sqrt", a.type), [a])


def _floor(b: Any, a: Any) -> Any:
    return b.call(_intrinsic(b, "floor", a.type), [a])


def _trunc(b: Any, a: Any) -> Any:
    return b.call(_intrinsic(b, "trunc", a.type), [a])


def _and(b: Any, c1: Any, c2: Any) -> Any:
    # select(c1, c2, c1) is c1 AND c2 (tier 1's TextBuilder has no integer `and`)
    return b.select(c1, c2, c1)


def _pos_powi(b: Any, x: Any, n: int) -> Any:
    # x**n, n >= 1: acc = acc*base on each set bit, base squared in between (the reference's
    # symcore.ops._powi_pos, the same IEEE operations in the same order)
    acc, base = None, x
    while True:
        if n & 1:
            acc = base if acc is None else b.fmul(acc, base)
        n >>= 1
        if not n:
            break
        base = b.fmul(base, base)
    assert acc is not None
    return acc


def _recip_powi(b: Any, x: Any, p: Any, pr: Callable[[Any], Any]) -> Any:
    # 1/x**n, except where x**n overflowed for a finite x: there (1/x)**n = pr(1/x), whose true
    # value may be subnormal (1/inf would flush it to 0)
    one = splat(x.type, 1.0)
    inf = splat(x.type, math.inf)
    fix = _and(b, b.fcmp_ordered("==", _fabs(b, p), inf),
               b.fcmp_ordered("<", _fabs(b, x), inf))
    return b.select(fix, pr(b.fdiv(one, x)), b.fdiv(one, p))


def lower_powi(b: ir.IRBuilder, x: ir.Value, k: int) -> ir.Value:
    """x**k for an integer k by repeated squaring (pow(x, 0) is 1 even for NaN, like C); see
    symcore.ops._powi_small for the semantics (the reference computes the same sequence)."""
    if k == 0:
        return splat(x.type, 1.0)
    if abs(k) > POWI_MAX_MULTIPLY:
        return math_call(b, "pow", x, splat(x.type, float(k)))
    p = _pos_powi(b, x, abs(k))
    if k > 0:
        return p
    return _recip_powi(b, x, p, lambda r: _pos_powi(b, r, abs(k)))


def _bits_powi(b: Any, x: Any, bits: list[Any]) -> Any:
    # x**n for a per-lane n given by its bit masks (low first): the same products as
    # _pos_powi(n) lane by lane (the first factor is 1.0*base = base exactly)
    acc, base = splat(x.type, 1.0), x
    for i, bit in enumerate(bits):
        acc = b.select(bit, b.fmul(acc, base), acc)
        if i + 1 < len(bits):
            base = b.fmul(base, base)
    return acc


def lower_pow(b: Any, x: Any, y: Any) -> Any:
    """pow(x, y) with the reference semantics (symcore.ops._pow): where y is integer-valued and
    |y| <= POWI_MAX_MULTIPLY, powi's multiplication sequence (so x^2.0 == x*x bit for bit);
    elsewhere C99 pow (libm/libmvec)."""
    kv = _const_value(y)
    if kv is not None:  # a literal exponent: decided now
        if math.isfinite(kv) and kv == int(kv) and abs(kv) <= POWI_MAX_MULTIPLY:
            return lower_powi(b, x, int(kv))
        return math_call(b, "pow", x, y)
    general = math_call(b, "pow", x, y)
    ty = y.type
    zero, one, half = splat(ty, 0.0), splat(ty, 1.0), splat(ty, 0.5)
    small = _and(b, b.fcmp_ordered("==", _trunc(b, y), y),
                 b.fcmp_ordered("<=", _fabs(b, y), splat(ty, float(POWI_MAX_MULTIPLY))))
    # |y| as an exact small integer in every lane that uses it (0 elsewhere); its bits by
    # exact float arithmetic: bit = m - 2*floor(m/2)
    m = b.select(small, _fabs(b, y), zero)
    bits = []
    for _ in range(POWI_MAX_MULTIPLY.bit_length()):
        h = _floor(b, b.fmul(m, half))
        bits.append(b.fcmp_ordered("==", b.fsub(m, b.fadd(h, h)), one))
        m = h
    p = _bits_powi(b, x, bits)
    r = _recip_powi(b, x, p, lambda rx: _bits_powi(b, rx, bits))
    exact = b.select(b.fcmp_ordered("<", y, zero), r, p)
    return b.select(small, exact, general)


def _powi(b: ir.IRBuilder, x: ir.Value, k: Any) -> ir.Value:
    """x**k, k an integer constant (Python number or LLVM constant; otherwise pow)."""
    kv = _const_value(k)
    if kv is None and isinstance(k, ir.Value):
        # a run-time exponent (the tier-0 Jacobian's operand slot): lower_pow's per-lane
        # binary powering, so x**k is the reference's product sequence bit for bit, not C pow
        return lower_pow(b, x, k)
    if kv is None or not math.isfinite(kv) or kv != int(kv):
        return math_call(b, "pow", x, k if isinstance(k, ir.Value) else splat(x.type, float(k)))
    return lower_powi(b, x, int(kv))


def _const_value(k: Any) -> float | None:
    if isinstance(k, (int, float)):
        return float(k)
    if isinstance(k, ir.Constant):
        c = k.constant
        if isinstance(c, (list, tuple)):
            vals = {_const_value(e) for e in c}
            return vals.pop() if len(vals) == 1 else None
        if isinstance(c, (int, float)):
            return float(c)
    return None


class Vocabulary:
    """What an op's `lower` (symcore.ops) may call: one instance wraps one builder (an llvmlite
    `IRBuilder` or tier 1's `TextBuilder`, which implements the same subset).  Compares are
    ordered (false on NaN); `isnan` is the unordered self-compare."""

    __slots__ = ("b",)

    def __init__(self, builder: Any) -> None:
        self.b = builder

    def const(self, v: float, like: Any) -> Any:
        """`v` in the type of value `like` (broadcast over lanes)."""
        return splat(like.type, v)

    def fadd(self, x: Any, y: Any) -> Any:
        return self.b.fadd(x, y)

    def fsub(self, x: Any, y: Any) -> Any:
        return self.b.fsub(x, y)

    def fmul(self, x: Any, y: Any) -> Any:
        return self.b.fmul(x, y)

    def fdiv(self, x: Any, y: Any) -> Any:
        return self.b.fdiv(x, y)

    def fneg(self, x: Any) -> Any:
        return self.b.fneg(x)

    def fabs(self, x: Any) -> Any:
        return _fabs(self.b, x)

    def sqrt(self, x: Any) -> Any:
        return _sqrt(self.b, x)

    def gt(self, x: Any, y: Any) -> Any:
        return self.b.fcmp_ordered(">", x, y)

    def lt(self, x: Any, y: Any) -> Any:
        return self.b.fcmp_ordered("<", x, y)

    def ge(self, x: Any, y: Any) -> Any:
        return self.b.fcmp_ordered(">=", x, y)

    def le(self, x: Any, y: Any) -> Any:
        return self.b.fcmp_ordered("<=", x, y)

    def eq(self, x: Any, y: Any) -> Any:
        return self.b.fcmp_ordered("==", x, y)

    def isnan(self, x: Any) -> Any:
        return self.b.fcmp_unordered("uno", x, x)

    def select(self, c: Any, x: Any, y: Any) -> Any:
        return self.b.select(c, x, y)

    def libm(self, name: str, *args: Any) -> Any:
        """libm `name` (libmvec or symcore's own vector math where they apply, else lane by
        lane)."""
        return math_call(self.b, name, *args)

    def powi(self, x: Any, k: Any) -> Any:
        return _powi(self.b, x, k)

    def pow(self, x: Any, y: Any) -> Any:
        """pow with the reference semantics (integer-valued exponents multiply; `lower_pow`)."""
        return lower_pow(self.b, x, y)


_PLAIN_CALL = re.compile(r"\s*([A-Za-z_]\w*)\((.*)\)\s*")


def libm_name(op: Op) -> str | None:
    """The function a plain-call C template calls (`erf({0})` -> "erf"), else None."""
    if op.c is None:
        return None
    m = _PLAIN_CALL.fullmatch(op.c)
    if m is None:
        return None
    want = ", ".join(f"{{{i}}}" for i in range(op.arity))
    return m.group(1) if re.sub(r"\s+", " ", m.group(2)).strip() == want else None


def _expand_lowering(op: Op) -> Callable[..., Any]:
    t = op.expand

    def go(L: Vocabulary, node: Any, args: tuple[Any, ...]) -> Any:
        if isinstance(node, str):
            return args[int(node[1:-1])]
        if isinstance(node, tuple):
            vals = [go(L, a, args) for a in node[1:]]
            return lowering(node[0])(L.b, *vals)
        return L.const(float(node), args[0])
    return lambda L, *args: go(L, t, args)


def _op_lowering(op: Op) -> Callable[..., Any]:
    """`(L, *values) -> value` of op: its `lower`, else its libm call, else its expansion."""
    if op.lower is not None:
        return op.lower
    fn = libm_name(op)
    if fn is not None:
        return lambda L, *args: L.libm(fn, *args)
    if op.expand is not None:
        return _expand_lowering(op)
    raise CompileError(f"operator {op.name!r} has no LLVM lowering: give it `lower`, a plain-call "
                       f"`c` template naming a libm function, or `expand`")


_LOWERED: dict[str, tuple[Op, Callable[..., ir.Value]]] = {}


def lowering(name: str) -> Callable[..., ir.Value]:
    """`(builder, *values) -> value` of op `name` (CompileError naming it if it has none)."""
    hit = _LOWERED.get(name)
    op = OPS.get(name)
    if op is None:
        raise CompileError(f"no LLVM lowering for op {name!r}")
    if hit is not None and hit[0] is op:
        return hit[1]
    f = _op_lowering(op)

    def fn(b: Any, *args: Any, _f: Callable[..., Any] = f) -> ir.Value:
        return _f(Vocabulary(b), *args)
    fn.__name__ = f"lower_{name}"
    fn.__doc__ = f"LLVM lowering of {name} ({op.domain}); NumPy reference semantics."
    _LOWERED[name] = (op, fn)
    return fn


class _Lowerings(Mapping[str, Callable[..., ir.Value]]):
    """Live view: op name -> `(builder, *values) -> value`, for every op of the table that can
    be lowered (an op registered later is included)."""

    def __getitem__(self, name: str) -> Callable[..., ir.Value]:
        if name not in OPS:
            raise KeyError(name)
        try:
            return lowering(name)
        except CompileError:
            raise KeyError(name) from None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str) or name not in OPS:
            return False
        try:
            lowering(name)
        except CompileError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return (n for n in list(OPS) if n in self)

    def __len__(self) -> int:
        return sum(1 for _ in self)


#: op name -> lowering helper, over the live ops table (tested: covers every built-in op)
LOWER: Mapping[str, Callable[..., ir.Value]] = _Lowerings()


def needed_rows(flat: Flat) -> list[bool]:
    """Which rows must be materialised as values: all but constants used only as the integer
    exponent of powi (those are baked into the code)."""
    need = [False] * len(flat.rows)
    need[-1] = True
    for op, kids, _ in flat.rows:
        if op == "powi":
            need[kids[0]] = True
        else:
            for k in kids:
                need[k] = True
    return need


def lower_expr(builder: ir.IRBuilder, expr_or_flat: Expr | Flat,
               leaf_values: Callable[[str, Any], ir.Value]) -> ir.Value:
    """Lower a whole expression (iteratively over its flat form) and return the root's value.

    `leaf_values(kind, value)` materialises a leaf: kind is "var" (value = column index),
    "const" (value = the float) or "param" (value = slot); it is called once per distinct leaf
    that is needed as a value (powi exponents stay literal integers in the code)."""
    flat = expr_or_flat if isinstance(expr_or_flat, Flat) else flatten(expr_or_flat)
    need = needed_rows(flat)
    vals: list[ir.Value | None] = [None] * len(flat.rows)
    for i, (op, kids, val) in enumerate(flat.rows):
        if op in ("var", "const", "param"):
            if need[i]:
                v = val[0] if (op == "var" and isinstance(val, tuple)) else val
                vals[i] = leaf_values(op, v)
            continue
        if not need[i]:
            continue
        if op == "powi":
            k = flat.rows[kids[1]][2]
            vals[i] = lower_powi(builder, vals[kids[0]], int(k))  # type: ignore[arg-type]
            continue
        vals[i] = lowering(op)(builder, *(vals[k] for k in kids))
    out = vals[-1]
    assert out is not None
    return out
