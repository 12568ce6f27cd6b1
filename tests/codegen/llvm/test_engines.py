"""Loaded code stays bounded: the LRU bound on evictable libraries ($SYMCORE_MAX_ENGINES) holds
and really unloads, an evicted tier-1 kernel held by the user reloads and stays correct, a pinned
library is never evicted, and retired LLJIT instances are disposed."""

from __future__ import annotations

import gc

import numpy as np
import pytest

import symcore
from symcore import call, const, var
from symcore.codegen.llvm import cache, jit

_IR = """
define double @{name}(double %x) {{
  %r = fadd double %x, {val}
  ret double %r
}}
"""


def _tiny(name: str, val: float) -> jit.Library:
    obj = jit.compile_object(_IR.format(name=name, val=f"{val:e}"))
    return jit.load_library([obj], [name], evictable=True)


def _models(n: int) -> list:
    # n different structures (each its own tier-1 kernel and library)
    ops = ["sin", "cos", "exp", "tanh", "neg", "square", "sqrt_abs", "log_abs", "cube"]
    return [call("add", call(ops[i % len(ops)], call("mul", var(i % 2), const(0.5 + i))),
                 call(ops[(i // len(ops) + 1) % len(ops)], var(1))) for i in range(n)]


def test_bound_holds_and_evicted_kernels_reload(monkeypatch):
    monkeypatch.setenv("SYMCORE_MAX_ENGINES", "3")
    rng = np.random.default_rng(1)
    X = rng.normal(size=(37, 2))
    models = _models(8)
    kernels = [symcore.compile([m], tier=1) for m in models]
    assert jit.evictable_libraries() <= 3
    evicted = sum(k._t1._state.libs[0].closed for k in kernels)
    assert evicted >= 5          # the bound really unloaded the older ones
    for _ in range(2):
        for m, k in zip(models, kernels):
            np.testing.assert_allclose(k.predict(X)[0], symcore.evaluate(m, X), rtol=1e-12)
            assert jit.evictable_libraries() <= 3
    assert sum(k._t1.reloads for k in kernels) >= 5


def test_evicted_kernel_recompiles_without_any_cache(monkeypatch):
    monkeypatch.setenv("SYMCORE_MAX_ENGINES", "1")
    monkeypatch.setenv("SYMCORE_CACHE", "")
    X = np.random.default_rng(2).normal(size=(20, 2))
    a, b = _models(11)[9:]
    ka = symcore.compile([a], tier=1)
    kb = symcore.compile([b], tier=1)   # evicts ka's library
    assert ka._t1._state.libs[0].closed
    cache.object_cache().clear_memory()
    y = symcore.evaluate(a, X)
    np.testing.assert_allclose(ka.score(X, y), [0.0], atol=1e-24)
    np.testing.assert_allclose(kb.predict(X)[0], symcore.evaluate(b, X), rtol=1e-12)


def test_pinned_library_is_never_evicted(monkeypatch):
    monkeypatch.setenv("SYMCORE_MAX_ENGINES", "2")
    first = _tiny("symcore_test_pin0", 1.0)
    assert jit.pin([first])
    others = [_tiny(f"symcore_test_pin{i}", float(i)) for i in range(1, 5)]
    assert not first.closed and not first.evicted
    assert jit.evictable_libraries() <= 2
    assert all(lib.evicted for lib in others[:-1]) and not others[-1].closed
    jit.unpin([first])
    assert not first.closed                   # unpinning alone does not unload
    last = _tiny("symcore_test_pin5", 5.0)    # now the least recently used one goes
    assert first.closed and first.evicted and not last.closed
    assert jit.evictable_libraries() <= 2
    assert not jit.pin([first])               # a closed library cannot be pinned
    for lib in (*others, last):
        lib.close()


def test_retired_jit_instances_are_disposed(monkeypatch):
    monkeypatch.setattr(jit, "LINKS_PER_JIT", 3)
    gc.collect()
    base = jit.live_jits()
    for i in range(20):
        _tiny(f"symcore_test_retire{i}", float(i)).close()
        assert jit.live_jits() <= base + 1
    held = _tiny("symcore_test_retire_held", 0.5)
    for i in range(20, 30):   # a held library keeps its instance alive, and only that one
        _tiny(f"symcore_test_retire{i}", float(i)).close()
    assert jit.live_jits() <= base + 2
    held.close()
    assert jit.live_jits() <= base + 1


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_max_engines_setting(monkeypatch, value):
    monkeypatch.setenv("SYMCORE_MAX_ENGINES", value)
    assert jit.max_engines() == (1 if value in ("0", "-3") else jit.DEFAULT_MAX_ENGINES)
