"""Export one model as an artefact that runs without symcore: a shared library with a C header,
C99 source, LLVM IR text, a NumPy function, SymPy source, LaTeX, or symcore's own JSON.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Sequence

import numpy as np

import symcore
from symcore.errors import ExportError
from symcore.ir import Expr, topo
from symcore.ops import OPS
from symcore.params import bind_params
from symcore.io.printers import to_text

__all__ = ["export", "FORMATS", "c_source", "c_header", "llvm_ir", "find_compiler",
           "infer_format", "check_name", "json_document"]

#: every format `export` writes, and the file suffix that selects it when `format` is omitted
FORMATS = ("so", "c", "ll", "py", "sympy", "latex", "json")
_SUFFIX = {".so": "so", ".dylib": "so", ".c": "c", ".ll": "ll", ".py": "py", ".tex": "latex",
           ".json": "json"}
JSON_FORMAT = "symcore-expression"
JSON_VERSION = 1
#: formats that print the expression as a tree (a shared DAG can be exponentially larger)
_TREE_FORMATS = ("sympy", "latex", "json")
TREE_PRINT_LIMIT = 1_000_000


# ---------------------------------------------------------------------------------------------
# Public entry point

def export(expr: Expr, path: str | os.PathLike[str], format: str | None = None,
           name: str = "model", params: Sequence[float] | np.ndarray | None = None,
           bake_params: bool = True, cpu: str = "generic") -> Path:
    """Write `expr` to `path` in `format` (inferred from the suffix when omitted) and return the
    path written.  Parameters `p_i` are replaced by `params[i]` when `bake_params` (the default);
    otherwise the compiled functions take a `const double *params` argument.  Format `so` also
    writes a C header next to the library (same stem, suffix `.h`); its machine code targets
    any CPU of the architecture (`cpu="generic"`, the default) or this machine's (`"host"`)."""
    if not isinstance(expr, Expr):
        raise ExportError(f"export takes an Expr, got {type(expr).__name__}")
    out = Path(path)
    fmt = _format_of(out, format)
    if cpu not in ("generic", "host"):
        raise ExportError(f"cpu must be 'generic' or 'host', got {cpu!r}")
    check_name(name)
    model, pvals, runtime = _prepare(expr, params, bake_params, fmt)
    if fmt in _TREE_FORMATS and model.size > TREE_PRINT_LIMIT:
        raise ExportError(f"the expression has {model.size} nodes as a tree (shared subterms "
                          f"repeated); too large for format {fmt!r}, which prints the tree; "
                          f"use 'c', 'so', 'll' or 'py' (one temporary per distinct node)")
    _check_writable(out)
    if fmt == "so":
        _write_so(model, out, name, pvals, runtime, expr, cpu)
    else:
        text = _TEXT_WRITERS[fmt](model, name, pvals, runtime, expr)
        _write_text(out, text)
    return out


def check_name(name: str) -> None:
    """ExportError unless `name` can name the exported C/Python function."""
    if not isinstance(name, str) or not name.isidentifier() or not name.isascii():
        raise ExportError(f"name must be a C identifier, got {name!r}")
    if name in _RESERVED or re.fullmatch(r"t\d+", name):
        raise ExportError(f"name {name!r} is a C keyword or a <math.h> function; choose another")


