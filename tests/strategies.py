"""Hypothesis strategies shared by every test package (random expressions, data, populations)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from hypothesis import settings
from hypothesis import strategies as st

import symcore
from symcore import OPS, Expr, call, const, param, var
from symcore.walk import topo

UNARY = tuple(n for n, o in OPS.items() if o.arity == 1)
BINARY = tuple(n for n, o in OPS.items() if o.arity == 2 and n != "powi")
#: operators every frontend shares (no protected variants); handy for dialect round trips
PLAIN_UNARY = ("neg", "square", "cube", "inv", "abs", "sqrt", "exp", "log", "sin", "cos", "tan",
               "tanh", "sinh", "cosh", "asin", "acos", "atan", "cbrt")
PLAIN_BINARY = ("add", "sub", "mul", "div", "pow")


def examples(fraction: float) -> int:
    """`fraction` of the active Hypothesis profile's `max_examples` (at least 1), for properties
    whose examples are slow (tests/conftest.py loads the profile before any test module)."""
    if not fraction > 0:
        raise ValueError(f"fraction must be positive, got {fraction!r}")
    return max(1, round(settings.default.max_examples * fraction))


finite_consts = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False,
                          allow_subnormal=False, width=64)
any_consts = st.floats(allow_subnormal=False, width=64)


def leaves(n_vars: int = 3, n_params: int = 0, constants: st.SearchStrategy[float] = finite_consts,
           names: tuple[str, ...] | None = None) -> st.SearchStrategy[Expr]:
    opts = [st.integers(0, n_vars - 1).map(lambda i: var(i, names[i] if names else None)),
            constants.map(const)]
    if n_params:
        opts.append(st.integers(0, n_params - 1).map(param))
    return st.one_of(*opts)


def exprs(n_vars: int = 3, n_params: int = 0, unary: tuple[str, ...] = UNARY,
          binary: tuple[str, ...] = BINARY, max_leaves: int = 12, powi: bool = True,
          constants: st.SearchStrategy[float] = finite_consts,
          names: tuple[str, ...] | None = None) -> st.SearchStrategy[Expr]:
    """Random expressions over the given operators (every op of the table by default)."""
    base = leaves(n_vars, n_params, constants, names)

    def extend(children: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        opts = []
        if unary:
            opts.append(st.tuples(st.sampled_from(unary), children).map(lambda t: call(t[0], t[1])))
        if binary:
            opts.append(st.tuples(st.sampled_from(binary), children, children)
                        .map(lambda t: call(t[0], t[1], t[2])))
        if powi:
            opts.append(st.tuples(children, st.integers(-4, 5))
                        .map(lambda t: call("powi", t[0], const(float(t[1])))))
        return st.one_of(*opts)

    return st.recursive(base, extend, max_leaves=max_leaves)


def plain_exprs(**kw: object) -> st.SearchStrategy[Expr]:
    """Expressions over the operators every infix frontend can print."""
    return exprs(unary=PLAIN_UNARY, binary=PLAIN_BINARY, powi=False, **kw)  # type: ignore[arg-type]


def data(n_vars: int = 3, min_rows: int = 0, max_rows: int = 40,
         edge: bool = True) -> st.SearchStrategy[np.ndarray]:
    """Data matrices (rows × n_vars), including 0, negatives, NaN and ±inf when `edge`."""
    elems = st.floats(allow_nan=edge, allow_infinity=edge, allow_subnormal=False,
                      min_value=None if edge else -10.0, max_value=None if edge else 10.0)
    if edge:
        elems = st.one_of(elems, st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.001, -0.001, 1e-300,
                                                  1e300, np.nan, np.inf, -np.inf]),
                          st.floats(-5, 5))
    return st.integers(min_rows, max_rows).flatmap(
        lambda n: st.lists(st.lists(elems, min_size=n_vars, max_size=n_vars),
                           min_size=n, max_size=n)
        .map(lambda rows: np.array(rows, dtype=np.float64).reshape(n, n_vars)))


def populations(n_vars: int = 3, min_size: int = 1, max_size: int = 30,
                **kw: object) -> st.SearchStrategy[list[Expr]]:
    """Populations with deliberate duplicates and near-duplicates."""
    return st.lists(exprs(n_vars=n_vars, max_leaves=8, **kw), min_size=min_size,  # type: ignore[arg-type]
                    max_size=max_size).flatmap(
        lambda base: st.lists(st.sampled_from(base), min_size=len(base), max_size=2 * len(base))
        .map(lambda dup: base + dup))


#: the alphabet of `algebraic_exprs`: few leaves, so random expressions often share a key
ALGEBRAIC_UNARY = ("neg", "square", "cube", "inv", "exp", "log", "sqrt", "abs", "sin", "cos")
ALGEBRAIC_BINARY = ("add", "sub", "mul", "div")


def algebraic_exprs(max_leaves: int = 6) -> st.SearchStrategy[Expr]:
    """Expressions over two variables and five constants with the field operations, integer
    powers and a few functions: a small alphabet, so that a population holds many equal
    functions written differently (for properties of equivalence keys)."""
    base = st.one_of(st.integers(0, 1).map(var),
                     st.sampled_from([1.0, 2.0, 0.5, -1.0, 3.0]).map(const))

    def extend(ch: st.SearchStrategy[Expr]) -> st.SearchStrategy[Expr]:
        return st.one_of(
            st.tuples(st.sampled_from(ALGEBRAIC_UNARY), ch).map(lambda t: call(t[0], t[1])),
            st.tuples(st.sampled_from(ALGEBRAIC_BINARY), ch, ch)
            .map(lambda t: call(t[0], t[1], t[2])),
            st.tuples(ch, st.integers(-3, 4)).map(lambda t: call("powi", t[0], const(float(t[1])))))

    return st.recursive(base, extend, max_leaves=max_leaves)


def _rewrite_forms(t: tuple[Expr, Expr]) -> list[Expr]:
    a, b = t
    one, two = const(1.0), const(2.0)

    def f(op: str) -> Callable[[Expr], Expr]:
        return lambda x: call(op, x)

    exp, sq, inv, sin, neg = f("exp"), f("square"), f("inv"), f("sin"), f("neg")
    return [a * (b + a), a * b + a * a, a * b + b * b,
            exp(a + b), exp(a) * exp(b), exp(a) * b,
            sq(a + b), sq(a) + two * a * b + sq(b), sq(a) + sq(b),
            (a + b) / b, a / b + one, a / b + b,
            inv(a - b), neg(inv(b - a)), inv(b - a),
            sin(a - b), neg(sin(b - a)), sin(b - a)]


def algebraic_rewrites() -> st.SearchStrategy[list[Expr]]:
    """For two `algebraic_exprs` a, b: forms a SymPy-style rewrite gives of their combinations
    (products over sums, exp(a+b), powers of sums, a + b over b, signs through odd functions),
    next to near misses of the same shape that are other functions."""
    return st.tuples(algebraic_exprs(4), algebraic_exprs(4)).map(_rewrite_forms)


__all__ = ["exprs", "plain_exprs", "algebraic_exprs", "algebraic_rewrites", "leaves", "data", "populations", "UNARY", "BINARY",
           "PLAIN_UNARY", "PLAIN_BINARY", "finite_consts", "any_consts", "symcore", "prefix_tokens"]


def prefix_tokens(e: Expr) -> list:
    """The prefix token list of an expression, as a search keeps it: columns as ints,
    constants as floats, operators as "<name>" symbols."""
    if e.op == "var":
        return [int(e.value)]
    if e.op == "const":
        return [float(e.value)]
    out: list = [f"<{e.op}>"]
    for a in e.args:
        out += prefix_tokens(a)
    return out


def rounded(e: Expr, X: np.ndarray, factor: float) -> np.ndarray:
    """`e` on X with every intermediate result scaled by `factor` or by 2 - `factor` (by turns,
    so that inverse pairs such as 1/(1/x) do not cancel it): a relative error like the one
    float64 rounding makes at each node, to find where it is amplified (tan(atan(y)) near the
    pole: atan(y) is pi/2 - 1/y, and one ulp of pi/2 is a large share of 1/y)."""
    vals: dict = {}
    with np.errstate(all="ignore"):
        for k, n in enumerate(topo([e])):
            f = factor if k % 2 else 2.0 - factor
            if n.op == "var":
                vals[n] = X[:, n.value]
            elif n.op == "const":
                vals[n] = np.float64(n.value)
            elif n.op == "param":
                raise ValueError("rounded: an expression without parameters")
            else:
                vals[n] = OPS[n.op].np(*(vals[a] for a in n.args)) * f
    return np.broadcast_to(vals[e], (X.shape[0],))
