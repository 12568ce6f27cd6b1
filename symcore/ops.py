"""The ops table: every operator declared once; readers, printers, the reference evaluator,
the e-graph language, the LLVM lowering and the derivatives all read it.
"""

from __future__ import annotations

import contextlib
import hashlib
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from symcore.errors import OpFieldError, OpRegistrationError, UnknownOperatorError

from symcore.lowering_recipes import CYCLES, LOWER, NP_SRC
from symcore.numerics import (  # noqa: F401  (re-exported: `from symcore.ops import X`)
    DYSYMNET_LOG_EPS, GPLEARN_THRESHOLD, POW_SOURCE, POWI_MAX_MULTIPLY, _aq, _c_pow, _pdiv,
    _pinv, _plog, _pow, _pow_abs, _pow_source, _powi, _powi_pos, _powi_small, _small_int,
    _POWI_BITS,
)


@dataclass(frozen=True)
class OpRule:
    """A rewrite that concerns one op, as plain data in the rules' s-expression pattern language
    (symcore.rules.rulesets): `lhs -> rhs` in `topic`, guarded by `when` = ((relation, var), ...)."""

    topic: str
    name: str
    lhs: str
    rhs: str
    when: tuple[tuple[str, str], ...] = ()
    grows: bool = False
    note: str = ""


#: a derivative template: "{i}" is operand i, "{y}" the op's own value, a number a constant,
#: (op, *templates) a call; a head "@op" folds its (constant) operands numerically when the
#: template is instantiated (powi's exponent k - 1 must stay a literal)
Template = Any


@dataclass(frozen=True)
class Op:
    """One operator: everything every layer needs (semantics, printing, lowering, derivative,
    e-graph facts and rules, cost).  A field left as None is an error only where it is needed."""

    name: str
    arity: int
    np: Callable[..., Any] | None = None   # NumPy reference implementation (IEEE semantics)
    c: str | None = None                   # C expression template over {0}, {1}
    latex: str | None = None               # LaTeX template over {0}, {1}
    sympy: Callable[..., Any] | None = None  # builds the SymPy equivalent from SymPy args
    # d out / d arg_i: one template per operand (see `Template`; symcore.register_op also takes
    # symcore text over {0}, {1}, {y}), or a callable (args..., out) -> IR expressions
    deriv: tuple[Template, ...] | Callable[..., tuple] | None = None
    domain: str = "all reals"
    cost: float = 1.0
    # estimated CPU cycles of one evaluation (the "cycles" cost model of simplify/dedupe);
    # None: a libm-call estimate (symcore.rules.costs.DEFAULT_CYCLES)
    cycles: float | None = None
    infix: str | None = None               # infix symbol in symcore's own text
    prec: int = 100                        # binding power for infix printing (higher binds tighter)
    right_assoc: bool = False
    protected: bool = False                # a tool's protected variant with its own semantics
    aliases: tuple[str, ...] = ()          # other names (ln, arcsin): read by dialects with
                                           # aliases=True (symcore.io.dialects)
    # Algebraic facts (read by the canonicalising pass and the e-graph rules; set in _FACTS):
    commutative: bool = False              # f(a, b) = f(b, a) for every a, b (values, not bits)
    associative: bool = False              # f(f(a, b), c) = f(a, f(b, c)) up to rounding
    # per operand: "odd" when f(.., -a, ..) = -f(.., a, ..), "even" when it equals f(.., a, ..)
    # (up to the sign of a zero), None otherwise
    parity: tuple[str | None, ...] = ()
    # -- lowering and e-graph data (set for the built-ins in _LAYERS) -------------------------
    # LLVM lowering over codegen's vocabulary L (constants, arithmetic, compares, select, fabs,
    # sqrt, libm, powi): `lambda L, a, b: L.fadd(a, b)`.  None: the libm function named by a
    # plain-call `c` template (`erf({0})`), else `expand`.
    lower: Callable[..., Any] | None = None
    expand: Template | None = None         # the op as a template over other ops (lowering)
    np_src: str | None = None              # NumPy source template over {0}, {1} (py export)
    # e-graph analysis: (relation derived for the node, relations every operand must have),
    # e.g. ("finite", ("finite",)); relations of symcore.rules.analysis
    facts: tuple[tuple[str, tuple[str, ...]], ...] = ()
    rules: tuple[OpRule, ...] = ()         # rewrites that concern this op alone

    @property
    def spell(self) -> Mapping[str, tuple[str, ...]]:
        """Deprecated (one release): {dialect: spellings} from the Dialect records."""
        view = _dialect_view
        return view.spell(self.name) if view is not None else MappingProxyType({})

    def need(self, fld: str, purpose: str) -> Any:
        """The value of field `fld`, or OpFieldError naming the op and what needed it."""
        v = getattr(self, fld)
        if v is None:
            raise OpFieldError(f"operator {self.name!r} has no `{fld}` (needed by {purpose}); "
                               f"register it with one")
        return v


