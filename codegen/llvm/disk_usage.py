"""Blocks used by one object-cache directory, shared by every process that writes to it: a
ledger file updated under an exclusive lock with each write and deletion, so the cache cap is
checked on every write, and the oldest entries found for pruning, without scanning the directory.

The ledger is a header (bytes of blocks used by entries, st_blocks * 512 with the ledger's own
blocks; files; writes since the last full scan; records; bytes pending deletion) and then the
write log: one record (name, mtime) per entry written, oldest first.  Every writer holds the
lock (`flock` on the ledger; a process-wide lock besides, and alone where there is no `flock`)
while it stats, renames or deletes an entry and updates the ledger, so the figures stay exact
across processes.  From 7/8 of the cap, pruning walks the log from its start and takes the
entries still as written then (an entry written again has a later record) down to 3/4 of the
cap: each is renamed out of the cache (`.gone`, counted as pending) and unlinked by a background
thread, since freeing blocks is what costs (~0.2-1.6 ms per file measured here, ext4 with online
discard): writes do not wait for it unless the cap itself would be passed.  A missing or damaged
ledger, or one left behind by a crashed writer, is corrected by a full scan that rebuilds the log
and removes stale temporaries: at once when unreadable, else after
`max(RESCAN_WRITES, SCAN_EVERY * files)` writes (a fraction of a stat per write, amortised).
When the log cannot free enough (entries it does not know), a two-pass streaming prune by mtime
over the whole directory does.  The key index (`INDEX`, `llvm.index_store`) is counted like an
entry and, like the ledger, never pruned.
"""

from __future__ import annotations

import array
import atexit
import collections
import errno
import hashlib
import itertools
import logging
import os
import stat
import struct
import threading
import time
from collections.abc import Iterator
from typing import Self

import numpy as np

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock (Windows): the process-wide lock only
    fcntl = None  # type: ignore[assignment]

__all__ = ["INDEX", "LEDGER", "RESCAN_WRITES", "Ledger", "blocks", "prune", "remove", "scan",
           "used"]

#: the ledger's file name (not a cache entry: neither `.o` nor `.tmp`, never pruned)
LEDGER = "usage.ledger"
#: the key index's file name (counted, never pruned: `llvm.index_store`)
INDEX = "keys.index"
#: the files counted besides entries that pruning never takes
_KEPT = (LEDGER, INDEX)
#: rescan the directory after at least this many writes, and `SCAN_EVERY` times its files
RESCAN_WRITES = 256
SCAN_EVERY = 4
#: a temporary file older than this is a crashed writer's: counted and pruned
STALE_SECONDS = 3600.0
_SUFFIX = ".o"
#: an entry taken out of the cache, waiting for the background thread to unlink it
_GONE = ".gone"
_MAGIC = b"SYMUSE03"
#: magic, bytes of blocks used, files, writes since the last scan, log records, bytes pending
#: deletion, blake2b-8
_REC = struct.Struct("<8sQQQQQ8s")
#: a log record: the entry's name (16 bytes: its 32 hex digits) and its mtime in ns
_LOG = struct.Struct("<16sq")
_LOG_DTYPE = np.dtype([("ident", "S16"), ("mtime", "<i8")])     # the same, as a NumPy record

_plock = threading.Lock()
_log = logging.getLogger("symcore.cache")


def _reset_lock() -> None:
    # a fork while another thread held the lock must not leave the child deadlocked
    global _plock
    _plock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock)


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=8).digest()


def scan(d: str | os.PathLike) -> Iterator[tuple[int, int, str]]:
    """(bytes of blocks, mtime in ns, path) of every cache file, the ledger, every stale
    temporary file (a crashed writer's) and every entry pending deletion (with its ctime: when
    it was taken out) in `d`, streamed."""
    now = time.time_ns()
    try:
        it = os.scandir(d)
    except OSError:
        return
    with it:
        for e in it:
            name = e.name
            tmp = name.endswith(".tmp")
            gone = name.endswith(_GONE)
            if not (name.endswith(_SUFFIX) or tmp or gone or name in _KEPT):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if gone:
                yield st.st_blocks * 512, st.st_ctime_ns, e.path
            elif not tmp or now - st.st_mtime_ns > STALE_SECONDS * 1e9:
                yield st.st_blocks * 512, st.st_mtime_ns, e.path


