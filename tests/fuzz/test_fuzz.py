"""Fuzz harness in the suite (issue 12): readers (random text and bytes, every dialect),
kernels (random exact-op expressions x data with edge values: tier 0 and tier 1 equal the
reference bit for bit), `fit` inputs (bad shapes, dtypes, NaN: typed errors) and the object
cache (random bytes in its entries and its key index: never a crash, never a wrong payload).  Long runs:
bench/fuzz_atheris.py."""

from __future__ import annotations

import hashlib
import itertools
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, example, given, settings, strategies as st

from strategies import examples, exprs
from symcore.errors import SymcoreError
from symcore.evaluate import evaluate
from symcore.io.dialects import DIALECTS
from symcore.io.readers import read
from symcore.ir import call, const, var

from symcore.codegen.eval.kernels import compile as kcompile
from symcore.codegen.fit.api import fit
from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm.disk_usage import INDEX
from symcore.codegen.llvm.index_store import SLOT

# ops whose kernels are bit-identical to the reference (symcore/evaluate.py's table); pow and
# powi take small integer exponents, which makes them exact too
EXACT_UNARY = ("neg", "square", "cube", "inv", "abs", "sqrt", "sign", "pinv", "sqrt_abs")
EXACT_BINARY = ("add", "sub", "mul", "div", "max", "min", "fmax", "fmin", "pdiv", "aq")
EDGES = (0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -5e-324, 2.2250738585072014e-308, 1.0,
         -1.0, 1e-3, -1e-3, 1.0000000000000002e-3, 1e300, -1e300, 1.7976931348623157e308,
         2.0 ** 260, 2.0 ** -260)

texts = st.one_of(st.text(max_size=60),
                  st.text(alphabet="x0123456789.+-*/^()eE,[]_ ablnoqrstuwpiXC", max_size=60),
                  st.binary(max_size=60).map(lambda b: b.decode("latin-1")))


@given(texts, st.sampled_from(sorted(DIALECTS)))
def test_readers_raise_only_typed_errors(text: str, dialect: str) -> None:
    try:
        read(text, dialect)
    except SymcoreError:
        pass


def _small_int_powers(e_strategy: st.SearchStrategy) -> st.SearchStrategy:
    exp = st.integers(-6, 6).map(float)
    return st.one_of(e_strategy, st.tuples(e_strategy, exp, st.booleans()).map(
        lambda t: call("powi" if t[2] else "pow", t[0], const(t[1]))))


values = st.one_of(st.sampled_from(EDGES),
                   st.floats(allow_nan=True, allow_infinity=True, allow_subnormal=True))


@settings(suppress_health_check=list(HealthCheck), max_examples=examples(0.5))
@given(_small_int_powers(exprs(n_vars=2, unary=EXACT_UNARY, binary=EXACT_BINARY, max_leaves=8,
                               powi=True)),
       st.lists(st.tuples(values, values), min_size=1, max_size=24))
@example(call("fmax", var(0), const(0.0)), [(-0.0, 0.0)])   # a signed-zero tie, one row
def test_kernels_equal_the_reference_bitwise(e, rows) -> None:
    X = np.array(rows, dtype=np.float64)
    ref = evaluate(e, X)
    for tier in (0, 1):
        got = kcompile([e], tier=tier).predict(X)[0]
        same = (ref.view(np.int64) == got.view(np.int64)) | (np.isnan(ref) & np.isnan(got))
        assert same.all(), (tier, str(e), X[~same][:3], ref[~same][:3], got[~same][:3])


bad_arrays = st.one_of(
    st.just(np.zeros((3, 2, 2))), st.just(np.array([["a", "b"], ["c", "d"]])),
    st.just(np.zeros((0, 1))), st.just(np.full((5, 1), np.nan)), st.just(np.zeros((4, 0))),
    st.just([[1.0], [2.0, 3.0]]), st.just(None), st.just("text"),
    st.integers(1, 6).map(lambda n: np.ones((n, 1), dtype=np.complex128)),
    st.integers(1, 6).map(lambda n: np.arange(n, dtype=np.float32).reshape(n, 1)))


@settings(max_examples=examples(0.5))
@given(bad_arrays, st.one_of(bad_arrays, st.just(np.ones(5)), st.just(np.ones(3))),
       st.one_of(st.none(), st.just([np.nan]), st.just([1.0, 2.0, 3.0]), st.just("p")))
