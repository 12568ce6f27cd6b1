"""Every op's LLVM lowering equals the NumPy reference on special values: vector lanes (tier-1
kernels, every libmvec ISA variant, non-native widths) and scalars (llvmlite's own IRBuilder)."""

from __future__ import annotations

import ctypes
import math

import numpy as np
import pytest
from llvmlite import ir

from symcore import OPS, call, const, evaluate, var
from symcore.codegen.eval import emit
from symcore.codegen.llvm import jit, lower, vecmath
from symcore.codegen.eval.tier1 import Tier1Program
from symcore.ir import flatten

SPECIAL = [0.0, -0.0, 1.0, -1.0, 0.001, -0.001, 0.0010000000000000002, 0.000999, 0.5, -0.5,
           2.0, -2.5, 3.7, 1e-300, -1e-300, 1e300, -1e300, 710.0, -745.5, 1e-8, math.nan,
           math.inf, -math.inf, math.pi / 2, 100.0, -100.0, 1.5]
GRID = np.array([(a, b) for a in SPECIAL for b in SPECIAL], dtype=np.float64)
# float32 grids overflow on purpose (1e300 -> inf); NaN arithmetic in the checks is intended
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

POWI_K = (-17, -5, -3, -2, -1, 0, 1, 2, 3, 4, 5, 17)


def _op_exprs() -> list:
    out = []
    for name, op in OPS.items():
        if name == "powi":
            out.extend(call("powi", var(0), const(float(k))) for k in POWI_K)
        elif op.arity == 1:
            out.append(call(name, var(0)))
        else:
            out.append(call(name, var(0), var(1)))
    return out


EXPRS = _op_exprs()


def _rtol(dtype: str) -> float:
    # libmvec promises <= 4 ulp; NumPy's own SIMD math is as accurate again
    return 2e-14 if dtype == "float64" else 2e-6


def _check(got: np.ndarray, ref: np.ndarray, what: str, dtype: str) -> None:
    got = got.astype(np.float64)
    ref = ref.astype(np.float64)
    nan_r, nan_g = np.isnan(ref), np.isnan(got)
    bad = nan_r != nan_g
    fin = ~nan_r & ~nan_g
    with np.errstate(all="ignore"):
        close = (got == ref) | (np.abs(got - ref) <= _rtol(dtype) * np.abs(ref))
    # tiny results: allow an absolute error of a few ulp of the smallest normal
    tiny = np.finfo(np.dtype(dtype)).tiny * 4
    close |= np.abs(got - ref) <= tiny
    bad |= fin & ~close
    # the sign of zero is part of the semantics (1/x turns it into ±inf)
    bad |= fin & (ref == 0) & (got == 0) & (np.signbit(ref) != np.signbit(got))
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(f"{what}: {int(bad.sum())} mismatch(es), first at x={GRID[i]}: "
                             f"got {got[i]!r}, reference {ref[i]!r}")


