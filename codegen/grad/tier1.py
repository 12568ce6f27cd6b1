"""Tier-1 parameter Jacobians: value + Jacobian kernels compiled per expression structure
(reverse mode, one pass, SIMD over rows), cached by structure through `llvm.cache`."""

from __future__ import annotations

import ctypes
import hashlib
from typing import Any, Callable, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError, SymcoreError
from symcore.evaluate import as_matrix
from symcore.ir import Expr, Flat, flatten

from symcore.codegen.grad.data import Data, prepare_data, unpack_normal
from symcore.codegen.grad.reference import params_vector
from symcore.codegen.grad.templates import active_nodes, deriv_template, node_consts
from symcore.codegen.llvm import jit
from symcore.codegen.llvm.cache import get_or_compile
from symcore.codegen.llvm.lower import LOWER, lower_expr, lower_powi, needed_rows
from symcore.codegen.llvm.values import broadcast, literal, ptr_at, splat, vector_type
from symcore.codegen.llvm.vecmath import width
from symcore.ops import LEAVES

__all__ = ["emit_normal", "emit_jacobian", "GradKernels", "jacobian", "compile_loss_kernels",
           "NORMAL_MODES", "EXPRS_PER_MODULE"]


# -------------------------------------------------------------------------------------------------
# Compiled kernels.  Rows are processed W at a time (<W x double>, W from the host ISA); the
# caller pads the data to a multiple of W.  Per row block: a forward sweep keeps every node's
# value as an SSA register, a reverse sweep accumulates adjoints; the local derivatives are the
# ops table's derivative IR, lowered by `lower_expr` with its placeholders mapped to the forward
# values.  Everything stays in registers: no temporaries, one pass.

_F64 = ir.DoubleType()
_I32 = ir.IntType(32)
_I64 = ir.IntType(64)
_PTR = _F64.as_pointer()
_NORMAL_ARGS = [_PTR, _PTR, _PTR, _I64, _I64, _PTR, _PTR]   # X, y, w, n, ldx, params, out
_JAC_ARGS = [_PTR, _I64, _I64, _PTR, _PTR, _PTR]           # X, n, ldx, params, pred, J
_NORMAL_CT = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 3), ctypes.c_int64, ctypes.c_int64,
                              ctypes.c_void_p, ctypes.c_void_p)
_JAC_CT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                           *([ctypes.c_void_p] * 3))


def _sweeps(b: ir.IRBuilder, flat: Flat, vt: ir.Type, leaf: Callable[[str, Any], ir.Value],
            reverse: bool = True) -> tuple[ir.Value, dict[int, ir.Value]]:
    """Forward sweep (every node's value) then reverse sweep (adjoints); returns the root value
    and d root / d p_j for every parameter slot the expression uses."""
    rows, nodes = flat.rows, flat.nodes
    need = needed_rows(flat)
    vals: list[ir.Value | None] = [None] * len(rows)
    for i, (op, kids, val) in enumerate(rows):
        if not need[i]:
            continue
        if op in LEAVES:
            vals[i] = leaf(op, val[0] if isinstance(val, tuple) else val)
        elif op == "powi":
            vals[i] = lower_powi(b, vals[kids[0]], int(rows[kids[1]][2]))
        else:
            vals[i] = LOWER[op](b, *(vals[k] for k in kids))
    if not reverse:
        assert vals[-1] is not None
        return vals[-1], {}
    act = active_nodes(list(nodes))
    adj: list[ir.Value | None] = [None] * len(rows)
    grads: dict[int, ir.Value] = {}
    if nodes[-1] in act:
        adj[-1] = splat(vt, 1.0)
    for i in range(len(rows) - 1, -1, -1):
        bar = adj[i]
        if bar is None:
            continue
        op, kids, val = rows[i]
        if op == "param":
            grads[val] = bar
            continue
        cs = node_consts(nodes[i])
        for k, kid in enumerate(kids):
            if nodes[kid] not in act:
                continue
            d = deriv_template(op, cs, k)
            if d.op == "const" and d.value == 1.0:
                c = bar
            elif d.op == "const" and d.value == -1.0:
                c = b.fneg(bar)
            else:
                def lv(kind: str, v: Any, kids: tuple[int, ...] = kids, i: int = i) -> ir.Value:
                    if kind == "var":  # placeholder: argument v, or the node itself
                        out = vals[kids[v]] if v < len(kids) else vals[i]
                        assert out is not None
                        return out
                    if kind == "const":
                        return literal(vt, v)
                    raise CompileError(f"derivative of {op} refers to a parameter")
                c = b.fmul(bar, lower_expr(b, d, lv))
            prev = adj[kid]
            adj[kid] = c if prev is None else b.fadd(prev, c)
    root = vals[-1]
    assert root is not None
    return root, grads