_PH = ("{0}", "{1}", "{2}", "{3}")


def _k(v: float) -> Template:
    return float(v)


def _n(op: str, *args: Template) -> Template:
    return (op, *args)


def _sp() -> Any:
    import sympy
    return sympy


def _thr() -> Any:
    return _sp().Float(GPLEARN_THRESHOLD)


def _op(name: str, arity: int, np_fn: Callable[..., Any], c: str, latex: str,
        sympy_fn: Callable[..., Any], deriv: Any, **kw: Any) -> Op:
    if callable(deriv):  # written with _n/_k over placeholders: evaluates to the template
        deriv = tuple(deriv(*_PH[:arity], "{y}"))
    return Op(name=name, arity=arity, np=np_fn, c=c, latex=latex, sympy=sympy_fn, deriv=deriv, **kw)


def _sp_pw(cond_arg: Any, value: Any, fallback: Any) -> Any:
    sp = _sp()
    return sp.Piecewise((value, sp.Abs(cond_arg) > _thr()), (fallback, True))


def _unary(name: str, np_fn: Callable[..., Any], cfn: str, latex: str, sympy_name: str,
           deriv: Callable[..., tuple], **kw: Any) -> Op:
    return _op(name, 1, np_fn, f"{cfn}({{0}})", latex,
               lambda a, _s=sympy_name: getattr(_sp(), _s)(a), deriv, **kw)


OPS: dict[str, Op] = {}


def _register(*ops: Op) -> None:
    for o in ops:
        OPS[o.name] = o


