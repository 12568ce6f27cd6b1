"""Parameter Jacobians: the local-derivative templates taken from the ops table, a NumPy reference
(the test oracle) and compiled value + Jacobian kernels (reverse mode, one pass, SIMD over rows).
"""

from __future__ import annotations

import ctypes
import functools
import math
import hashlib
import struct
import threading
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError, SymcoreError
from symcore.evaluate import as_matrix, evaluate, node_values
from symcore.ir import Expr, Flat, const, flatten, topo, var
from symcore.ops import LEAVES, OPS

from symcore.codegen.llvm import jit
from symcore.codegen.fit import native_lm as _lm
from symcore.codegen.llvm.irflow import Flow
from symcore.codegen.llvm.lower import LOWER, lower_expr, lower_powi, needed_rows, splat
from symcore.codegen.llvm.vecmath import width

__all__ = ["deriv_template", "active_nodes", "jacobian_reference", "emit_normal", "emit_jacobian",
           "GradKernels", "Data", "prepare_data", "jacobian"]


def deriv_template(op: str, consts: tuple[float | None, ...], i: int) -> Expr:
    """d out / d arg_i of `op` as IR over placeholders: `var(j)` stands for argument j (arguments
    that are literals, given in `consts`, stay literals: powi's derivative needs its exponent),
    `var(arity)` for the node's own value `out`."""
    # memoised on the literals' bit patterns: -0.0 == 0.0 as floats, yet 1/-0.0 is -inf
    bits = tuple(None if c is None else struct.pack("<d", float(c)) for c in consts)
    return _deriv_template(op, bits, i)


@functools.lru_cache(maxsize=4096)
def _deriv_template(op: str, bits: tuple[bytes | None, ...], i: int) -> Expr:
    o = OPS[op]
    args = [var(j) if c is None else const(struct.unpack("<d", c)[0])
            for j, c in enumerate(bits)]
    return o.deriv(*args, var(o.arity))[i]


def node_consts(node: Expr) -> tuple[float | None, ...]:
    """The literal operands of `node` (None where an operand is not a literal)."""
    return tuple(float(a.value) if a.op == "const" else None for a in node.args)


def active_nodes(order: list[Expr]) -> set[Expr]:
    """Nodes whose value depends on a parameter (only these carry adjoints)."""
    act: set[Expr] = set()
    for n in order:
        if n.op == "param" or any(a in act for a in n.args):
            act.add(n)
    return act


def _params_vector(expr: Expr, params: Any) -> np.ndarray:
    need = expr.n_params
    p = np.zeros(0) if params is None else np.asarray(params, dtype=np.float64)
    if p.ndim != 1 or p.shape[0] < need:
        raise DataError(f"expression uses {need} parameter(s), got params of shape {p.shape}")
    return p


