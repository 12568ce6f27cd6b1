"""Tier-1 fused kernels equal the NumPy reference on random expressions and data (NaN, inf, 0,
negatives, N = 0, 1, 7, odd sizes), in float64 and float32; caches; bounded memory."""

from __future__ import annotations

import gc
import os
import resource

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import data, examples, exprs

import symcore
from symcore import OPS, call, const, evaluate, param, var
from symcore.ir import topo
from symcore.codegen.llvm import cache, jit
from symcore.codegen.eval import tier1

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def _alt(e, X, dtype, params=None):
    """A more precise evaluation of the same function: long double for float64 data, float64
    for float32 data (on float32-rounded data)."""
    if dtype == "float64":
        return evaluate(e, X, params, dtype=np.longdouble).astype(np.float64)
    return evaluate(e, X.astype(np.float32).astype(np.float64), params)


def _perturbed(e, X, dtype, params, rng, ulps=8.0):
    """The reference with every operation's result moved by up to `ulps` ulp at random: how
    far a few ulp of difference per operation (libmvec vs NumPy) can carry the result."""
    t = np.dtype(dtype).type
    A = np.asarray(X, dtype=t)
    p = None if params is None else np.asarray(params, dtype=np.float64)
    eps = np.finfo(t).eps
    vals = {}
    with np.errstate(all="ignore"):
        for nd in topo([e]):
            if nd.op == "var":
                vals[nd] = A[:, nd.value]
            elif nd.op == "const":
                vals[nd] = t(nd.value)
            elif nd.op == "param":
                vals[nd] = t(p[nd.value])
            else:
                v = np.asarray(OPS[nd.op].np(*(vals[a] for a in nd.args)), dtype=t)
                jitter = rng.uniform(-ulps, ulps, np.shape(v)) * eps
                vals[nd] = (v * (1 + jitter)).astype(t)
        return np.broadcast_to(np.asarray(vals[e], dtype=np.float64), (A.shape[0],))


def assert_matches_reference(got, e, X, dtype, params=None):
    """`got` equals the reference wherever the function is well-conditioned at the point.

    Math libraries differ by a few ulp (libmvec vs NumPy's SIMD code), and a few ulp become
    anything after catastrophic cancellation or a huge argument to sin.  How much the point
    amplifies rounding is measured twice: the reference's own error against a more precise
    evaluation, and the spread of the reference when every operation is shaken by a few ulp.
    The kernel may differ from the reference by a small multiple of these, and must equal it
    exactly in kind (NaN, ±inf, finite) wherever such rounding cannot change the kind."""
    ref = evaluate(e, X, params, dtype=np.dtype(dtype).type).astype(np.float64)
    alt = _alt(e, X, dtype, params)
    rng = np.random.default_rng(0)
    shaken = [_perturbed(e, X, dtype, params, rng) for _ in range(3)]
    got = np.asarray(got, dtype=np.float64)
    assert got.shape == ref.shape
    eps = np.finfo(np.dtype(dtype)).eps
    with np.errstate(all="ignore"):
        err_ref = np.abs(ref - alt)
        same_kind = (np.isnan(ref) == np.isnan(alt)) & (np.isinf(ref) == np.isinf(alt)) & \
            ((ref == alt) | ~np.isinf(ref))
        spread = np.zeros_like(ref)
        for sh in shaken:
            same_kind &= (np.isnan(sh) == np.isnan(ref)) & (np.isinf(sh) == np.isinf(ref))
            spread = np.maximum(spread, np.where(np.isfinite(sh - ref), np.abs(sh - ref), 0.0))
        stable = same_kind & (np.isnan(ref) | np.isinf(ref) | np.isfinite(err_ref))
        tol = 16 * err_ref + 4 * spread + 64 * eps * np.abs(ref) + \
            4 * np.finfo(np.dtype(dtype)).tiny
        ok = np.where(np.isnan(ref), np.isnan(got),
                      np.where(np.isinf(ref), got == ref, np.abs(got - ref) <= tol))
    bad = stable & ~ok
    if bad.any():
        i = int(np.argmax(bad))
        raise AssertionError(f"{e} ({dtype}): {int(bad.sum())} mismatch(es); row {i} "
                             f"x={X[i]}: got {got[i]!r}, reference {ref[i]!r}, precise {alt[i]!r}")


def _predict(es, X, dtype, params=None):
    k = symcore.compile(es, dtype=dtype, tier=1)
    assert k.tier == 1
    return k.predict(X, params)


@given(e=exprs(n_vars=3), X=data(3, max_rows=40))
def test_random_expression_equals_reference_f64(e, X):
    assert_matches_reference(_predict(e, X, "float64")[0], e, X, "float64")


@given(e=exprs(n_vars=3), X=data(3, max_rows=40))
@settings(max_examples=examples(0.67))
def test_random_expression_equals_reference_f32(e, X):
    assert_matches_reference(_predict(e, X, "float32")[0], e, X, "float32")


@given(e=exprs(n_vars=2, n_params=3), X=data(2, max_rows=20),
       p=st.lists(st.floats(-10, 10), min_size=3, max_size=3))