_register(
    # -- arithmetic ------------------------------------------------------------------------
    _op("add", 2, np.add, "({0} + {1})", "{0} + {1}", lambda a, b: a + b,
        lambda a, b, y: (_k(1), _k(1)), infix="+", prec=10),
    _op("sub", 2, np.subtract, "({0} - {1})", "{0} - {1}", lambda a, b: a - b,
        lambda a, b, y: (_k(1), _k(-1)), infix="-", prec=10),
    _op("mul", 2, np.multiply, "({0} * {1})", "{0} {1}", lambda a, b: a * b,
        lambda a, b, y: (b, a), infix="*", prec=20),
    _op("div", 2, np.divide, "({0} / {1})", r"\frac{{{0}}}{{{1}}}", lambda a, b: a / b,
        lambda a, b, y: (_n("inv", b), _n("neg", _n("div", y, b))), infix="/", prec=20,
        domain="b != 0"),
    _op("neg", 1, np.negative, "(-{0})", "-{0}", lambda a: -a,
        lambda a, y: (_k(-1),), infix="-", prec=30),
    _op("pow", 2, _pow, "pow({0}, {1})", "{{{0}}}^{{{1}}}", lambda a, b: a ** b,
        lambda a, b, y: (_n("mul", b, _n("pow", a, _n("sub", b, _k(1)))),
                         _n("mul", y, _n("log", a))),
        infix="^", prec=40, right_assoc=True, domain="a > 0, or integer b", cost=2.0),
    _op("powi", 2, _powi, "pow({0}, {1})", "{{{0}}}^{{{1}}}", lambda a, k: a ** k,
        lambda a, k, y: (_n("mul", k, _n("powi", a, _n("@sub", k, _k(1)))), _k(0)),
        domain="integer exponent (second operand is an integer constant)", cost=1.5),
    # -- powers and roots -----------------------------------------------------------------
    _unary("square", np.square, "", "{{{0}}}^{{2}}", "", lambda a, y: (_n("mul", _k(2), a),)),
    _unary("cube", lambda a: a * a * a, "", "{{{0}}}^{{3}}", "",
           lambda a, y: (_n("mul", _k(3), _n("square", a)),)),
    _unary("inv", np.reciprocal, "", r"\frac{{1}}{{{0}}}", "",
           lambda a, y: (_n("neg", _n("square", y)),), domain="x != 0"),
    _unary("abs", np.abs, "fabs", r"\left|{0}\right|", "Abs",
           lambda a, y: (_n("sign", a),)),
    _unary("sign", np.sign, "", r"\operatorname{{sign}}\left({0}\right)", "sign",
           lambda a, y: (_k(0),)),
    _unary("sqrt", np.sqrt, "sqrt", r"\sqrt{{{0}}}", "sqrt",
           lambda a, y: (_n("div", _k(0.5), y),), domain="x >= 0", cost=1.5),
    _unary("cbrt", np.cbrt, "cbrt", r"\sqrt[3]{{{0}}}", "cbrt",
           lambda a, y: (_n("div", _k(1 / 3), _n("square", y)),), cost=2.0),
    _unary("exp", np.exp, "exp", r"e^{{{0}}}", "exp", lambda a, y: (y,), cost=2.0),
    _unary("log", np.log, "log", r"\log{{\left({0}\right)}}", "log",
           lambda a, y: (_n("inv", a),), domain="x > 0", cost=2.0),
    _unary("sin", np.sin, "sin", r"\sin{{\left({0}\right)}}", "sin",
           lambda a, y: (_n("cos", a),), cost=2.0),
    _unary("cos", np.cos, "cos", r"\cos{{\left({0}\right)}}", "cos",
           lambda a, y: (_n("neg", _n("sin", a)),), cost=2.0),
    _unary("tan", np.tan, "tan", r"\tan{{\left({0}\right)}}", "tan",
           lambda a, y: (_n("add", _k(1), _n("square", y)),), cost=2.0),
    _unary("tanh", np.tanh, "tanh", r"\tanh{{\left({0}\right)}}", "tanh",
           lambda a, y: (_n("sub", _k(1), _n("square", y)),), cost=2.0),
    _unary("sinh", np.sinh, "sinh", r"\sinh{{\left({0}\right)}}", "sinh",
           lambda a, y: (_n("cosh", a),), cost=2.0),
    _unary("cosh", np.cosh, "cosh", r"\cosh{{\left({0}\right)}}", "cosh",
           lambda a, y: (_n("sinh", a),), cost=2.0),
    _unary("asin", np.arcsin, "asin", r"\arcsin{{\left({0}\right)}}", "asin",
           lambda a, y: (_n("inv", _n("sqrt", _n("sub", _k(1), _n("square", a)))),),
           domain="|x| <= 1", cost=2.0),
    _unary("acos", np.arccos, "acos", r"\arccos{{\left({0}\right)}}", "acos",
           lambda a, y: (_n("neg", _n("inv", _n("sqrt", _n("sub", _k(1), _n("square", a))))),),
           domain="|x| <= 1", cost=2.0),
    _unary("atan", np.arctan, "atan", r"\arctan{{\left({0}\right)}}", "atan",
           lambda a, y: (_n("inv", _n("add", _k(1), _n("square", a))),), cost=2.0),
    # -- Operon's analytic quotient ---------------------------------------------------------
    _op("aq", 2, _aq, "({0} / sqrt(1.0 + {1} * {1}))", r"\frac{{{0}}}{{\sqrt{{1 + {1}^{{2}}}}}}",
        lambda a, b: a / _sp().sqrt(1 + b ** 2),
        lambda a, b, y: (_n("aq", _k(1), b),
                         _n("neg", _n("div", _n("mul", y, b), _n("add", _k(1), _n("square", b))))),
        cost=2.0),
    # -- protected variants ----------------------------------------------------------------
    _op("pdiv", 2, _pdiv, "(fabs({1}) > 0.001 ? {0} / {1} : 1.0)",
        r"\operatorname{{pdiv}}\left({0}, {1}\right)",
        lambda a, b: _sp_pw(b, a / b, _sp().Integer(1)),
        lambda a, b, y: (_n("pinv", b), _n("neg", _n("mul", a, _n("square", _n("pinv", b))))),
        protected=True, domain="gplearn: a/b if |b| > 0.001 else 1"),
    _op("plog", 1, _plog, "(fabs({0}) > 0.001 ? log(fabs({0})) : 0.0)",
        r"\operatorname{{plog}}\left({0}\right)",
        lambda a: _sp_pw(a, _sp().log(_sp().Abs(a)), _sp().Integer(0)),
        lambda a, y: (_n("pinv", a),), protected=True, cost=2.0,
        domain="gplearn: log|x| if |x| > 0.001 else 0"),
    _op("pinv", 1, _pinv, "(fabs({0}) > 0.001 ? 1.0 / {0} : 0.0)",
        r"\operatorname{{pinv}}\left({0}\right)",
        lambda a: _sp_pw(a, 1 / a, _sp().Integer(0)),
        lambda a, y: (_n("neg", _n("square", _n("pinv", a))),), protected=True,
        domain="gplearn: 1/x if |x| > 0.001 else 0"),
    _op("sqrt_abs", 1, lambda a: np.sqrt(np.abs(a)), "sqrt(fabs({0}))", r"\sqrt{{\left|{0}\right|}}",
        lambda a: _sp().sqrt(_sp().Abs(a)),
        lambda a, y: (_n("div", _n("mul", _k(0.5), _n("sign", a)), y),), protected=True, cost=1.5,
        domain="sqrt|x| (gplearn sqrt, DySymNet sqrt, PySR sqrt_abs)"),
    _op("log_abs", 1, lambda a: np.log(np.abs(a)), "log(fabs({0}))", r"\log{{\left|{0}\right|}}",
        lambda a: _sp().log(_sp().Abs(a)), lambda a, y: (_n("inv", a),), protected=True, cost=2.0,
        domain="log|x| (PySR log_abs)"),
    _op("dlog", 1, lambda a: np.log(np.abs(a) + DYSYMNET_LOG_EPS), "log(fabs({0}) + 1e-06)",
        r"\log{{\left(\left|{0}\right| + 10^{{-6}}\right)}}",
        lambda a: _sp().log(_sp().Abs(a) + _sp().Float(DYSYMNET_LOG_EPS)),
        lambda a, y: (_n("div", _n("sign", a), _n("add", _n("abs", a), _k(DYSYMNET_LOG_EPS))),),
        protected=True, cost=2.0, domain="DySymNet: log(|x| + 1e-6)"),
    _op("pow_abs", 2, _pow_abs, "pow(fabs({0}), {1})",
        r"\left|{0}\right|^{{{1}}}", lambda a, b: _sp().Abs(a) ** b,
        lambda a, b, y: (_n("mul", _n("mul", b, _n("sign", a)),
                                _n("pow_abs", a, _n("sub", b, _k(1)))),
                         _n("mul", y, _n("log_abs", a))),
        protected=True, cost=2.0, domain="|a|^b (PySR pow_abs)"),
    _op("max", 2, np.maximum, "(({0}) != ({0}) || ({1}) != ({1}) ? ({0}) + ({1}) : (({0}) > ({1}) ? ({0}) : ({1})))", r"\max\left({0}, {1}\right)",
        lambda a, b: _sp().Max(a, b),
        lambda a, b, y: (_n("mul", _k(0.5), _n("add", _k(1), _n("sign", _n("sub", a, b)))),
                         _n("mul", _k(0.5), _n("sub", _k(1), _n("sign", _n("sub", a, b)))))),
    _op("min", 2, np.minimum, "(({0}) != ({0}) || ({1}) != ({1}) ? ({0}) + ({1}) : (({0}) < ({1}) ? ({0}) : ({1})))", r"\min\left({0}, {1}\right)",
        lambda a, b: _sp().Min(a, b),
        lambda a, b, y: (_n("mul", _k(0.5), _n("sub", _k(1), _n("sign", _n("sub", a, b)))),
                         _n("mul", _k(0.5), _n("add", _k(1), _n("sign", _n("sub", a, b)))))),
)

