"""The native fitness cache of prefix programs (`Session.score_prefix`): programs keyed by the
addresses of their token objects, looked up in native code that reads the CPython list/tuple
objects directly, so a program seen before costs no Python work per token.

A table entry holds (a strong reference to) the token tuple it was scored for, so while it
lives its token addresses name those very objects: address equality is the identity the
cache requires for a hit (1, 1.0, True, 0.0 and -0.0 are other objects, hence other keys).
Reading object memory is guarded: CPython only, GIL build only, the list/tuple layout checked
at first use on known objects and then by running the lookup on them; the native functions are
called with the GIL held (ctypes.PYFUNCTYPE: no thread mutates a list during a read), check
the type of every container (exactly list or tuple; anything else is left to the caller) and
read only the tuples the table itself holds.  Generated with llvmlite, compiled once, cached on
disk like the tape packer (prefix_native.py).
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig
import threading
from typing import Any, Callable, Sequence

import numpy as np
from llvmlite import ir

from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit
from symcore.codegen.llvm.irflow import Flow

__all__ = ["available", "PrefixCache", "emit_module"]

_VERSION = "pc-3"
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()
_I8p = ir.IntType(8).as_pointer()
#: CPython (64-bit, GIL build) object layout: ob_type, ob_size, a list's ob_item pointer,
#: a tuple's inline items (checked by `_layout_ok` before any native read)
_OB_TYPE, _OB_SIZE, _LIST_ITEMS, _TUPLE_ITEMS = 8, 16, 24, 24
#: table cells: -1 empty, -2 a removed entry, else a slot number
_EMPTY, _GONE = -1, -2
_MIN_TABLE = 1024
_K1 = -7046029254386353131           # 0x9E3779B97F4A7C15
_K2 = -4417276706812531889           # 0xC2B2AE3D27D4EB4F


def _i64(v: int) -> ir.Constant:
    return ir.Constant(_I64, v)


def _i32(v: int) -> ir.Constant:
    return ir.Constant(_I32, v)


class _Gen:
    """Helpers shared by the generated functions (one `Flow` each)."""

    def __init__(self, fn: ir.Function) -> None:
        self.E = Flow(fn)
        self.b = self.E.b

    def ld(self, p: ir.Value, i: ir.Value) -> ir.Value:
        return self.b.load(self.b.gep(p, [i]))

    def st(self, v: ir.Value, p: ir.Value, i: ir.Value) -> None:
        self.b.store(v, self.b.gep(p, [i]))

    def prefetch(self, addr: ir.Value) -> None:
        """A hint to fetch the cache line of (i64) address addr for reading (never faults)."""
        f = self.b.module.globals.get("llvm.prefetch.p0i8")
        if f is None:
            f = ir.Function(self.b.module, ir.FunctionType(ir.VoidType(), [
                _I8p, _I32, _I32, _I32]), name="llvm.prefetch.p0i8")
        self.b.call(f, [self.b.inttoptr(addr, _I8p), _i32(0), _i32(3), _i32(1)])

    def word(self, addr: ir.Value, off: int = 0) -> ir.Value:
        """The 8-byte word at address addr + off (an i64 address)."""
        b = self.b
        return b.load(b.inttoptr(b.add(addr, _i64(off)), _I64.as_pointer()))

    def hash(self, items: ir.Value, n: ir.Value) -> ir.Value:
        """64-bit hash of n token addresses from address `items` (order-sensitive)."""
        b, E = self.b, self.E
        h = E.local(b.mul(b.add(n, _i64(1)), _i64(_K2)), "h")

        def tok(k: ir.Value) -> None:
            a = self.word(b.add(items, b.mul(k, _i64(8))))
            b.store(b.mul(b.xor(b.load(h), a), _i64(_K1)), h)
        E.for_(_i64(0), n, tok, name="hash")
        x = b.load(h)
        x = b.xor(x, b.lshr(x, _i64(32)))
        x = b.mul(x, _i64(_K2))
        return b.xor(x, b.lshr(x, _i64(29)))

    def same(self, a: ir.Value, c: ir.Value, n: ir.Value) -> ir.Value:
        """i1: the n words from address a equal those from address c."""
        b, E = self.b, self.E
        eq = E.local(ir.Constant(ir.IntType(1), 1), "eq")
        k = E.local(_i64(0), "k")

        def body(brk: Callable[[], None]) -> None:
            i = b.load(k)
            E.if_(b.icmp_signed(">=", i, n), brk)
            off = b.mul(i, _i64(8))
            differ = b.icmp_signed("!=", self.word(b.add(a, off)), self.word(b.add(c, off)))

            def no() -> None:
                b.store(ir.Constant(ir.IntType(1), 0), eq)
                brk()
            E.if_(differ, no)
            b.store(b.add(i, _i64(1)), k)
        E.loop(body)
        return b.load(eq)

    def held_match(self, tslot: ir.Value, shash: ir.Value, stup: ir.Value, s: ir.Value,
                   h: ir.Value, items: ir.Value, n: ir.Value) -> ir.Value:
        """i1: slot s (>= 0) holds a tuple of the n addresses at `items` (hash h)."""
        b, E = self.b, self.E
        ok = E.local(ir.Constant(ir.IntType(1), 0), "ok")
        s64 = b.sext(s, _I64)

        def cand() -> None:
            tup = self.ld(stup, s64)

            def held() -> None:
                def size_ok() -> None:
                    b.store(self.same(items, b.add(tup, _i64(_TUPLE_ITEMS)), n), ok)
                E.if_(b.icmp_signed("==", self.word(tup, _OB_SIZE), n), size_ok)
            E.if_(b.icmp_signed("!=", tup, _i64(0)), held)
        E.if_(b.icmp_signed("==", self.ld(shash, s64), h), cand)
        return b.load(ok)


def _lookup(mod: ir.Module) -> None:
    I32p, I64p, Dp = _I32.as_pointer(), _I64.as_pointer(), _DBL.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [
        _I8p, _I64, _I64, _I64, I32p, _I64, I64p, I64p, Dp, Dp, I32p, I32p, I32p, I64p, I64p,
        I64p, I64p, I64p, I64p, I32p, _I64, I64p]), name="pc_lookup")
    fn.attributes.add("nounwind")
    (progs, P, list_t, tuple_t, tslot, hmask, shash, stup, sval, out, hit, grp, first, gitem,
     gsize, ghash, ph, pit, pn, ltab, lmask, res) = fn.args
    G = _Gen(fn)
    E, b = G.E, G.b
    _store_all(G, res, [-1, 0, 0])
    outer = b.ptrtoint(progs, _I64)

    def fail(code: ir.Value) -> None:
        G.st(code, res, _i64(0))
        E.ret()

    def items_of(obj: ir.Value, t: ir.Value) -> ir.Value:
        """The item array's address of a list or tuple `obj` of type t (checked by caller)."""
        at = E.local(b.add(obj, _i64(_TUPLE_ITEMS)), "items")
        E.if_(b.icmp_signed("==", t, list_t),
              lambda: b.store(G.word(obj, _LIST_ITEMS), at))
        return b.load(at)

    ot = G.word(outer, _OB_TYPE)
    E.if_(b.and_(b.icmp_signed("!=", ot, list_t), b.icmp_signed("!=", ot, tuple_t)),
          lambda: fail(_i64(-2)))
    E.if_(b.icmp_signed("!=", G.word(outer, _OB_SIZE), P), lambda: fail(_i64(-2)))
    oitems = items_of(outer, ot)
    nh = E.local(_i64(0), "nh")
    m = E.local(_i64(0), "m")

    def ahead(i: ir.Value, d: int, then: Callable[[ir.Value], None]) -> None:
        j = b.add(i, _i64(d))
        E.if_(b.icmp_signed("<", j, P), lambda: then(j))

    # pass 1, the programs: token addresses hashed (memory the table pass reads again is in
    # cache then); each program's object and item array are fetched ahead of use
    def prefetch_object(j: ir.Value) -> None:
        G.prefetch(G.word(b.add(oitems, b.mul(j, _i64(8)))))

    def prefetch_items(j: ir.Value) -> None:
        obj = G.word(b.add(oitems, b.mul(j, _i64(8))))

        def lst() -> None:               # a list's item array (a tuple's is inline)
            it = G.word(obj, _LIST_ITEMS)
            G.prefetch(it)
            G.prefetch(b.add(it, _i64(64)))
        E.if_(b.icmp_signed("==", G.word(obj, _OB_TYPE), list_t), lst)

    def hashing(i: ir.Value) -> None:
        ahead(i, 32, prefetch_object)
        ahead(i, 16, prefetch_items)
        obj = G.word(b.add(oitems, b.mul(i, _i64(8))))
        t = G.word(obj, _OB_TYPE)
        E.if_(b.and_(b.icmp_signed("!=", t, list_t), b.icmp_signed("!=", t, tuple_t)),
              lambda: fail(i))
        n = G.word(obj, _OB_SIZE)
        items = items_of(obj, t)
        G.st(G.hash(items, n), ph, i)
        G.st(items, pit, i)
        G.st(n, pn, i)
    E.for_(_i64(0), P, hashing, name="hashing")

    # pass 2, the table: a program's first cell, then its slot's entry, then the tuple held
    # there are fetched ahead of use
    def cell(j: ir.Value) -> ir.Value:
        return b.gep(tslot, [b.and_(G.ld(ph, j), hmask)])

    def prefetch_cell(j: ir.Value) -> None:
        G.prefetch(b.ptrtoint(cell(j), _I64))

    def prefetch_entry(j: ir.Value) -> None:
        c = b.sext(b.load(cell(j)), _I64)

        def live() -> None:
            for arr in (shash, stup, sval):
                G.prefetch(b.ptrtoint(b.gep(arr, [c]), _I64))
        E.if_(b.icmp_signed(">=", c, _i64(0)), live)

    def prefetch_tuple(j: ir.Value) -> None:
        c = b.sext(b.load(cell(j)), _I64)

        def live() -> None:
            tup = G.ld(stup, c)
            G.prefetch(tup)
            G.prefetch(b.add(tup, _i64(64)))
        E.if_(b.icmp_signed(">=", c, _i64(0)), live)

    def program(i: ir.Value) -> None:
        ahead(i, 16, prefetch_cell)
        ahead(i, 8, prefetch_entry)
        ahead(i, 4, prefetch_tuple)
        h = G.ld(ph, i)
        items = G.ld(pit, i)
        n = G.ld(pn, i)
        pos = E.local(b.and_(h, hmask), "pos")
        found = E.local(_i32(-1), "found")

        def probe(brk: Callable[[], None]) -> None:
            s = G.ld(tslot, b.load(pos))
            E.if_(b.icmp_signed("==", s, _i32(_EMPTY)), brk)

            def live() -> None:
                def yes() -> None:
                    b.store(s, found)
                    brk()
                E.if_(G.held_match(tslot, shash, stup, s, h, items, n), yes)
            E.if_(b.icmp_signed(">=", s, _i32(0)), live)
            b.store(b.and_(b.add(b.load(pos), _i64(1)), hmask), pos)
        E.loop(probe)
        s = b.load(found)

        def is_hit() -> None:
            G.st(G.ld(sval, b.sext(s, _I64)), out, i)
            G.st(_i32(-1), grp, i)
            k = b.load(nh)
            G.st(s, hit, k)                  # the hits' slots, in program order
            b.store(b.add(k, _i64(1)), nh)

        def is_miss() -> None:
            # the call's own table of new programs: a repeat joins its first occurrence
            lp = E.local(b.and_(h, lmask), "lp")

            def lprobe(brk: Callable[[], None]) -> None:
                g = G.ld(ltab, b.load(lp))

                def new() -> None:
                    k = b.load(m)
                    k32 = b.trunc(k, _I32)
                    G.st(k32, ltab, b.load(lp))
                    G.st(h, ghash, k)
                    G.st(items, gitem, k)
                    G.st(n, gsize, k)
                    G.st(b.trunc(i, _I32), first, k)
                    G.st(k32, grp, i)
                    b.store(b.add(k, _i64(1)), m)
                    brk()
                E.if_(b.icmp_signed("==", g, _i32(_EMPTY)), new)
                g64 = b.sext(g, _I64)
                cand = b.and_(b.icmp_signed("==", G.ld(ghash, g64), h),
                              b.icmp_signed("==", G.ld(gsize, g64), n))

                def check() -> None:
                    def join() -> None:
                        G.st(g, grp, i)
                        brk()
                    E.if_(G.same(items, G.ld(gitem, g64), n), join)
                E.if_(cand, check)
                b.store(b.and_(b.add(b.load(lp), _i64(1)), lmask), lp)
            E.loop(lprobe)
        E.if_(b.icmp_signed(">=", s, _i32(0)), is_hit, is_miss)
    E.for_(_i64(0), P, program, name="prog")
    G.st(b.load(nh), res, _i64(1))
    G.st(b.load(m), res, _i64(2))
    b.ret_void()


