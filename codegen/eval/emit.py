"""Tier-1 kernel IR, written as text (no JIT here): one fused row loop per expression, and the
driver, compiled once per dtype, that runs a candidate range through a table of kernels and
reduces the fitness.

Kernel ABI (T = double or float, W lanes):
    void k(T* X, i64 ldx, i64 i0, i64 i1, double* consts, double* params, T* out)
computes the rows [i0, i1) (multiples of W, i0 < i1 <= ldx) of X, which is column-major
(features × ldx, padded rows readable), into out[i - i0].  Constants and parameters are read
from arrays (cast to T like the reference does), so the code depends on the structure only.

Driver ABI:
    void run(i64 c0, i64 c1, i8** kernels, T* X, i64 ldx, i64 n, double* y, double* w,
             double* consts, i64* const_off, double* params, i64* param_off,
             T* out, i64 ldo, double* acc)
for every candidate c of [c0, c1): if `out` is not null, its predictions of the n rows go to
out + c·ldo (exactly n values: the last partial block goes through a buffer).  Otherwise
acc[2c], acc[2c+1] get Σ w·(p − y)² and Σ w·|p − y| over the n real rows, in float64 (padded
lanes masked, on the last chunk only; a null w means unit weights): rows are the outer loop (a
first short chunk, then CHUNK rows at a time) and candidates the inner one, so one chunk of X,
y and w stays in L1 while every candidate of the range reads it (candidate-outer order
re-streamed X from L3 per candidate at large N); each candidate evaluates a chunk into an
L1-resident buffer and adds the chunk's sums to its acc.  Once Σ w·|p − y| is not finite both
sums are +inf and the candidate skips its remaining chunks: a non-finite prediction makes the
loss +inf without more work.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from llvmlite import ir

from symcore.ir import Flat

from symcore.codegen.llvm.lower import lower_expr, needed_rows
from symcore.codegen.llvm.textbuilder import TextBuilder, TextValue, _ref, _ts

__all__ = ["kernel_type", "emit_kernel", "emit_driver", "const_slots", "declarations",
           "TextBuilder", "TextValue", "CHUNK"]

I64 = ir.IntType(64)
I32 = ir.IntType(32)
F64 = ir.DoubleType()
#: rows per chunk when scoring: predictions of one chunk stay in L1 until they are reduced
CHUNK = 512
#: rows of a candidate's first chunk: small, so a candidate that is non-finite from the start
#: (common in a search) costs little
FIRST_CHUNK = 64


def _t(dtype: str) -> ir.Type:
    return F64 if dtype == "float64" else ir.FloatType()


def kernel_type(dtype: str) -> ir.FunctionType:
    """LLVM type of one tier-1 kernel."""
    t = _t(dtype)
    return ir.FunctionType(ir.VoidType(), [t.as_pointer(), I64, I64, I64, F64.as_pointer(),
                                           F64.as_pointer(), t.as_pointer()])


def const_slots(flat: Flat) -> list[int]:
    """Rows of `flat` whose constant is read from the constants array, in array order (every
    constant needed as a value; powi exponents are code)."""
    need = needed_rows(flat)
    return [i for i, (op, _, _) in enumerate(flat.rows) if op == "const" and need[i]]


def _bits(v: float) -> bytes:
    # constants are distinct rows by bit pattern (0.0 and -0.0 differ; one NaN)
    return struct.pack("<d", math.nan if math.isnan(v) else v)


def declarations(module: ir.Module, helpers: bool = True) -> str:
    """`declare` lines of every function declared in `module` (what the lowering calls), and
    (with `helpers`) module-local definitions of the vecmath helpers it calls; without, those
    are declared too and must come from `helper_module` linked alongside."""
    out: dict[str, str] = {}
    defs = []
    for g in list(module.globals.values()):
        if not (isinstance(g, ir.Function) and g.is_declaration):
            continue
        h = _helper_text(g.name) if helpers else None
        if h is None:
            out[g.name] = str(g).strip()
            continue
        defs.append(h[0])
        out.update(h[1])
        if g.name.endswith(".v16f64"):   # its slow path calls the 8-lane helper
            h8 = _helper_text(g.name[:-len("v16f64")] + "v8f64")
            if h8 is not None and g.name[:-len("v16f64")] + "v8f64" not in module.globals:
                defs.append(h8[0])
                out.update(h8[1])
    return "\n".join([*out.values(), *defs])


def helper_module() -> str:
    """Text of a module defining every vecmath helper (vecmath.INLINE) with external linkage,
    for kernels written with `declarations(module, helpers=False)`."""
    from symcore.codegen.llvm.vecmath import INLINE, helper_name
    out: dict[str, str] = {}
    defs = []
    for fn in INLINE:
        for lanes in (8, 16):
            h = _helper_text(helper_name(fn, lanes))
            assert h is not None
            defs.append(h[0].replace("define internal ", "define ", 1))
            out.update(h[1])
    return "\n".join([*out.values(), *defs])


_HELPERS: dict[str, tuple[str, dict[str, str]] | None] = {}


def _helper_text(name: str) -> tuple[str, dict[str, str]] | None:
    """(definition, its declarations by name) of a vecmath helper function, None for others."""
    if name in _HELPERS:
        return _HELPERS[name]
    from symcore.codegen.llvm.vecmath import INLINE, helper_name
    hit = next(((f, w) for f in INLINE for w in (8, 16) if helper_name(f, w) == name), None)
    if hit is None:
        _HELPERS[name] = None
        return None
    fn, lanes = hit
    scratch = ir.Module("symcore_helper")
    lines, res, fallback = _helper_body(scratch, fn, lanes)
    vt = f"<{lanes} x double>"
    if fallback is None:
        lines += [f"  ret {vt} {res}"]
    else:
        # a lane outside the fast path: the whole vector through the slow path (rare)
        slow = TextBuilder(scratch, "%s", inline_math="")
        if lanes == 8:   # guarded libmvec
            from symcore.codegen.llvm.vecmath import math_call
            g = _ref(math_call(slow, fn, TextValue(_vec_type("float64", 8), "%x")))
        else:            # each half through the 8-lane helper (which decides per half)
            g = _concat(slow, [_call8(slow, scratch, helper_name(fn, 8), h) for h in
                               ("%x.lo", "%x.hi")])
        lines += [f"  %any.b = bitcast <{lanes} x i1> {fallback} to i{lanes}",
                  f"  %any = icmp ne i{lanes} %any.b, 0",
                  "  br i1 %any, label %slow, label %fast",
                  "fast:", f"  ret {vt} {res}",
                  "slow:", *slow.lines, f"  ret {vt} {g}"]
    decl = {g.name: str(g).strip() for g in scratch.globals.values()
            if isinstance(g, ir.Function) and g.is_declaration and _helper_text(g.name) is None}
    body = "\n".join(lines)
    text = (f"define internal {vt} @\"{name}\"({vt} %x) nounwind {{\n"
            f"entry:\n{body}\n}}\n")
    _HELPERS[name] = (text, decl)
    return _HELPERS[name]


def _call8(tb: "TextBuilder", module: ir.Module, name: str, arg: str) -> str:
    vt = _vec_type("float64", 8)
    if name not in module.globals:
        ir.Function(module, ir.FunctionType(vt, [vt]), name=name)
    return _ref(tb._new(vt, f"call <8 x double> @\"{name}\"(<8 x double> {arg})"))


def _concat(tb: "TextBuilder", halves: list[str], ty: str = "double") -> str:
    mask = ", ".join(f"i32 {j}" for j in range(16))
    return _ref(tb._new(_vec_type("float64", 16), f"shufflevector <8 x {ty}> {halves[0]}, "
                                                  f"<8 x {ty}> {halves[1]}, <16 x i32> <{mask}>"))


def _helper_body(module: ir.Module, fn: str, lanes: int) -> tuple[list[str], str, str | None]:
    """Lines computing the fast path of `fn` on %x (<lanes x double>, 8 or 16), the result's
    reference and the reference of the lanes needing the slow path (None: every lane is exact).
    16 lanes: the two halves' code side by side, for the scheduler to interleave."""
    from symcore.codegen.llvm.vecmath import INLINE
    vty = _vec_type("float64", 8)
    if lanes == 8:
        tb = TextBuilder(module, "%h", inline_math="inline")
        tb.fallback = None    # set by functions whose fast path does not cover every input
        res = INLINE[fn](tb, TextValue(vty, "%x"))
        return tb.lines, _ref(res), (None if tb.fallback is None else _ref(tb.fallback))
    lines = []
    halves = []
    falls = []
    for h, idx in (("lo", range(8)), ("hi", range(8, 16))):
        mask = ", ".join(f"i32 {j}" for j in idx)
        lines.append(f"  %x.{h} = shufflevector <16 x double> %x, <16 x double> undef, "
                     f"<8 x i32> <{mask}>")
        tb = TextBuilder(module, f"%{h}", inline_math="inline")
        tb.fallback = None
        halves.append((tb, INLINE[fn](tb, TextValue(vty, f"%x.{h}"))))
        falls.append(tb.fallback)
    a, b = halves[0][0].lines, halves[1][0].lines
    for i in range(max(len(a), len(b))):   # same code: interleave line by line
        lines += a[i:i + 1] + b[i:i + 1]
    tb = TextBuilder(module, "%j")
    res = _concat(tb, [_ref(halves[0][1]), _ref(halves[1][1])])
    fall = None
    if falls[0] is not None:
        mask = ", ".join(f"i32 {j}" for j in range(16))
        fall = _ref(tb._new(_vec_type("float64", 16), f"shufflevector <8 x i1> "
                                                      f"{_ref(falls[0])}, <8 x i1> "
                                                      f"{_ref(falls[1])}, <16 x i32> <{mask}>"))
    return lines + tb.lines, res, fall


