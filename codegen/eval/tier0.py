"""Tier 0: one native tape interpreter per (dtype, CPU), generated with llvmlite, compiled once and
cached on disk as object code; it evaluates a whole packed population (`tape.Tape`) over row
blocks that stay in L1, SIMD across rows, with zero compilation per candidate.

Interface (what `kernels.Kernel` calls; every call re-checks dtypes, shapes and contiguity and
raises `DataError` before anything reaches native code):

``prog = Tier0Program(exprs, dtype)`` packs the population once (``prog.tape``, ``prog.n_vars``,
``prog.n_params``, ``prog.n_candidates``).  Every ``*_range`` method works on candidates
``c0 <= c < c1`` only, calls one native function through ctypes (the GIL is released, so threads
may run disjoint ranges of the same program at once) and writes only rows ``c0 .. c1-1`` of its
output:

* ``prog.predict_range(Xcol, params, out, c0, c1)``: ``out[c, :] = prediction of candidate c``.
* ``prog.loss_range(Xcol, y, w, out_loss, c0, c1)``: ``out_loss[c] = (sum w*err**2, sum w*|err|)``
  in float64 (also for float32 data; ``w=None`` means unit weights).  ``sse_range`` is the same
  call.  A non-finite prediction on any row makes both entries ``+inf`` and stops work on that
  candidate (its remaining row blocks are skipped); other candidates are unaffected.

Parameter Jacobians and normal equations for fitting come from `grad.Tier0Grad`, not from here.

Array contract: ``Xcol`` is ``(n_features, N)`` C-contiguous of the program's dtype with
``n_features >= prog.n_vars`` (column-major data: one contiguous row per feature); ``y`` and ``w``
are ``(N,)`` of the dtype; ``params`` is ``None`` or ``(P, k)`` float64 C-contiguous with
``k >= prog.n_params`` (row c = candidate c's parameters); ``out`` is ``(P, N)`` of the dtype and
``out_loss`` ``(P, 2)`` float64, both C-contiguous.  The tail block (N not a multiple of the
block) is copied into a padded buffer, so nothing is read past the end of X, y or w, and padded
rows never reach an output.  R², NMSE etc. follow from the SSE and y's mean/variance (computed
once in Python by the caller).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any, Callable, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError
from symcore.ir import Expr

from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit
from symcore.codegen.eval import tape as _tape
from symcore.codegen.eval.tier0_blocks import (block_fn, emit_block_loss, emit_block_store,
                                               emit_prologue, hsum, process_interpreter,
                                               vec_io)
from symcore.codegen.llvm import vecmath as _vecmath
from symcore.codegen.llvm.irflow import Flow
from symcore.codegen.llvm.values import broadcast
from symcore.codegen.llvm.lower import LOWER

__all__ = ["Tier0Program", "interpreter", "BLOCK", "emit_module"]

#: rows per block by dtype: scratch for one candidate is n_scratch * BLOCK * itemsize bytes
BLOCK = {"float64": 64, "float32": 128}

# Bump when the generated code changes: part of the on-disk cache key.
_VERSION = "t0-2"

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()


def _c64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


class _Emitter(Flow):
    """`Flow` over the tier-0 generator's functions."""


def _lowering() -> Any:
    # ops without a lowering get no case (bytecode.runnable); the tape refuses them
    return LOWER


def emit_module(dtype: str, lanes: int, block: int,
                kinds: Sequence[str] = ("predict", "loss", "loss_w")) -> ir.Module:
    """The interpreter's LLVM module with functions ``t0_<kind>`` (kinds: predict, loss,
    loss_w)."""
    if block % lanes:
        raise CompileError(f"block {block} is not a multiple of the vector width {lanes}")
    lower = _lowering()
    T = _DBL if dtype == "float64" else ir.FloatType()
    V = ir.VectorType(T, lanes)
    mod = ir.Module(name=f"symcore_tier0_{dtype}")
    for kind in kinds:
        _emit_function(mod, kind, T, V, lanes, block, lower)
    return mod