def _fmax(a: Any, b: Any) -> Any:
    # np.fmax, with a tie (+0 vs -0) giving b as np.maximum does: NumPy's own fmax gives a in
    # its scalar loop and b in its SIMD one, so which zero came out depended on the array's
    # length and the position in it (glibc's fmax and x86 maxsd give b)
    return np.where((a > b) | (b != b), a, b)[()]


def _fmin(a: Any, b: Any) -> Any:
    return np.where((a < b) | (b != b), a, b)[()]


# Operon's fmax/fmin ignore a NaN operand (C99 fmax, np.fmax); gplearn/PySR max is np.maximum.
# Ties (+0 vs -0) give the second operand, as max/min do.  Derivatives are those of max/min
# where both operands are numbers.
_register(
    _op("fmax", 2, _fmax, "(({1}) != ({1}) || ({0}) > ({1}) ? ({0}) : ({1}))",
        r"\max\left({0}, {1}\right)", lambda a, b: _sp().Max(a, b), OPS["max"].deriv,
        domain="max ignoring a NaN operand (Operon, C fmax)"),
    _op("fmin", 2, _fmin, "(({1}) != ({1}) || ({0}) < ({1}) ? ({0}) : ({1}))",
        r"\min\left({0}, {1}\right)", lambda a, b: _sp().Min(a, b), OPS["min"].deriv,
        domain="min ignoring a NaN operand (Operon, C fmin)"),
    # inverse hyperbolics (eggp emits them by default)
    _unary("asinh", np.arcsinh, "asinh", r"\operatorname{{asinh}}{{\left({0}\right)}}", "asinh",
           lambda a, y: (_n("inv", _n("sqrt", _n("add", _n("square", a), _k(1)))),), cost=2.0),
    _unary("acosh", np.arccosh, "acosh", r"\operatorname{{acosh}}{{\left({0}\right)}}", "acosh",
           lambda a, y: (_n("inv", _n("sqrt", _n("sub", _n("square", a), _k(1)))),),
           domain="x >= 1", cost=2.0),
    _unary("atanh", np.arctanh, "atanh", r"\operatorname{{atanh}}{{\left({0}\right)}}", "atanh",
           lambda a, y: (_n("inv", _n("sub", _k(1), _n("square", a))),), domain="|x| < 1",
           cost=2.0),
)

