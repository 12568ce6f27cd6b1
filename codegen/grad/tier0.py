"""Tier-0 parameter Jacobians: a Jacobian interpreter compiled once per machine (no compilation
per candidate) over the shared tier-0 bytecode (`codegen.bytecode`), its population batch entry
and the native Levenberg–Marquardt loop linked into the same library."""

from __future__ import annotations

import ctypes
import functools
import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError, SymcoreError
from symcore.ir import Expr, flatten
from symcore.ops import LEAVES, OPS, generation

from symcore.codegen.bytecode import KIND_CONST, KIND_PARAM, OP_VAR, opcodes, runnable
from symcore.codegen.fit import native_lm as _lm
from symcore.codegen.grad.data import Data, unpack_square
from symcore.codegen.grad.templates import active_nodes, deriv_template
from symcore.codegen.llvm import jit
from symcore.codegen.llvm.cache import get_or_compile
from symcore.codegen.llvm.irflow import Flow
from symcore.codegen.llvm.lower import LOWER, lower_expr
from symcore.codegen.llvm.values import broadcast, literal, ptr_at, splat, vector_type
from symcore.codegen.llvm.vecmath import width

__all__ = ["Tier0Grad", "emit_tier0", "emit_tier0_batch", "T0_UNROLL", "T0_UNROLLED_PARAMS"]

_F64 = ir.DoubleType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = _F64.as_pointer()


# -------------------------------------------------------------------------------------------------
# Tier 0: a Jacobian interpreter compiled once per machine (no compilation per candidate).
# A candidate is packed into small integer arrays: `fills` (slot, kind, index) set constant and
# parameter slots once per call; `fwd` (op, dst, a, b) computes every other node for one vector
# of rows (op `OP_VAR` loads column a; operators use `bytecode.opcodes()`); `rev` (op, dst, a, b, flags) runs the reverse sweep over the
# parameter-dependent nodes (flags bit i: argument i needs its adjoint).  One slot per node
# (reverse mode needs every forward value), plus one always-zero slot for unused parameters.

#: part of the library's cache key: bump when the generated code changes meaning
_T0_VERSION = "g0-6"
#: generator files of the library (relative to codegen/): part of its cache key
SOURCES = ("grad/tier0.py", "grad/templates.py", "fit/native_lm.py", "bytecode.py",
           "llvm/values.py")
_T0_ARGS = ["i32p", "i64", "i32p", "i64", "i32p", "i64", "i32p", "i64", "f64p", "f64p", "f64p",
            "i64", "f64p", "f64p", "i64", "i64", "i64", "f64p", "f64p", "f64p", "f64p", "i64"]
#: g0_batch(K, table, params, Pm, X, ldx, y, w, n, vals, adj, jbuf, outs, out_stride)
_T0_BATCH_ARGS = ["i64", "i64p", "f64p", "i64", "f64p", "i64", "f64p", "f64p", "i64", "f64p",
                  "f64p", "f64p", "f64p", "i64"]
#: one row of the batch table per candidate (int64): addresses and sizes of its packed arrays
_T0_TABLE = ("fills", "nfill", "fwd", "nfwd", "rev", "nrev", "pslots", "P", "pool", "root",
             "nslots")


def _t0_ctype(args: list[str]) -> Any:
    m = {"i32p": ctypes.c_void_p, "i64p": ctypes.c_void_p, "f64p": ctypes.c_void_p,
         "i64": ctypes.c_int64, "f64": ctypes.c_double}
    return ctypes.CFUNCTYPE(None, *(m[a] for a in args))