def _store_all(G: _Gen, res: ir.Value, vals: list[int]) -> None:
    for k, v in enumerate(vals):
        G.st(_i64(v), res, _i64(k))


def _insert(mod: ir.Module) -> None:
    I32p, I64p, Dp = _I32.as_pointer(), _I64.as_pointer(), _DBL.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [
        I64p, I32p, Dp, _I64, I32p, _I64, I64p, I64p, Dp, _I64, I32p, I64p]), name="pc_insert")
    fn.attributes.add("nounwind")
    tups, slots, vals, m, tslot, hmask, shash, stup, sval, tuple_t, ok, res = fn.args
    G = _Gen(fn)
    E, b = G.E, G.b
    reused = E.local(_i64(0), "reused")
    G.st(_i64(-1), res, _i64(1))

    def check(k: ir.Value) -> None:      # every object an exact tuple, or nothing is entered
        def bad() -> None:
            G.st(k, res, _i64(1))
            E.ret()
        E.if_(b.icmp_signed("!=", G.word(G.ld(tups, k), _OB_TYPE), tuple_t), bad)
    E.for_(_i64(0), m, check, name="chk")

    def one(k: ir.Value) -> None:
        tup = G.ld(tups, k)
        n = G.word(tup, _OB_SIZE)
        items = b.add(tup, _i64(_TUPLE_ITEMS))
        h = G.hash(items, n)
        pos = E.local(b.and_(h, hmask), "pos")
        gone = E.local(_i64(-1), "gone")
        dup = E.local(ir.Constant(ir.IntType(1), 0), "dup")

        def probe(brk: Callable[[], None]) -> None:
            p = b.load(pos)
            s = G.ld(tslot, p)
            E.if_(b.icmp_signed("==", s, _i32(_EMPTY)), brk)
            E.if_(b.and_(b.icmp_signed("==", s, _i32(_GONE)),
                         b.icmp_signed("<", b.load(gone), _i64(0))),
                  lambda: b.store(p, gone))

            def live() -> None:
                def yes() -> None:
                    b.store(ir.Constant(ir.IntType(1), 1), dup)
                    brk()
                E.if_(G.held_match(tslot, shash, stup, s, h, items, n), yes)
            E.if_(b.icmp_signed(">=", s, _i32(0)), live)
            b.store(b.and_(b.add(p, _i64(1)), hmask), pos)
        E.loop(probe)

        def add() -> None:
            g = b.load(gone)
            reuse = b.icmp_signed(">=", g, _i64(0))
            at = b.select(reuse, g, b.load(pos))
            b.store(b.add(b.load(reused), b.zext(reuse, _I64)), reused)
            s = G.ld(slots, k)
            s64 = b.sext(s, _I64)
            G.st(s, tslot, at)
            G.st(h, shash, s64)
            G.st(tup, stup, s64)
            G.st(G.ld(vals, k), sval, s64)
            G.st(_i32(1), ok, k)
        E.if_(b.load(dup), lambda: G.st(_i32(0), ok, k), add)
    E.for_(_i64(0), m, one, name="ins")
    G.st(b.load(reused), res, _i64(0))
    b.ret_void()