class _Loop:
    """`for (i = 0; i < n; i += lanes)` with loop-carried accumulators (phi nodes)."""

    def __init__(self, fn: ir.Function, n: ir.Value, lanes: int, n_acc: int, vt: ir.Type,
                 prologue: Callable[[ir.IRBuilder], Any]) -> None:
        entry = fn.append_basic_block("entry")
        self.head = fn.append_basic_block("head")
        self.body = fn.append_basic_block("body")
        self.done = fn.append_basic_block("done")
        b = ir.IRBuilder(entry)
        self.pre = prologue(b)
        b.branch(self.head)
        b.position_at_end(self.head)
        self.i = b.phi(_I64, "i")
        self.i.add_incoming(ir.Constant(_I64, 0), entry)
        self.accs = []
        for _ in range(n_acc):
            a = b.phi(vt)
            a.add_incoming(splat(vt, 0.0), entry)
            self.accs.append(a)
        b.cbranch(b.icmp_signed("<", self.i, n), self.body, self.done)
        b.position_at_end(self.body)
        self.b = b
        self.lanes = lanes

    def close(self, new_accs: list[ir.Value]) -> ir.IRBuilder:
        b = self.b
        nxt = b.add(self.i, ir.Constant(_I64, self.lanes))
        end = b.block
        b.branch(self.head)
        self.i.add_incoming(nxt, end)
        for a, v in zip(self.accs, new_accs):
            a.add_incoming(v, end)
        b.position_at_end(self.done)
        return b


def _param_splats(expr: Expr, vt: ir.Type, P: ir.Value) -> Callable[[ir.IRBuilder], dict]:
    def pro(b: ir.IRBuilder) -> dict[int, ir.Value]:
        return {j: broadcast(b, vt, b.load(b.gep(P, [ir.Constant(_I64, j)])))
                for j in expr.parameters()}
    return pro


def _leaf_fn(b: ir.IRBuilder, vt: ir.Type, X: ir.Value, ldx: ir.Value, i: ir.Value,
             pvals: dict[int, ir.Value]) -> Callable[[str, Any], ir.Value]:
    cols: dict[int, ir.Value] = {}

    def leaf(kind: str, v: Any) -> ir.Value:
        if kind == "var":
            if v not in cols:
                off = b.add(b.mul(ldx, ir.Constant(_I64, v)), i)
                cols[v] = b.load(ptr_at(b, X, off, vt), align=8)
            return cols[v]
        if kind == "const":
            return literal(vt, v)
        return pvals[v]
    return leaf


NORMAL_MODES = ("normal", "gradient", "value")


