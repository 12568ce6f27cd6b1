"""Native Levenberg–Marquardt: `fit.levenberg_marquardt` emitted as LLVM IR over the tier-0 Jacobian
interpreter, so a population (and its restarts) is fitted in one native call per thread.

The algorithm is the one of `fit._lm_core` / `fit._lmpar` statement for statement (MINPACK lmder's
trust region, acceptance, radius update and convergence tests; damped steps from the eigen-
decomposition of the scaled normal matrix, minimum-norm Gauss–Newton steps on a rank-deficient
Jacobian); only the eigendecomposition differs (cyclic Jacobi here, LAPACK there), so iterates agree
up to rounding.  Problems are taken from a shared atomic counter: threads calling `g0_lm` on the
same counter share the work without a Python-level scheduler.
"""

from __future__ import annotations

import ctypes
import functools
import sys
import time
from typing import Callable

from llvmlite import ir

from symcore.codegen.llvm.irflow import ScalarFlow

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_I32 = ir.IntType(32)
_I1 = ir.IntType(1)
_PTR = _F64.as_pointer()
_I64P = _I64.as_pointer()

#: status codes written by g0_lm (index into fit.STATUSES)
CONVERGED, MAX_ITER, NON_FINITE, SINGULAR, TIME_LIMIT = 0, 1, 2, 3, 4

#: g0_lm(K, table, starts, Pm, budgets, X, ldx, y, w, n, vals, adj, jbuf, out, work, tol,
#:       factor, counter, res_p, res_f, res_it, res_status, clock, limits)
LM_ARGS = ["i64", "i64p", "f64p", "i64", "i64p", "f64p", "i64", "f64p", "f64p", "i64", "f64p",
           "f64p", "f64p", "f64p", "f64p", "f64", "f64", "i64p", "f64p", "f64p", "i64p", "i64p",
           "i64", "f64p"]

#: CLOCK_MONOTONIC (Linux; the clock of Python's time.monotonic there)
CLOCK_MONOTONIC = 1


@functools.lru_cache(maxsize=1)
def clock_address() -> int:
    """Address of libc's clock_gettime for the native loop's deadline checks (no Python
    callback: the loop calls it directly), or 0 where it is missing or CLOCK_MONOTONIC is not
    the clock of time.monotonic() (the loop then runs without a time limit)."""
    try:
        fn = ctypes.CDLL(None).clock_gettime
    except (AttributeError, OSError):
        return 0
    if sys.platform != "linux" or getattr(time, "CLOCK_MONOTONIC", None) != CLOCK_MONOTONIC:
        return 0
    return int(ctypes.cast(fn, ctypes.c_void_p).value or 0)


def work_size(Pm: int) -> int:
    """Doubles of per-thread workspace `g0_lm` needs for problems of up to Pm parameters."""
    return 12 * Pm + 4 * Pm * Pm


class _LMFlow(ScalarFlow):
    """`ScalarFlow` plus the LM loop's own helpers."""

    def at(self, base: ir.Value, idx: ir.Value) -> ir.Value:
        return self.b.gep(base, [idx])

    def sum(self, n: ir.Value, term: Callable[[ir.Value], ir.Value]) -> ir.Value:
        acc = self.local(self.f(0.0))
        self.for_(self.i(0), n, lambda j: self.set(acc, self.b.fadd(self.get(acc), term(j))))
        return self.get(acc)


#: eigenvalues below this fraction of the largest count as zero (fit._RANK_RCOND)
_RANK_RCOND = 1e-14
_DWARF = 2.2250738585072014e-308
_EPS = 2.220446049250313e-16
#: Jacobi sweeps stop when the off-diagonal mass is below this fraction of the total
_JACOBI_TOL = 1e-32
_JACOBI_SWEEPS = 60


