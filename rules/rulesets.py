"""Named rule data by topic.  Rules that grow the e-graph (commutativity, associativity,
canonical forms, factoring) are kept apart from rules that shrink it (identities, folding).

Patterns are s-expressions over ops-table names: `(mul a 1)`; lowercase words are pattern
variables, numbers are float64 constants, `P` is an anonymous fittable parameter (params mode).
Soundness contract of the default topics: on finite inputs, wherever the original is finite the
rewritten term has the same value up to rounding (including rounding at an intermediate
over/underflow); signed zeros may change sign.  Guards (`when`) name analysis relations
(symcore.rules.analysis) that must hold for a pattern variable.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Sequence

from symcore.errors import SymcoreError
from symcore.ir import Expr, call, const, var
from symcore.ops import OPS, generation

from symcore.rules.analysis import RELATIONS
from symcore.rules.language import CTOR, FREE_PARAM, const_text

_MAXF = "1.7976931348623157e308"


@dataclass(frozen=True)
class Rule:
    """One rewrite `lhs -> rhs`, guarded by `when` = ((relation, variable), ...)."""

    name: str
    lhs: str
    rhs: str
    when: tuple[tuple[str, str], ...] = ()
    grows: bool = False
    note: str = ""


@dataclass(frozen=True)
class RawRule:
    """A rule written in egglog directly (constant folding calls f64 primitives)."""

    name: str
    text: str
    grows: bool = False
    note: str = ""


# ---------------------------------------------------------------------------------------------
# s-expression patterns

def _parse(src: str) -> Any:
    toks = src.replace("(", " ( ").replace(")", " ) ").split()
    pos = 0

    def go() -> Any:
        nonlocal pos
        t = toks[pos]
        pos += 1
        if t == "(":
            out = []
            while toks[pos] != ")":
                out.append(go())
            pos += 1
            return out
        return t

    tree = go()
    if pos != len(toks):
        raise SymcoreError(f"bad rule pattern {src!r}")
    return tree


def _is_num(t: str) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def pattern_to_egg(src: str) -> str:
    def go(t: Any) -> str:
        if isinstance(t, list):
            if t[0] not in CTOR:
                raise SymcoreError(f"unknown op {t[0]!r} in rule pattern {src!r}")
            return f"({CTOR[t[0]]} {' '.join(go(a) for a in t[1:])})"
        if t == "P":
            return f"({FREE_PARAM})"
        if _is_num(t):
            return const_text(float(t))
        return t
    return go(_parse(src))


def pattern_to_ir(src: str, env: dict[str, Expr] | None = None) -> Expr:
    """Instantiate a pattern as IR: variables a, b, c, ... become x0, x1, x2 (in order of first
    occurrence) unless `env` binds them; new bindings are added to `env`."""
    env = {} if env is None else env

    def go(t: Any) -> Expr:
        if isinstance(t, list):
            return call(t[0], *(go(a) for a in t[1:]))
        if t == "P":
            from symcore.ir import param
            return param(0)
        if _is_num(t):
            return const(float(t))
        if t not in env:
            env[t] = var(len(env))
        return env[t]
    return go(_parse(src))


def _repeated_vars(src: str) -> list[str]:
    seen: dict[str, int] = {}

    def go(t: Any) -> None:
        if isinstance(t, list):
            for a in t[1:]:
                go(a)
        elif t != "P" and not _is_num(t):
            seen[t] = seen.get(t, 0) + 1
    go(_parse(src))
    return [v for v, n in seen.items() if n > 1]


def rule_to_egg(rule: Rule | RawRule, ruleset: str, params: bool = False) -> str:
    """egglog text of one rule.  With `params`, a variable that occurs twice in the pattern must
    bind a term without anonymous parameters: `P - P` is not 0 when each P is its own slot."""
    if isinstance(rule, RawRule):
        return rule.text.replace("{rs}", ruleset).replace("{MAX}", _MAXF)
    when = list(rule.when)
    if params:
        when += [("pure", v) for v in _repeated_vars(rule.lhs)]
    guards = " ".join(f"({rel} {v})" for rel, v in when)
    for rel, _ in when:
        if rel not in RELATIONS:
            raise SymcoreError(f"rule {rule.name}: unknown guard relation {rel!r}")
    when = f" :when ({guards})" if guards else ""
    return (f"(rewrite {pattern_to_egg(rule.lhs)} {pattern_to_egg(rule.rhs)}{when} "
            f":ruleset {ruleset})")


# ---------------------------------------------------------------------------------------------
# Topics

def _fold(op: str, prim: str, zero_ok: bool, extra: str = "") -> RawRule:
    # Folds with the f64 primitive (IEEE, identical to NumPy for + - * /).  A zero result of *
    # or / may be -0.0, which egglog's f64 cannot hold apart from 0.0: leave those unfolded.
    # Non-finite results are never folded into Num (Num is finite by construction).
    nz = "" if zero_ok else " (!= r 0.0)"
    return RawRule(f"fold-{op}",
                   f"(rule ((= e ({CTOR[op]} (Num a) (Num b))){extra} (= r ({prim} a b))"
                   f" (< r {{MAX}}) (> r (- 0.0 {{MAX}})){nz}) ((union e (Num r))) "
                   f":ruleset {{rs}})")


FOLD: list[Rule | RawRule] = [
    _fold("add", "+", True),
    _fold("sub", "-", True),
    _fold("mul", "*", False),
    _fold("div", "/", False, " (!= b 0.0)"),
    RawRule("neg-const-mul", f"(rule ((= e ({CTOR['mul']} (Num c) a)) (< c 0.0)) "
                             f"((union e ({CTOR['neg']} ({CTOR['mul']} (Num (- 0.0 c)) a)))) "
                             f":ruleset {{rs}})", note="(-c)*x = -(c*x) exactly"),
    RawRule("fold-neg", f"(rule ((= e ({CTOR['neg']} (Num a))) (!= a 0.0)) "
                        f"((union e (Num (- 0.0 a)))) :ruleset {{rs}})"),
]

IDENTITIES: list[Rule | RawRule] = [
    Rule("add-0", "(add a 0)", "a", note="x + 0 = x (the sign of a zero x may flip)"),
    Rule("sub-0", "(sub a 0)", "a"),
    Rule("0-sub", "(sub 0 a)", "(neg a)"),
    Rule("mul-1", "(mul a 1)", "a"),
    Rule("mul-m1", "(mul a -1)", "(neg a)"),
    Rule("div-1", "(div a 1)", "a"),
    Rule("div-m1", "(div a -1)", "(neg a)"),
    Rule("neg-neg", "(neg (neg a))", "a"),
    Rule("sub-neg", "(sub a (neg b))", "(add a b)"),
    Rule("add-neg", "(add a (neg b))", "(sub a b)"),
    Rule("neg-mul", "(mul (neg a) b)", "(neg (mul a b))"),
    Rule("neg-div-l", "(div (neg a) b)", "(neg (div a b))"),
    Rule("neg-div-r", "(div a (neg b))", "(neg (div a b))"),
    Rule("neg-sub", "(neg (sub a b))", "(sub b a)"),
    Rule("neg-add-l", "(add (neg a) b)", "(sub b a)", grows=True, note="exact in IEEE"),
    Rule("sub-negl", "(sub (neg a) b)", "(neg (add a b))", grows=True,
         note="exact: rounding is symmetric"),
    Rule("add-sub-cancel", "(add a (sub b a))", "b", when=(("finite", "a"),)),
    Rule("add-sub-cancel-r", "(add (sub b a) a)", "b", when=(("finite", "a"),)),
    Rule("sub-add-cancel", "(sub (add a b) a)", "b", when=(("finite", "a"),)),
    Rule("sub-add-cancel-r", "(sub (add b a) a)", "b", when=(("finite", "a"),)),
    Rule("sub-sub-cancel", "(sub a (sub a b))", "b", when=(("finite", "a"),)),
    Rule("sub-sub-cancel-l", "(sub (sub a b) a)", "(neg b)", when=(("finite", "a"),)),
    Rule("sub-sub-sub", "(sub (sub a b) (sub a c))", "(sub c b)", when=(("finite", "a"),)),
    Rule("sub-sub-sub-r", "(sub a (sub (sub a b) c))", "(add b c)", when=(("finite", "a"),)),
    Rule("mul-0", "(mul a 0)", "0", when=(("finite", "a"),),
         note="inf*0 and NaN*0 are NaN: needs a finite"),
    Rule("sub-self", "(sub a a)", "0", when=(("finite", "a"),),
         note="inf-inf is NaN: needs a finite"),
    Rule("div-self", "(div a a)", "1", when=(("nonzero", "a"),), note="0/0 is NaN"),
    Rule("div-0", "(div 0 a)", "0", when=(("nonzero", "a"),)),
    Rule("div-cancel", "(div (mul a b) b)", "a", when=(("nonzero", "b"), ("finite", "a")),
         note="(x*y)/y = x needs y != 0"),
    Rule("mul-inv-self", "(mul a (inv a))", "1", when=(("nonzero", "a"),)),
]

POWERS: list[Rule | RawRule] = [
    Rule("mul-self", "(mul a a)", "(square a)"),
    Rule("mul-square", "(mul (square a) a)", "(cube a)"),
    Rule("powi-0", "(powi a 0)", "1", note="x**0 is 1 for every x, NaN included"),
    Rule("powi-1", "(powi a 1)", "a"),
    Rule("powi-2", "(powi a 2)", "(square a)"),
    Rule("powi-3", "(powi a 3)", "(cube a)"),
    Rule("powi-m1", "(powi a -1)", "(inv a)"),
    Rule("pow-0", "(pow a 0)", "1"),
    Rule("pow-1", "(pow a 1)", "a"),
    Rule("pow-2", "(pow a 2)", "(square a)"),
    Rule("pow-3", "(pow a 3)", "(cube a)"),
    Rule("pow-m1", "(pow a -1)", "(inv a)"),
    Rule("square-neg", "(square (neg a))", "(square a)"),
    Rule("square-abs", "(square (abs a))", "(square a)"),
    Rule("abs-square", "(abs (square a))", "(square a)"),
    Rule("cube-neg", "(cube (neg a))", "(neg (cube a))"),
    Rule("abs-abs", "(abs (abs a))", "(abs a)"),
    Rule("abs-neg", "(abs (neg a))", "(abs a)"),
    Rule("abs-nonneg", "(abs a)", "a", when=(("nonneg", "a"),)),
    Rule("inv-inv", "(inv (inv a))", "a"),
    Rule("inv-neg", "(inv (neg a))", "(neg (inv a))"),
    Rule("div-1-x", "(div 1 a)", "(inv a)"),
    Rule("mul-inv", "(mul a (inv b))", "(div a b)"),
    Rule("sqrt-square", "(sqrt (square a))", "(abs a)", note="sound; -> a would not be"),
    Rule("square-sqrt", "(square (sqrt a))", "a", when=(("nonneg", "a"),)),
    Rule("exp-log", "(exp (log a))", "a", when=(("nonneg", "a"),),
         note="exp(log x) = x needs x >= 0 (x = 0: exp(-inf) = 0)"),
]

# Rules that concern one op (f(-a) = ±f(a), f(a - b) = f(b - a) for an even f, a protected op's
# own identities, commutativity, associativity) live on the op (symcore.ops, field `rules`) and
# join their topic in `TOPICS`; the lists below hold the rules that relate several ops.

TRIG: list[Rule | RawRule] = []

PROTECTED: list[Rule | RawRule] = [
    Rule("min-max", "(min (max a b) b)", "b", when=(("finite", "a"),),
         note="max(a, b) >= b; a NaN would propagate"),
    Rule("max-min", "(max (min a b) b)", "b", when=(("finite", "a"),)),
    Rule("sqrt_abs-square", "(sqrt_abs (square a))", "(abs a)"),
    Rule("sqrt_abs-nonneg", "(sqrt_abs a)", "(sqrt a)", when=(("nonneg", "a"),)),
    Rule("log_abs-nonneg", "(log_abs a)", "(log a)", when=(("nonneg", "a"),)),
    Rule("pow_abs-nonneg", "(pow_abs a b)", "(pow a b)", when=(("nonneg", "a"),)),
    RawRule("pdiv-const", f"(rule ((= e ({CTOR['pdiv']} a (Num c))) (> (abs c) 0.001)) "
                          f"((union e ({CTOR['div']} a (Num c)))) :ruleset {{rs}})",
            note="a constant divisor above gplearn's threshold divides plainly"),
]

COMMUTE: list[Rule | RawRule] = []

ASSOC: list[Rule | RawRule] = []

CANON: list[Rule | RawRule] = [
    Rule("sub-canon", "(sub a b)", "(add a (neg b))", grows=True, note="exact in IEEE"),
    Rule("div-canon", "(div a b)", "(mul a (inv b))", grows=True),
    Rule("neg-add", "(neg (add a b))", "(add (neg a) (neg b))", grows=True),
]

FACTOR: list[Rule | RawRule] = [
    Rule("factor", "(add (mul a b) (mul a c))", "(mul a (add b c))", grows=True),
    Rule("factor-1", "(add (mul a b) a)", "(mul a (add b 1))", grows=True),
    Rule("double", "(add a a)", "(mul 2 a)", grows=True, note="x + x = 2x exactly"),
]

CYCLES: list[Rule | RawRule] = [
    # Forms that are cheaper to evaluate (extraction under cost="cycles" picks them where they
    # are): integer powers as multiplications, fractional powers as square roots, a double
    # angle from a sine and a cosine the expression already needs, one division for several.
    # All within the default soundness contract (equal wherever the original is finite, up to
    # rounding, intermediate over/underflow and the sign of zero).
    Rule("powi-4", "(powi a 4)", "(square (square a))", note="powi's own multiplications"),
    Rule("powi-5", "(powi a 5)", "(mul a (square (square a)))"),
    Rule("powi-6", "(powi a 6)", "(square (cube a))"),
    Rule("powi-m2", "(powi a -2)", "(inv (square a))",
         note="powi's reciprocal except where x*x overflows (true value subnormal)"),
    Rule("powi-m3", "(powi a -3)", "(inv (cube a))"),
    Rule("powi-m4", "(powi a -4)", "(inv (square (square a)))"),
    Rule("pow-4", "(pow a 4)", "(square (square a))",
         note="an integer-valued exponent is powi's multiplication sequence (symcore.ops)"),
    Rule("pow-m2", "(pow a -2)", "(inv (square a))"),
    Rule("pow-half", "(pow a 0.5)", "(sqrt a)", note="x < 0: NaN both; pow(-0, .5) = +0"),
    Rule("pow-m-half", "(pow a -0.5)", "(inv (sqrt a))"),
    Rule("pow-quarter", "(pow a 0.25)", "(sqrt (sqrt a))"),
    Rule("pow-3-quarters", "(pow a 0.75)", "(mul (sqrt a) (sqrt (sqrt a)))"),
    Rule("pow-1-half", "(pow a 1.5)", "(mul a (sqrt a))",
         note="no intermediate overflow: x^1.5 finite means x < 3e205"),
    Rule("pow-1-quarter", "(pow a 1.25)", "(mul a (sqrt (sqrt a)))"),
    Rule("pow-2-half", "(pow a 2.5)", "(mul (square a) (sqrt a))"),
    Rule("pow-m-1-half", "(pow a -1.5)", "(inv (mul a (sqrt a)))"),
    Rule("pow_abs-half", "(pow_abs a 0.5)", "(sqrt_abs a)"),
    Rule("sin-double", "(sin (mul 2 a))", "(mul 2 (mul (sin a) (cos a)))",
         note="relative error of a product of two correctly rounded values; cos(2a) has no "
              "such form (cancellation near its zeros)"),
    Rule("sub-factor", "(sub (mul a b) (mul a c))", "(mul a (sub b c))", grows=True),
    Rule("div-div", "(div (div a b) c)", "(div a (mul b c))"),
    Rule("mul-div", "(mul (div a b) c)", "(div (mul a c) b)", grows=True),
    Rule("add-div-div", "(add (div a b) (div c d))", "(div (add (mul a d) (mul c b)) (mul b d))",
         grows=True, note="one division for two; b*d may overflow where a/b + c/d does not "
                          "(an intermediate overflow, allowed by the contract)"),
    Rule("inv-mul", "(inv (mul a b))", "(mul (inv a) (inv b))", grows=True,
         note="lets several divisions share one reciprocal"),
    Rule("square-mul", "(square a)", "(mul a a)", grows=True, note="lets factoring see x*x"),
    Rule("cube-mul", "(cube a)", "(mul a (square a))", grows=True),
]

AGGRESSIVE: list[Rule | RawRule] = [
    # Unsound on part of the domain: opt-in only.
    Rule("log-exp", "(log (exp a))", "a", note="wrong where exp over/underflows"),
    Rule("x-mul-0", "(mul a 0)", "0", note="wrong for a = inf or NaN"),
    Rule("x-sub-self", "(sub a a)", "0", note="wrong for a = inf or NaN"),
    Rule("x-div-self", "(div a a)", "1", note="wrong at a = 0"),
    Rule("x-div-cancel", "(div (mul a b) b)", "a", note="wrong at b = 0"),
    Rule("x-exp-log", "(exp (log a))", "a", note="wrong for a < 0"),
    Rule("x-square-sqrt", "(square (sqrt a))", "a", note="wrong for a < 0"),
    Rule("x-sqrt-square", "(sqrt (square a))", "a", note="wrong for a < 0"),
    Rule("x-log-mul", "(log (mul a b))", "(add (log a) (log b))", grows=True,
         note="wrong unless a, b > 0"),
]

PARAMS: list[Rule | RawRule] = [
    # A fused parameter spans the same family of functions (up to measure-zero edge values).
    Rule("p-add", "(add P P)", "P"),
    Rule("p-sub", "(sub P P)", "P"),
    Rule("p-mul", "(mul P P)", "P"),
    Rule("p-div", "(div P P)", "P"),
    Rule("p-neg", "(neg P)", "P"),
    Rule("p-inv", "(inv P)", "P"),
    RawRule("p-add-c", f"(rule ((= e ({CTOR['add']} ({FREE_PARAM}) (Num c)))) "
                       f"((union e ({FREE_PARAM}))) :ruleset {{rs}})"),
    RawRule("p-mul-c", f"(rule ((= e ({CTOR['mul']} ({FREE_PARAM}) (Num c))) (!= c 0.0)) "
                       f"((union e ({FREE_PARAM}))) :ruleset {{rs}})"),
    RawRule("p-div-c", f"(rule ((= e ({CTOR['div']} ({FREE_PARAM}) (Num c))) (!= c 0.0)) "
                       f"((union e ({FREE_PARAM}))) :ruleset {{rs}})"),
    RawRule("p-c-div", f"(rule ((= e ({CTOR['div']} (Num c) ({FREE_PARAM}))) (!= c 0.0)) "
                       f"((union e ({FREE_PARAM}))) :ruleset {{rs}})"),
    Rule("p-distribute", "(mul P (add a P))", "(add (mul P a) P)", grows=True,
         note="p1*(x + p2) spans p1*x + p3"),
]

_STATIC: dict[str, list[Rule | RawRule]] = {
    "fold": FOLD, "identities": IDENTITIES, "powers": POWERS, "trig": TRIG,
    "protected": PROTECTED, "commute": COMMUTE, "assoc": ASSOC, "canon": CANON,
    "factor": FACTOR, "aggressive": AGGRESSIVE, "params": PARAMS, "cycles": CYCLES,
}


class _Topics(Mapping[str, list[Rule | RawRule]]):
    """Topic -> rules: the lists above plus every op's own rules (live over the ops table)."""

    _memo: tuple[int, dict[str, list[Rule | RawRule]]] = (-1, {})

    def _all(self) -> dict[str, list[Rule | RawRule]]:
        gen = generation()
        if self._memo[0] != gen:
            out = {t: list(rs) for t, rs in _STATIC.items()}
            for op in OPS.values():
                for r in op.rules:
                    if r.topic not in out:
                        raise SymcoreError(f"rule {r.name} of operator {op.name!r}: unknown "
                                           f"topic {r.topic!r}; topics: {', '.join(out)}")
                    out[r.topic].append(Rule(r.name, r.lhs, r.rhs, tuple(r.when), r.grows,
                                             r.note))
            type(self)._memo = (gen, out)
        return self._memo[1]

    def __getitem__(self, topic: str) -> list[Rule | RawRule]:
        return self._all()[topic]

    def __iter__(self) -> Iterator[str]:
        return iter(_STATIC)

    def __len__(self) -> int:
        return len(_STATIC)


