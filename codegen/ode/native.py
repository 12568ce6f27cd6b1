"""Compiled right-hand sides (one object per group of new systems, through the one object cache,
kept per system digest in a bounded LRU) and the compiled-once integrator driver, called from
the pool's threads (ctypes releases the GIL) on a shared atomic problem counter."""

from __future__ import annotations

import ctypes
import functools
import hashlib
import threading
from collections import OrderedDict
from typing import Sequence

import numpy as np
from llvmlite import binding, ir

from symcore.codegen import pool as _pool
from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit
from symcore.codegen.ode.emit import (DRIVER, METHODS, WORK_VECTORS, emit_driver, emit_rhs,
                                      emit_rhs_batch)
from symcore.dynamics import System

__all__ = ["rhs_functions", "driver", "integrate", "RHS_CACHE_SIZE", "RHS_OPT"]

#: compiled right-hand sides kept loaded (by system digest)
RHS_CACHE_SIZE = 4096
#: optimisation levels of right-hand sides (IR pipeline, machine code)
RHS_OPT = (2, 2)

_RHS_C = ctypes.CFUNCTYPE(None, ctypes.c_double, ctypes.c_void_p, ctypes.c_void_p,
                          ctypes.c_void_p)
_BATCH_C = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_double, ctypes.c_void_p,
                            ctypes.c_void_p, ctypes.c_void_p)
_DRIVER_C = ctypes.CFUNCTYPE(None, *([ctypes.c_int64] + [ctypes.c_void_p] * 3 + [ctypes.c_int64,
                             ctypes.c_void_p, ctypes.c_int64] + [ctypes.c_void_p] * 3 +
                             [ctypes.c_double, ctypes.c_double, ctypes.c_int64, ctypes.c_double,
                              ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]))


def _source_hash() -> str:
    return _jit.source_hash("ode/emit.py", "ode/native.py")


class CompiledRhs:
    """One system's loaded right-hand side: `address` of `rhs`, `batch` address, and ctypes
    callables (the library stays loaded while this object lives)."""

    __slots__ = ("n", "address", "batch_address", "library", "call", "call_batch")

    def __init__(self, n: int, address: int, batch_address: int, library: _jit.Library) -> None:
        self.n = n
        self.address = address
        self.batch_address = batch_address
        self.library = library
        self.call = _RHS_C(address)
        self.call_batch = _BATCH_C(batch_address)


def _module(items: Sequence[tuple[str, System]]) -> str:
    mod = ir.Module(name="symcore_ode_rhs")
    mod.triple = binding.get_process_triple()
    for sym, s in items:
        f = emit_rhs(mod, sym, s)
        emit_rhs_batch(mod, sym + "_batch", f, s.n)
    return str(mod)


_lru: "OrderedDict[str, CompiledRhs]" = OrderedDict()
_lock = threading.Lock()


def rhs_functions(systems: Sequence[System]) -> list[CompiledRhs]:
    """The compiled right-hand side of every system (new ones compiled together, once)."""
    out: list[CompiledRhs | None] = [None] * len(systems)
    todo: dict[str, tuple[str, System]] = {}
    with _lock:
        for i, s in enumerate(systems):
            d = s.digest()
            hit = _lru.get(d)
            if hit is not None:
                _lru.move_to_end(d)
                out[i] = hit
            elif d not in todo:
                todo[d] = (f"symcore_rhs_{d}", s)
    if todo:
        items = sorted(todo.values())
        key_h = hashlib.blake2b(digest_size=16)
        for sym, _ in items:
            key_h.update(sym.encode())
        key = f"ode-rhs|{_source_hash()}|{RHS_OPT}|{key_h.hexdigest()}"
        text = _module(items)
        obj = _cache.get_or_compile(key, lambda: _jit.compile_object(text, *RHS_OPT))
        syms = [sym for sym, _ in items] + [sym + "_batch" for sym, _ in items]
        lib = _jit.load_library([obj], syms)
        made = {d: CompiledRhs(s.n, lib.addresses[sym], lib.addresses[sym + "_batch"], lib)
                for d, (sym, s) in todo.items()}
        with _lock:
            for d, c in made.items():
                _lru[d] = c
            while len(_lru) > RHS_CACHE_SIZE:
                _lru.popitem(last=False)
        for i, s in enumerate(systems):
            if out[i] is None:
                out[i] = made[s.digest()]
    return out  # type: ignore[return-value]


class _Driver:
    def __init__(self) -> None:
        def build() -> bytes:
            mod = ir.Module(name="symcore_ode_driver")
            mod.triple = binding.get_process_triple()
            emit_driver(mod)
            return _jit.compile_object(str(mod), 2, 2)
        obj = _cache.get_or_compile(f"ode-driver|{_source_hash()}", build)
        self.library = _jit.load_library([obj], [DRIVER])
        self.run = _DRIVER_C(self.library.addresses[DRIVER])


@functools.lru_cache(maxsize=1)
def driver() -> _Driver:
    """The integrator driver, compiled once per machine (and cached on disk)."""
    return _Driver()


def integrate(fns: np.ndarray, pars: np.ndarray, y0: np.ndarray, ts: np.ndarray,
              method: str, rtol: float, atol: float, max_steps: int, hmax: float,
              threads: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """K problems in native code: fns/pars (K,) int64 addresses, y0 (K, n) float64, ts (nt,)
    increasing.  Returns out (K, nt, n) (NaN after a failure), status (K,), steps (K,)."""
    K, n = y0.shape
    nt = ts.shape[0]
    if K == 0:
        return np.full((0, nt, n), np.nan), np.zeros(0, np.int64), np.zeros(0, np.int64)
    run = driver().run
    code = METHODS[method]
    threads = 1 if K == 1 else max(1, min(threads or _pool.n_threads(), K))
    # One integer and one float block per call: every pointer is a block address plus an
    # offset (an `ndarray.ctypes` lookup costs microseconds, as much as a short integration).
    ib = np.zeros(4 * K + 1, dtype=np.int64)     # fns, pars, status, steps, counter
    ib[:K] = fns
    ib[K:2 * K] = pars
    nw = WORK_VECTORS * n
    fb = np.empty(K * n + nt + threads * nw + K * nt * n)
    fb[:K * n] = y0.reshape(-1)
    fb[K * n:K * n + nt] = ts
    o_out = K * n + nt + threads * nw
    fb[o_out:] = np.nan
    ia = ib.__array_interface__["data"][0]
    fa = fb.__array_interface__["data"][0]

    def work(i: int) -> None:
        run(K, ia, ia + 8 * K, fa, n, fa + 8 * K * n, nt, fa + 8 * o_out, ia + 16 * K,
            ia + 24 * K, rtol, atol, max_steps, hmax, code, fa + 8 * (K * n + nt + i * nw),
            ia + 32 * K)
    if threads <= 1:
        work(0)
    else:
        ex = _pool.executor(threads)
        futs = [ex.submit(work, i) for i in range(threads)]
        for f in futs:
            f.result()
    return fb[o_out:].reshape(K, nt, n), ib[2 * K:3 * K], ib[3 * K:4 * K]