def _emit_eval(module: ir.Module, normal: ir.Function, L: int) -> ir.Function:
    """lm_eval(row, params, P, X, ldx, y, w, n, vals, adj, jbuf, out, f*, g, A) -> finite:
    the tier-0 normal equations of one packed candidate, lane partial sums reduced, Jᵀ W J
    mirrored to a full P×P matrix; finite iff f + Σ g + Σ A is finite (fit._finite)."""
    fn = ir.Function(module, ir.FunctionType(_I1, [_I64P, _PTR, _I64, _PTR, _I64, _PTR, _PTR,
                                                  _I64, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR, _PTR]),
                     name="lm_eval")
    fn.linkage = "internal"
    row, params, P, X, ldx, Y, Wt, n, vals, adj, jbuf, out, fout, g, A = fn.args
    c = _LMFlow(fn)
    b = c.b
    field = lambda j: b.load(b.gep(row, [c.i(j)]))  # noqa: E731
    i32p = _I32.as_pointer()
    ptr = lambda j, ty: b.inttoptr(field(j), ty)  # noqa: E731
    b.call(normal, [ptr(0, i32p), field(1), ptr(2, i32p), field(3), ptr(4, i32p), field(5),
                    ptr(6, i32p), field(7), ptr(8, _PTR), params, X, ldx, Y, Wt, n, field(9),
                    field(10), vals, adj, jbuf, out, P])

    def red(slot: ir.Value) -> ir.Value:
        base = b.mul(slot, c.i(L))
        return c.sum(c.i(L), lambda l: c.ld(out, b.add(base, l)))
    f = red(c.i(0))
    b.store(f, fout)
    tot = c.local(f)

    def gj(j: ir.Value) -> None:
        v = red(b.add(j, c.i(1)))
        c.st(v, g, j)
        c.set(tot, b.fadd(c.get(tot), v))
    c.for_(c.i(0), P, gj)

    def arow(j: ir.Value) -> None:
        def acol(k: ir.Value) -> None:
            v = red(b.add(b.add(c.i(1), P), b.add(b.mul(j, P), k)))
            c.st(v, A, b.add(b.mul(j, P), k))
            c.st(v, A, b.add(b.mul(k, P), j))
            twice = b.fadd(v, v)
            c.set(tot, b.fadd(c.get(tot), b.select(b.icmp_signed("==", j, k), v, twice)))
        c.for_(j, P, acol)
    c.for_(c.i(0), P, arow)
    b.ret(c.finite(c.get(tot)))
    return fn