def _release(mod: ir.Module) -> None:
    I32p, I64p = _I32.as_pointer(), _I64.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [
        I32p, _I64, I32p, _I64, I64p, I64p, I32p, I64p]), name="pc_release")
    fn.attributes.add("nounwind")
    slots, m, tslot, hmask, shash, stup, done, res = fn.args
    G = _Gen(fn)
    E, b = G.E, G.b
    removed = E.local(_i64(0), "removed")

    def one(k: ir.Value) -> None:
        s = G.ld(slots, k)
        s64 = b.sext(s, _I64)
        live = b.icmp_signed("!=", G.ld(stup, s64), _i64(0))
        G.st(b.zext(live, _I32), done, k)

        def drop() -> None:
            pos = E.local(b.and_(G.ld(shash, s64), hmask), "pos")

            def probe(brk: Callable[[], None]) -> None:
                t = G.ld(tslot, b.load(pos))
                E.if_(b.icmp_signed("==", t, _i32(_EMPTY)), brk)

                def mine() -> None:
                    G.st(_i32(_GONE), tslot, b.load(pos))
                    b.store(b.add(b.load(removed), _i64(1)), removed)
                    brk()
                E.if_(b.icmp_signed("==", t, s), mine)
                b.store(b.and_(b.add(b.load(pos), _i64(1)), hmask), pos)
            E.loop(probe)
            G.st(_i64(0), stup, s64)
        E.if_(live, drop)
    E.for_(_i64(0), m, one, name="rel")
    G.st(b.load(removed), res, _i64(0))
    b.ret_void()


