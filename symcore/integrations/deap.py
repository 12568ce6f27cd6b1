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
whose prediction is inf or NaN on some row.  The Python fallback does the same.  Elsewhere,
by default, the loss IS DEAP's `math.fsum((func(*x) - y)**2 ...) / len(points)`, bit for bit:
math.* primitives run as the C library's own functions (ops `libm_<fn>`, lane by lane), + - * /
are IEEE-exact, and the squared errors are summed exactly rounded like math.fsum.  That matters:
individuals whose predictions differ in the last bits often tie under fsum, and DEAP's
tournaments and hall of fame break ties by position, so any other rounding makes a run with the
same seed diverge.  `summation="native"` (in-kernel sums, the session's fitness cache) and
`exact_math=False` (symcore's vector sin/cos/exp/log) are faster and agree within ~1e-15
relative, but give no such guarantee.
Ephemeral and constant terminals become float64 constants (Python ints of magnitude > 2**53
would round).
"""

from __future__ import annotations

import functools
import math
import operator
import types
from collections import OrderedDict
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

import numpy as np

from symcore.errors import DataError, SymcoreError, UnknownOperatorError
from symcore.ir import Expr, const, var
from symcore.ops import OPS

__all__ = ["Evaluator", "Translator", "ZDIV", "known_functions", "is_protected_div"]

#: the op for DEAP's protectedDiv: a / b, and 1 where b == 0 (NaN divisors divide)
ZDIV = "zdiv"


def _zdiv_np(a: Any, b: Any) -> Any:
    with np.errstate(all="ignore"):
        return np.where(b == 0, 1.0, np.divide(a, b))


def _zdiv_sympy(a: Any, b: Any) -> Any:
    import sympy
    return sympy.Piecewise((sympy.Integer(1), sympy.Eq(b, 0)), (a / b, True))


def _zdiv_lower(L: Any, a: Any, b: Any) -> Any:
    # an ordered compare: -0.0 == 0.0 takes the protected branch, a NaN divisor divides
    return L.select(L.eq(b, L.const(0.0, b)), L.const(1.0, a), L.fdiv(a, b))


def zdiv_op() -> Any:
    """The `zdiv` Op record: DEAP symbreg's protectedDiv on floats (1 only for a zero divisor,
    unlike gplearn's `pdiv`, which protects |b| <= 0.001).  Its derivative at b == 0 (where the
    function jumps) is that of the division branch with 1/0 read as 1."""
    from symcore.ops import Op

    return Op(name=ZDIV, arity=2, np=_zdiv_np, sympy=_zdiv_sympy, lower=_zdiv_lower,
              c="({1} == 0.0 ? 1.0 : {0} / {1})",
              latex=r"\operatorname{{zdiv}}\left({0}, {1}\right)",
              np_src="(lambda a, b: np.where(b == 0, 1.0, np.divide(a, b)))({0}, {1})",
              deriv=((ZDIV, 1.0, "{1}"), ("neg", (ZDIV, "{y}", "{1}"))),
              protected=True, domain="DEAP protectedDiv: a/b, 1 where b == 0")


#: math.* functions whose libm result the native code can reproduce bit for bit (glibc's
#: `<fn>f64` aliases are the same functions as `<fn>`, called lane by lane: never libmvec or
#: symcore's vector approximations, which differ from libm in the last bits)
LIBM = ("sin", "cos", "tan", "exp", "log", "tanh", "sinh", "cosh", "asin", "acos", "atan",
        "asinh", "acosh", "atanh", "cbrt")
_LIBM_DERIV: dict[str, tuple[Any, ...]] = {
    "sin": (("libm_cos", "{0}"),), "cos": (("neg", ("libm_sin", "{0}")),), "exp": ("{y}",),
    "log": (("inv", "{0}"),), "tanh": (("sub", 1.0, ("square", "{y}")),),
}


def _libm_available() -> bool:
    import ctypes
    try:
        lib = ctypes.CDLL(None)
    except OSError:
        return False
    return all(hasattr(lib, f + "f64") for f in LIBM)


def libm_op(fn: str) -> Any:
    """The `libm_<fn>` Op: `fn` computed by the C library exactly as Python's math.<fn>."""
    from symcore.ops import Op

    base = OPS[fn]
    return Op(name=f"libm_{fn}", arity=1, np=base.np, c=f"{fn}({{0}})", latex=base.latex,
              sympy=base.sympy, lower=lambda L, a, _f=fn + "f64": L.libm(_f, a),
              deriv=_LIBM_DERIV.get(fn), cost=base.cost,
              domain=f"{base.domain} (C library {fn}, bit for bit)")


def register_ops(exact_math: bool = True) -> list[str]:
    """Register the ops this module needs (zdiv; libm_* when `exact_math` and the C library
    has them); idempotent.  Returns the names registered by this module."""
    from symcore import ops

    want = [zdiv_op()] if ZDIV not in OPS else []
    if exact_math and "libm_sin" not in OPS and _libm_available():
        want += [libm_op(f) for f in LIBM]
    for op in want:
        ops.register(op)
    return [n for n in [ZDIV, *(f"libm_{f}" for f in LIBM)] if n in OPS]


def unregister_ops() -> None:
    """Remove the ops `register_ops` added (tests; a process done with DEAP)."""
    from symcore import ops

    for name in [ZDIV, *(f"libm_{f}" for f in LIBM)]:
        ops.unregister(name)


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
    """True if `fn` is DEAP's protectedDiv: the same code up to names (a handler for
    ZeroDivisionError, ArithmeticError, Exception or anything, returning 1 or 1.0), with the
    exception names meaning the builtins."""
    code = getattr(fn, "__code__", None)
    if not isinstance(code, types.CodeType) or getattr(fn, "__defaults__", None) \
            or getattr(fn, "__closure__", None) or _code_key(code) not in _pdiv_codes():
        return False
    glb = getattr(fn, "__globals__", {})
    return all(glb.get(n, exc) is exc for n, exc in _BUILTIN_EXC.items() if n in code.co_names)


_BUILTIN_EXC = {"ZeroDivisionError": ZeroDivisionError, "ArithmeticError": ArithmeticError,
                "Exception": Exception}


# -- translation ----------------------------------------------------------------------------------

class Translator:
    """PrimitiveTree (prefix list of Primitive/Terminal objects) -> `Expr`, without text.

    Primitives are resolved once per name from `pset.context`; arguments map to columns in the
    order of `pset.arguments` (renamed arguments included).  `translate` returns None for a tree
    that uses something with no op (the caller evaluates it in Python)."""

    def __init__(self, pset: Any, ops: Mapping[Any, str] | None = None,
                 exact_math: bool = True) -> None:
        self.pset = pset
        register_ops(exact_math)
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
                if exact_math and getattr(fn, "__module__", None) == "math" \
                        and f"libm_{op}" in OPS:
                    op = f"libm_{op}"
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


# -- evaluation ---------------------------------------------------------------------------------

Metric = Literal["mse", "rmse", "mae", "nmse", "r2", "pearson", "spearman"]


class Evaluator:
    """DEAP fitness for a primitive set on data (X, y), one native batch per generation.

    `ev(individual)` returns DEAP's 1-tuple `(loss,)`; `ev.map(func, individuals)` scores all
    of them in one `Session.score` call when `func` is this evaluator (or `toolbox.evaluate`,
    a partial of it) and is plain `map` otherwise.  Columns of X follow `pset.arguments`.
    `ops` maps primitive names (or their functions) to ops-table names for primitives the
    evaluator does not know; the others run in Python (see the module docstring).
    `summation` ("fsum": exactly rounded, DEAP's value bit for bit; "native": the session's
    in-kernel sum) applies to unweighted mse; `exact_math` evaluates math.* primitives with the
    C library's functions.  The other keywords are `Session`'s."""

    def __init__(self, pset: Any, X: Any, y: Any, metric: Metric = "mse", *,
                 weights: Any = None, dtype: Literal["float64", "float32"] = "float64",
                 cache: Literal["exact", "equivalent"] | None = "exact",
                 max_entries: int = 1_000_000, nonfinite: Any = "inf",
                 ops: Mapping[Any, str] | None = None,
                 summation: Literal["fsum", "native"] = "fsum",
                 exact_math: bool = True) -> None:
        from symcore.session import Session   # the session layer (codegen + rules) on demand

        self.translator = Translator(pset, ops, exact_math)
        n_args = self.translator.n_args
        try:
            A = np.asarray(X, dtype=np.float64)
        except (TypeError, ValueError) as err:
            raise DataError(f"X is not numeric: {err}") from None
        if A.ndim == 1 and n_args == 1:
            A = A.reshape(-1, 1)
        if A.ndim != 2 or A.shape[1] != n_args:
            raise DataError(f"X must have one column per argument of the primitive set "
                            f"({n_args}: {', '.join(pset.arguments)}), got shape {A.shape}")
        if summation not in ("fsum", "native"):
            raise SymcoreError(f"summation must be 'fsum' or 'native', got {summation!r}")
        self.pset = pset
        self.X = A
        self.session = Session(A, y, metric=metric, weights=weights, dtype=dtype, cache=cache,
                               max_entries=max_entries, nonfinite=nonfinite)
        self.metric = metric
        self.y = np.asarray(y, dtype=np.float64).reshape(-1)
        self.weights = None if weights is None else np.asarray(weights, dtype=np.float64)
        self.nonfinite = nonfinite
        self._rows: list[tuple[float, ...]] | None = None
        self._ys: list[float] = []
        # DEAP's example sums squared errors with math.fsum: only an exactly rounded sum
        # breaks fitness ties between different individuals as DEAP does (see _fsum_mse)
        self.summation = summation if metric == "mse" and weights is None else "native"
        self._cache_on = cache is not None
        self._max_entries = max_entries
        self._fsum_cache: OrderedDict[Expr, float] = OrderedDict()
        self.stats = {"individuals": 0, "batches": 0, "native": 0, "python": 0, "hits": 0}

    # -- DEAP's interface -------------------------------------------------------------------
    def __call__(self, individual: Sequence[Any]) -> tuple[float]:
        return self.evaluate([individual])[0]

    def map(self, func: Callable[..., Any], *iterables: Iterable[Any]) -> Any:
        """`toolbox.map`: one batch when `func` is this evaluator, else the builtin `map`."""
        if len(iterables) == 1 and _is_evaluator(func, self):
            return self.evaluate(list(iterables[0]))
        return map(func, *iterables)

    def evaluate(self, individuals: Sequence[Sequence[Any]]) -> list[tuple[float]]:
        """DEAP fitness tuples of many individuals (one native call for all translatable ones)."""
        exprs: list[Expr] = []
        where: list[int] = []
        out: list[tuple[float] | None] = [None] * len(individuals)
        translate = self.translator.translate
        for i, ind in enumerate(individuals):
            e = translate(ind)
            if e is None:
                out[i] = (self._python_loss(ind),)
            else:
                exprs.append(e)
                where.append(i)
        if exprs:
            losses = self._fsum_mse(exprs) if self.summation == "fsum" else \
                self.session.score(exprs).tolist()
            for i, v in zip(where, losses):
                out[i] = (v,)
        self.stats["individuals"] += len(individuals)
        self.stats["batches"] += 1
        self.stats["native"] += len(exprs)
        self.stats["python"] += len(individuals) - len(exprs)
        return out  # type: ignore[return-value]

    def expr(self, individual: Sequence[Any]) -> Expr:
        """The IR of one individual; UnknownOperatorError if a primitive has no op."""
        e = self.translator.translate(individual)
        if e is None:
            why = "; ".join(f"{k}: {v}" for k, v in self.translator.reasons.items()) or \
                "a terminal that is not a number or an argument"
            raise UnknownOperatorError(f"individual {individual} has no IR ({why})")
        return e

    # -- DEAP's mean squared error, exactly rounded ------------------------------------------
    def _fsum_mse(self, exprs: list[Expr]) -> list[float]:
        """fsum(squared errors) / rows from native predictions, cached per expression.

        Two individuals whose predictions differ in the last bits often get the same fsum
        (it is exactly rounded) but different in-kernel sums (rounded at each step); DEAP's
        tournament and hall of fame then break that tie differently and the run diverges.
        With the exact sum, fitness is a function of the predictions alone, as in DEAP."""
        cache = self._fsum_cache
        out: list[float] = [0.0] * len(exprs)
        todo: dict[Expr, list[int]] = {}
        for i, e in enumerate(exprs):
            v = cache.get(e)
            if v is not None:
                cache.move_to_end(e)
                out[i] = v
                self.stats["hits"] += 1
            else:
                todo.setdefault(e, []).append(i)
        if not todo:
            return out
        uniq = list(todo)
        n = self.X.shape[0]
        y = self.y
        bad = self._nonfinite_loss()
        step = max(1, (1 << 21) // n)            # at most ~16 MB of predictions at a time
        for s in range(0, len(uniq), step):
            block = uniq[s:s + step]
            with np.errstate(all="ignore"):
                err = self.session.predict(block).astype(np.float64, copy=False) - y
                ok = np.isfinite(err).all(axis=1)
                sq = err * err
            for e, row, fin in zip(block, sq.tolist(), ok.tolist()):
                # a non-finite prediction, or a square that overflows (Python raises
                # OverflowError there), gets the nonfinite loss
                v = math.fsum(row) / n if fin else bad
                if not math.isfinite(v):
                    v = bad
                for i in todo[e]:
                    out[i] = v
                if self._cache_on and self._max_entries:
                    cache[e] = v
                    if len(cache) > self._max_entries:
                        cache.popitem(last=False)
        return out

    # -- the Python fallback ----------------------------------------------------------------
    def _python_loss(self, individual: Any) -> float:
        """Loss from DEAP's own compiled function, row by row on Python floats."""
        from deap import gp

        if self._rows is None:
            self._rows = [tuple(r) for r in self.X.tolist()]
            self._ys = self.y.tolist()
        func = gp.compile(individual, self.pset)
        try:
            pred = [func(*r) for r in self._rows]
            if self.metric == "mse" and self.weights is None:
                # DEAP's example, term for term: fsum of squared errors over the row count
                loss = math.fsum((p - t) ** 2 for p, t in zip(pred, self._ys)) / len(pred)
            else:
                # the session's own metric definitions, on these predictions
                P = np.asarray(pred, dtype=np.float64).reshape(1, -1)
                return float(self.session.score_predictions(P)[0])
        except (ArithmeticError, ValueError, TypeError):
            return self._nonfinite_loss()
        if not math.isfinite(loss):
            return self._nonfinite_loss()
        return loss

    def _nonfinite_loss(self) -> float:
        p = self.nonfinite
        if isinstance(p, str):
            if p == "nan":
                return math.nan
            return -math.inf if self.session.greater_is_better else math.inf
        return float(p)


def _is_evaluator(func: Any, ev: Evaluator) -> bool:
    """True for `ev` itself, its bound `__call__`, or partials of it without extra arguments
    (DEAP's toolbox.register wraps every function in a functools.partial)."""
    while isinstance(func, functools.partial):
        if func.args or func.keywords:
            return False
        func = func.func
    if getattr(func, "__self__", None) is ev and getattr(func, "__name__", "") == "__call__":
        return True
    return func is ev
