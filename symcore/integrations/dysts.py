"""Systems from dysts (optional extra `symcore[dysts]`): a flow's right-hand side `_rhs(*X, t,
*params)` traced with SymPy symbols into a `System` whose parameters are p0.. (values: the
flow's `param_list`); NumPy's elementwise functions (np.sin, np.exp, ...) called on the state
trace as their SymPy counterparts.  Flows whose rhs is not symbolic (branches on values, array
indexing, delays, vectorised rhs) fail to trace and are skipped and counted."""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator

import numpy as np

from symcore.dynamics import System
from symcore.errors import SymcoreError
from symcore.io.systems import system

__all__ = ["from_flow", "traced_flows", "TraceReport"]


def _dysts() -> Any:
    try:
        import dysts.flows
        import dysts.systems
    except ImportError:
        raise SymcoreError("dysts is not installed: pip install 'symcore[dysts]'") from None
    return dysts


#: NumPy functions a flow may call on the state, as SymPy functions (traced by name)
_SYMPY_OF_NUMPY = {"sin": "sin", "cos": "cos", "tan": "tan", "exp": "exp", "log": "log",
                   "sqrt": "sqrt", "tanh": "tanh", "sinh": "sinh", "cosh": "cosh",
                   "arcsin": "asin", "arccos": "acos", "arctan": "atan", "abs": "Abs",
                   "absolute": "Abs", "cbrt": "cbrt", "arcsinh": "asinh",
                   "arccosh": "acosh", "arctanh": "atanh"}


class _SymbolicNumpy:
    """Stands in for `np` in a flow's module while its rhs is traced: the elementwise functions
    above build SymPy expressions, everything else is NumPy's."""

    def __init__(self) -> None:
        import sympy as sp
        for npname, spname in _SYMPY_OF_NUMPY.items():
            setattr(self, npname, getattr(sp, spname))
        self.power = lambda a, b: a ** b

    def __getattr__(self, name: str) -> Any:
        return getattr(np, name)


@contextmanager
def _symbolic_numpy(fn: Any) -> Iterator[None]:
    """While tracing: the `np` global of the module defining `fn` maps to SymPy (not
    thread-safe: the module global is shared)."""
    g = getattr(fn, "__globals__", None)
    if g is None or g.get("np") is not np:
        yield
        return
    g["np"] = _SymbolicNumpy()
    try:
        yield
    finally:
        g["np"] = np


def from_flow(flow: Any) -> System:
    """The `System` of a dysts flow object (SymcoreError when its rhs does not trace)."""
    import sympy as sp
    n = int(np.asarray(flow.ic).reshape(-1).shape[0])
    xs = sp.symbols(f"x0:{n}", real=True)
    t = sp.Symbol("t", real=True)
    # scalar parameters become p0.. (their values the system's defaults); array-valued ones
    # (coupling matrices) are passed as they are and end up as constants
    params: list[float] = []
    ps: list[Any] = []
    for v in flow.param_list:
        a = np.asarray(v)
        if a.ndim == 0 and a.dtype.kind in "fiu":
            ps.append(sp.Symbol(f"p{len(params)}", real=True))
            params.append(float(a))
        else:
            ps.append(v)
    rhs = type(flow)._rhs
    try:
        with _symbolic_numpy(rhs):
            out = rhs(*xs, t, *ps)
        eqs = [sp.sympify(e) for e in out]
    except Exception as err:  # any failure of user code is "does not trace"
        raise SymcoreError(f"{type(flow).__name__}: rhs does not trace symbolically "
                           f"({type(err).__name__}: {err})") from None
    if len(eqs) != n:
        raise SymcoreError(f"{type(flow).__name__}: rhs returned {len(eqs)} components for "
                           f"{n} state variables")
    for e in eqs:
        if not isinstance(e, sp.Basic) or e.has(sp.Piecewise, sp.Heaviside):
            raise SymcoreError(f"{type(flow).__name__}: rhs is not a plain expression")
    try:
        return system(eqs, params=params or None, names=[str(x) for x in xs])
    except SymcoreError as err:
        raise SymcoreError(f"{type(flow).__name__}: {err}") from None


@dataclass
class TraceReport:
    """Flows that traced (name -> (System, flow)) and those skipped (name -> why)."""

    systems: dict[str, tuple[System, Any]] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)


def traced_flows(names: Iterable[str] | None = None) -> TraceReport:
    """Every dysts flow (or the given names) whose rhs traces, and the count of the others."""
    import warnings
    d = _dysts()
    rep = TraceReport()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name in (list(names) if names is not None else d.systems.get_attractor_list()):
            try:
                flow = getattr(d.flows, name)()
            except Exception as err:
                rep.skipped[name] = f"cannot instantiate ({type(err).__name__})"
                continue
            try:
                rep.systems[name] = (from_flow(flow), flow)
            except SymcoreError as err:
                rep.skipped[name] = str(err)
    return rep