def _rebuild(mod: ir.Module) -> None:
    I32p, I64p = _I32.as_pointer(), _I64.as_pointer()
    fn = ir.Function(mod, ir.FunctionType(ir.VoidType(), [
        I32p, _I64, I64p, I64p, _I64]), name="pc_rebuild")
    fn.attributes.add("nounwind")
    tslot, hmask, shash, stup, C = fn.args
    G = _Gen(fn)
    E, b = G.E, G.b

    def one(s: ir.Value) -> None:
        def place() -> None:
            pos = E.local(b.and_(G.ld(shash, s), hmask), "pos")

            def probe(brk: Callable[[], None]) -> None:
                E.if_(b.icmp_signed("==", G.ld(tslot, b.load(pos)), _i32(_EMPTY)), brk)
                b.store(b.and_(b.add(b.load(pos), _i64(1)), hmask), pos)
            E.loop(probe)
            G.st(b.trunc(s, _I32), tslot, b.load(pos))
        E.if_(b.icmp_signed("!=", G.ld(stup, s), _i64(0)), place)
    E.for_(_i64(0), C, one, name="reb")
    b.ret_void()


def emit_module() -> ir.Module:
    mod = ir.Module(name="symcore_prefix_cache")
    for gen in (_lookup, _insert, _release, _rebuild):
        gen(mod)
    return mod


