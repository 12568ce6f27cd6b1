"""How each built-in op lowers to LLVM IR, written against codegen's vocabulary `L`
(symcore.codegen.llvm.lower.Vocabulary); plain data, no llvmlite import."""

from __future__ import annotations

from typing import Any, Callable

from symcore.numerics import DYSYMNET_LOG_EPS, GPLEARN_THRESHOLD, POW_SOURCE


# ---------------------------------------------------------------------------------------------
# What the lowering, the py export and the e-graph need of each built-in op.  Lowerings are
# written against codegen's vocabulary `L` (symcore.codegen.llvm.lower.Vocabulary); the order
# of the calls is the order of the emitted instructions.  Ops absent from `lower` are lowered
# as the libm call their `c` template names (exp, log, sin, ...).

def _guarded(L: Any, test: Any, value: Any, fallback: float) -> Any:
    # gplearn: np.where(|x| > 0.001, value, fallback); an ordered compare sends NaN to fallback
    return L.select(L.gt(L.fabs(test), L.const(GPLEARN_THRESHOLD, test)), value,
                    L.const(fallback, value))


def _lower_sign(L: Any, a: Any) -> Any:
    # np.sign: 1, -1, +0 for ±0, NaN for NaN
    pos = L.gt(a, L.const(0.0, a))
    neg = L.lt(a, L.const(0.0, a))
    nan = L.isnan(a)
    r = L.select(neg, L.const(-1.0, a), L.const(0.0, a))
    r = L.select(pos, L.const(1.0, a), r)
    return L.select(nan, a, r)


def _lower_pick(gt: bool, nan_of: int) -> Callable[..., Any]:
    # max/min (np.maximum: NaN if operand 0 is NaN, ties give b) and fmax/fmin (operand 1 NaN
    # gives a): select on an ordered compare, then the NaN fix-up
    def f(L: Any, a: Any, b: Any) -> Any:
        r = L.select(L.gt(a, b) if gt else L.lt(a, b), a, b)
        return L.select(L.isnan(a if nan_of == 0 else b), a, r)
    return f


LOWER: dict[str, Callable[..., Any]] = {
    "add": lambda L, a, b: L.fadd(a, b),
    "sub": lambda L, a, b: L.fsub(a, b),
    "mul": lambda L, a, b: L.fmul(a, b),
    "div": lambda L, a, b: L.fdiv(a, b),
    "neg": lambda L, a: L.fneg(a),
    "pow": lambda L, a, b: L.pow(a, b),
    "powi": lambda L, a, k: L.powi(a, k),
    "square": lambda L, a: L.fmul(a, a),
    "cube": lambda L, a: L.fmul(L.fmul(a, a), a),
    "inv": lambda L, a: L.fdiv(L.const(1.0, a), a),
    "abs": lambda L, a: L.fabs(a),
    "sign": _lower_sign,
    "sqrt": lambda L, a: L.sqrt(a),
    "aq": lambda L, a, b: L.fdiv(a, L.sqrt(L.fadd(L.const(1.0, b), L.fmul(b, b)))),
    "pdiv": lambda L, a, b: _guarded(L, b, L.fdiv(a, b), 1.0),
    "plog": lambda L, a: _guarded(L, a, L.libm("log", L.fabs(a)), 0.0),
    "pinv": lambda L, a: _guarded(L, a, L.fdiv(L.const(1.0, a), a), 0.0),
    "sqrt_abs": lambda L, a: L.sqrt(L.fabs(a)),
    "log_abs": lambda L, a: L.libm("log", L.fabs(a)),
    "dlog": lambda L, a: L.libm("log", L.fadd(L.fabs(a), L.const(DYSYMNET_LOG_EPS, a))),
    "pow_abs": lambda L, a, b: L.pow(L.fabs(a), b),
    "max": _lower_pick(True, 0),
    "min": _lower_pick(False, 0),
    "fmax": _lower_pick(True, 1),
    "fmin": _lower_pick(False, 1),
}

# The py export's NumPy source of each op whose reference is not a plain NumPy call.
NP_SRC: dict[str, str] = {
    "pow": POW_SOURCE + "({0}, {1})",
    "powi": POW_SOURCE + "({0}, {1})",
    "cube": "(lambda a: a * a * a)({0})",
    "aq": "(lambda a, b: a / np.sqrt(1.0 + b * b))({0}, {1})",
    "pdiv": f"(lambda a, b: np.where(np.abs(b) > {GPLEARN_THRESHOLD!r}, "
            "np.divide(a, b), 1.0))({0}, {1})",
    "plog": f"(lambda a: np.where(np.abs(a) > {GPLEARN_THRESHOLD!r}, "
            "np.log(np.abs(a)), 0.0))({0})",
    "pinv": f"(lambda a: np.where(np.abs(a) > {GPLEARN_THRESHOLD!r}, "
            "np.divide(1.0, a), 0.0))({0})",
    "sqrt_abs": "np.sqrt(np.abs({0}))",
    "log_abs": "np.log(np.abs({0}))",
    "dlog": f"np.log(np.abs({{0}}) + {DYSYMNET_LOG_EPS!r})",
    "pow_abs": POW_SOURCE + "(np.abs({0}), {1})",
    # ties (+0 vs -0) give b, as the reference (ops._fmax) and the kernels do
    "fmax": "(lambda a, b: np.where((a > b) | (b != b), a, b))({0}, {1})",
    "fmin": "(lambda a, b: np.where((a < b) | (b != b), a, b))({0}, {1})",
}

# Estimated cycles per evaluation, calibrated by bench/bench_cycles.py on an x86-64 core (cycles
# from a dependent float-add chain of 4 cycles; each op measured in the two places a system's
# rhs runs: throughput over many states, and on the path of an RK4 stage).  Measured: add, sub,
# mul, neg, abs cost ~0 over many states (vectorised, memory-bound) and 1-3 on the stage path;
# div/inv 1 and 15-20; sqrt 2 and 30; exp/log 17-20 and 45-60; sin/cos 38 and 60; tanh/sinh
# 55 and 120; pow 90 and 160; cbrt 80 and 125.  The table is between the two (arithmetic ~1):
# a libm call is worth dozens of multiplications, a division several, which is what makes
# extraction under "cycles" prefer x*x to x^2, sqrt(x) to x^0.5, and one shared reciprocal or
# sine to several.  A protected variant adds its compare and select (~2).
CYCLES: dict[str, float] = {
    "add": 1, "sub": 1, "mul": 1, "div": 8, "neg": 0.5, "pow": 125, "powi": 12, "square": 1,
    "cube": 2, "inv": 8, "abs": 0.5, "sign": 2, "sqrt": 12, "cbrt": 100, "exp": 30, "log": 35,
    "sin": 45, "cos": 45, "tan": 65, "tanh": 80, "sinh": 80, "cosh": 50, "asin": 50,
    "acos": 55, "atan": 55, "aq": 22, "pdiv": 10, "plog": 37, "pinv": 10, "sqrt_abs": 13,
    "log_abs": 36, "dlog": 37, "pow_abs": 126, "max": 2, "min": 2, "fmax": 2, "fmin": 2,
    "asinh": 80, "acosh": 80, "atanh": 80,
}