def emit_normal(module: ir.Module, name: str, expr: Expr, lanes: int,
                mode: str = "normal") -> ir.Function:
    """`void name(X, y, w, n, ldx, params, out)`: over rows [0, n) (n a multiple of `lanes`;
    X column-major, column c at X + c*ldx) accumulate the weighted normal equations of the
    residual r = pred - y: [Σ w r², Σ w r J_j (j < P), Σ w J_j J_k (j <= k, row-major
    upper triangle)], each stored as `lanes` partial sums (out holds lanes × that many doubles).
    Rows with w <= 0 (or NaN w) contribute nothing, even if non-finite.  mode "gradient" stops
    after Σ w r J_j (value + loss gradient), "value" after Σ w r² (no reverse sweep)."""
    if mode not in NORMAL_MODES:
        raise CompileError(f"mode must be one of {NORMAL_MODES}, got {mode!r}")
    vt = vector_type(lanes)
    P = expr.n_params if mode != "value" else 0
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), _NORMAL_ARGS), name=name)
    X, Y, Wt, n, ldx, Pp, OUT = fn.args
    n_acc = 1 + P + (P * (P + 1) // 2 if mode == "normal" else 0)
    loop = _Loop(fn, n, lanes, n_acc, vt, _param_splats(expr, vt, Pp))
    b, i = loop.b, loop.i
    pred, grads = _sweeps(b, flatten(expr), vt, _leaf_fn(b, vt, X, ldx, i, loop.pre),
                          reverse=mode != "value")
    zero = splat(vt, 0.0)
    yv = b.load(ptr_at(b, Y, i, vt), align=8)
    wv = b.load(ptr_at(b, Wt, i, vt), align=8)
    m = b.fcmp_ordered(">", wv, zero)
    r = b.select(m, b.fsub(pred, yv), zero)
    J = [b.select(m, grads[j], zero) if j in grads else None for j in range(P)]
    wr = b.fmul(wv, r)
    acc = loop.accs
    new = [b.fadd(acc[0], b.fmul(wr, r))]
    new += [b.fadd(acc[1 + j], b.fmul(wr, J[j])) if J[j] is not None else acc[1 + j]
            for j in range(P)]
    k = 1 + P
    for j in range(P if mode == "normal" else 0):
        wj = b.fmul(wv, J[j]) if J[j] is not None else None
        for l in range(j, P):
            Jl = J[l]
            new.append(b.fadd(acc[k], b.fmul(wj, Jl)) if wj is not None and Jl is not None
                       else acc[k])
            k += 1
    b = loop.close(new)
    for idx, a in enumerate(acc):  # lane partial sums; the caller adds the lanes
        b.store(a, ptr_at(b, OUT, ir.Constant(_I64, idx * lanes), vt), align=8)
    b.ret_void()
    return fn


def emit_jacobian(module: ir.Module, name: str, expr: Expr, lanes: int) -> ir.Function:
    """`void name(X, n, ldx, params, pred, J)`: predictions pred[i] and Jacobian
    J[j*n + i] = d pred_i / d p_j for rows [0, n) (n a multiple of `lanes`)."""
    vt = vector_type(lanes)
    P = expr.n_params
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), _JAC_ARGS), name=name)
    X, n, ldx, Pp, PRED, JAC = fn.args
    loop = _Loop(fn, n, lanes, 0, vt, _param_splats(expr, vt, Pp))
    b, i = loop.b, loop.i
    pred, grads = _sweeps(b, flatten(expr), vt, _leaf_fn(b, vt, X, ldx, i, loop.pre))
    b.store(pred, ptr_at(b, PRED, i, vt), align=8)
    for j in range(P):
        off = b.add(b.mul(n, ir.Constant(_I64, j)), i)
        b.store(grads.get(j, splat(vt, 0.0)), ptr_at(b, JAC, off, vt), align=8)
    b = loop.close([])
    b.ret_void()
    return fn


# -------------------------------------------------------------------------------------------------
# Loading and calling.

#: part of every cache key: bump when the generated code changes meaning (stale objects on disk
#: would otherwise be loaded)
_T1_VERSION = "g1-3"
#: expressions per LLVM module (one object file, one cache entry)
EXPRS_PER_MODULE = 32
#: LLVM optimisation: IR pipeline level and machine-code level
OPT_IR = 2
OPT_CODEGEN = 1
#: generator files of these kernels (relative to codegen/): part of every cache key
SOURCES = ("grad/tier1.py", "grad/templates.py", "grad/data.py", "llvm/values.py")



def _key(kind: str, lanes: int, exprs: Sequence[Expr]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"grad|{_T1_VERSION}|{kind}|{lanes}|{OPT_IR}|{OPT_CODEGEN}|"
             f"{jit.source_hash(*SOURCES)}\n".encode())
    for e in exprs:
        h.update(e.digest().encode())
    return h.hexdigest()


