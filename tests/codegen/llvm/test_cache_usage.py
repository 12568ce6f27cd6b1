"""The object cache's disk accounting: the shared running total (the directory's ledger) equals
a full scan after every write, overwrite, deletion and prune, whichever cache object or process
made them; the cap holds on every write; pruning follows the ledger's write log (least recently
written first, an entry written again counts from then); neither writes nor pruning scan the
directory, whatever it holds; a damaged ledger is rebuilt, and a failure never leaves it locked."""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from symcore.codegen.llvm import cache, disk_usage


def _ledger(d: Path) -> tuple[int, int, int]:
    """(total, files, writes) as recorded in the ledger file, read without reconciling, once
    the entries taken out of the cache are unlinked."""
    assert disk_usage.drain(60)      # this process's deletions done and accounted
    data = (d / disk_usage.LEDGER).read_bytes()
    magic, total, files, writes, records, pending, check = disk_usage._REC.unpack_from(data)
    assert magic == disk_usage._MAGIC and pending == 0
    assert check == disk_usage._check(data[:disk_usage._REC.size - 8])
    assert len(data) >= disk_usage._REC.size + records * disk_usage._LOG.size
    return total, files, writes


def _records(d: Path) -> int:
    return disk_usage._REC.unpack_from((d / disk_usage.LEDGER).read_bytes())[4]


def _entries(d: Path) -> list[Path]:
    return [f for f in d.iterdir() if f.suffix == ".o"]


def _all_blocks(d: Path) -> int:
    """Everything in the directory: temporaries, entries pending deletion, the ledger."""
    total = 0
    for f in d.iterdir():
        try:
            total += f.stat().st_blocks * 512
        except FileNotFoundError:    # unlinked meanwhile (the background deletions)
            pass
    return total


@pytest.fixture
def cache_env(monkeypatch, tmp_path):
    base = tmp_path / "c"
    monkeypatch.setenv("SYMCORE_CACHE", str(base))

    def setup(cap_mb: float) -> Path:
        monkeypatch.setenv("SYMCORE_CACHE_MAX_MB", str(cap_mb))
        return base
    return setup


def _payload(rng: random.Random) -> bytes:
    # sizes across block boundaries: 1 block up to several
    return rng.randbytes(rng.choice([10, 100, 3000, 5000, 9000, 20000]))


def test_running_total_equals_a_scan_after_every_change(cache_env, monkeypatch):
    cache_env(0.25)
    pruned = []
    real_unlink = disk_usage._unlink
    monkeypatch.setattr(disk_usage, "_unlink", lambda p: pruned.append(p) or real_unlink(p))
    a, b = cache.ObjectCache(), cache.ObjectCache()   # two objects share the directory
    rng = random.Random(1)
    keys = [f"usage|{i}" for i in range(40)]
    d = None
    for step in range(300):
        c = a if step % 2 else b
        k = rng.choice(keys)
        if rng.random() < 0.15:
            c.discard(k)
        else:
            c.put(k, _payload(rng))                 # new entries and overwrites
        d = d or cache.cache_dir()
        total, files, _ = _ledger(d)
        assert total == cache._used(d), step
        assert files == len(_entries(d)) + 1, step  # + the ledger itself
    assert len(pruned) >= 10                        # the cap was reached and pruned


_WRITER = r"""
import random, sys
from symcore.codegen.llvm import cache
c = cache.ObjectCache()
rng = random.Random(int(sys.argv[1]))
for i in range(int(sys.argv[2])):
    k = f"usage|{rng.randrange(int(sys.argv[3]))}"
    if rng.random() < 0.1:
        c.discard(k)
    else:
        c.put(k, rng.randbytes(rng.choice([10, 3000, 9000, 20000])))
"""


@pytest.mark.parametrize("cap_mb, keys", [(0.3, 60), (512, 3000)])
def test_running_total_exact_with_concurrent_processes(cache_env, cap_mb, keys):
    # small cap: prunes race with writes; large cap: nothing but running updates, where a
    # lost update between processes would stay until the next periodic scan
    base = cache_env(cap_mb)
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(seed), "1000", str(keys)],
                              env=dict(os.environ)) for seed in (1, 2, 3)]
    c = cache.ObjectCache()                         # and this process at the same time
    rng = random.Random(4)
    for i in range(1000):
        c.put(f"usage|{rng.randrange(keys)}", _payload(rng))
    assert all(p.wait(timeout=300) == 0 for p in procs)
    d = cache.cache_dir()
    assert d.parent == base
    total, files, _ = _ledger(d)
    assert total == cache._used(d)
    assert files == len(_entries(d)) + 1
    assert total <= cap_mb * (1 << 20)