# C templates of the unary helpers built with an empty function name.
_C_FIX = {"square": "({0} * {0})", "cube": "({0} * {0} * {0})", "inv": "(1.0 / {0})",
          "sign": "({0} != {0} ? {0} : (double)(({0} > 0.0) - ({0} < 0.0)))"}
for _name, _tmpl in _C_FIX.items():
    OPS[_name] = OPS[_name].__class__(**{**OPS[_name].__dict__, "c": _tmpl})
OPS["square"] = Op(**{**OPS["square"].__dict__, "sympy": lambda a: a ** 2})
OPS["cube"] = Op(**{**OPS["cube"].__dict__, "sympy": lambda a: a ** 3})
OPS["inv"] = Op(**{**OPS["inv"].__dict__, "sympy": lambda a: 1 / a})

# Other names of an op, read by every dialect that accepts aliases (symcore.io.dialects).
_ALIASES = {"log": ("ln",), "asin": ("arcsin",), "acos": ("arccos",), "atan": ("arctan",),
            "asinh": ("arcsinh",), "acosh": ("arccosh",), "atanh": ("arctanh",)}
for _name, _al in _ALIASES.items():
    OPS[_name] = replace(OPS[_name], aliases=_al)

# Algebraic facts of the built-in ops (user ops registered later default to none).
_FACTS: dict[str, dict[str, Any]] = {
    "add": dict(commutative=True, associative=True),
    "mul": dict(commutative=True, associative=True, parity=("odd", "odd")),
    "div": dict(parity=("odd", "odd")),
    "max": dict(commutative=True, associative=True),
    "min": dict(commutative=True, associative=True),
    "fmax": dict(commutative=True, associative=True),
    "fmin": dict(commutative=True, associative=True),
    "aq": dict(parity=("odd", "even")),
    "pow_abs": dict(parity=("even", None)),
    **{f: dict(parity=("odd",)) for f in ("neg", "inv", "cube", "sign", "sin", "tan", "tanh",
                                          "sinh", "asin", "atan", "cbrt", "asinh", "atanh",
                                          "pinv")},
    **{f: dict(parity=("even",)) for f in ("abs", "square", "cos", "cosh", "sqrt_abs",
                                           "log_abs", "plog", "dlog")},
}
for _name, _facts in _FACTS.items():
    OPS[_name] = Op(**{**OPS[_name].__dict__, **_facts})