@settings(max_examples=examples(0.5))
def test_parameters_equal_reference(e, X, p):
    pv = np.array(p)
    for dtype in ("float64", "float32"):
        assert_matches_reference(_predict(e, X, dtype, pv)[0], e, X, dtype, pv)


@given(pop=st.lists(exprs(n_vars=3, max_leaves=8), min_size=1, max_size=12),
       n=st.sampled_from([0, 1, 7, 8, 9, 15, 16, 17, 31, 33, 65, 515]))
@settings(max_examples=examples(0.25))
def test_population_every_size_equals_reference(pop, n):
    rng = np.random.default_rng(n)
    X = rng.normal(0, 3, (n, 3))
    X[rng.random((n, 3)) < 0.05] = np.nan
    X[rng.random((n, 3)) < 0.05] = 0.0
    for dtype in ("float64", "float32"):
        P = _predict(pop, X, dtype)
        assert P.shape == (len(pop), n) and P.dtype == np.dtype(dtype)
        assert P.flags.c_contiguous
        for c, e in enumerate(pop):
            assert_matches_reference(P[c], e, X, dtype)


def test_same_structure_different_constants_shares_code():
    x = var(0)
    a = call("exp", call("mul", const(0.5), x))
    b = call("exp", call("mul", const(-1.25), x))
    k = symcore.compile([a, b], tier=1)
    st_ = k.compile_stats
    assert st_.structures == 1
    X = np.linspace(-2, 2, 11).reshape(-1, 1)
    P = k.predict(X)
    np.testing.assert_allclose(P[0], np.exp(0.5 * X[:, 0]), rtol=1e-14)
    np.testing.assert_allclose(P[1], np.exp(-1.25 * X[:, 0]), rtol=1e-14)
    k2 = symcore.compile([call("exp", call("mul", const(3.0), x))], tier=1)
    assert k2.compile_stats.compiled == 0 and k2.compile_stats.live == 1


def test_powi_exponents_are_part_of_the_key():
    x = var(0)
    es = [call("powi", x, const(float(k))) for k in (2, 3, -2)]
    k = symcore.compile(es, tier=1)
    assert k.compile_stats.structures == 3
    X = np.array([[1.5], [-2.0], [0.0], [np.nan]])
    P = k.predict(X)
    with np.errstate(all="ignore"):
        for row, kk in zip(P, (2, 3, -2)):
            np.testing.assert_allclose(row, np.power(X[:, 0], float(kk)), rtol=1e-15)