class _Fn(Flow):
    """`Flow` plus slot addressing: a slot holds `unroll` vectors of `lanes` rows."""

    def __init__(self, fn: ir.Function, vt: ir.Type, unroll: int) -> None:
        super().__init__(fn)
        self.vt = vt
        self.lanes = vt.count if isinstance(vt, ir.VectorType) else 1
        self.unroll = unroll

    def slot(self, base: ir.Value, s: ir.Value, u: int) -> ir.Value:
        """Pointer to vector u of slot s of a (slots × unroll × lanes) buffer."""
        b = self.b
        off = b.add(b.mul(s, ir.Constant(_I64, self.lanes * self.unroll)),
                    ir.Constant(_I64, u * self.lanes))
        return ptr_at(b, base, off, self.vt)

    def ld(self, base: ir.Value, s: ir.Value, u: int) -> ir.Value:
        return self.b.load(self.slot(base, s, u), align=8)

    def st(self, v: ir.Value, base: ir.Value, s: ir.Value, u: int) -> None:
        self.b.store(v, self.slot(base, s, u), align=8)

    def field(self, rows: ir.Value, k: ir.Value, width: int, j: int) -> ir.Value:
        b = self.b
        p = b.gep(rows, [b.add(b.mul(k, ir.Constant(_I64, width)), ir.Constant(_I64, j))])
        return b.sext(b.load(p), _I64)


def _t0_local_derivative(F: _Fn, op: str, i: int, args: list[ir.Value], out: ir.Value
                         ) -> ir.Value:
    b = F.b
    if op == "powi":  # exponent known only at run time here: k * x**(k-1)
        k = args[1]
        return b.fmul(k, LOWER["pow"](b, args[0], b.fsub(k, splat(F.vt, 1.0))))
    d = deriv_template(op, (None,) * len(args), i)

    def lv(kind: str, v: Any) -> ir.Value:
        if kind == "var":
            return args[v] if v < len(args) else out
        if kind == "const":
            return literal(F.vt, v)
        raise CompileError(f"derivative of {op} refers to a parameter")
    return lower_expr(b, d, lv)


#: vectors per interpreted instruction (amortises the dispatch over unroll × lanes rows)
T0_UNROLL = 4
#: candidates with up to this many parameters get normal equations unrolled for their P
T0_UNROLLED_PARAMS = 10


