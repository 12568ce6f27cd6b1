"""The NumPy semantics of the built-in operators: the reference implementations and the
numerics they share with the kernels (protected thresholds, pow/powi)."""

from __future__ import annotations

from typing import Any

import numpy as np

GPLEARN_THRESHOLD = 0.001  # gplearn's protected div/log/inv switch at |x| <= 0.001
DYSYMNET_LOG_EPS = 1e-6    # DySymNet: log(|x| + 1e-6)


# ---------------------------------------------------------------------------------------------
# NumPy reference implementations.  Protected variants follow each tool's own code exactly,
# including what they do with NaN (gplearn's np.where on |x| > 0.001 sends NaN to the fallback).

def _pdiv(a: Any, b: Any) -> Any:
    return np.where(np.abs(b) > GPLEARN_THRESHOLD, np.divide(a, b), 1.0)


def _plog(a: Any) -> Any:
    return np.where(np.abs(a) > GPLEARN_THRESHOLD, np.log(np.abs(a)), 0.0)


def _pinv(a: Any) -> Any:
    return np.where(np.abs(a) > GPLEARN_THRESHOLD, np.divide(1.0, a), 0.0)


#: |k| up to which powi (and pow with an integer-valued exponent) multiplies: the same IEEE
#: sequence in the reference and every kernel (codegen.llvm.lower reads this), so they agree
#: bit for bit; beyond it, C99 pow (k multiplications would lose ~k/2 ulp)
POWI_MAX_MULTIPLY = 16
_POWI_BITS = POWI_MAX_MULTIPLY.bit_length()


def _c_pow(a: Any, b: Any) -> Any:
    # C99 pow elementwise: NumPy's scalar-exponent shortcuts (0.5 -> sqrt, 2 -> square) differ
    # from pow at the edges (pow(-inf, 0.5) is +inf, sqrt(-inf) NaN), so the exponent is
    # always an array of the operands' common shape
    a, b = np.asarray(a), np.asarray(b)
    shape = np.broadcast_shapes(a.shape, b.shape, (1,))
    out = np.power(np.broadcast_to(a, shape), np.broadcast_to(b, shape).copy())
    return out if a.ndim or b.ndim else out.reshape(())


def _powi_pos(a: Any, n: Any) -> Any:
    """a**n for 0 <= n < 2**_POWI_BITS by binary powering, acc = acc*base on bit i, base
    squared after it (n an int or an int array, one exponent per element).  The first factor
    is 1.0*base = base exactly, so this is the kernels' sequence (codegen lower_powi) bit for
    bit, for a constant or a per-lane n alike."""
    acc = np.ones_like(a)
    base = a
    if isinstance(n, (int, np.integer)):
        n = int(n)
        while n:
            if n & 1:
                acc = acc * base
            n >>= 1
            if n:
                base = base * base
        return acc
    for i in range(_POWI_BITS):
        acc = np.where((n >> i) & 1 == 1, acc * base, acc)
        base = base * base
    return acc


def _powi_small(a: Any, k: Any) -> Any:
    """a**k, |k| <= POWI_MAX_MULTIPLY (k an int or int array): a**|k| by multiplication, its
    reciprocal for k < 0, except where a**|k| overflows for a finite a: there (1/a)**|k|, so a
    true result in the subnormal range is not flushed to 0."""
    n = np.abs(k)
    p = _powi_pos(a, n)
    if np.all(np.asarray(k) >= 0):
        return p
    one = np.ones_like(a)
    r = one / p
    fix = np.isinf(p) & np.isfinite(a)
    if np.any(fix):
        r = np.where(fix, _powi_pos(one / a, n), r)
    return np.where(np.asarray(k) < 0, r, p)


def _small_int(b: Any) -> Any:
    b = np.asarray(b)
    with np.errstate(invalid="ignore"):
        return (np.trunc(b) == b) & (np.abs(b) <= POWI_MAX_MULTIPLY)


def _pow(a: Any, b: Any) -> Any:
    """pow: an integer-valued exponent |b| <= POWI_MAX_MULTIPLY is powi's multiplication
    sequence (so x^2.0 is x*x exactly), any other exponent C99 pow."""
    a, b = np.asarray(a), np.asarray(b)
    if b.ndim == 0:
        bv = float(b)
        if _small_int(bv):
            return _powi_small(a, int(bv))
        return _c_pow(a, b)
    small = _small_int(b)
    out = _c_pow(a, b)
    if np.any(small):
        shape = out.shape
        k = np.where(small, np.broadcast_to(b, shape), 0).astype(np.int64)
        out = np.where(small, _powi_small(np.broadcast_to(a, shape), k), out)
    return out


def _pow_source(bits: int) -> str:
    # _pow as one NumPy expression (the py export and to_numpy_source print it; tested equal
    # to _pow bit for bit): x^M = w0*w1*...*w{bits-1}, wi = x^(2^i) on bit i of M else 1.0,
    # which is _powi_pos's acc*base sequence (acc*1.0 == acc)
    prod = " * ".join(f"np.where((M >> {i}) & 1 == 1, q{i}, 1.0)" for i in range(bits))
    body = prod
    for i in reversed(range(1, bits)):
        body = f"(lambda q{i}: {body})(q{i - 1} * q{i - 1})"
    pos = f"lambda q0, M: {body}"
    return (f"(lambda a, b, pos=({pos}): (lambda A, B: (lambda S: (lambda M: np.where(S, "
            "(lambda P: np.where(B < 0, np.where(np.isinf(P) & np.isfinite(A), pos(1.0 / A, M), "
            # np.array(B): a copy, since NumPy takes shortcuts (0.5 -> sqrt) for a stride-0
            # exponent, unlike C pow at the edges
            "1.0 / P), P))(pos(A, M)), np.power(A, np.array(B))))"
            "(np.where(S, np.abs(np.where(S, B, 0.0)), 0.0).astype(np.int64)))"
            f"((np.trunc(B) == B) & (np.abs(B) <= {POWI_MAX_MULTIPLY})))"
            "(*np.broadcast_arrays(np.asarray(a), np.asarray(b), np.empty(1))[:2]))")


POW_SOURCE = _pow_source(_POWI_BITS)


def _powi(a: Any, k: Any) -> Any:
    # the exponent is an integer literal; a non-integer or huge one is C99 pow
    kv = np.asarray(k)
    if kv.ndim == 0 and np.isfinite(kv) and float(kv) == int(kv) \
            and abs(int(kv)) > POWI_MAX_MULTIPLY:
        return _c_pow(a, k)
    return _pow(a, k)


def _pow_abs(a: Any, b: Any) -> Any:
    return _pow(np.abs(a), b)


def _aq(a: Any, b: Any) -> Any:
    return a / np.sqrt(1.0 + b * b)