_FIN = ("finite", ("finite",))
_R = OpRule
_LAYERS: dict[str, dict[str, Any]] = {
    "add": dict(facts=(_FIN, ("nonneg", ("nonneg",))),
                rules=(_R("commute", "comm-add", "(add a b)", "(add b a)", grows=True),
                       _R("assoc", "assoc-add", "(add (add a b) c)", "(add a (add b c))",
                          grows=True))),
    "sub": dict(facts=(_FIN,)),
    "mul": dict(facts=(_FIN, ("nonneg", ("nonneg", "finite"))),
                rules=(_R("commute", "comm-mul", "(mul a b)", "(mul b a)", grows=True),
                       _R("assoc", "assoc-mul", "(mul (mul a b) c)", "(mul a (mul b c))",
                          grows=True))),
    "neg": dict(facts=(_FIN, ("nonzero", ("nonzero",)))),
    "square": dict(facts=(_FIN, ("nonneg", ("finite",)))),
    "cube": dict(facts=(_FIN,)),
    "abs": dict(facts=(_FIN, ("nonneg", ("finite",)), ("nonzero", ("nonzero",)))),
    "sign": dict(facts=(_FIN,)),
    "sqrt": dict(facts=(("nonneg", ("nonneg",)),)),
    "exp": dict(facts=(("nonneg", ("finite",)),)),
    "cbrt": dict(facts=(_FIN,), rules=(_R("trig", "cbrt-odd", "(cbrt (neg a))",
                                          "(neg (cbrt a))"),)),
    "aq": dict(facts=(_FIN,),
               rules=(_R("protected", "aq-neg", "(aq a (neg b))", "(aq a b)"),
                      _R("protected", "aq-abs", "(aq a (abs b))", "(aq a b)"),
                      _R("protected", "aq-0", "(aq a 0)", "a"),
                      _R("protected", "aq-negl", "(aq (neg a) b)", "(neg (aq a b))"))),
    "pdiv": dict(rules=(_R("protected", "pdiv-1", "(pdiv a 1)", "a",
                           note="|1| > 0.001 so gplearn divides"),
                        _R("protected", "pdiv-self", "(pdiv a a)", "1", when=(("finite", "a"),),
                           note="a/a = 1 where |a| > 0.001, protected branch gives 1 too; "
                                "inf/inf is NaN"))),
    "plog": dict(facts=(_FIN,)),
    "pinv": dict(facts=(_FIN,),
                 rules=(_R("protected", "pinv-neg", "(pinv (neg a))", "(neg (pinv a))",
                           note="|x| <= 0.001 gives 0 on both sides (up to the sign of zero)"),)),
    "sqrt_abs": dict(facts=(_FIN, ("nonneg", ("finite",)))),
    "dlog": dict(facts=(_FIN,)),
    "pow_abs": dict(facts=(("nonneg", ("finite",)),),
                    rules=(_R("protected", "pow_abs-neg", "(pow_abs (neg a) b)", "(pow_abs a b)"),
                           _R("protected", "pow_abs-abs", "(pow_abs (abs a) b)",
                              "(pow_abs a b)"))),
    "max": dict(facts=(_FIN,),
                rules=(_R("protected", "max-self", "(max a a)", "a"),
                       _R("commute", "comm-max", "(max a b)", "(max b a)", grows=True),
                       _R("assoc", "assoc-max", "(max (max a b) c)", "(max a (max b c))",
                          grows=True))),
    "min": dict(facts=(_FIN,),
                rules=(_R("protected", "min-self", "(min a a)", "a"),
                       _R("commute", "comm-min", "(min a b)", "(min b a)", grows=True),
                       _R("assoc", "assoc-min", "(min (min a b) c)", "(min a (min b c))",
                          grows=True))),
    "cosh": dict(facts=(("nonneg", ("finite",)),)),
}
for _name, _src in NP_SRC.items():
    _LAYERS.setdefault(_name, {})["np_src"] = _src
