"""The native half of packing prefix programs into a shared tape (`prefix.pack_shared`): one
pass hash-conses every subtree of the population (a node is its opcode and its operands'
node numbers, a constant its bit pattern), a second emits each distinct node once with a
slot reused as soon as its last use has read it.  Generated with llvmlite, compiled once and
cached on disk; the caller checks its inputs and the tape it returns (`dag.from_arrays`).

``px_pack(tok, val, starts, P, arity, nv, hk, hv, hmask, stack, nop, na, nb, uses, slot_of,
stream, roots, freel, code, pool, res)``: tok[j] is 0 (column val[j]), 1 (constant val[j])
or opcode + 2; arity[tok] the operator's arity; hk/hv an empty open-addressing table
(hv = -1) of hmask + 1 entries; res <- (n_instr, n_pool, n_slots, bad program or -1).
"""

from __future__ import annotations

import ctypes
import threading
from typing import Any

from llvmlite import ir

from symcore.codegen import bytecode as _bytecode
from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit
from symcore.codegen.llvm.irflow import Flow

__all__ = ["packer", "emit_module"]

_VERSION = "px-1"
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()
#: node kind of a constant in `nop` (operators keep their opcode)
_NODE_CONST = -1


def _i64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


def _i32(v: int) -> ir.Constant:
    return ir.Constant(_I32, v)