# -- loading, guarded -------------------------------------------------------------------------

_P = ctypes.c_void_p
_L = ctypes.c_int64
# PYFUNCTYPE: the GIL stays held during the call (no Python thread runs, so no list changes
# under the reader)
_LOOKUP_T = ctypes.PYFUNCTYPE(None, ctypes.py_object, _L, _L, _L, _P, _L, _P, _P, _P, _P, _P,
                              _P, _P, _P, _P, _P, _P, _P, _P, _P, _L, _P)
_INSERT_T = ctypes.PYFUNCTYPE(None, _P, _P, _P, _L, _P, _L, _P, _P, _P, _L, _P, _P)
_RELEASE_T = ctypes.PYFUNCTYPE(None, _P, _L, _P, _L, _P, _P, _P, _P)
_REBUILD_T = ctypes.PYFUNCTYPE(None, _P, _L, _P, _P, _L)
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}


def _word(addr: int) -> int:
    return ctypes.c_int64.from_address(addr).value


def _layout_ok() -> bool:
    """The interpreter's list/tuple layout is the one the native code reads, checked on known
    objects, reading only inside them (their basic sizes first)."""
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    gil = getattr(sys, "_is_gil_enabled", None)
    if gil is not None and not gil():
        return False
    # refcount, type, size, then the item pointer and allocated count (list) / items (tuple)
    if (list.__basicsize__, tuple.__basicsize__, tuple.__itemsize__) != (40, 24, 8):
        return False
    a, c, d = object(), 1.5, "x"
    lst, tup = [a, c, d], (a, c, d)
    want = [id(a), id(c), id(d)]
    if (_word(id(lst) + _OB_TYPE), _word(id(lst) + _OB_SIZE)) != (id(list), 3):
        return False
    if (_word(id(tup) + _OB_TYPE), _word(id(tup) + _OB_SIZE)) != (id(tuple), 3):
        return False
    if [_word(id(tup) + _TUPLE_ITEMS + 8 * k) for k in range(3)] != want:
        return False
    # a list's allocated count (after ob_item) must agree with its reported size before its
    # item pointer is followed
    alloc = _word(id(lst) + _LIST_ITEMS + 8)
    if not 3 <= alloc == (sys.getsizeof(lst) - sys.getsizeof([])) // 8:
        return False
    items = _word(id(lst) + _LIST_ITEMS)
    return bool(items) and [_word(items + 8 * k) for k in range(3)] == want


