"""The ops table: every operator declared once; readers, printers, the reference evaluator,
the e-graph language, the LLVM lowering and the derivatives all read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from symcore.errors import UnknownOperatorError

# Dialects symcore reads and writes.  Each op lists its spellings per dialect; the first
# spelling of a dialect is the one its printer uses.
DIALECTS = ("symcore", "gplearn", "operon", "eggp", "eggp_numpy", "pysr", "sympy",
            "dysymnet", "e2e", "e2e_prefix", "dso", "nesymres")

GPLEARN_THRESHOLD = 0.001  # gplearn's protected div/log/inv switch at |x| <= 0.001
DYSYMNET_LOG_EPS = 1e-6    # DySymNet: log(|x| + 1e-6)


@dataclass(frozen=True)
class Op:
    """One operator: semantics, printing, derivative and cost."""

    name: str
    arity: int
    np: Callable[..., Any]                 # NumPy reference implementation (IEEE semantics)
    c: str                                 # C expression template over {0}, {1}
    latex: str                             # LaTeX template over {0}, {1}
    sympy: Callable[..., Any]              # builds the SymPy equivalent from SymPy args
    deriv: Callable[..., tuple]            # (args..., out) -> d out / d arg_i as IR expressions
    domain: str = "all reals"
    cost: float = 1.0
    infix: str | None = None               # infix symbol in symcore's own text
    prec: int = 100                        # binding power for infix printing (higher binds tighter)
    right_assoc: bool = False
    protected: bool = False                # a tool's protected variant with its own semantics
    spell: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # Algebraic facts (read by the canonicalising pass and the e-graph rules; set in _FACTS):
    commutative: bool = False              # f(a, b) = f(b, a) for every a, b (values, not bits)
    associative: bool = False              # f(f(a, b), c) = f(a, f(b, c)) up to rounding
    # per operand: "odd" when f(.., -a, ..) = -f(.., a, ..), "even" when it equals f(.., a, ..)
    # (up to the sign of a zero), None otherwise
    parity: tuple[str | None, ...] = ()


def _ir() -> Any:
    from symcore import ir  # ops is imported by ir; derivatives need the constructors lazily
    return ir


def _k(v: float) -> Any:
    return _ir().const(float(v))


def _n(op: str, *args: Any) -> Any:
    return _ir().call(op, *args)


def _sp() -> Any:
    import sympy
    return sympy


def _thr() -> Any:
    return _sp().Float(GPLEARN_THRESHOLD)


# ---------------------------------------------------------------------------------------------
# NumPy reference implementations.  Protected variants follow each tool's own code exactly,
# including what they do with NaN (gplearn's np.where on |x| > 0.001 sends NaN to the fallback).

def _pdiv(a: Any, b: Any) -> Any:
    return np.where(np.abs(b) > GPLEARN_THRESHOLD, np.divide(a, b), 1.0)


def _plog(a: Any) -> Any:
    return np.where(np.abs(a) > GPLEARN_THRESHOLD, np.log(np.abs(a)), 0.0)


def _pinv(a: Any) -> Any:
    return np.where(np.abs(a) > GPLEARN_THRESHOLD, np.divide(1.0, a), 0.0)


def _powi(a: Any, k: Any) -> Any:
    return np.power(a, k)


def _aq(a: Any, b: Any) -> Any:
    return a / np.sqrt(1.0 + b * b)


_T: dict[str, dict[str, tuple[str, ...]]] = {}  # filled by _op


def _op(name: str, arity: int, np_fn: Callable[..., Any], c: str, latex: str,
        sympy_fn: Callable[..., Any], deriv: Callable[..., tuple], **kw: Any) -> Op:
    return Op(name=name, arity=arity, np=np_fn, c=c, latex=latex, sympy=sympy_fn, deriv=deriv, **kw)


def _sp_pw(cond_arg: Any, value: Any, fallback: Any) -> Any:
    sp = _sp()
    return sp.Piecewise((value, sp.Abs(cond_arg) > _thr()), (fallback, True))


_ALL_WORDS = ("symcore", "sympy", "dysymnet", "nesymres", "e2e", "e2e_prefix", "dso", "pysr",
              "operon", "gplearn", "eggp", "eggp_numpy")


def _words(*names: str, dialects: tuple[str, ...] = _ALL_WORDS) -> dict[str, tuple[str, ...]]:
    return {d: names for d in dialects}


def _merge(*dicts: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = tuple(dict.fromkeys(out.get(k, ()) + v))
    return out


_FN = ("symcore", "sympy", "dysymnet", "nesymres", "e2e", "e2e_prefix", "dso", "pysr", "operon",
       "eggp_numpy")


def _unary(name: str, np_fn: Callable[..., Any], cfn: str, latex: str, sympy_name: str,
           deriv: Callable[..., tuple], extra: dict[str, tuple[str, ...]] | None = None,
           **kw: Any) -> Op:
    spell = _merge(_words(name, dialects=_FN), {"eggp": (name.capitalize(), name)},
                   {"gplearn": (name,)}, extra or {})
    return _op(name, 1, np_fn, f"{cfn}({{0}})", latex,
               lambda a, _s=sympy_name: getattr(_sp(), _s)(a), deriv, spell=spell, **kw)


OPS: dict[str, Op] = {}


def _register(*ops: Op) -> None:
    for o in ops:
        OPS[o.name] = o


_register(
    # -- arithmetic ------------------------------------------------------------------------
    _op("add", 2, np.add, "({0} + {1})", "{0} + {1}", lambda a, b: a + b,
        lambda a, b, y: (_k(1), _k(1)), infix="+", prec=10,
        spell=_merge(_words("add"), _words("+", dialects=("symcore", "sympy", "dysymnet", "nesymres",
                                                           "pysr", "operon", "eggp", "eggp_numpy",
                                                           "e2e")))),
    _op("sub", 2, np.subtract, "({0} - {1})", "{0} - {1}", lambda a, b: a - b,
        lambda a, b, y: (_k(1), _k(-1)), infix="-", prec=10,
        spell=_merge(_words("sub"), _words("-", dialects=("symcore", "sympy", "dysymnet", "nesymres",
                                                           "pysr", "operon", "eggp", "eggp_numpy",
                                                           "e2e")))),
    _op("mul", 2, np.multiply, "({0} * {1})", "{0} {1}", lambda a, b: a * b,
        lambda a, b, y: (b, a), infix="*", prec=20,
        spell=_merge(_words("mul"), _words("*", dialects=("symcore", "sympy", "dysymnet", "nesymres",
                                                           "pysr", "operon", "eggp", "eggp_numpy",
                                                           "e2e")))),
    _op("div", 2, np.divide, "({0} / {1})", r"\frac{{{0}}}{{{1}}}", lambda a, b: a / b,
        lambda a, b, y: (_n("inv", b), _n("neg", _n("div", y, b))), infix="/", prec=20,
        domain="b != 0",
        spell=_merge(_words("div", dialects=tuple(d for d in _ALL_WORDS if d != "gplearn")),
                     _words("/", dialects=("symcore", "sympy", "dysymnet", "nesymres", "pysr",
                                           "operon", "eggp", "eggp_numpy", "e2e")))),
    _op("neg", 1, np.negative, "(-{0})", "-{0}", lambda a: -a,
        lambda a, y: (_k(-1),), infix="-", prec=30,
        spell=_words("neg", dialects=_ALL_WORDS)),
    _op("pow", 2, np.power, "pow({0}, {1})", "{{{0}}}^{{{1}}}", lambda a, b: a ** b,
        lambda a, b, y: (_n("mul", b, _n("pow", a, _n("sub", b, _k(1)))),
                         _n("mul", y, _n("log", a))),
        infix="^", prec=40, right_assoc=True, domain="a > 0, or integer b", cost=2.0,
        spell=_merge(_words("pow"), _words("^", dialects=("symcore", "operon", "eggp", "pysr")),
                     _words("**", dialects=("sympy", "dysymnet", "nesymres", "eggp_numpy", "e2e")))),
    _op("powi", 2, _powi, "pow({0}, {1})", "{{{0}}}^{{{1}}}", lambda a, k: a ** k,
        lambda a, k, y: (_n("mul", k, _n("powi", a, _k(float(k.value) - 1.0))), _k(0)),
        domain="integer exponent (second operand is an integer constant)", cost=1.5,
        spell=_words("powi", dialects=("symcore",))),
    # -- powers and roots -----------------------------------------------------------------
    _unary("square", np.square, "", "{{{0}}}^{{2}}", "", lambda a, y: (_n("mul", _k(2), a),),
           extra={"pysr": ("square",), "dso": ("n2", "square"), "e2e": ("pow2", "square"),
                  "e2e_prefix": ("pow2", "square"), "eggp": ("Square", "square"),
                  "operon": ("square",)}),
    _unary("cube", lambda a: a * a * a, "", "{{{0}}}^{{3}}", "",
           lambda a, y: (_n("mul", _k(3), _n("square", a)),),
           extra={"dso": ("n3", "cube"), "e2e": ("pow3", "cube"), "e2e_prefix": ("pow3", "cube"),
                  "eggp": ("Cube", "cube")}),
    _unary("inv", np.reciprocal, "", r"\frac{{1}}{{{0}}}", "",
           lambda a, y: (_n("neg", _n("square", y)),), domain="x != 0",
           extra={"eggp": ("Recip", "inv"), "pysr": ("inv",),
                  "eggp_numpy": ("reciprocal", "inv")}),
    _unary("abs", np.abs, "fabs", r"\left|{0}\right|", "Abs",
           lambda a, y: (_n("sign", a),), extra={"eggp": ("Abs", "abs"), "sympy": ("Abs", "abs"),
                                                "dysymnet": ("Abs", "abs"),
                                                "nesymres": ("Abs", "abs")}),
    _unary("sign", np.sign, "", r"\operatorname{{sign}}\left({0}\right)", "sign",
           lambda a, y: (_k(0),), extra={"sympy": ("sign",)}),
    _unary("sqrt", np.sqrt, "sqrt", r"\sqrt{{{0}}}", "sqrt",
           lambda a, y: (_n("div", _k(0.5), y),), domain="x >= 0", cost=1.5),
    _unary("cbrt", np.cbrt, "cbrt", r"\sqrt[3]{{{0}}}", "cbrt",
           lambda a, y: (_n("div", _k(1 / 3), _n("square", y)),), cost=2.0),
    _unary("exp", np.exp, "exp", r"e^{{{0}}}", "exp", lambda a, y: (y,), cost=2.0),
    _unary("log", np.log, "log", r"\log{{\left({0}\right)}}", "log",
           lambda a, y: (_n("inv", a),), domain="x > 0", cost=2.0,
           extra={"e2e": ("log", "ln"), "sympy": ("log", "ln")}),
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
           domain="|x| <= 1", cost=2.0, extra={"sympy": ("asin", "arcsin"), "e2e": ("arcsin", "asin"),
                                               "e2e_prefix": ("arcsin", "asin"),
                                               "eggp": ("ASin", "Asin", "asin"),
                                               "eggp_numpy": ("asin", "arcsin")}),
    _unary("acos", np.arccos, "acos", r"\arccos{{\left({0}\right)}}", "acos",
           lambda a, y: (_n("neg", _n("inv", _n("sqrt", _n("sub", _k(1), _n("square", a))))),),
           domain="|x| <= 1", cost=2.0, extra={"sympy": ("acos", "arccos"), "e2e": ("arccos", "acos"),
                                               "e2e_prefix": ("arccos", "acos"),
                                               "eggp": ("ACos", "Acos", "acos"),
                                               "eggp_numpy": ("acos", "arccos")}),
    _unary("atan", np.arctan, "atan", r"\arctan{{\left({0}\right)}}", "atan",
           lambda a, y: (_n("inv", _n("add", _k(1), _n("square", a))),), cost=2.0,
           extra={"sympy": ("atan", "arctan"), "e2e": ("arctan", "atan"), "e2e_prefix": ("arctan", "atan"),
                  "eggp": ("ATan", "Atan", "atan"), "eggp_numpy": ("atan", "arctan")}),
    # -- Operon's analytic quotient ---------------------------------------------------------
    _op("aq", 2, _aq, "({0} / sqrt(1.0 + {1} * {1}))", r"\frac{{{0}}}{{\sqrt{{1 + {1}^{{2}}}}}}",
        lambda a, b: a / _sp().sqrt(1 + b ** 2),
        lambda a, b, y: (_n("aq", _k(1), b),
                         _n("neg", _n("div", _n("mul", y, b), _n("add", _k(1), _n("square", b))))),
        cost=2.0, spell=_words("aq", dialects=("symcore", "operon", "eggp", "pysr", "sympy"))),
    # -- protected variants ----------------------------------------------------------------
    _op("pdiv", 2, _pdiv, "(fabs({1}) > 0.001 ? {0} / {1} : 1.0)",
        r"\operatorname{{pdiv}}\left({0}, {1}\right)",
        lambda a, b: _sp_pw(b, a / b, _sp().Integer(1)),
        lambda a, b, y: (_n("pinv", b), _n("neg", _n("mul", a, _n("square", _n("pinv", b))))),
        protected=True, domain="gplearn: a/b if |b| > 0.001 else 1",
        spell={"symcore": ("pdiv",), "gplearn": ("div",), "sympy": ("pdiv",)}),
    _op("plog", 1, _plog, "(fabs({0}) > 0.001 ? log(fabs({0})) : 0.0)",
        r"\operatorname{{plog}}\left({0}\right)",
        lambda a: _sp_pw(a, _sp().log(_sp().Abs(a)), _sp().Integer(0)),
        lambda a, y: (_n("pinv", a),), protected=True, cost=2.0,
        domain="gplearn: log|x| if |x| > 0.001 else 0",
        spell={"symcore": ("plog",), "gplearn": ("log",), "sympy": ("plog",)}),
    _op("pinv", 1, _pinv, "(fabs({0}) > 0.001 ? 1.0 / {0} : 0.0)",
        r"\operatorname{{pinv}}\left({0}\right)",
        lambda a: _sp_pw(a, 1 / a, _sp().Integer(0)),
        lambda a, y: (_n("neg", _n("square", _n("pinv", a))),), protected=True,
        domain="gplearn: 1/x if |x| > 0.001 else 0",
        spell={"symcore": ("pinv",), "gplearn": ("inv",), "sympy": ("pinv",)}),
    _op("sqrt_abs", 1, lambda a: np.sqrt(np.abs(a)), "sqrt(fabs({0}))", r"\sqrt{{\left|{0}\right|}}",
        lambda a: _sp().sqrt(_sp().Abs(a)),
        lambda a, y: (_n("div", _n("mul", _k(0.5), _n("sign", a)), y),), protected=True, cost=1.5,
        domain="sqrt|x| (gplearn sqrt, DySymNet sqrt, PySR sqrt_abs)",
        spell={"symcore": ("sqrt_abs",), "gplearn": ("sqrt",), "pysr": ("sqrt_abs",),
               "dysymnet": ("sqrt",), "sympy": ("sqrt_abs",)}),
    _op("log_abs", 1, lambda a: np.log(np.abs(a)), "log(fabs({0}))", r"\log{{\left|{0}\right|}}",
        lambda a: _sp().log(_sp().Abs(a)), lambda a, y: (_n("inv", a),), protected=True, cost=2.0,
        domain="log|x| (PySR log_abs)",
        spell={"symcore": ("log_abs",), "pysr": ("log_abs",), "sympy": ("log_abs",)}),
    _op("dlog", 1, lambda a: np.log(np.abs(a) + DYSYMNET_LOG_EPS), "log(fabs({0}) + 1e-06)",
        r"\log{{\left(\left|{0}\right| + 10^{{-6}}\right)}}",
        lambda a: _sp().log(_sp().Abs(a) + _sp().Float(DYSYMNET_LOG_EPS)),
        lambda a, y: (_n("div", _n("sign", a), _n("add", _n("abs", a), _k(DYSYMNET_LOG_EPS))),),
        protected=True, cost=2.0, domain="DySymNet: log(|x| + 1e-6)",
        spell={"symcore": ("dlog",), "dysymnet": ("log",), "sympy": ("dlog",)}),
    _op("pow_abs", 2, lambda a, b: np.power(np.abs(a), b), "pow(fabs({0}), {1})",
        r"\left|{0}\right|^{{{1}}}", lambda a, b: _sp().Abs(a) ** b,
        lambda a, b, y: (_n("mul", _n("mul", b, _n("sign", a)),
                                _n("pow_abs", a, _n("sub", b, _k(1)))),
                         _n("mul", y, _n("log_abs", a))),
        protected=True, cost=2.0, domain="|a|^b (PySR pow_abs)",
        spell={"symcore": ("pow_abs",), "pysr": ("pow_abs",), "sympy": ("pow_abs",)}),
    _op("max", 2, np.maximum, "(({0}) != ({0}) || ({1}) != ({1}) ? ({0}) + ({1}) : fmax({0}, {1}))", r"\max\left({0}, {1}\right)",
        lambda a, b: _sp().Max(a, b),
        lambda a, b, y: (_n("mul", _k(0.5), _n("add", _k(1), _n("sign", _n("sub", a, b)))),
                         _n("mul", _k(0.5), _n("sub", _k(1), _n("sign", _n("sub", a, b))))),
        spell={"symcore": ("max",), "gplearn": ("max",),
               "sympy": ("Max", "max"),
               "pysr": ("max",)}),
    _op("min", 2, np.minimum, "(({0}) != ({0}) || ({1}) != ({1}) ? ({0}) + ({1}) : fmin({0}, {1}))", r"\min\left({0}, {1}\right)",
        lambda a, b: _sp().Min(a, b),
        lambda a, b, y: (_n("mul", _k(0.5), _n("sub", _k(1), _n("sign", _n("sub", a, b)))),
                         _n("mul", _k(0.5), _n("add", _k(1), _n("sign", _n("sub", a, b))))),
        spell={"symcore": ("min",), "gplearn": ("min",),
               "sympy": ("Min", "min"),
               "pysr": ("min",)}),
)

# Operon's fmax/fmin ignore a NaN operand (C99 fmax, np.fmax); gplearn/PySR max is np.maximum.
# Derivatives are those of max/min where both operands are numbers.
_register(
    _op("fmax", 2, np.fmax, "fmax({0}, {1})", r"\max\left({0}, {1}\right)",
        lambda a, b: _sp().Max(a, b), OPS["max"].deriv,
        domain="max ignoring a NaN operand (Operon, C fmax)",
        spell={"symcore": ("fmax",), "operon": ("max", "fmax"), "sympy": ("fmax",)}),
    _op("fmin", 2, np.fmin, "fmin({0}, {1})", r"\min\left({0}, {1}\right)",
        lambda a, b: _sp().Min(a, b), OPS["min"].deriv,
        domain="min ignoring a NaN operand (Operon, C fmin)",
        spell={"symcore": ("fmin",), "operon": ("min", "fmin"), "sympy": ("fmin",)}),
    # inverse hyperbolics (eggp emits them by default)
    _unary("asinh", np.arcsinh, "asinh", r"\operatorname{{asinh}}{{\left({0}\right)}}", "asinh",
           lambda a, y: (_n("inv", _n("sqrt", _n("add", _n("square", a), _k(1)))),), cost=2.0,
           extra={"eggp": ("ASinh", "Asinh", "asinh"), "eggp_numpy": ("asinh", "arcsinh"),
                  "e2e": ("arcsinh", "asinh"), "e2e_prefix": ("arcsinh", "asinh")}),
    _unary("acosh", np.arccosh, "acosh", r"\operatorname{{acosh}}{{\left({0}\right)}}", "acosh",
           lambda a, y: (_n("inv", _n("sqrt", _n("sub", _n("square", a), _k(1)))),),
           domain="x >= 1", cost=2.0,
           extra={"eggp": ("ACosh", "Acosh", "acosh"), "eggp_numpy": ("acosh", "arccosh"),
                  "e2e": ("arccosh", "acosh"), "e2e_prefix": ("arccosh", "acosh")}),
    _unary("atanh", np.arctanh, "atanh", r"\operatorname{{atanh}}{{\left({0}\right)}}", "atanh",
           lambda a, y: (_n("inv", _n("sub", _k(1), _n("square", a))),), domain="|x| < 1",
           cost=2.0,
           extra={"eggp": ("ATanh", "Atanh", "atanh"), "eggp_numpy": ("atanh", "arctanh"),
                  "e2e": ("arctanh", "atanh"), "e2e_prefix": ("arctanh", "atanh")}),
)

# C templates of the unary helpers built with an empty function name.
_C_FIX = {"square": "({0} * {0})", "cube": "({0} * {0} * {0})", "inv": "(1.0 / {0})",
          "sign": "({0} != {0} ? {0} : (double)(({0} > 0.0) - ({0} < 0.0)))"}
for _name, _tmpl in _C_FIX.items():
    OPS[_name] = OPS[_name].__class__(**{**OPS[_name].__dict__, "c": _tmpl})
OPS["square"] = Op(**{**OPS["square"].__dict__, "sympy": lambda a: a ** 2})
OPS["cube"] = Op(**{**OPS["cube"].__dict__, "sympy": lambda a: a ** 3})
OPS["inv"] = Op(**{**OPS["inv"].__dict__, "sympy": lambda a: 1 / a})

# A protected op owns its spellings in its dialect: gplearn's `log` is plog, never plain log.
for _p in [o for o in OPS.values() if o.protected]:
    for _d, _names in _p.spell.items():
        if _d in ("symcore",):
            continue
        for _o in list(OPS.values()):
            if not _o.protected and _d in _o.spell:
                kept = tuple(n for n in _o.spell[_d] if n not in _names)
                if kept != _o.spell[_d]:
                    sp = dict(_o.spell)
                    if kept:
                        sp[_d] = kept
                    else:
                        del sp[_d]
                    OPS[_o.name] = Op(**{**_o.__dict__, "spell": sp})

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

LEAVES = ("var", "const", "param")


def get(name: str) -> Op:
    """The op called `name`, or UnknownOperatorError."""
    try:
        return OPS[name]
    except KeyError:
        raise UnknownOperatorError(f"unknown operator {name!r}; known: {', '.join(OPS)}") from None


def spellings(dialect: str) -> dict[str, str]:
    """Map every spelling the dialect uses to the op name (readers use this)."""
    out: dict[str, str] = {}
    for op in OPS.values():
        for s in op.spell.get(dialect, ()):
            out.setdefault(s, op.name)
    return out


def printed_name(op: str, dialect: str) -> str | None:
    """The spelling a dialect's printer uses for `op`, or None if the dialect cannot express it."""
    names = OPS[op].spell.get(dialect)
    return names[0] if names else None
