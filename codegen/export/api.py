"""Export one model as an artefact that runs without symcore: `export()` checks the model, the
name, the path and its pairing with the format, then hands over to the format's writer
(native.py: so + header, ll; c.py: C source; text.py: py, sympy, latex, json)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Literal, Sequence

import numpy as np

from symcore.errors import ExportError
from symcore.ir import Expr
from symcore.codegen.export.c import c_header, c_source, write_c
from symcore.codegen.export.model import FORMATS, Format, prepare, var_names
from symcore.codegen.export.names import check_name, check_variable_names
from symcore.codegen.export.native import (EXPORT_OPT_CODEGEN, EXPORT_OPT_IR, find_compiler,
                                           header_path, llvm_ir, write_ll, write_so)
from symcore.codegen.export.paths import as_path, check_target, infer_format
from symcore.codegen.export.text import (JSON_FORMAT, JSON_VERSION, json_document, write_json,
                                         write_latex, write_py, write_sympy)

__all__ = ["export", "FORMATS", "Format", "c_source", "c_header", "llvm_ir", "find_compiler",
           "infer_format", "check_name", "check_target", "json_document", "header_path",
           "JSON_FORMAT", "JSON_VERSION", "EXPORT_OPT_IR", "EXPORT_OPT_CODEGEN"]

#: formats that print the expression as a tree (a shared DAG can be exponentially larger)
_TREE_FORMATS = ("sympy", "latex", "json")
TREE_PRINT_LIMIT = 1_000_000

_Writer = Callable[[Expr, str, "np.ndarray | None", bool, Expr], str]
_TEXT_WRITERS: dict[str, _Writer] = {"c": write_c, "ll": write_ll, "py": write_py,
                                     "sympy": write_sympy, "latex": write_latex,
                                     "json": write_json}


def export(expr: Expr, path: str | os.PathLike[str], format: Format | None = None,
           name: str = "model", params: Sequence[float] | np.ndarray | None = None,
           bake_params: bool = True, cpu: Literal["generic", "host"] = "generic") -> Path:
    """Write `expr` to `path` in `format` (inferred from the suffix when omitted) and return the
    path written.  Parameters `p_i` are replaced by `params[i]` when `bake_params` (the default);
    otherwise the compiled functions take a `const double *params` argument.  Format `so` also
    writes a C header next to the library (same stem, suffix `.h`; a `.h` path is refused); its
    machine code targets any CPU of the architecture (`cpu="generic"`, the default) or this
    machine's (`"host"`).  Every bad argument raises ExportError naming the cause."""
    from symcore.dynamics import System
    if isinstance(expr, System):   # a dynamical system: rhs(t, y, p, dydt) (export/system.py)
        from symcore.codegen.export.system import write_system
        fname = "rhs" if name == "model" else name
        sfmt = check_target(path, format)
        check_name(fname, sfmt)
        return write_system(expr, as_path(path), sfmt, fname, cpu)
    if not isinstance(expr, Expr):
        raise ExportError(f"export takes an Expr or a System, got {type(expr).__name__}")
    fmt = check_target(path, format)
    out = as_path(path)
    if cpu not in ("generic", "host"):
        raise ExportError(f"cpu must be 'generic' or 'host', got {cpu!r}")
    check_name(name, fmt)
    check_variable_names(var_names(expr))
    model, pvals, runtime = prepare(expr, params, bake_params, fmt)
    if fmt == "py":
        from symcore.io.printers import numpy_imports
        if name in {m.split(".")[0] for m in numpy_imports(model)}:
            raise ExportError(f"name {name!r} is a module the exported Python code imports (for "
                              f"a registered op); choose another")
    if fmt in _TREE_FORMATS and model.size > TREE_PRINT_LIMIT:
        raise ExportError(f"the expression has {model.size} nodes as a tree (shared subterms "
                          f"repeated); too large for format {fmt!r}, which prints the tree; "
                          f"use 'c', 'so', 'll' or 'py' (one temporary per distinct node)")
    if fmt == "so":
        write_so(model, out, name, pvals, runtime, expr, cpu)
    else:
        _write_text(out, _TEXT_WRITERS[fmt](model, name, pvals, runtime, expr))
    return out


def _write_text(out: Path, text: str) -> None:
    try:
        out.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as err:
        raise ExportError(f"cannot write {str(out)!r}: "
                          f"{getattr(err, 'strerror', None) or err}") from None