def _emit_function(mod: ir.Module, kind: str, T: ir.Type, V: ir.VectorType, W: int, B: int,
                   lower: dict[str, Callable[..., ir.Value]]) -> None:
    Tp = T.as_pointer()
    I32p = _I32.as_pointer()
    # (code, fills, pool, cands, params, ldp, X, ldx, n, nvar, nslot, ptrs, tail, slots, c0, c1,
    #  then predict: out, ldo | loss, loss_w: y, w, loss)
    args = [I32p, I32p, _DBL.as_pointer(), I32p, _DBL.as_pointer(), _I64, Tp, _I64, _I64, _I64,
            _I64, Tp.as_pointer(), Tp, Tp, _I64, _I64]
    if kind == "predict":
        args += [Tp, _I64]
    else:
        args += [Tp, Tp, _DBL.as_pointer()]
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), args), name=f"t0_{kind}")
    fn.attributes.add("nounwind")
    (code, fills, pool, cands, params, ldp, X, ldx, n, nvar, nslot, ptrs, tail, slots, c0,
     c1) = fn.args[:16]
    E = _Emitter(fn)
    b = E.b
    weighted = kind == "loss_w"
    is_loss = kind in ("loss", "loss_w")
    if kind == "predict":
        out, ldo = fn.args[16:18]
    else:
        y, w, loss = fn.args[16:19]

    cB = _c64(B)
    nfull, rem, nblk = emit_prologue(E, T, B, X, ldx, n, nvar, nslot, ptrs, tail, slots,
                                     y if is_loss else None, w if weighted else None)

    vload, vstore = vec_io(b, V)

    def field(row: ir.Value, k: int) -> ir.Value:
        return b.sext(b.load(b.gep(row, [_c64(k)])), _I64)

    # -- candidate loop ------------------------------------------------------------------------
    def candidate(c: ir.Value) -> None:
        hdr = b.gep(cands, [b.mul(c, _c64(5))])
        code_off = field(hdr, 0)
        n_instr = field(hdr, 1)
        fill_off = field(hdr, 2)
        n_fill = field(hdr, 3)
        root = field(hdr, 4)

        def fill(j: ir.Value) -> None:
            row = b.gep(fills, [b.mul(b.add(fill_off, j), _c64(3))])
            s = field(row, 0)
            is_param = b.icmp_signed("!=", field(row, 1), _c64(0))
            idx = field(row, 2)
            src = b.select(is_param, b.gep(params, [b.add(b.mul(c, ldp), idx)]),
                           b.gep(pool, [idx]))
            val = b.load(src)
            if not isinstance(T, ir.DoubleType):
                val = b.fptrunc(val, T)
            vv = broadcast(b, V, val)
            dst = b.load(b.gep(ptrs, [s]))
            for k in range(B // W):
                vstore(vv, dst, k * W)
        E.for_(_c64(0), n_fill, fill, name="fill")

        if is_loss:
            DV = ir.VectorType(_DBL, W)
            zero_d = ir.Constant(DV, [0.0] * W)
            sse = E.local(zero_d, "sse")
            sae = E.local(zero_d, "sae")
            bad = E.local(ir.Constant(ir.IntType(1), 0), "bad")
        blk_i = E.local(_c64(0), "blk")
        bhead = fn.append_basic_block("blk.head")
        bbody = fn.append_basic_block("blk.body")
        bend = fn.append_basic_block("blk.end")
        b.branch(bhead)
        b.position_at_end(bhead)
        bi = b.load(blk_i)
        go = b.icmp_signed("<", bi, nblk)
        if is_loss:
            go = b.and_(go, b.not_(b.load(bad)))
        b.cbranch(go, bbody, bend)
        b.position_at_end(bbody)
        r0 = b.mul(bi, cB)
        full = b.icmp_signed("<", bi, nfull)
        base = b.select(full, b.gep(X, [r0]), tail)
        stride = b.select(full, ldx, cB)
        E.for_(_c64(0), nvar, lambda v: b.store(b.gep(base, [b.mul(v, stride)]),
                                                 b.gep(ptrs, [v])), name="varptr")
        b.call(block_fn(mod, V, W, B, lower), [code, code_off, n_instr, ptrs])
        rp = b.load(b.gep(ptrs, [root]))

        if kind == "predict":
            emit_block_store(E, V, W, B, rp, b.gep(out, [b.add(b.mul(c, ldo), r0)]), full, rem)
        else:
            yb = b.select(full, b.gep(y, [r0]), b.gep(tail, [b.mul(nvar, cB)]))
            wb = b.select(full, b.gep(w, [r0]), b.gep(tail, [b.mul(b.add(nvar, _c64(1)), cB)])
                          ) if weighted else None
            cntv = broadcast(b, ir.VectorType(_I64, W), b.select(full, cB, rem))
            acc_s, acc_a, anybad = emit_block_loss(b, T, V, W, B, lower, rp, yb, wb, cntv,
                                                   b.load(sse), b.load(sae))
            b.store(acc_s, sse)
            b.store(acc_a, sae)
            b.store(anybad, bad)
        b.store(b.add(bi, _c64(1)), blk_i)
        b.branch(bhead)
        b.position_at_end(bend)
        if is_loss:
            inf = ir.Constant(_DBL, float("inf"))
            isbad = b.load(bad)
            s_tot = hsum(b, b.load(sse), W)
            a_tot = hsum(b, b.load(sae), W)
            dst = b.gep(loss, [b.mul(c, _c64(2))])
            b.store(b.select(isbad, inf, s_tot), dst)
            b.store(b.select(isbad, inf, a_tot), b.gep(dst, [_c64(1)]))

    E.for_(c0, c1, candidate, name="cand")
    b.ret_void()


# -- compile once per (dtype, machine), cache on disk ---------------------------------------------

_P = ctypes.c_void_p
_L = ctypes.c_int64
_COMMON = [_P, _P, _P, _P, _P, _L, _P, _L, _L, _L, _L, _P, _P, _P, _L, _L]
_PREDICT_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _L)
_LOSS_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _P, _P)