def jacobian_reference(expr: Expr, X: Any, params: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Predictions (N,) and Jacobian d pred / d p_j (N, n_params) with NumPy: a forward sweep
    keeping every node's values, then a reverse sweep accumulating adjoints whose local
    derivatives are the ops table's derivative IR evaluated by the reference evaluator."""
    if not isinstance(expr, Expr):
        raise SymcoreError(f"jacobian_reference takes an Expr, got {type(expr).__name__}")
    A = as_matrix(X, [expr])
    n = A.shape[0]
    p = _params_vector(expr, params)
    order = topo([expr])
    vals = {nd: np.broadcast_to(v, (n,)) for nd, v in node_values(order, A, p).items()}
    with np.errstate(all="ignore"):
        J = np.zeros((n, expr.n_params))
        act = active_nodes(order)
        adj: dict[Expr, np.ndarray] = {expr: np.ones(n)} if expr in act else {}
        for nd in reversed(order):
            if nd not in adj:
                continue
            bar = adj.pop(nd)
            if nd.op == "param":
                J[:, nd.value] += bar
                continue
            cs = node_consts(nd)
            cols = np.empty((n, len(nd.args) + 1))
            for j, a in enumerate(nd.args):
                cols[:, j] = vals[a]
            cols[:, -1] = vals[nd]
            for i, a in enumerate(nd.args):
                if a not in act:
                    continue
                d = evaluate(deriv_template(nd.op, cs, i), cols)
                adj[a] = adj[a] + bar * d if a in adj else bar * d
    return np.array(vals[expr], dtype=np.float64), J


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


def _literal(ty: ir.Type, v: float) -> ir.Constant:
    """An expression's literal as a constant of `ty`, built afresh: `lower.splat` is memoised on
    the float value, and -0.0 == 0.0 would make the two zeros share one constant (1/-0.0 must
    stay -inf), so literals never go through it (and never poison its cache)."""
    if isinstance(ty, ir.VectorType):
        return ir.Constant(ty, [ir.Constant(ty.element, float(v))] * ty.count)
    return ir.Constant(ty, float(v))


def _vtype(lanes: int) -> ir.Type:
    return _F64 if lanes == 1 else ir.VectorType(_F64, lanes)


def _broadcast(b: ir.IRBuilder, vt: ir.Type, s: ir.Value) -> ir.Value:
    if not isinstance(vt, ir.VectorType):
        return s
    v = b.insert_element(ir.Constant(vt, ir.Undefined), s, ir.Constant(_I32, 0))
    mask = ir.Constant(ir.VectorType(_I32, vt.count), [0] * vt.count)
    return b.shuffle_vector(v, ir.Constant(vt, ir.Undefined), mask)


def _ptr_at(b: ir.IRBuilder, base: ir.Value, offset: ir.Value, vt: ir.Type) -> ir.Value:
    p = b.gep(base, [offset])
    return b.bitcast(p, vt.as_pointer()) if isinstance(vt, ir.VectorType) else p


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
                        return _literal(vt, v)
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
        return {j: _broadcast(b, vt, b.load(b.gep(P, [ir.Constant(_I64, j)])))
                for j in expr.parameters()}
    return pro


def _leaf_fn(b: ir.IRBuilder, vt: ir.Type, X: ir.Value, ldx: ir.Value, i: ir.Value,
             pvals: dict[int, ir.Value]) -> Callable[[str, Any], ir.Value]:
    cols: dict[int, ir.Value] = {}

    def leaf(kind: str, v: Any) -> ir.Value:
        if kind == "var":
            if v not in cols:
                off = b.add(b.mul(ldx, ir.Constant(_I64, v)), i)
                cols[v] = b.load(_ptr_at(b, X, off, vt), align=8)
            return cols[v]
        if kind == "const":
            return _literal(vt, v)
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
    vt = _vtype(lanes)
    P = expr.n_params if mode != "value" else 0
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), _NORMAL_ARGS), name=name)
    X, Y, Wt, n, ldx, Pp, OUT = fn.args
    n_acc = 1 + P + (P * (P + 1) // 2 if mode == "normal" else 0)
    loop = _Loop(fn, n, lanes, n_acc, vt, _param_splats(expr, vt, Pp))
    b, i = loop.b, loop.i
    pred, grads = _sweeps(b, flatten(expr), vt, _leaf_fn(b, vt, X, ldx, i, loop.pre),
                          reverse=mode != "value")
    zero = splat(vt, 0.0)
    yv = b.load(_ptr_at(b, Y, i, vt), align=8)
    wv = b.load(_ptr_at(b, Wt, i, vt), align=8)
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
        b.store(a, _ptr_at(b, OUT, ir.Constant(_I64, idx * lanes), vt), align=8)
    b.ret_void()
    return fn


def emit_jacobian(module: ir.Module, name: str, expr: Expr, lanes: int) -> ir.Function:
    """`void name(X, n, ldx, params, pred, J)`: predictions pred[i] and Jacobian
    J[j*n + i] = d pred_i / d p_j for rows [0, n) (n a multiple of `lanes`)."""
    vt = _vtype(lanes)
    P = expr.n_params
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), _JAC_ARGS), name=name)
    X, n, ldx, Pp, PRED, JAC = fn.args
    loop = _Loop(fn, n, lanes, 0, vt, _param_splats(expr, vt, Pp))
    b, i = loop.b, loop.i
    pred, grads = _sweeps(b, flatten(expr), vt, _leaf_fn(b, vt, X, ldx, i, loop.pre))
    b.store(pred, _ptr_at(b, PRED, i, vt), align=8)
    for j in range(P):
        off = b.add(b.mul(n, ir.Constant(_I64, j)), i)
        b.store(grads.get(j, splat(vt, 0.0)), _ptr_at(b, JAC, off, vt), align=8)
    b = loop.close([])
    b.ret_void()
    return fn