def emit_module() -> ir.Module:
    mod = ir.Module(name="symcore_prefix_pack")
    I32p, I64p, Dp = _I32.as_pointer(), _I64.as_pointer(), _DBL.as_pointer()
    args = [I32p, Dp, I64p, _I64, I32p, _I64, I64p, I32p, _I64, I32p, I32p, I32p, I32p, I32p,
            I32p, I32p, I32p, I32p, I32p, Dp, I64p]
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), args), name="px_pack")
    fn.attributes.add("nounwind")
    (tok, val, starts, P, arity, nv, hk, hv, hmask, stack, nop, na, nb, uses, slot_of, stream,
     roots, freel, code, pool, res) = fn.args
    E = Flow(fn)
    b = E.b

    def ld(p: ir.Value, i: ir.Value) -> ir.Value:
        return b.load(b.gep(p, [i]))

    def st(v: ir.Value, p: ir.Value, i: ir.Value) -> None:
        b.store(v, b.gep(p, [i]))

    def sx(v: ir.Value) -> ir.Value:
        return b.sext(v, _I64)

    nv32 = b.trunc(nv, _I32)
    nn = E.local(_i64(0), "nn")          # nodes made
    ns = E.local(_i64(0), "ns")          # stream entries
    st(_i64(-1), res, _i64(3))

    def fail(c: ir.Value) -> None:
        st(c, res, _i64(3))
        E.ret()

    def use(x: ir.Value) -> None:        # one more reader of node id x (columns have none)
        def inc() -> None:
            k = b.sub(sx(x), nv)
            st(b.add(ld(uses, k), _i32(1)), uses, k)
        E.if_(b.icmp_signed(">=", x, nv32), inc)

    def intern(k1: ir.Value, k2: ir.Value, kind: ir.Value, a: ir.Value, bb: ir.Value,
               v: ir.Value, binary: ir.Value, is_op: ir.Value) -> ir.Value:
        """The node id of key (k1, k2), made (and its operands' uses counted) if new."""
        h0 = b.xor(b.mul(k2, _i64(-7046029254386353131)), b.mul(k1, _i64(-4417276706812531889)))
        h0 = b.xor(h0, b.lshr(h0, _i64(29)))
        h = E.local(b.and_(h0, hmask), "h")
        found = E.local(_i32(-1), "found")

        def probe(brk: Any) -> None:
            i = b.load(h)
            idv = ld(hv, i)
            E.if_(b.icmp_signed("<", idv, _i32(0)), brk)
            same = b.and_(b.icmp_signed("==", ld(hk, b.mul(i, _i64(2))), k1),
                          b.icmp_signed("==", ld(hk, b.add(b.mul(i, _i64(2)), _i64(1))), k2))

            def hit() -> None:
                b.store(idv, found)
            E.if_(same, lambda: (hit(), brk()))
            b.store(b.and_(b.add(i, _i64(1)), hmask), h)
        E.loop(probe)

        def make() -> None:
            k = b.load(nn)
            i = b.load(h)
            idn = b.trunc(b.add(k, nv), _I32)
            st(idn, hv, i)
            st(k1, hk, b.mul(i, _i64(2)))
            st(k2, hk, b.add(b.mul(i, _i64(2)), _i64(1)))
            st(kind, nop, k)
            st(a, na, k)
            st(bb, nb, k)
            st(_i32(0), uses, k)
            # constants keep their value in `pool` at their node number until emission
            E.if_(b.not_(is_op), lambda: st(v, pool, k))
            E.if_(is_op, lambda: use(a))
            E.if_(binary, lambda: use(bb))
            s = b.load(ns)
            st(b.trunc(k, _I32), stream, s)
            b.store(b.add(s, _i64(1)), ns)
            b.store(b.add(k, _i64(1)), nn)
            b.store(idn, found)
        E.if_(b.icmp_signed("<", b.load(found), _i32(0)), make)
        return b.load(found)

    # -- pass 1: node ids, uses, the emission stream ------------------------------------------
    def program(c: ir.Value) -> None:
        lo = ld(starts, c)
        hi = ld(starts, b.add(c, _i64(1)))
        sp = E.local(_i64(0), "sp")

        def token(jj: ir.Value) -> None:
            j = b.sub(b.sub(hi, jj), _i64(1))   # hi-1 down to lo
            t = ld(tok, j)
            v = ld(val, j)
            out = E.local(_i32(0), "id")

            def column() -> None:
                b.store(b.fptosi(v, _I32), out)

            def constant() -> None:
                b.store(intern(_i64(-1), b.bitcast(v, _I64), _i32(_NODE_CONST), _i32(0),
                               _i32(0), v, ir.Constant(ir.IntType(1), 0),
                               ir.Constant(ir.IntType(1), 0)), out)

            def operator() -> None:
                ar = sx(ld(arity, sx(t)))
                E.if_(b.icmp_signed("<", b.load(sp), ar), lambda: fail(c))
                s1 = b.sub(b.load(sp), _i64(1))
                a = ld(stack, s1)
                binary = b.icmp_signed("==", ar, _i64(2))
                s2 = b.select(binary, b.sub(s1, _i64(1)), s1)
                bb = b.select(binary, ld(stack, b.select(binary, s2, s1)), _i32(-1))
                b.store(s2, sp)
                k2 = b.or_(b.shl(b.zext(a, _I64), _i64(32)), b.zext(bb, _I64))
                b.store(intern(sx(t), k2, b.sub(t, _i32(2)), a, bb, v, binary,
                               ir.Constant(ir.IntType(1), 1)), out)

            E.if_(b.icmp_signed("==", t, _i32(0)), column,
                  lambda: E.if_(b.icmp_signed("==", t, _i32(1)), constant, operator))
            s = b.load(sp)
            st(b.load(out), stack, s)
            b.store(b.add(s, _i64(1)), sp)
        E.for_(_i64(0), b.sub(hi, lo), token, name="tok")
        E.if_(b.icmp_signed("!=", b.load(sp), _i64(1)), lambda: fail(c))
        r = ld(stack, _i64(0))
        st(r, roots, c)
        use(r)
        s = b.load(ns)
        st(b.trunc(b.sub(_i64(-1), c), _I32), stream, s)
        b.store(b.add(s, _i64(1)), ns)
    E.for_(_i64(0), P, program, name="prog")

    # -- pass 2: emission in stream order, slots freed after their last use --------------------
    nfree = E.local(_i64(0), "nfree")
    nslot = E.local(nv32, "nslot")
    npool = E.local(_i64(0), "npool")

    def slot(x: ir.Value) -> ir.Value:
        col = b.icmp_signed("<", x, nv32)           # a column is its own slot
        k = b.sub(sx(b.select(col, nv32, x)), nv)
        return b.select(col, x, ld(slot_of, k))

    def release(x: ir.Value) -> None:
        def dec() -> None:
            k = b.sub(sx(x), nv)
            u = b.sub(ld(uses, k), _i32(1))
            st(u, uses, k)

            def free() -> None:
                f = b.load(nfree)
                st(ld(slot_of, k), freel, f)
                b.store(b.add(f, _i64(1)), nfree)
            E.if_(b.icmp_signed("==", u, _i32(0)), free)
        E.if_(b.icmp_signed(">=", x, nv32), dec)

    def alloc() -> ir.Value:
        d = E.local(_i32(0), "d")

        def reuse() -> None:
            f = b.sub(b.load(nfree), _i64(1))
            b.store(f, nfree)
            b.store(ld(freel, f), d)

        def fresh() -> None:
            s = b.load(nslot)
            b.store(s, d)
            b.store(b.add(s, _i32(1)), nslot)
        E.if_(b.icmp_signed(">", b.load(nfree), _i64(0)), reuse, fresh)
        return b.load(d)

    def row(i: ir.Value, f0: ir.Value, f1: ir.Value, f2: ir.Value, f3: ir.Value) -> None:
        base = b.mul(i, _i64(4))
        for k, f in enumerate((f0, f1, f2, f3)):
            st(f, code, b.add(base, _i64(k)))

    def entry(i: ir.Value) -> None:
        e = ld(stream, i)

        def node() -> None:
            k = sx(e)
            kind = ld(nop, k)

            def const() -> None:
                d = alloc()
                p = b.load(npool)
                st(ld(pool, k), pool, p)       # p <= k: compacts the values in place
                b.store(b.add(p, _i64(1)), npool)
                st(d, slot_of, k)
                row(i, _i32(_bytecode.OP_CONST), d, _i32(0), b.trunc(p, _I32))

            def op() -> None:
                a = ld(na, k)
                bb = ld(nb, k)
                sa = slot(a)
                binary = b.icmp_signed(">=", bb, _i32(0))
                sb = b.select(binary, slot(b.select(binary, bb, _i32(0))), _i32(0))
                release(a)
                E.if_(binary, lambda: release(bb))
                d = alloc()
                st(d, slot_of, k)
                row(i, kind, d, sa, sb)
            E.if_(b.icmp_signed("==", kind, _i32(_NODE_CONST)), const, op)

        def root() -> None:
            c = b.sub(_i32(-1), e)
            r = ld(roots, sx(c))
            row(i, _i32(_bytecode.OP_ROOT), _i32(0), slot(r), c)
            release(r)
        E.if_(b.icmp_signed(">=", e, _i32(0)), node, root)
    E.for_(_i64(0), b.load(ns), entry, name="emit")
    st(b.load(ns), res, _i64(0))
    st(b.load(npool), res, _i64(1))
    st(sx(b.load(nslot)), res, _i64(2))
    b.ret_void()
    return mod


_P = ctypes.c_void_p
_L = ctypes.c_int64
_PACK_T = ctypes.CFUNCTYPE(None, _P, _P, _P, _L, _P, _L, _P, _P, _L, _P, _P, _P, _P, _P, _P, _P,
                           _P, _P, _P, _P, _P)
_LOCK = threading.Lock()
_LOADED: list[Any] = []


def packer() -> Any:
    """The process's native packer (built, or loaded from the disk cache, on first use)."""
    with _LOCK:
        if not _LOADED:
            key = f"prefix-pack|{_VERSION}|{_jit.source_hash('eval/prefix_native.py', 'bytecode.py')}"
            obj = _cache.get_or_compile(key, lambda: _jit.compile_object(
                str(emit_module()), opt_ir=2, opt_codegen=2))
            lib = _jit.load_library([obj], ["px_pack"])
            _LOADED.append((lib, _PACK_T(lib.addresses["px_pack"])))
        return _LOADED[0][1]
