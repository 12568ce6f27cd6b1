"""Kernel = reference at the edges (issue 12.5): every registered operator on the edge-value
table (±0, ±inf, NaN, subnormals, ±1, integer-valued and huge exponents, values around the
protected thresholds), tier 0, tier 1 and the NumPy reference, under the semantics table of
symcore/evaluate.py: bit-identical, except math-library values (within LIBM_ULPS, exact at
special values)."""

from __future__ import annotations

import numpy as np
import pytest

from symcore.evaluate import LIBM_OPS, LIBM_ULPS, evaluate
from symcore.ir import call, const, var
from symcore.ops import GPLEARN_THRESHOLD, OPS, POWI_MAX_MULTIPLY

from symcore.codegen.eval.kernels import compile as kcompile


def _edges(dtype: type) -> np.ndarray:
    fi = np.finfo(dtype)
    t = GPLEARN_THRESHOLD
    big = float(fi.max)
    vals = [0.0, -0.0, np.inf, -np.inf, np.nan, float(fi.smallest_subnormal),
            float(fi.tiny) / 4, float(fi.tiny), 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 0.5, -0.5, 1.5,
            7.0, 16.0, 17.0, -16.0, -17.0, 40.0, 1e-6, 0.1, 10.0, 710.0, -745.0, 1e16 + 2,
            1e300, big, float(np.nextafter(dtype(1.0), dtype(2.0))), 2.0 ** 260, 2.0 ** -260,
            t, float(np.nextafter(dtype(t), dtype(1))), float(np.nextafter(dtype(t), dtype(0)))]
    vals += [-v for v in vals[5:8]] + [-v for v in vals[-3:]]
    with np.errstate(over="ignore"):
        return np.array(vals, dtype=dtype)


def _exprs() -> list:
    out = []
    for name, op in OPS.items():
        if name == "powi":
            for k in (-40, -17, -16, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 7, 15, 16, 17, 31,
                      64, 2 ** 40):
                out.append(call(name, var(0), const(float(k))))
        elif op.arity == 1:
            out.append(call(name, var(0)))
        else:
            out.append(call(name, var(0), var(1)))
    return out


def _ulps(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    it = np.int64 if a.dtype == np.float64 else np.int32
    ia, ib = a.view(it).astype(np.int64), b.view(it).astype(np.int64)
    lo = np.int64(np.iinfo(it).min)
    ia = np.where(ia < 0, lo - ia, ia)
    ib = np.where(ib < 0, lo - ib, ib)
    return np.abs(ia - ib)


def _libm_rows(e, X: np.ndarray) -> np.ndarray:
    """Rows where `e`'s value comes from a math library (per the semantics table)."""
    n = X.shape[0]
    if e.op in LIBM_OPS:
        return np.ones(n, bool)
    if e.op == "powi":
        return np.full(n, abs(e.args[1].value) > POWI_MAX_MULTIPLY)
    if e.op in ("pow", "pow_abs"):
        b = X[:, 1]
        with np.errstate(invalid="ignore"):
            return ~((np.trunc(b) == b) & (np.abs(b) <= POWI_MAX_MULTIPLY))
    return np.zeros(n, bool)


def _mismatches(e, X: np.ndarray, ref: np.ndarray, got: np.ndarray) -> list:
    same = (ref.view(np.uint8).reshape(len(ref), -1) == got.view(np.uint8).reshape(len(got), -1)
            ).all(1) | (np.isnan(ref) & np.isnan(got))
    libm = _libm_rows(e, X)
    # math-library values: equal where either side is special (NaN, ±inf, ±0), else within
    # LIBM_ULPS of each other with the same sign
    special = ~np.isfinite(ref) | ~np.isfinite(got) | (ref == 0) | (got == 0)
    close = libm & ~special & (np.sign(ref) == np.sign(got)) & (_ulps(ref, got) <= LIBM_ULPS)
    bad = np.where(~(same | close))[0]
    return [(str(e), X[i].tolist(), ref[i], got[i]) for i in bad[:5]]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tier", [0, 1])
def test_every_op_on_the_edge_table_equals_the_reference(tier: int, dtype: type) -> None:
    ev = _edges(dtype)
    a, b = np.meshgrid(ev, ev)
    X = np.ascontiguousarray(np.stack([a.ravel(), b.ravel()], 1))
    exprs = _exprs()
    assert {e.op for e in exprs} == set(OPS)   # every registered operator
    P = kcompile(exprs, np.dtype(dtype).name, tier=tier).predict(X)
    bad = []
    for i, e in enumerate(exprs):
        bad += _mismatches(e, X, evaluate(e, X, dtype=dtype), P[i])
    assert not bad, f"{len(bad)} mismatch(es), first: {bad[:8]}"


@pytest.mark.parametrize("tier", [0, 1])
def test_the_issue_cases(tier: int) -> None:
    x0 = var(0)
    cases = [
        # x^2.0 is x*x bit for bit, so this is 0 everywhere finite (it was inf in the kernel)
        (call("pow", call("sub", call("pow", x0, const(2.0)), call("mul", x0, x0)), const(0.5)),
         [0.1, 1.1, 3.3, 1e-3, 7.77e5], None),
        # C99: pow(-inf, 0.5) = +inf (NumPy's scalar shortcut sqrt would give NaN)
        (call("pow", x0, const(0.5)), [-np.inf], [np.inf]),
        # a true result in the subnormal range is not flushed to 0 by 1/x^4 overflowing
        (call("powi", x0, const(-4.0)), [2.0 ** 260, -(2.0 ** 260)], [2.0 ** -1040] * 2),
        (call("pow", x0, const(-4.0)), [2.0 ** 260], [2.0 ** -1040]),
        # sin of a huge argument amplifies any difference in the argument: powi is exact
        (call("sin", call("powi", call("powi", x0, const(3.0)), const(5.0))),
         [1.7, -2.3, 11.0, 13.5], None),
    ]
    for e, xs, want in cases:
        X = np.array(xs, dtype=np.float64).reshape(-1, 1)
        ref = evaluate(e, X)
        got = kcompile([e], tier=tier).predict(X)[0]
        if want is not None:
            np.testing.assert_array_equal(ref, want)
        if e.op == "sin":   # sin itself is a math-library value (LIBM_ULPS)
            assert (_ulps(ref, got) <= LIBM_ULPS).all(), (ref, got)
        else:
            assert ref.tobytes() == got.tobytes(), (str(e), ref, got)
    z = evaluate(cases[0][0], np.array(cases[0][1]).reshape(-1, 1))
    assert (z == 0).all()


@pytest.mark.parametrize("name", ["max", "min", "fmax", "fmin"])
def test_signed_zero_ties_give_the_second_operand_at_every_length(name):
    # NumPy's fmax/fmin return a on a tie in their scalar loop and b in their SIMD one: the
    # reference must not depend on the array's length, and the kernels must agree at each
    for n in range(1, 20):
        X = np.empty((n, 2))
        X[:, 0] = np.where(np.arange(n) % 2, 0.0, -0.0)
        X[:, 1] = -X[:, 0]
        e = call(name, var(0), var(1))
        ref = evaluate(e, X)
        np.testing.assert_array_equal(np.signbit(ref), np.signbit(X[:, 1]))
        for tier in (0, 1):
            got = kcompile([e], tier=tier).predict(X)[0]
            np.testing.assert_array_equal(np.signbit(got), np.signbit(ref))
