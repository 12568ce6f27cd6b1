"""LLVM IR of dynamical systems: a system's right-hand side as one function
`void rhs(double t, const double *y, const double *p, double *dydt)` (shared subterms computed
once), its column-batched form, and the compiled-once integrator driver (Dormand–Prince 5(4)
with Hairer's step control and dense output; fixed-step classical RK4) that calls a right-hand
side through a function pointer, one problem after another, taking problems from a shared
atomic counter so several threads share a population.
"""

from __future__ import annotations

from typing import Any, Callable

from llvmlite import ir

from symcore.errors import CompileError
from symcore.codegen.llvm.irflow import Flow, ScalarFlow
from symcore.codegen.llvm.lower import lower_powi, lowering
from symcore.codegen.llvm.values import literal
from symcore.dynamics import System

__all__ = ["emit_rhs", "emit_rhs_batch", "emit_driver", "RHS_TYPE", "DRIVER", "STATUSES",
           "OK", "NON_FINITE", "STEP_LIMIT", "STEP_TOO_SMALL", "METHODS"]

_F64 = ir.DoubleType()
_I64 = ir.IntType(64)
_I1 = ir.IntType(1)
_VOID = ir.VoidType()
_PTR = _F64.as_pointer()
_I64P = _I64.as_pointer()

RHS_TYPE = ir.FunctionType(_VOID, [_F64, _PTR, _PTR, _PTR])

#: per-problem status written by the driver (index into STATUSES)
OK, NON_FINITE, STEP_LIMIT, STEP_TOO_SMALL = 0, 1, 2, 3
STATUSES = ("ok", "non-finite", "step-limit", "step-too-small")
#: method codes of the driver
METHODS = {"dopri5": 0, "rk4": 1}
#: name of the driver function
DRIVER = "symcore_ode_run"

_UROUND = 2.220446049250313e-16


def _rhs_body(b: ir.IRBuilder, sysm: System, t: ir.Value, y: ir.Value, p: ir.Value,
              dydt: ir.Value) -> None:
    """Stores dy/dt of every component; every distinct node of the system is one value."""
    flat = sysm.flat
    rows = flat.rows
    need = [False] * len(rows)
    roots = [flat.index[e] for e in sysm.exprs]
    for r in roots:
        need[r] = True
    for i in range(len(rows) - 1, -1, -1):
        op, kids, _ = rows[i]
        if not need[i]:
            continue
        if op == "powi":
            need[kids[0]] = True     # the exponent stays a literal integer in the code
        else:
            for k in kids:
                need[k] = True
    vals: list[Any] = [None] * len(rows)
    loads: dict[tuple[str, int], ir.Value] = {}

    def load(kind: str, base: ir.Value, idx: int) -> ir.Value:
        v = loads.get((kind, idx))
        if v is None:
            ptr = b.gep(base, [ir.Constant(_I64, idx)], inbounds=True)
            v = loads[(kind, idx)] = b.load(ptr, name=f"{kind}{idx}")
        return v

    n = sysm.n
    for i, (op, kids, val) in enumerate(rows):
        if not need[i]:
            continue
        if op == "var":
            col = val[0] if isinstance(val, tuple) else val
            vals[i] = t if col == n else load("y", y, int(col))
        elif op == "param":
            vals[i] = load("p", p, int(val))
        elif op == "const":
            vals[i] = literal(_F64, float(val))
        elif op == "powi":
            vals[i] = lower_powi(b, vals[kids[0]], int(rows[kids[1]][2]))
        else:
            vals[i] = lowering(op)(b, *(vals[k] for k in kids))
    for j, r in enumerate(roots):
        b.store(vals[r], b.gep(dydt, [ir.Constant(_I64, j)], inbounds=True))


def emit_rhs(module: ir.Module, name: str, sysm: System, internal: bool = False) -> ir.Function:
    """`void name(double t, const double *y, const double *p, double *dydt)`."""
    fn = ir.Function(module, RHS_TYPE, name=name)
    if internal:
        fn.linkage = "internal"
    t, y, p, d = fn.args
    t.name, y.name, p.name, d.name = "t", "y", "p", "dydt"
    for a in (y, p, d):
        a.add_attribute("noalias")
    fn.attributes.add("nounwind")
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    try:
        _rhs_body(b, sysm, t, y, p, d)
    except KeyError as err:
        raise CompileError(f"cannot lower the system: {err}") from None
    b.ret_void()
    return fn


