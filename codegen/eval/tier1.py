"""Tier 1: fused JIT kernels, one row loop per expression structure, many per LLVM module,
cached in memory and on disk by structure, run through a driver compiled once per dtype.

Interface (what `kernels.Kernel` calls; arrays must already be validated):
``prog = Tier1Program(exprs, dtype)`` loads or compiles the population's kernels;
``prog.predict_range(Xpad, n, params, out, c0, c1)`` and
``prog.loss_range(Xpad, n, y, w, params, out_loss, c0, c1)`` work on candidates c0 <= c < c1
(one native call; the GIL is released).  ``Xpad`` is (features, ldx) C-contiguous of the dtype
with ldx a multiple of ``prog.lanes`` and ldx >= n (padded rows readable, any value);
``y``/``w`` are (ldx,) float64; ``params`` is None or (P, K) float64; ``out`` is (P, m >= n)
of the dtype (exactly n values written per row); ``out_loss`` (P, 2) float64 gets (Σ w·err², Σ w·|err|), both +inf for a candidate with a
non-finite prediction.
"""

from __future__ import annotations

import ctypes
import hashlib
import threading
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from llvmlite import ir

from symcore.errors import CompileError, DataError
from symcore.ir import Expr, Flat, flatten

from symcore.codegen import pool as _pool
from symcore.codegen.eval import emit as _emit
from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit
from symcore.codegen.llvm import textbuilder as _textbuilder
from symcore.codegen.llvm import vecmath as _vecmath

__all__ = ["Tier1Program", "structure_key", "load_kernels", "CompileStats", "driver",
           "MODULE_MAX_FUNCTIONS", "PARALLEL_COMPILE_MIN"]

#: kernels per LLVM module (bounds one compile call and one cached object)
MODULE_MAX_FUNCTIONS = 128
#: compile on several threads once a batch has this many new structures
PARALLEL_COMPILE_MIN = 16
#: codegen level of kernels: the IR is written already optimised (hoisted leaves, no memory
#: temporaries) and the math functions are precompiled helpers (`_helpers`, O2), so O0 keeps
#: most of the speed (codegen O1 was ~5% faster at ~3x the compile time)
KERNEL_OPT_IR = 0
KERNEL_OPT_CODEGEN = 0
#: native vectors per row-loop iteration: a kernel works on <VECTORS·W x T> values, which LLVM
#: splits into VECTORS independent native operations, so the core overlaps two copies of the
#: expression's dependency chain (measured on the bench population at N=1e5: 1.26x tier 0 with
#: one vector, 1.33-1.36x with two, 1.31x with four; compile cost grows about linearly)
KERNEL_VECTORS = 2

_DRIVER_T = ctypes.CFUNCTYPE(None, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
                             ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p)


def _isa_tag(isa: _vecmath.VecISA) -> str:
    return f"{isa.name}:{isa.letter}:{isa.bits}"


class _Info:
    """What tier 1 needs of one expression, computed once per (interned) Expr."""

    __slots__ = ("flat", "n_vars", "n_params", "shape", "consts")

    def __init__(self, expr: Expr) -> None:
        self.flat = _rows_only(flatten(expr))
        self.n_vars, self.n_params = _extent([self.flat])
        self.shape = _shape_hash(self.flat)
        self.consts = [float(self.flat.rows[r][2]) for r in _emit.const_slots(self.flat)]


def _rows_only(flat: Flat) -> Flat:
    """`flat` without its nodes (rows are all the generators read): a cached `_Info` holding
    the nodes would hold its own key, the root `Expr`, and the weak cache would never drop it."""
    out = Flat.__new__(Flat)
    out.rows, out.nodes, out.index = flat.rows, (), {}
    return out


_INFO: "weakref.WeakKeyDictionary[Expr, _Info]" = weakref.WeakKeyDictionary()
_INFO_LOCK = threading.Lock()


def info(expr: Expr) -> _Info:
    """Flat form, extent, structure hash and constants of `expr` (cached while it lives: a
    search re-evaluates its survivors every generation)."""
    with _INFO_LOCK:
        i = _INFO.get(expr)
    if i is None:
        i = _Info(expr)
        with _INFO_LOCK:
            _INFO[expr] = i
    return i


