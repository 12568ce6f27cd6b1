"""The row-block pieces of the tier-0 interpreters, shared by `tier0` (one code segment per
candidate) and `dag` (one shared tape): the block interpreter itself (an opcode switch, each
case a vector loop over the block), the padded tail and slot-pointer prologue, the per-block
loss accumulation and prediction store."""

from __future__ import annotations

import threading
from typing import Any, Callable, Mapping

from llvmlite import ir

from symcore.errors import CompileError
from symcore.ops import OPS, generation

from symcore.codegen import bytecode as _bytecode
from symcore.codegen.llvm.irflow import Flow
from symcore.codegen.llvm.lower import POWI_MAX_MULTIPLY, lower_powi
from symcore.codegen.llvm.values import broadcast

__all__ = ["block_fn", "emit_prologue", "emit_block_loss", "emit_block_store", "hsum",
           "vec_io"]

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()


def _c64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


def emit_block_store(E: Flow, V: ir.VectorType, W: int, B: int, rp: ir.Value,
                     orow: ir.Value, full: ir.Value, rem: ir.Value) -> None:
    """Store one row block of values `rp` at `orow`: a full block as vectors, the tail's valid
    rows one by one (nothing past N)."""
    b = E.b
    vload, vstore = vec_io(b, V)
    with b.if_else(full) as (then, other):
        with then:
            for k in range(B // W):
                vstore(vload(rp, k * W), orow, k * W)
        with other:
            E.for_(_c64(0), rem, lambda r: b.store(
                b.load(b.gep(rp, [r])), b.gep(orow, [r])), name="rowtail")


def emit_block_loss(b: ir.IRBuilder, T: ir.Type, V: ir.VectorType, W: int, B: int,
                    lower: dict[str, Callable[..., ir.Value]], rp: ir.Value, yb: ir.Value,
                    wb: ir.Value | None, cntv: ir.Value, acc_s: ir.Value, acc_a: ir.Value
                    ) -> tuple[ir.Value, ir.Value, ir.Value]:
    """One row block's squared and absolute errors of values `rp` against `yb` (weights `wb`)
    added lane-wise to the float64 accumulators: lane j sums rows j, j+W, j+2W, ... in order,
    whatever the block size.  Rows at or past `cntv` (the valid rows) add 0.  Returns the new
    accumulators and whether a valid row is non-finite."""
    DV = ir.VectorType(_DBL, W)
    zero_d = ir.Constant(DV, [0.0] * W)
    vload, _ = vec_io(b, V)
    lanes_idx = ir.Constant(ir.VectorType(_I64, W), [i for i in range(W)])
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
        if wb is not None:
            wv = vload(wb, k * W)
            wd = wv if isinstance(T, ir.DoubleType) else b.fpext(wv, DV)
            wd = b.select(mask, wd, zero_d)
            sq = b.fmul(wd, sq)
            aerr = b.fmul(wd, aerr)
        acc_s = b.fadd(acc_s, sq)
        acc_a = b.fadd(acc_a, aerr)
    anybad = b.icmp_unsigned("!=", b.bitcast(nonfin, ir.IntType(W)),
                             ir.Constant(ir.IntType(W), 0))
    return acc_s, acc_a, anybad


def emit_prologue(E: Flow, T: ir.Type, B: int, X: ir.Value, ldx: ir.Value, n: ir.Value,
                  nvar: ir.Value, nslot: ir.Value, ptrs: ir.Value, tail: ir.Value,
                  slots: ir.Value, y: ir.Value | None, w: ir.Value | None
                  ) -> tuple[ir.Value, ir.Value, ir.Value]:
    """Row blocks (full ones, the tail's rows, the count), the padded copy of the tail rows
    (X columns, then y and w when given) and the scratch slot pointers (fixed for the call)."""
    b = E.b
    cB = _c64(B)
    nfull = b.sdiv(n, cB, name="nfull")
    rem = b.sub(n, b.mul(nfull, cB), name="rem")
    nblk = b.add(nfull, b.zext(b.icmp_signed(">", rem, _c64(0)), _I64), name="nblk")
    zero_t = ir.Constant(T, 0.0)

    def copy_tail(src: ir.Value, dst: ir.Value) -> None:
        def row(r: ir.Value) -> None:
            inside = b.icmp_signed("<", r, rem)
            with b.if_else(inside) as (then, other):
                with then:
                    v = b.load(b.gep(src, [b.add(b.mul(nfull, cB), r)]))
                    b.store(v, b.gep(dst, [r]))
                with other:
                    b.store(zero_t, b.gep(dst, [r]))
        E.for_(_c64(0), cB, row, name="tailrow")

    with b.if_then(b.icmp_signed(">", rem, _c64(0))):
        E.for_(_c64(0), nvar, lambda v: copy_tail(b.gep(X, [b.mul(v, ldx)]),
                                                  b.gep(tail, [b.mul(v, cB)])), name="tailcol")
        if y is not None:
            copy_tail(y, b.gep(tail, [b.mul(nvar, cB)]))
        if w is not None:
            copy_tail(w, b.gep(tail, [b.mul(b.add(nvar, _c64(1)), cB)]))

    E.for_(nvar, nslot, lambda s: b.store(b.gep(slots, [b.mul(b.sub(s, nvar), cB)]),
                                          b.gep(ptrs, [s])), name="slotptr")
    return nfull, rem, nblk


def hsum(b: ir.IRBuilder, v: ir.Value, W: int) -> ir.Value:
    s = b.extract_element(v, ir.Constant(_I32, 0))
    for i in range(1, W):
        s = b.fadd(s, b.extract_element(v, ir.Constant(_I32, i)))
    return s


def vec_io(b: ir.IRBuilder, V: ir.VectorType
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


def block_fn(mod: ir.Module, V: ir.VectorType, W: int, B: int,
              lower: dict[str, Callable[..., ir.Value]], dag: bool = False) -> ir.Function:
    """The module's one function running a candidate's instructions on one row block; every
    entry point calls it, so its big opcode switch is compiled once per module.

    `dag`: the shared-tape variant ``i64 t0_dag_block(code, off, count, ptrs, pool)``, which
    also runs OP_CONST (a pool constant broadcast into a slot) and returns the position of the
    first OP_ROOT at or after `off` (`off + count` when there is none)."""
    name = "t0_dag_block" if dag else "t0_interp_block"
    fn = mod.globals.get(name)
    if fn is not None:
        return fn
    Tp = V.element.as_pointer()
    args = [_I32.as_pointer(), _I64, _I64, Tp.as_pointer()]
    if dag:
        args.append(_DBL.as_pointer())
    fn = ir.Function(mod, ir.FunctionType(_I64 if dag else ir.VoidType(), args), name=name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    fn.attributes.add("noinline")
    E = Flow(fn)
    vload, vstore = vec_io(E.b, V)
    code, off, count, ptrs = fn.args[:4]
    _emit_interp(E, code, off, count, ptrs, V, W, B, vload, vstore, lower,
                 pool=fn.args[4] if dag else None)
    if dag:
        E.b.ret(E.b.add(off, count))
    else:
        E.b.ret_void()
    return fn


def _emit_interp(E: Flow, code: ir.Value, code_off: ir.Value, n_instr: ir.Value,
                 ptrs: ir.Value, V: ir.VectorType, W: int, B: int,
                 vload: Callable[..., ir.Value], vstore: Callable[..., None],
                 lower: dict[str, Callable[..., ir.Value]], pool: ir.Value | None = None
                 ) -> None:
    """One row block of one candidate: walk its instructions, switch on the opcode, each case a
    vector loop over the block (with `pool`: the shared tape's OP_CONST and OP_ROOT too)."""
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

        ok = _bytecode.runnable()
        for name, opc in _bytecode.opcodes().items():
            if name not in ok:
                continue
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
                kv = broadcast(b, V, kv)
                block_loop(lambda k: fl(b, vload(pa, k * W), kv))
            elif arity == 2:
                pb = b.load(b.gep(ptrs, [b.sext(bfield, _I64)]))
                block_loop(lambda k: fl(b, vload(pa, k * W), vload(pb, k * W)))
            else:
                block_loop(lambda k: fl(b, vload(pa, k * W)))
        if pool is not None:
            case = fn.append_basic_block("op.const")
            sw.add_case(ir.Constant(_I32, _bytecode.OP_CONST), case)
            b.position_at_end(case)
            val = b.load(b.gep(pool, [b.sext(bfield, _I64)]))
            if not isinstance(V.element, ir.DoubleType):
                val = b.fptrunc(val, V.element)
            vv = broadcast(b, V, val)
            block_loop(lambda k: vv)
            case = fn.append_basic_block("op.root")
            sw.add_case(ir.Constant(_I32, _bytecode.OP_ROOT), case)
            b.position_at_end(case)
            b.ret(b.add(code_off, i))
        b.position_at_end(after)

    E.for_(_c64(0), n_instr, instr, name="instr")


_REGISTRY_LOCK = threading.RLock()  # re-entrant: one interpreter kind may build on another


def process_interpreter(registry: dict[tuple[str, int, int], Any],
                        factory: Callable[[str, int], Any], blocks: Mapping[str, int], dtype: str, block: int | None) -> Any:
    """The process's interpreter of one kind for (dtype, block size, ops generation) from
    `registry`, built (or loaded from the disk cache) by `factory(dtype, block)` on first use:
    the opcode switch bakes the op set in, so a registered op makes a new one."""
    if dtype not in blocks:
        raise CompileError(f"tier 0 supports float64 and float32, not {dtype!r}")
    blk = blocks[dtype] if block is None else int(block)
    if blk <= 0:
        raise CompileError(f"block size must be positive, got {block!r}")
    with _REGISTRY_LOCK:
        key = (dtype, blk, generation())
        it = registry.get(key)
        if it is None:
            it = registry[key] = factory(dtype, blk)
        return it