def test_fit_bad_inputs_raise_typed_errors(X, y, p0) -> None:
    model = call("mul", var(0), call("add", const(1.0), var(0)))
    from symcore.ir import param
    model = call("mul", param(0), model)
    try:
        r = fit(model, X, y, params0=p0, max_iter=5, tier=0)
    except SymcoreError:
        return
    # accepted: then the inputs were usable (float32 data, NaN rows): a finite or flagged result
    assert r is not None


@pytest.fixture(scope="module")
def fresh_cache(tmp_path_factory: pytest.TempPathFactory):
    d = tmp_path_factory.mktemp("fuzzcache")
    old = os.environ.get("SYMCORE_CACHE")
    os.environ["SYMCORE_CACHE"] = str(d)
    try:
        yield _cache.ObjectCache()
    finally:
        if old is None:
            os.environ.pop("SYMCORE_CACHE", None)
        else:
            os.environ["SYMCORE_CACHE"] = old


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(min_size=1, max_size=300), st.integers(0, 2), st.integers(0, 10 ** 6),
       st.binary(max_size=64))
def test_cache_entries_with_random_bytes(fresh_cache, payload, how, pos, junk) -> None:
    c = fresh_cache
    key = f"fuzz|{payload[:8].hex()}|{how}"
    c.put(key, payload)
    d = _cache.cache_dir()
    assume(d is not None)
    files = [f for f in d.rglob("*") if f.is_file() and f.name == c._name(key)]
    assume(files)
    f = files[0]
    raw = bytearray(f.read_bytes())
    if how == 0 and raw:          # flip one byte: in the payload (the file's tail) or anywhere
        at = len(raw) - 1 - (pos // 2) % len(payload) if pos % 2 == 0 else pos % len(raw)
        raw[at] ^= 0xFF
    elif how == 1:                # truncate
        raw = raw[:pos % (len(raw) + 1)]
    else:                         # garbage
        raw = bytearray(junk)
    f.write_bytes(bytes(raw))
    c.clear_memory()
    got = c.get(key)
    assert got is None or got == payload    # never a damaged payload
    assert _cache.get_or_compile(key, lambda: payload) == payload


@pytest.fixture(scope="module")
def index_cache(tmp_path_factory: pytest.TempPathFactory):
    """An object cache whose cap makes a small key index (64 KB: 1/16 of 1 MB)."""
    d = tmp_path_factory.mktemp("fuzzindex")
    old = {k: os.environ.get(k) for k in ("SYMCORE_CACHE", "SYMCORE_CACHE_MAX_MB")}
    os.environ["SYMCORE_CACHE"] = str(d)
    os.environ["SYMCORE_CACHE_MAX_MB"] = "1"
    try:
        yield _cache.ObjectCache(), itertools.count()
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.binary(min_size=16, max_size=16), min_size=1, max_size=6),
       st.integers(0, 3), st.lists(st.integers(0, 10 ** 6), min_size=1, max_size=8),
       st.binary(max_size=200))
def test_key_index_with_random_bytes(index_cache, values, how, positions, junk) -> None:
    # the key index file damaged anywhere: a lookup finds an entry's own value or nothing,
    # and the entries put again are found again
    c, n = index_cache
    tag = next(n)
    pairs = [(f"fuzz|{tag}|{i}", v) for i, v in enumerate(values)]
    c.index_put(pairs)
    d = _cache.cache_dir()
    assume(d is not None)
    f = d / INDEX
    assume(f.is_file())
    raw = bytearray(f.read_bytes())
    if how == 0:                  # flip bytes: anywhere, or in the slots just written
        for p in positions:
            key = pairs[p % len(pairs)][0]
            slot = raw.find(hashlib.blake2b(key.encode(), digest_size=16).digest())
            at = slot + (p // 7) % SLOT if p % 2 and slot >= 0 else p % len(raw)
            raw[at] ^= 0xFF
    elif how == 1:                # truncate
        raw = raw[:positions[0] % (len(raw) + 1)]
    elif how == 2:                # garbage in place of the whole file
        raw = bytearray(junk)
    else:                         # garbage over part of it
        at = positions[0] % len(raw)
        raw[at:at + len(junk)] = junk
    f.write_bytes(bytes(raw))
    want = dict(pairs)
    got = c.index_get(list(want))
    assert all(want[k] == v for k, v in got.items())      # never another value
    c.index_put(pairs)
    assert c.index_get(list(want)) == want