for _name, _lower in LOWER.items():
    _LAYERS.setdefault(_name, {})["lower"] = _lower
# f(-a) = -f(a) / f(-a) = f(a), and f(a - b) = f(b - a) for an even f (a - b and b - a are exact
# negatives in IEEE): the trig topic's rules of one op each
for _f in ("sin", "tan", "tanh", "sinh", "asin", "atan"):
    _LAYERS.setdefault(_f, {})["rules"] = (_R("trig", f"{_f}-odd", f"({_f} (neg a))",
                                              f"(neg ({_f} a))"),)
for _f in ("sin", "cos", "tan", "tanh", "atan"):
    _LAYERS.setdefault(_f, {}).setdefault("facts", (_FIN,))
for _f in ("cos", "cosh"):
    _LAYERS[_f]["rules"] = (_R("trig", f"{_f}-even", f"({_f} (neg a))", f"({_f} a)"),)
for _f in ("abs", "square", "cos", "cosh", "sqrt_abs", "log_abs", "plog", "dlog"):
    _LAYERS[_f]["rules"] = _LAYERS[_f].get("rules", ()) + (
        _R("trig", f"{_f}-sub-swap", f"({_f} (sub a b))", f"({_f} (sub b a))"),)
# a protected op keeps its own semantics: only rules exact for THAT definition
for _f in ("sqrt_abs", "log_abs", "plog", "dlog"):
    _LAYERS[_f]["rules"] = _LAYERS[_f]["rules"] + (
        _R("protected", f"{_f}-neg", f"({_f} (neg a))", f"({_f} a)"),
        _R("protected", f"{_f}-abs", f"({_f} (abs a))", f"({_f} a)"))
for _name, _data in _LAYERS.items():
    OPS[_name] = replace(OPS[_name], **_data)

for _name, _cyc in CYCLES.items():
    if _name in OPS:
        OPS[_name] = replace(OPS[_name], cycles=float(_cyc))

LEAVES = ("var", "const", "param")


def get(name: str) -> Op:
    """The op called `name`, or UnknownOperatorError."""
    try:
        return OPS[name]
    except KeyError:
        raise UnknownOperatorError(f"unknown operator {name!r}; known: {', '.join(OPS)}") from None


# Deprecated views, kept for one release: dialect spellings live in the Dialect records of
# symcore.io.dialects, which installs this view when imported (the facade imports it); the core
# never imports io.  `Op.spell`, `ops.DIALECTS`, `ops.spellings`, `ops.printed_name` read it.
_dialect_view: Any = None


