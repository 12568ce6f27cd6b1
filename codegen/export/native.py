"""Native exports through llvmlite: LLVM IR text of the model's two functions (format `ll`),
and a shared library linked with the system compiler plus its C header (format `so`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Literal

import numpy as np

from symcore.errors import ExportError
from symcore.ir import Expr
from symcore.codegen.export.c import header_text
from symcore.codegen.export.model import doc_lines, prepare
from symcore.codegen.export.names import check_name

__all__ = ["llvm_ir", "write_ll", "write_so", "find_compiler", "header_path", "EXPORT_OPT_IR",
           "EXPORT_OPT_CODEGEN"]

Cpu = Literal["generic", "host"]

#: optimisation levels of exported code (IR pipeline, machine code); strict IEEE, no fast-math
EXPORT_OPT_IR = 2
EXPORT_OPT_CODEGEN = 2


def _ir_text(model: Expr, name: str, runtime: bool) -> str:
    from llvmlite import binding, ir

    from symcore.codegen.llvm.jit import target_machine
    from symcore.codegen.llvm.lower import lower_expr

    f64 = ir.DoubleType()
    i64 = ir.IntType(64)
    dptr = f64.as_pointer()
    mod = ir.Module(name=f"symcore_{name}")
    mod.triple = binding.get_process_triple()
    mod.data_layout = str(target_machine(EXPORT_OPT_CODEGEN).target_data)
    extra = [dptr] if runtime else []
    one = ir.Function(mod, ir.FunctionType(f64, [dptr, *extra]), name=name)
    one.args[0].name = "x"
    if runtime:
        one.args[1].name = "params"
    b = ir.IRBuilder(one.append_basic_block("entry"))

    def leaf(kind: str, value: Any) -> ir.Value:
        if kind == "var":
            ptr = b.gep(one.args[0], [ir.Constant(i64, int(value))], inbounds=True)
            return b.load(ptr, name=f"x{int(value)}")
        if kind == "param":
            ptr = b.gep(one.args[1], [ir.Constant(i64, int(value))], inbounds=True)
            return b.load(ptr, name=f"p{int(value)}")
        return ir.Constant(f64, float(value))

    b.ret(lower_expr(b, model, leaf))

    batch = ir.Function(mod, ir.FunctionType(ir.VoidType(), [dptr, i64, i64, *extra, dptr]),
                        name=f"{name}_batch")
    X, n, stride = batch.args[0], batch.args[1], batch.args[2]
    out = batch.args[-1]
    X.name, n.name, stride.name, out.name = "X", "n_rows", "row_stride", "out"
    entry = batch.append_basic_block("entry")
    loop = batch.append_basic_block("loop")
    done = batch.append_basic_block("done")
    bb = ir.IRBuilder(entry)
    zero = ir.Constant(i64, 0)
    bb.cbranch(bb.icmp_unsigned(">", n, zero), loop, done)
    bb.position_at_end(loop)
    i = bb.phi(i64, name="i")
    i.add_incoming(zero, entry)
    row = bb.gep(X, [bb.mul(i, stride)], name="row")
    v = bb.call(one, [row, *([batch.args[3]] if runtime else [])])
    bb.store(v, bb.gep(out, [i]))
    nxt = bb.add(i, ir.Constant(i64, 1), name="next")
    i.add_incoming(nxt, loop)
    bb.cbranch(bb.icmp_unsigned("<", nxt, n), loop, done)
    bb.position_at_end(done)
    bb.ret_void()
    # a math function the lowering declares must not be the exported symbol itself (a
    # user-registered op may call any libm name): the call would resolve to the model
    called = {f.name for f in mod.functions if f.is_declaration}
    for fn in (name, f"{name}_batch"):
        if fn in called:
            raise ExportError(f"name {fn!r} is a function the exported code calls; choose "
                              f"another")
    return str(mod)


def _object_code(model: Expr, name: str, runtime: bool, cpu: Cpu = "generic") -> bytes:
    from symcore.codegen.llvm.jit import compile_object, emit_object, target_machine
    text = _ir_text(model, name, runtime)
    if cpu == "host":
        return compile_object(text, opt_ir=EXPORT_OPT_IR, opt_codegen=EXPORT_OPT_CODEGEN)
    import llvmlite.binding as llvm
    target_machine(EXPORT_OPT_CODEGEN)  # initialises LLVM's native target
    # an artefact to deploy: baseline instruction set of the architecture, position independent
    tm = llvm.Target.from_default_triple().create_target_machine(
        cpu="", features="", opt=EXPORT_OPT_CODEGEN, reloc="pic", codemodel="default")
    try:
        return emit_object(text, tm, EXPORT_OPT_IR, llvm.get_default_triple())
    except RuntimeError as err:
        raise ExportError(f"LLVM rejected the generated IR: {err}") from None


def find_compiler() -> str:
    """The system C compiler (`$CC`, else cc, gcc, clang), or ExportError naming what is missing."""
    env = os.environ.get("CC")
    cands = [env] if env else ["cc", "gcc", "clang"]
    for c in cands:
        exe = shutil.which(c.split()[0]) if c else None
        if exe:
            return exe
    raise ExportError("no C compiler/linker found (looked for "
                      + (f"$CC={env!r}" if env else "cc, gcc, clang")
                      + " on PATH); install one (e.g. gcc) or use format='c', 'll' or 'py'")


def header_path(library: Path) -> Path:
    """Where format `so` writes the header of `library`: same directory and stem, `.h`."""
    return library.with_suffix(".h")


def link_shared(obj: bytes, out: Path) -> None:
    """Link object code into the shared library `out` with the system's C compiler (-lm),
    through a temporary directory so a failed link leaves nothing half-written."""
    cc = find_compiler()
    with tempfile.TemporaryDirectory(prefix="symcore-export-") as tmp:
        o = Path(tmp) / "model.o"
        o.write_bytes(obj)
        tmp_so = Path(tmp) / "model.so"
        proc = subprocess.run([cc, "-shared", "-o", str(tmp_so), str(o), "-lm"],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            raise ExportError(f"linking {out.name} with {cc} failed: "
                              f"{(proc.stderr or proc.stdout).strip()[:2000]}")
        try:
            shutil.copyfile(tmp_so, out)
            os.chmod(out, 0o755)
        except OSError as err:
            raise ExportError(f"cannot write {str(out)!r}: {err.strerror or err}") from None


def write_so(model: Expr, out: Path, name: str, pvals: np.ndarray | None, runtime: bool,
             original: Expr, cpu: Cpu = "generic") -> None:
    """Link the model's object code into the shared library `out`; write its header beside it
    (the caller has checked that the two paths differ)."""
    link_shared(_object_code(model, name, runtime, cpu), out)
    import llvmlite.binding as llvm

    from symcore.codegen.llvm.jit import host_cpu
    target = f"{llvm.get_default_triple()}, " + (
        "baseline instruction set (runs on any CPU of the architecture)" if cpu == "generic"
        else f"tuned for this machine's CPU ({host_cpu()}); may not run elsewhere")
    text = header_text(model, name, pvals, runtime, original, extra=[f"machine code: {target}"])
    header = header_path(out)
    try:
        header.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ExportError(f"cannot write {str(header)!r}: {err.strerror or err}") from None


def write_ll(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
             original: Expr) -> str:
    doc = "".join(f"; {ln}\n" for ln in doc_lines(model, name, pvals, runtime, original))
    return doc + _ir_text(model, name, runtime)


def llvm_ir(expr: Expr, name: str = "model", params: Any = None, bake_params: bool = True) -> str:
    """LLVM IR text of the module behind format `so` (functions `name` and `name_batch`)."""
    check_name(name, "ll")
    model, pvals, runtime = prepare(expr, params, bake_params, "ll")
    return write_ll(model, name, pvals, runtime, expr)