def emit_tier0(module: ir.Module, lanes: int, unroll: int = T0_UNROLL) -> ir.Function:
    """The interpreter `g0_normal`: like `emit_normal` for any packed candidate, over blocks of
    unroll × lanes rows (n must be a multiple of that).  Scratch: vals (n_slots), adj
    (n_slots + 1), jbuf (P) slots of unroll × lanes doubles each.  `out` holds 1 + Pm + Pm²
    slots (Pm >= P is the layout stride): Σ w r², then Σ w r J_j at 1 + j, then the upper
    triangle of Σ w J_j J_k at 1 + Pm + j Pm + k (the rest zero), as lane partial sums."""
    vt = vector_type(lanes)
    U = unroll
    types = {"i32p": _I32.as_pointer(), "f64p": _PTR, "i64": _I64}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in _T0_ARGS]),
                     name="g0_normal")
    (fills, nfill, fwd, nfwd, rev, nrev, pslots, P, pool, params, X, ldx, Y, Wt, n, root, nslots,
     vals, adj, jbuf, out, Pm) = fn.args
    F = _Fn(fn, vt, U)
    b = F.b
    c = lambda v: ir.Constant(_I64, v)  # noqa: E731
    zero = splat(vt, 0.0)
    codes = opcodes()
    ok = runnable(derivatives=True)
    n_acc = b.add(b.add(c(1), Pm), b.mul(Pm, Pm))

    def fill(k: ir.Value) -> None:
        s, kind, idx = (F.field(fills, k, 3, j) for j in range(3))
        is_param = b.icmp_signed("==", kind, c(KIND_PARAM))
        v = broadcast(b, vt, b.select(is_param, b.load(b.gep(params, [idx])),
                                       b.load(b.gep(pool, [idx]))))
        for u in range(U):
            F.st(v, vals, s, u)
    F.for_(c(0), nfill, fill)

    def zero_out(k: ir.Value) -> None:
        for u in range(U):
            F.st(zero, out, k, u)
    F.for_(c(0), n_acc, zero_out)

    def block(i: ir.Value) -> None:
        def forward(k: ir.Value) -> None:
            op, dst, a, bb = (F.field(fwd, k, 4, j) for j in range(4))
            done = fn.append_basic_block("fwd.next")
            sw = b.switch(op, done)
            blk = fn.append_basic_block("fwd.var")
            sw.add_case(ir.Constant(_I64, OP_VAR), blk)
            b.position_at_end(blk)
            for u in range(U):
                off = b.add(b.add(b.mul(a, ldx), i), c(u * lanes))
                F.st(b.load(ptr_at(b, X, off, vt), align=8), vals, dst, u)
            b.branch(done)
            for name, o in OPS.items():
                if name not in ok:
                    continue
                blk = fn.append_basic_block(f"fwd.{name}")
                sw.add_case(ir.Constant(_I64, codes[name]), blk)
                b.position_at_end(blk)
                for u in range(U):
                    args = [F.ld(vals, a, u)] + ([F.ld(vals, bb, u)] if o.arity == 2 else [])
                    F.st(LOWER[name](b, *args), vals, dst, u)
                b.branch(done)
            b.position_at_end(done)
        F.for_(c(0), nfwd, forward)

        def zero_adj(s: ir.Value) -> None:
            for u in range(U):
                F.st(zero, adj, s, u)
        F.for_(c(0), b.add(nslots, c(1)), zero_adj)
        for u in range(U):
            F.st(splat(vt, 1.0), adj, root, u)

        def reverse(k: ir.Value) -> None:
            op, dst, a, bb, flags = (F.field(rev, k, 5, j) for j in range(5))
            done = fn.append_basic_block("rev.next")
            sw = b.switch(op, done)
            for name, o in OPS.items():
                if name not in ok:
                    continue
                blk = fn.append_basic_block(f"rev.{name}")
                sw.add_case(ir.Constant(_I64, codes[name]), blk)
                b.position_at_end(blk)
                srcs = [a, bb][:o.arity]
                if name == "div":
                    # out = a / b: one division q = adj / b serves both adjoints (adj_a += q,
                    # adj_b -= q * out) where the ops table's templates 1/b and -out/b take two
                    qs = [b.fdiv(F.ld(adj, dst, u), F.ld(vals, bb, u)) for u in range(U)]
                    for j, s in enumerate(srcs):
                        on = b.icmp_signed("!=", b.and_(flags, c(1 << j)), c(0))
                        with b.if_then(on):
                            for u in range(U):
                                upd = qs[u] if j == 0 else b.fneg(b.fmul(qs[u],
                                                                         F.ld(vals, dst, u)))
                                F.st(b.fadd(F.ld(adj, s, u), upd), adj, s, u)
                    b.branch(done)
                    continue
                for j, s in enumerate(srcs):
                    if name == "powi" and j == 1:
                        continue
                    on = b.icmp_signed("!=", b.and_(flags, c(1 << j)), c(0))
                    with b.if_then(on):
                        for u in range(U):
                            args = [F.ld(vals, t, u) for t in srcs]
                            d = _t0_local_derivative(F, name, j, args, F.ld(vals, dst, u))
                            F.st(b.fadd(F.ld(adj, s, u), b.fmul(F.ld(adj, dst, u), d)), adj, s, u)
                b.branch(done)
            b.position_at_end(done)
        F.for_(c(0), nrev, reverse)

        # normal equations of this block
        ms, wrs, wvs = [], [], []
        for u in range(U):
            yv = b.load(ptr_at(b, Y, b.add(i, c(u * lanes)), vt), align=8)
            wv = b.load(ptr_at(b, Wt, b.add(i, c(u * lanes)), vt), align=8)
            m = b.fcmp_ordered(">", wv, zero)
            r = b.select(m, b.fsub(F.ld(vals, root, u), yv), zero)
            wr = b.fmul(wv, r)
            F.st(b.fadd(F.ld(out, c(0), u), b.fmul(wr, r)), out, c(0), u)
            ms.append(m)
            wrs.append(wr)
            wvs.append(wv)

        def generic() -> None:
            def grad_j(j: ir.Value) -> None:
                s = b.sext(b.load(b.gep(pslots, [j])), _I64)
                acc = b.add(j, c(1))
                for u in range(U):
                    Jj = b.select(ms[u], F.ld(adj, s, u), zero)
                    F.st(Jj, jbuf, j, u)
                    F.st(b.fadd(F.ld(out, acc, u), b.fmul(wrs[u], Jj)), out, acc, u)
            F.for_(c(0), P, grad_j)

            def row_j(j: ir.Value) -> None:
                wjs = [b.fmul(wvs[u], F.ld(jbuf, j, u)) for u in range(U)]
                base = b.add(b.add(c(1), Pm), b.mul(j, Pm))

                def col_k(k: ir.Value) -> None:
                    at = b.add(base, k)
                    for u in range(U):
                        F.st(b.fadd(F.ld(out, at, u), b.fmul(wjs[u], F.ld(jbuf, k, u))), out, at,
                             u)
                F.for_(j, P, col_k)
            F.for_(c(0), P, row_j)

        def unrolled(npar: int) -> None:
            # P known: the block's Jacobian stays in registers and every entry of the normal
            # equations sums its U vectors before touching memory (one load/store per entry
            # instead of U: the accumulation was bound by L1 traffic for P >= 4)
            Js = []
            for j in range(npar):
                s = b.sext(b.load(b.gep(pslots, [c(j)])), _I64)
                Js.append([b.select(ms[u], F.ld(adj, s, u), zero) for u in range(U)])

            def bump(at: ir.Value, terms: list[ir.Value]) -> None:
                tot = terms[0]
                for t in terms[1:]:
                    tot = b.fadd(tot, t)
                F.st(b.fadd(F.ld(out, at, 0), tot), out, at, 0)
            for j in range(npar):
                bump(c(1 + j), [b.fmul(wrs[u], Js[j][u]) for u in range(U)])
                wj = [b.fmul(wvs[u], Js[j][u]) for u in range(U)]
                base = b.add(b.add(c(1), Pm), b.mul(c(j), Pm))
                for k in range(j, npar):
                    bump(b.add(base, c(k)), [b.fmul(wj[u], Js[k][u]) for u in range(U)])

        merge = fn.append_basic_block("normal.done")
        other = fn.append_basic_block("normal.any")
        sw = b.switch(P, other)
        for npar in range(1, T0_UNROLLED_PARAMS + 1):
            blk = fn.append_basic_block(f"normal.p{npar}")
            sw.add_case(ir.Constant(_I64, npar), blk)
            b.position_at_end(blk)
            unrolled(npar)
            b.branch(merge)
        b.position_at_end(other)
        generic()
        b.branch(merge)
        b.position_at_end(merge)
    F.for_(c(0), n, block, step=lanes * U)
    b.ret_void()
    return fn


