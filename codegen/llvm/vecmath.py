"""Host vector ISA detection and vector math: glibc libmvec calls chosen by the CPU's features,
with a per-lane scalar libm fallback, and (for tier 1 on AVX-512) symcore's own exp/log/sin/cos;
declares and calls them inside an `llvmlite.ir.Module`.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
from dataclasses import dataclass

from llvmlite import ir

from symcore.errors import CompileError

from symcore.codegen.llvm.host import host_features
from symcore.codegen.llvm.values import splat

__all__ = ["VecISA", "host_isa", "width", "math_call", "MATH_UNARY", "MATH_BINARY",
           "mvec_symbol", "ensure_libraries", "lane_type"]

#: glibc libmvec functions symcore calls as vectors (a property of glibc, not of operators:
#: any other libm function an op's lowering names, e.g. a user op's `erf`, goes lane by lane)
MATH_UNARY = ("exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos", "atan",
              "cbrt", "asinh", "acosh", "atanh")
MATH_BINARY = ("pow",)

# glibc libmvec provides every function above in four ISA variants (x86_64 vector ABI letters:
# b = SSE4, c = AVX, d = AVX2, e = AVX-512); the number is the lane count.
_MVEC_FUNCS = frozenset(MATH_UNARY + MATH_BINARY)


@dataclass(frozen=True)
class VecISA:
    """The vector ISA kernels are generated for."""

    name: str            # "avx512", "avx2", "avx", "sse", "scalar"
    letter: str | None   # libmvec vector-ABI letter, None when libmvec is not used
    bits: int            # vector register width in bits (64 = one double, i.e. scalar)

    def lanes(self, dtype: str) -> int:
        """SIMD lanes for "float64" or "float32"."""
        return max(1, self.bits // (64 if dtype == "float64" else 32))


_ISAS = {
    "avx512": VecISA("avx512", "e", 512),
    "avx2": VecISA("avx2", "d", 256),
    "avx": VecISA("avx", "c", 256),
    "sse": VecISA("sse", "b", 128),
    "scalar": VecISA("scalar", None, 64),
}


@functools.lru_cache(maxsize=None)
def _libmvec() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("mvec") or "libmvec.so.1"
    try:
        return ctypes.CDLL(name, mode=ctypes.RTLD_GLOBAL)
    except OSError:
        return None


@functools.lru_cache(maxsize=None)
def host_isa() -> VecISA:
    """Widest ISA the host CPU supports and libmvec implements (`$SYMCORE_ISA` may narrow it:
    avx512, avx2, avx, sse or scalar)."""
    feats = host_features()
    if feats.get("avx512f"):
        best = "avx512"
    elif feats.get("avx2"):
        best = "avx2"
    elif feats.get("avx"):
        best = "avx"
    elif feats.get("sse4.1") or feats.get("sse2"):
        best = "sse"
    else:
        best = "scalar"
    order = list(_ISAS)
    want = os.environ.get("SYMCORE_ISA", "").strip().lower()
    if want:
        if want not in _ISAS:
            raise CompileError(f"SYMCORE_ISA={want!r} is not one of {', '.join(_ISAS)}")
        if order.index(want) > order.index(best):
            best = want
    if best != "scalar" and _libmvec() is None:
        # no libmvec: vectors still pay off for arithmetic, math functions go lane by lane
        return VecISA(_ISAS[best].name, None, _ISAS[best].bits)
    return _ISAS[best]


def width(dtype: str, isa: VecISA | None = None) -> int:
    """Lanes per vector for the dtype ("float64"/"float32") on the (host) ISA."""
    return (isa or host_isa()).lanes(dtype)


def lane_type(dtype: str) -> ir.Type:
    """LLVM scalar type of a dtype name."""
    if dtype == "float64":
        return ir.DoubleType()
    if dtype == "float32":
        return ir.FloatType()
    raise CompileError(f"unsupported dtype {dtype!r} (float64 or float32)")


def ensure_libraries() -> None:
    """Make libmvec's symbols visible to the JIT linker (idempotent)."""
    _load_permanently()