def test_disk_cache_serves_a_fresh_process_state(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", str(tmp_path))
    e = call("sin", call("add", call("mul", var(0), const(1.75)), call("sqrt", var(1))))
    k = symcore.compile([e], tier=1)
    assert k.compile_stats.compiled == 1
    assert any(tmp_path.rglob("*.o"))
    del k
    gc.collect()
    cache.object_cache().clear_memory()   # forget everything but the disk
    k = symcore.compile([e], tier=1)
    st_ = k.compile_stats
    assert st_.compiled == 0 and st_.cached == 1
    X = np.array([[0.3, 2.0], [1.0, 0.5]])
    np.testing.assert_allclose(k.predict(X)[0], evaluate(e, X), rtol=1e-14)


def test_disabled_disk_cache(monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", "")
    assert cache.cache_dir() is None
    e = call("cos", call("add", var(0), const(0.123)))
    np.testing.assert_allclose(_predict(e, np.array([[1.0]]), "float64")[0], np.cos(1.123))


def _rss_mb() -> float:
    with open(f"/proc/{os.getpid()}/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def test_compile_discard_loop_keeps_memory_bounded(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMCORE_CACHE", "")
    X = np.random.default_rng(0).normal(size=(64, 2))
    rng = np.random.default_rng(1)

    def batch(i):
        # fresh structures every round: nothing can come from a cache
        es = []
        for j in range(16):
            e = var(j % 2)
            for _ in range(int(rng.integers(2, 6))):
                e = call(["sin", "exp", "neg", "sqrt_abs"][int(rng.integers(4))], e)
            es.append(call("powi", e, const(float(i * 100 + j + 20))))
        return es

    def round_(i, close):
        k = symcore.compile(batch(i), tier=1)
        assert k.compile_stats.compiled > 0
        k.score(X, X[:, 0])
        if close:
            k.close()
        del k
        gc.collect()

    monkeypatch.setattr(cache.object_cache(), "capacity_bytes", 1 << 18)
    for i in range(6):
        round_(i, close=i % 2 == 0)      # close() or plain garbage collection
    libs, base = jit.open_libraries(), _rss_mb()
    for i in range(6, 30):
        round_(i, close=i % 2 == 0)
        assert jit.open_libraries() <= libs   # every discarded kernel's code is unloaded
    grown = _rss_mb() - base
    # leaked JIT code grows ~0.2 MB a round here; released code leaves allocator noise only
    assert grown < 4, f"RSS grew by {grown:.1f} MB over 24 compile-and-discard rounds"
    assert cache.object_cache().memory_bytes <= 1 << 18


def test_native_layer_rejects_bad_arrays():
    prog = tier1.Tier1Program([call("add", var(0), param(0))], "float64")
    L = prog.lanes
    X = np.ones((1, 2 * L))
    out = np.empty((1, 2 * L))
    p = np.ones((1, 1))
    prog.predict_range(X, 2 * L, p, out)
    np.testing.assert_allclose(out, 2.0)
    bad_calls = [
        lambda: prog.predict_range(X.astype(np.float32), 3, p, out),          # dtype
        lambda: prog.predict_range(np.asfortranarray(np.ones((2, 2 * L)))[:, ::2], 3, p, out),
        lambda: prog.predict_range(np.ones((1, 2 * L + 1)), 3, p, out),      # not padded
        lambda: prog.predict_range(X, 2 * L + 1, p, out),                    # n > ldx
        lambda: prog.predict_range(np.ones((0, 2 * L)), 3, p, out),          # too few features
        lambda: prog.predict_range(X, 3, None, out),                         # params missing
        lambda: prog.predict_range(X, 3, np.ones((1, 0)), out),              # params too short
        lambda: prog.predict_range(X, 3, p, np.empty((1, 2))),               # out too small
        lambda: prog.predict_range(X, 3, p, out, 0, 2),                      # range
        lambda: prog.loss_range(X, 3, np.ones(L), np.ones(2 * L), p, np.empty((1, 2))),
        lambda: prog.loss_range(X, 3, np.ones(2 * L), np.ones(2 * L), p, np.empty((2, 2))),
        lambda: prog.loss_range(X, 3, np.ones(2 * L, np.float32), np.ones(2 * L), p,
                                np.empty((1, 2))),
    ]
    for f in bad_calls:
        with pytest.raises(symcore.DataError):
            f()
    # exactly n values per row: the padded tail never reaches the output
    for n in range(1, 2 * L):
        wide = np.full((1, 2 * L), -7.0)
        prog.predict_range(X, n, p, wide)
        assert (wide[0, :n] == 2.0).all() and (wide[0, n:] == -7.0).all()


def test_disk_cache_stays_bounded(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir()
    for i in range(40):
        (d / f"{i:02d}.o").write_bytes(b"x" * 1000)
        os.utime(d / f"{i:02d}.o", (i, i))
    blk = (d / "00.o").stat().st_blocks * 512    # what a 1000-byte file really uses
    assert blk >= 1000
    cache._prune(d, 20 * blk)
    left = sorted(f.name for f in d.iterdir())
    assert len(left) == 15 and left[0] == "25.o"     # the oldest went first, down to 3/4


_ISA_SCRIPT = """
import numpy as np, symcore
from symcore import call, const, var
from symcore.codegen.llvm import vecmath
x0, x1 = var(0), var(1)
es = [call(op, x0) for op in ("exp", "log", "sin", "cos", "tan", "cbrt", "plog", "atan")]
es += [call("pow", x0, x1), call("pdiv", call("sinh", x0), x1), call("powi", x1, const(3.0))]
X = np.random.default_rng(0).normal(0, 2, (37, 2))
X[3, 0], X[5, 1], X[7, 0] = np.nan, np.inf, 0.0
for dtype in ("float64", "float32"):
    k = symcore.compile(es, dtype=dtype, tier=1)
    P = k.predict(X)
    for e, row in zip(es, P):
        ref = symcore.evaluate(e, X, dtype=np.dtype(dtype).type)
        np.testing.assert_allclose(row, ref, rtol=1e-13 if dtype == "float64" else 3e-6,
                                   atol=1e-300, equal_nan=True)
print(vecmath.host_isa().name, vecmath.width("float64"))
"""


@pytest.mark.parametrize("isa", ["avx2", "sse", "scalar"])
def test_narrower_isas_equal_reference(isa, tmp_path):
    # what a machine without AVX-512 runs: other libmvec variants, other widths, plain libm
    import subprocess
    import sys
    if isa == "avx2" and not jit.host_features().get("avx2"):
        pytest.skip("no AVX2 on this machine")
    env = {**os.environ, "SYMCORE_ISA": isa, "SYMCORE_CACHE": str(tmp_path)}
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", _ISA_SCRIPT], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    name, width = r.stdout.split()
    assert name == isa and int(width) == {"avx2": 4, "sse": 2, "scalar": 1}[isa]


def test_damaged_cache_file_is_recompiled(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", str(tmp_path))
    e = call("tanh", call("sub", call("mul", var(0), const(2.5)), var(1)))
    symcore.compile([e], tier=1)
    gc.collect()
    cache.object_cache().clear_memory()
    for f in tmp_path.rglob("*.o"):
        if f.stat().st_size > 100:      # the object file (index files are tiny)
            f.write_bytes(f.read_bytes()[:100])
    k = symcore.compile([e], tier=1)
    assert k.compile_stats.compiled == 1
    X = np.array([[0.3, 2.0], [1.0, 0.5]])
    np.testing.assert_allclose(k.predict(X)[0], evaluate(e, X), rtol=1e-14)
