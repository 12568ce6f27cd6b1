"""C99 source (one temporary per distinct node, from the ops table's `c` templates) and the C
header that documents the exported functions (shared with the `so` format)."""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from symcore.ir import Expr
from symcore.ops import OPS
from symcore.walk import topo
from symcore.codegen.export.model import doc_lines, n_vars, prepare
from symcore.codegen.export.names import check_name

__all__ = ["c_source", "c_header", "write_c", "header_text"]


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
    check_name(name, "c")
    model, pvals, runtime = prepare(expr, params, bake_params, "c")
    return header_text(model, name, pvals, runtime, expr)


def header_text(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
                original: Expr, extra: Sequence[str] = ()) -> str:
    one, batch = _c_signatures(name, runtime)
    guard = f"SYMCORE_{name.upper()}_H"
    doc = "\n".join(f" * {ln}" for ln in [*doc_lines(model, name, pvals, runtime, original),
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
    check_name(name, "c")
    model, pvals, runtime = prepare(expr, params, bake_params, "c")
    return write_c(model, name, pvals, runtime, expr)


def write_c(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
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
    doc = "\n".join(f" * {ln}" for ln in doc_lines(model, name, pvals, runtime, original))
    unused = "    (void)x;\n" if n_vars(model) == 0 else ""
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
