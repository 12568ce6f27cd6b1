"""Tier-0 parameter Jacobians: a Jacobian interpreter compiled once per machine (no compilation
per candidate) over the shared tier-0 bytecode (`codegen.bytecode`), its population batch entry
and the native Levenberg–Marquardt loop linked into the same library.  Candidates are packed
here (see the comment at the top of grad/tier0_emit.py); the code is generated there."""

from __future__ import annotations

import ctypes
import functools
import math
import threading
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError, SymcoreError
from symcore.ir import Expr, flatten
from symcore.ops import LEAVES, generation

from symcore.codegen.bytecode import KIND_CONST, KIND_PARAM, OP_VAR, opcodes, runnable
from symcore.codegen.fit import native_lm as _lm
from symcore.codegen.grad.data import Data, unpack_square
from symcore.codegen.grad.templates import active_nodes
from symcore.codegen.grad.tier0_emit import (T0_ARGS, T0_BATCH_ARGS, T0_TABLE, T0_UNROLL,
                                             T0_UNROLLED_PARAMS, emit_tier0, emit_tier0_batch)
from symcore.codegen.llvm import jit
from symcore.codegen.llvm.cache import get_or_compile
from symcore.codegen.llvm.vecmath import width

__all__ = ["Tier0Grad", "emit_tier0", "emit_tier0_batch", "T0_UNROLL", "T0_UNROLLED_PARAMS"]

#: part of the library's cache key: bump when the generated code changes meaning
_T0_VERSION = "g0-6"
#: generator files of the library (relative to codegen/): part of its cache key
SOURCES = ("grad/tier0.py", "grad/tier0_emit.py", "grad/templates.py", "fit/native_lm.py",
           "bytecode.py", "llvm/values.py")


def _t0_ctype(args: list[str]) -> Any:
    m = {"i32p": ctypes.c_void_p, "i64p": ctypes.c_void_p, "f64p": ctypes.c_void_p,
         "i64": ctypes.c_int64, "f64": ctypes.c_double}
    return ctypes.CFUNCTYPE(None, *(m[a] for a in args))


@functools.lru_cache(maxsize=4)
def _tier0_library(lanes: int, gen: int = 0) -> tuple[Any, tuple[Any, Any]]:
    # `gen`: the ops registry's generation (the opcode switch bakes the op set in)
    key = (f"grad-tier0|{_T0_VERSION}|{lanes}x{T0_UNROLL}|"
           f"{jit.source_hash(*SOURCES)}")

    def build() -> bytes:
        module = ir.Module(name="symcore_grad_tier0")
        normal = emit_tier0(module, lanes)
        emit_tier0_batch(module, normal)
        _lm.emit_lm(module, normal, lanes * T0_UNROLL)
        return jit.compile_object(str(module), 2, 2)
    obj = get_or_compile(key, build)
    lib = jit.load_library([obj], ["g0_normal", "g0_batch", "g0_lm"])
    return lib, (_t0_ctype(T0_ARGS)(lib.addresses["g0_normal"]),
                 _t0_ctype(T0_BATCH_ARGS)(lib.addresses["g0_batch"]),
                 _t0_ctype(_lm.LM_ARGS)(lib.addresses["g0_lm"]))


@dataclass(frozen=True)
class _JacobianCode:
    """One candidate as tier-0 Jacobian bytecode (see the comment above `_T0_VERSION`)."""

    fills: np.ndarray
    fwd: np.ndarray
    rev: np.ndarray
    pslots: np.ndarray
    pool: np.ndarray
    root: int
    n_slots: int
    P: int
    n_cols: int