def emit_tier0_batch(module: ir.Module, normal: ir.Function) -> ir.Function:
    """`g0_batch`: `g0_normal` for K candidates described by rows of a table (`_T0_TABLE`),
    candidate k reading params + k Pm and writing outs + k out_stride (one native call per
    round of a population fit)."""
    types = {"i64p": _I64.as_pointer(), "f64p": _PTR, "i64": _I64}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in _T0_BATCH_ARGS]),
                     name="g0_batch")
    K, table, params, Pm, X, ldx, Y, Wt, n, vals, adj, jbuf, outs, stride = fn.args
    F = _Fn(fn, _F64, 1)
    b = F.b
    i32p = _I32.as_pointer()

    def one(k: ir.Value) -> None:
        row = b.gep(table, [b.mul(k, ir.Constant(_I64, len(_T0_TABLE)))])
        f = {name: b.load(b.gep(row, [ir.Constant(_I64, j)])) for j, name in enumerate(_T0_TABLE)}
        ptr = lambda name, ty: b.inttoptr(f[name], ty)  # noqa: E731
        b.call(normal, [ptr("fills", i32p), f["nfill"], ptr("fwd", i32p), f["nfwd"],
                        ptr("rev", i32p), f["nrev"], ptr("pslots", i32p), f["P"],
                        ptr("pool", _PTR), b.gep(params, [b.mul(k, Pm)]), X, ldx, Y, Wt, n,
                        f["root"], f["nslots"], vals, adj, jbuf,
                        b.gep(outs, [b.mul(k, stride)]), Pm])
    F.for_(ir.Constant(_I64, 0), K, one)
    b.ret_void()
    return fn


