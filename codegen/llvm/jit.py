"""The one place that talks to llvmlite.binding: initialisation, the host target machine,
IR parse/verify/optimise, object code, loaded libraries (ORC) and the object-code caches.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable

import llvmlite
import llvmlite.binding as llvm

from symcore.errors import CompileError

__all__ = ["host_features", "host_cpu", "target_machine", "compile_object", "Library",
           "load_library", "open_libraries", "ObjectCache", "object_cache", "cache_dir", "ENV_KEY"]

#: bump when the generated code changes meaning, so stale disk caches are ignored
CODEGEN_VERSION = "1"

_lock = threading.RLock()


@functools.lru_cache(maxsize=None)
def _init() -> None:
    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    llvm.initialize_native_asmparser()


@functools.lru_cache(maxsize=None)
def host_features() -> dict[str, bool]:
    """Host CPU features as LLVM reports them (e.g. {"avx512f": True, …})."""
    _init()
    return {k: bool(v) for k, v in llvm.get_host_cpu_features().items()}


@functools.lru_cache(maxsize=None)
def host_cpu() -> str:
    _init()
    return llvm.get_host_cpu_name()


@functools.lru_cache(maxsize=None)
def _feature_string() -> str:
    _init()
    return llvm.get_host_cpu_features().flatten()


def _make_tm(opt: int) -> Any:
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=host_cpu(), features=_feature_string(), opt=opt,
                                        reloc="pic", codemodel="default", jit=True)


_tls = threading.local()


def target_machine(opt: int = 1) -> Any:
    """Host target machine (host CPU and features) generating code at codegen level `opt`;
    one per thread, so threads can compile at the same time."""
    _init()
    tms = getattr(_tls, "tms", None)
    if tms is None:
        tms = _tls.tms = {}
    tm = tms.get(opt)
    if tm is None:
        tm = tms[opt] = _make_tm(opt)
    return tm


def _context() -> Any:
    # one LLVM context per thread: modules of different threads never share one
    ctx = getattr(_tls, "ctx", None)
    if ctx is None:
        ctx = _tls.ctx = llvm.create_context()
    return ctx


#: names the environment a piece of object code is valid in
ENV_KEY = hashlib.blake2b(
    f"{llvmlite.__version__}|{llvm.llvm_version_info}|{CODEGEN_VERSION}".encode(),
    digest_size=8).hexdigest()


@functools.lru_cache(maxsize=None)
def _machine_key() -> str:
    return hashlib.blake2b(f"{host_cpu()}|{_feature_string()}|{ENV_KEY}".encode(),
                           digest_size=8).hexdigest()


def optimise(mod: Any, level: int, tm: Any = None) -> None:
    """Run LLVM's default pipeline at `level` (0..3) on a parsed module (new pass manager)."""
    if level <= 0:
        return
    pto = llvm.create_pipeline_tuning_options(speed_level=level)
    pb = llvm.create_pass_builder(tm or target_machine(), pto)
    pm = pb.getModulePassManager()
    pm.run(mod, pb)


def compile_object(ir_text: str, opt_ir: int = 0, opt_codegen: int = 1) -> bytes:
    """IR text -> verified, optimised host object code (ELF bytes)."""
    _init()
    tm = target_machine(opt_codegen)
    try:
        mod = llvm.parse_assembly(ir_text, context=_context())
        mod.verify()
    except RuntimeError as err:
        raise CompileError(f"LLVM rejected the generated IR: {err}") from None
    mod.triple = llvm.get_process_triple()
    mod.data_layout = str(tm.target_data)
    optimise(mod, opt_ir, tm)
    obj = bytes(tm.emit_object(mod))
    mod.close()
    return obj


# -- loaded code ---------------------------------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _lljit() -> Any:
    _init()
    from symcore.codegen.llvm.vecmath import ensure_libraries
    ensure_libraries()
    return llvm.create_lljit_compiler(_make_tm(2))


_names = itertools.count()
_open = [0]


def open_libraries() -> int:
    """Libraries currently loaded (a compile-and-discard loop must keep this bounded)."""
    return _open[0]


class Library:
    """Object code loaded into the process; function addresses stay valid while it is open.
    Closing (or garbage-collecting) it unloads the code."""

    def __init__(self, objects: Iterable[bytes], symbols: Iterable[str]) -> None:
        syms = list(dict.fromkeys(symbols))
        with _lock:
            jit = _lljit()
            b = llvm.JITLibraryBuilder()
            for obj in objects:
                b.add_object_img(obj)
            b.add_current_process()
            for s in syms:
                b.export_symbol(s)
            try:
                self._tracker = b.link(jit, f"symcore{next(_names)}")
            except RuntimeError as err:
                self._tracker = None
                raise CompileError(f"cannot load generated code: {err}") from None
            _open[0] += 1
        self.addresses: dict[str, int] = {s: int(self._tracker[s]) for s in syms}
        for s, a in self.addresses.items():
            if not a:
                raise CompileError(f"symbol {s!r} missing from the generated code")

    def close(self) -> None:
        with _lock:
            t, self._tracker = getattr(self, "_tracker", None), None
            if t is not None:
                t.close()
                _open[0] -= 1

    @property
    def closed(self) -> bool:
        return self._tracker is None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass


