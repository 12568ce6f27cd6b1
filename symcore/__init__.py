"""symcore: read, deduplicate, simplify, compile, fit and export symbolic-regression candidates."""

from __future__ import annotations

from .errors import (ArityError, CompileError, DataError, DialectError, ExportError, FitError,
                     ParseError, SymcoreError, UnknownOperatorError)
from .ir import Expr, call, const, flatten, param, unflatten, var
from .ops import OPS

__version__ = "0.1.0"

__all__ = [
    "Expr", "var", "const", "param", "call", "flatten", "unflatten", "OPS",
    "SymcoreError", "ParseError", "UnknownOperatorError", "ArityError", "DialectError",
    "DataError", "CompileError", "ExportError", "FitError",
]

from .evaluate import evaluate  # noqa: E402

__all__ += ["evaluate"]