TOPICS: Mapping[str, list[Rule | RawRule]] = _Topics()

_DEFAULT = ("fold", "identities", "powers", "trig", "protected", "commute", "assoc", "canon",
            "factor")
PRESETS: dict[str, tuple[str, ...]] = {
    "default": _DEFAULT,
    "aggressive": _DEFAULT + ("aggressive",),
    "params": _DEFAULT + ("params",),
}


def resolve(rules: str | Sequence[str]) -> tuple[str, ...]:
    """Topic names for a preset name or a sequence of topic/preset names."""
    names = [rules] if isinstance(rules, str) else list(rules)
    out: list[str] = []
    for n in names:
        if not isinstance(n, str):
            raise SymcoreError(f"rule set names are strings, got {type(n).__name__}")
        if n in PRESETS:
            out.extend(PRESETS[n])
        elif n in TOPICS:
            out.append(n)
        else:
            raise SymcoreError(f"unknown rule set {n!r}; presets: {', '.join(PRESETS)}; "
                               f"topics: {', '.join(TOPICS)}")
    return tuple(dict.fromkeys(out))


def program(topics: Sequence[str]) -> str:
    """egglog text of the chosen topics' rules, in the `grow` and `shrink` rulesets."""
    params = "params" in topics
    lines = []
    for t in topics:
        for r in TOPICS[t]:
            lines.append(rule_to_egg(r, "grow" if r.grows else "shrink", params))
    return "\n".join(lines)