def _entry_id(name: str) -> bytes | None:
    """The 16 bytes a cache entry's file name (32 hex digits + ".o") stands for, else None."""
    if len(name) != 34 or not name.endswith(_SUFFIX):
        return None
    try:
        return bytes.fromhex(name[:32])
    except ValueError:
        return None


def used(d: str | os.PathLike) -> int:
    """Bytes of blocks the files of `d` that the cache counts use (a full scan)."""
    return sum(b for b, _, _ in scan(d))


def prune(d: str | os.PathLike, limit: int, reserve: int = 0) -> tuple[int, int]:
    """When the files of `d` and `reserve` more bytes would pass `limit`, delete the least
    recently written files until they fit in 3/4 of `limit`; returns (bytes used, files)."""
    blocks, mtimes = array.array("q"), array.array("q")
    total = files = 0
    for b, m, path in scan(d):
        if path.endswith(_GONE):
            continue
        total += b
        files += 1
        if os.path.basename(path) not in _KEPT:
            blocks.append(b)
            mtimes.append(m)
    if total + reserve <= limit or not blocks:
        return total, files
    need = total + reserve - limit * 3 // 4     # bytes to free
    mt = np.frombuffer(mtimes, dtype=np.int64)
    order = np.argsort(mt, kind="stable")
    freed = np.cumsum(np.frombuffer(blocks, dtype=np.int64)[order])
    k = min(int(np.searchsorted(freed, need)), len(order) - 1)
    cutoff = int(mt[order[k]])                    # the newest mtime that has to go
    del blocks, mtimes, mt, order, freed
    # second pass: everything older than the cutoff goes; of the files written at the cutoff
    # itself (ties, usually one), only as many as still needed
    ties: list[tuple[int, str]] = []
    for b, m, path in scan(d):
        if m > cutoff or os.path.basename(path) in _KEPT or path.endswith(_GONE):
            continue
        if m == cutoff:
            ties.append((b, path))
            continue
        if _unlink(path):
            total -= b
            files -= 1
    for b, path in ties:
        if total + reserve <= limit * 3 // 4:
            break
        if _unlink(path):
            total -= b
            files -= 1
    return total, files


def _unlink(path: str) -> bool:
    try:
        os.unlink(path)
    except OSError:
        return False
    return True


def blocks(p: str | os.PathLike, missing: int | None = 0) -> int | None:
    """Bytes of blocks file `p` uses (`missing` when there is none)."""
    try:
        return os.stat(p, follow_symlinks=False).st_blocks * 512
    except FileNotFoundError:
        return missing


def remove(p: str | os.PathLike) -> None:
    """Delete cache file `p` (an entry, the key index), taking it off its directory's ledger."""
    p = os.fspath(p)
    try:
        with Ledger(os.path.dirname(p)) as led:
            b = blocks(p, missing=None)
            if b is None:
                return
            os.unlink(p)
            led.removed(b)
        return
    except OSError:
        pass
    _unlink(p)     # no usable ledger: the file goes all the same (the next scan sees it)


class _Reaper:
    """The background thread that unlinks entries taken out of the cache, then takes their
    blocks off the ledger's pending figure (a batch at a time)."""

    BATCH = 64

    def __init__(self) -> None:
        self.cv = threading.Condition()
        self.queue: collections.deque[tuple[str, str, int]] = collections.deque()
        self.inflight: dict[str, int] = {}     # path -> blocks, unlinked, not yet accounted
        self.thread: threading.Thread | None = None

    def put(self, items: list[tuple[str, str, int]]) -> None:
        with self.cv:
            self.queue.extend(items)
            if self.thread is None:
                self.thread = threading.Thread(target=self._run, name="symcore-cache-reaper",
                                               daemon=True)
                self.thread.start()
            self.cv.notify_all()

    def take(self, d: str) -> tuple[str, int] | None:
        """A queued deletion in `d`, for a writer that must free room now."""
        with self.cv:
            for i, (qd, path, b) in enumerate(self.queue):
                if qd == d:
                    del self.queue[i]
                    return path, b
        return None

    def _run(self) -> None:
        while True:
            with self.cv:
                while not self.queue:
                    self.cv.wait()
                batch = [self.queue.popleft() for _ in range(min(self.BATCH, len(self.queue)))]
                self.inflight.update((path, b) for _, path, b in batch)
            try:
                freed: dict[str, int] = {}
                for d, path, b in batch:
                    _unlink(path)        # gone already (a scan of stale ones): as good
                    freed[d] = freed.get(d, 0) + b
                for d, f in freed.items():
                    with Ledger(d) as led:
                        led.pending = max(led.pending - f, 0)
                        led._dirty = True
            except Exception as err:  # noqa: BLE001 - the thread must not die: the next
                # full scan recounts what is pending
                _log.debug("symcore: cache deletions: %r", err)
            finally:
                with self.cv:
                    for _, path, _ in batch:
                        self.inflight.pop(path, None)
                    self.cv.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every queued deletion is done and accounted (True) or `timeout`."""
        with self.cv:
            return self.cv.wait_for(lambda: not self.queue and not self.inflight, timeout)


_reaper = _Reaper()
_gone_names = itertools.count()


def drain(timeout: float | None = None) -> bool:
    """Wait for this process's pending deletions (tests; process exit)."""
    return _reaper.drain(timeout)