def load_library(objects: Iterable[bytes], symbols: Iterable[str]) -> Library:
    return Library(objects, symbols)


# -- caches --------------------------------------------------------------------------------------

def cache_dir() -> Path | None:
    """On-disk cache directory: `$SYMCORE_CACHE` or ~/.cache/symcore (empty string = disabled),
    one subdirectory per machine; at most `$SYMCORE_CACHE_MAX_MB` (512) MB, oldest files go."""
    env = os.environ.get("SYMCORE_CACHE")
    if env is not None and env.strip() == "":
        return None
    base = Path(env) if env else Path.home() / ".cache" / "symcore"
    return base / _machine_key()


def _prune(d: Path, limit: int) -> None:
    """Delete the least recently written cache files until `d` holds at most 3/4 of `limit`."""
    try:
        files = [(f.stat(), f) for f in d.iterdir() if f.suffix == ".o"]
    except OSError:
        return
    total = sum(s.st_size for s, _ in files)
    if total <= limit:
        return
    for s, f in sorted(files, key=lambda t: t[0].st_mtime):
        try:
            f.unlink()
        except OSError:
            continue
        total -= s.st_size
        if total <= limit * 3 // 4:
            break


def _disk_limit() -> int:
    env = os.environ.get("SYMCORE_CACHE_MAX_MB", "").strip()
    return (int(env) if env.isdigit() else 512) << 20


class ObjectCache:
    """Object code keyed by a string: an in-memory LRU in front of an on-disk directory.
    Keys must already include everything the code depends on except the machine, which the
    directory name carries (CPU, features, llvmlite/LLVM and codegen versions)."""

    def __init__(self, capacity_bytes: int = 64 << 20) -> None:
        self.capacity_bytes = capacity_bytes
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._puts = 0
        self._lock = threading.Lock()

    def _path(self, key: str) -> Path | None:
        d = cache_dir()
        if d is None:
            return None
        return d / f"{hashlib.blake2b(key.encode(), digest_size=16).hexdigest()}.o"

    def get(self, key: str) -> bytes | None:
        with self._lock:
            obj = self._mem.get(key)
            if obj is not None:
                self._mem.move_to_end(key)
                return obj
        p = self._path(key)
        if p is not None:
            try:
                obj = p.read_bytes()
            except OSError:
                return None
            self._remember(key, obj)
            return obj
        return None

    def put(self, key: str, obj: bytes) -> None:
        self._remember(key, obj)
        p = self._path(key)
        if p is None:
            return
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(obj)
            os.replace(tmp, p)  # atomic: concurrent processes never see half a file
        except OSError:
            return  # an unwritable cache only costs recompilation
        self._puts += 1
        if self._puts % 64 == 0:   # keep the directory bounded (`$SYMCORE_CACHE_MAX_MB`)
            _prune(p.parent, _disk_limit())

    def _remember(self, key: str, obj: bytes) -> None:
        with self._lock:
            old = self._mem.pop(key, None)
            self._bytes += len(obj) - (len(old) if old is not None else 0)
            self._mem[key] = obj
            while self._bytes > self.capacity_bytes and len(self._mem) > 1:
                _, dropped = self._mem.popitem(last=False)
                self._bytes -= len(dropped)

    @property
    def memory_bytes(self) -> int:
        """Bytes of object code held in memory (bounded by `capacity_bytes`)."""
        return self._bytes

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0


@functools.lru_cache(maxsize=None)
def object_cache() -> ObjectCache:
    """The process-wide object-code cache."""
    return ObjectCache()


@functools.lru_cache(maxsize=None)
def source_hash(*files: str) -> str:
    """Hash of the given codegen source files (paths relative to codegen/) and the ops table: part
    of every on-disk cache key, so a change to the generator, the lowering or an op's semantics
    invalidates cached objects."""
    h = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent.parent
    for f in (*files, "llvm/lower.py", "llvm/vecmath.py", "llvm/irflow.py"):
        h.update((here / f).read_bytes())
    import symcore.ops
    h.update(Path(symcore.ops.__file__).read_bytes())
    return h.hexdigest()