def _functions() -> dict[str, Any] | None:
    """The compiled functions, or None where the layout check or the self-test failed."""
    with _LOCK:
        if "fns" not in _STATE:
            _STATE["fns"] = None
            if _layout_ok():
                key = f"prefix-cache|{_VERSION}|{_jit.source_hash('eval/prefix_cache.py')}"
                obj = _cache.get_or_compile(key, lambda: _jit.compile_object(
                    str(emit_module()), opt_ir=2, opt_codegen=2))
                names = ["pc_lookup", "pc_insert", "pc_release", "pc_rebuild"]
                lib = _jit.load_library([obj], names)
                fns = {"lib": lib}
                for nm, t in zip(names, (_LOOKUP_T, _INSERT_T, _RELEASE_T, _REBUILD_T)):
                    fns[nm] = t(lib.addresses[nm])
                _STATE["fns"] = fns
                if not _self_test():
                    _STATE["fns"] = None
        return _STATE["fns"]


def _self_test() -> bool:
    """The native lookup on known programs: hits, misses and repeats where they must be."""
    x, y = object(), object()
    pc = PrefixCache(lambda s: s, _fns=_STATE["fns"])
    held = [(x, 1.5), (y,), ()]
    if pc.insert(held, np.array([1.0, 2.0, 3.0])).tolist() != [0, 1, 2]:
        return False
    progs = [[x, 1.5], (y,), [y], [x], [x, 1.5], [], [y, x], [y, x]]
    out = np.full(len(progs), -1.0)
    r = pc.lookup(progs, out)
    if r is None:
        return False
    hit, grp, first = r
    return (hit.tolist() == [0, 1, 1, 0, 2] and grp.tolist() ==
            [-1, -1, -1, 0, -1, -1, 1, 1] and first.tolist() == [3, 6] and
            out[[0, 1, 2, 4, 5]].tolist() == [1.0, 2.0, 2.0, 1.0, 3.0] and
            pc.lookup([[x], 5], np.empty(2)) is None)


def available() -> bool:
    """True where the native cache runs (CPython, GIL build, layout and self-test passed)."""
    return _functions() is not None