def test_cap_holds_on_every_write(cache_env):
    cap = 0.2 * (1 << 20)
    cache_env(0.2)
    c = cache.ObjectCache()
    rng = random.Random(2)
    peak = 0
    for i in range(400):
        c.put(f"cap|{i}", _payload(rng))
        used = _all_blocks(cache.cache_dir())
        peak = max(peak, used)
        assert used <= cap, i
    assert peak > cap * 3 // 4                       # it did fill up to the cap
    c.clear_memory()
    assert c.get("cap|399") is not None              # the newest entry survives pruning
    c.put("cap|huge", bytes(int(cap) + 1))           # larger than the cap: not kept
    assert _all_blocks(cache.cache_dir()) <= cap
    c.clear_memory()
    assert c.get("cap|huge") is None


def test_pruning_removes_the_least_recently_written_first(cache_env):
    cache_env(0.25)
    c = cache.ObjectCache()
    keys = [f"old|{i}" for i in range(50)]
    for k in keys:
        c.put(k, bytes(3000))                        # one block each: 50 * 4 KB < 256 KB
    d = cache.cache_dir()
    order = keys[:]
    random.Random(3).shuffle(order)                  # written order != mtime order
    for t, k in enumerate(order):
        p = cache.ObjectCache._file(d, k)
        os.utime(p, (1_000_000 + t, 1_000_000 + t))
    c.clear_memory()
    c.put("new|big", bytes(100_000))                 # passes the cap: prune to 3/4 of it
    c.clear_memory()
    kept = [k for k in order if c.get(k, memory="without_disk") is not None]
    assert c.get("new|big") is not None
    assert 0 < len(kept) < len(order)
    assert kept == order[len(order) - len(kept):]    # exactly the newest survived
    assert _ledger(d)[0] == cache._used(d)


def test_pruning_follows_the_write_log(cache_env, monkeypatch):
    import time
    cache_env(0.25)
    c = cache.ObjectCache()
    keys = [f"seq|{i}" for i in range(50)]
    for k in keys:
        c.put(k, bytes(3000))                        # one block each: 50 * 4 KB < 256 KB
    time.sleep(0.05)                                 # past the file system's clock tick
    c.put(keys[0], bytes(3001))                      # written again: now the newest
    monkeypatch.setattr(disk_usage, "prune", None)   # no full scan may be needed
    c.put("new|big", bytes(100_000))                 # passes the cap: prune to 3/4 of it
    c.clear_memory()
    d = cache.cache_dir()
    kept = [k for k in keys[1:] if c.get(k, memory="without_disk") is not None]
    assert c.get("new|big") is not None and c.get(keys[0]) is not None
    assert 0 < len(kept) < len(keys) - 1
    assert kept == keys[len(keys) - len(kept):]      # exactly the newest survived
    assert _ledger(d)[0] == cache._used(d)


def test_writes_do_not_scan_the_directory(cache_env, monkeypatch):
    cache_env(512)
    c = cache.ObjectCache()
    c.put("scan|first", b"x")
    d = cache.cache_dir()
    for i in range(3000):                           # a big directory, already accounted for
        (d / f"{i:032x}.o").write_bytes(b"y" * 100)
    with disk_usage.Ledger(d) as led:
        led.reconcile()
    seen = [0]
    real_scan = disk_usage.scan

    def counting_scan(path):
        for item in real_scan(path):
            seen[0] += 1
            yield item
    monkeypatch.setattr(disk_usage, "scan", counting_scan)
    writes = 1000
    for i in range(writes):
        c.put(f"scan|{i}", bytes(100))
    assert seen[0] == 0              # a periodic scan only after SCAN_EVERY * files writes
    assert _ledger(d)[0] == cache._used(d)
    # near the cap: pruning follows the write log, deleting the oldest (the 3000 above)
    cache_env(cache._used(d) / (1 << 20) + 0.5)
    seen[0] = 0                      # (the test's own scans)
    for i in range(writes):
        c.put(f"scan-more|{i}", bytes(100))
    assert seen[0] == 0
    assert not (d / f"{0:032x}.o").exists() and (d / f"{2999:032x}.o").exists()
    assert _ledger(d)[0] == cache._used(d)
    assert _records(d) == len(_entries(d))   # the consumed records left the log


