"""The one place that compiles and loads code with llvmlite.binding: the host target machine,
IR parse/verify/optimise, object code, loaded libraries (ORC), cache-key source hashes.
(Host CPU facts live in `llvm.host`, the object-code cache in `llvm.cache`.)

Memory of loaded code stays bounded: libraries link into an LLJIT instance that is retired
after `LINKS_PER_JIT` links and disposed (with everything ORC kept of its closed libraries) when
its last library closes; at most `$SYMCORE_MAX_ENGINES` evictable libraries stay loaded (LRU).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import numbers
import os
import threading
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import llvmlite.binding as llvm
from llvmlite.binding import ffi as _ffi
from llvmlite.binding import newpassmanagers as _npm

from symcore.errors import CompileError

from symcore.codegen.llvm import host, vecmath
from symcore.codegen.llvm.host import host_cpu, host_features

__all__ = ["host_features", "host_cpu", "target_machine", "compile_object", "Library",
           "load_library", "open_libraries", "evictable_libraries", "live_jits", "max_engines",
           "pin", "unpin", "source_hash", "parsed", "emit_object"]

_lock = threading.RLock()


def _make_tm(opt: int) -> Any:
    target = llvm.Target.from_default_triple()
    return target.create_target_machine(cpu=host.host_cpu(), features=host.feature_string(), opt=opt,
                                        reloc="pic", codemodel="default", jit=True)


_tls = threading.local()


def target_machine(opt: int = 1) -> Any:
    """Host target machine (host CPU and features) generating code at codegen level `opt`;
    one per thread, so threads can compile at the same time."""
    host.init()
    tms = getattr(_tls, "tms", None)
    if tms is None:
        tms = _tls.tms = {}
    tm = tms.get(opt)
    if tm is None:
        tm = tms[opt] = _make_tm(opt)
    return tm


@contextlib.contextmanager
def parsed(ir_text: str) -> Iterator[Any]:
    """IR text parsed into a module of an LLVM context of its own; both freed on exit.  A
    context keeps every type and constant any of its modules ever used (uniqued, never
    released): a shared one grew ~16 KB per compiled kernel.  RuntimeError: LLVM rejected
    the text."""
    ctx = llvm.create_context()
    try:
        mod = llvm.parse_assembly(ir_text, context=ctx)
        try:
            yield mod
        finally:
            mod.close()
    finally:
        ctx.close()


#: IR optimisation levels `optimise` accepts: 0 (none) and LLVM's default<O1..O3> pipelines
OPT_LEVELS = (0, 1, 2, 3)


def optimise(mod: Any, level: int, tm: Any = None) -> None:
    """Run LLVM's default pipeline at `level` (0: nothing; 1..3: default<O1..O3>, new pass
    manager) on a parsed module, for target machine `tm` (default: the host's).  Every pass
    manager it builds is freed after the run (see `_free_pass_manager`): what stays behind per
    call is the ~1.6 KB llvmlite leaks with each pass builder.  CompileError: `level` is not one
    of `OPT_LEVELS`."""
    if not isinstance(level, numbers.Integral) or level not in OPT_LEVELS:
        raise CompileError(f"IR optimisation level must be one of {OPT_LEVELS}, got {level!r}")
    if level == 0:
        return
    pto = llvm.create_pipeline_tuning_options(speed_level=int(level))
    pb = llvm.create_pass_builder(tm or target_machine(), pto)
    pm = pb.getModulePassManager()
    try:
        pm.run(mod, pb)
    finally:
        _free_pass_manager(pm)
        pb.close()
        pto.close()


def _free_pass_manager(pm: Any) -> None:
    """Free a llvmlite new-PM pass manager.  In llvmlite (<= 0.50 at least) `ModulePassManager`
    and `FunctionPassManager` inherit `_dispose` from `ffi.ObjectRef` (a no-op) before
    `NewPassManager`'s, so close() and garbage collection never delete the C++ object: the
    default pipeline's pass manager and what its passes keep from the run stayed allocated,
    50-58 KB per optimised module (measured).  The pass builder is not reused across runs on
    purpose: each run registers callbacks into it that point into the run's stack frame."""
    if type(pm)._dispose is _ffi.ObjectRef._dispose:
        _npm.NewPassManager._dispose(pm)
        pm.detach()
    else:   # a llvmlite whose pass managers free themselves
        pm.close()


def emit_object(ir_text: str, tm: Any, opt_ir: int, triple: str | None = None) -> bytes:
    """IR text -> object code of target machine `tm` after the IR pipeline at `opt_ir`
    (`triple`: the module's, if given).  RuntimeError: LLVM rejected the text."""
    with parsed(ir_text) as mod:
        mod.verify()
        if triple is not None:
            mod.triple = triple
        mod.data_layout = str(tm.target_data)
        optimise(mod, opt_ir, tm)
        return bytes(tm.emit_object(mod))


def compile_object(ir_text: str, opt_ir: int = 0, opt_codegen: int = 1) -> bytes:
    """IR text -> verified, optimised host object code (ELF bytes)."""
    host.init()
    tm = target_machine(opt_codegen)
    try:
        return emit_object(ir_text, tm, opt_ir, llvm.get_process_triple())
    except RuntimeError as err:
        raise CompileError(f"LLVM rejected the generated IR: {err}") from None


# -- loaded code ---------------------------------------------------------------------------------

#: links into one LLJIT instance before it is retired.  Every link leaves its JITDylib behind in
#: the instance (4-15 KB each, by the exported symbols; llvmlite cannot remove a JITDylib) until
#: the instance itself is disposed, which happens once it is retired and its last library is
#: closed (measured: a link-and-close loop then holds RSS flat instead of +14.5 KB per link)
LINKS_PER_JIT = 128
#: default bound on open evictable libraries (`$SYMCORE_MAX_ENGINES`)
DEFAULT_MAX_ENGINES = 128


def max_engines() -> int:
    """`$SYMCORE_MAX_ENGINES` (default 128, at least 1): how many evictable libraries (tier-1
    kernel libraries) stay loaded; past it the least recently used one that no call is running
    is unloaded, and the kernels that used it load it again when next called."""
    env = os.environ.get("SYMCORE_MAX_ENGINES", "").strip()
    try:
        n = int(env) if env else DEFAULT_MAX_ENGINES
    except ValueError:
        n = DEFAULT_MAX_ENGINES
    return max(n, 1)


class _Jit:
    """One LLJIT instance and the number of libraries open in it."""

    __slots__ = ("lljit", "links", "open", "retired")

    def __init__(self) -> None:
        self.lljit: Any = llvm.create_lljit_compiler(_make_tm(2))
        self.links = 0
        self.open = 0
        self.retired = False
        _stats["jits"] += 1

    def dispose_if_done(self) -> None:
        if self.retired and self.open == 0 and self.lljit is not None:
            self.lljit.close()   # frees every JITDylib the instance accumulated
            self.lljit = None
            _stats["jits"] -= 1


_current: dict[bool, _Jit] = {}    # permanent? -> the instance new libraries link into
_stats = {"open": 0, "jits": 0}
_names = itertools.count()
#: open evictable libraries, least recently used first (weak: a dropped library closes itself)
_LRU: "OrderedDict[int, weakref.ref[Library]]" = OrderedDict()


def _jit_for(permanent: bool) -> _Jit:
    host.init()
    vecmath.ensure_libraries()
    j = _current.get(permanent)
    if j is None or (not permanent and j.links >= LINKS_PER_JIT):
        if j is not None:
            j.retired = True
            j.dispose_if_done()
        j = _current[permanent] = _Jit()
    return j


def open_libraries() -> int:
    """Libraries currently loaded (a compile-and-discard loop must keep this bounded)."""
    return _stats["open"]


def evictable_libraries() -> int:
    """Evictable libraries currently loaded (at most `max_engines()` while no call pins more)."""
    with _lock:
        return len(_LRU)


def live_jits() -> int:
    """LLJIT instances not yet disposed (the current ones and retired ones still in use)."""
    return _stats["jits"]


class Library:
    """Object code loaded into the process; function addresses stay valid while it is open.
    Closing (or garbage-collecting) it unloads the code.  An `evictable` library may be closed
    by the LRU bound (`max_engines`) whenever it is not pinned: callers pin it around every
    call into it (`pin`/`unpin`) and load the code again when `pin` fails.  A `permanent` one
    (loaded once per process, e.g. a driver) links into an instance that is never retired."""

    def __init__(self, objects: Iterable[bytes], symbols: Iterable[str], *,
                 evictable: bool = False, permanent: bool = False) -> None:
        syms = list(dict.fromkeys(symbols))
        self.pins = 0
        self.evicted = False
        self._tracker: Any = None
        with _lock:
            jit = _jit_for(permanent)
            b = llvm.JITLibraryBuilder()
            for obj in objects:
                b.add_object_img(obj)
            b.add_current_process()
            for s in syms:
                b.export_symbol(s)
            jit.links += 1
            try:
                self._tracker = b.link(jit.lljit, f"symcore{next(_names)}")
            except RuntimeError as err:
                raise CompileError(f"cannot load generated code: {err}") from None
            self._jit = jit
            jit.open += 1
            _stats["open"] += 1
            if evictable:
                _LRU[id(self)] = weakref.ref(self)
                _evict(keep=self)
        self.addresses: dict[str, int] = {s: int(self._tracker[s]) for s in syms}
        for s, a in self.addresses.items():
            if not a:
                self.close()
                raise CompileError(f"symbol {s!r} missing from the generated code")

    def close(self) -> None:
        with _lock:
            t, self._tracker = getattr(self, "_tracker", None), None
            if t is not None:
                t.close()
                _stats["open"] -= 1
                _LRU.pop(id(self), None)
                self._jit.open -= 1
                self._jit.dispose_if_done()

    @property
    def closed(self) -> bool:
        return self._tracker is None

    def __del__(self) -> None:  # pragma: no cover - interpreter shutdown order varies
        try:
            self.close()
        except Exception:
            pass


def pin(libraries: Sequence[Library]) -> bool:
    """Keep every library of `libraries` loaded until `unpin` (and mark them recently used);
    False, with nothing pinned, when one of them is closed already (the caller reloads)."""
    with _lock:
        if any(lib.closed for lib in libraries):
            return False
        for lib in libraries:
            lib.pins += 1
            if id(lib) in _LRU:
                _LRU.move_to_end(id(lib))
        return True


def unpin(libraries: Sequence[Library]) -> None:
    with _lock:
        for lib in libraries:
            lib.pins -= 1
        if len(_LRU) > max_engines():   # pinned ones were spared while over the bound
            _evict(keep=None)


def _evict(keep: Library | None) -> None:
    """Close least recently used evictable libraries (not pinned, not `keep`) down to the
    bound; called with `_lock` held."""
    bound = max_engines()
    if len(_LRU) <= bound:
        return
    for k, ref in list(_LRU.items()):
        if len(_LRU) <= bound:
            break
        lib = ref()
        if lib is None:
            _LRU.pop(k, None)
        elif lib is not keep and lib.pins == 0:
            lib.evicted = True
            lib.close()


def load_library(objects: Iterable[bytes], symbols: Iterable[str], *, evictable: bool = False,
                 permanent: bool = False) -> Library:
    return Library(objects, symbols, evictable=evictable, permanent=permanent)


# -- cache keys ----------------------------------------------------------------------------------

def source_hash(*files: str) -> str:
    """Hash of the given codegen source files (paths relative to codegen/) and the ops table: part
    of every on-disk cache key, so a change to the generator, the lowering or an op's semantics
    invalidates cached objects.  The user ops registered *now* are part of it (their content,
    not a counter), so it is recomputed from the cached file digest on every call."""
    import symcore.ops
    return f"{_files_hash(files)}-{symcore.ops.registry_key()}"


@functools.lru_cache(maxsize=None)
def _files_hash(files: tuple[str, ...]) -> str:
    h = hashlib.blake2b(digest_size=16)
    here = Path(__file__).resolve().parent.parent
    for f in (*files, "llvm/lower.py", "llvm/vecmath.py", "llvm/irflow.py", "llvm/values.py"):
        h.update((here / f).read_bytes())
    import symcore.lowering_recipes
    import symcore.numerics
    import symcore.ops
    for mod in (symcore.ops, symcore.numerics, symcore.lowering_recipes):
        h.update(Path(mod.__file__).read_bytes())
    return h.hexdigest()

