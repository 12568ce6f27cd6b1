"""The object cache leaves nothing behind per key: no interned (on Python 3.12 immortal) file
name per entry, and its in-memory tier stays within its capacity; a compile frees its LLVM
context."""

from __future__ import annotations

import sys
import uuid

import pytest

from symcore.codegen.llvm import cache
from symcore.errors import CompileError


def _interned_before(s: str) -> bool:
    fresh = "".join(list(s))          # an equal string object that is surely not interned
    return sys.intern(fresh) is not fresh


def test_cache_files_do_not_intern_their_names(monkeypatch, tmp_path):
    monkeypatch.setenv("SYMCORE_CACHE", str(tmp_path))
    c = cache.ObjectCache()
    keys = [f"test-intern|{uuid.uuid4().hex}" for _ in range(3)]
    for k in keys:
        c.put(k, b"payload " + k.encode())
    c.clear_memory()
    for k in keys:
        assert c.get(k) == b"payload " + k.encode()   # read back from disk
    c.discard(keys[0])
    assert c.get(keys[0]) is None
    for k in keys:
        assert not _interned_before(cache.ObjectCache._name(k))


def test_memory_tier_stays_within_capacity(monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", "")
    c = cache.ObjectCache()
    assert c.capacity_bytes == cache.MEMORY_CAPACITY
    for i in range(400):
        c.put(f"test-cap|{i}", bytes(50_000))
    assert c.memory_bytes <= c.capacity_bytes
    assert c.get("test-cap|399") is not None


def _fresh_model():
    from symcore import call, const, var
    # a structure no other test compiles: a chain of a random length and order
    rng = __import__("random").Random(uuid.uuid4().int)
    e = var(0)
    for _ in range(rng.randint(6, 12)):
        e = call(rng.choice(["sin", "cos", "tanh", "neg", "exp"]), call("mul", e, const(0.3)))
    return e


def _idx_in_memory() -> int:
    # tier-1 index entries and kernel objects held by the in-memory tier
    return sum(k.startswith(("idx|", "obj|")) for k in list(cache.object_cache()._mem))


def test_tier1_entries_stay_out_of_memory_with_a_disk_cache(monkeypatch, tmp_path):
    import numpy as np
    import symcore
    from symcore.codegen.llvm import textbuilder
    X = np.linspace(-1, 1, 12)[:, None]
    monkeypatch.setenv("SYMCORE_CACHE", str(tmp_path))
    symcore.compile([_fresh_model()], tier=1).close()   # the once-per-process driver, helpers
    textbuilder._CONST_REF.clear()
    n0 = _idx_in_memory()
    m = _fresh_model()
    k = symcore.compile([m], tier=1)
    assert k._t1.stats.compiled == 1
    assert _idx_in_memory() == n0
    assert not textbuilder._CONST_REF and not textbuilder._TYPE_STR
    k.close()
    del k
    k = symcore.compile([m], tier=1)          # found through the index entry on disk
    assert k._t1.stats.cached == 1
    np.testing.assert_allclose(k.predict(X)[0], symcore.evaluate(m, X), rtol=1e-12)
    monkeypatch.setenv("SYMCORE_CACHE", "")   # memory is the only cache: entries stay there
    k = symcore.compile([_fresh_model()], tier=1)
    assert _idx_in_memory() == n0 + 2


def test_disk_scan_counts_entries_and_stale_temporaries(tmp_path):
    import os
    import time
    for i in range(5):
        (tmp_path / f"{i:032x}.o").write_bytes(bytes(5000 * (i + 1)))
    (tmp_path / ".fresh.tmp").write_bytes(bytes(9000))       # a writer at work: not counted
    stale = tmp_path / ".stale.tmp"
    stale.write_bytes(bytes(7000))
    old = time.time() - 7200
    os.utime(stale, (old, old))
    (tmp_path / "other.txt").write_bytes(bytes(3000))        # not ours
    want = sum(f.stat().st_blocks * 512 for f in tmp_path.iterdir()
               if f.suffix == ".o" or f.name == ".stale.tmp")
    assert cache._used(tmp_path) == want
    left = cache._prune(tmp_path, want // 2)
    assert left <= want // 2 * 3 // 4 + 1
    assert not stale.exists() and (tmp_path / "other.txt").exists()
    assert (tmp_path / ".fresh.tmp").exists()


def test_every_compile_frees_its_llvm_context(monkeypatch):
    """An LLVM context keeps every type and constant its modules used until it is disposed: a
    compile must not leave one behind (a shared context grew ~16 KB per kernel)."""
    import llvmlite.binding as llvm

    from symcore.codegen.llvm import jit
    made = []
    create = llvm.create_context

    def spy():
        made.append(create())
        return made[-1]

    monkeypatch.setattr(llvm, "create_context", spy)
    for k in range(3):
        jit.compile_object(f"define double @f{k}(double %x) {{\n  %y = fmul double %x, {k}.5\n"
                           f"  ret double %y\n}}\n", opt_ir=k % 2)
    with pytest.raises(CompileError):
        jit.compile_object("define double @g( {")
    assert len(made) == 4 and all(c.closed for c in made)
