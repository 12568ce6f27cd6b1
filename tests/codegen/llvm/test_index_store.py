"""The object cache's key index (one table file per cache directory): a new process finds the
kernels another compiled without compiling them; concurrent writers lose no entry the table has
room for; the table's size is fixed by the cap and counted in the ledger; memory-only mode keeps
index entries in the bounded in-memory tier; an entry whose object was pruned is rewritten."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from symcore.codegen.llvm import cache, disk_usage, index_store


def _env(base: Path, **more: str) -> dict[str, str]:
    return {**os.environ, "SYMCORE_CACHE": str(base), "SYMCORE_THREADS": "1", **more}


def _value(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16, person=b"test-value").digest()


def _store() -> index_store.IndexFile:
    return index_store.IndexFile(cache._index_identity, cache._report, cache._untrusted)


_COMPILE = r"""
import sys
import numpy as np
import symcore
from symcore import call, const, var
tag = int(sys.argv[1])
X = np.random.default_rng(0).normal(size=(40, 2))
ops = ["sin", "cos", "exp", "tanh", "neg", "square", "sqrt_abs", "log_abs"]
cached = compiled = 0
for g in range(int(sys.argv[2])):
    # fresh structures per (tag, g), the same in every process given the same arguments
    es = []
    for j in range(12):
        e = var(j % 2)
        for s in range(3 + (tag * 7 + g * 13 + j) % 5):
            e = call(ops[(tag + g * 3 + j * 5 + s * s) % len(ops)], call("mul", e, const(0.5)))
        es.append(call("add", e, call("mul", var(1), const(float(tag * 1000 + g * 20 + j)))))
    k = symcore.compile(es, tier=1)
    P = k.predict(X)
    for e, row in zip(es, P):
        np.testing.assert_allclose(row, symcore.evaluate(e, X), rtol=1e-12, atol=1e-300)
    cached += k.compile_stats.cached
    compiled += k.compile_stats.compiled
    k.close()
print("STATS", cached, compiled)
"""


def _compile(base: Path, tag: int, groups: int, wait: bool = True, **env: str):
    p = subprocess.Popen([sys.executable, "-c", _COMPILE, str(tag), str(groups)],
                         env=_env(base, **env), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    if not wait:
        return p
    return _stats(p)


def _stats(p: subprocess.Popen) -> tuple[int, int, str]:
    out, err = p.communicate(timeout=600)
    assert p.returncode == 0 and "STATS" in out, err[-3000:]
    cached, compiled = out.split("STATS", 1)[1].split()
    return int(cached), int(compiled), err


def test_a_new_process_finds_kernels_another_compiled(tmp_path):
    base = tmp_path / "c"
    cached, compiled, _ = _compile(base, 1, 3)
    assert compiled > 0
    n = cached + compiled
    again = _compile(base, 1, 3)
    assert again[:2] == (n, 0)                # every kernel found through the index
    d = next(p for p in base.iterdir() if p.is_dir())
    assert (d / disk_usage.INDEX).is_file()
    assert not [f for f in d.iterdir() if f.name.endswith(".o") and f.stat().st_size < 600]


def test_concurrent_compiling_processes_share_the_index(tmp_path):
    # two processes compile overlapping populations at once; a third finds every kernel
    base = tmp_path / "c"
    procs = [_compile(base, tag, 4, wait=False) for tag in (2, 2, 3)]
    results = [_stats(p) for p in procs]
    assert not any("damaged" in err or "discarded" in err for *_, err in results)
    for tag in (2, 3):
        cached, compiled, err = _compile(base, tag, 4)
        assert compiled == 0 and cached > 0, err[-2000:]


_WRITER = r"""
import os, sys, time
from symcore.codegen.llvm import cache, index_store
store = index_store.IndexFile(cache._index_identity, cache._report, cache._untrusted)
d, limit, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
keys = sys.argv[4].split(",")
while not os.path.exists(go):
    time.sleep(0.001)
import hashlib
for k in keys:                         # one write each: a lost one is not written again
    v = hashlib.blake2b(k.encode(), digest_size=16, person=b"test-value").digest()
    assert store.put(d, limit, [(k, v)])