def structure_key(expr: Expr, dtype: str, flat: Flat | None = None) -> str:
    """What a kernel's code depends on: dtype, vector ISA and the structure (constant values
    excluded, powi exponents included since they are code)."""
    shape = _shape_hash(flat) if flat is not None else info(expr).shape
    return (f"t1|{_source_hash()}|{dtype}|{_isa_tag(_vecmath.host_isa())}|x{KERNEL_VECTORS}|"
            f"{shape}")


def _shape_hash(flat: Flat) -> str:
    h = hashlib.blake2b(digest_size=16)
    for op, kids, val in flat.rows:
        if op == "const":
            val = "C"
        elif op == "powi":
            val = repr(flat.rows[kids[1]][2])
        h.update(f"{op}|{','.join(map(str, kids))}|{val}\n".encode())
    return h.hexdigest()


def _source_hash() -> str:
    return _jit.source_hash("eval/emit.py", "eval/tier1.py", "llvm/textbuilder.py")


def _symbol(key: str) -> str:
    return "k" + hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _extent(flats: Sequence[Flat]) -> tuple[int, int]:
    """(1 + highest variable index, 1 + highest parameter slot) over the flats."""
    nv = npar = 0
    for f in flats:
        for op, _, val in f.rows:
            if op == "var":
                nv = max(nv, (val[0] if isinstance(val, tuple) else val) + 1)
            elif op == "param":
                npar = max(npar, val + 1)
    return nv, npar


#: kernel objects stay out of the in-memory cache tier when a disk cache exists (and the key
#: index keeps its entries on disk: `ObjectCache.index_get`): the loaded libraries hold what
#: runs, a reload reads the verified file again, and thousands of long-lived entries kept
#: Python's and malloc's heaps from shrinking (measured: bench_soak RSS growth per population
#: 0.17 MB with them in memory, 0.07 MB without)
_MEMORY: _cache.Memory = "without_disk"


class _LoadedKernel:
    """One loaded kernel; keeps its library loaded while referenced."""

    __slots__ = ("key", "address", "library", "__weakref__")

    def __init__(self, key: str, address: int, library: _jit.Library) -> None:
        self.key, self.address, self.library = key, address, library


_LIVE: "weakref.WeakValueDictionary[str, _LoadedKernel]" = weakref.WeakValueDictionary()
_LIVE_LOCK = threading.Lock()


@dataclass
class CompileStats:
    """What loading a population cost."""

    structures: int = 0      # distinct structures
    live: int = 0            # already loaded in this process
    cached: int = 0          # loaded from the object cache (memory or disk)
    compiled: int = 0        # compiled now
    seconds: float = 0.0     # wall time spent compiling (IR + LLVM)
    ir_seconds: float = 0.0  # of which writing IR text
    keys: list[str] = field(default_factory=list, repr=False)


def _module_text(items: Sequence[tuple[str, Flat]], dtype: str, lanes: int) -> str:
    mod = ir.Module("symcore_t1")
    try:
        bodies = [_emit.emit_kernel(mod, _symbol(k), f, dtype, lanes) for k, f in items]
        return _emit.declarations(mod, helpers=False) + "\n" + "\n".join(bodies)
    finally:
        # the text builder's identity caches keep this module's llvmlite constants alive (up
        # to 4096 entries, then cleared): dropped with the module, they stop pinning Python's
        # allocator arenas (measured: bench_soak RSS growth 0.17 -> 0.07 MB per population,
        # with index entries kept out of memory)
        _textbuilder._CONST_REF.clear()
        _textbuilder._TYPE_STR.clear()


def _compile_group(items: Sequence[tuple[str, Flat]], dtype: str,
                   lanes: int) -> tuple[str, bytes, float]:
    """Object code of one module of kernels, through the object cache (key "obj|" + id)."""
    oid = hashlib.blake2b("\n".join(k for k, _ in items).encode(), digest_size=16).hexdigest()
    ir_seconds = [0.0]

    def build() -> bytes:
        t0 = time.perf_counter()
        text = _module_text(items, dtype, lanes)
        ir_seconds[0] = time.perf_counter() - t0
        return _jit.compile_object(text, KERNEL_OPT_IR, KERNEL_OPT_CODEGEN)
    obj = _cache.get_or_compile("obj|" + oid, build, memory=_MEMORY)
    return oid, obj, ir_seconds[0]