def test_lower_table_covers_every_op() -> None:
    assert set(lower.LOWER) == set(OPS)
    for name, fn in lower.LOWER.items():
        assert fn.__doc__, f"lowering of {name} has no docstring"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_op_vector_lanes_equal_reference(dtype: str) -> None:
    prog = Tier1Program(EXPRS, dtype)
    n = GRID.shape[0]
    ldx = -(-n // prog.lanes) * prog.lanes
    Xp = np.ones((2, ldx), dtype=dtype)
    Xp[:, :n] = GRID.T
    out = np.empty((len(EXPRS), ldx), dtype=dtype)
    prog.predict_range(Xp, n, None, out)
    for c, e in enumerate(EXPRS):
        ref = evaluate(e, GRID, dtype=np.dtype(dtype).type)
        _check(out[c, :n], ref, f"{e} ({dtype})", dtype)


def _scalar_module(dtype: str) -> tuple[str, list[str]]:
    t = vecmath.lane_type(dtype)
    m = ir.Module("scalar")
    names = []
    for c, e in enumerate(EXPRS):
        fn = ir.Function(m, ir.FunctionType(t, [t, t]), name=f"s{c}")
        b = ir.IRBuilder(fn.append_basic_block())
        a0, a1 = fn.args

        def leaf(kind: str, value: float, _a=(a0, a1), _t=t) -> ir.Value:
            return _a[value] if kind == "var" else ir.Constant(_t, value)

        b.ret(lower.lower_expr(b, e, leaf))
        names.append(fn.name)
    return str(m), names


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_op_scalar_builder_equals_reference(dtype: str) -> None:
    text, names = _scalar_module(dtype)
    lib = jit.load_library([jit.compile_object(text, 0, 1)], names)
    ct = ctypes.c_double if dtype == "float64" else ctypes.c_float
    proto = ctypes.CFUNCTYPE(ct, ct, ct)
    X = GRID.astype(dtype)
    try:
        for c, e in enumerate(EXPRS):
            f = proto(lib.addresses[names[c]])
            got = np.array([f(a, b) for a, b in X], dtype=dtype)
            _check(got, evaluate(e, GRID, dtype=np.dtype(dtype).type), f"scalar {e}", dtype)
    finally:
        lib.close()


@pytest.mark.parametrize("lanes", [1, 2, 4, 2 * vecmath.width("float64")])
def test_non_native_widths(lanes: int) -> None:
    # narrower than the host's vectors: math goes through scalar libm lane by lane; wider:
    # split into native libmvec calls
    m = ir.Module("w")
    body = [emit.emit_kernel(m, f"k{c}", flatten(e), "float64", lanes) for c, e in enumerate(EXPRS)]
    text = emit.declarations(m) + "\n" + "\n".join(body)
    lib = jit.load_library([jit.compile_object(text, 0, 0)], [f"k{c}" for c in range(len(EXPRS))])
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                             ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    n = GRID.shape[0]
    ldx = -(-n // lanes) * lanes
    Xp = np.ones((2, ldx))
    Xp[:, :n] = GRID.T
    consts = np.zeros(1)
    out = np.empty(ldx)
    try:
        for c, e in enumerate(EXPRS):
            f = proto(lib.addresses[f"k{c}"])
            f(Xp.ctypes.data, ldx, 0, ldx, consts.ctypes.data, consts.ctypes.data, out.ctypes.data)
            _check(out[:n].copy(), evaluate(e, GRID), f"{lanes}-lane {e}", "float64")
    finally:
        lib.close()


ISAS = [isa for isa in (vecmath.VecISA("sse", "b", 128), vecmath.VecISA("avx", "c", 256),
                        vecmath.VecISA("avx2", "d", 256), vecmath.VecISA("avx512", "e", 512))
        if {"sse": "sse4.1", "avx": "avx", "avx2": "avx2", "avx512": "avx512f"}[isa.name]
        in {k for k, v in jit.host_features().items() if v}]


@pytest.mark.parametrize("isa", ISAS, ids=[i.name for i in ISAS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_libmvec_variant_equals_reference(isa: vecmath.VecISA, dtype: str) -> None:
    lanes = isa.lanes(dtype)
    t = vecmath.lane_type(dtype)
    vt = ir.VectorType(t, lanes)
    m = ir.Module("mvec")
    fns = vecmath.MATH_UNARY + vecmath.MATH_BINARY
    for name in fns:
        fn = ir.Function(m, ir.FunctionType(ir.VoidType(), [vt.as_pointer()] * 3), name=f"m_{name}")
        b = ir.IRBuilder(fn.append_basic_block())
        args = [b.load(fn.args[0], align=4), b.load(fn.args[1], align=4)]
        args = args[:2 if name in vecmath.MATH_BINARY else 1]
        assert vecmath.mvec_symbol(name, dtype, lanes, isa) is not None
        b.store(vecmath.math_call(b, name, *args, isa=isa), fn.args[2], align=4)
        b.ret_void()
    lib = jit.load_library([jit.compile_object(str(m), 0, 1)], [f"m_{n}" for n in fns])
    proto = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p)
    n = GRID.shape[0]
    ldx = -(-n // lanes) * lanes
    A = np.ones((2, ldx), dtype=dtype)
    A[:, :n] = GRID.T
    A0, A1 = np.ascontiguousarray(A[0]), np.ascontiguousarray(A[1])
    out = np.empty(ldx, dtype=dtype)
    try:
        for name in fns:
            f = proto(lib.addresses[f"m_{name}"])
            for s in range(0, ldx, lanes):
                f(A0[s:].ctypes.data, A1[s:].ctypes.data, out[s:].ctypes.data)
            op = "pow" if name == "pow" else name
            e = call(op, var(0), var(1)) if name == "pow" else call(op, var(0))
            _check(out[:n].copy(), evaluate(e, GRID, dtype=np.dtype(dtype).type),
                   f"{isa.name} {name} ({dtype})", dtype)
    finally:
        lib.close()


def test_powi_exponent_is_code_not_data() -> None:
    f = flatten(call("add", call("powi", var(0), const(3.0)), const(3.0)))
    # the shared constant 3.0 is read from the array once, for the add only
    assert len(emit.const_slots(f)) == 1
    g = flatten(call("powi", var(0), const(2.0)))
    assert emit.const_slots(g) == []
    assert lower.needed_rows(g) == [True, False, True]