class GradKernels:
    """Compiled value + parameter-Jacobian kernels for a list of parametrised expressions:
    `normal` (fused normal equations, what the fitter calls) and, when asked, `jacobian`
    (predictions and the full Jacobian).  Identical structures share one function; modules of
    `EXPRS_PER_MODULE` functions are compiled once and cached (memory and disk) by structure."""

    def __init__(self, exprs: Sequence[Expr], *, jacobian: bool = False,
                 lanes: int | None = None) -> None:
        self.exprs = list(exprs)
        for e in self.exprs:
            if not isinstance(e, Expr):
                raise SymcoreError(f"GradKernels takes Expr objects, got {type(e).__name__}")
        self.lanes = lanes or width("float64")
        uniq: dict[str, int] = {}
        self._slot = [uniq.setdefault(e.digest(), len(uniq)) for e in self.exprs]
        distinct = list({e.digest(): e for e in self.exprs}.values())
        kinds = ("normal", "jac") if jacobian else ("normal",)
        self._P = [e.n_params for e in self.exprs]
        self._cols = [max(e.variables(), default=-1) + 1 for e in self.exprs]
        self._libs: list[jit.Library] = []
        self._normal: list[Any] = []
        self._jac: list[Any] = []
        for start in range(0, len(distinct), EXPRS_PER_MODULE):
            chunk = distinct[start:start + EXPRS_PER_MODULE]
            key = _key("+".join(kinds), self.lanes, chunk)
            names = [f"sc_{kind}_{key[:12]}_{k}" for k in range(len(chunk)) for kind in kinds]

            def build(chunk: list[Expr] = chunk, key: str = key) -> bytes:
                module = ir.Module(name=f"grad_{key[:12]}")
                for k, e in enumerate(chunk):
                    emit_normal(module, f"sc_normal_{key[:12]}_{k}", e, self.lanes)
                    if jacobian:
                        emit_jacobian(module, f"sc_jac_{key[:12]}_{k}", e, self.lanes)
                return jit.compile_object(str(module), OPT_IR, OPT_CODEGEN)
            obj = get_or_compile(key, build)
            lib = jit.load_library([obj], names)
            self._libs.append(lib)
            for k in range(len(chunk)):
                self._normal.append(_NORMAL_CT(lib.addresses[f"sc_normal_{key[:12]}_{k}"]))
                if jacobian:
                    self._jac.append(_JAC_CT(lib.addresses[f"sc_jac_{key[:12]}_{k}"]))

    def __len__(self) -> int:
        return len(self.exprs)

    def _check(self, k: int, data: Data, params: np.ndarray) -> None:
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if self._cols[k] > data.X.shape[0]:
            raise DataError(f"expression uses {self._cols[k]} column(s), data has "
                            f"{data.X.shape[0]}")
        if not (isinstance(params, np.ndarray) and params.dtype == np.float64
                and params.ndim == 1 and params.shape[0] >= self._P[k]
                and params.flags.c_contiguous):
            raise DataError(f"params must be a contiguous float64 vector of {self._P[k]} values")

    def normal(self, k: int, data: Data, params: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
        """(Σ w r², Jᵀ W r, Jᵀ W J) of candidate k at `params` (r = pred - y)."""
        self._check(k, data, params)
        P = self._P[k]
        out = np.empty((1 + P + P * (P + 1) // 2, self.lanes))
        px, py, pw = data.pointers
        self._normal[self._slot[k]](px, py, pw, data.n_pad, data.n_pad, params.ctypes.data,
                                    out.ctypes.data)
        return unpack_normal(out, P)

    def jacobian(self, k: int, data: Data, params: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predictions (N,) and Jacobian (N, P) of candidate k."""
        if not self._jac:
            raise CompileError("these kernels were compiled without jacobian=True")
        self._check(k, data, params)
        P = self._P[k]
        pred = np.empty(data.n_pad)
        J = np.empty((P, data.n_pad))
        self._jac[self._slot[k]](data.X.ctypes.data, data.n_pad, data.n_pad,
                                 params.ctypes.data, pred.ctypes.data, J.ctypes.data)
        return pred[:data.n], J[:, :data.n].T

    def close(self) -> None:
        for lib in self._libs:
            lib.close()
        self._libs = []
        self._normal = []
        self._jac = []


def jacobian(expr: Expr, X: Any, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (N,) and parameter Jacobian (N, n_params) of `expr`, compiled (tier 1)."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"jacobian takes an Expr, got {type(expr).__name__}")
    A = as_matrix(X, [expr])
    p = np.ascontiguousarray(params_vector(expr, params), dtype=np.float64)
    cols = expr.variables()
    if cols and cols[-1] >= A.shape[1]:
        raise DataError(f"variable x{cols[-1]} needs column {cols[-1]}, data has "
                        f"{A.shape[1]} column(s)")
    k = GradKernels([expr], jacobian=True)
    try:
        pred, J = k.jacobian(0, prepare_data(A, lanes=k.lanes), p)
        return pred.copy(), J.copy()
    finally:
        k.close()


def compile_loss_kernels(exprs: Sequence[Expr], mode: str, lanes: int | None = None
                         ) -> tuple[jit.Library, list[Any], int]:
    """One module of `emit_normal(mode=...)` kernels ("value": Σ w r²; "gradient": + Σ w r J;
    "normal": + Σ w J Jᵀ) for measuring what the reverse sweep costs over one evaluation.
    Returns the library (keep it open while calling), the ctypes functions and the lanes."""
    lanes = lanes or width("float64")
    module = ir.Module(name=f"loss_{mode}")
    names = [f"sc_loss_{mode}_{k}" for k in range(len(exprs))]
    for nm, e in zip(names, exprs):
        emit_normal(module, nm, e, lanes, mode)
    lib = jit.load_library([jit.compile_object(str(module), OPT_IR, OPT_CODEGEN)], names)
    return lib, [_NORMAL_CT(lib.addresses[nm]) for nm in names], lanes