def emit_rhs_batch(module: ir.Module, name: str, rhs: ir.Function, n: int) -> ir.Function:
    """`void name(int64 k, double t, const double *Y, const double *p, double *out)`: dy/dt for
    k states stored column-wise (Y is n x k row-major, SciPy's vectorised layout), out alike."""
    fn = ir.Function(module, ir.FunctionType(_VOID, [_I64, _F64, _PTR, _PTR, _PTR]), name=name)
    k, t, Y, p, out = fn.args
    k.name, t.name, Y.name, p.name, out.name = "k", "t", "Y", "p", "out"
    F = Flow(fn)
    b = F.b
    arr = ir.ArrayType(_F64, n)
    with b.goto_entry_block():
        ys = b.alloca(arr, name="y")
        ds = b.alloca(arr, name="d")
    y0 = b.gep(ys, [ir.Constant(_I64, 0), ir.Constant(_I64, 0)])
    d0 = b.gep(ds, [ir.Constant(_I64, 0), ir.Constant(_I64, 0)])

    def col(c: ir.Value) -> None:
        for i in range(n):
            off = b.add(b.mul(ir.Constant(_I64, i), k), c)
            b.store(b.load(b.gep(Y, [off])), b.gep(y0, [ir.Constant(_I64, i)]))
        b.call(rhs, [t, y0, p, d0])
        for i in range(n):
            off = b.add(b.mul(ir.Constant(_I64, i), k), c)
            b.store(b.load(b.gep(d0, [ir.Constant(_I64, i)])), b.gep(out, [off]))
    F.for_(ir.Constant(_I64, 0), k, col)
    b.ret_void()
    return fn


# -- the integrator --------------------------------------------------------------------------

class _OdeFlow(ScalarFlow):
    """`ScalarFlow` plus pow/ceil and loops over the n state components."""

    def __init__(self, fn: ir.Function, n: ir.Value) -> None:
        super().__init__(fn)
        m = fn.module
        self.n = n
        self._pow = m.declare_intrinsic("llvm.pow", [_F64])
        self._ceil = m.declare_intrinsic("llvm.ceil", [_F64])

    def pow(self, x: ir.Value, y: ir.Value) -> ir.Value:
        return self.b.call(self._pow, [x, y])

    def ceil(self, x: ir.Value) -> ir.Value:
        return self.b.call(self._ceil, [x])

    def each(self, body: Callable[[ir.Value], None]) -> None:
        self.for_(self.i(0), self.n, body, name="comp")

    def total(self, term: Callable[[ir.Value], ir.Value]) -> ir.Value:
        acc = self.local(self.f(0.0))
        self.each(lambda j: self.set(acc, self.b.fadd(self.get(acc), term(j))))
        return self.get(acc)

    def all_finite(self, arr: ir.Value) -> ir.Value:
        """True when every component of arr is finite (a sum of x*0 is NaN otherwise)."""
        s = self.total(lambda j: self.b.fmul(self.ld(arr, j), self.f(0.0)))
        return self.b.fcmp_ordered("==", s, self.f(0.0))

    def combo(self, dst: ir.Value, y: ir.Value, h: ir.Value,
              terms: list[tuple[float, ir.Value]]) -> None:
        """dst = y + h * sum(c * k) componentwise."""
        b = self.b

        def body(j: ir.Value) -> None:
            acc = None
            for c, k in terms:
                v = b.fmul(self.f(c), self.ld(k, j))
                acc = v if acc is None else b.fadd(acc, v)
            assert acc is not None
            self.st(b.fadd(self.ld(y, j), b.fmul(h, acc)), dst, j)
        self.each(body)


# Dormand & Prince (1980) 5(4) tableau, error and dense-output coefficients (Hairer's DOPRI5)
_C2, _C3, _C4, _C5 = 1 / 5, 3 / 10, 4 / 5, 8 / 9
_A21 = 1 / 5
_A31, _A32 = 3 / 40, 9 / 40
_A41, _A42, _A43 = 44 / 45, -56 / 15, 32 / 9
_A51, _A52, _A53, _A54 = 19372 / 6561, -25360 / 2187, 64448 / 6561, -212 / 729
_A61, _A62, _A63, _A64, _A65 = 9017 / 3168, -355 / 33, 46732 / 5247, 49 / 176, -5103 / 18656
_A71, _A73, _A74, _A75, _A76 = 35 / 384, 500 / 1113, 125 / 192, -2187 / 6784, 11 / 84
_E1, _E3, _E4, _E5, _E6, _E7 = (71 / 57600, -71 / 16695, 71 / 1920, -17253 / 339200, 22 / 525,
                                -1 / 40)
