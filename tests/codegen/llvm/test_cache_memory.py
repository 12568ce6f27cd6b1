"""The object cache leaves nothing behind per key: no interned (on Python 3.12 immortal) file
name per entry, and its in-memory tier stays within its capacity."""

from __future__ import annotations

import sys
import uuid

from symcore.codegen.llvm import cache


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
