"""The native half of the prefix-program cache (`prefix_cache`): four functions over its
table, generated with llvmlite.  A program's key is the sequence of its token objects'
addresses; the table maps a 64-bit hash of it to a slot holding (hash, token tuple, value).

``pc_lookup(programs, P, list_type, tuple_type, cells, mask, hashes, tuples, values, out, hits,
groups, firsts, gitems, gsizes, ghashes, phash, pitems, psizes, lcells, lmask, res)``: reads
the CPython list/tuple objects (offsets below, checked by the caller before first use; every
container's type is compared with list_type/tuple_type before anything past its header is
read), in two passes (the programs hashed, then the table probed), each fetching memory a
few programs ahead; fills the values of hits into `out` and groups the new programs;
res <- (status: -1, the first program that is no list or tuple, or -2 for the outer
container; hits; groups).
``pc_insert(new, slots, new_values, m, cells, mask, hashes, tuples, values, tuple_type, ok,
res)``, ``pc_release(slots, m, cells, mask, hashes, tuples, done, res)``,
``pc_rebuild(cells, mask, hashes, tuples, C)``: the table's upkeep (cells: -1 empty, -2 a
removed entry, else a slot).
"""

from __future__ import annotations

from typing import Callable

from llvmlite import ir

from symcore.codegen.llvm.irflow import Flow

__all__ = ["emit_module", "EMPTY", "LAYOUT"]

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_DBL = ir.DoubleType()
_I8p = ir.IntType(8).as_pointer()
#: CPython (64-bit, GIL build) object layout: ob_type, ob_size, a list's ob_item pointer,
#: a tuple's inline items (the caller checks them on known objects before any native read)
LAYOUT = (8, 16, 24, 24)
_OB_TYPE, _OB_SIZE, _LIST_ITEMS, _TUPLE_ITEMS = LAYOUT
#: table cells: -1 empty, -2 a removed entry, else a slot number
EMPTY = _EMPTY = -1
_GONE = -2
#: odd 64-bit multipliers of the address hash (the golden ratio, an xxHash prime)
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
