"""A dynamical system dy/dt = f(t, y; p) as one IR object: a sequence of expressions, one per
state variable, over the state columns x0..x{n-1}, time as column n (spelt `t` in text and
SymPy) and fittable parameters p0.. .

The expressions stay hash-consed: a subterm shared by several components is one node, so the
lowering (`ode.emit`) computes it once.
"""

from __future__ import annotations

import hashlib
from typing import Any, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError
from symcore.evaluate import evaluate
from symcore.ir import Expr, Flat
from symcore.walk import topo

__all__ = ["System", "as_system"]


class System:
    """dy/dt = f(t, y; p): `exprs[i]` is dy_i/dt over x0..x{n-1} (the state), x{n} (time `t`)
    and parameters p0..p{n_params-1}.  `params` are default parameter values (or None)."""

    __slots__ = ("exprs", "n", "n_params", "params", "names", "_digest", "__weakref__")

    def __init__(self, exprs: Sequence[Expr], params: Any = None,
                 names: Sequence[str] | None = None) -> None:
        exprs = tuple(exprs)
        if not exprs:
            raise DataError("a system needs at least one state equation")
        for i, e in enumerate(exprs):
            if not isinstance(e, Expr):
                raise DataError(f"equation {i} of the system is not an Expr "
                                f"(got {type(e).__name__})")
        n = len(exprs)
        nodes = topo(exprs)
        bad = sorted({v.value for v in nodes if v.op == "var" and v.value > n})
        if bad:
            raise DataError(f"a system of {n} state variables reads x0..x{n - 1} and t (= x{n}); "
                            f"it also reads column(s) {bad}")
        self.exprs: tuple[Expr, ...] = exprs
        self.n = n
        self.n_params = 1 + max((v.value for v in nodes if v.op == "param"), default=-1)
        if params is not None:
            pv = np.ascontiguousarray(params, dtype=np.float64).reshape(-1)
            if pv.shape[0] < self.n_params:
                raise DataError(f"the system has {self.n_params} parameters, "
                                f"{pv.shape[0]} values given")
            self.params: np.ndarray | None = pv
        else:
            self.params = None
        self.names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(n))
        self._digest: str | None = None

    @property
    def flat(self) -> Flat:
        """Every distinct node of all equations, children before parents (shared ones once)."""
        return Flat(topo(self.exprs))

    def digest(self) -> str:
        """Stable structural digest of the equations (cache key of the compiled right-hand
        side)."""
        if self._digest is None:
            h = hashlib.blake2b(digest_size=16)
            for e in self.exprs:
                h.update(e.digest().encode())
                h.update(b";")
            self._digest = h.hexdigest()
        return self._digest

    @property
    def size(self) -> int:
        """Distinct nodes over all equations (shared subterms counted once)."""
        return len(topo(self.exprs))

    def rhs(self, t: float, y: Any, params: Any = None) -> np.ndarray:
        """dy/dt by the NumPy reference evaluator; `y` is (n,) or (n, k) (SciPy's vectorised
        layout), the result has the same shape."""
        Y = np.asarray(y, dtype=np.float64)
        cols = Y.reshape(self.n, -1)
        X = np.empty((cols.shape[1], self.n + 1))
        X[:, :self.n] = cols.T
        X[:, self.n] = t
        p = self.params if params is None else np.asarray(params, dtype=np.float64)
        out = np.stack([evaluate(e, X, p) for e in self.exprs])
        return out.reshape(Y.shape)

    def __len__(self) -> int:
        return self.n

    def __repr__(self) -> str:
        eqs = "; ".join(f"d{nm}/dt = {e}" for nm, e in zip(self.names, self.exprs))
        return f"System({eqs})"

    def __reduce__(self) -> tuple:
        return (System, (self.exprs, self.params, self.names))


def as_system(obj: Any) -> System:
    """`obj` as a System (a System, or a sequence of Expr equations; text and SymPy equations
    are read by `symcore.system`)."""
    if isinstance(obj, System):
        return obj
    if isinstance(obj, (str, bytes, Expr)):
        raise SymcoreError("a system is a sequence of equations, one per state variable; "
                           "got a single one (wrap it in a list)")
    try:
        eqs = list(obj)
    except TypeError:
        raise SymcoreError(f"not a system: {type(obj).__name__}") from None
    for i, e in enumerate(eqs):
        if not isinstance(e, Expr):
            raise SymcoreError(f"equation {i} is a {type(e).__name__}, not an Expr: read text "
                               f"or SymPy equations with symcore.system(...)")
    return System(eqs)
