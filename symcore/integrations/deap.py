"""DEAP drop-in: translate `deap.gp.PrimitiveTree`s straight to the IR (no text, full-precision
constants, hash-consed) and score a whole generation per native call through `Session`.

Usage (DEAP's symbolic-regression example, unchanged except for two registrations)::

    ev = Evaluator(pset, X, y)                    # X: (rows, pset arguments), y: (rows,)
    toolbox.register("evaluate", ev)              # ev(ind) -> (mse,)  (DEAP's 1-tuple)
    toolbox.register("map", ev.map)               # eaSimple / eaMuPlusLambda: one batch per gen

Semantics.  A primitive is mapped to an operator by its *function* (not its name):
`operator.add/sub/mul/neg/truediv/abs/pow`, `math.*` and the NumPy ufuncs of the same
functions, and the `protectedDiv` of DEAP's symbreg example (recognised by its code; it returns
1 only for an exact zero divisor, which is the op `zdiv`, not gplearn's `pdiv`).  Anything else
needs `ops={"name": "op"}` naming an ops-table operator (e.g. one added with
`symcore.register_op`), or that individual is evaluated by calling DEAP's compiled Python
function row by row (correct, only slower; `stats["python"]` counts them).

The native path computes with IEEE-754 doubles and never raises.  Where DEAP's own Python
evaluation raises (`math.log(-1)`, `math.sqrt(-1)`: ValueError; `math.exp(1000)` or the
squared error of a huge prediction, `(1e200 - y)**2`: OverflowError; `x / 0` with
`operator.truediv`: ZeroDivisionError), the Evaluator gives that individual the `nonfinite`
loss (+inf by default, the worst fitness for a minimised error), exactly as for an individual
whose prediction is inf or NaN on some row.  The Python fallback does the same.  Elsewhere the
loss equals DEAP's `math.fsum((func(*x) - y)**2 ...) / len(points)` within 1e-9 relative
(predictions agree to a few ulps: symcore's vector sin/cos/exp/log are not libm's).
Ephemeral and constant terminals become float64 constants (Python ints of magnitude > 2**53
would round).
"""

from __future__ import annotations

import functools
import math
import operator
import types
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError, UnknownOperatorError
from symcore.ir import Expr, const, var
from symcore.ops import OPS

__all__ = ["Evaluator", "Translator", "ZDIV", "known_functions", "is_protected_div"]

#: the op for DEAP's protectedDiv: a / b, and 1 where b == 0 (NaN divisors divide)
ZDIV = "zdiv"


def known_functions() -> dict[Any, str]:
    """Python / NumPy callables that DEAP primitive sets use, mapped to ops-table names.

    Every entry computes, on Python floats, the IEEE value of the op wherever it does not
    raise (math.* raise instead of returning NaN/inf; the Evaluator never raises)."""
    table: dict[Any, str] = {
        operator.add: "add", operator.sub: "sub", operator.mul: "mul", operator.neg: "neg",
        operator.truediv: "div", operator.abs: "abs", operator.pow: "pow", abs: "abs",
        math.fabs: "abs",
        np.add: "add", np.subtract: "sub", np.multiply: "mul", np.negative: "neg",
        np.divide: "div", np.absolute: "abs", np.fabs: "abs", np.power: "pow",
        np.square: "square", np.maximum: "max", np.minimum: "min", np.fmax: "fmax",
        np.fmin: "fmin", np.sign: "sign", np.arcsin: "asin", np.arccos: "acos",
        np.arctan: "atan", np.arcsinh: "asinh", np.arccosh: "acosh", np.arctanh: "atanh",
    }
    for name in ("sin", "cos", "tan", "exp", "log", "sqrt", "tanh", "sinh", "cosh", "asin",
                 "acos", "atan", "asinh", "acosh", "atanh", "cbrt"):
        if hasattr(math, name):
            table[getattr(math, name)] = name
        if hasattr(np, name):
            table[getattr(np, name)] = name
    return {f: op for f, op in table.items() if op in OPS}


# -- DEAP's protectedDiv ------------------------------------------------------------------------
# The symbreg example's function and its common spellings: on floats each returns left/right,
# and 1 exactly when right == 0.0 (or -0.0); NaN and inf divisors divide.
_PDIV_TEMPLATES = [
    f"def protectedDiv(left, right):\n    try:\n        return left / right\n"
    f"    except {exc}:\n        return {one}\n"
    for exc in ("ZeroDivisionError", "ArithmeticError", "Exception", "")
    for one in ("1", "1.0")
]


@functools.lru_cache(maxsize=1)
def _pdiv_codes() -> tuple[tuple[Any, ...], ...]:
    keys = []
    for src in _PDIV_TEMPLATES:
        src = src.replace("except :", "except:")
        ns: dict[str, Any] = {}
        exec(compile(src, "<protectedDiv>", "exec"), ns)  # noqa: S102 - fixed source above
        keys.append(_code_key(ns["protectedDiv"].__code__))
    return tuple(keys)


