"""Text exports that need no compiler: a NumPy function (py), SymPy source, LaTeX, and
symcore's own JSON document."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from symcore.ir import Expr, flatten, var
from symcore.text import to_text
from symcore.walk import topo
from symcore.codegen.export.model import doc_lines, n_vars, var_names

__all__ = ["write_py", "write_sympy", "write_latex", "write_json", "json_document",
           "JSON_FORMAT", "JSON_VERSION"]

JSON_FORMAT = "symcore-expression"
JSON_VERSION = 1


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
            src = to_numpy_source(Expr("powi", (var(0), n.args[1])))
            out[key] = src.replace("X[:, 0]", "{0}")
            continue
        src = to_numpy_source(Expr(n.op, tuple(var(i) for i in range(len(n.args)))))
        for i in range(len(n.args)):
            src = src.replace(f"X[:, {i}]", f"{{{i}}}")
        out[key] = src
    return out


def write_py(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
             original: Expr) -> str:
    from symcore.io.printers import numpy_imports, to_numpy_source
    extra_imports = "".join(f"import {m}\n" for m in numpy_imports(model))  # a user op's scipy.special
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
    doc = "\n".join(doc_lines(model, name, pvals, runtime, original))
    nv = n_vars(original)
    sig = "X"
    if runtime:
        sig += ", params"
        if pvals is not None:
            sig += "=(" + ", ".join(repr(float(v)) for v in pvals[:original.n_params]) + ",)"
    return (f'"""{doc}\n\n{name}(X) returns the model on every row of X (n_rows x >= {nv} '
            f'columns) as a 1-D float64 array; needs only NumPy."""\n\n'
            f"import numpy as np\n{extra_imports}\nN_VARS = {nv}\n\n\n"
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


def write_sympy(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
                original: Expr) -> str:
    import sympy

    from symcore.io.sympy_bridge import to_sympy
    se = to_sympy(model)
    doc = "\n".join(f"# {ln}" for ln in doc_lines(model, name, pvals, runtime, original))
    return (f"{doc}\nfrom sympy import *  # noqa: F401,F403\n"
            f"from sympy.functions.elementary.piecewise import ExprCondPair  # noqa: F401\n\n"
            f"{name} = {sympy.srepr(se)}\n")


def write_latex(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
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
             "variables": {str(i): nm for i, nm in sorted(var_names(expr).items())},
             "n_vars": n_vars(expr), "n_params": expr.n_params,
             "flat": [[op, list(kids), list(val) if isinstance(val, tuple) else val]
                      for op, kids, val in flatten(expr).rows]}]


def write_json(model: Expr, name: str, pvals: np.ndarray | None, runtime: bool,
               original: Expr) -> str:
    doc = json_document(model, None if pvals is None or model.n_params == 0 else pvals, name)
    return json.dumps(doc, indent=1, allow_nan=True) + "\n"