_VEC_TYPES: dict[tuple[str, int], ir.VectorType] = {}


def _vec_type(dtype: str, lanes: int) -> ir.VectorType:
    # one type object per (dtype, lanes): the identity-keyed caches then hit
    vt = _VEC_TYPES.get((dtype, lanes))
    if vt is None:
        vt = _VEC_TYPES[(dtype, lanes)] = ir.VectorType(_t(dtype), lanes)
    return vt


def _fp(v: float, ty: str) -> str:
    return ir.Constant(F64 if ty == "double" else ir.FloatType(), v).get_reference()


def emit_kernel(module: ir.Module, name: str, flat: Flat, dtype: str, lanes: int) -> str:
    """Text of the fused kernel of one expression (ABI in the module docstring); the functions
    it calls are declared in `module` (write them out with `declarations`)."""
    t = "double" if dtype == "float64" else "float"
    vt = f"<{lanes} x {t}>"
    e = 8 if dtype == "float64" else 4
    zs = f"<{lanes} x i32> zeroinitializer"
    vty = _vec_type(dtype, lanes)
    pre: list[str] = []
    loads: list[str] = []
    hoisted: dict[tuple[str, Any], TextValue] = {}
    need = needed_rows(flat)
    k = 0
    for r, (op, _, val) in enumerate(flat.rows):
        if not need[r]:
            continue
        if op in ("const", "param"):
            src, idx = ("%c", k) if op == "const" else ("%p", val)
            tag = f"%{op[0]}{k if op == 'const' else val}"
            k += op == "const"
            s = f"{tag}.s"
            pre.append(f"  {tag}.a = getelementptr double, double* {src}, i64 {idx}")
            pre.append(f"  {s} = load double, double* {tag}.a, align 8")
            if dtype == "float32":   # rounds like the reference's float32(value)
                pre.append(f"  {tag}.t = fptrunc double {s} to float")
                s = f"{tag}.t"
            pre.append(f"  {tag}.i = insertelement {vt} undef, {t} {s}, i32 0")
            pre.append(f"  {tag} = shufflevector {vt} {tag}.i, {vt} undef, {zs}")
            hoisted[(op, val if op == "param" else _bits(val))] = TextValue(vty, tag)
        elif op == "var":
            j = val[0] if isinstance(val, tuple) else val
            if ("var", j) in hoisted:
                continue
            pre.append(f"  %x{j}.o = mul i64 %ldx, {j}")
            pre.append(f"  %x{j} = getelementptr {t}, {t}* %X, i64 %x{j}.o")
            loads.append(f"  %x{j}.a = getelementptr {t}, {t}* %x{j}, i64 %i")
            loads.append(f"  %x{j}.b = bitcast {t}* %x{j}.a to {vt}*")
            loads.append(f"  %x{j}.v = load {vt}, {vt}* %x{j}.b, align {e}")
            hoisted[("var", j)] = TextValue(vty, f"%x{j}.v")

    def leaf(kind: str, value: Any) -> TextValue:
        return hoisted[(kind, _bits(value) if kind == "const" else value)]

    tb = TextBuilder(module)
    res = _ref(lower_expr(tb, flat, leaf))  # type: ignore[arg-type]
    nl = "\n"
    return f"""define void @{name}({t}* noalias %X, i64 %ldx, i64 %i0, i64 %i1, \
double* noalias %c, double* noalias %p, {t}* noalias %out) nounwind {{
entry:
{nl.join(pre)}
  %ni0 = sub i64 0, %i0
  %ob = getelementptr {t}, {t}* %out, i64 %ni0
  br label %head
head:
  %i = phi i64 [%i0, %entry], [%i.next, %head]
{nl.join(loads)}
{nl.join(tb.lines)}
  %o.a = getelementptr {t}, {t}* %ob, i64 %i
  %o.b = bitcast {t}* %o.a to {vt}*
  store {vt} {res}, {vt}* %o.b, align {e}
  %i.next = add i64 %i, {lanes}
  %more = icmp slt i64 %i.next, %i1
  br i1 %more, label %head, label %ret
ret:
  ret void
}}
"""