_D1, _D3, _D4, _D5, _D6, _D7 = (-12715105075 / 11282082432, 87487479700 / 32700410799,
                                -10690763975 / 1880347072, 701980252875 / 199316789632,
                                -1453857185 / 822651844, 69997945 / 29380423)
#: Hairer's step control: safety factor, step ratio bounds (1/FAC1 .. 1/FAC2), PI exponents
_SAFE, _FAC1, _FAC2, _BETA = 0.9, 0.2, 10.0, 0.04
_EXPO1 = 0.2 - _BETA * 0.75

#: per-problem workspace: y, y1, yt, k1..k7, ydiff, bspl, r4, r5 (n doubles each)
WORK_VECTORS = 14

_PROBLEM_ARGS = [ir.PointerType(RHS_TYPE), _PTR, _PTR, _I64, _PTR, _I64, _PTR, _F64, _F64, _I64,
                 _F64, _PTR, _I64P, _I64P]


def _problem_fn(module: ir.Module, name: str) -> tuple[ir.Function, _OdeFlow, list[ir.Value]]:
    fn = ir.Function(module, ir.FunctionType(_VOID, _PROBLEM_ARGS), name=name)
    fn.linkage = "internal"
    args = list(fn.args)
    for a, nm in zip(args, ["rhs", "p", "y0", "n", "ts", "nt", "out", "rtol", "atol",
                            "max_steps", "hmax", "work", "status", "nsteps"]):
        a.name = nm
    return fn, _OdeFlow(fn, args[3]), args


