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

# The facts live on the ops (symcore.ops, field `facts`): (relation of the node, relations every
# operand must have).  Arithmetic closure: + - * of finite numbers is taken as finite.  An
# overflow there is the "rounding at an intermediate over/underflow" that the soundness contract
# allows; what the guards exclude are genuine non-finite producers: x/0, log 0, sqrt of a
# negative, exp, inf-inf.


def finite_ops() -> frozenset[str]:
    """Ops whose value is finite for finite operands (live: user ops included)."""
    return frozenset(n for n, o in OPS.items() if ("finite", ("finite",)) in o.facts)


# Built-in ops finite for finite operands, by arity (read by the canonicalising pass); derived
# from the table at import.  Prefer `finite_ops()`, which also sees ops registered later.
FINITE_UNARY = tuple(n for n in finite_ops() if OPS[n].arity == 1)
FINITE_BINARY = tuple(n for n in finite_ops() if OPS[n].arity == 2)
FINITE_ARITH: tuple[str, ...] = ()
FINITE_ARITH_UNARY: tuple[str, ...] = ()


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
    for name, op in OPS.items():
        kids = ("a", "b")[:op.arity]
        for rel, need in op.facts:
            conds = " ".join(f"({r} {k})" for r in need for k in kids)
            lines.append(f"(rule ((= e ({c[name]} {' '.join(kids)})) {conds}) (({rel} e)) {rs})")
    return "\n".join(lines)
