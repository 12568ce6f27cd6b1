"""Blocks used by one object-cache directory, shared by every process that writes to it: a
ledger file updated under an exclusive lock with each write and deletion, so the cache cap is
checked on every write without scanning the directory (scans are amortised: O(1) per write).

The ledger holds the bytes of blocks used (st_blocks * 512, the ledger's own block included),
the number of files and the writes since the last full scan.  Every writer holds the lock
(`flock` on the ledger; a process-wide lock besides, and alone where there is no `flock`) while
it stats, renames or deletes an entry and updates the ledger, so the total stays exact across
processes.  A missing or damaged ledger, or one written by a process that crashed mid-update,
is corrected by a full scan: at once when unreadable, else after `max(RESCAN_WRITES, files)`
writes (one stat per write amortised, whatever the directory holds).  Pruning deletes the least
recently written files (stale temporaries of crashed writers first, being over an hour old)
down to 3/4 of the cap in one go, in two streaming passes (no per-file objects kept).
"""

from __future__ import annotations

import array
import errno
import hashlib
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

__all__ = ["LEDGER", "RESCAN_WRITES", "Ledger", "prune", "scan", "used"]

#: the ledger's file name (not a cache entry: neither `.o` nor `.tmp`, never pruned)
LEDGER = "usage.ledger"
#: rescan the directory after at least this many writes (and at least as many as it has files)
RESCAN_WRITES = 256
#: a temporary file older than this is a crashed writer's: counted and pruned
STALE_SECONDS = 3600.0
_SUFFIX = ".o"
_MAGIC = b"SYMUSE01"
#: magic, bytes of blocks used, files, writes since the last scan, blake2b-8 of the rest
_REC = struct.Struct("<8sQQQ8s")

_plock = threading.Lock()


def _reset_lock() -> None:
    # a fork while another thread held the lock must not leave the child deadlocked
    global _plock
    _plock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_lock)


def _check(body: bytes) -> bytes:
    return hashlib.blake2b(body, digest_size=8).digest()


def scan(d: str | os.PathLike) -> Iterator[tuple[int, int, str]]:
    """(bytes of blocks, mtime in ns, path) of every cache file, the ledger and every stale
    temporary file (a crashed writer's) in `d`, streamed."""
    now = time.time_ns()
    try:
        it = os.scandir(d)
    except OSError:
        return
    with it:
        for e in it:
            name = e.name
            tmp = name.endswith(".tmp")
            if not (name.endswith(_SUFFIX) or tmp or name == LEDGER):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if not tmp or now - st.st_mtime_ns > STALE_SECONDS * 1e9:
                yield st.st_blocks * 512, st.st_mtime_ns, e.path


def used(d: str | os.PathLike) -> int:
    """Bytes of blocks the files of `d` that the cache counts use (a full scan)."""
    return sum(b for b, _, _ in scan(d))


def prune(d: str | os.PathLike, limit: int, reserve: int = 0) -> tuple[int, int]:
    """When the files of `d` and `reserve` more bytes would pass `limit`, delete the least
    recently written files until they fit in 3/4 of `limit`; returns (bytes used, files)."""
    blocks, mtimes = array.array("q"), array.array("q")
    total = files = 0
    for b, m, path in scan(d):
        total += b
        files += 1
        if os.path.basename(path) != LEDGER:
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
        if m > cutoff or os.path.basename(path) == LEDGER:
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


class Ledger:
    """`with Ledger(d) as led:` the usage of cache directory `d`, locked against every other
    writer until the block ends (then written back).  Raises OSError when the ledger cannot be
    opened (the caller skips writing: an unwritable cache only costs recompilation)."""

    def __init__(self, d: str | os.PathLike) -> None:
        self.dir = os.fspath(d)
        self.total = 0
        self.files = 0
        self.writes = 0
        self._fd = -1
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
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "cache ledger is not a regular file")
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                except OSError as err:
                    # a file system without flock: exact within this process, reconciled
                    # by scans across processes
                    if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                        raise
            data = os.pread(fd, _REC.size, 0)
            if len(data) == _REC.size:
                magic, total, files, writes, check = _REC.unpack(data)
                if magic == _MAGIC and check == _check(data[:-8]):
                    self.total, self.files, self.writes = total, files, writes
                    self._fd = fd
                    return
            if len(data) < _REC.size:
                os.pwrite(fd, bytes(_REC.size), 0)    # so the scan sees the ledger's own block
            self.reconcile()
        except BaseException:
            os.close(fd)                              # never leave the lock held
            raise
        self._fd = fd

    def __exit__(self, *exc: object) -> None:
        try:
            if self._dirty:
                body = struct.pack("<8sQQQ", _MAGIC, max(self.total, 0), max(self.files, 0),
                                   self.writes)
                os.pwrite(self._fd, body + _check(body), 0)
        finally:
            os.close(self._fd)               # releases the flock
            self._fd = -1
            self._lock.release()

    # -- accounting ---------------------------------------------------------------------------
    def added(self, old: int | None, new: int) -> None:
        """A file of `new` bytes of blocks replaced one of `old` (None: there was none)."""
        self.total += new - (old or 0)
        self.files += old is None
        self.writes += 1
        self._dirty = True

    def removed(self, blocks: int) -> None:
        """A file of `blocks` bytes of blocks was deleted."""
        self.total -= blocks
        self.files -= 1
        self._dirty = True

    def reconcile(self) -> None:
        """Replace the running figures by a full scan."""
        total = files = 0
        for b, _, _ in scan(self.dir):
            total += b
            files += 1
        self.total, self.files, self.writes, self._dirty = total, files, 0, True

    def due(self) -> bool:
        """Whether enough writes went by since the last scan to pay for another one."""
        return self.writes >= max(RESCAN_WRITES, self.files)

    def make_room(self, limit: int, reserve: int) -> None:
        """Prune (down to 3/4 of `limit`) when `reserve` more bytes would pass `limit`."""
        if self.total + reserve > limit:
            self.total, self.files = prune(self.dir, limit, reserve)
            self.writes, self._dirty = 0, True
