"""Export one model as an artefact that runs without symcore: `export()` checks the model, the
name, the path and its pairing with the format, then hands over to the format's writer
(native.py: so + header, ll; c.py: C source; text.py: py, sympy, latex, json)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import numpy as np

from symcore.errors import ExportError
from symcore.ir import Expr
from symcore.codegen.export.c import c_header, c_source, write_c
from symcore.codegen.export.model import FORMATS, Format, prepare, var_names
from symcore.codegen.export.names import check_name, check_variable_names
from symcore.codegen.export.native import (EXPORT_OPT_CODEGEN, EXPORT_OPT_IR, find_compiler,
                                           header_path, llvm_ir, write_ll, write_so)
from symcore.codegen.export.text import (JSON_FORMAT, JSON_VERSION, json_document, write_json,
                                         write_latex, write_py, write_sympy)

__all__ = ["export", "FORMATS", "Format", "c_source", "c_header", "llvm_ir", "find_compiler",
           "infer_format", "check_name", "check_target", "json_document", "header_path",
           "JSON_FORMAT", "JSON_VERSION", "EXPORT_OPT_IR", "EXPORT_OPT_CODEGEN"]

#: the file suffix that selects each format when `format` is omitted
_SUFFIX = {".so": "so", ".dylib": "so", ".c": "c", ".ll": "ll", ".py": "py", ".tex": "latex",
           ".json": "json"}
#: formats that print the expression as a tree (a shared DAG can be exponentially larger)
_TREE_FORMATS = ("sympy", "latex", "json")
TREE_PRINT_LIMIT = 1_000_000
#: file-name and path length limits when the file system does not say (Linux's)
_NAME_MAX, _PATH_MAX = 255, 4096

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
    if not isinstance(expr, Expr):
        raise ExportError(f"export takes an Expr, got {type(expr).__name__}")
    fmt = check_target(path, format)
    out = _as_path(path)
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


def infer_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The export format: `format` checked, or inferred from the file suffix."""
    return _format_of(_as_path(path), format)


def check_target(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Check that `path` can be written in `format` (inferred when None) and return the format:
    a valid path (no NUL byte, no over-long name) in an existing, writable directory; for `so`,
    a library path whose header (`<stem>.h`) is another file.  ExportError otherwise."""
    out = _as_path(path)
    fmt = _format_of(out, format)
    _check_writable(out)
    if fmt == "so":
        suffix = out.suffix.lower()
        if suffix == ".h":
            raise ExportError(f"format 'so' writes a library and its header {out.stem}.h: the "
                              f"path {str(out)!r} would be overwritten by the header; give the "
                              f"library's path (e.g. {str(out.with_suffix('.so'))!r})")
        if _SUFFIX.get(suffix, "so") != "so":
            raise ExportError(f"path {str(out)!r} has the suffix of format "
                              f"{_SUFFIX[suffix]!r}, but the format is 'so' (a shared library); "
                              f"use a .so path or format={_SUFFIX[suffix]!r}")
        header = header_path(out)
        _check_writable(header)
        try:
            same = out.exists() and header.exists() and os.path.samefile(out, header)
        except (OSError, ValueError):
            same = False
        if same:
            raise ExportError(f"{str(out)!r} and its header {str(header)!r} are the same file")
    return fmt


def _as_path(path: Any) -> Path:
    """`path` as a Path, refusing what no file system accepts (typed, never OSError)."""
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    if not isinstance(path, (str, os.PathLike)):
        raise ExportError(f"path must be a str or os.PathLike, got {type(path).__name__}")
    text = os.fspath(path)
    if isinstance(text, bytes):
        text = os.fsdecode(text)
    if not text:
        raise ExportError("path is empty")
    if "\0" in text:
        raise ExportError(f"path {text!r} contains a NUL byte")
    try:
        raw = os.fsencode(text)
    except UnicodeError:
        raise ExportError(f"path {text!r} cannot be encoded for the file system") from None
    out = Path(text)
    name_max = _limit(out, "PC_NAME_MAX", _NAME_MAX)
    for part in out.parts:
        n = len(os.fsencode(part))
        if n > name_max:
            raise ExportError(f"file name too long ({n} bytes; the limit is {name_max}): "
                              f"{part[:40]!r}...")
    path_max = _limit(out, "PC_PATH_MAX", _PATH_MAX)
    if len(raw) >= path_max:
        raise ExportError(f"path too long ({len(raw)} bytes; the limit is {path_max - 1}): "
                          f"{text[:40]!r}...")
    return out


def _limit(out: Path, key: str, default: int) -> int:
    parent = out.parent if str(out.parent) else Path(".")
    try:
        return int(os.pathconf(parent if parent.is_dir() else ".", key)) or default
    except (OSError, ValueError, AttributeError):
        return default


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


def _check_writable(out: Path) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    try:
        if out.is_dir():
            raise ExportError(f"cannot write {str(out)!r}: it is a directory")
        if parent.exists() and not parent.is_dir():
            raise ExportError(f"cannot write {str(out)!r}: {str(parent)!r} is not a directory")
        if not parent.is_dir():
            raise ExportError(f"cannot write {str(out)!r}: directory {str(parent)!r} does not "
                              f"exist")
        if not os.access(parent, os.W_OK) or (out.exists() and not os.access(out, os.W_OK)):
            raise ExportError(f"cannot write {str(out)!r}: permission denied")
    except (OSError, ValueError) as err:
        raise ExportError(f"cannot write {str(out)!r}: "
                          f"{getattr(err, 'strerror', None) or err}") from None


def _write_text(out: Path, text: str) -> None:
    try:
        out.write_text(text, encoding="utf-8")
    except (OSError, ValueError) as err:
        raise ExportError(f"cannot write {str(out)!r}: "
                          f"{getattr(err, 'strerror', None) or err}") from None