def _pack(expr: Expr) -> _JacobianCode:
    flat = flatten(expr)
    nodes = flat.nodes
    codes = opcodes()
    ok = runnable(derivatives=True)
    act = active_nodes(list(nodes))
    fills, fwd, rev, pool = [], [], [], []
    pslot = {}
    for i, (op, kids, val) in enumerate(flat.rows):
        if op == "const":
            fills.append((i, KIND_CONST, len(pool)))
            pool.append(float(val))
        elif op == "param":
            fills.append((i, KIND_PARAM, val))
            pslot[val] = i
        elif op == "var":
            fwd.append((OP_VAR, i, val[0] if isinstance(val, tuple) else val, 0))
        else:
            if op not in ok:
                raise CompileError(f"the tier-0 Jacobian cannot run operator {op!r}: it lacks "
                                   f"an LLVM lowering or derivative templates")
            a = kids[0]
            b2 = kids[1] if len(kids) > 1 else 0
            fwd.append((codes[op], i, a, b2))
    for i in range(len(nodes) - 1, -1, -1):
        op, kids, _ = flat.rows[i]
        if nodes[i] not in act or op in LEAVES:
            continue
        flags = sum(1 << j for j, k in enumerate(kids) if nodes[k] in act)
        rev.append((codes[op], i, kids[0], kids[1] if len(kids) > 1 else 0, flags))
    n_slots = len(nodes)
    # from the rows already flattened (Expr.n_params / variables() would flatten twice more)
    P = max(pslot, default=-1) + 1
    n_cols = max((v[0] if isinstance(v, tuple) else v for op, _, v in flat.rows if op == "var"),
                 default=-1) + 1
    arr = lambda rows, w: np.ascontiguousarray(  # noqa: E731
        np.array(rows, dtype=np.int32).reshape(-1, w))
    return _JacobianCode(arr(fills, 3), arr(fwd, 4), arr(rev, 5),
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
        self._lib, (self._fn, self._batch, self._lm) = _tier0_library(self.vector, generation())
        self._packed = [_pack(e) for e in self.exprs]
        self.max_params = max((pk.P for pk in self._packed), default=0)
        self._table = np.array([[pk.fills.ctypes.data, pk.fills.shape[0], pk.fwd.ctypes.data,
                                 pk.fwd.shape[0], pk.rev.ctypes.data, pk.rev.shape[0],
                                 pk.pslots.ctypes.data, pk.P, pk.pool.ctypes.data, pk.root,
                                 pk.n_slots] for pk in self._packed],
                               dtype=np.int64).reshape(-1, len(T0_TABLE))
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
        f, g, H = unpack_square(out.reshape(1, 1 + P + P * P, self.lanes), P)
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
        return unpack_square(outs.reshape(K, 1 + Pm + Pm * Pm, self.lanes), Pm)

    def fit_lm(self, ids: np.ndarray, starts: np.ndarray, budgets: np.ndarray, data: Data,
               tol: float, factor: float = 100.0, pool: Any = None, n_threads: int = 1,
               max_time: float = math.inf, deadline: float = math.inf
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Levenberg–Marquardt (`codegen.lm`) on problems k: candidate ids[k] from starts[k]
        ((K, Pm) float64, Pm = `max_params`) within budgets[k] trial steps, entirely in native
        code: every thread (`pool` runs all but one) takes the next problem from a shared
        counter.  Returns (params (K, Pm), Σ w r² (K,), trial steps (K,), status codes (K,),
        indices into fit.STATUSES).  Time limit: a problem stops (status "time limit", at its
        best point so far) `max_time` seconds after it starts or at `deadline` (a
        time.monotonic() value), whichever comes first."""
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
        limits = np.array([max_time, deadline], dtype=np.float64)
        clock = _lm.clock_address() if (math.isfinite(max_time) or math.isfinite(deadline)) \
            else 0
        px, py, pw = data.pointers

        def run() -> None:
            pv, pa, pj, arrays = self._buffers()
            work = getattr(self._local, "work", None)
            if work is None or work.shape[0] < _lm.work_size(Pm):
                work = self._local.work = np.empty(_lm.work_size(Pm))
            self._lm(K, table.ctypes.data, starts.ctypes.data, Pm, budgets.ctypes.data, px,
                     data.n_pad, py, pw, data.n_pad, pv, pa, pj, arrays[3].ctypes.data,
                     work.ctypes.data, float(tol), float(factor), counter.ctypes.data,
                     res_p.ctypes.data, res_f.ctypes.data, res_it.ctypes.data, res_st.ctypes.data,
                     clock, limits.ctypes.data)
        T = max(1, min(n_threads, K)) if pool is not None else 1
        futures = [pool.submit(run) for _ in range(1, T)]
        run()
        for fut in futures:
            fut.result()
        return res_p, res_f, res_it, res_st

    def close(self) -> None:
        self._packed = []