def infer_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The export format: `format` checked, or inferred from the file suffix."""
    return _format_of(Path(path), format)


def _format_of(path: Path, format: str | None) -> str:
    if format is None:
        fmt = _SUFFIX.get(path.suffix.lower())
        if fmt is None:
            raise ExportError(f"cannot infer the export format from {path.name!r}; pass format= "
                              f"one of {', '.join(FORMATS)}")
        return fmt
    if format not in FORMATS:
        raise ExportError(f"unknown export format {format!r}; known: {', '.join(FORMATS)}")
    return format


def _prepare(expr: Expr, params: Any, bake: bool,
             fmt: str) -> tuple[Expr, np.ndarray | None, bool]:
    """(model to emit, parameter values or None, whether parameters stay runtime inputs)."""
    need = expr.n_params
    pvals: np.ndarray | None = None
    if params is not None:
        try:
            pvals = np.asarray(params, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise ExportError(f"params must be numbers: {err}") from None
        if pvals.ndim != 1:
            raise ExportError(f"params must be a 1-D vector, got shape {pvals.shape}")
        if pvals.shape[0] < need:
            raise ExportError(f"expression uses {need} parameter(s), got {pvals.shape[0]} "
                              f"value(s)")
    if need == 0:
        return expr, pvals, False
    if not bake:
        return expr, pvals, True
    if pvals is None:
        if fmt in ("sympy", "latex", "json"):  # symbolic formats keep p_i when no values are given
            return expr, None, False
        raise ExportError(f"expression uses {need} parameter(s) p0..p{need - 1}: pass params= "
                          f"to bake them in, or bake_params=False to pass them at run time")
    return bind_params(expr, pvals), pvals, False


def _check_writable(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise ExportError(f"cannot write {str(out)!r}: it is a directory")
    if parent.exists() and not parent.is_dir():
        raise ExportError(f"cannot write {str(out)!r}: {str(parent)!r} is not a directory")
    if not parent.is_dir():
        raise ExportError(f"cannot write {str(out)!r}: directory {str(parent)!r} does not exist")
    if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
        raise ExportError(f"cannot write {str(out)!r}: permission denied")


def _write_text(out: Path, text: str) -> None:
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as err:
        raise ExportError(f"cannot write {str(out)!r}: {err.strerror or err}") from None


_C_KEYWORDS = frozenset(
    "auto break case char const continue default do double else enum extern float for goto if "
    "inline int long register restrict return short signed sizeof static struct switch typedef "
    "union unsigned void volatile while main pow fabs fmax fmin log exp sqrt "
    "x X out params n_rows row_stride i size_t NAN INFINITY".split())
#: names an exported function must not take (C keywords, the math functions the code calls)
_RESERVED = _C_KEYWORDS | frozenset(
    w for o in OPS.values() for w in re.findall(r"[A-Za-z_]\w*(?=\()", o.c))


# ---------------------------------------------------------------------------------------------
# Variables, documentation shared by the header, the C file and the Python file

def _n_vars(expr: Expr) -> int:
    vs = expr.variables()
    return vs[-1] + 1 if vs else 0


def _var_names(expr: Expr) -> dict[int, str]:
    return {n.value: n.name for n in topo([expr]) if n.op == "var" and n.name}


_DOC_TEXT_LIMIT = 400  # nodes; a shared DAG can print exponentially long


def _short_text(expr: Expr) -> str:
    if expr.size > _DOC_TEXT_LIMIT:
        return f"({expr.size} nodes as a tree, {len(topo([expr]))} distinct; too long to print)"
    # named variables print as their names (x1:theta -> theta); the list below maps them
    return re.sub(r"\bx\d+:([A-Za-z_]\w*)", r"\1", to_text(expr)).replace("*/", "* /")


def _doc_lines(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
               original: Expr) -> list[str]:
    names = _var_names(original)
    nv = _n_vars(original)
    lines = [f"{name}, {name}_batch: generated by symcore {symcore.__version__}",
             f"expression: {_short_text(original)}",
             f"digest: {original.digest()}",
             f"variables ({nv}): x[j] in {name}(x) is column j of a row of X in {name}_batch"]
    for j in range(nv):
        lines.append(f"  x[{j}] = x{j}" + (f" ({names[j]})" if j in names else ""))
    if nv == 0:
        lines.append("  (none: the model is constant)")
    np_ = original.n_params
    if np_ and runtime:
        lines.append(f"parameters ({np_}): passed at run time in params[0..{np_ - 1}]")
        if pvals is not None:
            lines.append("  fitted values: " + ", ".join(repr(float(v)) for v in pvals[:np_]))
    elif np_ and pvals is not None:
        lines.append(f"parameters ({np_}): baked in: "
                     + ", ".join(f"p{i} = {float(pvals[i])!r}" for i in range(np_)))
    return lines


# ---------------------------------------------------------------------------------------------
# C99 source: one temporary per node from the ops table's `c` templates

def _c_double(v: float) -> str:
    if math.isnan(v):
        return "NAN"
    if math.isinf(v):
        return "INFINITY" if v > 0 else "(-INFINITY)"
    h = float(v).hex()  # exact: C99 hexadecimal floating constants
    return f"({h})" if h.startswith("-") else h


def _c_signatures(name: str, runtime: bool) -> tuple[str, str]:
    p = ", const double *params" if runtime else ""
    return (f"double {name}(const double *x{p})",
            f"void {name}_batch(const double *X, size_t n_rows, size_t row_stride{p}, "
            f"double *out)")


def c_header(expr: Expr, name: str = "model", params: Any = None,
             bake_params: bool = True) -> str:
    """The C header documenting the exported functions and the variable order."""
    check_name(name)
    model, pvals, runtime = _prepare(expr, params, bake_params, "c")
    return _c_header(model, name, pvals, runtime, expr)


def _c_header(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
              original: Expr, extra: Sequence[str] = ()) -> str:
    one, batch = _c_signatures(name, runtime)
    guard = f"SYMCORE_{name.upper()}_H"
    doc = "\n".join(f" * {ln}" for ln in [*_doc_lines(model, name, pvals, runtime, original),
                                           *extra])
    return (f"/*\n{doc}\n *\n"
            f" * {name}(x): the model at one row x[0..n_vars-1].\n"
            f" * {name}_batch(X, n_rows, row_stride, out): out[i] = {name}(X + i * row_stride)\n"
            f" *   for i < n_rows; X is row-major and row_stride is counted in doubles.\n"
            f" * IEEE-754 double semantics: NaN and infinities propagate, nothing traps.\n */\n"
            f"#ifndef {guard}\n#define {guard}\n\n#include <stddef.h>\n\n"
            f"#ifdef __cplusplus\nextern \"C\" {{\n#endif\n\n"
            f"{one};\n{batch};\n\n"
            f"#ifdef __cplusplus\n}}\n#endif\n\n#endif /* {guard} */\n")


def c_source(expr: Expr, name: str = "model", params: Any = None,
             bake_params: bool = True) -> str:
    """Self-contained C99 source exporting `name` and `name_batch` (needs only <math.h>)."""
    check_name(name)
    model, pvals, runtime = _prepare(expr, params, bake_params, "c")
    return _c_source(model, name, pvals, runtime, expr)


def _c_source(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
              original: Expr) -> str:
    one, batch = _c_signatures(name, runtime)
    body: list[str] = []
    ref: dict[Expr, str] = {}
    for i, n in enumerate(topo([model])):
        t = f"t{i}"
        if n.op == "var":
            rhs = f"x[{n.value}]"
        elif n.op == "param":
            rhs = f"params[{n.value}]"
        elif n.op == "const":
            rhs = _c_double(n.value)
        else:
            rhs = OPS[n.op].c.format(*(ref[a] for a in n.args))
        body.append(f"    const double {t} = {rhs};")
        ref[n] = t
    doc = "\n".join(f" * {ln}" for ln in _doc_lines(model, name, pvals, runtime, original))
    unused = "    (void)x;\n" if _n_vars(model) == 0 else ""
    if runtime and model.n_params == 0:
        unused += "    (void)params;\n"
    call_args = "X + i * row_stride, params" if runtime else "X + i * row_stride"
    return (f"/*\n{doc}\n *\n * Self-contained C99: compile with  cc -std=c99 -O2 -c {name}.c  "
            f"and link with -lm.\n */\n"
            f"#include <math.h>\n#include <stddef.h>\n\n"
            f"{one};\n{batch};\n\n"
            f"{one}\n{{\n{unused}" + "\n".join(body) + f"\n    return {ref[model]};\n}}\n\n"
            f"{batch}\n{{\n    for (size_t i = 0; i < n_rows; ++i)\n"
            f"        out[i] = {name}({call_args});\n}}\n")


def _write_c(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
             original: Expr) -> str:
    return _c_source(model, name, pvals, runtime, original)


# ---------------------------------------------------------------------------------------------
# LLVM module: the same two functions, lowered with codegen.lower (scalar doubles, libm calls)

#: optimisation levels of exported code (IR pipeline, machine code); strict IEEE, no fast-math
EXPORT_OPT_IR = 2
EXPORT_OPT_CODEGEN = 2


def _ir_text(model: Expr, name: str, runtime: bool) -> str:
    from llvmlite import ir

    from symcore.codegen.llvm.lower import lower_expr

    f64 = ir.DoubleType()
    i64 = ir.IntType(64)
    dptr = f64.as_pointer()
    from llvmlite import binding

    from symcore.codegen.llvm.jit import target_machine
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
    v = bb.call(one, [row, *( [batch.args[3]] if runtime else [])])
    bb.store(v, bb.gep(out, [i]))
    nxt = bb.add(i, ir.Constant(i64, 1), name="next")
    i.add_incoming(nxt, loop)
    bb.cbranch(bb.icmp_unsigned("<", nxt, n), loop, done)
    bb.position_at_end(done)
    bb.ret_void()
    return str(mod)


def _object_code(model: Expr, name: str, runtime: bool, cpu: str = "generic") -> bytes:
    from symcore.codegen.llvm.jit import compile_object, optimise, target_machine
    text = _ir_text(model, name, runtime)
    if cpu == "host":
        return compile_object(text, opt_ir=EXPORT_OPT_IR, opt_codegen=EXPORT_OPT_CODEGEN)
    import llvmlite.binding as llvm
    target_machine(EXPORT_OPT_CODEGEN)  # initialises LLVM's native target
    # an artefact to deploy: baseline instruction set of the architecture, position independent
    tm = llvm.Target.from_default_triple().create_target_machine(
        cpu="", features="", opt=EXPORT_OPT_CODEGEN, reloc="pic", codemodel="default")
    try:
        mod = llvm.parse_assembly(text)
        mod.verify()
    except RuntimeError as err:
        raise ExportError(f"LLVM rejected the generated IR: {err}") from None
    mod.triple = llvm.get_default_triple()
    mod.data_layout = str(tm.target_data)
    optimise(mod, EXPORT_OPT_IR, tm)
    return bytes(tm.emit_object(mod))


# ---------------------------------------------------------------------------------------------
# Compiler discovery and the shared library

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


def _write_so(model: Expr, out: Path, name: str, pvals: np.ndarray | None, runtime: bool,
              original: Expr, cpu: str = "generic") -> None:
    cc = find_compiler()
    obj = _object_code(model, name, runtime, cpu)
    header = out.with_suffix(".h")
    with tempfile.TemporaryDirectory(prefix="symcore-export-") as tmp:
        o = Path(tmp) / f"{name}.o"
        o.write_bytes(obj)
        tmp_so = Path(tmp) / out.name
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
    import llvmlite.binding as llvm
    from symcore.codegen.llvm.jit import host_cpu
    target = f"{llvm.get_default_triple()}, " + (
        "baseline instruction set (runs on any CPU of the architecture)" if cpu == "generic"
        else f"tuned for this machine's CPU ({host_cpu()}); may not run elsewhere")
    _write_text(header, _c_header(model, name, pvals, runtime, original,
                                  extra=[f"machine code: {target}"]))


def _write_ll(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
              original: Expr) -> str:
    doc = "".join(f"; {ln}\n" for ln in _doc_lines(model, name, pvals, runtime, original))
    return doc + _ir_text(model, name, runtime)


def llvm_ir(expr: Expr, name: str = "model", params: Any = None, bake_params: bool = True) -> str:
    """LLVM IR text of the module behind format `so` (functions `name` and `name_batch`)."""
    check_name(name)
    model, pvals, runtime = _prepare(expr, params, bake_params, "ll")
    return _write_ll(model, name, pvals, runtime, expr)


# ---------------------------------------------------------------------------------------------
# Python, SymPy, LaTeX, JSON

def _np_templates(model: Expr) -> dict[str, str]:
    # the printers' NumPy form of each op, as a template over {0}, {1}
    from symcore.io.printers import to_numpy_source
    out: dict[str, str] = {}
    for n in topo([model]):
        if n.is_leaf:
            continue
        key = f"powi:{n.args[1].value!r}" if n.op == "powi" else n.op
        if key in out:
            continue
        if n.op == "powi":
            src = to_numpy_source(Expr("powi", (symcore.var(0), n.args[1])))
            out[key] = src.replace("X[:, 0]", "{0}")
            continue
        src = to_numpy_source(Expr(n.op, tuple(symcore.var(i) for i in range(len(n.args)))))
        for i in range(len(n.args)):
            src = src.replace(f"X[:, {i}]", f"{{{i}}}")
        out[key] = src
    return out


def _write_py(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
              original: Expr) -> str:
    from symcore.io.printers import to_numpy_source
    tmpl = _np_templates(model)
    body: list[str] = []
    ref: dict[Expr, str] = {}
    for i, n in enumerate(topo([model])):
        if n.op == "var":
            ref[n] = f"X[:, {n.value}]"
        elif n.op == "param":
            ref[n] = f"p[{n.value}]"
        elif n.op == "const":
            ref[n] = to_numpy_source(n)
        else:
            key = f"powi:{n.args[1].value!r}" if n.op == "powi" else n.op
            body.append(f"        t{i} = " + tmpl[key].format(*(ref[a] for a in n.args)))
            ref[n] = f"t{i}"
    doc = "\n".join(_doc_lines(model, name, pvals, runtime, original))
    nv = _n_vars(original)
    sig = "X"
    if runtime:
        sig += ", params"
        if pvals is not None:
            sig += "=(" + ", ".join(repr(float(v)) for v in pvals[:original.n_params]) + ",)"
    return (f'"""{doc}\n\n{name}(X) returns the model on every row of X (n_rows x >= {nv} '
            f'columns) as a 1-D float64 array; needs only NumPy."""\n\n'
            f"import numpy as np\n\nN_VARS = {nv}\n\n\n"
            f"def {name}({sig}):\n"
            f"    X = np.asarray(X, dtype=np.float64)\n"
            f"    if X.ndim == 1:\n        X = X.reshape(1, -1)\n"
            f"    if X.ndim != 2 or X.shape[1] < N_VARS:\n"
            f"        raise ValueError(f'X must have shape (n_rows, >= {nv}), got {{X.shape}}')\n"
            + ("    p = np.asarray(params, dtype=np.float64)\n" if runtime else "")
            + "    with np.errstate(all='ignore'):\n"
            + "\n".join(body) + ("\n" if body else "")
            + f"        out = {ref[model]}\n"
            f"    return np.broadcast_to(np.asarray(out, dtype=np.float64), "
            f"(X.shape[0],)).copy()\n")