def _emit_jacobi(module: ir.Module) -> ir.Function:
    """lm_jacobi(S, V, lam, P): eigenvalues (lam) and eigenvectors (columns of V) of the
    symmetric P×P matrix S by cyclic Jacobi rotations (S is overwritten)."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [_PTR, _PTR, _PTR, _I64]),
                     name="lm_jacobi")
    fn.linkage = "internal"
    S, V, lam, P = fn.args
    c = _LMFlow(fn)
    b = c.b
    ix = lambda r, q: b.add(b.mul(r, P), q)  # noqa: E731

    def init(r: ir.Value) -> None:
        c.for_(c.i(0), P, lambda q: c.st(b.uitofp(b.icmp_signed("==", r, q), _F64), V, ix(r, q)))
    c.for_(c.i(0), P, init)
    sweep = c.local(c.i(0))

    def one_sweep(brk: Callable[[], None]) -> None:
        off = c.local(c.f(0.0))
        dia = c.local(c.f(0.0))

        def mass(r: ir.Value) -> None:
            d = c.ld(S, ix(r, r))
            c.set(dia, b.fadd(c.get(dia), b.fmul(d, d)))

            def upper(q: ir.Value) -> None:
                v = c.ld(S, ix(r, q))
                c.set(off, b.fadd(c.get(off), b.fmul(v, v)))
            c.for_(b.add(r, c.i(1)), P, upper)
        c.for_(c.i(0), P, mass)
        small = c.le(c.get(off), b.fmul(c.f(_JACOBI_TOL), c.get(dia)))
        done = b.or_(b.or_(small, b.icmp_signed(">=", c.get(sweep), c.i(_JACOBI_SWEEPS))),
                     b.fcmp_unordered("uno", c.get(off), c.get(off)))
        c.if_(done, brk)
        c.set(sweep, b.add(c.get(sweep), c.i(1)))

        def pivot_row(p: ir.Value) -> None:
            def pivot(q: ir.Value) -> None:
                apq = c.ld(S, ix(p, q))

                def rotate() -> None:
                    app, aqq = c.ld(S, ix(p, p)), c.ld(S, ix(q, q))
                    theta = b.fdiv(b.fsub(aqq, app), b.fmul(c.f(2.0), apq))
                    at = c.abs(theta)
                    # t = sign(θ) / (|θ| + sqrt(θ² + 1)); 1/(2θ) where θ² would overflow
                    big = c.lt(c.f(1e150), at)
                    t_abs = b.select(big, b.fdiv(c.f(0.5), at),
                                     b.fdiv(c.f(1.0), b.fadd(at, c.sqrt(
                                         b.fadd(b.fmul(theta, theta), c.f(1.0))))))
                    t = b.select(c.lt(theta, c.f(0.0)), b.fneg(t_abs), t_abs)
                    cs = b.fdiv(c.f(1.0), c.sqrt(b.fadd(b.fmul(t, t), c.f(1.0))))
                    sn = b.fmul(t, cs)

                    def rot(M: ir.Value, i1: Callable, i2: Callable) -> Callable:
                        def body(k: ir.Value) -> None:
                            x, y = c.ld(M, i1(k)), c.ld(M, i2(k))
                            c.st(b.fsub(b.fmul(cs, x), b.fmul(sn, y)), M, i1(k))
                            c.st(b.fadd(b.fmul(sn, x), b.fmul(cs, y)), M, i2(k))
                        return body
                    c.for_(c.i(0), P, rot(S, lambda k: ix(k, p), lambda k: ix(k, q)))
                    c.for_(c.i(0), P, rot(S, lambda k: ix(p, k), lambda k: ix(q, k)))
                    c.for_(c.i(0), P, rot(V, lambda k: ix(k, p), lambda k: ix(k, q)))
                c.if_(b.fcmp_unordered("une", apq, c.f(0.0)), rotate)
            c.for_(b.add(p, c.i(1)), P, pivot)
        c.for_(c.i(0), P, pivot_row)
    c.loop(one_sweep)
    c.for_(c.i(0), P, lambda r: c.st(c.ld(S, ix(r, r)), lam, r))
    b.ret_void()
    return fn


def _emit_one(module: ir.Module, ev: ir.Function, jac: ir.Function) -> ir.Function:
    """lm_one(row, p0, P, budget, X, ldx, y, w, n, vals, adj, jbuf, out, work, tol, factor,
    res_p, res_f*, res_it*, res_status*, clock, limits): fit._lm_core from the start p0.

    Time limit: `clock` is the address of clock_gettime (0: no limit); the problem's deadline
    is min(its start + limits[0], limits[1]) in CLOCK_MONOTONIC seconds, checked before every
    trial step (one vDSO call, ~25 ns, against a step that evaluates every row): past it the
    loop ends with status TIME_LIMIT at its best point so far (the last accepted one)."""
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [
        _I64P, _PTR, _I64, _I64, _PTR, _I64, _PTR, _PTR, _I64, _PTR, _PTR, _PTR, _PTR, _PTR,
        _F64, _F64, _PTR, _PTR, _I64P, _I64P, _I64, _PTR]), name="lm_one")
    fn.linkage = "internal"
    (row, p0, P, budget, X, ldx, Y, Wt, n, vals, adj, jbuf, out, work, tol, factor,
     res_p, res_f, res_it, res_status, clock, limits) = fn.args
    c = _LMFlow(fn)
    b = c.b
    F, I = c.f, c.i
    add, sub, mul, div = b.fadd, b.fsub, b.fmul, b.fdiv
    ix = lambda r, q: b.add(b.mul(r, P), q)  # noqa: E731
    PP = b.mul(P, P)
    # workspace: 12 vectors of P, 4 matrices of P×P
    cursor = [I(0)]

    def carve(size: ir.Value) -> ir.Value:
        at = c.at(work, cursor[0])
        cursor[0] = b.add(cursor[0], size)
        return at
    p, pn, g, gn, D, cn, lam, cv, c2, inv, hs, h = (carve(P) for _ in range(12))
    A, An, S, V = (carve(PP) for _ in range(4))
    fp_ = c.local(F(0.0))
    fnp = c.local(F(0.0))

    def each(body: Callable[[ir.Value], None]) -> None:
        c.for_(I(0), P, body)

    def copy(dst: ir.Value, src: ir.Value, size: ir.Value) -> None:
        c.for_(I(0), size, lambda j: c.st(c.ld(src, j), dst, j))

    def call_eval(params: ir.Value, fptr: ir.Value, gv: ir.Value, Am: ir.Value) -> ir.Value:
        return b.call(ev, [row, params, P, X, ldx, Y, Wt, n, vals, adj, jbuf, out, fptr, gv, Am])

    it = c.local(I(0))

    def finish(status: int, f: ir.Value) -> None:
        copy(res_p, p, P)
        b.store(b.select(c.finite(f), f, F(float("inf"))), res_f)
        b.store(c.get(it), res_it)
        b.store(I(status), res_status)
        c.ret()

    # the clock: clock_gettime(CLOCK_MONOTONIC, &ts) through its address, as seconds
    with b.goto_entry_block():
        ts = b.alloca(_I64, size=2)
    clock_fn = ir.FunctionType(_I32, [_I32, _I64P]).as_pointer()
    has_clock = b.icmp_signed("!=", clock, I(0))

    def now() -> ir.Value:
        b.call(b.inttoptr(clock, clock_fn), [ir.Constant(_I32, CLOCK_MONOTONIC), ts])
        sec = b.sitofp(b.load(ts), _F64)
        nsec = b.sitofp(b.load(b.gep(ts, [I(1)])), _F64)
        return add(sec, mul(nsec, F(1e-9)))
    deadline = c.local(c.ld(limits, I(1)))
    c.if_(has_clock, lambda: c.set(deadline, c.min(add(now(), c.ld(limits, I(0))),
                                                   c.get(deadline))))

    copy(p, p0, P)
    ok0 = call_eval(p, fp_, g, A)
    c.if_(b.not_(ok0), lambda: finish(NON_FINITE, c.get(fp_)))
    c.if_(c.eq(c.get(fp_), F(0.0)), lambda: finish(CONVERGED, c.get(fp_)))

    def col_norms() -> None:
        each(lambda j: c.st(c.sqrt(c.max(c.ld(A, ix(j, j)), F(0.0))), cn, j))
    col_norms()
    anyc = c.local(ir.Constant(_I1, 0))
    each(lambda j: c.set(anyc, b.or_(c.get(anyc), b.fcmp_unordered("une", c.ld(cn, j), F(0.0)))))
    c.if_(b.not_(c.get(anyc)), lambda: finish(SINGULAR, c.get(fp_)))
    each(lambda j: c.st(b.select(c.lt(F(0.0), c.ld(cn, j)), c.ld(cn, j), F(1.0)), D, j))

    def xnorm_of() -> ir.Value:
        return c.sqrt(c.sum(P, lambda j: (lambda v: mul(v, v))(mul(c.ld(D, j), c.ld(p, j)))))
    xn0 = xnorm_of()
    delta = c.local(b.select(c.lt(F(0.0), xn0), mul(factor, xn0), factor))
    f = c.local(c.get(fp_))
    fnorm = c.local(c.sqrt(c.get(f)))
    xnorm = c.local(xn0)
    par = c.local(F(0.0))
    first = c.local(ir.Constant(_I1, 1))
    inf = F(float("inf"))

    def outer(brk_outer: Callable[[], None]) -> None:
        # gtol: the cosine between r and every scaled Jacobian column
        gmax = c.local(F(0.0))
        each(lambda j: c.set(gmax, c.max(c.get(gmax), div(
            c.abs(c.ld(g, j)), b.select(c.lt(F(0.0), c.ld(cn, j)), c.ld(cn, j), inf)))))
        c.if_(c.le(c.get(gmax), mul(tol, c.get(fnorm))), lambda: finish(CONVERGED, c.get(f)))
        each(lambda j: c.st(c.max(c.ld(D, j), c.ld(cn, j)), D, j))
        # eigendecomposition of D⁻¹ A D⁻¹, the scaled gradient in its basis
        c.for_(I(0), P, lambda r: c.for_(I(0), P, lambda q: c.st(
            div(c.ld(A, ix(r, q)), mul(c.ld(D, r), c.ld(D, q))), S, ix(r, q))))
        b.call(jac, [S, V, lam, P])
        lmax = c.local(F(0.0))

        def clamp(j: ir.Value) -> None:
            v = c.max(c.ld(lam, j), F(0.0))
            c.st(v, lam, j)
            c.set(lmax, c.max(c.get(lmax), v))
        each(clamp)

        def proj(i: ir.Value) -> None:
            v = c.sum(P, lambda k: mul(c.ld(V, ix(k, i)), div(c.ld(g, k), c.ld(D, k))))
            c.st(v, cv, i)
            c.st(mul(v, v), c2, i)
        each(proj)
        thr = mul(F(_RANK_RCOND), c.get(lmax))
        keep = lambda j: c.lt(thr, c.ld(lam, j))  # noqa: E731
        all_kept = c.local(ir.Constant(_I1, 1))
        each(lambda j: c.set(all_kept, b.and_(c.get(all_kept), keep(j))))
        gnorm = c.sqrt(c.sum(P, lambda j: c.ld(c2, j)))

        def size() -> tuple[ir.Value, ir.Value]:
            """(||D h||, Σ c² inv³) for the inverse eigenvalues in `inv`."""
            q = lambda j: mul(c.ld(c2, j), mul(c.ld(inv, j), c.ld(inv, j)))  # noqa: E731
            dx = c.sqrt(c.sum(P, q))
            s = c.sum(P, lambda j: mul(q(j), c.ld(inv, j)))
            return dx, s

        def set_inv(pv: ir.Value) -> None:
            each(lambda j: c.st(div(F(1.0), add(c.ld(lam, j), pv)), inv, j))

        def inner(brk_inner: Callable[[], None]) -> None:
            # --- Moré's LM parameter (fit._lmpar) -> inv, par
            each(lambda j: c.st(b.select(keep(j), div(F(1.0), c.ld(lam, j)), F(0.0)), inv, j))
            dx0, s0 = size()
            dxnorm = c.local(dx0)
            s = c.local(s0)
            dl = c.get(delta)
            fp = c.local(b.fsub(dx0, dl))

            def damped() -> None:
                parl = c.local(b.select(b.and_(c.get(all_kept), c.lt(F(0.0), c.get(s))),
                                        div(mul(mul(c.get(fp), c.get(dxnorm)), c.get(dxnorm)),
                                            mul(dl, c.get(s))), F(0.0)))
                pu = div(gnorm, dl)
                paru = c.local(b.select(c.eq(pu, F(0.0)), div(F(_DWARF), c.min(dl, F(0.1))), pu))
                c.set(par, c.min(c.max(c.get(par), c.get(parl)), c.get(paru)))
                c.if_(c.eq(c.get(par), F(0.0)), lambda: c.set(par, div(gnorm, c.get(dxnorm))))
                k = c.local(I(0))

                def newton(brk: Callable[[], None]) -> None:
                    c.if_(c.eq(c.get(par), F(0.0)), lambda: c.set(
                        par, c.max(F(_DWARF), mul(F(0.001), c.get(paru)))))
                    set_inv(c.get(par))
                    dx, sv = size()
                    c.set(dxnorm, dx)
                    c.set(s, sv)
                    prev = c.get(fp)
                    fpv = b.fsub(dx, dl)
                    c.set(fp, fpv)
                    stop = b.or_(b.or_(
                        c.le(c.abs(fpv), mul(F(0.1), dl)),
                        b.and_(c.eq(c.get(parl), F(0.0)),
                               b.and_(c.le(fpv, prev), c.lt(prev, F(0.0))))),
                        b.or_(b.icmp_signed("==", c.get(k), I(9)),
                              b.not_(c.lt(F(0.0), sv))))
                    c.if_(stop, brk)
                    parc = div(mul(mul(fpv, dx), dx), mul(dl, sv))
                    c.if_(c.lt(F(0.0), fpv),
                          lambda: c.set(parl, c.max(c.get(parl), c.get(par))),
                          lambda: c.if_(c.lt(fpv, F(0.0)),
                                        lambda: c.set(paru, c.min(c.get(paru), c.get(par)))))
                    c.set(par, c.max(c.get(parl), add(c.get(par), parc)))
                    c.set(k, b.add(c.get(k), I(1)))
                c.loop(newton)
            c.if_(c.le(c.get(fp), mul(F(0.1), dl)), lambda: c.set(par, F(0.0)), damped)
            # scaled step hs = -(V (inv * c))
            each(lambda r: c.st(b.fneg(c.sum(P, lambda i: mul(c.ld(V, ix(r, i)), mul(
                c.ld(inv, i), c.ld(cv, i))))), hs, r))
            pnorm = c.sqrt(c.sum(P, lambda j: mul(c.ld(hs, j), c.ld(hs, j))))
            c.if_(c.get(first), lambda: c.set(delta, c.min(c.get(delta), pnorm)))
            c.if_(b.icmp_signed(">=", c.get(it), budget), lambda: finish(MAX_ITER, c.get(f)))
            c.if_(has_clock, lambda: c.if_(c.lt(c.get(deadline), now()),
                                           lambda: finish(TIME_LIMIT, c.get(f))))
            c.set(it, b.add(c.get(it), I(1)))

            def trial(j: ir.Value) -> None:
                hj = div(c.ld(hs, j), c.ld(D, j))
                c.st(hj, h, j)
                c.st(add(c.ld(p, j), hj), pn, j)
            each(trial)
            ok = call_eval(pn, fnp, gn, An)
            fnv = c.get(fnp)
            fnorm1 = b.select(ok, c.sqrt(fnv), inf)
            fno = c.get(fnorm)
            r1 = div(fnorm1, fno)
            actred = b.select(c.lt(mul(F(0.1), fnorm1), fno), b.fsub(F(1.0), mul(r1, r1)),
                              F(-1.0))
            hAh = c.sum(P, lambda r: mul(c.ld(h, r), c.sum(P, lambda q: mul(
                c.ld(A, ix(r, q)), c.ld(h, q)))))
            t1 = div(c.sqrt(c.max(hAh, F(0.0))), fno)
            t2 = div(mul(c.sqrt(c.get(par)), pnorm), fno)
            prered = add(mul(t1, t1), div(mul(t2, t2), F(0.5)))
            dirder = b.fneg(add(mul(t1, t1), mul(t2, t2)))
            nz = b.fcmp_unordered("une", prered, F(0.0))
            ratio = b.select(nz, div(actred, b.select(nz, prered, F(1.0))), F(0.0))

            def low() -> None:
                temp0 = b.select(b.fcmp_ordered(">=", actred, F(0.0)), F(0.5),
                                 div(mul(F(0.5), dirder), add(dirder, mul(F(0.5), actred))))
                clampt = b.or_(b.fcmp_ordered(">=", mul(F(0.1), fnorm1), fno),
                               c.lt(temp0, F(0.1)))
                temp = b.select(clampt, F(0.1), temp0)
                c.set(delta, mul(temp, c.min(c.get(delta), div(pnorm, F(0.1)))))
                c.set(par, div(c.get(par), temp))

            def high() -> None:
                c.if_(b.or_(c.eq(c.get(par), F(0.0)), b.fcmp_ordered(">=", ratio, F(0.75))),
                      lambda: (c.set(delta, div(pnorm, F(0.5))),
                               c.set(par, mul(c.get(par), F(0.5)))))
            c.if_(c.le(ratio, F(0.25)), low, high)
            accepted = b.fcmp_ordered(">=", ratio, F(1e-4))

            def accept() -> None:
                copy(p, pn, P)
                copy(g, gn, P)
                copy(A, An, PP)
                c.set(f, fnv)
                c.set(fnorm, fnorm1)
                col_norms()
                c.set(xnorm, xnorm_of())
                c.set(first, ir.Constant(_I1, 0))
            c.if_(accepted, accept)
            fv, dv, xv = c.get(f), c.get(delta), c.get(xnorm)
            half = c.le(mul(F(0.5), ratio), F(1.0))
            conv = b.or_(b.or_(
                c.eq(fv, F(0.0)),
                b.and_(b.and_(c.le(c.abs(actred), tol), c.le(prered, tol)), half)),
                b.or_(b.or_(c.le(dv, mul(tol, xv)), c.le(dv, mul(F(_EPS), xv))),
                      b.or_(c.lt(dv, F(_DWARF)),
                            b.and_(b.and_(c.le(c.abs(actred), F(_EPS)),
                                          c.le(prered, F(_EPS))), half))))
            c.if_(conv, lambda: finish(CONVERGED, c.get(f)))
            c.if_(accepted, brk_inner)
        c.loop(inner)
    c.loop(outer)
    b.ret_void()
    return fn


def emit_lm(module: ir.Module, normal: ir.Function, rows_per_block: int) -> ir.Function:
    """`g0_lm`: take problems k = counter++ until K; problem k fits packed candidate table[k]
    from starts[k] (its first P of Pm values) within budgets[k] trial steps and writes
    res_p[k], res_f[k] (Σ w r²), res_it[k], res_status[k].  `rows_per_block` is the lane
    count of the interpreter's partial sums; `work` holds work_size(Pm) doubles."""
    ev = _emit_eval(module, normal, rows_per_block)
    jac = _emit_jacobi(module)
    one = _emit_one(module, ev, jac)
    types = {"i64": _I64, "i64p": _I64P, "f64p": _PTR, "f64": _F64}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in LM_ARGS]),
                     name="g0_lm")
    (K, table, starts, Pm, budgets, X, ldx, Y, Wt, n, vals, adj, jbuf, out, work, tol, factor,
     counter, res_p, res_f, res_it, res_status, clock, limits) = fn.args
    c = _LMFlow(fn)
    b = c.b
    width = len(("fills", "nfill", "fwd", "nfwd", "rev", "nrev", "pslots", "P", "pool", "root",
                 "nslots"))

    def take(brk: Callable[[], None]) -> None:
        k = b.atomic_rmw("add", counter, c.i(1), "monotonic")
        c.if_(b.icmp_signed(">=", k, K), brk)
        row = b.gep(table, [b.mul(k, c.i(width))])
        P = b.load(b.gep(row, [c.i(7)]))
        base = b.mul(k, Pm)
        b.call(one, [row, b.gep(starts, [base]), P, c.ld(budgets, k), X, ldx, Y, Wt, n, vals,
                     adj, jbuf, out, work, tol, factor, b.gep(res_p, [base]),
                     b.gep(res_f, [k]), b.gep(res_it, [k]), b.gep(res_status, [k]), clock,
                     limits])
    c.loop(take)
    b.ret_void()
    return fn
