"""symcore: read, deduplicate, simplify, compile, fit and export symbolic-regression candidates.

The facade is lazy: `symcore.simplify` imports the e-graph layer (`symcore.rules`) and
`symcore.compile` the LLVM layer (`symcore.codegen`) on first use only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from symcore.errors import (ArityError, CompileError, DataError, DialectError, ExportError, FitError,
                     ParseError, SymcoreError, UnknownOperatorError)
from symcore.evaluate import evaluate
from symcore.ir import Expr, call, const, flatten, param, unflatten, var
from symcore.ops import OPS, Op
# the Dialect records; importing them installs the deprecated views ops.spell / ops.DIALECTS
from symcore.io import dialects as _dialects  # noqa: F401

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "read": "symcore.io.readers", "read_with_params": "symcore.io.readers",
    "read_many": "symcore.io.files", "detect_dialect": "symcore.io.readers",
    "read_file": "symcore.io.files",
    "Dialect": "symcore.io.dialects", "register_dialect": "symcore.io.dialects",
    "write": "symcore.io.printers", "to_latex": "symcore.io.printers", "to_c": "symcore.io.printers",
    "to_numpy_source": "symcore.io.printers",
    "to_sympy": "symcore.io.sympy_bridge", "from_sympy": "symcore.io.sympy_bridge",
    "lift_constants": "symcore.params", "bind_params": "symcore.params",
    "simplify": "symcore.rules.api", "dedupe": "symcore.rules.api",
    "simplify_system": "symcore.rules.systems",
    "DedupeResult": "symcore.rules.api", "StopReason": "symcore.rules.api",
    "Dedup": "symcore.rules.api",  # old name of DedupeResult (DeprecationWarning), until 0.3
    "compile": "symcore.codegen.eval.kernels", "Kernel": "symcore.codegen.eval.kernels",
    "fit": "symcore.codegen.fit.api", "FitResult": "symcore.codegen.fit.api",
    "export": "symcore.codegen.export.api",
    "register_op": "symcore.io.registry", "unregister_op": "symcore.io.registry",
    "Session": "symcore.session",
    "odeint": "symcore.codegen.ode.api", "OdeInfo": "symcore.codegen.ode.api",
    "score_trajectories": "symcore.codegen.ode.api",
    "score_derivatives": "symcore.codegen.ode.api",
    "system": "symcore.io.systems", "System": "symcore.dynamics",
    "rhs_function": "symcore.codegen.export.system",
}

if TYPE_CHECKING:  # pragma: no cover - static checkers see the real objects
    from symcore.codegen.export.api import export
    from symcore.io.registry import register_op, unregister_op
    from symcore.codegen.fit.api import FitResult, fit
    from symcore.codegen.eval.kernels import Kernel, compile
    from symcore.params import bind_params, lift_constants
    from symcore.io.printers import to_c, to_latex, to_numpy_source, write
    from symcore.io.dialects import Dialect, register_dialect
    from symcore.io.files import read_file, read_many
    from symcore.io.readers import detect_dialect, read, read_with_params
    from symcore.rules.api import DedupeResult, StopReason, dedupe, simplify
    from symcore.rules.systems import simplify_system
    from symcore.io.sympy_bridge import from_sympy, to_sympy
    from symcore.codegen.ode.api import OdeInfo, odeint, score_derivatives, score_trajectories
    from symcore.io.systems import system
    from symcore.dynamics import System


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
    "Expr", "var", "const", "param", "call", "flatten", "unflatten", "OPS", "Op", "evaluate",
    "SymcoreError", "ParseError", "UnknownOperatorError", "ArityError", "DialectError",
    "DataError", "CompileError", "ExportError", "FitError",
    # `compile` would shadow the builtin under `from symcore import *`: use `symcore.compile`;
    # deprecated aliases stay out of the star import too
    *(name for name in _LAZY if name not in ("compile", "Dedup")),
]
