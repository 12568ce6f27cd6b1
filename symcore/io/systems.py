"""Reading a dynamical system's equations (text in a dialect, SymPy expressions, or IR) into a
`System`: state x0..x{n-1} (or the given names), time `t` (column n), parameters p0.. ."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from symcore.errors import DataError
from symcore.ir import Expr, const
from symcore.dynamics import System

__all__ = ["system"]


def _names_map(n: int, names: Sequence[str] | None) -> dict[str, int]:
    m = {f"x{i}": i for i in range(n)}
    if names is not None:
        if len(names) != n:
            raise DataError(f"{len(names)} state names for {n} equations")
        m.update({str(s): i for i, s in enumerate(names)})
    m["t"] = n
    m[f"x{n}"] = n
    return m


def system(equations: Iterable[Any], *, params: Any = None, names: Sequence[str] | None = None,
           dialect: str = "symcore") -> System:
    """A `System` from its equations (dy_i/dt, one per state variable), each an `Expr`, a number,
    a text read in `dialect` (by default symcore's: state `x0..` or the given `names`, time
    `t`, parameters `p0..`) or a SymPy expression (symbols `x0..`/`names` and `t`; other
    symbols named `p<i>` are parameters).  `params`: default parameter values."""
    from symcore.io.readers import read
    from symcore.io.sympy_bridge import from_sympy

    eqs = list(equations)
    nmap = _names_map(len(eqs), names)
    out: list[Expr] = []
    for i, e in enumerate(eqs):
        if isinstance(e, Expr):
            out.append(e)
        elif isinstance(e, (int, float)) and not isinstance(e, bool):
            out.append(const(float(e)))
        elif isinstance(e, str):
            out.append(read(e, dialect, names=nmap))  # type: ignore[arg-type]
        elif type(e).__module__.startswith("sympy"):
            out.append(from_sympy(e, names=nmap))
        else:
            raise DataError(f"equation {i}: cannot make an equation of a {type(e).__name__}")
    return System(out, params=params, names=names)