def test_drift_and_damaged_ledger_are_reconciled(cache_env):
    cache_env(512)
    c = cache.ObjectCache()
    c.put("drift|0", bytes(100))
    d = cache.cache_dir()
    for i in range(300):                            # written behind the ledger's back
        (d / f"{i:032x}.o").write_bytes(bytes(100))
    for i in range(disk_usage.RESCAN_WRITES + 1):
        c.put(f"drift|{i % 5}", bytes(100))
        if i == 0:
            assert _ledger(d)[0] < cache._used(d)
    total, files, _ = _ledger(d)                     # reconciled by a periodic scan
    assert total == cache._used(d) and files == len(_entries(d)) + 1
    wrong_check = disk_usage._REC.pack(disk_usage._MAGIC, 4096, 1, 0, 0, 0, bytes(8))
    for junk in (b"garbage", os.urandom(disk_usage._REC.size), b"", wrong_check):
        (d / disk_usage.LEDGER).write_bytes(junk)
        c.put("drift|after", os.urandom(50))         # a damaged ledger: scanned at once
        assert _ledger(d)[0] == cache._used(d)
    (d / disk_usage.LEDGER).unlink()
    c.discard("drift|after")
    assert _ledger(d)[0] == cache._used(d)


def test_a_failed_ledger_update_never_leaves_the_lock_held(cache_env, monkeypatch):
    import threading
    cache_env(512)
    c = cache.ObjectCache()
    c.put("lock|0", b"x")
    d = cache.cache_dir()
    (d / disk_usage.LEDGER).write_bytes(b"garbage")   # the next writer scans...

    def failing_scan(path):
        raise OSError("disk went away")               # ...and the scan fails
        yield
    real_scan = disk_usage.scan
    monkeypatch.setattr(disk_usage, "scan", failing_scan)
    c.put("lock|1", b"y")                              # skipped: costs a recompile only
    monkeypatch.setattr(disk_usage, "scan", real_scan)
    done = threading.Event()
    t = threading.Thread(target=lambda: (c.put("lock|2", b"z"), done.set()), daemon=True)
    t.start()
    assert done.wait(30), "the ledger's lock was left held"
    assert _ledger(d)[0] == cache._used(d)


def test_pending_deletions_count_until_unlinked_and_a_crashed_ones_are_reclaimed(
        cache_env, monkeypatch):
    cache_env(512)
    c = cache.ObjectCache()
    c.put("gone|0", b"x")
    d = cache.cache_dir()
    left = d / f".{'ab' * 16}-999999-0{disk_usage._GONE}"   # a crashed process's leftover
    left.write_bytes(bytes(9000))
    blocks = left.stat().st_blocks * 512
    (d / disk_usage.LEDGER).write_bytes(b"")             # the next writer scans
    c.put("gone|1", b"y")
    raw = disk_usage._REC.unpack_from((d / disk_usage.LEDGER).read_bytes())
    assert raw[5] == blocks                              # pending: still uses blocks
    assert raw[1] + raw[5] == cache._used(d)
    monkeypatch.setattr(disk_usage, "STALE_SECONDS", -1.0)   # as if taken out long ago
    (d / disk_usage.LEDGER).write_bytes(b"")
    c.put("gone|2", b"z")
    assert not left.exists()
    assert _ledger(d)[0] == cache._used(d)


def test_cap_counts_deletions_not_yet_done(cache_env, monkeypatch):
    # the background deletions stall: writers must unlink queued entries themselves
    class Stalled(disk_usage._Reaper):
        def _run(self) -> None:
            return
    monkeypatch.setattr(disk_usage, "_reaper", Stalled())
    cap = 0.2 * (1 << 20)
    cache_env(0.2)
    c = cache.ObjectCache()
    rng = random.Random(5)
    for i in range(300):
        c.put(f"stall|{i}", _payload(rng))
        assert _all_blocks(cache.cache_dir()) <= cap, i
    c.clear_memory()
    assert c.get("stall|299") is not None
