"""Tier 0 over a shared population tape: every distinct subtree of a whole population
(hash-consed across candidates) is one instruction, run once per row block for all the
candidates that contain it; the tape interpreter of `tier0` runs it, compiled once per
(dtype, CPU) and cached on disk like tier 0's own entry points.

Layout of a `DagTape` (C-contiguous int32/float64 arrays):

* slots ``0 .. n_vars-1`` are the data columns, ``n_vars .. n_slots-1`` scratch rows of one
  row block each (a slot is reused once its value is dead);
* ``code`` (n_instr, 4) int32 rows: an operator ``(opcode, dst, a, b)`` as in `tape`;
  ``(OP_CONST, dst, 0, i)`` broadcasts ``pool[i]`` into ``dst``; ``(OP_ROOT, 0, s, c)``: slot
  ``s`` holds candidate ``c``'s value for the block (where its loss is accumulated or its
  predictions stored).  Every candidate has at least one OP_ROOT (a repeated one is
  scored again, to the same bits).

Per candidate the values and the loss reduction are those of `tier0` bit for bit: the same
lowering per row, and the float64 accumulators add rows j, j+W, j+2W, ... of lane j in
order whatever the block size or the rest of the population; a non-finite prediction on a
valid row makes both sums +inf (no early exit: the instructions are shared).
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError
from symcore.ops import OPS

from symcore.codegen import bytecode as _bytecode
from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit
from symcore.codegen.llvm import vecmath as _vecmath
from symcore.codegen.llvm.irflow import Flow
from symcore.codegen.llvm.values import broadcast
from symcore.codegen.eval import tier0 as _t0
from symcore.codegen.eval.tier0_blocks import (block_fn, emit_block_loss, emit_block_store,
                                               emit_prologue, hsum, process_interpreter)

__all__ = ["DagTape", "DagProgram", "from_arrays", "BLOCK"]

#: rows per block by dtype: the live slots of a whole population share the scratch (a few
#: hundred slots for a gplearn generation: L2-resident at these sizes; measured best)
BLOCK = {"float64": 128, "float32": 256}

_VERSION = "dag-1"
_I8 = ir.IntType(8)
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()


def _c64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


@dataclass(frozen=True)
class DagTape:
    """A population packed as one shared instruction list (see the module docstring)."""

    code: np.ndarray          # (n_instr, 4) int32
    pool: np.ndarray          # (n_const,) float64
    n_vars: int
    n_slots: int
    n_candidates: int
    n_nodes: tuple[int, ...]  # tree size of every candidate (work estimates)

    @property
    def n_scratch(self) -> int:
        return self.n_slots - self.n_vars


def from_arrays(code: np.ndarray, pool: np.ndarray, *, n_vars: int, n_slots: int,
                n_candidates: int, n_nodes: Sequence[int]) -> DagTape:
    """A checked `DagTape`: every opcode, slot, pool index and candidate number inside the
    tape, every candidate rooted, so a packing bug raises `CompileError` here and never
    reaches native code."""
    try:
        code_a = np.ascontiguousarray(code, dtype=np.int32).reshape(-1, 4)
        pool_a = np.ascontiguousarray(pool, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError) as err:
        raise CompileError(f"shared tape arrays have the wrong shape or type: {err}") from None
    nv, ns, P = int(n_vars), int(n_slots), int(n_candidates)
    nodes = tuple(map(int, n_nodes))
    if nv < 1 or ns < nv or P < 0 or len(nodes) != P:
        raise CompileError("shared tape: bad n_vars / n_slots / n_candidates / n_nodes")
    opc, dst, a, bb = (code_a[:, i] for i in range(4))
    names = list(_bytecode.opcodes())
    is_c = opc == _bytecode.OP_CONST
    is_r = opc == _bytecode.OP_ROOT
    is_op = ~(is_c | is_r)
    ok = True
    if code_a.size:
        o = opc[is_op]
        ok = not o.size or bool(o.min() >= 0 and o.max() < len(names))
        if ok:
            arity = np.array([OPS[n].arity for n in names], dtype=np.int64)
            powi = names.index("powi")
            binary = np.zeros(code_a.shape[0], dtype=bool)
            binary[is_op] = (arity[o] == 2) & (o != powi)

            def inside(v: np.ndarray, lo: int, hi: int) -> bool:
                return not v.size or bool(v.min() >= lo and v.max() < hi)
            ok = (inside(dst[~is_r], nv, ns) and inside(a[~is_c], 0, ns)
                  and inside(bb[binary], 0, ns) and inside(bb[is_c], 0, pool_a.size)
                  and inside(bb[is_r], 0, P)
                  and (P == 0 or bool(np.bincount(bb[is_r], minlength=P).min() > 0)))
    elif P:
        ok = False
    if not ok:
        raise CompileError("shared tape: an opcode, slot, pool index or candidate outside "
                           "the tape, or a candidate without a root")
    return DagTape(code=code_a, pool=pool_a, n_vars=nv, n_slots=ns, n_candidates=P,
                   n_nodes=nodes)


# -- the native entry points ------------------------------------------------------------------

def emit_module(dtype: str, lanes: int, block: int) -> ir.Module:
    """The module with ``dag_predict``, ``dag_loss`` and ``dag_loss_w`` (and tier 0's block
    interpreter they call)."""
    if block % lanes:
        raise CompileError(f"block {block} is not a multiple of the vector width {lanes}")
    T = _DBL if dtype == "float64" else ir.FloatType()
    V = ir.VectorType(T, lanes)
    mod = ir.Module(name=f"symcore_dag_{dtype}")
    lower = _t0._lowering()
    for kind in ("predict", "loss", "loss_w"):
        _emit(mod, kind, T, V, lanes, block, lower)
    return mod


def _emit(mod: ir.Module, kind: str, T: ir.Type, V: ir.VectorType, W: int, B: int,
          lower: dict[str, Callable[..., ir.Value]]) -> None:
    Tp = T.as_pointer()
    Dp = _DBL.as_pointer()
    # (code, n_instr, pool, P, X, ldx, n, nvar, nslot, ptrs, tail, slots, acc, bad,
    #  then predict: out, ldo | loss, loss_w: y, w, loss)
    args = [_I32.as_pointer(), _I64, Dp, _I64, Tp, _I64, _I64, _I64, _I64, Tp.as_pointer(), Tp,
            Tp, Dp, _I8.as_pointer()]
    args += [Tp, _I64] if kind == "predict" else [Tp, Tp, Dp]
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), args), name=f"dag_{kind}")
    fn.attributes.add("nounwind")
    code, n_instr, pool, P, X, ldx, n, nvar, nslot, ptrs, tail, slots, acc, bad = fn.args[:14]
    E = Flow(fn)
    b = E.b
    is_loss = kind != "predict"
    weighted = kind == "loss_w"
    y = w = out = ldo = loss = None
    if is_loss:
        y, w, loss = fn.args[14:17]
    else:
        out, ldo = fn.args[14:16]
    cB = _c64(B)
    nfull, rem, nblk = emit_prologue(E, T, B, X, ldx, n, nvar, nslot, ptrs, tail, slots,
                                         y, w if weighted else None)
    DV = ir.VectorType(_DBL, W)
    DVp = DV.as_pointer()
    zero_d = ir.Constant(DV, [0.0] * W)
    if is_loss:
        def clear(c: ir.Value) -> None:
            p = b.bitcast(b.gep(acc, [b.mul(c, _c64(2 * W))]), DVp)
            b.store(zero_d, p, align=8)
            b.store(zero_d, b.gep(p, [_c64(1)]), align=8)
            b.store(ir.Constant(_I8, 0), b.gep(bad, [c]))
        E.for_(_c64(0), P, clear, name="clear")
    interp = block_fn(mod, V, W, B, lower, dag=True)

    def block(bi: ir.Value) -> None:
        r0 = b.mul(bi, cB)
        full = b.icmp_signed("<", bi, nfull)
        base = b.select(full, b.gep(X, [r0]), tail)
        stride = b.select(full, ldx, cB)
        E.for_(_c64(0), nvar, lambda v: b.store(b.gep(base, [b.mul(v, stride)]),
                                                 b.gep(ptrs, [v])), name="varptr")
        if is_loss:
            yb = b.select(full, b.gep(y, [r0]), b.gep(tail, [b.mul(nvar, cB)]))
            wb = b.select(full, b.gep(w, [r0]), b.gep(tail, [b.mul(b.add(nvar, _c64(1)), cB)])
                          ) if weighted else None
            cntv = broadcast(b, ir.VectorType(_I64, W), b.select(full, cB, rem))
        pos = E.local(_c64(0), "pos")

        def step(brk: Callable[[], None]) -> None:
            p0 = b.load(pos)
            at = b.call(interp, [code, p0, b.sub(n_instr, p0), ptrs, pool])
            E.if_(b.icmp_signed(">=", at, n_instr), brk)
            row = b.gep(code, [b.mul(at, _c64(4))])
            slot = b.sext(b.load(b.gep(row, [_c64(2)])), _I64)
            c = b.sext(b.load(b.gep(row, [_c64(3)])), _I64)
            rp = b.load(b.gep(ptrs, [slot]))
            if is_loss:
                ap = b.bitcast(b.gep(acc, [b.mul(c, _c64(2 * W))]), DVp)
                s, a, nf = emit_block_loss(b, T, V, W, B, lower, rp, yb, wb, cntv,
                                               b.load(ap, align=8),
                                               b.load(b.gep(ap, [_c64(1)]), align=8))
                b.store(s, ap, align=8)
                b.store(a, b.gep(ap, [_c64(1)]), align=8)
                bp = b.gep(bad, [c])
                b.store(b.or_(b.load(bp), b.zext(nf, _I8)), bp)
            else:
                emit_block_store(E, V, W, B, rp, b.gep(out, [b.add(b.mul(c, ldo), r0)]),
                                     full, rem)
            b.store(b.add(at, _c64(1)), pos)
        E.loop(step)
    E.for_(_c64(0), nblk, block, name="blk")

    if is_loss:
        inf = ir.Constant(_DBL, float("inf"))

        def finish(c: ir.Value) -> None:
            ap = b.bitcast(b.gep(acc, [b.mul(c, _c64(2 * W))]), DVp)
            isbad = b.icmp_unsigned("!=", b.load(b.gep(bad, [c])), ir.Constant(_I8, 0))
            s_tot = hsum(b, b.load(ap, align=8), W)
            a_tot = hsum(b, b.load(b.gep(ap, [_c64(1)]), align=8), W)
            dst = b.gep(loss, [b.mul(c, _c64(2))])
            b.store(b.select(isbad, inf, s_tot), dst)
            b.store(b.select(isbad, inf, a_tot), b.gep(dst, [_c64(1)]))
        E.for_(_c64(0), P, finish, name="finish")
    b.ret_void()


_P = ctypes.c_void_p
_L = ctypes.c_int64
_COMMON = [_P, _L, _P, _L, _P, _L, _L, _L, _L, _P, _P, _P, _P, _P]
_PREDICT_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _L)
_LOSS_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _P, _P)


class _Interpreter:
    """The loaded shared-tape entry points of one dtype and block (kept for the process)."""

    def __init__(self, dtype: str, block: int) -> None:
        isa = _vecmath.host_isa()
        lanes = _vecmath.width(dtype, isa)
        if block % lanes:
            block = lanes * max(1, block // lanes)
        self.dtype, self.block, self.lanes = dtype, block, lanes
        key = (f"dag|{_VERSION}|{dtype}|{lanes}|{block}|{isa}|"
               f"{_jit.source_hash('eval/dag.py', 'eval/tier0_blocks.py', 'bytecode.py')}")
        names = ["dag_predict", "dag_loss", "dag_loss_w"]
        obj = _cache.get_or_compile(key, lambda: _jit.compile_object(
            str(emit_module(dtype, lanes, block)), opt_ir=2, opt_codegen=3))
        _vecmath.ensure_libraries()
        self.library = _jit.load_library([obj], names)
        a = self.library.addresses
        self.predict = _PREDICT_T(a["dag_predict"])
        self.loss = _LOSS_T(a["dag_loss"])
        self.loss_w = _LOSS_T(a["dag_loss_w"])


_INTERPS: dict[tuple[str, int, int], _Interpreter] = {}


def interpreter(dtype: str = "float64", block: int | None = None) -> _Interpreter:
    """The process's shared-tape interpreter for `dtype` (built or loaded on first use)."""
    return process_interpreter(_INTERPS, _Interpreter, BLOCK, dtype, block)