def _source_key(dtype: str, lanes: int, block: int, isa: Any) -> str:
    """Everything the interpreter's code depends on besides the machine (which the cache
    directory names): this generator, the lowering, the vector math, the opcode numbering."""
    return f"tier0|{_VERSION}|{dtype}|{lanes}|{block}|{isa}|{_jit.source_hash('eval/tier0.py', 'eval/tier0_blocks.py', 'eval/tape.py', 'bytecode.py')}"


class _Interpreter:
    """The loaded native interpreter of one dtype (kept for the life of the process)."""

    def __init__(self, dtype: str, block: int) -> None:
        self.isa = _vecmath.host_isa()
        lanes = _vecmath.width(dtype, self.isa)
        if block % lanes:
            block = lanes * max(1, block // lanes)
        self.dtype, self.block, self.lanes = dtype, block, lanes
        self.compiled = False
        self.library = self._load(("predict", "loss", "loss_w"))
        a = self.library.addresses
        self.predict = _PREDICT_T(a["t0_predict"])
        self.loss = _LOSS_T(a["t0_loss"])
        self.loss_w = _LOSS_T(a["t0_loss_w"])

    def _load(self, kinds: tuple[str, ...]) -> Any:
        key = _source_key(self.dtype, self.lanes, self.block, self.isa) + "|" + ",".join(kinds)

        def build() -> bytes:
            self.compiled = True
            mod = emit_module(self.dtype, self.lanes, self.block, kinds)
            return _jit.compile_object(str(mod), opt_ir=2, opt_codegen=3)
        obj = _cache.get_or_compile(key, build)
        _vecmath.ensure_libraries()
        return _jit.load_library([obj], [f"t0_{k}" for k in kinds])


_INTERPS: dict[tuple[str, int, int], _Interpreter] = {}  # (dtype, block, ops generation)


def interpreter(dtype: str = "float64", block: int | None = None) -> _Interpreter:
    """The process's interpreter for `dtype` (built or loaded from the disk cache on first use)."""
    return process_interpreter(_INTERPS, _Interpreter, BLOCK, dtype, block)


def _addr(a: np.ndarray | None) -> int:
    return 0 if a is None else a.ctypes.data


class _TapeArrays:
    """A tape's arrays kept alive, non-empty (a zero-size array may have no valid address)."""

    def __init__(self, t: _tape.Tape) -> None:
        self.tape = t
        self.code = np.ascontiguousarray(t.code if t.code.size else np.zeros((1, 4), np.int32))
        self.fills = np.ascontiguousarray(t.fills if t.fills.size else np.zeros((1, 3), np.int32))
        self.pool = np.ascontiguousarray(t.pool if t.pool.size else np.zeros(1))
        self.cands = np.ascontiguousarray(t.cands if t.cands.size else np.zeros((1, 5), np.int32))
        # addresses taken once (`.ctypes.data` costs microseconds per access)
        self.addrs = [a.ctypes.data for a in (self.code, self.fills, self.pool, self.cands)]


class Tier0Program:
    """A population packed for the tier-0 interpreter (see the module docstring)."""

    def __init__(self, exprs: Sequence[Expr], dtype: str = "float64",
                 block: int | None = None) -> None:
        self.dtype = str(np.dtype(dtype)) if dtype in ("float32", "float64", np.float32,
                                                       np.float64) else str(dtype)
        self.exprs = tuple(exprs)
        self.tape = _tape.pack(self.exprs)
        self.interp = interpreter(self.dtype, block)
        self._np = np.dtype(self.dtype)
        self._fw = _TapeArrays(self.tape)
        self._tls = threading.local()

    @classmethod
    def from_tape(cls, tape: _tape.Tape, dtype: str = "float64",
                  block: int | None = None) -> "Tier0Program":
        """A program over a tape packed elsewhere (see `tape.from_arrays`), without IR:
        ``exprs`` is empty; everything else works as for a program built from expressions."""
        if not isinstance(tape, _tape.Tape):
            raise CompileError(f"from_tape takes a tape.Tape, got {type(tape).__name__}")
        self = cls.__new__(cls)
        self.dtype = str(np.dtype(dtype)) if dtype in ("float32", "float64", np.float32,
                                                       np.float64) else str(dtype)
        self.exprs = ()
        self.tape = tape
        self.interp = interpreter(self.dtype, block)
        self._np = np.dtype(self.dtype)
        self._fw = _TapeArrays(tape)
        self._tls = threading.local()
        return self

    @property
    def n_vars(self) -> int:
        return self.tape.n_vars

    @property
    def n_params(self) -> int:
        return self.tape.n_params

    @property
    def n_candidates(self) -> int:
        return self.tape.n_candidates

    @property
    def block(self) -> int:
        return self.interp.block

    def _work(self, t: _tape.Tape) -> tuple[np.ndarray, list[int]]:
        """The calling thread's work buffer: slot pointers, the padded tail (X columns, y, w) and
        the scratch slots; 64-byte aligned parts.  Reused by the thread's later calls (a call
        never runs inside another on the same thread)."""
        cache = getattr(self._tls, "work", None)
        if cache is None:
            cache = self._tls.work = {}
        key = id(t)
        hit = cache.get(key)
        if hit is not None:
            return hit
        B = self.interp.block
        isz = self._np.itemsize
        sizes = [max(t.n_slots, 1) * 8, (t.n_vars + 2) * B * isz, max(t.n_scratch, 1) * B * isz]
        sizes = [-(-z // 64) * 64 for z in sizes]
        buf = np.empty(sum(sizes) + 64, dtype=np.uint8)
        base = buf.ctypes.data
        base += (-base) % 64
        parts = []
        for z in sizes:
            parts.append(base)
            base += z
        cache[key] = (buf, parts)
        return buf, parts

    def _common(self, X: np.ndarray, params: np.ndarray | None, c0: int, c1: int
                ) -> tuple[np.ndarray, list[Any]]:
        pk = self._fw
        t = pk.tape
        if not (0 <= c0 <= c1 <= t.n_candidates):
            raise DataError(f"candidate range [{c0}, {c1}) outside 0..{t.n_candidates}")
        if (not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != self._np
                or not X.flags.c_contiguous):
            raise DataError(f"X must be a C-contiguous (features, N) {self.dtype} array")
        if X.shape[0] < t.n_vars:
            raise DataError(f"population reads {t.n_vars} feature(s), X has {X.shape[0]}")
        ldp = 0
        if t.n_params:
            if (not isinstance(params, np.ndarray) or params.ndim != 2
                    or params.dtype != np.float64 or not params.flags.c_contiguous
                    or params.shape[1] < t.n_params or params.shape[0] < t.n_candidates):
                raise DataError(f"params must be a C-contiguous float64 array of shape "
                                f"({t.n_candidates}, >= {t.n_params})")
            ldp = params.shape[1]
        buf, parts = self._work(t)
        args = [*pk.addrs, _addr(params) if t.n_params else 0, ldp,
                X.ctypes.data, X.shape[1], X.shape[1], t.n_vars, t.n_slots, *parts[:3], c0, c1]
        return buf, args

    def _check_out(self, out: np.ndarray, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        if (not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous
                or out.ndim != len(shape) or out.shape[0] < shape[0]
                or out.shape[1:] != shape[1:]):
            raise DataError(f"{name} must be a C-contiguous {shape} {np.dtype(dtype)} array")

    def predict_range(self, X: np.ndarray, params: np.ndarray | None, out: np.ndarray,
                      c0: int = 0, c1: int | None = None) -> None:
        """out[c, :] = predictions of candidate c for c0 <= c < c1."""
        c1 = self.n_candidates if c1 is None else c1
        buf, args = self._common(X, params, c0, c1)
        self._check_out(out, "out", (self.n_candidates, X.shape[1]), self._np)
        self.interp.predict(*args, out.ctypes.data, out.shape[1])
        del buf

    def loss_range(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                   out_loss: np.ndarray, c0: int = 0, c1: int | None = None,
                   params: np.ndarray | None = None) -> None:
        """out_loss[c] = (sum w*err^2, sum w*|err|) in float64 for c0 <= c < c1; +inf both when
        a prediction of candidate c is non-finite."""
        c1 = self.n_candidates if c1 is None else c1
        buf, args = self._common(X, params, c0, c1)
        n = X.shape[1]
        for name, a in (("y", y), ("w", w)):
            if a is None and name == "w":
                continue
            self._check_out(a, name, (n,), self._np)
        self._check_out(out_loss, "out_loss", (self.n_candidates, 2), np.float64)
        fn = self.interp.loss if w is None else self.interp.loss_w
        fn(*args, y.ctypes.data, _addr(w), out_loss.ctypes.data)
        del buf

    sse_range = loss_range