def _write_sympy(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
                 original: Expr) -> str:
    import sympy

    from symcore.io.sympy_bridge import to_sympy
    se = to_sympy(model)
    doc = "\n".join(f"# {ln}" for ln in _doc_lines(model, name, pvals, runtime, original))
    return (f"{doc}\nfrom sympy import *  # noqa: F401,F403\n"
            f"from sympy.functions.elementary.piecewise import ExprCondPair  # noqa: F401\n\n"
            f"{name} = {sympy.srepr(se)}\n")


def _write_latex(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
                 original: Expr) -> str:
    from symcore.io.printers import to_latex
    return to_latex(model) + "\n"


def json_document(expr: Expr, params: Any = None, name: str = "model") -> list[dict[str, Any]]:
    """symcore's own JSON for one expression: a one-item list (the population-file form that
    `symcore.read_file` reads) whose object holds the canonical text under "expr", the parameter
    values, the flat form and metadata."""
    # the population-file form of symcore.io.printers.to_json: non-finite values are null
    pvals = None if params is None else [float(v) if math.isfinite(v) else None
                                         for v in np.asarray(params, dtype=float)]
    return [{"expr": to_text(expr), "params": pvals, "format": JSON_FORMAT,
             "version": JSON_VERSION, "name": name, "digest": expr.digest(),
             "variables": {str(i): nm for i, nm in sorted(_var_names(expr).items())},
             "n_vars": _n_vars(expr), "n_params": expr.n_params,
             "flat": [[op, list(kids), list(val) if isinstance(val, tuple) else val]
                      for op, kids, val in symcore.flatten(expr).rows]}]


def _write_json(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
                original: Expr) -> str:
    doc = json_document(model, None if pvals is None or model.n_params == 0 else pvals, name)
    return json.dumps(doc, indent=1, allow_nan=True) + "\n"


_TEXT_WRITERS = {"c": _write_c, "ll": _write_ll, "py": _write_py, "sympy": _write_sympy,
                 "latex": _write_latex, "json": _write_json}

