"""Lowering of every ops-table operator to LLVM IR, for scalar (double/float) and vector
(<W x double/float>) values, with exactly the NumPy reference semantics (symcore/ops.py).

Each helper is `(builder, *values) -> value`; `LOWER` maps op names to them and `lower_expr`
lowers a whole expression given how to materialise its leaves.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

from llvmlite import ir

from symcore.errors import CompileError
from symcore.ir import Expr, Flat, flatten
from symcore.ops import DYSYMNET_LOG_EPS, GPLEARN_THRESHOLD, OPS

from symcore.codegen.llvm.values import splat  # noqa: F401 - re-exported
from symcore.codegen.llvm.vecmath import math_call

__all__ = ["LOWER", "lower_expr", "lower_powi", "splat", "needed_rows", "POWI_MAX_MULTIPLY"]

#: |k| above which powi calls pow instead of multiplying (k multiplications lose ~k/2 ulp)
POWI_MAX_MULTIPLY = 16


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


def _guarded(b: ir.IRBuilder, test: ir.Value, value: ir.Value, fallback: float) -> ir.Value:
    # gplearn: np.where(|x| > 0.001, value, fallback); an ordered compare sends NaN to fallback
    thr = splat(test.type, GPLEARN_THRESHOLD)
    cond = b.fcmp_ordered(">", _fabs(b, test), thr)
    return b.select(cond, value, splat(value.type, fallback))


# -- arithmetic ---------------------------------------------------------------------------------

def l_add(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x + y."""
    return b.fadd(x, y)


def l_sub(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x - y."""
    return b.fsub(x, y)


def l_mul(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x * y."""
    return b.fmul(x, y)


def l_div(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """x / y (IEEE: ±inf or NaN at 0)."""
    return b.fdiv(x, y)


def l_neg(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """-x (sign flip, also of 0 and NaN)."""
    return b.fneg(x)


def l_pow(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """C pow(x, y)."""
    return math_call(b, "pow", x, y)


def lower_powi(b: ir.IRBuilder, x: ir.Value, k: int) -> ir.Value:
    """x**k for an integer k by repeated squaring (pow(x, 0) is 1 even for NaN, like C)."""
    if k == 0:
        return splat(x.type, 1.0)
    if abs(k) > POWI_MAX_MULTIPLY:
        return math_call(b, "pow", x, splat(x.type, float(k)))
    n, acc, base = abs(k), None, x
    while True:
        if n & 1:
            acc = base if acc is None else b.fmul(acc, base)
        n >>= 1
        if not n:
            break
        base = b.fmul(base, base)
    assert acc is not None
    return b.fdiv(splat(x.type, 1.0), acc) if k < 0 else acc


def l_powi(b: ir.IRBuilder, x: ir.Value, k: Any) -> ir.Value:
    """x**k, k an integer constant (Python number or LLVM constant; otherwise pow)."""
    kv = _const_value(k)
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


def l_square(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """x * x."""
    return b.fmul(x, x)


def l_cube(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """(x * x) * x, the reference's order."""
    return b.fmul(b.fmul(x, x), x)


def l_inv(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / x."""
    return b.fdiv(splat(x.type, 1.0), x)


def l_abs(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """|x|."""
    return _fabs(b, x)


def l_sign(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """np.sign: 1, -1, +0 for ±0, NaN for NaN."""
    pos = b.fcmp_ordered(">", x, splat(x.type, 0.0))
    neg = b.fcmp_ordered("<", x, splat(x.type, 0.0))
    nan = b.fcmp_unordered("uno", x, x)
    r = b.select(neg, splat(x.type, -1.0), splat(x.type, 0.0))
    r = b.select(pos, splat(x.type, 1.0), r)
    return b.select(nan, x, r)


def l_sqrt(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """IEEE sqrt (NaN below 0)."""
    return _sqrt(b, x)


def _unary_math(name: str) -> Callable[[ir.IRBuilder, ir.Value], ir.Value]:
    def f(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
        return math_call(b, name, x)
    f.__name__ = f"l_{name}"
    f.__doc__ = f"libm {name}(x) (libmvec when vectorised)."
    return f


l_cbrt = _unary_math("cbrt")
l_exp = _unary_math("exp")
l_log = _unary_math("log")
l_sin = _unary_math("sin")
l_cos = _unary_math("cos")
l_tan = _unary_math("tan")
l_tanh = _unary_math("tanh")
l_sinh = _unary_math("sinh")
l_cosh = _unary_math("cosh")
l_asin = _unary_math("asin")
l_acos = _unary_math("acos")
l_atan = _unary_math("atan")
l_asinh = _unary_math("asinh")
l_acosh = _unary_math("acosh")
l_atanh = _unary_math("atanh")


def l_aq(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """Analytic quotient x / sqrt(1 + y*y)."""
    return b.fdiv(x, _sqrt(b, b.fadd(splat(y.type, 1.0), b.fmul(y, y))))


# -- protected variants -------------------------------------------------------------------------

def l_pdiv(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """gplearn div: x/y if |y| > 0.001 else 1 (NaN y gives 1)."""
    return _guarded(b, y, b.fdiv(x, y), 1.0)


def l_plog(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """gplearn log: log|x| if |x| > 0.001 else 0 (NaN gives 0)."""
    return _guarded(b, x, math_call(b, "log", _fabs(b, x)), 0.0)


def l_pinv(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """gplearn inv: 1/x if |x| > 0.001 else 0 (NaN gives 0)."""
    return _guarded(b, x, b.fdiv(splat(x.type, 1.0), x), 0.0)


def l_sqrt_abs(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """sqrt|x|."""
    return _sqrt(b, _fabs(b, x))


def l_log_abs(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log|x|."""
    return math_call(b, "log", _fabs(b, x))


def l_dlog(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """DySymNet log(|x| + 1e-6)."""
    return math_call(b, "log", b.fadd(_fabs(b, x), splat(x.type, DYSYMNET_LOG_EPS)))


def l_pow_abs(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """pow(|x|, y)."""
    return math_call(b, "pow", _fabs(b, x), y)


def l_max(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """np.maximum: NaN if either is NaN, else x if x > y else y (ties give y, as NumPy)."""
    r = b.select(b.fcmp_ordered(">", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", x, x), x, r)


def l_min(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """np.minimum: NaN if either is NaN, else x if x < y else y (ties give y, as NumPy)."""
    r = b.select(b.fcmp_ordered("<", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", x, x), x, r)


def l_fmax(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """C fmax / np.fmax: the other operand when one is NaN, else the larger."""
    r = b.select(b.fcmp_ordered(">", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", y, y), x, r)


def l_fmin(b: ir.IRBuilder, x: ir.Value, y: ir.Value) -> ir.Value:
    """C fmin / np.fmin: the other operand when one is NaN, else the smaller."""
    r = b.select(b.fcmp_ordered("<", x, y), x, y)
    return b.select(b.fcmp_unordered("uno", y, y), x, r)


#: op name -> lowering helper; covers every op of symcore.ops.OPS (tested)
LOWER: dict[str, Callable[..., ir.Value]] = {
    name: globals()[f"l_{name}"] for name in OPS if f"l_{name}" in globals()
}
_missing = [n for n in OPS if n not in LOWER]
if _missing:  # pragma: no cover - an op added to the table without its lowering
    raise CompileError(f"no LLVM lowering for op(s): {', '.join(_missing)}")


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
        fn = LOWER.get(op)
        if fn is None:
            raise CompileError(f"no LLVM lowering for op {op!r}")
        vals[i] = fn(builder, *(vals[k] for k in kids))
    out = vals[-1]
    assert out is not None
    return out