def _reset_reaper() -> None:
    global _reaper
    _reaper = _Reaper()     # the parent's queue is the parent's to finish


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_reaper)
atexit.register(lambda: _reaper.drain(10.0))


class Ledger:
    """`with Ledger(d) as led:` the usage of cache directory `d`, locked against every other
    writer until the block ends (then written back).  Raises OSError when the ledger cannot be
    opened (the caller skips writing: an unwritable cache only costs recompilation)."""

    def __init__(self, d: str | os.PathLike) -> None:
        self.dir = os.fspath(d)
        self.total = 0
        self.files = 0
        self.writes = 0
        self.records = 0
        self.pending = 0       # bytes of blocks of entries taken out, not yet unlinked
        self._fd = -1
        self._own = 0          # bytes of blocks the ledger itself uses (part of `total`)
        self._dirty = False

    # -- lock ---------------------------------------------------------------------------------
    def __enter__(self) -> Self:
        lock = _plock
        lock.acquire()
        try:
            self._open()
        except BaseException:
            lock.release()
            raise
        self._lock = lock
        return self

    def _open(self) -> None:
        flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(os.path.join(self.dir, LEDGER), flags, 0o600)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise OSError(errno.EINVAL, "cache ledger is not a regular file")
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as err:
                    # a file system without flock: exact within this process, reconciled
                    # by scans across processes
                    if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
            self._fd = fd
            st = os.fstat(fd)
            self._own = st.st_blocks * 512
            data = os.pread(fd, _REC.size, 0)
            if len(data) == _REC.size:
                magic, total, files, writes, records, pending, check = _REC.unpack(data)
                if (magic == _MAGIC and check == _check(data[:-8])
                        and _REC.size + records * _LOG.size <= st.st_size):
                    self.total, self.files, self.writes = total, files, writes
                    self.records, self.pending = records, pending
                    return
            self.reconcile()
        except BaseException:
            self._fd = -1
            os.close(fd)                              # never leave the lock held
            raise

    def __exit__(self, *exc: object) -> None:
        try:
            if self._dirty:
                self._write_header()
        finally:
            os.close(self._fd)               # releases the flock
            self._fd = -1
            self._lock.release()

    def _write_header(self) -> None:
        body = struct.pack("<8sQQQQQ", _MAGIC, max(self.total, 0), max(self.files, 0),
                           self.writes, self.records, max(self.pending, 0))
        os.pwrite(self._fd, body + _check(body), 0)

    def _own_changed(self) -> None:
        # the ledger grows with its log: its own blocks are part of the total
        own = os.fstat(self._fd).st_blocks * 512
        self.total += own - self._own
        self._own = own

    # -- accounting ---------------------------------------------------------------------------
    def added(self, old: int | None, new: int, path: str | None = None,
              mtime_ns: int = 0) -> None:
        """A file of `new` bytes of blocks replaced one of `old` (None: there was none); a
        cache entry's `path` and `mtime_ns` go into the write log (oldest pruned first)."""
        self.total += new - (old or 0)
        self.files += old is None
        self.writes += 1
        self._dirty = True
        ident = _entry_id(os.path.basename(path)) if path is not None else None
        if ident is not None:
            os.pwrite(self._fd, _LOG.pack(ident, mtime_ns),
                      _REC.size + self.records * _LOG.size)
            self.records += 1
            self._own_changed()

    def removed(self, blocks: int) -> None:
        """A file of `blocks` bytes of blocks was deleted."""
        self.total -= blocks
        self.files -= 1
        self._dirty = True

    def reconcile(self) -> None:
        """Replace the running figures by a full scan, rebuild the write log from the entries'
        mtimes and delete stale temporary files (crashed writers')."""
        mtimes, idents = array.array("q"), bytearray()
        total = files = pending = 0
        now = time.time_ns()
        with _reaper.cv:
            inflight = dict(_reaper.inflight)   # ours, unlinked or not: the reaper accounts them
        for b, m, path in scan(self.dir):
            name = os.path.basename(path)
            if name.endswith(_GONE):
                if path in inflight:
                    continue
                if now - m > STALE_SECONDS * 1e9 and _unlink(path):
                    continue                  # a crashed process's: nobody else will
                pending += b
                continue
            if name.endswith(".tmp"):
                if _unlink(path):
                    continue
            elif name == LEDGER:
                continue                      # counted below, at its new size
            total += b
            files += 1
            ident = _entry_id(name)
            if ident is not None:
                mtimes.append(m)
                idents += ident
        mt = np.frombuffer(mtimes, dtype=np.int64)
        order = np.argsort(mt, kind="stable")
        log = np.empty(len(order), dtype=_LOG_DTYPE)
        log["ident"] = np.frombuffer(bytes(idents), dtype="S16")[order]
        log["mtime"] = mt[order]
        self._rewrite_log(log.tobytes(), len(order))
        self.total, self.files, self.writes = total + self._own, files + 1, 0
        self.pending = pending + sum(b for p, b in inflight.items()
                                     if os.path.dirname(p) == self.dir)

    def _rewrite_log(self, log: bytes, records: int) -> None:
        self.records = records
        self._write_header()
        os.pwrite(self._fd, log, _REC.size)
        os.ftruncate(self._fd, _REC.size + len(log))
        self._dirty = True
        self._own_changed()

    def due(self) -> bool:
        """Whether enough writes went by since the last scan to pay for another one."""
        return self.writes >= max(RESCAN_WRITES, SCAN_EVERY * self.files)

    def make_room(self, limit: int, reserve: int) -> None:
        """When the entries and `reserve` more bytes pass 7/8 of `limit`, take the least
        recently written entries out of the cache down to 3/4 of it, for the background thread
        to unlink; when `reserve` and what is pending still do not fit under `limit`, unlink
        queued ones now (the pending ones count: the cap is on blocks used)."""
        out = []
        if self.total + reserve > limit * 7 // 8:
            out = self._take_out(limit * 3 // 4 - reserve, limit, reserve)
        out.reverse()
        while self.total + self.pending + reserve > limit:
            item = out.pop()[1:] if out else _reaper.take(self.dir)
            if item is None:
                break                         # being unlinked already: this write waits out
            _unlink(item[0])
            self.pending = max(self.pending - item[1], 0)
            self._dirty = True
        if out:
            _reaper.put(out[::-1])

    def _take_out(self, target: int, limit: int,
                  reserve: int) -> list[tuple[str, str, int]]:
        """Rename the oldest entries (by the write log) out of the cache until they use at most
        `target`; returns them (directory, new path, blocks), counted as pending."""
        t0 = time.perf_counter()
        n = self.records
        log = os.pread(self._fd, n * _LOG.size, _REC.size) if n else b""
        n = len(log) // _LOG.size
        used = 0
        out: list[tuple[str, str, int]] = []
        while used < n and self.total > target:
            ident, mt = _LOG.unpack_from(log, used * _LOG.size)
            used += 1
            p = os.path.join(self.dir, ident.hex() + _SUFFIX)
            try:
                st = os.stat(p, follow_symlinks=False)
            except OSError:
                continue                      # deleted since (discarded, pruned, by hand)
            if st.st_mtime_ns != mt or not stat.S_ISREG(st.st_mode):
                continue                      # written again since: a later record covers it
            # a rename frees nothing (cheap); the unlink that frees the blocks happens later
            gone = os.path.join(self.dir, f".{ident.hex()}-{os.getpid()}-{next(_gone_names)}"
                                          f"{_GONE}")
            try:
                os.rename(p, gone)
            except OSError:
                continue
            b = st.st_blocks * 512
            self.removed(b)
            self.pending += b
            out.append((self.dir, gone, b))
        self._rewrite_log(log[used * _LOG.size:], n - used)
        how = "write log"
        if self.total > target:               # entries the log does not know: scan for them
            self.total, self.files = prune(self.dir, limit, reserve)
            self.reconcile()
            how = "write log, then a full scan"
        self.writes, self._dirty = 0, True
        _log.debug("symcore: pruned the object cache %s (%s): %d entries taken out, %d records "
                   "read, %.3f s", self.dir, how, len(out), used, time.perf_counter() - t0)
        return out