@functools.lru_cache(maxsize=4)
def _tier0_library(lanes: int, gen: int = 0) -> tuple[Any, tuple[Any, Any]]:
    # `gen`: the ops registry's generation (the opcode switch bakes the op set in)
    key = (f"grad-tier0|{_T0_VERSION}|{lanes}x{T0_UNROLL}|"
           f"{jit.source_hash(*SOURCES)}")

    def build() -> bytes:
        module = ir.Module(name="symcore_grad_tier0")
        normal = emit_tier0(module, lanes)
        emit_tier0_batch(module, normal)
        _lm.emit_lm(module, normal, lanes * T0_UNROLL)
        return jit.compile_object(str(module), 2, 2)
    obj = get_or_compile(key, build)
    lib = jit.load_library([obj], ["g0_normal", "g0_batch", "g0_lm"])
    return lib, (_t0_ctype(_T0_ARGS)(lib.addresses["g0_normal"]),
                 _t0_ctype(_T0_BATCH_ARGS)(lib.addresses["g0_batch"]),
                 _t0_ctype(_lm.LM_ARGS)(lib.addresses["g0_lm"]))


@dataclass(frozen=True)
class _JacobianCode:
    """One candidate as tier-0 Jacobian bytecode (see the comment above `_T0_VERSION`)."""

    fills: np.ndarray
    fwd: np.ndarray
    rev: np.ndarray
    pslots: np.ndarray
    pool: np.ndarray
    root: int
    n_slots: int
    P: int
    n_cols: int


def _pack(expr: Expr) -> _JacobianCode:
    flat = flatten(expr)
    nodes = flat.nodes
    codes = opcodes()
    ok = runnable(derivatives=True)
    act = active_nodes(list(nodes))
    fills, fwd, rev, pool = [], [], [], []
    pslot = {}
    for i, (op, kids, val) in enumerate(flat.rows):
        if op == "const":
            fills.append((i, KIND_CONST, len(pool)))
            pool.append(float(val))
        elif op == "param":
            fills.append((i, KIND_PARAM, val))
            pslot[val] = i
        elif op == "var":
            fwd.append((OP_VAR, i, val[0] if isinstance(val, tuple) else val, 0))
        else:
            if op not in ok:
                raise CompileError(f"the tier-0 Jacobian cannot run operator {op!r}: it lacks "
                                   f"an LLVM lowering or derivative templates")
            a = kids[0]
            b2 = kids[1] if len(kids) > 1 else 0
            fwd.append((codes[op], i, a, b2))
    for i in range(len(nodes) - 1, -1, -1):
        op, kids, _ = flat.rows[i]
        if nodes[i] not in act or op in LEAVES:
            continue
        flags = sum(1 << j for j, k in enumerate(kids) if nodes[k] in act)
        rev.append((codes[op], i, kids[0], kids[1] if len(kids) > 1 else 0, flags))
    n_slots = len(nodes)
    # from the rows already flattened (Expr.n_params / variables() would flatten twice more)
    P = max(pslot, default=-1) + 1
    n_cols = max((v[0] if isinstance(v, tuple) else v for op, _, v in flat.rows if op == "var"),
                 default=-1) + 1
    arr = lambda rows, w: np.ascontiguousarray(  # noqa: E731
        np.array(rows, dtype=np.int32).reshape(-1, w))
    return _JacobianCode(arr(fills, 3), arr(fwd, 4), arr(rev, 5),
                   np.array([pslot.get(j, n_slots) for j in range(P)], dtype=np.int32),
                   np.array(pool + [0.0], dtype=np.float64), n_slots - 1, n_slots, P, n_cols)


#: Tier0Grad.normal_batch: fewest row-evaluations per thread chunk worth a thread hand-off
_SPLIT_ROWS = 32768