def __getattr__(name: str) -> Any:
    if name in ("DIALECTS", "spellings", "printed_name") and _dialect_view is not None:
        return getattr(_dialect_view, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------------
# The registry.  The built-in table is read-only; user ops are added with `register` (or
# symcore.register_op, which also reads text templates) and append to the table, so built-in
# opcodes (= positions) never change.  Caches that bake the op set in key on `generation()`
# (in process) or `registry_key()` (on disk: the user ops' content, never a counter).

_TABLE: dict[str, Op] = OPS
OPS: Mapping[str, Op] = MappingProxyType(_TABLE)  # type: ignore[no-redef]
BUILTIN: frozenset[str] = frozenset(_TABLE)
_GENERATION = 0


def generation() -> int:
    """A number bumped by every register/unregister (in-process cache keys)."""
    return _GENERATION


def _check_template(op: Op, t: Any) -> None:
    if isinstance(t, str):
        ok = t == "{y}" or (t.startswith("{") and t.endswith("}") and t[1:-1].isdigit()
                            and int(t[1:-1]) < op.arity)
        if not ok:
            raise OpRegistrationError(
                f"operator {op.name!r}: derivative template {t!r} is not a placeholder "
                f"{{0}}..{{{op.arity - 1}}}, {{y}} (symcore.register_op reads symcore text)")
    elif isinstance(t, tuple):
        if not t or not isinstance(t[0], str):
            raise OpRegistrationError(f"operator {op.name!r}: bad derivative template {t!r}")
        for a in t[1:]:
            _check_template(op, a)
    elif not isinstance(t, (int, float)) or isinstance(t, bool):
        raise OpRegistrationError(f"operator {op.name!r}: bad derivative template {t!r}")


def _validate(op: Op) -> None:
    if not isinstance(op, Op):
        raise OpRegistrationError(f"register takes an Op, got {type(op).__name__}")
    if not (isinstance(op.name, str) and op.name.isidentifier() and op.name.isascii()):
        raise OpRegistrationError(f"operator name must be an identifier, got {op.name!r}")
    if op.name in LEAVES:
        raise OpRegistrationError(f"{op.name!r} is a leaf kind, not an operator name")
    if op.arity not in (1, 2):
        raise OpRegistrationError(f"operator {op.name!r}: arity must be 1 or 2, got {op.arity!r}")
    if op.np is not None and not callable(op.np):
        raise OpRegistrationError(f"operator {op.name!r}: np must be callable")
    for fld in ("c", "latex", "np_src"):
        v = getattr(op, fld)
        if v is not None and not isinstance(v, str):
            raise OpRegistrationError(f"operator {op.name!r}: {fld} must be a template string")
    if isinstance(op.deriv, tuple):
        if len(op.deriv) != op.arity:
            raise OpRegistrationError(f"operator {op.name!r}: deriv needs {op.arity} "
                                      f"template(s), one per operand, got {len(op.deriv)}")
        for t in op.deriv:
            _check_template(op, t)
    elif op.deriv is not None and not callable(op.deriv):
        raise OpRegistrationError(f"operator {op.name!r}: deriv must be a tuple of templates "
                                  f"or a callable")
    for r in op.rules:
        if not isinstance(r, OpRule):
            raise OpRegistrationError(f"operator {op.name!r}: rules must be OpRule records")


def register(op: Op) -> Op:
    """Add a user op to the table (derivative templates already parsed; see
    symcore.register_op).  Registering the same op again is a no-op; a built-in name or a
    different op under a registered name is an OpRegistrationError."""
    global _GENERATION
    _validate(op)
    if op.name in BUILTIN:
        raise OpRegistrationError(f"{op.name!r} is a built-in operator; choose another name")
    old = _TABLE.get(op.name)
    if old is not None:
        if old == op:
            return old
        raise OpRegistrationError(f"operator {op.name!r} is already registered with different "
                                  f"fields; unregister it first")
    _TABLE[op.name] = op
    _GENERATION += 1
    return op


def unregister(name: str) -> None:
    """Remove a user op (built-ins cannot be removed; an unknown name is a no-op)."""
    global _GENERATION
    if name in BUILTIN:
        raise OpRegistrationError(f"{name!r} is a built-in operator and cannot be unregistered")
    if _TABLE.pop(name, None) is not None:
        _GENERATION += 1


@contextlib.contextmanager
def registered(op: Op) -> Iterator[Op]:
    """`register(op)` for the duration of a with-block (tests; scoped extensions)."""
    added = op.name not in _TABLE
    got = register(op)
    try:
        yield got
    finally:
        if added:
            unregister(op.name)


def registry_key() -> str:
    """Digest of the user ops' content (names, arities, C and lowering templates) for on-disk
    cache keys: the same registrations give the same key in every process.  Computed once per
    registry generation (it is part of every tier-1 kernel's cache key)."""
    hit = _REGISTRY_KEY.get(_GENERATION)
    if hit is not None:
        return hit
    user = [o for n, o in _TABLE.items() if n not in BUILTIN]
    key = "builtin"
    if user:
        h = hashlib.blake2b(digest_size=8)
        for o in user:
            low = getattr(o.lower, "__code__", None)
            h.update(f"{o.name}|{o.arity}|{o.c}|{o.expand!r}|"
                     f"{low.co_code.hex() if low is not None else None}\n".encode())
        key = h.hexdigest()
    _REGISTRY_KEY.clear()
    _REGISTRY_KEY[_GENERATION] = key
    return key


_REGISTRY_KEY: dict[int, str] = {}
