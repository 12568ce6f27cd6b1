"""Guards as an e-graph analysis: relations `finite`, `nonneg`, `nonzero` derived bottom-up.

Meaning, for every input where all variables and parameters are finite:
  finite(e)   e evaluates to a finite number;
  nonneg(e)   e is >= 0 or +inf, never NaN;
  nonzero(e)  e is finite and != 0.
A relation holds for an e-class only when derived from a member, so (unlike `ne(x, 0)`, which
only says "not in the class of 0") a guard proves a property of the value.  `finite` treats
+ - * of finite values as finite (overflow counts as rounding); exp(x) may be 0 or inf, so it is
never `nonzero`, and x/y, log, sqrt, pow are never `finite`.
"""

from __future__ import annotations

from symcore.ops import OPS

from symcore.rules.language import CTOR, FREE_PARAM

RELATIONS = ("finite", "nonneg", "nonzero", "pure")
_MAXF = "1.7976931348623157e308"

# Arithmetic closure: + - * of finite numbers is taken as finite.  An overflow there is the
# "rounding at an intermediate over/underflow" that the soundness contract allows; what the
# guards exclude are genuine non-finite producers: x/0, log 0, sqrt of a negative, exp, inf-inf.
FINITE_ARITH = ("add", "sub", "mul")
FINITE_ARITH_UNARY = ("square", "cube")
# Unary ops whose value is finite for every finite operand.
FINITE_UNARY = ("neg", "abs", "sign", "sin", "cos", "tan", "tanh", "atan", "cbrt", "sqrt_abs",
                "plog", "pinv", "dlog")
# Binary ops finite for finite operands (aq: b*b may overflow, then a/inf = 0).
FINITE_BINARY = ("max", "min", "aq")
# Unary ops that are >= 0 (or +inf), never NaN, for a finite operand.
NONNEG_OF_FINITE = ("abs", "square", "exp", "sqrt_abs", "cosh")


def program(params: bool = False) -> str:
    """egglog text: the relations and the rules deriving them (run with the shrink ruleset).
    With `params`, also `pure(e)`: e contains no anonymous parameter (see rulesets)."""
    c = CTOR
    lines = [f"(relation {r} (M))" for r in RELATIONS]
    rs = ":ruleset shrink"
    if params:
        lines += [f"(rule ((= e ({leaf} i))) ((pure e)) {rs})" for leaf in ("Num", "Var", "Par",
                                                                           "Spec")]
        for name, op in OPS.items():
            kids = " ".join(f"k{j}" for j in range(op.arity))
            conds = " ".join(f"(pure k{j})" for j in range(op.arity))
            lines.append(f"(rule ((= e ({c[name]} {kids})) {conds}) ((pure e)) {rs})")
    lines += [
        f"(rule ((= e (Num v)) (< v {_MAXF}) (> v (- 0.0 {_MAXF}))) ((finite e)) {rs})",
        f"(rule ((= e (Var i))) ((finite e)) {rs})",
        f"(rule ((= e (Par i))) ((finite e)) {rs})",
        f"(rule ((= e ({FREE_PARAM}))) ((finite e)) {rs})",
        f"(rule ((= e (Num v)) (>= v 0.0) (< v {_MAXF})) ((nonneg e)) {rs})",
        f"(rule ((= e (Num v)) (!= v 0.0) (< v {_MAXF}) (> v (- 0.0 {_MAXF}))) ((nonzero e)) {rs})",
    ]
    for f in FINITE_UNARY + FINITE_ARITH_UNARY:
        lines.append(f"(rule ((= e ({c[f]} a)) (finite a)) ((finite e)) {rs})")
    for f in FINITE_BINARY + FINITE_ARITH:
        lines.append(f"(rule ((= e ({c[f]} a b)) (finite a) (finite b)) ((finite e)) {rs})")
    for f in NONNEG_OF_FINITE:
        lines.append(f"(rule ((= e ({c[f]} a)) (finite a)) ((nonneg e)) {rs})")
    lines += [
        # sqrt of a value >= 0 (or +inf) is >= 0 (or +inf)
        f"(rule ((= e ({c['sqrt']} a)) (nonneg a)) ((nonneg e)) {rs})",
        # inf + inf = inf, never inf - inf: sums of non-negatives stay non-negative
        f"(rule ((= e ({c['add']} a b)) (nonneg a) (nonneg b)) ((nonneg e)) {rs})",
        # 0 * inf is NaN: products need finite factors
        f"(rule ((= e ({c['mul']} a b)) (nonneg a) (nonneg b) (finite a) (finite b)) "
        f"((nonneg e)) {rs})",
        f"(rule ((= e ({c['pow_abs']} a b)) (finite a) (finite b)) ((nonneg e)) {rs})",
        f"(rule ((= e ({c['neg']} a)) (nonzero a)) ((nonzero e)) {rs})",
        f"(rule ((= e ({c['abs']} a)) (nonzero a)) ((nonzero e)) {rs})",
    ]
    return "\n".join(lines)
