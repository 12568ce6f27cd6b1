"""Structured control flow over one `llvmlite.ir` function: locals, counted loops, endless loops
left by a break, if/else and early returns; the compiled-once generators (tier 0, the tier-0
Jacobian interpreter, the native LM loop) are written with it."""

from __future__ import annotations

from typing import Callable

from llvmlite import ir

_I64 = ir.IntType(64)
_F64 = ir.DoubleType()


class Flow:
    """Builder helpers for one function.  Locals are allocas in the entry block (mem2reg
    promotes them); code after a `ret` or a loop's break goes to an unreachable block."""

    def __init__(self, fn: ir.Function) -> None:
        self.fn = fn
        self.b = ir.IRBuilder(fn.append_basic_block("entry"))

    def local(self, init: ir.Value, name: str = "") -> ir.Value:
        with self.b.goto_entry_block():
            slot = self.b.alloca(init.type, name=name)
        self.b.store(init, slot)
        return slot

    def _dead(self) -> None:
        self.b.position_at_end(self.fn.append_basic_block("dead"))

    def ret(self) -> None:
        self.b.ret_void()
        self._dead()

    def if_(self, cond: ir.Value, then: Callable[[], None],
            otherwise: Callable[[], None] | None = None) -> None:
        b = self.b
        t = self.fn.append_basic_block("then")
        e = self.fn.append_basic_block("else") if otherwise else None
        merge = self.fn.append_basic_block("merge")
        b.cbranch(cond, t, e or merge)
        b.position_at_end(t)
        then()
        if not b.block.is_terminated:
            b.branch(merge)
        if e is not None:
            b.position_at_end(e)
            otherwise()  # type: ignore[misc]
            if not b.block.is_terminated:
                b.branch(merge)
        b.position_at_end(merge)

    def for_(self, lo: ir.Value, hi: ir.Value, body: Callable[[ir.Value], None],
             step: int = 1, name: str = "for") -> None:
        """for (i = lo; i < hi; i += step) body(i)  (i64)."""
        b = self.b
        i = self.local(lo, name + ".i")
        head = self.fn.append_basic_block(name + ".head")
        blk = self.fn.append_basic_block(name + ".body")
        end = self.fn.append_basic_block(name + ".end")
        b.branch(head)
        b.position_at_end(head)
        cur = b.load(i)
        b.cbranch(b.icmp_signed("<", cur, hi), blk, end)
        b.position_at_end(blk)
        body(cur)
        if not b.block.is_terminated:
            b.store(b.add(b.load(i), ir.Constant(_I64, step)), i)
            b.branch(head)
        b.position_at_end(end)

    def loop(self, body: Callable[[Callable[[], None]], None]) -> None:
        """An endless loop; body(brk) calls brk() (inside an if_) to leave it."""
        b = self.b
        head = self.fn.append_basic_block("loop.head")
        end = self.fn.append_basic_block("loop.end")
        b.branch(head)
        b.position_at_end(head)

        def brk() -> None:
            b.branch(end)
            self._dead()
        body(brk)
        if not b.block.is_terminated:
            b.branch(head)
        b.position_at_end(end)


class ScalarFlow(Flow):
    """`Flow` plus the scalar double helpers the native algorithms (the LM loop, the ODE
    integrators) are written in: constants, sqrt/abs, ordered compares, NaN-aware min/max,
    locals and array element access."""

    def __init__(self, fn: ir.Function) -> None:
        super().__init__(fn)
        m = fn.module
        self._sqrt = m.declare_intrinsic("llvm.sqrt", [_F64])
        self._fabs = m.declare_intrinsic("llvm.fabs", [_F64])

    @staticmethod
    def f(x: float) -> ir.Constant:
        return ir.Constant(_F64, x)

    @staticmethod
    def i(x: int) -> ir.Constant:
        return ir.Constant(_I64, x)

    def sqrt(self, x: ir.Value) -> ir.Value:
        return self.b.call(self._sqrt, [x])

    def abs(self, x: ir.Value) -> ir.Value:
        return self.b.call(self._fabs, [x])

    def max(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """Python's max(x, y): x unless y > x (a NaN y leaves x)."""
        return self.b.select(self.b.fcmp_ordered(">", y, x), y, x)

    def min(self, x: ir.Value, y: ir.Value) -> ir.Value:
        """Python's min(x, y): x unless y < x (a NaN y leaves x)."""
        return self.b.select(self.b.fcmp_ordered("<", y, x), y, x)

    def lt(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("<", x, y)

    def le(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("<=", x, y)

    def eq(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("==", x, y)

    def finite(self, x: ir.Value) -> ir.Value:
        return self.b.fcmp_ordered("<", self.abs(x), self.f(float("inf")))

    def get(self, slot: ir.Value) -> ir.Value:
        return self.b.load(slot)

    def set(self, slot: ir.Value, v: ir.Value) -> None:
        self.b.store(v, slot)

    def ld(self, base: ir.Value, idx: ir.Value) -> ir.Value:
        return self.b.load(self.b.gep(base, [idx]))

    def st(self, v: ir.Value, base: ir.Value, idx: ir.Value) -> None:
        self.b.store(v, self.b.gep(base, [idx]))
