"""Caches never keep the expressions they are keyed by alive, and stay bounded, over many fresh
populations compiled and scored; `fit` honours SYMCORE_THREADS through the one pool."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np

import symcore
from symcore import call, const, param, var
from symcore.codegen.eval import tape, tier1
from symcore.codegen.grad import tier0 as grad_t0
from symcore.codegen.llvm import cache, values


def _population(rng: np.random.Generator, n: int) -> list:
    ops = ["sin", "exp", "cos", "tanh", "sqrt_abs", "neg"]
    out = []
    for _ in range(n):
        e = var(int(rng.integers(2)))
        for _ in range(int(rng.integers(1, 4))):
            e = call(ops[int(rng.integers(len(ops)))], e)
        out.append(call("add", call("mul", e, const(float(rng.normal()))), var(1)))
    return out


def test_fresh_populations_leave_no_expression_alive(monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", "")
    rng = np.random.default_rng(5)
    X = rng.normal(size=(64, 2))
    y = X[:, 0]
    refs: list[weakref.ref] = []
    gc.collect()
    n_info, n_tape = len(tier1._INFO), len(tape._CACHE)   # other tests' live expressions
    for it in range(12):
        pop = _population(rng, 40)
        for tier in (0, 1):
            k = symcore.compile(pop, tier=tier)
            k.score(X, y)
            k.close()
        refs += [weakref.ref(e) for e in pop[::4]]
        del pop, k
    gc.collect()
    alive = sum(r() is not None for r in refs)
    assert alive <= 2, f"{alive} of {len(refs)} sampled expressions still alive"
    assert len(tier1._INFO) <= n_info + 5 and len(tape._CACHE) <= n_tape + 5
    assert len(values._SPLATS) <= 2049
    assert cache.object_cache().memory_bytes <= cache.object_cache().capacity_bytes


def test_fit_honours_symcore_threads(monkeypatch):
    seen: set[int] = set()
    real = grad_t0.Tier0Grad._buffers

    def spy(self):
        seen.add(threading.get_ident())
        return real(self)
    monkeypatch.setattr(grad_t0.Tier0Grad, "_buffers", spy)
    X = np.random.default_rng(0).normal(size=(200, 1))
    models = [call("add", call("mul", param(0), call("exp", call("mul", param(1), var(0)))),
                   const(float(i))) for i in range(16)]
    y = 0.5 * np.exp(0.3 * X[:, 0])
    monkeypatch.setenv("SYMCORE_THREADS", "1")
    symcore.fit(models, X, y, tier=0)
    assert seen == {threading.get_ident()}
    seen.clear()
    monkeypatch.setenv("SYMCORE_THREADS", "2")
    symcore.fit(models, X, y, tier=0)
    assert len(seen) == 2