def _emit_dopri5(module: ir.Module) -> ir.Function:
    """One initial value problem by DOPRI5 (Hairer, Nørsett & Wanner, II.5 and the code
    dopri5.f): initial step guess, PI step-size control, FSAL, dense output at every requested
    time of ts[1..nt) (ts[0] is the start, out[0] = y0, ts increasing)."""
    fn, F, (rhs, p, y0, n, ts, nt, out, rtol, atol, max_steps, hmax_in, w, status,
            nsteps) = _problem_fn(module, "ode_dopri5")
    b = F.b
    vec = [b.gep(w, [b.mul(F.i(j), n)]) for j in range(WORK_VECTORS)]
    y, y1, yt, k1, k2, k3, k4, k5, k6, k7, ydiff, bspl, r4, r5 = vec

    def call(tv: ir.Value, yv: ir.Value, dv: ir.Value) -> None:
        b.call(rhs, [tv, yv, p, dv])

    def stop(code: int, steps: ir.Value) -> None:
        b.store(F.i(code), status)
        b.store(steps, nsteps)
        F.ret()

    F.each(lambda j: (F.st(F.ld(y0, j), y, j), F.st(F.ld(y0, j), out, j)))
    t0 = F.ld(ts, F.i(0))
    tend = F.ld(ts, b.sub(nt, F.i(1)))
    hmax = F.min(hmax_in, F.abs(b.fsub(tend, t0)))
    call(t0, y, k1)
    F.if_(b.not_(F.all_finite(k1)), lambda: stop(NON_FINITE, F.i(0)))

    # initial step (Hairer's hinit, order 5)
    def sk0(j: ir.Value) -> ir.Value:
        return b.fadd(atol, b.fmul(rtol, F.abs(F.ld(y, j))))

    def sq(x: ir.Value) -> ir.Value:
        return b.fmul(x, x)
    dnf = F.total(lambda j: sq(b.fdiv(F.ld(k1, j), sk0(j))))
    dny = F.total(lambda j: sq(b.fdiv(F.ld(y, j), sk0(j))))
    tiny = b.or_(b.fcmp_ordered("<=", dnf, F.f(1e-10)), b.fcmp_ordered("<=", dny, F.f(1e-10)))
    h = F.local(b.select(tiny, F.f(1e-6), b.fmul(F.sqrt(b.fdiv(dny, dnf)), F.f(0.01))), "h")
    F.set(h, F.min(F.get(h), hmax))
    F.combo(yt, y, F.get(h), [(1.0, k1)])
    call(b.fadd(t0, F.get(h)), yt, k2)
    der2 = b.fdiv(F.sqrt(F.total(lambda j: sq(b.fdiv(b.fsub(F.ld(k2, j), F.ld(k1, j)),
                                                        sk0(j))))), F.get(h))
    der12 = F.max(F.abs(der2), F.sqrt(dnf))
    h1 = b.select(b.fcmp_ordered("<=", der12, F.f(1e-15)),
                  F.max(F.f(1e-6), b.fmul(F.abs(F.get(h)), F.f(1e-3))),
                  F.pow(b.fdiv(F.f(0.01), der12), F.f(0.2)))
    F.set(h, F.min(F.min(b.fmul(F.f(100.0), F.get(h)), h1), hmax))
    # a non-finite guess (NaN rates): start from the whole interval and let rejection shrink it
    F.if_(b.not_(F.finite(F.get(h))), lambda: F.set(h, hmax))

    t = F.local(t0, "t")
    jout = F.local(F.i(1), "jout")
    facold = F.local(F.f(1e-4), "facold")
    reject = F.local(ir.Constant(_I1, 0), "reject")
    last = F.local(ir.Constant(_I1, 0), "last")
    nstep = F.local(F.i(0), "nstep")
    nf = b.sitofp(n, _F64)

    def step(brk: Callable[[], None]) -> None:
        F.if_(b.icmp_signed(">=", F.get(nstep), max_steps),
              lambda: stop(STEP_LIMIT, F.get(nstep)))
        F.if_(b.fcmp_ordered("<=", b.fmul(F.f(0.1), F.abs(F.get(h))),
                             b.fmul(F.abs(F.get(t)), F.f(_UROUND))),
              lambda: stop(STEP_TOO_SMALL, F.get(nstep)))
        tc = F.get(t)

        def clip() -> None:
            F.set(h, b.fsub(tend, tc))
            F.set(last, ir.Constant(_I1, 1))
        F.if_(b.fcmp_ordered(">", b.fsub(b.fadd(tc, b.fmul(F.f(1.01), F.get(h))), tend),
                             F.f(0.0)), clip)
        F.set(nstep, b.add(F.get(nstep), F.i(1)))
        hv = F.get(h)
        F.combo(yt, y, hv, [(_A21, k1)])
        call(b.fadd(tc, b.fmul(F.f(_C2), hv)), yt, k2)
        F.combo(yt, y, hv, [(_A31, k1), (_A32, k2)])
        call(b.fadd(tc, b.fmul(F.f(_C3), hv)), yt, k3)
        F.combo(yt, y, hv, [(_A41, k1), (_A42, k2), (_A43, k3)])
        call(b.fadd(tc, b.fmul(F.f(_C4), hv)), yt, k4)
        F.combo(yt, y, hv, [(_A51, k1), (_A52, k2), (_A53, k3), (_A54, k4)])
        call(b.fadd(tc, b.fmul(F.f(_C5), hv)), yt, k5)
        F.combo(yt, y, hv, [(_A61, k1), (_A62, k2), (_A63, k3), (_A64, k4), (_A65, k5)])
        tph = b.select(F.get(last), tend, b.fadd(tc, hv))
        call(tph, yt, k6)
        F.combo(y1, y, hv, [(_A71, k1), (_A73, k3), (_A74, k4), (_A75, k5), (_A76, k6)])
        call(tph, y1, k7)

        def err_term(j: ir.Value) -> ir.Value:
            e = b.fmul(hv, b.fadd(b.fadd(b.fadd(b.fmul(F.f(_E1), F.ld(k1, j)),
                                                b.fmul(F.f(_E3), F.ld(k3, j))),
                                         b.fadd(b.fmul(F.f(_E4), F.ld(k4, j)),
                                                b.fmul(F.f(_E5), F.ld(k5, j)))),
                                  b.fadd(b.fmul(F.f(_E6), F.ld(k6, j)),
                                         b.fmul(F.f(_E7), F.ld(k7, j)))))
            sk = b.fadd(atol, b.fmul(rtol, F.max(F.abs(F.ld(y, j)), F.abs(F.ld(y1, j)))))
            return sq(b.fdiv(e, sk))
        err = F.sqrt(b.fdiv(F.total(err_term), nf))
        fac11 = F.pow(err, F.f(_EXPO1))
        fac = b.fdiv(fac11, F.pow(F.get(facold), F.f(_BETA)))
        fac = F.max(F.f(1.0 / _FAC2), F.min(F.f(1.0 / _FAC1), b.fdiv(fac, F.f(_SAFE))))
        hnew = F.local(b.fdiv(hv, fac), "hnew")

        def accept() -> None:
            F.set(facold, F.max(err, F.f(1e-4)))

            def coeffs(j: ir.Value) -> None:
                yd = b.fsub(F.ld(y1, j), F.ld(y, j))
                bs = b.fsub(b.fmul(hv, F.ld(k1, j)), yd)
                F.st(yd, ydiff, j)
                F.st(bs, bspl, j)
                F.st(b.fsub(b.fsub(yd, b.fmul(hv, F.ld(k7, j))), bs), r4, j)
                s = b.fadd(b.fadd(b.fmul(F.f(_D1), F.ld(k1, j)), b.fmul(F.f(_D3), F.ld(k3, j))),
                           b.fadd(b.fmul(F.f(_D4), F.ld(k4, j)), b.fmul(F.f(_D5), F.ld(k5, j))))
                s = b.fadd(s, b.fadd(b.fmul(F.f(_D6), F.ld(k6, j)),
                                     b.fmul(F.f(_D7), F.ld(k7, j))))
                F.st(b.fmul(hv, s), r5, j)

            def dense(brk_d: Callable[[], None]) -> None:
                jo = F.get(jout)
                F.if_(b.icmp_signed(">=", jo, nt), brk_d)
                tj = F.ld(ts, jo)
                F.if_(b.and_(b.not_(F.get(last)), b.fcmp_ordered(">", tj, tph)), brk_d)
                th = b.fdiv(b.fsub(tj, tc), hv)
                th1 = b.fsub(F.f(1.0), th)
                row = b.mul(jo, n)

                def comp(j: ir.Value) -> None:
                    # y(t + θh) = y + θ(ydiff + (1-θ)(bspl + θ(r4 + (1-θ) r5)))
                    v = b.fadd(F.ld(r4, j), b.fmul(th1, F.ld(r5, j)))
                    v = b.fadd(F.ld(bspl, j), b.fmul(th, v))
                    v = b.fadd(F.ld(ydiff, j), b.fmul(th1, v))
                    F.st(b.fadd(F.ld(y, j), b.fmul(th, v)), out, b.add(row, j))
                F.each(comp)
                F.set(jout, b.add(jo, F.i(1)))
            F.if_(b.icmp_signed("<", F.get(jout), nt), lambda: (F.each(coeffs), F.loop(dense)))
            F.each(lambda j: (F.st(F.ld(y1, j), y, j), F.st(F.ld(k7, j), k1, j)))
            F.set(t, tph)
            F.if_(b.not_(b.and_(F.all_finite(y), F.all_finite(k1))),
                  lambda: stop(NON_FINITE, F.get(nstep)))
            F.if_(F.get(last), lambda: stop(OK, F.get(nstep)))
            F.set(hnew, F.min(F.get(hnew), hmax))
            F.if_(F.get(reject), lambda: F.set(hnew, F.min(F.get(hnew), hv)))
            F.set(reject, ir.Constant(_I1, 0))

        def rejected() -> None:
            F.set(hnew, b.fdiv(hv, F.min(F.f(1.0 / _FAC1), b.fdiv(fac11, F.f(_SAFE)))))
            F.set(reject, ir.Constant(_I1, 1))
            F.set(last, ir.Constant(_I1, 0))
        F.if_(b.fcmp_ordered("<=", err, F.f(1.0)), accept, rejected)
        F.set(h, F.get(hnew))
    F.loop(step)
    stop(OK, F.get(nstep))
    b.ret_void()
    return fn