@functools.lru_cache(maxsize=None)
def _load_permanently() -> bool:
    import llvmlite.binding as llvm
    lib = _libmvec()
    if lib is None:
        return False
    try:
        llvm.load_library_permanently(lib._name)
    except RuntimeError:
        return False
    return True


def mvec_symbol(fn: str, dtype: str, lanes: int, isa: VecISA | None = None) -> str | None:
    """libmvec symbol of `fn` for `lanes` lanes of dtype, e.g. `_ZGVeN8v_exp`; None when the
    ISA has no such variant (the caller then goes lane by lane)."""
    isa = isa or host_isa()
    if isa.letter is None or fn not in _MVEC_FUNCS or lanes != isa.lanes(dtype) or lanes < 2:
        return None
    arity = 2 if fn in MATH_BINARY else 1
    suffix = "f" if dtype == "float32" else ""
    return f"_ZGV{isa.letter}N{lanes}{'v' * arity}_{fn}{suffix}"


def _scalar_info(ty: ir.Type) -> tuple[ir.Type, int]:
    if isinstance(ty, ir.VectorType):
        return ty.element, ty.count
    return ty, 0


def _dtype_of(elem: ir.Type) -> str:
    if isinstance(elem, ir.DoubleType):
        return "float64"
    if isinstance(elem, ir.FloatType):
        return "float32"
    raise CompileError(f"vector math on unsupported type {elem}")


