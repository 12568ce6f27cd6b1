"""Where an export may be written: the format a path selects, and the checks that a path is
usable (no NUL byte, no over-long name, an existing writable directory, a `so` library whose
header `<stem>.h` is another file), each failing with a typed ExportError."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from symcore.errors import ExportError
from symcore.codegen.export.model import FORMATS
from symcore.codegen.export.native import header_path

__all__ = ["infer_format", "check_target", "as_path", "SUFFIX"]

#: the file suffix that selects each format when `format` is omitted
SUFFIX = {".so": "so", ".dylib": "so", ".c": "c", ".ll": "ll", ".py": "py", ".tex": "latex",
           ".json": "json"}
#: file-name and path length limits when the file system does not say (Linux's)
_NAME_MAX, _PATH_MAX = 255, 4096

def infer_format(path: str | os.PathLike[str], format: str | None = None) -> str:
    """The export format: `format` checked, or inferred from the file suffix."""
    return _format_of(as_path(path), format)


def check_target(path: str | os.PathLike[str], format: str | None = None) -> str:
    """Check that `path` can be written in `format` (inferred when None) and return the format:
    a valid path (no NUL byte, no over-long name) in an existing, writable directory; for `so`,
    a library path whose header (`<stem>.h`) is another file.  ExportError otherwise."""
    out = as_path(path)
    fmt = _format_of(out, format)
    _check_writable(out)
    if fmt == "so":
        suffix = out.suffix.lower()
        if suffix == ".h":
            raise ExportError(f"format 'so' writes a library and its header {out.stem}.h: the "
                              f"path {str(out)!r} would be overwritten by the header; give the "
                              f"library's path (e.g. {str(out.with_suffix('.so'))!r})")
        if SUFFIX.get(suffix, "so") != "so":
            raise ExportError(f"path {str(out)!r} has the suffix of format "
                              f"{SUFFIX[suffix]!r}, but the format is 'so' (a shared library); "
                              f"use a .so path or format={SUFFIX[suffix]!r}")
        header = header_path(out)
        _check_writable(header)
        try:
            same = out.exists() and header.exists() and os.path.samefile(out, header)
        except (OSError, ValueError):
            same = False
        if same:
            raise ExportError(f"{str(out)!r} and its header {str(header)!r} are the same file")
    return fmt


def as_path(path: Any) -> Path:
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
        fmt = SUFFIX.get(path.suffix.lower())
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
