"""Variable names <-> data columns, in one place: what a reader, a printer, the main job and the
CLI accept as `names` (a list of identifiers, position = column; or a dict name -> column)."""

from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.ir import Expr, map_leaves, topo, var

__all__ = ["columns_by_name", "names_by_column", "header_names", "with_names",
           "check_not_shifted"]

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _is_column(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 0


def _pairs(names: Any, error: type[SymcoreError]) -> list[tuple[str, int]]:
    """(name, column) pairs in the order given, validated."""
    if names is None:
        return []
    if isinstance(names, Mapping):
        for k, v in names.items():
            if not isinstance(k, str) or not _IDENT.match(k) or not _is_column(v):
                raise error(f"names must map identifiers to column indices, got {k!r}: {v!r}")
        return [(k, int(v)) for k, v in names.items()]
    if isinstance(names, str):
        raise error("names must be a list of identifiers or a dict, not a string")
    out = []
    for i, k in enumerate(names):
        if not isinstance(k, str) or not _IDENT.match(k):
            raise error(f"names must be identifiers, got {k!r}")
        out.append((k, i))
    return out


def columns_by_name(names: Any, error: type[SymcoreError] = DataError) -> dict[str, int]:
    """name -> column (for readers); a name listed twice keeps its first column."""
    out: dict[str, int] = {}
    for k, i in _pairs(names, error):
        out.setdefault(k, i)
    return out


def names_by_column(names: Any, error: type[SymcoreError] = DataError) -> dict[int, str]:
    """column -> name (for printers); a column named twice keeps its first name."""
    out: dict[int, str] = {}
    for k, i in _pairs(names, error):
        out.setdefault(i, k)
    return out


def header_names(header: Sequence[str]) -> dict[int, str]:
    """column -> name from a data file's header, keeping only the names that are identifiers
    (a header such as `m [kg]` leaves its column as x<j>)."""
    return {j: n for j, n in enumerate(header) if isinstance(n, str) and n.isidentifier()}


def with_names(expr: Expr, names: Mapping[int, str]) -> Expr:
    """`expr` with display names on the variables of the named columns (structure unchanged)."""
    if not names:
        return expr
    return map_leaves(expr, lambda n: var(n.value, names[n.value])
                      if n.op == "var" and n.value in names else n)


def check_not_shifted(exprs: Sequence[Expr], n_columns: int,
                      error: type[SymcoreError] = DataError) -> None:
    """Refuse a population that reads columns 1..n of n data columns and never column 0: its
    variables were numbered from 1 (DySymNet's `x_1`, RSRM's and Operon's `X1`) and read as
    0-based, so every variable is one column off.  One check for fit, Kernel.score and
    `symcore run` (where data is at hand); the error names the fix."""
    used = {n.value for n in topo(list(exprs)) if n.op == "var"}
    if not used or 0 in used or max(used) != n_columns:
        return
    raise error(f"the expressions use variables x1..x{n_columns} over {n_columns} data "
                f"column(s) and never x0: they look numbered from 1 but were read from 0, "
                f"which shifts every variable by one column.  Read them with the tool's "
                f"dialect (dialect=\"dysymnet\" for DySymNet's x_1, \"operon\" or \"sympy\" for "
                f"X1) or pass var_base=1")