def _emit_rk4(module: ir.Module) -> ir.Function:
    """Classical fixed-step RK4: every output interval [ts[j-1], ts[j]] in ceil(Δ/hmax) equal
    steps (one step when hmax is infinite)."""
    fn, F, (rhs, p, y0, n, ts, nt, out, rtol, atol, max_steps, hmax, w, status,
            nsteps) = _problem_fn(module, "ode_rk4")
    b = F.b
    vec = [b.gep(w, [b.mul(F.i(j), n)]) for j in range(WORK_VECTORS)]
    y, y1, yt, k1, k2, k3, k4 = vec[:7]
    nstep = F.local(F.i(0), "nstep")

    def stop(code: int) -> None:
        b.store(F.i(code), status)
        b.store(F.get(nstep), nsteps)
        F.ret()

    F.each(lambda j: (F.st(F.ld(y0, j), y, j), F.st(F.ld(y0, j), out, j)))
    limit = b.sitofp(b.add(max_steps, F.i(1)), _F64)

    def interval(jo: ir.Value) -> None:
        ta = F.ld(ts, b.sub(jo, F.i(1)))
        dt = b.fsub(F.ld(ts, jo), ta)
        m = F.min(F.max(F.ceil(b.fdiv(dt, hmax)), F.f(1.0)), limit)
        hh = b.fdiv(dt, m)
        half = b.fmul(hh, F.f(0.5))

        def sub(s: ir.Value) -> None:
            F.if_(b.icmp_signed(">=", F.get(nstep), max_steps), lambda: stop(STEP_LIMIT))
            tc = b.fadd(ta, b.fmul(b.sitofp(s, _F64), hh))
            b.call(rhs, [tc, y, p, k1])
            F.combo(yt, y, half, [(1.0, k1)])
            b.call(rhs, [b.fadd(tc, half), yt, p, k2])
            F.combo(yt, y, half, [(1.0, k2)])
            b.call(rhs, [b.fadd(tc, half), yt, p, k3])
            F.combo(yt, y, hh, [(1.0, k3)])
            b.call(rhs, [b.fadd(tc, hh), yt, p, k4])
            F.combo(y1, y, hh, [(1 / 6, k1), (1 / 3, k2), (1 / 3, k3), (1 / 6, k4)])
            F.each(lambda j: F.st(F.ld(y1, j), y, j))
            F.set(nstep, b.add(F.get(nstep), F.i(1)))
        F.for_(F.i(0), b.fptosi(m, _I64), sub, name="sub")
        F.if_(b.not_(F.all_finite(y)), lambda: stop(NON_FINITE))
        row = b.mul(jo, n)
        F.each(lambda j: F.st(F.ld(y, j), out, b.add(row, j)))
    F.for_(F.i(1), nt, interval, name="out")
    stop(OK)
    b.ret_void()
    return fn


