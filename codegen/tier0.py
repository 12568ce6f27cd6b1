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
* ``prog.jacobian_range(Xcol, params, out, jac, c0, c1)``: predictions into ``out`` and
  ``jac[c, k, :] = d pred_c / d p_k`` (float64, ``(P, K, N)``, K = ``params.shape[1]``; rows of
  parameters a candidate does not use are 0), by a forward sweep that keeps every node's value
  and a reverse sweep whose local derivatives are the ops table's (compiled on first use).
* ``prog.normal_range(Xcol, y, w, params, out_loss, g, H, c0, c1)``: what a Levenberg–Marquardt
  step needs, without materialising J: ``out_loss`` as above, ``g[c] = Jᵀ W r`` (P, K) and
  ``H[c] = Jᵀ W J`` (P, K, K) in float64, r = pred - y.

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
from symcore.ir import Expr, const, var
from symcore.ops import OPS

from . import jit as _jit
from . import tape as _tape
from . import vecmath as _vecmath
from .lower import LOWER, POWI_MAX_MULTIPLY, lower_expr, lower_powi

__all__ = ["Tier0Program", "interpreter", "BLOCK", "emit_module"]

#: rows per block by dtype: scratch for one candidate is n_scratch * BLOCK * itemsize bytes
BLOCK = {"float64": 64, "float32": 128}

# Bump when the generated code changes: part of the on-disk cache key.
_VERSION = "t0-1"

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()


def _c64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


class _Emitter:
    """Small helpers over an IRBuilder: allocas in the entry block and counted loops."""

    def __init__(self, fn: ir.Function) -> None:
        self.fn = fn
        self.entry = fn.append_basic_block("entry")
        self.b = ir.IRBuilder(self.entry)

    def var(self, ty: ir.Type, init: ir.Value, name: str) -> ir.AllocaInstr:
        with self.b.goto_entry_block():
            slot = self.b.alloca(ty, name=name)
        self.b.store(init, slot)
        return slot

    def loop(self, lo: ir.Value, hi: ir.Value, body: Callable[[ir.Value], None],
             name: str) -> None:
        """for (i = lo; i < hi; ++i) body(i)  (i64)."""
        b = self.b
        i = self.var(_I64, lo, name + ".i")
        head = self.fn.append_basic_block(name + ".head")
        blk = self.fn.append_basic_block(name + ".body")
        end = self.fn.append_basic_block(name + ".end")
        b.branch(head)
        b.position_at_end(head)
        iv = b.load(i)
        b.cbranch(b.icmp_signed("<", iv, hi), blk, end)
        b.position_at_end(blk)
        body(iv)
        b.store(b.add(b.load(i), _c64(1)), i)
        b.branch(head)
        b.position_at_end(end)


def _lowering() -> dict[str, Callable[..., ir.Value]]:
    missing = [name for name in OPS if name not in LOWER]
    if missing:
        raise CompileError(f"tier 0: no lowering for op(s) {', '.join(missing)}")
    return LOWER