def _declare(module: ir.Module, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = module.globals.get(name)
    if fn is None:
        fn = ir.Function(module, ir.FunctionType(ret, args), name=name)
        fn.attributes.add("nounwind")
    return fn


def _is_pow2(k: int) -> bool:
    return k > 0 and k & (k - 1) == 0


def _split_call(b: ir.IRBuilder, fn: str, args: tuple[ir.Value, ...], native: int,
                isa: VecISA | None) -> ir.Value:
    # a vector of several native vectors: one libmvec call per native part, then concatenate
    i32 = ir.IntType(32)
    lanes = args[0].type.count
    parts = []
    for p in range(lanes // native):
        mask = ir.Constant(ir.VectorType(i32, native),
                           [ir.Constant(i32, j) for j in range(p * native, (p + 1) * native)])
        parts.append(math_call(b, fn, *(b.shuffle_vector(a, a, mask) for a in args), isa=isa))
    while len(parts) > 1:
        n2 = 2 * parts[0].type.count
        mask = ir.Constant(ir.VectorType(i32, n2), [ir.Constant(i32, j) for j in range(n2)])
        parts = [b.shuffle_vector(parts[i], parts[i + 1], mask) for i in range(0, len(parts), 2)]
    return parts[0]


def math_call(builder: ir.IRBuilder, fn: str, *args: ir.Value,
              isa: VecISA | None = None) -> ir.Value:
    """Call libm function `fn` (exp, log, …, pow, or any other libm function such as erf) on
    scalar or vector operands: one libmvec call when libmvec has it and the vector matches the
    ISA, otherwise libm lane by lane."""
    if not (isinstance(fn, str) and fn.isidentifier()):
        raise CompileError(f"no math function {fn!r}")
    ty = args[0].type
    elem, lanes = _scalar_info(ty)
    dtype = _dtype_of(elem)
    module = builder.module
    native = (isa or host_isa()).lanes(dtype)
    mode = getattr(builder, "inline_math", None)
    if mode and fn in INLINE and inline_applies(ty, isa):
        if mode == "inline":
            return INLINE[fn](builder, args[0])
        return builder.call(_declare(module, helper_name(fn), ty, [ty]), list(args))
    if mode == "call" and fn in INLINE and lanes == 16 and inline_applies(
            ir.VectorType(elem, 8), isa):
        # two native vectors: one helper evaluating both halves interleaved
        return builder.call(_declare(module, helper_name(fn, 16), ty, [ty]), list(args))
    if lanes > native >= 2 and lanes % native == 0 and _is_pow2(lanes // native) \
            and mvec_symbol(fn, dtype, native, isa) is not None:
        return _split_call(builder, fn, args, native, isa)
    sym = mvec_symbol(fn, dtype, lanes, isa) if lanes else None
    if sym is not None:
        f = _declare(module, sym, ty, [ty] * len(args))
        if len(args) == 1 and fn in _GUARDED:
            return _guarded_call(builder, f, fn, args[0], dtype)
        return builder.call(f, list(args))
    scalar = _declare(module, fn + ("f" if dtype == "float32" else ""), elem, [elem] * len(args))
    if not lanes:
        return builder.call(scalar, list(args))
    out: ir.Value = ir.Constant(ty, ir.Undefined)
    for i in range(lanes):
        idx = ir.Constant(ir.IntType(32), i)
        lane = builder.call(scalar, [builder.extract_element(a, idx) for a in args])
        out = builder.insert_element(out, lane, idx)
    return out



# -- special inputs kept out of libmvec (added by tier 0, helper C2) -----------------------------
# libmvec's fast path bails out to scalar libm for the whole vector whenever one lane holds a
# special input (NaN, a value outside the domain, an overflowing argument): on NaN-heavy
# populations that made vector math ~3x slower.  The calls below replace such lanes by a benign
# argument and set those lanes' results with selects to exactly what C/NumPy return; the other
# lanes are computed by the same libmvec call as before (lanes are independent), so results are
# bit-identical.

_GUARDED = frozenset(("exp", "log", "sin", "cos", "tan", "sinh", "cosh", "tanh", "asin", "acos",
                      "atan", "cbrt"))
#: |x| beyond which exp over/underflows for certain (with margin: values in between still go to
#: libmvec, which handles them itself)
_EXP_BOUNDS = {"float64": (720.0, -750.0), "float32": (90.0, -110.0)}


def _guarded_call(b: ir.IRBuilder, f: ir.Function, fn: str, x: ir.Value, dtype: str) -> ir.Value:
    # only fcmp/select/call: emit.TextBuilder implements that subset of IRBuilder too;
    # select(c1, c2, c1) is c1 AND c2
    ty = x.type
    inf, nan = float("inf"), float("nan")
    if fn == "log":
        c1 = b.fcmp_ordered(">", x, splat(ty, 0.0))
        ok = b.select(c1, b.fcmp_ordered("<", x, splat(ty, inf)), c1)
        # log(±0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, log(NaN) = NaN
        special = b.select(b.fcmp_ordered("==", x, splat(ty, 0.0)), splat(ty, -inf),
                           b.select(b.fcmp_ordered("<", x, splat(ty, 0.0)), splat(ty, nan), x))
    elif fn == "exp":
        hi, lo = _EXP_BOUNDS[dtype]
        c1 = b.fcmp_ordered("<=", x, splat(ty, hi))
        ok = b.select(c1, b.fcmp_ordered(">=", x, splat(ty, lo)), c1)
        special = b.select(b.fcmp_ordered(">", x, splat(ty, hi)), splat(ty, inf),
                           b.select(b.fcmp_ordered("<", x, splat(ty, lo)), splat(ty, 0.0), x))
    elif fn in ("sin", "cos", "tan"):
        # sin/cos/tan(±inf) = NaN, of NaN = NaN
        ok = b.fcmp_ordered("<", b.call(_fabs_fn(b, ty), [x]), splat(ty, inf))
        special = splat(ty, nan)
    else:
        # every other guarded function maps NaN to NaN (the input NaN, like libm)
        ok = b.fcmp_ordered("ord", x, x)
        special = x
    r = b.call(f, [b.select(ok, x, splat(ty, 0.5))])
    return b.select(ok, r, special)


def _fabs_fn(b: ir.IRBuilder, ty: ir.VectorType) -> ir.Function:
    name = f"llvm.fabs.v{ty.count}{'f64' if isinstance(ty.element, ir.DoubleType) else 'f32'}"
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ty, [ty]), name=name)
    return fn


# -- symcore's own vector math (tier 1, AVX-512, float64) ---------------------------------------
# A fused kernel is bound by vector-port throughput, and most of its µops were in libmvec calls
# plus the guards around them.  The functions below use AVX-512's table permute (vpermi2pd: a
# 16-entry table in two registers, no gather), vgetmant/vgetexp and vscalefpd (2^n scaling that
# rounds overflow to inf and underflow to subnormals/0 and propagates NaN), take every special
# input (NaN, ±inf, ±0, subnormals) to the C result without a guard, and are accurate to 1 ulp
# (exp, log) and 2 ulp (sin, cos) against NumPy (tests/codegen/llvm/test_vecmath.py).  A builder
# opts in with its `inline_math` attribute: "inline" writes the code in place (used to write the
# helper functions, emit.helper_module), "call" calls helper `symcore.<fn>.v8f64` (or .v16f64 for
# two native vectors, both halves interleaved) that tier 1 compiles once at O2 and links into
# every kernel library.  Other builders (tier 0, gradients) keep libmvec.

_LN2 = 0.6931471805599453
_EXP_TABLE = [2.0 ** (j / 16) for j in range(16)]
#: ln2/16 as a sum of two doubles (106 bits): with FMA, x - k·hi - k·lo loses nothing that
#: matters for |k| < 2^15
_LN2_16_HI = float.fromhex("0x1.62e42fefa39efp-5")
_LN2_16_LO = float.fromhex("0x1.abc9e3b39803fp-60")
_SHIFTER = 1.5 * 2.0 ** 52   # x + 1.5·2^52 rounds x to an integer held in the low mantissa bits
#: Taylor coefficients of (e^r - 1 - r)/r² = 1/2 + r/6 + …, |r| <= ln2/32: the first dropped
#: term r^8/8! is below 1e-18 relative
_EXP_POLY = [1.0 / 5040, 1.0 / 720, 1.0 / 120, 1.0 / 24, 1.0 / 6, 0.5]
#: |x| clamp: e^750 overflows and e^-750 underflows to 0, and k = round(16x/ln2) stays small
_EXP_CLAMP = 750.0


def helper_name(fn: str, lanes: int = 8) -> str:
    """Name of the helper function computing `fn` (see `INLINE`) on <lanes x double>."""
    return f"symcore.{fn}.v{lanes}f64"


def inline_applies(ty: ir.Type, isa: VecISA | None = None) -> bool:
    """Whether the inline functions serve values of type `ty` on the (host) ISA."""
    return (isinstance(ty, ir.VectorType) and isinstance(ty.element, ir.DoubleType)
            and ty.count == 8 and (isa or host_isa()).name == "avx512")


def _intr(b: ir.IRBuilder, name: str, ret: ir.Type, args: list[ir.Type]) -> ir.Function:
    fn = b.module.globals.get(name)
    if fn is None:
        fn = ir.Function(b.module, ir.FunctionType(ret, args), name=name)
    return fn


def _fma(b: ir.IRBuilder, x: ir.Value, y: ir.Value, z: ir.Value) -> ir.Value:
    ty = x.type
    return b.call(_intr(b, "llvm.fma.v8f64", ty, [ty, ty, ty]), [x, y, z])


_I64V8 = ir.VectorType(ir.IntType(64), 8)


def _table(b: ir.IRBuilder, ty: ir.Type, values: list[float], index: ir.Value) -> ir.Value:
    """values[index & 15] per lane (index: a double whose low mantissa bits hold the integer)."""
    fn = _intr(b, "llvm.x86.avx512.vpermi2var.pd.512", ty, [ty, _I64V8, ty])
    lo = ir.Constant(ty, [ir.Constant(ty.element, v) for v in values[:8]])
    hi = ir.Constant(ty, [ir.Constant(ty.element, v) for v in values[8:]])
    return b.call(fn, [lo, b.bitcast(index, _I64V8), hi])


def _scalef(b: ir.IRBuilder, x: ir.Value, n: ir.Value) -> ir.Value:
    """x · 2^floor(n), one rounding (inf on overflow, subnormal or 0 on underflow)."""
    ty = x.type
    i8, i32 = ir.IntType(8), ir.IntType(32)
    fn = _intr(b, "llvm.x86.avx512.mask.scalef.pd.512", ty, [ty, ty, ty, i8, i32])
    return b.call(fn, [x, n, splat(ty, 0.0), ir.Constant(i8, -1), ir.Constant(i32, 4)])


def _inline_exp(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """e^x = 2^(k/16) · e^r, k = round(16x/ln2), r = x - k·ln2/16 (|r| <= ln2/32): 2^(j/16) from
    a 16-entry table (j = k mod 16), 2^floor(k/16) by vscalefpd, e^r by a degree-7 polynomial."""
    ty = x.type
    # clamp (NaN stays NaN: ordered compares are false for it); ±inf give inf and 0
    x = b.select(b.fcmp_ordered(">", x, splat(ty, _EXP_CLAMP)), splat(ty, _EXP_CLAMP), x)
    x = b.select(b.fcmp_ordered("<", x, splat(ty, -_EXP_CLAMP)), splat(ty, -_EXP_CLAMP), x)
    s = _fma(b, x, splat(ty, 16 / _LN2), splat(ty, _SHIFTER))
    k = b.fsub(s, splat(ty, _SHIFTER))
    r = _fma(b, k, splat(ty, -_LN2_16_HI), x)
    r = _fma(b, k, splat(ty, -_LN2_16_LO), r)
    p = splat(ty, _EXP_POLY[0])
    for c in _EXP_POLY[1:]:
        p = _fma(b, p, r, splat(ty, c))
    q = _fma(b, p, b.fmul(r, r), r)               # e^r - 1
    t = _table(b, ty, _EXP_TABLE, s)
    return _scalef(b, _fma(b, t, q, t), b.fmul(k, splat(ty, 1 / 16)))


def _hex(*vals: str) -> list[float]:
    return [float.fromhex(v) for v in vals]


# log: x = m·2^e with m in [3/4, 3/2) (vgetmantpd/vgetexppd, exact also for subnormals); the top
# 4 mantissa bits of m + 1/32 pick one of 16 intervals of m (those next to 1 use c = 1, so x
# near 1 has no cancellation) with c ≈ 1/m; r = m·c - 1 (one FMA rounding, |r| <= 1/32) and
# log x = e·ln2 - log c + log1p(r)
_LOG_C = _hex("0x1.0000000000000p+0", "0x1.e1e1e1e1e1e1ep-1", "0x1.c71c71c71c71cp-1",
              "0x1.af286bca1af28p-1", "0x1.999999999999ap-1", "0x1.8618618618618p-1",
              "0x1.745d1745d1746p-1", "0x1.642c8590b2164p-1", "0x1.58ed2308158edp-1",
              "0x1.4e5e0a72f0539p+0", "0x1.4141414141414p+0", "0x1.3521cfb2b78c1p+0",
              "0x1.29e4129e4129ep+0", "0x1.1f7047dc11f70p+0", "0x1.15b1e5f75270dp+0",
              "0x1.0c9714fbcda3bp+0")
#: -log(c) of the double c above, as hi + lo (computed with mpmath at 200 bits)
_LOG_HI = _hex("0x0.0p+0", "0x1.f0a30c01162a8p-5", "0x1.e27076e2af2eap-4",
               "0x1.5ff3070a793d6p-3", "0x1.c8ff7c79a9a20p-3", "0x1.1675cababa60fp-2",
               "0x1.4618bc21c5ec2p-2", "0x1.739d7f6bbd007p-2", "0x1.947941c2116fbp-2",
               "-0x1.1178e8227e47ap-2", "-0x1.d1037f2655e7bp-3", "-0x1.823c16551a3c0p-3",
               "-0x1.365fcb0159014p-3", "-0x1.da7276384469ep-4", "-0x1.4d3115d207eacp-4",
               "-0x1.894aa149fb34bp-5")
_LOG_LO = _hex("0x0.0p+0", "0x1.85f325c5bbacdp-59", "-0x1.61578001e015ap-60",
               "-0x1.bc60efafc6f6cp-58", "-0x1.4f689f8434011p-57", "0x1.ce63eab883727p-61",
               "-0x1.7a42642661c62p-61", "0x1.ce24c53fad3f0p-58", "0x1.1266e8a3e8838p-57",
               "-0x1.b8ce2d07f1cb7p-56", "0x1.3f3adb7b71cbcp-58", "-0x1.6dcd318f4187ep-57",
               "-0x1.bea08d2dca256p-57", "-0x1.401fa71733017p-58", "-0x1.da7d0b1e10b2fp-60",
               "0x1.2ba0b44cfaee5p-59")
_LN2_HI, _LN2_LO = _hex("0x1.62e42fefa39efp-1", "0x1.abc9e3b39803fp-56")
#: Taylor coefficients of (log1p(r) - r + r²/2)/r³ = 1/3 - r/4 + …: the first dropped term,
#: r^12/12, is below 2^-55 relative to r for |r| <= 1/32
_LOG_POLY = [(-1.0) ** (n + 1) / n for n in range(11, 2, -1)]


def _getmant_getexp(b: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    ty = x.type
    i8, i32 = ir.IntType(8), ir.IntType(32)
    zero, all_, cur = splat(ty, 0.0), ir.Constant(i8, -1), ir.Constant(i32, 4)
    gm = _intr(b, "llvm.x86.avx512.mask.getmant.pd.512", ty, [ty, i32, ty, i8, i32])
    ge = _intr(b, "llvm.x86.avx512.mask.getexp.pd.512", ty, [ty, ty, i8, i32])
    # getmant imm 3: interval [3/4, 3/2), sign of the source (x > 0 here)
    return (b.call(gm, [x, ir.Constant(i32, 3), zero, all_, cur]),
            b.call(ge, [x, zero, all_, cur]))


def _inline_log(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log x (see the tables above); x <= 0, inf and NaN take the C values by a select."""
    ty = x.type
    m, e = _getmant_getexp(b, x)
    # getexp is floor(log2 x) for m in [1, 2); m in [3/4, 1) means one more
    e = b.fadd(e, b.select(b.fcmp_ordered("<", m, splat(ty, 1.0)), splat(ty, 1.0),
                           splat(ty, 0.0)))
    idx = b.fadd(m, splat(ty, 1 / 32))
    idx = b.bitcast(b.lshr(b.bitcast(idx, _I64V8), ir.Constant(_I64V8, [ir.Constant(
        ir.IntType(64), 48)] * 8)), ty)
    c = _table(b, ty, _LOG_C, idx)
    r = _fma(b, m, c, splat(ty, -1.0))
    p = splat(ty, _LOG_POLY[0])
    for k in _LOG_POLY[1:]:
        p = _fma(b, p, r, splat(ty, k))
    r2 = b.fmul(r, r)
    lo = _fma(b, e, splat(ty, _LN2_LO), _table(b, ty, _LOG_LO, idx))
    t = _fma(b, b.fmul(r2, r), p, lo)
    t = _fma(b, r2, splat(ty, -0.5), t)
    hi = _fma(b, e, splat(ty, _LN2_HI), _table(b, ty, _LOG_HI, idx))
    # hi + r with its rounding error (Fast2Sum: |hi| >= |r| unless hi = 0, then exact)
    s = b.fadd(hi, r)
    res = b.fadd(s, b.fadd(b.fadd(b.fsub(hi, s), r), t))
    # log(±0) = -inf, log(x < 0) = NaN, log(+inf) = +inf, log(NaN) = NaN
    c1 = b.fcmp_ordered(">", x, splat(ty, 0.0))
    ok = b.select(c1, b.fcmp_ordered("<", x, splat(ty, math.inf)), c1)
    special = b.select(b.fcmp_ordered("==", x, splat(ty, 0.0)), splat(ty, -math.inf),
                       b.select(b.fcmp_ordered("<", x, splat(ty, 0.0)),
                                splat(ty, math.nan), x))
    return b.select(ok, res, special)


# sin/cos: k = round(x/π) (cos: round(x/π - 1/2), r = x - (k + 1/2)π), r = x - kπ with π as
# three doubles, the first of 36 bits so that x - k·π1 is exact for |k| < 2^17; then
# sin x = (-1)^k sin r, cos x = (-1)^(k+1) sin r, |r| <= π/2 + tiny.  |x| > _TRIG_LIMIT (finite)
# needs a longer reduction: the helper then calls libmvec for the whole vector (rare).
_PI1, _PI2, _PI3 = _hex("0x1.921fb54440000p+1", "0x1.68c234c4c6629p-38", "-0x1.1fc8f8cbb5bf7p-92")
_INV_PI = float.fromhex("0x1.45f306dc9c883p-2")
_TRIG_LIMIT = 1e5
#: (sin r - r)/r³ as a polynomial in u = r² on [0, (π/2 + 0.001)²] (mpmath.chebyfit, error
#: 1.3e-18 relative to sin r)
_SIN_POLY = _hex("0x1.89a0d15681efap-49", "-0x1.ae511b008fcd2p-41", "0x1.612400fe1fb8bp-33",
                 "-0x1.ae6455a0b7356p-26", "0x1.71de3a5454ad1p-19", "-0x1.a01a01a018a83p-13",
                 "0x1.1111111111107p-7", "-0x1.5555555555555p-3")


def _sincos(b: ir.IRBuilder, x: ir.Value, cos: bool) -> ir.Value:
    ty = x.type
    i64 = ir.IntType(64)
    if cos:
        t = _fma(b, x, splat(ty, _INV_PI), splat(ty, -0.5))
        s = b.fadd(t, splat(ty, _SHIFTER))
        kh = b.fadd(b.fsub(s, splat(ty, _SHIFTER)), splat(ty, 0.5))
    else:
        s = _fma(b, x, splat(ty, _INV_PI), splat(ty, _SHIFTER))
        kh = b.fsub(s, splat(ty, _SHIFTER))
    r = _fma(b, b.fneg(kh), splat(ty, _PI1), x)
    r = _fma(b, b.fneg(kh), splat(ty, _PI2), r)
    r = _fma(b, b.fneg(kh), splat(ty, _PI3), r)
    u = b.fmul(r, r)
    p = splat(ty, _SIN_POLY[0])
    for c in _SIN_POLY[1:]:
        p = _fma(b, p, u, splat(ty, c))
    sr = _fma(b, b.fmul(u, r), p, r)
    # sign: the parity of k (bit 0 of s's integer part); cos flips it once more
    kb = b.bitcast(s, _I64V8)
    if cos:
        kb = b.add(kb, ir.Constant(_I64V8, [ir.Constant(i64, 1)] * 8))
    sign = b.shl(kb, ir.Constant(_I64V8, [ir.Constant(i64, 63)] * 8))
    res = b.bitcast(b.xor(b.bitcast(sr, _I64V8), sign), ty)
    if not cos:   # sin(-0) = -0 (r + r³·p is +0 there)
        res = b.select(b.fcmp_ordered("==", x, splat(ty, 0.0)), x, res)
    ax = b.call(_intr(b, "llvm.fabs.v8f64", ty, [ty]), [x])
    big = b.fcmp_ordered(">", ax, splat(ty, _TRIG_LIMIT))
    big = b.select(big, b.fcmp_ordered("<", ax, splat(ty, math.inf)), big)
    if hasattr(b, "fallback"):
        b.fallback = big
    return res


def _inline_sin(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """sin x (see above; the helper falls back to libmvec when a lane is beyond the limit)."""
    return _sincos(b, x, False)


def _inline_cos(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """cos x (see above; the helper falls back to libmvec when a lane is beyond the limit)."""
    return _sincos(b, x, True)


#: functions written inline for builders with `inline_math` (see above)
INLINE = {"exp": _inline_exp, "log": _inline_log, "sin": _inline_sin, "cos": _inline_cos}