def emit_driver(module: ir.Module) -> ir.Function:
    """`DRIVER(K, fns, pars, y0, n, ts, nt, out, status, nsteps, rtol, atol, max_steps, hmax,
    method, work, counter)`: problems k = atomic counter++ < K, problem k integrating
    rhs fns[k] (an address) with parameters pars[k] from y0[k*n..] into out[k*nt*n..]."""
    d5 = _emit_dopri5(module)
    r4 = _emit_rk4(module)
    fn = ir.Function(module, ir.FunctionType(_VOID, [
        _I64, _I64P, _I64P, _PTR, _I64, _PTR, _I64, _PTR, _I64P, _I64P, _F64, _F64, _I64, _F64,
        _I64, _PTR, _I64P]), name=DRIVER)
    (K, fns, pars, y0, n, ts, nt, out, status, nsteps, rtol, atol, max_steps, hmax, method,
     work, counter) = fn.args
    F = _OdeFlow(fn, n)
    b = F.b

    def take(brk: Callable[[], None]) -> None:
        k = b.atomic_rmw("add", counter, F.i(1), "monotonic")
        F.if_(b.icmp_signed(">=", k, K), brk)
        f = b.inttoptr(F.ld(fns, k), ir.PointerType(RHS_TYPE))
        pp = b.inttoptr(F.ld(pars, k), _PTR)
        args = [f, pp, b.gep(y0, [b.mul(k, n)]), n, ts, nt,
                b.gep(out, [b.mul(k, b.mul(nt, n))]), rtol, atol, max_steps, hmax, work,
                b.gep(status, [k]), b.gep(nsteps, [k])]
        F.if_(b.icmp_signed("==", method, F.i(METHODS["rk4"])),
              lambda: b.call(r4, args), lambda: b.call(d5, args))
    F.loop(take)
    b.ret_void()
    return fn
