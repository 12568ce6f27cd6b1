"""symcore: read, deduplicate, simplify, compile, fit and export symbolic-regression candidates.

The facade is lazy: `symcore.simplify` imports the e-graph layer (`symcore.rules`) and
`symcore.compile` the LLVM layer (`symcore.codegen`) on first use only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (ArityError, CompileError, DataError, DialectError, ExportError, FitError,
                     ParseError, SymcoreError, UnknownOperatorError)
from .evaluate import evaluate
from .ir import Expr, call, const, flatten, param, unflatten, var
from .ops import OPS

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "read": "symcore.readers", "read_many": "symcore.readers", "detect_dialect": "symcore.readers",
    "read_file": "symcore.readers",
    "write": "symcore.printers", "to_latex": "symcore.printers", "to_c": "symcore.printers",
    "to_numpy_source": "symcore.printers",
    "to_sympy": "symcore.sympy_bridge", "from_sympy": "symcore.sympy_bridge",
    "lift_constants": "symcore.params", "bind_params": "symcore.params",
    "simplify": "symcore.rules.api", "dedupe": "symcore.rules.api", "Dedup": "symcore.rules.api",
    "StopReason": "symcore.rules.api",
    "compile": "symcore.codegen.kernels", "Kernel": "symcore.codegen.kernels",
    "fit": "symcore.codegen.fit", "FitResult": "symcore.codegen.fit",
    "export": "symcore.codegen.export",
}

if TYPE_CHECKING:  # pragma: no cover - static checkers see the real objects
    from .codegen.export import export
    from .codegen.fit import FitResult, fit
    from .codegen.kernels import Kernel, compile
    from .params import bind_params, lift_constants
    from .printers import to_c, to_latex, to_numpy_source, write
    from .readers import detect_dialect, read, read_file, read_many
    from .rules.api import Dedup, StopReason, dedupe, simplify
    from .sympy_bridge import from_sympy, to_sympy


def __getattr__(name: str) -> Any:
    mod = _LAZY.get(name)
    if mod is None:
        raise AttributeError(f"module 'symcore' has no attribute {name!r}")
    value = getattr(importlib.import_module(mod), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "Expr", "var", "const", "param", "call", "flatten", "unflatten", "OPS", "evaluate",
    "SymcoreError", "ParseError", "UnknownOperatorError", "ArityError", "DialectError",
    "DataError", "CompileError", "ExportError", "FitError", *_LAZY,
]