def emit_driver(name: str, dtype: str, lanes: int, chunk: int = CHUNK) -> str:
    """Text of a whole module holding the driver (ABI in the module docstring)."""
    first = max(lanes, min(chunk, FIRST_CHUNK // lanes * lanes))
    t = "double" if dtype == "float64" else "float"
    vt = f"<{lanes} x {t}>"
    dvt = f"<{lanes} x double>"
    ivt = f"<{lanes} x i64>"
    e = 8 if dtype == "float64" else 4
    zs = f"<{lanes} x i32> zeroinitializer"
    z = "zeroinitializer"
    kt = f"void ({t}*, i64, i64, i64, double*, double*, {t}*)*"
    inf = _fp(float("inf"), "double")
    iota = ", ".join(f"i64 {q}" for q in range(lanes))
    fabs = f"llvm.fabs.v{lanes}f64"
    red = f"llvm.vector.reduce.fadd.v{lanes}f64"

    def cand(c: str, p: str) -> str:
        # kernel, constants and parameters of candidate %{c}, as %{p}k, %{p}cc, %{p}pc
        return f"""  %{p}kp = getelementptr i8*, i8** %ks, i64 %{c}
  %{p}kr = load i8*, i8** %{p}kp, align 8
  %{p}k = bitcast i8* %{p}kr to {kt}
  %{p}co.a = getelementptr i64, i64* %coff, i64 %{c}
  %{p}co = load i64, i64* %{p}co.a, align 8
  %{p}cc = getelementptr double, double* %cs, i64 %{p}co
  %{p}po.a = getelementptr i64, i64* %poff, i64 %{c}
  %{p}po = load i64, i64* %{p}po.a, align 8
  %{p}pc = getelementptr double, double* %ps, i64 %{p}po"""

    def red_loop(tag: str, masked: bool, weighted: bool) -> str:
        # Σ w·d² and Σ w·|d| over one chunk; the mask (rows >= n) only on the last chunk, the
        # weights only when given (null w = unit weights)
        pre = "sel.m" if masked else "sel.u"
        q = f".{tag}"
        lines = [f"red{q}:",
                 f"  %j{q} = phi i64 [%s, %{pre}], [%j.next{q}, %red{q}]",
                 f"  %sq.r{q} = phi {dvt} [{z}, %{pre}], [%sq.n{q}, %red{q}]",
                 f"  %ab.r{q} = phi {dvt} [{z}, %{pre}], [%ab.n{q}, %red{q}]",
                 f"  %jb{q} = sub i64 %j{q}, %s",
                 f"  %pb.a{q} = getelementptr {t}, {t}* %bufp, i64 %jb{q}",
                 f"  %pb.b{q} = bitcast {t}* %pb.a{q} to {vt}*",
                 f"  %pv{q} = load {vt}, {vt}* %pb.b{q}, align {e}",
                 (f"  %pd{q} = fpext {vt} %pv{q} to {dvt}" if dtype == "float32"
                  else f"  %pd{q} = fadd {dvt} %pv{q}, {z}"),   # a copy, for uniform names
                 f"  %y.a{q} = getelementptr double, double* %y, i64 %j{q}",
                 f"  %y.b{q} = bitcast double* %y.a{q} to {dvt}*",
                 f"  %yv{q} = load {dvt}, {dvt}* %y.b{q}, align 8",
                 f"  %d{q} = fsub {dvt} %pd{q}, %yv{q}",
                 f"  %ad{q} = call {dvt} @{fabs}({dvt} %d{q})",
                 f"  %d2{q} = fmul {dvt} %d{q}, %d{q}"]
        sq, ab = f"%d2{q}", f"%ad{q}"
        if weighted:
            lines += [f"  %w.a{q} = getelementptr double, double* %w, i64 %j{q}",
                      f"  %w.b{q} = bitcast double* %w.a{q} to {dvt}*",
                      f"  %wv{q} = load {dvt}, {dvt}* %w.b{q}, align 8",
                      f"  %wd2{q} = fmul {dvt} %wv{q}, %d2{q}",
                      f"  %wad{q} = fmul {dvt} %wv{q}, %ad{q}"]
            sq, ab = f"%wd2{q}", f"%wad{q}"
        if masked:
            lines += [f"  %li.i{q} = insertelement {ivt} undef, i64 %j{q}, i32 0",
                      f"  %li{q} = shufflevector {ivt} %li.i{q}, {ivt} undef, {zs}",
                      f"  %lj{q} = add {ivt} %li{q}, <{iota}>",
                      f"  %live{q} = icmp slt {ivt} %lj{q}, %nv",
                      f"  %sq.s{q} = select <{lanes} x i1> %live{q}, {dvt} {sq}, {dvt} {z}",
                      f"  %ab.s{q} = select <{lanes} x i1> %live{q}, {dvt} {ab}, {dvt} {z}"]
            sq, ab = f"%sq.s{q}", f"%ab.s{q}"
        lines += [f"  %sq.n{q} = fadd {dvt} %sq.r{q}, {sq}",
                  f"  %ab.n{q} = fadd {dvt} %ab.r{q}, {ab}",
                  f"  %j.next{q} = add i64 %j{q}, {lanes}",
                  f"  %j.more{q} = icmp slt i64 %j.next{q}, %s.e",
                  f"  br i1 %j.more{q}, label %red{q}, label %check"]
        return "\n".join(lines)

    tags = {"uw": (False, True), "un": (False, False), "mw": (True, True), "mn": (True, False)}
    loops = "\n".join(red_loop(k, *v) for k, v in tags.items())
    sq_in = ", ".join(f"[%sq.n.{k}, %red.{k}]" for k in tags)
    ab_in = ", ".join(f"[%ab.n.{k}, %red.{k}]" for k in tags)

    return f"""declare {dvt} @{fabs}({dvt})
declare double @{red}(double, {dvt})

define void @{name}(i64 %c0, i64 %c1, i8** %ks, {t}* %X, i64 %ldx, i64 %n, double* %y, \
double* %w, double* %cs, i64* %coff, double* %ps, i64* %poff, {t}* %out, i64 %ldo, \
double* %acc) nounwind {{
entry:
  %buf = alloca [{chunk} x {t}], align 64
  %bufp = getelementptr [{chunk} x {t}], [{chunk} x {t}]* %buf, i64 0, i64 0
  %nw = add i64 %n, {lanes - 1}
  %npad = and i64 %nw, {-lanes}
  %on = icmp eq {t}* %out, null
  %hw = icmp ne double* %w, null
  %nv.i = insertelement {ivt} undef, i64 %n, i32 0
  %nv = shufflevector {ivt} %nv.i, {ivt} undef, {zs}
  %any = icmp slt i64 %c0, %c1
  %pos = icmp sgt i64 %n, 0
  %go = and i1 %any, %pos
  br i1 %go, label %start, label %ret
start:
  br i1 %on, label %zero, label %cand
cand:
  %c = phi i64 [%c0, %start], [%c.next, %next]
{cand("c", "")}
  %oo = mul i64 %c, %ldo
  %oc = getelementptr {t}, {t}* %out, i64 %oo
  %nfull = and i64 %n, {-lanes}
  %hasfull = icmp sgt i64 %nfull, 0
  br i1 %hasfull, label %pfull, label %ptail0
pfull:
  call void %k({t}* %X, i64 %ldx, i64 0, i64 %nfull, double* %cc, double* %pc, {t}* %oc)
  br label %ptail0
ptail0:
  %hastail = icmp slt i64 %nfull, %n
  br i1 %hastail, label %ptail, label %next
ptail:
  call void %k({t}* %X, i64 %ldx, i64 %nfull, i64 %npad, double* %cc, double* %pc, {t}* %bufp)
  %ntail = sub i64 %n, %nfull
  %otail = getelementptr {t}, {t}* %oc, i64 %nfull
  br label %pcopy
pcopy:
  %q = phi i64 [0, %ptail], [%q.next, %pcopy]
  %q.src = getelementptr {t}, {t}* %bufp, i64 %q
  %q.v = load {t}, {t}* %q.src, align {e}
  %q.dst = getelementptr {t}, {t}* %otail, i64 %q
  store {t} %q.v, {t}* %q.dst, align {e}
  %q.next = add i64 %q, 1
  %q.more = icmp slt i64 %q.next, %ntail
  br i1 %q.more, label %pcopy, label %next
next:
  %c.next = add i64 %c, 1
  %c.more2 = icmp slt i64 %c.next, %c1
  br i1 %c.more2, label %cand, label %ret
zero:
  %zc = phi i64 [%c0, %start], [%zc.next, %zero]
  %z0 = mul i64 %zc, 2
  %z.a = getelementptr double, double* %acc, i64 %z0
  store double 0.0, double* %z.a, align 8
  %z.b = getelementptr double, double* %z.a, i64 1
  store double 0.0, double* %z.b, align 8
  %zc.next = add i64 %zc, 1
  %zc.more = icmp slt i64 %zc.next, %c1
  br i1 %zc.more, label %zero, label %chunk
chunk:
  %s = phi i64 [0, %zero], [%s.e, %lnext]
  %first = icmp eq i64 %s, 0
  %step = select i1 %first, i64 {first}, i64 {chunk}
  %s.e0 = add i64 %s, %step
  %s.lt = icmp slt i64 %s.e0, %npad
  %s.e = select i1 %s.lt, i64 %s.e0, i64 %npad
  br label %lcand
lcand:
  %l = phi i64 [%c0, %chunk], [%l.next, %lskip]
  %a0 = mul i64 %l, 2
  %acc0 = getelementptr double, double* %acc, i64 %a0
  %acc1 = getelementptr double, double* %acc0, i64 1
  %ab.o = load double, double* %acc1, align 8
  %dead = fcmp uge double %ab.o, {inf}
  br i1 %dead, label %lskip, label %leval
leval:
{cand("l", "l")}
  call void %lk({t}* %X, i64 %ldx, i64 %s, i64 %s.e, double* %lcc, double* %lpc, {t}* %bufp)
  %full = icmp sle i64 %s.e, %n
  br i1 %full, label %sel.u, label %sel.m
sel.u:
  br i1 %hw, label %red.uw, label %red.un
sel.m:
  br i1 %hw, label %red.mw, label %red.mn
{loops}
check:
  %sq.f = phi {dvt} {sq_in}
  %ab.f = phi {dvt} {ab_in}
  %abc = call double @{red}(double 0.0, {dvt} %ab.f)
  %sqc = call double @{red}(double 0.0, {dvt} %sq.f)
  %sq.o = load double, double* %acc0, align 8
  %abt = fadd double %ab.o, %abc
  %sqt = fadd double %sq.o, %sqc
  %bad = fcmp uge double %abt, {inf}
  %sqw = select i1 %bad, double {inf}, double %sqt
  %abw = select i1 %bad, double {inf}, double %abt
  store double %sqw, double* %acc0, align 8
  store double %abw, double* %acc1, align 8
  br label %lskip
lskip:
  %l.next = add i64 %l, 1
  %l.more = icmp slt i64 %l.next, %c1
  br i1 %l.more, label %lcand, label %lnext
lnext:
  %s.more = icmp slt i64 %s.e, %npad
  br i1 %s.more, label %chunk, label %ret
ret:
  ret void
}}
"""