class Tier0Grad:
    """The same `normal` interface as `GradKernels`, served by the compiled-once interpreter:
    packing a candidate is pure Python (microseconds), nothing is compiled per candidate."""

    def __init__(self, exprs: Sequence[Expr], *, lanes: int | None = None) -> None:
        self.exprs = list(exprs)
        for e in self.exprs:
            if not isinstance(e, Expr):
                raise SymcoreError(f"Tier0Grad takes Expr objects, got {type(e).__name__}")
        self.vector = lanes or width("float64")
        self.lanes = self.vector * T0_UNROLL   # rows per block: data is padded to a multiple
        self._lib, (self._fn, self._batch, self._lm) = _tier0_library(self.vector, generation())
        self._packed = [_pack(e) for e in self.exprs]
        self.max_params = max((pk.P for pk in self._packed), default=0)
        self._table = np.array([[pk.fills.ctypes.data, pk.fills.shape[0], pk.fwd.ctypes.data,
                                 pk.fwd.shape[0], pk.rev.ctypes.data, pk.rev.shape[0],
                                 pk.pslots.ctypes.data, pk.P, pk.pool.ctypes.data, pk.root,
                                 pk.n_slots] for pk in self._packed],
                               dtype=np.int64).reshape(-1, len(_T0_TABLE))
        self._static = [(pk.fills.ctypes.data, pk.fills.shape[0], pk.fwd.ctypes.data,
                         pk.fwd.shape[0], pk.rev.ctypes.data, pk.rev.shape[0],
                         pk.pslots.ctypes.data, pk.P, pk.pool.ctypes.data)
                        for pk in self._packed]
        self._max_slots = max((pk.n_slots for pk in self._packed), default=1)
        self._max_P = max((pk.P for pk in self._packed), default=0)
        self._local = threading.local()

    def _buffers(self) -> tuple[int, int, int, np.ndarray]:
        """This thread's scratch (vals, adj, jbuf addresses and the out array), sized for the
        largest candidate: concurrent calls from several threads never share scratch."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            L, P = self.lanes, self._max_P
            arrays = (np.empty((self._max_slots, L)), np.empty((self._max_slots + 1, L)),
                      np.empty((max(P, 1), L)), np.empty((1 + P + P * P) * L))
            buf = (arrays[0].ctypes.data, arrays[1].ctypes.data, arrays[2].ctypes.data, arrays)
            self._local.buf = buf
        return buf

    def __len__(self) -> int:
        return len(self.exprs)

    def normal(self, k: int, data: Data, params: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
        """(Σ w r², Jᵀ W r, Jᵀ W J) of candidate k at `params` (r = pred - y)."""
        pk = self._packed[k]
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if pk.n_cols > data.X.shape[0]:
            raise DataError(f"expression uses {pk.n_cols} column(s), data has {data.X.shape[0]}")
        if not (isinstance(params, np.ndarray) and params.dtype == np.float64
                and params.ndim == 1 and params.shape[0] >= pk.P and params.flags.c_contiguous):
            raise DataError(f"params must be a contiguous float64 vector of {pk.P} values")
        P = pk.P
        pv, pa, pj, arrays = self._buffers()
        out = arrays[3][:(1 + P + P * P) * self.lanes]
        px, py, pw = data.pointers
        pp = params.ctypes.data if P else px
        self._fn(*self._static[k], pp, px, data.n_pad, py, pw, data.n_pad, pk.root, pk.n_slots,
                 pv, pa, pj, out.ctypes.data, P)
        f, g, H = unpack_square(out.reshape(1, 1 + P + P * P, self.lanes), P)
        return float(f[0]), g[0], H[0]

    def normal_batch(self, ids: np.ndarray, params: np.ndarray, data: Data,
                     pool: Any = None, n_threads: int = 1
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normal equations of candidates `ids` (K,) at `params` (K, Pm), Pm = `max_params`:
        (Σ w r² (K,), Jᵀ W r (K, Pm), Jᵀ W J (K, Pm, Pm)), zero beyond each candidate's own
        parameters.  One native call per thread (`pool` runs all but the first chunk)."""
        Pm = self.max_params
        ids = np.asarray(ids, dtype=np.int64)
        K = ids.shape[0]
        if params.dtype != np.float64 or params.shape != (K, max(Pm, 1)) \
                or not params.flags.c_contiguous:
            raise DataError(f"params must be a contiguous ({K}, {max(Pm, 1)}) float64 array")
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if K and max(self._packed[i].n_cols for i in set(ids.tolist())) > data.X.shape[0]:
            raise DataError(f"data has {data.X.shape[0]} column(s), fewer than a candidate uses")
        table = np.ascontiguousarray(self._table[ids])
        width = (1 + Pm + Pm * Pm) * self.lanes
        outs = np.empty((K, width))
        px, py, pw = data.pointers

        def run(lo: int, hi: int) -> None:
            if hi <= lo:
                return
            pv, pa, pj, _ = self._buffers()
            self._batch(hi - lo, table[lo:].ctypes.data, params[lo:].ctypes.data, max(Pm, 1),
                        px, data.n_pad, py, pw, data.n_pad, pv, pa, pj, outs[lo:].ctypes.data,
                        width)
        # a chunk handed to another thread costs ~0.1 ms of hand-off: split only when each
        # chunk carries at least _SPLIT_ROWS row-evaluations (a few hundred µs of kernel work)
        T = max(1, min(n_threads, K // 8, K * data.n_pad // _SPLIT_ROWS)) \
            if pool is not None else 1
        bounds = [K * t // T for t in range(T + 1)]
        futures = [pool.submit(run, bounds[t], bounds[t + 1]) for t in range(1, T)]
        run(bounds[0], bounds[1])
        for fut in futures:
            fut.result()
        return unpack_square(outs.reshape(K, 1 + Pm + Pm * Pm, self.lanes), Pm)

    def fit_lm(self, ids: np.ndarray, starts: np.ndarray, budgets: np.ndarray, data: Data,
               tol: float, factor: float = 100.0, pool: Any = None, n_threads: int = 1,
               max_time: float = math.inf, deadline: float = math.inf
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Levenberg–Marquardt (`codegen.lm`) on problems k: candidate ids[k] from starts[k]
        ((K, Pm) float64, Pm = `max_params`) within budgets[k] trial steps, entirely in native
        code: every thread (`pool` runs all but one) takes the next problem from a shared
        counter.  Returns (params (K, Pm), Σ w r² (K,), trial steps (K,), status codes (K,),
        indices into fit.STATUSES).  Time limit: a problem stops (status "time limit", at its
        best point so far) `max_time` seconds after it starts or at `deadline` (a
        time.monotonic() value), whichever comes first."""
        Pm = max(self.max_params, 1)
        ids = np.asarray(ids, dtype=np.int64)
        K = ids.shape[0]
        starts = np.ascontiguousarray(starts, dtype=np.float64)
        budgets = np.ascontiguousarray(budgets, dtype=np.int64)
        if starts.shape != (K, Pm) or budgets.shape != (K,):
            raise DataError(f"starts must be ({K}, {Pm}) and budgets ({K},)")
        if K and (ids.min() < 0 or ids.max() >= len(self._packed) or budgets.min() < 0):
            raise DataError(f"candidate ids must lie in [0, {len(self._packed)}) and budgets "
                            f"be >= 0")
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if K and max(self._packed[i].n_cols for i in set(ids.tolist())) > data.X.shape[0]:
            raise DataError(f"data has {data.X.shape[0]} column(s), fewer than a candidate uses")
        if not (math.isfinite(tol) and tol >= 0 and math.isfinite(factor) and factor > 0):
            raise DataError("tol must be finite and >= 0, factor finite and > 0")
        table = np.ascontiguousarray(self._table[ids])
        res_p = starts.copy()
        res_f = np.empty(K)
        res_it = np.zeros(K, dtype=np.int64)
        res_st = np.zeros(K, dtype=np.int64)
        counter = np.zeros(1, dtype=np.int64)
        limits = np.array([max_time, deadline], dtype=np.float64)
        clock = _lm.clock_address() if (math.isfinite(max_time) or math.isfinite(deadline)) \
            else 0
        px, py, pw = data.pointers

        def run() -> None:
            pv, pa, pj, arrays = self._buffers()
            work = getattr(self._local, "work", None)
            if work is None or work.shape[0] < _lm.work_size(Pm):
                work = self._local.work = np.empty(_lm.work_size(Pm))
            self._lm(K, table.ctypes.data, starts.ctypes.data, Pm, budgets.ctypes.data, px,
                     data.n_pad, py, pw, data.n_pad, pv, pa, pj, arrays[3].ctypes.data,
                     work.ctypes.data, float(tol), float(factor), counter.ctypes.data,
                     res_p.ctypes.data, res_f.ctypes.data, res_it.ctypes.data, res_st.ctypes.data,
                     clock, limits.ctypes.data)
        T = max(1, min(n_threads, K)) if pool is not None else 1
        futures = [pool.submit(run) for _ in range(1, T)]
        run()
        for fut in futures:
            fut.result()
        return res_p, res_f, res_it, res_st

    def close(self) -> None:
        self._packed = []