# -------------------------------------------------------------------------------------------------
# Loading and calling.

#: part of every cache key: bump when the generated code changes meaning (stale objects on disk
#: would otherwise be loaded)
_T1_VERSION = "g1-3"
#: expressions per LLVM module (one object file, one cache entry)
CHUNK = 32
#: LLVM optimisation: IR pipeline level and machine-code level
OPT_IR = 2
OPT_CODEGEN = 1


@dataclass(frozen=True, eq=False)
class Data:
    """Data laid out for the kernels: X column-major (columns, n_pad), y and w of n_pad rows,
    n_pad a multiple of the vector width; padding rows copy row 0 and have weight 0."""

    X: np.ndarray
    y: np.ndarray
    w: np.ndarray
    n: int
    n_pad: int
    sum_w: float

    @functools.cached_property
    def pointers(self) -> tuple[int, int, int]:
        """Addresses of X, y and w (taken once: `.ctypes` costs microseconds per access)."""
        return self.X.ctypes.data, self.y.ctypes.data, self.w.ctypes.data


def prepare_data(X: np.ndarray, y: np.ndarray | None = None, w: np.ndarray | None = None,
                 lanes: int | None = None) -> Data:
    """Pad and transpose validated float64 arrays (X (N, C), y (N,), w (N,) or None)."""
    lanes = lanes or width("float64")
    n = X.shape[0]
    n_pad = -(-n // lanes) * lanes
    Xc = np.empty((X.shape[1], n_pad))
    Xc[:, :n] = X.T
    yp = np.zeros(n_pad)
    wp = np.zeros(n_pad)
    if n:
        Xc[:, n:] = X[:1].T
        if y is not None:
            yp[:n] = y
            yp[n:] = y[0]
        wp[:n] = 1.0 if w is None else w
    return Data(Xc, yp, wp, n, n_pad, float(wp.sum()))


@functools.lru_cache(maxsize=64)
def _sym_index(P: int) -> tuple[np.ndarray, np.ndarray]:
    """Flat positions of the upper and the lower triangle of a P×P matrix, row-major upper
    order (how the kernels store Jᵀ W J), and which packed entry goes to each."""
    iu = np.triu_indices(P)
    dest = np.concatenate([iu[0] * P + iu[1], iu[1] * P + iu[0]])
    src = np.concatenate([np.arange(len(iu[0]))] * 2)
    return dest, src


def _unpack_square(outs: np.ndarray, Pm: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(K, 1 + Pm + Pm², lanes) lane partial sums, upper triangle of Jᵀ W J -> full."""
    S = outs.sum(axis=2)
    K = S.shape[0]
    U = S[:, 1 + Pm:].reshape(K, Pm, Pm)
    H = U + U.transpose(0, 2, 1)
    idx = np.arange(Pm)
    H[:, idx, idx] = U[:, idx, idx]
    return S[:, 0], S[:, 1:1 + Pm], H


def _unpack_normal(out: np.ndarray, P: int) -> tuple[float, np.ndarray, np.ndarray]:
    s = out.sum(axis=1)
    dest, src = _sym_index(P)
    H = np.empty(P * P)
    H[dest] = s[1 + P:][src]
    return float(s[0]), s[1:1 + P], H.reshape(P, P)


def _key(kind: str, lanes: int, exprs: Sequence[Expr]) -> str:
    h = hashlib.blake2b(digest_size=16)
    h.update(f"grad|{_T1_VERSION}|{kind}|{lanes}|{OPT_IR}|{OPT_CODEGEN}|"
             f"{jit.source_hash('grad/jacobian.py')}\n".encode())
    for e in exprs:
        h.update(e.digest().encode())
    return h.hexdigest()


class GradKernels:
    """Compiled value + parameter-Jacobian kernels for a list of parametrised expressions:
    `normal` (fused normal equations, what the fitter calls) and, when asked, `jacobian`
    (predictions and the full Jacobian).  Identical structures share one function; modules of
    `CHUNK` functions are compiled once and cached (memory and disk) by structure."""

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
        for start in range(0, len(distinct), CHUNK):
            chunk = distinct[start:start + CHUNK]
            key = _key("+".join(kinds), self.lanes, chunk)
            names = [f"sc_{kind}_{key[:12]}_{k}" for k in range(len(chunk)) for kind in kinds]
            cache = jit.object_cache()
            obj = cache.get(key)
            if obj is None:
                module = ir.Module(name=f"grad_{key[:12]}")
                for k, e in enumerate(chunk):
                    emit_normal(module, f"sc_normal_{key[:12]}_{k}", e, self.lanes)
                    if jacobian:
                        emit_jacobian(module, f"sc_jac_{key[:12]}_{k}", e, self.lanes)
                obj = jit.compile_object(str(module), OPT_IR, OPT_CODEGEN)
                cache.put(key, obj)
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
        return _unpack_normal(out, P)

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
    p = np.ascontiguousarray(_params_vector(expr, params), dtype=np.float64)
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


# -------------------------------------------------------------------------------------------------
# Tier 0: a Jacobian interpreter compiled once per machine (no compilation per candidate).
# A candidate is packed into small integer arrays: `fills` (slot, kind, index) set constant and
# parameter slots once per call; `fwd` (op, dst, a, b) computes every other node for one vector
# of rows (op VAR loads column a); `rev` (op, dst, a, b, flags) runs the reverse sweep over the
# parameter-dependent nodes (flags bit i: argument i needs its adjoint).  One slot per node
# (reverse mode needs every forward value), plus one always-zero slot for unused parameters.

#: opcode of each operator = its position in the ops table; VAR loads a data column
OPCODE: dict[str, int] = {name: i for i, name in enumerate(OPS)}
OP_VAR = len(OPS)
_T0_VERSION = "g0-5"
_T0_ARGS = ["i32p", "i64", "i32p", "i64", "i32p", "i64", "i32p", "i64", "f64p", "f64p", "f64p",
            "i64", "f64p", "f64p", "i64", "i64", "i64", "f64p", "f64p", "f64p", "f64p", "i64"]
#: g0_batch(K, table, params, Pm, X, ldx, y, w, n, vals, adj, jbuf, outs, out_stride)
_T0_BATCH_ARGS = ["i64", "i64p", "f64p", "i64", "f64p", "i64", "f64p", "f64p", "i64", "f64p",
                  "f64p", "f64p", "f64p", "i64"]
#: one row of the batch table per candidate (int64): addresses and sizes of its packed arrays
_T0_TABLE = ("fills", "nfill", "fwd", "nfwd", "rev", "nrev", "pslots", "P", "pool", "root",
             "nslots")


def _t0_ctype(args: list[str]) -> Any:
    m = {"i32p": ctypes.c_void_p, "i64p": ctypes.c_void_p, "f64p": ctypes.c_void_p,
         "i64": ctypes.c_int64, "f64": ctypes.c_double}
    return ctypes.CFUNCTYPE(None, *(m[a] for a in args))


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
        return _ptr_at(b, base, off, self.vt)

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
            return _literal(F.vt, v)
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
    vt = _vtype(lanes)
    U = unroll
    types = {"i32p": _I32.as_pointer(), "f64p": _PTR, "i64": _I64}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in _T0_ARGS]),
                     name="g0_normal")
    (fills, nfill, fwd, nfwd, rev, nrev, pslots, P, pool, params, X, ldx, Y, Wt, n, root, nslots,
     vals, adj, jbuf, out, Pm) = fn.args
    F = _Fn(fn, vt, U)
    b = F.b
    c = lambda v: ir.Constant(_I64, v)  # noqa: E731
    zero = splat(vt, 0.0)
    n_acc = b.add(b.add(c(1), Pm), b.mul(Pm, Pm))

    def fill(k: ir.Value) -> None:
        s, kind, idx = (F.field(fills, k, 3, j) for j in range(3))
        is_param = b.icmp_signed("==", kind, c(1))
        v = _broadcast(b, vt, b.select(is_param, b.load(b.gep(params, [idx])),
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
                F.st(b.load(_ptr_at(b, X, off, vt), align=8), vals, dst, u)
            b.branch(done)
            for name, o in OPS.items():
                blk = fn.append_basic_block(f"fwd.{name}")
                sw.add_case(ir.Constant(_I64, OPCODE[name]), blk)
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
                blk = fn.append_basic_block(f"rev.{name}")
                sw.add_case(ir.Constant(_I64, OPCODE[name]), blk)
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
            yv = b.load(_ptr_at(b, Y, b.add(i, c(u * lanes)), vt), align=8)
            wv = b.load(_ptr_at(b, Wt, b.add(i, c(u * lanes)), vt), align=8)
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
    """`g0_batch`: `g0_normal` for K candidates described by rows of a table (`_T0_TABLE`),
    candidate k reading params + k Pm and writing outs + k out_stride (one native call per
    round of a population fit)."""
    types = {"i64p": _I64.as_pointer(), "f64p": _PTR, "i64": _I64}
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [types[a] for a in _T0_BATCH_ARGS]),
                     name="g0_batch")
    K, table, params, Pm, X, ldx, Y, Wt, n, vals, adj, jbuf, outs, stride = fn.args
    F = _Fn(fn, _F64, 1)
    b = F.b
    i32p = _I32.as_pointer()

    def one(k: ir.Value) -> None:
        row = b.gep(table, [b.mul(k, ir.Constant(_I64, len(_T0_TABLE)))])
        f = {name: b.load(b.gep(row, [ir.Constant(_I64, j)])) for j, name in enumerate(_T0_TABLE)}
        ptr = lambda name, ty: b.inttoptr(f[name], ty)  # noqa: E731
        b.call(normal, [ptr("fills", i32p), f["nfill"], ptr("fwd", i32p), f["nfwd"],
                        ptr("rev", i32p), f["nrev"], ptr("pslots", i32p), f["P"],
                        ptr("pool", _PTR), b.gep(params, [b.mul(k, Pm)]), X, ldx, Y, Wt, n,
                        f["root"], f["nslots"], vals, adj, jbuf,
                        b.gep(outs, [b.mul(k, stride)]), Pm])
    F.for_(ir.Constant(_I64, 0), K, one)
    b.ret_void()
    return fn


@functools.lru_cache(maxsize=4)
def _tier0_library(lanes: int) -> tuple[Any, tuple[Any, Any]]:
    key = (f"grad-tier0|{_T0_VERSION}|{lanes}x{T0_UNROLL}|"
           f"{jit.source_hash('grad/jacobian.py', 'fit/native_lm.py')}")
    cache = jit.object_cache()
    obj = cache.get(key)
    if obj is None:
        module = ir.Module(name="symcore_grad_tier0")
        normal = emit_tier0(module, lanes)
        emit_tier0_batch(module, normal)
        _lm.emit_lm(module, normal, lanes * T0_UNROLL)
        obj = jit.compile_object(str(module), 2, 2)
        cache.put(key, obj)
    lib = jit.load_library([obj], ["g0_normal", "g0_batch", "g0_lm"])
    return lib, (_t0_ctype(_T0_ARGS)(lib.addresses["g0_normal"]),
                 _t0_ctype(_T0_BATCH_ARGS)(lib.addresses["g0_batch"]),
                 _t0_ctype(_lm.LM_ARGS)(lib.addresses["g0_lm"]))


@dataclass(frozen=True)
class _Packed:
    fills: np.ndarray
    fwd: np.ndarray
    rev: np.ndarray
    pslots: np.ndarray
    pool: np.ndarray
    root: int
    n_slots: int
    P: int
    n_cols: int


def _pack(expr: Expr) -> _Packed:
    flat = flatten(expr)
    nodes = flat.nodes
    act = active_nodes(list(nodes))
    fills, fwd, rev, pool = [], [], [], []
    pslot = {}
    for i, (op, kids, val) in enumerate(flat.rows):
        if op == "const":
            fills.append((i, 0, len(pool)))
            pool.append(float(val))
        elif op == "param":
            fills.append((i, 1, val))
            pslot[val] = i
        elif op == "var":
            fwd.append((OP_VAR, i, val[0] if isinstance(val, tuple) else val, 0))
        else:
            a = kids[0]
            b2 = kids[1] if len(kids) > 1 else 0
            fwd.append((OPCODE[op], i, a, b2))
    for i in range(len(nodes) - 1, -1, -1):
        op, kids, _ = flat.rows[i]
        if nodes[i] not in act or op in LEAVES:
            continue
        flags = sum(1 << j for j, k in enumerate(kids) if nodes[k] in act)
        rev.append((OPCODE[op], i, kids[0], kids[1] if len(kids) > 1 else 0, flags))
    n_slots = len(nodes)
    # from the rows already flattened (Expr.n_params / variables() would flatten twice more)
    P = max(pslot, default=-1) + 1
    n_cols = max((v[0] if isinstance(v, tuple) else v for op, _, v in flat.rows if op == "var"),
                 default=-1) + 1
    arr = lambda rows, w: np.ascontiguousarray(  # noqa: E731
        np.array(rows, dtype=np.int32).reshape(-1, w))
    return _Packed(arr(fills, 3), arr(fwd, 4), arr(rev, 5),
                   np.array([pslot.get(j, n_slots) for j in range(P)], dtype=np.int32),
                   np.array(pool + [0.0], dtype=np.float64), n_slots - 1, n_slots, P, n_cols)


#: Tier0Grad.normal_batch: fewest row-evaluations per thread chunk worth a thread hand-off
_SPLIT_ROWS = 32768


class Tier0Grad:
    """The same `normal` interface as `GradKernels`, served by the compiled-once interpreter:
    packing a candidate is pure Python (microseconds), nothing is compiled per candidate."""

    def __init__(self, exprs: Sequence[Expr], *, lanes: int | None = None) -> None:
        self.exprs = list(exprs)
        for e in self.exprs:
            if not isinstance(e, Expr):
                raise SymcoreError(f"Tier0Grad takes Expr objects, got {type(e).__name__}")
        self.vector = lanes or width("float64")
        self.lanes = self.vector * T0_UNROLL   # rows per block: data is padded to a multiple
        self._lib, (self._fn, self._batch, self._lm) = _tier0_library(self.vector)
        self._packed = [_pack(e) for e in self.exprs]
        self.max_params = max((pk.P for pk in self._packed), default=0)
        self._table = np.array([[pk.fills.ctypes.data, pk.fills.shape[0], pk.fwd.ctypes.data,
                                 pk.fwd.shape[0], pk.rev.ctypes.data, pk.rev.shape[0],
                                 pk.pslots.ctypes.data, pk.P, pk.pool.ctypes.data, pk.root,
                                 pk.n_slots] for pk in self._packed],
                               dtype=np.int64).reshape(-1, len(_T0_TABLE))
        self._static = [(pk.fills.ctypes.data, pk.fills.shape[0], pk.fwd.ctypes.data,
                         pk.fwd.shape[0], pk.rev.ctypes.data, pk.rev.shape[0],
                         pk.pslots.ctypes.data, pk.P, pk.pool.ctypes.data)
                        for pk in self._packed]
        self._max_slots = max((pk.n_slots for pk in self._packed), default=1)
        self._max_P = max((pk.P for pk in self._packed), default=0)
        self._local = threading.local()

    def _buffers(self) -> tuple[int, int, int, np.ndarray]:
        """This thread's scratch (vals, adj, jbuf addresses and the out array), sized for the
        largest candidate: concurrent calls from several threads never share scratch."""
        buf = getattr(self._local, "buf", None)
        if buf is None:
            L, P = self.lanes, self._max_P
            arrays = (np.empty((self._max_slots, L)), np.empty((self._max_slots + 1, L)),
                      np.empty((max(P, 1), L)), np.empty((1 + P + P * P) * L))
            buf = (arrays[0].ctypes.data, arrays[1].ctypes.data, arrays[2].ctypes.data, arrays)
            self._local.buf = buf
        return buf

    def __len__(self) -> int:
        return len(self.exprs)

    def normal(self, k: int, data: Data, params: np.ndarray
               ) -> tuple[float, np.ndarray, np.ndarray]:
        """(Σ w r², Jᵀ W r, Jᵀ W J) of candidate k at `params` (r = pred - y)."""
        pk = self._packed[k]
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if pk.n_cols > data.X.shape[0]:
            raise DataError(f"expression uses {pk.n_cols} column(s), data has {data.X.shape[0]}")
        if not (isinstance(params, np.ndarray) and params.dtype == np.float64
                and params.ndim == 1 and params.shape[0] >= pk.P and params.flags.c_contiguous):
            raise DataError(f"params must be a contiguous float64 vector of {pk.P} values")
        P = pk.P
        pv, pa, pj, arrays = self._buffers()
        out = arrays[3][:(1 + P + P * P) * self.lanes]
        px, py, pw = data.pointers
        pp = params.ctypes.data if P else px
        self._fn(*self._static[k], pp, px, data.n_pad, py, pw, data.n_pad, pk.root, pk.n_slots,
                 pv, pa, pj, out.ctypes.data, P)
        f, g, H = _unpack_square(out.reshape(1, 1 + P + P * P, self.lanes), P)
        return float(f[0]), g[0], H[0]

    def normal_batch(self, ids: np.ndarray, params: np.ndarray, data: Data,
                     pool: Any = None, n_threads: int = 1
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Normal equations of candidates `ids` (K,) at `params` (K, Pm), Pm = `max_params`:
        (Σ w r² (K,), Jᵀ W r (K, Pm), Jᵀ W J (K, Pm, Pm)), zero beyond each candidate's own
        parameters.  One native call per thread (`pool` runs all but the first chunk)."""
        Pm = self.max_params
        ids = np.asarray(ids, dtype=np.int64)
        K = ids.shape[0]
        if params.dtype != np.float64 or params.shape != (K, max(Pm, 1)) \
                or not params.flags.c_contiguous:
            raise DataError(f"params must be a contiguous ({K}, {max(Pm, 1)}) float64 array")
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if K and max(self._packed[i].n_cols for i in set(ids.tolist())) > data.X.shape[0]:
            raise DataError(f"data has {data.X.shape[0]} column(s), fewer than a candidate uses")
        table = np.ascontiguousarray(self._table[ids])
        width = (1 + Pm + Pm * Pm) * self.lanes
        outs = np.empty((K, width))
        px, py, pw = data.pointers

        def run(lo: int, hi: int) -> None:
            if hi <= lo:
                return
            pv, pa, pj, _ = self._buffers()
            self._batch(hi - lo, table[lo:].ctypes.data, params[lo:].ctypes.data, max(Pm, 1),
                        px, data.n_pad, py, pw, data.n_pad, pv, pa, pj, outs[lo:].ctypes.data,
                        width)
        # a chunk handed to another thread costs ~0.1 ms of hand-off: split only when each
        # chunk carries at least _SPLIT_ROWS row-evaluations (a few hundred µs of kernel work)
        T = max(1, min(n_threads, K // 8, K * data.n_pad // _SPLIT_ROWS)) \
            if pool is not None else 1
        bounds = [K * t // T for t in range(T + 1)]
        futures = [pool.submit(run, bounds[t], bounds[t + 1]) for t in range(1, T)]
        run(bounds[0], bounds[1])
        for fut in futures:
            fut.result()
        return _unpack_square(outs.reshape(K, 1 + Pm + Pm * Pm, self.lanes), Pm)

    def fit_lm(self, ids: np.ndarray, starts: np.ndarray, budgets: np.ndarray, data: Data,
               tol: float, factor: float = 100.0, pool: Any = None, n_threads: int = 1
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Levenberg–Marquardt (`codegen.lm`) on problems k: candidate ids[k] from starts[k]
        ((K, Pm) float64, Pm = `max_params`) within budgets[k] trial steps, entirely in native
        code: every thread (`pool` runs all but one) takes the next problem from a shared
        counter.  Returns (params (K, Pm), Σ w r² (K,), trial steps (K,), status codes (K,),
        indices into fit.STATUSES)."""
        Pm = max(self.max_params, 1)
        ids = np.asarray(ids, dtype=np.int64)
        K = ids.shape[0]
        starts = np.ascontiguousarray(starts, dtype=np.float64)
        budgets = np.ascontiguousarray(budgets, dtype=np.int64)
        if starts.shape != (K, Pm) or budgets.shape != (K,):
            raise DataError(f"starts must be ({K}, {Pm}) and budgets ({K},)")
        if K and (ids.min() < 0 or ids.max() >= len(self._packed) or budgets.min() < 0):
            raise DataError(f"candidate ids must lie in [0, {len(self._packed)}) and budgets "
                            f"be >= 0")
        if data.n_pad % self.lanes:
            raise DataError(f"data padded to {data.n_pad} rows, not a multiple of {self.lanes}")
        if K and max(self._packed[i].n_cols for i in set(ids.tolist())) > data.X.shape[0]:
            raise DataError(f"data has {data.X.shape[0]} column(s), fewer than a candidate uses")
        if not (math.isfinite(tol) and tol >= 0 and math.isfinite(factor) and factor > 0):
            raise DataError("tol must be finite and >= 0, factor finite and > 0")
        table = np.ascontiguousarray(self._table[ids])
        res_p = starts.copy()
        res_f = np.empty(K)
        res_it = np.zeros(K, dtype=np.int64)
        res_st = np.zeros(K, dtype=np.int64)
        counter = np.zeros(1, dtype=np.int64)
        px, py, pw = data.pointers

        def run() -> None:
            pv, pa, pj, arrays = self._buffers()
            work = getattr(self._local, "work", None)
            if work is None or work.shape[0] < _lm.work_size(Pm):
                work = self._local.work = np.empty(_lm.work_size(Pm))
            self._lm(K, table.ctypes.data, starts.ctypes.data, Pm, budgets.ctypes.data, px,
                     data.n_pad, py, pw, data.n_pad, pv, pa, pj, arrays[3].ctypes.data,
                     work.ctypes.data, float(tol), float(factor), counter.ctypes.data,
                     res_p.ctypes.data, res_f.ctypes.data, res_it.ctypes.data, res_st.ctypes.data)
        T = max(1, min(n_threads, K)) if pool is not None else 1
        futures = [pool.submit(run) for _ in range(1, T)]
        run()
        for fut in futures:
            fut.result()
        return res_p, res_f, res_it, res_st

    def close(self) -> None:
        self._packed = []


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