def _code_key(code: types.CodeType) -> tuple[Any, ...]:
    # argument names and line numbers do not matter; instructions, constants and globals do
    return (code.co_code, code.co_consts, code.co_names, code.co_argcount,
            code.co_kwonlyargcount, getattr(code, "co_exceptiontable", b""))


def is_protected_div(fn: Any) -> bool:
    """True if `fn` is DEAP's protectedDiv (same code up to names), checked on probe values."""
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType) or getattr(fn, "__defaults__", None) \
            or getattr(fn, "__closure__", None) or _code_key(code) not in _pdiv_codes():
        return False
    if getattr(fn, "__globals__", {}).get("ZeroDivisionError", ZeroDivisionError) \
            is not ZeroDivisionError:
        return False
    try:
        probes = [(1.0, 0.0, 1.0), (1.0, -0.0, 1.0), (6.0, 3.0, 2.0), (1.0, 2.0 ** -1000, 2.0 ** 1000),
                  (-2.0, 4.0, -0.5)]
        return all(float(fn(a, b)) == r for a, b, r in probes) and math.isnan(fn(1.0, math.nan))
    except Exception:  # noqa: BLE001 - a function that raises on a probe is not protectedDiv
        return False


# -- translation ----------------------------------------------------------------------------------

class Translator:
    """PrimitiveTree (prefix list of Primitive/Terminal objects) -> `Expr`, without text.

    Primitives are resolved once per name from `pset.context`; arguments map to columns in the
    order of `pset.arguments` (renamed arguments included).  `translate` returns None for a tree
    that uses something with no op (the caller evaluates it in Python)."""

    def __init__(self, pset: Any, ops: Mapping[Any, str] | None = None) -> None:
        self.pset = pset
        user = dict(ops or {})
        for key, name in user.items():
            if name not in OPS:
                raise UnknownOperatorError(
                    f"ops maps {key!r} to {name!r}, which is not in the ops table; register it "
                    f"with symcore.register_op first")
        known = known_functions()
        self.prims: dict[str, str | None] = {}       # primitive name -> op (None: Python only)
        self.reasons: dict[str, str] = {}             # why a primitive has no op
        for name, prim in pset.mapping.items():
            if not hasattr(prim, "args"):             # a Terminal (or an Ephemeral class)
                continue
            fn = pset.context.get(name)
            op = user.get(name, user.get(fn) if _hashable(fn) else None)
            if op is None and _hashable(fn):
                op = known.get(fn)
            if op is None and is_protected_div(fn):
                op = ZDIV if ZDIV in OPS else None
                if op is None:
                    self.reasons[name] = f"{ZDIV!r} is not registered"
            if op is not None and OPS[op].arity != len(prim.args):
                self.reasons[name] = (f"{name} takes {len(prim.args)} argument(s), op {op!r} "
                                      f"takes {OPS[op].arity}")
                op = None
            elif op is None and name not in self.reasons:
                self.reasons[name] = f"no op for {fn!r}; pass ops={{{name!r}: '<op>'}}"
            self.prims[name] = op
        self.args = {a: var(i, a if a.isidentifier() else None)
                     for i, a in enumerate(pset.arguments)}
        self.n_args = len(pset.arguments)

    def _terminal(self, node: Any) -> Expr | None:
        value = node.value
        if isinstance(value, str) and node.conv_fct is str:     # symbolic: argument or name
            leaf = self.args.get(value)
            if leaf is not None:
                return leaf
            value = self.pset.context.get(value)
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return const(float(value))
        return None

    def translate(self, tree: Sequence[Any]) -> Expr | None:
        """The IR of one tree, or None when some node has no op."""
        stack: list[Expr] = []
        prims = self.prims
        try:
            for node in reversed(tree):
                n = node.arity
                if n == 0:
                    leaf = self._terminal(node)
                    if leaf is None:
                        return None
                    stack.append(leaf)
                    continue
                op = prims.get(node.name)
                if op is None:
                    return None
                if n == 1:
                    stack[-1] = Expr(op, (stack[-1],))
                else:
                    # prefix order reversed: the first operand is on top of the stack
                    args = tuple(stack[-1:-n - 1:-1])
                    del stack[-n:]
                    stack.append(Expr(op, args))
        except (IndexError, AttributeError) as err:
            raise SymcoreError(f"not a well-formed DEAP tree: {err}") from None
        if len(stack) != 1:
            raise SymcoreError(f"not a well-formed DEAP tree: {len(stack)} roots")
        return stack[0]


def _hashable(x: Any) -> bool:
    try:
        hash(x)
    except TypeError:
        return False
    return True