def load_kernels(items: Sequence[tuple[str, Flat]], dtype: str,
                 lanes: int) -> tuple[dict[str, _LoadedKernel], CompileStats]:
    """Kernels for (structure key, flat) pairs: live ones reused, cached objects loaded, the
    rest compiled (several modules on several threads when there are many) and cached."""
    stats = CompileStats()
    want: dict[str, Flat] = {}
    for k, f in items:
        want.setdefault(k, f)
    stats.structures = len(want)
    stats.keys = list(want)
    out: dict[str, _LoadedKernel] = {}
    with _LIVE_LOCK:
        for k in want:
            c = _LIVE.get(k)
            if c is not None and not c.library.closed:   # an evicted library is loaded anew
                out[k] = c
    stats.live = len(out)
    cache = _cache.object_cache()
    groups: dict[str, list[str]] = {}
    objs: dict[str, bytes | None] = {}
    todo: list[tuple[str, Flat]] = []
    # the key index: structure key -> id of the object holding its kernel (a checksummed
    # entry; the object is verified again, and a kernel missing from it is recompiled)
    index = cache.index_get([k for k in want if k not in out])
    for k, f in want.items():
        if k in out:
            continue
        raw = index.get(k)
        oid = raw.hex() if raw is not None else None
        if oid is not None and oid not in objs:
            objs[oid] = cache.get("obj|" + oid, memory=_MEMORY)
        if oid is not None and objs[oid] is not None:
            groups.setdefault(oid, []).append(k)
        else:
            todo.append((k, f))
    # one link per call (cached objects together, compiled ones together): fewer links, fewer
    # JITDylibs left in the LLJIT instance until it is disposed (jit.LINKS_PER_JIT)
    found = [(oid, objs[oid], keys) for oid, keys in groups.items()]
    if found:
        try:
            _attach(out, [o for _, o, _ in found], [k for *_, ks in found for k in ks])
            stats.cached += sum(len(ks) for *_, ks in found)
        except CompileError:   # one verified yet not loadable: load them one by one
            for oid, obj, keys in found:
                try:
                    _attach(out, [obj], keys)
                except CompileError:   # forget it, compile these again
                    cache.discard("obj|" + oid)
                    todo.extend((k, want[k]) for k in keys)
                    continue
                stats.cached += len(keys)
    if todo:
        t0 = time.perf_counter()
        n_mod = max(1, -(-len(todo) // MODULE_MAX_FUNCTIONS))
        if len(todo) >= PARALLEL_COMPILE_MIN:
            n_mod = max(n_mod, 2)
        size = -(-len(todo) // n_mod)
        chunks = [todo[i:i + size] for i in range(0, len(todo), size)]
        if len(chunks) > 1 and _pool.n_threads() > 1:
            results = list(_pool.executor().map(lambda ch: _compile_group(ch, dtype, lanes),
                                                chunks))
        else:
            results = [_compile_group(ch, dtype, lanes) for ch in chunks]
        # an entry whose object was pruned (or failed to load) is overwritten here
        cache.index_put([(k, bytes.fromhex(oid)) for ch, (oid, _, _) in zip(chunks, results)
                         for k, _ in ch])
        stats.ir_seconds += sum(irs for _, _, irs in results)
        _attach(out, [obj for _, obj, _ in results], [k for k, _ in todo])
        stats.compiled = len(todo)
        stats.seconds = time.perf_counter() - t0
    return out, stats


_HELPER_OBJ: list[bytes] = []
_HELPER_LOCK = threading.Lock()


def _helpers() -> list[bytes]:
    """The vecmath helpers' object code (compiled once per process at O2, cached on disk), which
    every kernel library links: none when the host ISA does not use them."""
    if not _vecmath.inline_applies(ir.VectorType(ir.DoubleType(), 8)):
        return []
    with _HELPER_LOCK:
        if not _HELPER_OBJ:
            key = f"t1helpers|{_source_hash()}|{_isa_tag(_vecmath.host_isa())}"
            _HELPER_OBJ.append(_cache.get_or_compile(
                key, lambda: _jit.compile_object(_emit.helper_module(), 2, 2)))
        return list(_HELPER_OBJ)


def _attach(out: dict[str, _LoadedKernel], objs: list[bytes], keys: list[str]) -> None:
    # evictable: the LRU bound ($SYMCORE_MAX_ENGINES) may unload it while no call runs in it
    lib = _jit.load_library(objs + _helpers(), [_symbol(k) for k in keys], evictable=True)
    with _LIVE_LOCK:
        for k in keys:
            c = _LIVE.get(k)
            if c is None or c.library.closed:
                c = _LoadedKernel(k, lib.addresses[_symbol(k)], lib)
                _LIVE[k] = c
            out[k] = c


class _Driver:
    """The loaded driver of one dtype (kept for the life of the process)."""

    def __init__(self, dtype: str, lanes: int) -> None:
        key = (f"t1drv|{_source_hash()}|{_emit.CHUNK}|{_emit.FIRST_CHUNK}|{dtype}|{lanes}|"
               f"{_isa_tag(_vecmath.host_isa())}")
        obj = _cache.get_or_compile(
            key, lambda: _jit.compile_object(_emit.emit_driver("run", dtype, lanes), 2, 2))
        self.library = _jit.load_library([obj], ["run"], permanent=True)
        self.run = _DRIVER_T(self.library.addresses["run"])


_DRIVERS: dict[tuple[str, int], _Driver] = {}
_DRIVER_LOCK = threading.Lock()


def driver(dtype: str, lanes: int) -> _Driver:
    with _DRIVER_LOCK:
        d = _DRIVERS.get((dtype, lanes))
        if d is None:
            d = _DRIVERS[(dtype, lanes)] = _Driver(dtype, lanes)
        return d


def _need_contig(a: Any, name: str, dtype: Any, shape: tuple[int | None, ...]) -> None:
    if not isinstance(a, np.ndarray) or a.dtype != dtype or not a.flags.c_contiguous \
            or a.ndim != len(shape) \
            or any(s is not None and s != d for s, d in zip(shape, a.shape)):
        want = "×".join("?" if s is None else str(s) for s in shape)
        got = (f"{a.dtype} {a.shape}{'' if a.flags.c_contiguous else ' non-contiguous'}"
               if isinstance(a, np.ndarray) else type(a).__name__)
        raise DataError(f"{name} must be a C-contiguous {np.dtype(dtype)} array of shape "
                        f"({want}), got {got}")


@dataclass(frozen=True)
class _Loaded:
    """A program's kernels as loaded once: swapped whole when evicted ones are reloaded, so a
    call holds one consistent set (libraries it pinned, the address table it passes)."""

    kernels: list[_LoadedKernel]   # keep their libraries loaded
    libs: list[_jit.Library]
    fn: np.ndarray                 # kernel addresses, candidate order
    stats: CompileStats


class Tier1Program:
    """A population's fused kernels, ready to run (see the module docstring).  When the LRU
    bound on loaded libraries ($SYMCORE_MAX_ENGINES) unloads one of its libraries, the next
    call loads those kernels again (from the object cache, or compiling them)."""

    def __init__(self, exprs: Sequence[Expr], dtype: str = "float64") -> None:
        if dtype not in ("float64", "float32"):
            raise CompileError(f"tier 1 supports float64 and float32, not {dtype!r}")
        self.dtype = dtype
        self._np = np.dtype(dtype)
        isa = _vecmath.host_isa()
        self.lanes = _vecmath.width(dtype, isa) * KERNEL_VECTORS
        _vecmath.ensure_libraries()
        infos = [info(e) for e in exprs]
        flats = [i.flat for i in infos]
        keys = [structure_key(e, dtype) for e in exprs]
        # structure keys and flats (rows only, no Expr): what reloading evicted kernels needs
        self._items = list(zip(keys, flats))
        self._reload_lock = threading.Lock()
        self.reloads = 0
        self._state = self._load()
        self.stats: CompileStats = self._state.stats
        consts: list[float] = []
        offs: list[int] = []
        for i in infos:
            offs.append(len(consts))
            consts.extend(i.consts)
        self._consts = np.array(consts or [0.0], dtype=np.float64)
        self._coff = np.array(offs or [0], dtype=np.int64)
        self.n_candidates = len(flats)
        self.n_vars = max((i.n_vars for i in infos), default=0)
        self.n_params = max((i.n_params for i in infos), default=0)
        self._zero_params = np.zeros(max(1, self.n_params), dtype=np.float64)
        self._driver = driver(dtype, self.lanes)

    def _load(self) -> "_Loaded":
        codes, stats = load_kernels(self._items, self.dtype, self.lanes)
        kern = [codes[k] for k, _ in self._items]
        libs = list({id(c.library): c.library for c in kern}.values())
        fn = np.array([c.address for c in kern] or [0], dtype=np.uint64)
        return _Loaded(kern, libs, fn, stats)

    def _pinned(self) -> "_Loaded":
        """The loaded kernels, pinned against eviction (`_unpin` after the call); kernels
        whose library the LRU bound unloaded are loaded again first."""
        for _ in range(16):
            st = self._state
            if _jit.pin(st.libs):
                return st
            with self._reload_lock:
                if self._state is st:   # not reloaded by another thread meanwhile
                    self._state = self._load()
                    self.reloads += 1
        raise CompileError("tier-1 kernels were unloaded again before they could run: raise "
                           "$SYMCORE_MAX_ENGINES above the number of threads calling kernels")

    def _args(self, X: np.ndarray, n: int, params: np.ndarray | None, c0: int,
              c1: int, fn: np.ndarray) -> tuple[list[Any], np.ndarray]:
        if not (0 <= c0 <= c1 <= self.n_candidates):
            raise DataError(f"candidate range [{c0}, {c1}) outside 0..{self.n_candidates}")
        _need_contig(X, "X", self._np, (None, None))
        ldx = X.shape[1]
        if ldx % self.lanes or not (0 <= n <= ldx):
            raise DataError(f"X rows must be padded to a multiple of {self.lanes} holding n={n}")
        if X.shape[0] < self.n_vars:
            raise DataError(f"population reads {self.n_vars} feature(s), X has {X.shape[0]}")
        if params is None:
            if self.n_params:
                raise DataError(f"the population uses {self.n_params} parameter(s); pass params")
            pa, poff = self._zero_params, np.zeros(self.n_candidates or 1, dtype=np.int64)
        else:
            _need_contig(params, "params", np.float64, (self.n_candidates, None))
            if params.shape[1] < self.n_params:
                raise DataError(f"params need {self.n_params} column(s), got {params.shape[1]}")
            pa = params if params.size else self._zero_params
            poff = np.arange(self.n_candidates or 1, dtype=np.int64) * params.shape[1]
        keep = poff
        return [c0, c1, fn.ctypes.data, X.ctypes.data, ldx, n, None, None,
                self._consts.ctypes.data, self._coff.ctypes.data, pa.ctypes.data,
                poff.ctypes.data], keep

    def predict_range(self, X: np.ndarray, n: int, params: np.ndarray | None,
                      out: np.ndarray, c0: int = 0, c1: int | None = None) -> None:
        """out[c, :n] = predictions of candidate c for c0 <= c < c1 (out is (P, m), m >= n;
        nothing is written past column n)."""
        c1 = self.n_candidates if c1 is None else c1
        st = self._pinned()
        try:
            args, keep = self._args(X, n, params, c0, c1, st.fn)
            _need_contig(out, "out", self._np, (self.n_candidates, None))
            if out.shape[1] < n:
                raise DataError(f"out has {out.shape[1]} column(s) for {n} row(s)")
            self._driver.run(*args, out.ctypes.data, out.shape[1], None)
            del keep
        finally:
            _jit.unpin(st.libs)

    def loss_range(self, X: np.ndarray, n: int, y: np.ndarray, w: np.ndarray,
                   params: np.ndarray | None, out_loss: np.ndarray, c0: int = 0,
                   c1: int | None = None) -> None:
        """out_loss[c] = (Σ w·err², Σ w·|err|) for c0 <= c < c1 (+inf both when non-finite)."""
        c1 = self.n_candidates if c1 is None else c1
        st = self._pinned()
        try:
            args, keep = self._args(X, n, params, c0, c1, st.fn)
            ldx = X.shape[1]
            _need_contig(y, "y", np.float64, (ldx,))
            _need_contig(w, "w", np.float64, (ldx,))
            _need_contig(out_loss, "out_loss", np.float64, (self.n_candidates, 2))
            # unit weights (the unweighted case): the driver skips reading and multiplying them
            unit = bool(n) and bool(np.all(w[:n] == 1.0))
            args[6], args[7] = y.ctypes.data, (None if unit else w.ctypes.data)
            self._driver.run(*args, None, 0, out_loss.ctypes.data)
            del keep
        finally:
            _jit.unpin(st.libs)