print("DONE")
"""


def test_concurrent_writers_lose_no_entry_the_table_has_room_for(tmp_path, monkeypatch):
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    buckets = 96
    limit = index_store.INDEX_FRACTION * (index_store.HEADER + buckets * index_store._BUCKET)
    assert index_store.table_bytes(limit) == index_store.HEADER + buckets * index_store._BUCKET
    store = _store()
    assert store.put(d, limit, [])            # the table, empty
    # keys that fill every bucket exactly: no entry needs evicting, so none may be lost
    per: dict[int, list[str]] = {b: [] for b in range(buckets)}
    i = 0
    while any(len(v) < index_store.WAYS for v in per.values()):
        k = f"conc|{i}"
        i += 1
        b = int.from_bytes(index_store._digest(k)[8:], "little") % buckets
        if len(per[b]) < index_store.WAYS:
            per[b].append(k)
    mine = [[], []]
    for b in range(buckets):                  # both writers work on each bucket at once
        mine[0] += per[b][0::2]
        mine[1] += per[b][1::2]
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(d), str(limit), str(go),
                               ",".join(ks)], env=_env(tmp_path / "unused"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for ks in mine]
    time.sleep(1.0)                           # both started and waiting
    go.write_text("go")
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and "DONE" in out, err[-3000:]
    keys = mine[0] + mine[1]
    got = _store().get(d, keys)
    assert got is not None
    missing = [k for k in keys if got.get(k) != _value(k)]
    assert not missing, f"{len(missing)} of {len(keys)} entries lost"


def test_table_size_is_fixed_by_the_cap_and_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", str(tmp_path / "c"))
    cap_mb = 1.0
    monkeypatch.setenv("SYMCORE_CACHE_MAX_MB", str(cap_mb))
    limit = cache.disk_limit()
    size = index_store.table_bytes(limit)
    assert 0 < size <= limit // index_store.INDEX_FRACTION
    assert index_store.table_bytes(10 << 30) <= index_store.INDEX_MAX
    assert index_store.table_bytes(4096) == 0           # too small a cap for a table
    c = cache.ObjectCache()
    slots = (size - index_store.HEADER) // index_store.SLOT
    keys = [f"bound|{i}" for i in range(3 * slots)]     # three times what it holds
    for j in range(0, len(keys), 50):
        c.index_put([(k, _value(k)) for k in keys[j:j + 50]])
    d = cache.cache_dir()
    f = d / disk_usage.INDEX
    assert f.stat().st_size == size and f.stat().st_blocks * 512 <= size + 4096
    assert c.memory_bytes == 0                          # on disk, not in memory
    got = c.index_get(keys)
    assert all(got[k] == _value(k) for k in got)
    assert len(got) <= slots
    assert sum(k in got for k in keys[-slots // 4:]) >= slots // 4 * 0.9    # the newest stay
    assert sum(k in got for k in keys[:slots]) <= slots * 0.1               # the oldest went
    with disk_usage.Ledger(d) as led:
        total = led.total
    assert total == cache._used(d)                      # the table's blocks are counted
    # a cap 4x smaller: the table is remade for it, within it
    monkeypatch.setenv("SYMCORE_CACHE_MAX_MB", str(cap_mb / 4))
    c.index_put([("bound|new", _value("bound|new"))])
    assert f.stat().st_size == index_store.table_bytes(cache.disk_limit())
    assert c.index_get(["bound|new", keys[-1]]) == {"bound|new": _value("bound|new")}
    with disk_usage.Ledger(d) as led:
        assert led.total == cache._used(d)


def test_memory_only_index_is_bounded(monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", "")
    c = cache.ObjectCache(capacity_bytes=64 << 10)
    keys = [f"mem|{i}" for i in range(5000)]
    for j in range(0, len(keys), 100):
        c.index_put([(k, _value(k)) for k in keys[j:j + 100]])
        assert c.memory_bytes <= c.capacity_bytes
    got = c.index_get(keys)
    assert got and keys[-1] in got and keys[0] not in got
    assert all(v == _value(k) for k, v in got.items())


def test_a_cap_too_small_for_a_table_keeps_the_index_in_memory(tmp_path, monkeypatch):
    monkeypatch.setenv("SYMCORE_CACHE", str(tmp_path / "c"))
    monkeypatch.setenv("SYMCORE_CACHE_MAX_MB", "0.01")
    c = cache.ObjectCache()
    c.index_put([("small|0", _value("small|0"))])
    assert not (cache.cache_dir() / disk_usage.INDEX).exists()
    assert c.index_get(["small|0"]) == {"small|0": _value("small|0")}


def test_entries_of_pruned_objects_are_rewritten(tmp_path):
    base = tmp_path / "c"
    cached, compiled, _ = _compile(base, 5, 2)
    n = cached + compiled
    d = next(p for p in base.iterdir() if p.is_dir())
    before = (d / disk_usage.INDEX).read_bytes()
    for f in d.iterdir():                     # as if pruned: every object goes
        if f.name.endswith(".o"):
            disk_usage.remove(f)
    assert _compile(base, 5, 2)[:2] == (0, n)
    assert _compile(base, 5, 2)[:2] == (n, 0)  # the rewritten entries name the new objects
    assert (d / disk_usage.INDEX).stat().st_size == len(before)


def test_two_stores_in_one_process_see_each_others_writes(tmp_path):
    d = tmp_path / "c"
    d.mkdir(mode=0o700)
    a, b = _store(), _store()
    limit = 64 << 20
    assert a.put(d, limit, [("same|0", _value("same|0"))])
    assert b.get(d, ["same|0"]) == {"same|0": _value("same|0")}
    os.unlink(d / disk_usage.INDEX)           # replaced behind a's back: a reopens
    assert b.put(d, limit, [("same|1", _value("same|1"))])
    assert a.get(d, ["same|0", "same|1"]) == {"same|1": _value("same|1")}
    with pytest.raises(ValueError):
        a.put(d, limit, [("same|2", b"short")])