def emit_module(dtype: str, lanes: int, block: int,
                kinds: Sequence[str] = ("predict", "loss", "loss_w")) -> ir.Module:
    """The interpreter's LLVM module with functions ``t0_<kind>`` (kinds: predict, loss, loss_w,
    and jac, the Jacobian sweep, built in its own module on first use)."""
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
    Vp = V.as_pointer()
    I32p = _I32.as_pointer()
    # (code, fills, pool, cands, params, ldp, X, ldx, n, nvar, nslot, ptrs, tail, slots, c0, c1,
    #  then predict: out, ldo | loss, loss_w: y, w, loss | jac: out, ldo, rcode, rcands, adj, J,
    #  ldk | normal: y, w, loss, rcode, rcands, adj, G, H, ldk)
    args = [I32p, I32p, _DBL.as_pointer(), I32p, _DBL.as_pointer(), _I64, Tp, _I64, _I64, _I64,
            _I64, Tp.as_pointer(), Tp, Tp, _I64, _I64]
    if kind == "predict":
        args += [Tp, _I64]
    elif kind == "jac":
        args += [Tp, _I64, I32p, I32p, Tp, _DBL.as_pointer(), _I64]
    elif kind == "normal":
        args += [Tp, Tp, _DBL.as_pointer(), I32p, I32p, Tp, _DBL.as_pointer(),
                 _DBL.as_pointer(), _I64]
    else:
        args += [Tp, Tp, _DBL.as_pointer()]
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), args), name=f"t0_{kind}")
    fn.attributes.add("nounwind")
    (code, fills, pool, cands, params, ldp, X, ldx, n, nvar, nslot, ptrs, tail, slots, c0,
     c1) = fn.args[:16]
    E = _Emitter(fn)
    b = E.b
    weighted = kind in ("loss_w", "normal")
    is_loss = kind in ("loss", "loss_w", "normal")
    if kind in ("predict", "jac"):
        out, ldo = fn.args[16:18]
    if kind == "jac":
        rcode, rcands, adj, J, ldk = fn.args[18:23]
    elif is_loss:
        y, w, loss = fn.args[16:19]
    if kind == "normal":
        rcode, rcands, adj, G, H, ldk = fn.args[19:25]

    cB = _c64(B)
    nfull = b.sdiv(n, cB, name="nfull")
    rem = b.sub(n, b.mul(nfull, cB), name="rem")
    nblk = b.add(nfull, b.zext(b.icmp_signed(">", rem, _c64(0)), _I64), name="nblk")
    zero_t = ir.Constant(T, 0.0)

    # -- padded copy of the tail rows: X columns, then y and w ------------------------------
    def copy_tail(src: ir.Value, dst: ir.Value) -> None:
        def row(r: ir.Value) -> None:
            inside = b.icmp_signed("<", r, rem)
            with b.if_else(inside) as (then, other):
                with then:
                    v = b.load(b.gep(src, [b.add(b.mul(nfull, cB), r)]))
                    b.store(v, b.gep(dst, [r]))
                with other:
                    b.store(zero_t, b.gep(dst, [r]))
        E.loop(_c64(0), cB, row, "tailrow")

    with b.if_then(b.icmp_signed(">", rem, _c64(0))):
        E.loop(_c64(0), nvar, lambda v: copy_tail(b.gep(X, [b.mul(v, ldx)]),
                                                  b.gep(tail, [b.mul(v, cB)])), "tailcol")
        if is_loss:
            copy_tail(y, b.gep(tail, [b.mul(nvar, cB)]))
        if weighted:
            copy_tail(w, b.gep(tail, [b.mul(b.add(nvar, _c64(1)), cB)]))

    # -- scratch slot pointers (fixed for the whole call) ------------------------------------
    E.loop(nvar, nslot, lambda s: b.store(b.gep(slots, [b.mul(b.sub(s, nvar), cB)]),
                                          b.gep(ptrs, [s])), "slotptr")

    lanes_idx = ir.Constant(ir.VectorType(_I64, W), [i for i in range(W)])

    def splat(val: ir.Value, ty: ir.VectorType) -> ir.Value:
        u = ir.Constant(ty, ir.Undefined)
        v = b.insert_element(u, val, ir.Constant(_I32, 0))
        return b.shuffle_vector(v, u, ir.Constant(ir.VectorType(_I32, ty.count), [0] * ty.count))

    vload, vstore = _vec_io(b, V)

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
            vv = splat(val, V)
            dst = b.load(b.gep(ptrs, [s]))
            for k in range(B // W):
                vstore(vv, dst, k * W)
        E.loop(_c64(0), n_fill, fill, "fill")

        if is_loss:
            DV = ir.VectorType(_DBL, W)
            zero_d = ir.Constant(DV, [0.0] * W)
            sse = E.var(DV, zero_d, "sse")
            sae = E.var(DV, zero_d, "sae")
            bad = E.var(ir.IntType(1), ir.Constant(ir.IntType(1), 0), "bad")
        blk_i = E.var(_I64, _c64(0), "blk")
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
        E.loop(_c64(0), nvar, lambda v: b.store(b.gep(base, [b.mul(v, stride)]),
                                                 b.gep(ptrs, [v])), "varptr")
        b.call(_block_fn(mod, "interp", V, W, B, lower), [code, code_off, n_instr, ptrs])
        rp = b.load(b.gep(ptrs, [root]))

        def write_rows(src: ir.Value, dst: ir.Value, conv: Callable[[ir.Value], ir.Value],
                       DVp: ir.Type) -> None:
            # a full block as vectors; the tail's valid rows one by one (nothing past N)
            with b.if_else(full) as (then, other):
                with then:
                    for k in range(B // W):
                        v = conv(vload(src, k * W))
                        q = b.bitcast(b.gep(dst, [_c64(k * W)]), DVp)
                        b.store(v, q, align=8 if DVp.pointee.element == _DBL else 4)
                with other:
                    E.loop(_c64(0), rem, lambda r: b.store(
                        conv(b.load(b.gep(src, [r]))), b.gep(dst, [r])), "rowtail")

        if kind in ("predict", "jac"):
            orow = b.gep(out, [b.add(b.mul(c, ldo), r0)])
            write_rows(rp, orow, lambda v: v, Vp)
        DV = ir.VectorType(_DBL, W)
        conv = (lambda v: v) if isinstance(T, ir.DoubleType) else (lambda v: b.fpext(
            v, DV if isinstance(v.type, ir.VectorType) else _DBL))

        def sweep_back() -> Callable[[ir.Value], ir.Value]:
            rc = b.gep(rcands, [b.mul(c, _c64(3))])
            r_off, n_rev, root_active = field(rc, 0), field(rc, 1), field(rc, 2)
            adj_of = lambda s_: b.gep(adj, [b.mul(b.sub(s_, nvar), cB)])  # noqa: E731
            with b.if_then(b.icmp_signed("!=", root_active, _c64(0))):
                ones = ir.Constant(V, [1.0] * W)
                ar = adj_of(root)
                for k in range(B // W):
                    vstore(ones, ar, k * W)
            b.call(_block_fn(mod, "reverse", V, W, B, lower),
                   [rcode, r_off, n_rev, ptrs, adj, nvar])
            return adj_of

        if kind == "jac":
            adj_of = sweep_back()

            def jrow(j: ir.Value) -> None:
                row = b.gep(fills, [b.mul(b.add(fill_off, j), _c64(3))])
                with b.if_then(b.icmp_signed("!=", field(row, 1), _c64(0))):
                    s_, idx = field(row, 0), field(row, 2)
                    dst = b.gep(J, [b.add(b.mul(b.add(b.mul(c, ldk), idx), n), r0)])
                    write_rows(adj_of(s_), dst, conv, DV.as_pointer())
            E.loop(_c64(0), n_fill, jrow, "jrow")
        elif is_loss:
            yb = b.select(full, b.gep(y, [r0]), b.gep(tail, [b.mul(nvar, cB)]))
            if weighted:
                wb = b.select(full, b.gep(w, [r0]),
                              b.gep(tail, [b.mul(b.add(nvar, _c64(1)), cB)]))
            cnt = b.select(full, cB, rem)
            cntv = splat(cnt, ir.VectorType(_I64, W))
            acc_s = b.load(sse)
            acc_a = b.load(sae)
            nonfin = ir.Constant(ir.VectorType(ir.IntType(1), W), [0] * W)
            for k in range(B // W):
                p = vload(rp, k * W)
                yv = vload(yb, k * W)
                mask = b.icmp_signed("<", b.add(lanes_idx, ir.Constant(ir.VectorType(_I64, W),
                                                                       [k * W] * W)), cntv)
                # p - p is NaN exactly when p is NaN or ±inf
                nf = b.fcmp_unordered("uno", b.fsub(p, p), ir.Constant(V, [0.0] * W))
                nonfin = b.or_(nonfin, b.and_(nf, mask))
                pd_, yd = (p, yv) if isinstance(T, ir.DoubleType) else (b.fpext(p, DV),
                                                                         b.fpext(yv, DV))
                err = b.select(mask, b.fsub(pd_, yd), zero_d)
                aerr = lower["abs"](b, err)
                sq = b.fmul(err, err)
                if weighted:
                    wv = vload(wb, k * W)
                    wd = wv if isinstance(T, ir.DoubleType) else b.fpext(wv, DV)
                    wd = b.select(mask, wd, zero_d)
                    sq = b.fmul(wd, sq)
                    aerr = b.fmul(wd, aerr)
                acc_s = b.fadd(acc_s, sq)
                acc_a = b.fadd(acc_a, aerr)
            b.store(acc_s, sse)
            b.store(acc_a, sae)
            anybad = b.icmp_unsigned("!=", b.bitcast(nonfin, ir.IntType(W)),
                                     ir.Constant(ir.IntType(W), 0))
            b.store(anybad, bad)
            if kind == "normal":
                with b.if_then(b.not_(anybad)):
                    _emit_normal_block(E, sweep_back(), fills, fill_off, n_fill, field, c, ldk,
                                       G, H, rp, yb, wb, cnt, lanes_idx, V, W, B, vload, conv)
        b.store(b.add(bi, _c64(1)), blk_i)
        b.branch(bhead)
        b.position_at_end(bend)
        if is_loss:
            inf = ir.Constant(_DBL, float("inf"))
            isbad = b.load(bad)
            s_tot = _hsum(b, b.load(sse), W)
            a_tot = _hsum(b, b.load(sae), W)
            dst = b.gep(loss, [b.mul(c, _c64(2))])
            b.store(b.select(isbad, inf, s_tot), dst)
            b.store(b.select(isbad, inf, a_tot), b.gep(dst, [_c64(1)]))
            if kind == "normal":
                # a non-finite prediction: the gradient and the normal matrix are NaN
                with b.if_then(isbad):
                    nan = ir.Constant(_DBL, float("nan"))
                    E.loop(_c64(0), ldk, lambda i: b.store(
                        nan, b.gep(G, [b.add(b.mul(c, ldk), i)])), "nang")
                    E.loop(_c64(0), b.mul(ldk, ldk), lambda i: b.store(
                        nan, b.gep(H, [b.add(b.mul(c, b.mul(ldk, ldk)), i)])), "nanh")

    E.loop(c0, c1, candidate, "cand")
    b.ret_void()


def _hsum(b: ir.IRBuilder, v: ir.Value, W: int) -> ir.Value:
    s = b.extract_element(v, ir.Constant(_I32, 0))
    for i in range(1, W):
        s = b.fadd(s, b.extract_element(v, ir.Constant(_I32, i)))
    return s


def _vec_io(b: ir.IRBuilder, V: ir.VectorType
            ) -> tuple[Callable[..., ir.Value], Callable[..., None]]:
    """Unaligned vector load/store at an element offset of a scalar pointer."""
    Vp = V.as_pointer()
    esize = 8 if isinstance(V.element, ir.DoubleType) else 4

    def vload(p: ir.Value, off: int | ir.Value) -> ir.Value:
        q = b.gep(p, [off if isinstance(off, ir.Value) else _c64(off)])
        return b.load(b.bitcast(q, Vp), align=esize)

    def vstore(v: ir.Value, p: ir.Value, off: int | ir.Value) -> None:
        q = b.gep(p, [off if isinstance(off, ir.Value) else _c64(off)])
        b.store(v, b.bitcast(q, Vp), align=esize)
    return vload, vstore


def _block_fn(mod: ir.Module, which: str, V: ir.VectorType, W: int, B: int,
              lower: dict[str, Callable[..., ir.Value]]) -> ir.Function:
    """The module's one function running a candidate's instructions on one row block
    (``interp``: the forward sweep; ``reverse``: the adjoint sweep); every entry point calls
    it, so its big opcode switch is compiled once per module."""
    name = f"t0_{which}_block"
    fn = mod.globals.get(name)
    if fn is not None:
        return fn
    Tp = V.element.as_pointer()
    I32p = _I32.as_pointer()
    args = [I32p, _I64, _I64, Tp.as_pointer()]
    if which == "reverse":
        args += [Tp, _I64]
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    E = _Emitter(fn)
    vload, vstore = _vec_io(E.b, V)
    if which == "interp":
        code, off, count, ptrs = fn.args
        _emit_interp(E, code, off, count, ptrs, V, W, B, vload, vstore, lower)
    else:
        code, off, count, ptrs, adj, nvar = fn.args
        b = E.b
        adj_of = lambda s_: b.gep(adj, [b.mul(b.sub(s_, nvar), _c64(B))])  # noqa: E731
        _emit_reverse(E, code, off, count, ptrs, adj_of, V, W, B, vload, vstore, lower)
    E.b.ret_void()
    return fn


def _emit_interp(E: _Emitter, code: ir.Value, code_off: ir.Value, n_instr: ir.Value,
                 ptrs: ir.Value, V: ir.VectorType, W: int, B: int,
                 vload: Callable[..., ir.Value], vstore: Callable[..., None],
                 lower: dict[str, Callable[..., ir.Value]]) -> None:
    """One row block of one candidate: walk its instructions, switch on the opcode, each case a
    vector loop over the block."""
    b = E.b
    fn = E.fn

    def instr(i: ir.Value) -> None:
        row = b.gep(code, [b.mul(b.add(code_off, i), _c64(4))])
        op = b.load(row)
        d = b.load(b.gep(ptrs, [b.sext(b.load(b.gep(row, [_c64(1)])), _I64)]))
        pa = b.load(b.gep(ptrs, [b.sext(b.load(b.gep(row, [_c64(2)])), _I64)]))
        bfield = b.load(b.gep(row, [_c64(3)]))
        after = fn.append_basic_block("op.end")
        sw = b.switch(op, after)

        def block_loop(compute: Callable[[int], ir.Value]) -> None:
            for k in range(B // W):
                vstore(compute(k), d, k * W)
            b.branch(after)

        for name, opc in _tape.OPCODES.items():
            arity = OPS[name].arity
            case = fn.append_basic_block(f"op.{name}")
            sw.add_case(ir.Constant(_I32, opc), case)
            b.position_at_end(case)
            fl = lower[name]
            if name == "powi":
                # the exponent is an immediate: one case per small k (repeated multiplication,
                # as tier 1 lowers it), pow beyond
                dflt = fn.append_basic_block("powi.pow")
                sw2 = b.switch(bfield, dflt)
                for kexp in range(-POWI_MAX_MULTIPLY, POWI_MAX_MULTIPLY + 1):
                    kb = fn.append_basic_block(f"powi.{kexp}")
                    sw2.add_case(ir.Constant(_I32, kexp), kb)
                    b.position_at_end(kb)
                    block_loop(lambda k, kexp=kexp: lower_powi(b, vload(pa, k * W), kexp))
                b.position_at_end(dflt)
                kv = b.sitofp(bfield, V.element)
                u = ir.Constant(V, ir.Undefined)
                kv = b.shuffle_vector(b.insert_element(u, kv, ir.Constant(_I32, 0)), u,
                                      ir.Constant(ir.VectorType(_I32, W), [0] * W))
                block_loop(lambda k: fl(b, vload(pa, k * W), kv))
            elif arity == 2:
                pb = b.load(b.gep(ptrs, [b.sext(bfield, _I64)]))
                block_loop(lambda k: fl(b, vload(pa, k * W), vload(pb, k * W)))
            else:
                block_loop(lambda k: fl(b, vload(pa, k * W)))
        b.position_at_end(after)

    E.loop(_c64(0), n_instr, instr, "instr")


# -- compile once per (dtype, machine), cache on disk ---------------------------------------------

_P = ctypes.c_void_p
_L = ctypes.c_int64
_COMMON = [_P, _P, _P, _P, _P, _L, _P, _L, _L, _L, _L, _P, _P, _P, _L, _L]
_PREDICT_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _L)
_LOSS_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _P, _P)
_JAC_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _L, _P, _P, _P, _P, _L)
_NORMAL_T = ctypes.CFUNCTYPE(None, *_COMMON, _P, _P, _P, _P, _P, _P, _P, _P, _L)


def _source_key(dtype: str, lanes: int, block: int, isa: Any) -> str:
    """Everything the interpreter's code depends on besides the machine (which the cache
    directory names): this generator, the lowering, the vector math, the opcode numbering."""
    return f"tier0|{_VERSION}|{dtype}|{lanes}|{block}|{isa}|{_jit.source_hash('tier0.py', 'tape.py')}"


class _Interpreter:
    """The loaded native interpreter of one dtype (kept for the life of the process); the
    Jacobian sweep is a second object, built or loaded on first use."""

    def __init__(self, dtype: str, block: int) -> None:
        self.isa = _vecmath.host_isa()
        lanes = _vecmath.width(dtype, self.isa)
        if block % lanes:
            block = lanes * max(1, block // lanes)
        self.dtype, self.block, self.lanes = dtype, block, lanes
        self.compiled = False
        self._lock = threading.Lock()
        self._jac: Any = None
        self.library = self._load(("predict", "loss", "loss_w"))
        a = self.library.addresses
        self.predict = _PREDICT_T(a["t0_predict"])
        self.loss = _LOSS_T(a["t0_loss"])
        self.loss_w = _LOSS_T(a["t0_loss_w"])

    def _load(self, kinds: tuple[str, ...]) -> Any:
        key = _source_key(self.dtype, self.lanes, self.block, self.isa) + "|" + ",".join(kinds)
        cache = _jit.object_cache()
        obj = cache.get(key)
        if obj is None:
            mod = emit_module(self.dtype, self.lanes, self.block, kinds)
            obj = _jit.compile_object(str(mod), opt_ir=2, opt_codegen=3)
            cache.put(key, obj)
            self.compiled = True
        _vecmath.ensure_libraries()
        return _jit.load_library([obj], [f"t0_{k}" for k in kinds])

    @property
    def jac(self) -> Any:
        with self._lock:
            if self._jac is None:
                self.jac_library = self._load(("jac", "normal"))
                self._jac = _JAC_T(self.jac_library.addresses["t0_jac"])
                self._normal = _NORMAL_T(self.jac_library.addresses["t0_normal"])
            return self._jac

    @property
    def normal(self) -> Any:
        _ = self.jac
        return self._normal


_INTERPS: dict[tuple[str, int], _Interpreter] = {}
_INTERP_LOCK = threading.Lock()


def interpreter(dtype: str = "float64", block: int | None = None) -> _Interpreter:
    """The process's interpreter for `dtype` (built or loaded from the disk cache on first use)."""
    if dtype not in BLOCK:
        raise CompileError(f"tier 0 supports float64 and float32, not {dtype!r}")
    blk = BLOCK[dtype] if block is None else int(block)
    if blk <= 0:
        raise CompileError(f"block size must be positive, got {block!r}")
    with _INTERP_LOCK:
        it = _INTERPS.get((dtype, blk))
        if it is None:
            it = _INTERPS[(dtype, blk)] = _Interpreter(dtype, blk)
        return it


def _addr(a: np.ndarray | None) -> int:
    return 0 if a is None else a.ctypes.data


class _Packed:
    """A tape's arrays kept alive, non-empty (a zero-size array may have no valid address)."""

    def __init__(self, t: _tape.Tape) -> None:
        self.tape = t
        self.code = np.ascontiguousarray(t.code if t.code.size else np.zeros((1, 4), np.int32))
        self.fills = np.ascontiguousarray(t.fills if t.fills.size else np.zeros((1, 3), np.int32))
        self.pool = np.ascontiguousarray(t.pool if t.pool.size else np.zeros(1))
        self.cands = np.ascontiguousarray(t.cands if t.cands.size else np.zeros((1, 5), np.int32))
        self.rcode = np.ascontiguousarray(t.rcode if t.rcode.size else np.zeros((1, 5), np.int32))
        self.rcands = np.ascontiguousarray(t.rcands if t.rcands.size
                                           else np.zeros((1, 3), np.int32))
        # addresses taken once (`.ctypes.data` costs microseconds per access)
        self.addrs = [a.ctypes.data for a in (self.code, self.fills, self.pool, self.cands)]
        self.raddrs = [self.rcode.ctypes.data, self.rcands.ctypes.data]


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
        self._fw = _Packed(self.tape)
        self._jw: _Packed | None = None
        self._jlock = threading.Lock()
        self._tls = threading.local()

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

    def _work(self, t: _tape.Tape, adjoints: bool = False) -> tuple[np.ndarray, list[int]]:
        """The calling thread's work buffer: slot pointers, the padded tail (X columns, y, w),
        the scratch slots and (for the Jacobian) their adjoints; 64-byte aligned parts.  Reused
        by the thread's later calls (a call never runs inside another on the same thread)."""
        cache = getattr(self._tls, "work", None)
        if cache is None:
            cache = self._tls.work = {}
        key = (id(t), adjoints)
        hit = cache.get(key)
        if hit is not None:
            return hit
        B = self.interp.block
        isz = self._np.itemsize
        sizes = [max(t.n_slots, 1) * 8, (t.n_vars + 2) * B * isz, max(t.n_scratch, 1) * B * isz]
        if adjoints:
            sizes.append(sizes[-1])
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

    def _common(self, pk: _Packed, X: np.ndarray, params: np.ndarray | None, c0: int, c1: int,
                adjoints: bool = False) -> tuple[np.ndarray, list[Any], list[int]]:
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
        buf, parts = self._work(t, adjoints)
        args = [*pk.addrs, _addr(params) if t.n_params else 0, ldp,
                X.ctypes.data, X.shape[1], X.shape[1], t.n_vars, t.n_slots, *parts[:3], c0, c1]
        return buf, args, parts

    def _check_out(self, out: np.ndarray, name: str, shape: tuple[int, ...], dtype: Any) -> None:
        if (not isinstance(out, np.ndarray) or out.dtype != dtype or not out.flags.c_contiguous
                or out.ndim != len(shape) or out.shape[0] < shape[0]
                or out.shape[1:] != shape[1:]):
            raise DataError(f"{name} must be a C-contiguous {shape} {np.dtype(dtype)} array")

    def predict_range(self, X: np.ndarray, params: np.ndarray | None, out: np.ndarray,
                      c0: int = 0, c1: int | None = None) -> None:
        """out[c, :] = predictions of candidate c for c0 <= c < c1."""
        c1 = self.n_candidates if c1 is None else c1
        buf, args, _ = self._common(self._fw, X, params, c0, c1)
        self._check_out(out, "out", (self.n_candidates, X.shape[1]), self._np)
        self.interp.predict(*args, out.ctypes.data, out.shape[1])
        del buf

    def loss_range(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                   out_loss: np.ndarray, c0: int = 0, c1: int | None = None,
                   params: np.ndarray | None = None) -> None:
        """out_loss[c] = (sum w*err^2, sum w*|err|) in float64 for c0 <= c < c1; +inf both when
        a prediction of candidate c is non-finite."""
        c1 = self.n_candidates if c1 is None else c1
        buf, args, _ = self._common(self._fw, X, params, c0, c1)
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

    def jacobian_range(self, X: np.ndarray, params: np.ndarray | None, out: np.ndarray,
                       jac: np.ndarray, c0: int = 0, c1: int | None = None) -> None:
        """Predictions ``out[c, :]`` (dtype) and parameter Jacobians ``jac[c, k, :] = d pred /
        d p_k`` (float64, shape (P, K, N) with K = params.shape[1]; rows of parameters a
        candidate does not use are 0) for c0 <= c < c1, by one reverse sweep per row block."""
        c1 = self.n_candidates if c1 is None else c1
        with self._jlock:
            if self._jw is None:
                self._jw = _Packed(_tape.pack(self.exprs, jacobian=True))
        pk = self._jw
        buf, args, parts = self._common(pk, X, params, c0, c1, adjoints=True)
        n = X.shape[1]
        K = params.shape[1] if isinstance(params, np.ndarray) and params.ndim == 2 else 0
        self._check_out(out, "out", (self.n_candidates, n), self._np)
        self._check_out(jac, "jac", (self.n_candidates, K, n), np.float64)
        jac[c0:c1] = 0.0
        self.interp.jac(*args, out.ctypes.data, n, *pk.raddrs, parts[3],
                        jac.ctypes.data if jac.size else 0, K)
        del buf

    def normal_range(self, X: np.ndarray, y: np.ndarray, w: np.ndarray | None,
                     params: np.ndarray | None, out_loss: np.ndarray, g: np.ndarray,
                     H: np.ndarray, c0: int = 0, c1: int | None = None) -> None:
        """The normal equations of least squares for c0 <= c < c1, in float64:
        ``out_loss[c] = (sum w r^2, sum w |r|)``, ``g[c] = Jᵀ W r`` (P, K) and ``H[c] = Jᵀ W J``
        (P, K, K), r = pred - y, J = d pred / d params (K = params.shape[1]).  A non-finite
        prediction makes out_loss +inf and g, H NaN for that candidate (its remaining blocks
        skipped)."""
        c1 = self.n_candidates if c1 is None else c1
        with self._jlock:
            if self._jw is None:
                self._jw = _Packed(_tape.pack(self.exprs, jacobian=True))
        pk = self._jw
        buf, args, parts = self._common(pk, X, params, c0, c1, adjoints=True)
        n = X.shape[1]
        K = params.shape[1] if isinstance(params, np.ndarray) and params.ndim == 2 else 0
        self._check_out(y, "y", (n,), self._np)
        if w is None:
            w = np.ones(n, dtype=self._np)
        self._check_out(w, "w", (n,), self._np)
        self._check_out(out_loss, "out_loss", (self.n_candidates, 2), np.float64)
        self._check_out(g, "g", (self.n_candidates, K), np.float64)
        self._check_out(H, "H", (self.n_candidates, K, K), np.float64)
        g[c0:c1] = 0.0
        H[c0:c1] = 0.0
        spare = np.zeros(1)
        self.interp.normal(*args, y.ctypes.data, w.ctypes.data, out_loss.ctypes.data,
                           *pk.raddrs, parts[3],
                           g.ctypes.data if g.size else spare.ctypes.data,
                           H.ctypes.data if H.size else spare.ctypes.data, K)
        del buf


def _emit_normal_block(E: _Emitter, adj_of: Callable[[ir.Value], ir.Value], fills: ir.Value,
                       fill_off: ir.Value, n_fill: ir.Value, field: Callable[..., ir.Value],
                       c: ir.Value, ldk: ir.Value, G: ir.Value, H: ir.Value, rp: ir.Value,
                       yb: ir.Value, wb: ir.Value, cnt: ir.Value, lanes_idx: ir.Value,
                       V: ir.VectorType, W: int, B: int, vload: Callable[..., ir.Value],
                       conv: Callable[[ir.Value], ir.Value]) -> None:
    """One row block's share of g = Jᵀ W r and H = Jᵀ W J (float64), the Jacobian columns being
    the adjoints of the candidate's parameter slots; padded rows are masked out."""
    b = E.b
    DV = ir.VectorType(_DBL, W)
    zero_d = ir.Constant(DV, [0.0] * W)
    cntv = b.insert_element(ir.Constant(ir.VectorType(_I64, W), ir.Undefined), cnt,
                            ir.Constant(_I32, 0))
    cntv = b.shuffle_vector(cntv, ir.Constant(ir.VectorType(_I64, W), ir.Undefined),
                            ir.Constant(ir.VectorType(_I32, W), [0] * W))
    masks = [b.icmp_signed("<", b.add(lanes_idx, ir.Constant(ir.VectorType(_I64, W),
                                                             [k * W] * W)), cntv)
             for k in range(B // W)]
    kk = b.mul(ldk, ldk)

    def pslot(j: ir.Value) -> tuple[ir.Value, ir.Value, ir.Value]:
        row = b.gep(fills, [b.mul(b.add(fill_off, j), _c64(3))])
        return (b.icmp_signed("!=", field(row, 1), _c64(0)), field(row, 0), field(row, 2))

    def outer(j1: ir.Value) -> None:
        is_p, s1, i1 = pslot(j1)
        with b.if_then(is_p):
            a1 = adj_of(s1)
            acc = zero_d
            for k in range(B // W):
                # w * (pred - y) * d pred / d p_i1 on the block's valid rows
                r = b.fsub(conv(vload(rp, k * W)), conv(vload(yb, k * W)))
                t = b.fmul(b.fmul(conv(vload(wb, k * W)), r), conv(vload(a1, k * W)))
                acc = b.fadd(acc, b.select(masks[k], t, zero_d))
            gp = b.gep(G, [b.add(b.mul(c, ldk), i1)])
            b.store(b.fadd(b.load(gp), _hsum(b, acc, W)), gp)

            def inner(j2: ir.Value) -> None:
                is_q, s2, i2 = pslot(j2)
                with b.if_then(is_q):
                    a2 = adj_of(s2)
                    acc2 = zero_d
                    for k in range(B // W):
                        t = b.fmul(b.fmul(conv(vload(wb, k * W)), conv(vload(a1, k * W))),
                                   conv(vload(a2, k * W)))
                        acc2 = b.fadd(acc2, b.select(masks[k], t, zero_d))
                    h = _hsum(b, acc2, W)
                    hp = b.gep(H, [b.add(b.mul(c, kk), b.add(b.mul(i1, ldk), i2))])
                    b.store(b.fadd(b.load(hp), h), hp)
                    with b.if_then(b.icmp_signed("!=", i1, i2)):
                        hq = b.gep(H, [b.add(b.mul(c, kk), b.add(b.mul(i2, ldk), i1))])
                        b.store(b.fadd(b.load(hq), h), hq)
            E.loop(j1, n_fill, inner, "hcol")
    E.loop(_c64(0), n_fill, outer, "hrow")


def _deriv(op: str, i: int, k: int | None = None) -> Expr:
    """d op / d operand i from the ops table, over placeholders: var(j) is operand j, var(arity)
    the node's value (powi's exponent is the literal k)."""
    o = OPS[op]
    args = [var(j) for j in range(o.arity)]
    if k is not None:
        args[1] = const(float(k))
    return o.deriv(*args, var(o.arity))[i]


def _emit_reverse(E: _Emitter, rcode: ir.Value, r_off: ir.Value, n_rev: ir.Value,
                  ptrs: ir.Value, adj_of: Callable[[ir.Value], ir.Value], V: ir.VectorType,
                  W: int, B: int, vload: Callable[..., ir.Value], vstore: Callable[..., None],
                  lower: dict[str, Callable[..., ir.Value]]) -> None:
    """The reverse sweep of one row block: adj[operand] (+)= adj[node] * d node / d operand,
    with the local derivatives of the ops table lowered by `lower_expr`."""
    b = E.b
    fn = E.fn
    def splat_c(v: float) -> ir.Value:
        return ir.Constant(V, [float(v)] * W)

    def rinstr(i: ir.Value) -> None:
        row = b.gep(rcode, [b.mul(b.add(r_off, i), _c64(5))])
        op = b.load(row)
        dslot = b.sext(b.load(b.gep(row, [_c64(1)])), _I64)
        aslot = b.sext(b.load(b.gep(row, [_c64(2)])), _I64)
        bfield = b.load(b.gep(row, [_c64(3)]))
        flags = b.load(b.gep(row, [_c64(4)]))
        first_a = b.icmp_signed("!=", b.and_(flags, ir.Constant(_I32, 4)), ir.Constant(_I32, 0))
        first_b = b.icmp_signed("!=", b.and_(flags, ir.Constant(_I32, 8)), ir.Constant(_I32, 0))
        pd = b.load(b.gep(ptrs, [dslot]))
        pa = b.load(b.gep(ptrs, [aslot]))
        adj_d = adj_of(dslot)
        adj_a = adj_of(aslot)
        after = fn.append_basic_block("rop.end")
        sw = b.switch(op, after)

        def accumulate(target: ir.Value, first: ir.Value, off: ir.Value,
                       contrib: ir.Value) -> None:
            old = vload(target, off)
            vstore(b.select(first, contrib, b.fadd(old, contrib)), target, off)

        def sweep(derivs: list[tuple[Expr, ir.Value, ir.Value]],
                  operands: Callable[[ir.Value], list[ir.Value]]) -> None:
            # a loop over the block's vectors (not unrolled: the reverse sweep is compiled lazily
            # and its code stays small)
            def chunk(kk: ir.Value) -> None:
                off = b.mul(kk, _c64(W))
                vals = operands(off)
                bar = vload(adj_d, off)
                for tmpl, target, first in derivs:
                    def leaf(kind: str, v: Any, vals: list[ir.Value] = vals) -> ir.Value:
                        return vals[v] if kind == "var" else splat_c(v)
                    d = lower_expr(b, tmpl, leaf)
                    accumulate(target, first, off, b.fmul(bar, d))
            E.loop(_c64(0), _c64(B // W), chunk, "rchunk")
            b.branch(after)

        for name, opc in _tape.OPCODES.items():
            arity = OPS[name].arity
            case = fn.append_basic_block(f"rop.{name}")
            sw.add_case(ir.Constant(_I32, opc), case)
            b.position_at_end(case)
            if name == "powi":
                dflt = fn.append_basic_block("rpowi.pow")
                sw2 = b.switch(bfield, dflt)
                for kexp in range(-POWI_MAX_MULTIPLY, POWI_MAX_MULTIPLY + 1):
                    kb = fn.append_basic_block(f"rpowi.{kexp}")
                    sw2.add_case(ir.Constant(_I32, kexp), kb)
                    b.position_at_end(kb)
                    # placeholders: var(0) = a, var(2) = the node's value
                    sweep([(_deriv("powi", 0, kexp), adj_a, first_a)],
                          lambda o: [vload(pa, o), None, vload(pd, o)])
                b.position_at_end(dflt)
                kv = b.sitofp(bfield, V.element)
                u = ir.Constant(V, ir.Undefined)
                kv = b.shuffle_vector(b.insert_element(u, kv, ir.Constant(_I32, 0)), u,
                                      ir.Constant(ir.VectorType(_I32, W), [0] * W))
                # beyond the immediate range powi is pow with a constant exponent: same derivative
                sweep([(_deriv("pow", 0), adj_a, first_a)],
                      lambda o: [vload(pa, o), kv, vload(pd, o)])
            elif arity == 1:
                sweep([(_deriv(name, 0), adj_a, first_a)],
                      lambda o: [vload(pa, o), vload(pd, o)])
            else:
                bslot = b.sext(bfield, _I64)
                pb = b.load(b.gep(ptrs, [bslot]))
                adj_b = adj_of(bslot)
                which = b.and_(flags, ir.Constant(_I32, 3))
                only_b = fn.append_basic_block(f"rop.{name}.b")
                both = fn.append_basic_block(f"rop.{name}.ab")
                only_a = fn.append_basic_block(f"rop.{name}.a")
                sw3 = b.switch(which, only_a)
                sw3.add_case(ir.Constant(_I32, 2), only_b)
                sw3.add_case(ir.Constant(_I32, 3), both)

                def operands(o: ir.Value) -> list[ir.Value]:
                    return [vload(pa, o), vload(pb, o), vload(pd, o)]
                da = (_deriv(name, 0), adj_a, first_a)
                db = (_deriv(name, 1), adj_b, first_b)
                for blk, ds in ((only_a, [da]), (only_b, [db]), (both, [da, db])):
                    b.position_at_end(blk)
                    sweep(ds, operands)
        b.position_at_end(after)

    E.loop(_c64(0), n_rev, rinstr, "rinstr")
