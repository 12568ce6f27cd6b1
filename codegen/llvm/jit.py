"""The one place that compiles and loads code with llvmlite.binding: the host target machine,
IR parse/verify/optimise, object code, loaded libraries (ORC), cache-key source hashes.
(Host CPU facts live in `llvm.host`, the object-code cache in `llvm.cache`.)
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import threading
from pathlib import Path
from typing import Any, Iterable

import llvmlite.binding as llvm

from symcore.errors import CompileError

from symcore.codegen.llvm import host, vecmath
from symcore.codegen.llvm.host import host_cpu, host_features

__all__ = ["host_features", "host_cpu", "target_machine", "compile_object", "Library",
           "load_library", "open_libraries", "source_hash"]

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


def _context() -> Any:
    # one LLVM context per thread: modules of different threads never share one
    ctx = getattr(_tls, "ctx", None)
    if ctx is None:
        ctx = _tls.ctx = llvm.create_context()
    return ctx


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
    host.init()
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
    host.init()
    vecmath.ensure_libraries()
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