class PrefixCache:
    """An address-keyed table of prefix programs: slots hold (token tuple, hash, value); a
    cell array maps hash -> slot (open addressing).  `keys[s]` is the caller's key object of
    slot s (made by `make_key(s)`, reused when the slot is).  Thread-safe: every native call
    runs under the cache's lock with the GIL held.

    Removal is two-step: `release(slot)` (cheap, e.g. from an LRU's eviction) queues the slot;
    the next `lookup`/`insert` removes queued slots from the table and only then drops their
    tuples, so the table never refers to a tuple it does not hold."""

    def __init__(self, make_key: Callable[[int], Any], *, _fns: dict[str, Any] | None = None
                 ) -> None:
        fns = _fns if _fns is not None else _functions()
        if fns is None:
            raise RuntimeError("the native prefix cache is not available here")
        self._fns = fns
        self._make_key = make_key
        self._lock = threading.RLock()
        self._pending: list[int] = []
        self._reset()

    def _reset(self) -> None:
        self.keys = np.empty(0, dtype=object)         # the caller's key of every slot
        self._held = np.empty(0, dtype=object)        # the tuple of every slot (or None)
        self._free = np.empty(0, np.int32)            # a stack of free slots
        self._nfree = 0
        self._hash = np.zeros(0, np.int64)
        self._tup = np.zeros(0, np.int64)
        self._val = np.zeros(0, np.float64)
        self._tab = np.full(_MIN_TABLE, _EMPTY, np.int32)
        self._used = 0          # cells not empty (live entries and removed ones)
        self.live = 0
        self._sc: tuple[np.ndarray, ...] | None = None
        self._set_ptrs()

    def __len__(self) -> int:
        return self.live

    def nbytes(self) -> int:
        """Bytes of the native arrays (slots and cells)."""
        return self._hash.nbytes + self._tup.nbytes + self._val.nbytes + self._tab.nbytes

    # -- lookup ---------------------------------------------------------------------------------
    def lookup(self, programs: Sequence[Any], out: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Look every program up: `out[i]` <- the value of a hit.  Returns (the hits' slots
        in program order, group per program or -1 for a hit, first program of each group):
        the new programs grouped by identical token objects, groups in order of first
        occurrence.  None when `programs` is not a list or tuple of lists and tuples (or
        changed size meanwhile): the caller takes another path."""
        tp = type(programs)
        if tp is not list and tp is not tuple:
            return None
        P = len(programs)
        if out.dtype != np.float64 or out.shape != (P,) or not out.flags.c_contiguous:
            raise ValueError("out must be a contiguous float64 array of one value a program")
        with self._lock:
            self._flush()
            ia, la, ltab, res = self._scratch(P)
            L = ltab.size
            ltab.fill(_EMPTY)
            pi, pl = ia.ctypes.data, la.ctypes.data
            self._fns["pc_lookup"](programs, P, id(list), id(tuple), *self._ptrs,
                                   out.ctypes.data, pi, pi + 4 * P, pi + 8 * P,
                                   *(pl + 8 * P * k for k in range(6)), ltab.ctypes.data, L - 1,
                                   res.ctypes.data)
            if res[0] != -1:
                return None
            nh, m = int(res[1]), int(res[2])
            # copies: the scratch is the next call's
            return ia[:nh].copy(), ia[P:2 * P].copy(), ia[2 * P:2 * P + m].copy()

    def _scratch(self, P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lookup buffers for P programs (kept, grown as needed; used under the lock):
        int32 hits/groups/firsts, int64 group items/sizes/hashes and program hashes/items/
        sizes, the call's own cells."""
        L = 16
        while L < 2 * P:
            L *= 2
        sc = self._sc
        if sc is None or sc[0].size < 3 * P or sc[2].size < L:
            Q = max(P, 64)
            sc = self._sc = (np.empty(3 * Q, np.int32), np.empty(6 * Q, np.int64),
                             np.empty(L, np.int32), np.zeros(3, np.int64))
        return sc[0], sc[1], sc[2][:L], sc[3]

    def _set_ptrs(self) -> None:
        """Addresses of the table arrays as the native calls take them (after any resize)."""
        self._ptrs = (self._tab.ctypes.data, self._tab.size - 1, self._hash.ctypes.data,
                      self._tup.ctypes.data, self._val.ctypes.data)

    # -- insert ---------------------------------------------------------------------------------
    def insert(self, toks: Sequence[tuple], vals: np.ndarray) -> np.ndarray:
        """Enter each token tuple with its value: an int32 array of their slots, -1 where
        the same tokens are in the table already (then the table keeps the old entry).
        TypeError (nothing entered) for an object that is not exactly a tuple."""
        m = len(toks)
        if not m:
            return np.zeros(0, np.int32)
        objs = np.fromiter(toks, dtype=object, count=m)   # its buffer: the objects' addresses
        v = np.ascontiguousarray(vals, dtype=np.float64)
        if v.shape != (m,):
            raise ValueError("one value a tuple")
        ok = np.empty(m, np.int32)
        res = np.zeros(2, np.int64)
        with self._lock:
            self._flush()
            if self._nfree < m:
                self._grow_slots(m - self._nfree)
            top = self._nfree
            sa = self._free[top - m:top][::-1].copy()
            self._nfree = top - m
            self._fit_table(m)
            held = self._held
            held[sa] = objs                          # held before the table refers to them
            self._fns["pc_insert"](objs.ctypes.data, sa.ctypes.data, v.ctypes.data, m,
                                   *self._ptrs, id(tuple), ok.ctypes.data, res.ctypes.data)
            if res[1] >= 0:
                self._unhold(sa)
                raise TypeError(f"the table holds exact tuples only, got "
                                f"{type(toks[int(res[1])]).__name__}")
            dup = ok == 0
            n_ok = m - int(np.count_nonzero(dup))
            self.live += n_ok
            self._used += n_ok - int(res[0])
            if n_ok < m:
                self._unhold(sa[dup])
                sa[dup] = -1
            return sa

    def _unhold(self, sa: np.ndarray) -> None:
        """Slots the table does not refer to (any more): their tuples go, the slots are free."""
        self._held[sa] = None
        k = sa.size
        self._free[self._nfree:self._nfree + k] = sa
        self._nfree += k

    def _grow_slots(self, need: int) -> None:
        C = self._hash.size
        C2 = max(2 * C, C + need, 256)
        for name in ("_hash", "_tup", "_val"):
            old = getattr(self, name)
            new = np.zeros(C2, old.dtype)
            new[:C] = old
            setattr(self, name, new)
        held = np.empty(C2, dtype=object)
        held[:C] = self._held
        self._held = held
        keys = np.empty(C2, dtype=object)
        keys[:C] = self.keys
        mk = self._make_key
        keys[C:] = [mk(s) for s in range(C, C2)]
        self.keys = keys
        # the free stack is popped from its top: the new slots go under the free old ones
        free = np.empty(C2, np.int32)
        free[:C2 - C] = np.arange(C2 - 1, C - 1, -1)
        free[C2 - C:C2 - C + self._nfree] = self._free[:self._nfree]
        self._free = free
        self._nfree += C2 - C
        self._set_ptrs()

    def _fit_table(self, m: int) -> None:
        """Cells for m more entries at a load of at most one half (removed cells count)."""
        H = self._tab.size
        if 2 * (self._used + m) <= H and not (self.live < H // 16 and H > _MIN_TABLE):
            return
        H2 = _MIN_TABLE
        while H2 < 4 * (self.live + m):
            H2 *= 2
        tab = np.full(H2, _EMPTY, np.int32)
        self._fns["pc_rebuild"](tab.ctypes.data, H2 - 1, self._hash.ctypes.data,
                                self._tup.ctypes.data, self._hash.size)
        self._tab = tab
        self._used = self.live
        self._set_ptrs()

    # -- removal --------------------------------------------------------------------------------
    def release(self, slot: int) -> None:
        """Queue slot for removal (its entry stays valid until the next lookup or insert)."""
        self._pending.append(slot)

    def release_many(self, slots: Sequence[int]) -> None:
        """`release` for each of `slots`."""
        self._pending.extend(slots)

    def _flush(self) -> None:
        if not self._pending:
            return
        # the list object is swapped before it is read: a release from another thread meanwhile
        # lands in one list or the other, never lost
        p, self._pending = self._pending, []
        sa = np.array(p, dtype=np.int32)
        done = np.empty(sa.size, np.int32)
        res = np.zeros(1, np.int64)
        self._fns["pc_release"](sa.ctypes.data, sa.size, *self._ptrs[:4], done.ctypes.data,
                                res.ctypes.data)
        gone = sa[done != 0]                 # the table no longer refers to them
        self._unhold(gone)
        self.live -= gone.size

    def clear(self) -> None:
        with self._lock:
            self._pending = []
            self._reset()
