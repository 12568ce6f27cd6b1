"""Tier-0 parameter Jacobians, the generated code: the Jacobian interpreter `g0_normal` over
the shared tier-0 bytecode and its population batch entry `g0_batch` (IR emission only;
grad/tier0.py packs candidates, builds the library and runs it)."""

from __future__ import annotations

from typing import Any

from llvmlite import ir

from symcore.errors import CompileError
from symcore.ops import OPS

from symcore.codegen.bytecode import KIND_PARAM, OP_VAR, opcodes, runnable
from symcore.codegen.grad.templates import deriv_template
from symcore.codegen.llvm.irflow import Flow
from symcore.codegen.llvm.lower import LOWER, lower_expr
from symcore.codegen.llvm.values import broadcast, literal, ptr_at, splat, vector_type

__all__ = ["emit_tier0", "emit_tier0_batch", "T0_UNROLL", "T0_UNROLLED_PARAMS", "T0_ARGS",
           "T0_BATCH_ARGS", "T0_TABLE"]

_F64 = ir.DoubleType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = _F64.as_pointer()


# -------------------------------------------------------------------------------------------------
# Tier 0: a Jacobian interpreter compiled once per machine (no compilation per candidate).
# A candidate is packed into small integer arrays: `fills` (slot, kind, index) set constant and
# parameter slots once per call; `fwd` (op, dst, a, b) computes every other node for one vector
# of rows (op `OP_VAR` loads column a; operators use `bytecode.opcodes()`); `rev` (op, dst, a, b,
# flags) runs the reverse sweep over the parameter-dependent nodes (flags bit i: argument i needs
# its adjoint).  One slot per node (reverse mode needs every forward value), plus one always-zero
# slot for unused parameters.

#: argument kinds of g0_normal (see emit_tier0)
T0_ARGS = ["i32p", "i64", "i32p", "i64", "i32p", "i64", "i32p", "i64", "f64p", "f64p", "f64p",
           "i64", "f64p", "f64p", "i64", "i64", "i64", "f64p", "f64p", "f64p", "f64p", "i64"]
#: g0_batch(K, table, params, Pm, X, ldx, y, w, n, vals, adj, jbuf, outs, out_stride)
T0_BATCH_ARGS = ["i64", "i64p", "f64p", "i64", "f64p", "i64", "f64p", "f64p", "i64", "f64p",
                 "f64p", "f64p", "f64p", "i64"]
#: one row of the batch table per candidate (int64): addresses and sizes of its packed arrays
T0_TABLE = ("fills", "nfill", "fwd", "nfwd", "rev", "nrev", "pslots", "P", "pool", "root",
            "nslots")


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
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in T0_ARGS]),
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
    """`g0_batch`: `g0_normal` for K candidates described by rows of a table (`T0_TABLE`),
    candidate k reading params + k Pm and writing outs + k out_stride (one native call per
    round of a population fit)."""
    types = {"i64p": _I64.as_pointer(), "f64p": _PTR, "i64": _I64}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in T0_BATCH_ARGS]),
                     name="g0_batch")
    K, table, params, Pm, X, ldx, Y, Wt, n, vals, adj, jbuf, outs, stride = fn.args
    F = _Fn(fn, _F64, 1)
    b = F.b
    i32p = _I32.as_pointer()

    def one(k: ir.Value) -> None:
        row = b.gep(table, [b.mul(k, ir.Constant(_I64, len(T0_TABLE)))])
        f = {name: b.load(b.gep(row, [ir.Constant(_I64, j)])) for j, name in enumerate(T0_TABLE)}
        ptr = lambda name, ty: b.inttoptr(f[name], ty)  # noqa: E731
        b.call(normal, [ptr("fills", i32p), f["nfill"], ptr("fwd", i32p), f["nfwd"],
                        ptr("rev", i32p), f["nrev"], ptr("pslots", i32p), f["P"],
                        ptr("pool", _PTR), b.gep(params, [b.mul(k, Pm)]), X, ldx, Y, Wt, n,
                        f["root"], f["nslots"], vals, adj, jbuf,
                        b.gep(outs, [b.mul(k, stride)]), Pm])
    F.for_(ir.Constant(_I64, 0), K, one)
    b.ret_void()
    return fn