class DagProgram:
    """A shared tape ready to run: ``loss(X, y, w)`` -> (P, 2) float64 (sum w*err**2, sum
    w*|err|; +inf both for a non-finite prediction), ``predict(X, out)``.  X is (n_features,
    N) C-contiguous of the dtype, as for `tier0.Tier0Program`.  One call runs the whole
    population (threads: run several programs, one per part of the population)."""

    def __init__(self, tape: DagTape, dtype: str = "float64", block: int | None = None) -> None:
        if not isinstance(tape, DagTape):
            raise CompileError(f"DagProgram takes a DagTape, got {type(tape).__name__}")
        self.tape = tape
        self.dtype = str(np.dtype(dtype))
        self._np = np.dtype(self.dtype)
        self.interp = interpreter(self.dtype, block)
        # a zero-size array may have no valid address
        self._code = tape.code if tape.code.size else np.zeros((1, 4), np.int32)
        self._pool = tape.pool if tape.pool.size else np.zeros(1)

    @property
    def n_candidates(self) -> int:
        return self.tape.n_candidates

    def _args(self, X: np.ndarray) -> tuple[list[Any], list[np.ndarray]]:
        t = self.tape
        if (not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != self._np
                or not X.flags.c_contiguous):
            raise DataError(f"X must be a C-contiguous (features, N) {self.dtype} array")
        if X.shape[0] < t.n_vars:
            raise DataError(f"population reads {t.n_vars} feature(s), X has {X.shape[0]}")
        B = self.interp.block
        isz = self._np.itemsize
        ptrs = np.empty(max(t.n_slots, 1), dtype=np.uintp)
        tail = np.empty((t.n_vars + 2) * B + 8, dtype=self._np)
        slots = np.empty(max(t.n_scratch, 1) * B + 64 // isz, dtype=self._np)
        # 64-byte aligned scratch rows
        skip = (-slots.ctypes.data % 64) // isz
        acc = np.empty(2 * self.interp.lanes * max(t.n_candidates, 1) + 8, dtype=np.float64)
        askip = (-acc.ctypes.data % 64) // 8
        bad = np.empty(max(t.n_candidates, 1), dtype=np.int8)
        args = [self._code.ctypes.data, self._code.shape[0] if t.code.size else 0,
                self._pool.ctypes.data, t.n_candidates, X.ctypes.data, X.shape[1], X.shape[1],
                t.n_vars, t.n_slots, ptrs.ctypes.data, tail.ctypes.data,
                slots.ctypes.data + skip * isz, acc.ctypes.data + askip * 8, bad.ctypes.data]
        return args, [ptrs, tail, slots, acc, bad]

    def loss(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        n = X.shape[1] if isinstance(X, np.ndarray) and X.ndim == 2 else -1
        for name, a in (("y", y), ("w", w)):
            if a is None and name == "w":
                continue
            if (not isinstance(a, np.ndarray) or a.dtype != self._np or a.shape != (n,)
                    or not a.flags.c_contiguous):
                raise DataError(f"{name} must be a C-contiguous ({n},) {self.dtype} array")
        args, keep = self._args(X)
        out = np.empty((self.n_candidates, 2), dtype=np.float64)
        fn = self.interp.loss if w is None else self.interp.loss_w
        fn(*args, y.ctypes.data, 0 if w is None else w.ctypes.data, out.ctypes.data)
        del keep
        return out

    def predict(self, X: np.ndarray, out: np.ndarray) -> None:
        args, keep = self._args(X)
        shape = (self.n_candidates, X.shape[1])
        if (not isinstance(out, np.ndarray) or out.dtype != self._np or out.shape != shape
                or not out.flags.c_contiguous):
            raise DataError(f"out must be a C-contiguous {shape} {self.dtype} array")
        self.interp.predict(*args, out.ctypes.data, out.shape[1])
        del keep
