"""The object cache's key index (a structure key -> the 16-byte id of the object holding its
code) on disk: one preallocated file per cache directory, a fixed table of checksummed slots,
instead of one file per key (each a block of its own, written and later unlinked: ~70x the file
churn of the objects themselves in a compile loop).

Layout: a header (magic, buckets, ways, identity digest, blake2b-8 of these), then `buckets`
buckets of `WAYS` slots.  A slot is blake2b-128 of the key, the value, the write time (ns) and a
blake2b-8 of those keyed by the identity (all zero: empty).  A key lives in bucket
`hash % buckets`; a write takes the key's own slot, else an empty or damaged one, else the
bucket's oldest (evicted: costs a recompile).  The table's size is fixed when it is created,
`table_bytes(cap)`: 1/16 of the cache cap, at most 32 MB, allocated at once and counted in the
directory's ledger like an entry (never pruned), so the index is bounded by construction.

Writers hold the file's flock (and a process lock) for a batch; readers take none: a slot read
half-written fails its checksum and is read again under a shared lock.  A slot still failing it
is skipped (reported once) and reused by the next write; a header that is damaged, of another
identity or size, a file not ours, or anything but a regular file in its place is discarded and
the table recreated empty.  What an entry names is verified again where it is used (the object's
own checksum, then its symbols), so a wrong entry costs a recompile, never a wrong result.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import struct
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence

from symcore.codegen.llvm.disk_usage import INDEX, Ledger, remove

try:
    import fcntl
except ImportError:  # pragma: no cover - no flock (Windows): the process-wide lock only
    fcntl = None  # type: ignore[assignment]

__all__ = ["IndexFile", "table_bytes", "WAYS", "SLOT", "HEADER", "INDEX_MAX", "INDEX_FRACTION"]

_MAGIC = b"SYMIDX01"
#: magic, buckets, ways, identity digest (16), blake2b-8 of the rest
_HEAD = struct.Struct("<8sII16s8s")
#: the header's room (the table starts here)
HEADER = 64
#: key digest (16), value (16), write time in ns, blake2b-8 keyed by the identity
_SLOT = struct.Struct("<16s16sq8s")
SLOT = _SLOT.size
#: slots per bucket (a bucket is read with one pread)
WAYS = 8
_BUCKET = SLOT * WAYS
#: the table takes this fraction of the cache cap, at most `INDEX_MAX` bytes, at least 4 buckets
INDEX_FRACTION = 16
INDEX_MAX = 32 << 20
_MIN_BUCKETS = 4
_EMPTY = bytes(SLOT)

#: values are this long (an object id)
VALUE = 16

Report = Callable[[str, str], None]


def table_bytes(limit: int) -> int:
    """Bytes of the index file a cache capped at `limit` bytes creates (0: too small for one)."""
    n = (min(limit // INDEX_FRACTION, INDEX_MAX) - HEADER) // _BUCKET
    return HEADER + n * _BUCKET if n >= _MIN_BUCKETS else 0


def _digest(key: str) -> bytes:
    return hashlib.blake2b(key.encode(), digest_size=16).digest()


def _head(buckets: int, ident: bytes) -> bytes:
    body = struct.pack("<8sII16s", _MAGIC, buckets, WAYS, ident)
    return body + hashlib.blake2b(body, digest_size=8).digest()


class IndexFile:
    """The key index of one process: the open table (reopened when the directory, the file or
    the process changes).  `get`/`put` return None/False when no table can be used here (the
    caller keeps entries in memory instead)."""

    def __init__(self, identity: Callable[[], bytes], report: Report,
                 untrusted: Callable[[os.stat_result], str]) -> None:
        self._identity = identity          # 16 bytes naming the compiler and machine
        self._report = report
        self._untrusted = untrusted
        self._lock = threading.Lock()
        self._fd = -1
        self._path = ""
        self._node: tuple[int, int] = (0, 0)
        self._pid = 0
        self._buckets = 0
        self._ident = b""
        _STORES.add(self)

    def __del__(self) -> None:
        self._close()

    def _after_fork(self) -> None:
        # the parent's descriptor shares its flock with the parent: the child opens its own
        self._lock = threading.Lock()
        self._close()

    # -- public -------------------------------------------------------------------------------
    def get(self, d: str | os.PathLike, keys: Sequence[str]) -> dict[str, bytes] | None:
        """{key: value} for the keys of `keys` in directory `d`'s table ({} when it has none
        yet); None when the table there cannot be used."""
        with self._lock:
            state = self._ready(os.fspath(d), 0)
            if state != "ok":
                return {} if state == "missing" else None
            out: dict[str, bytes] = {}
            try:
                for k in keys:
                    h = _digest(k)
                    off = self._offset(h)
                    v = self._find(os.pread(self._fd, _BUCKET, off), h)
                    if v is False:              # half-written, maybe: again, under the lock
                        v = self._locked_read(off, h)
                    if isinstance(v, bytes):
                        out[k] = v
            except OSError:
                self._close()
                return None
            return out

    def put(self, d: str | os.PathLike, limit: int,
            pairs: Iterable[tuple[str, bytes]]) -> bool:
        """Write the (key, 16-byte value) pairs into directory `d`'s table, creating it (within
        the cap `limit`) if needed; False when no table can be used there."""
        by_bucket: dict[int, list[tuple[bytes, bytes]]] = {}
        with self._lock:
            state = self._ready(os.fspath(d), limit)
            if state != "ok":
                return False
            for k, v in pairs:
                if len(v) != VALUE:
                    raise ValueError(f"index values are {VALUE} bytes, got {len(v)}")
                h = _digest(k)
                by_bucket.setdefault(self._offset(h), []).append((h, v))
            try:
                self._flock(True)
                try:
                    for off in sorted(by_bucket):
                        self._write_bucket(off, by_bucket[off])
                finally:
                    self._funlock()
            except OSError:
                self._close()
                return False
            return True

    # -- table --------------------------------------------------------------------------------
    def _offset(self, h: bytes) -> int:
        return HEADER + int.from_bytes(h[8:], "little") % self._buckets * _BUCKET

    def _check(self, body: bytes) -> bytes:
        return hashlib.blake2b(body, digest_size=8, key=self._ident).digest()

    def _find(self, bucket: bytes, h: bytes) -> bytes | None | bool:
        """The value under digest `h` in `bucket`; None when absent; False when its slot fails
        its checksum."""
        bad = False
        for i in range(0, len(bucket) - SLOT + 1, SLOT):
            if bucket[i:i + 16] != h:
                continue
            _, v, _, check = _SLOT.unpack_from(bucket, i)
            if check == self._check(bucket[i:i + SLOT - 8]):
                return v
            bad = True
        return False if bad else None

    def _locked_read(self, off: int, h: bytes) -> bytes | None:
        self._flock(False)
        try:
            v = self._find(os.pread(self._fd, _BUCKET, off), h)
        finally:
            self._funlock()
        if v is False:
            self._damaged_slot()
            return None
        return v

    def _damaged_slot(self) -> None:
        self._report("damaged", f"symcore: skipped a damaged entry of the cache index "
                                f"{self._path}; recompiling")

    def _write_bucket(self, off: int, items: list[tuple[bytes, bytes]]) -> None:
        data = bytearray(os.pread(self._fd, _BUCKET, off).ljust(_BUCKET, b"\0"))
        slots = [bytes(data[i:i + SLOT]) for i in range(0, _BUCKET, SLOT)]
        now = time.time_ns()
        for h, v in items:
            free = old = -1
            old_t = 0
            own = -1
            for j, s in enumerate(slots):
                if s == _EMPTY:
                    free = j if free < 0 else free
                    continue
                sh, _, t, check = _SLOT.unpack(s)
                if check != self._check(s[:-8]):
                    self._damaged_slot()
                    slots[j] = _EMPTY           # reused like an empty one
                    free = j if free < 0 else free
                    continue
                if sh == h:
                    own = j
                elif old < 0 or t < old_t:
                    old, old_t = j, t
            j = own if own >= 0 else free if free >= 0 else old
            body = struct.pack("<16s16sq", h, v, now)
            slots[j] = body + self._check(body)
        os.pwrite(self._fd, b"".join(slots), off)

    # -- file ---------------------------------------------------------------------------------
    def _flock(self, exclusive: bool) -> None:
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            except OSError as err:
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise

    def _funlock(self) -> None:
        if fcntl is not None:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
            except OSError:
                pass

    def _close(self) -> None:
        if self._fd >= 0:
            try:
                os.close(self._fd)
            except OSError:
                pass
        self._fd, self._path, self._node = -1, "", (0, 0)

    def _ready(self, d: str, limit: int) -> str:
        """"ok" (the table of `d` is open), "missing" (none, and `limit` is 0: not creating
        one) or "unusable"."""
        p = os.path.join(d, INDEX)
        if self._fd >= 0 and self._path == p and self._pid == os.getpid():
            try:
                st = os.stat(p, follow_symlinks=False)
                if ((st.st_dev, st.st_ino) == self._node
                        and st.st_size == HEADER + self._buckets * _BUCKET
                        and (not limit or st.st_size <= limit // 8)):
                    return "ok"
            except OSError:
                pass
        self._close()
        for _ in range(3):       # another process may replace the file meanwhile
            state = self._open(p, limit)
            if state != "missing" or not limit:
                return state
            state = self._create(d, p, limit)
            if state != "missing":
                return state
        return "unusable"

    def _open(self, p: str, limit: int) -> str:
        try:
            fd = os.open(p, os.O_RDWR | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return "missing"
        except OSError as err:           # a directory, a symlink, unreadable
            return self._discard(p, "damaged", f"unusable ({err.strerror})")
        try:
            st = os.fstat(fd)
            why = self._untrusted(st)
            if why:
                os.close(fd)
                return self._discard(p, "untrusted", why)
            if not stat.S_ISREG(st.st_mode):
                os.close(fd)
                return self._discard(p, "damaged", "not a regular file")
            why = self._verify(os.pread(fd, _HEAD.size, 0), st.st_size)
            if not why and limit and st.st_size > limit // 8:
                # made under a cap over 2x this one: not damage, remade for this cap silently
                # (a larger cap never removes a smaller table, so processes do not alternate)
                os.close(fd)
                remove(p)
                return "missing"
        except OSError as err:
            os.close(fd)
            return self._discard(p, "damaged", f"unreadable ({err.strerror})")
        if why:
            os.close(fd)
            return self._discard(p, "damaged", why)
        self._fd, self._path, self._node, self._pid = fd, p, (st.st_dev, st.st_ino), os.getpid()
        return "ok"

    def _verify(self, head: bytes, size: int) -> str:
        """Why a table with this header and file size cannot be used ("" when it can)."""
        if len(head) < _HEAD.size:
            return "truncated header"
        magic, buckets, ways, ident, check = _HEAD.unpack(head)
        if magic != _MAGIC or check != hashlib.blake2b(head[:-8], digest_size=8).digest():
            return "not a symcore cache index, or its header is damaged"
        if ident != self._identity():
            return "made for another compiler or CPU"
        if ways != WAYS or buckets < 1 or size != HEADER + buckets * _BUCKET:
            return "wrong size (truncated or extended)"
        self._buckets, self._ident = buckets, ident
        return ""

    def _discard(self, p: str, kind: str, why: str) -> str:
        """Remove what is at `p`: "missing" when it is gone, else "unusable"."""
        self._report(kind, f"symcore: discarded the cache index {p} ({why}); recompiling")
        try:
            if os.path.isdir(p) and not os.path.islink(p):
                os.rmdir(p)                   # an empty one only: never a tree of files
            else:
                remove(p)
        except OSError:
            pass
        return "unusable" if os.path.lexists(p) else "missing"

    def _create(self, d: str, p: str, limit: int) -> str:
        """A new empty table at `p`, made in a temporary file (the blocks allocated at once) and
        renamed into place when the cap has room for it: "ok", "missing" (another process made
        one meanwhile: open that) or "unusable"."""
        size = table_bytes(limit)
        if not size:
            return "unusable"
        ident = self._identity()
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".", suffix=".tmp")
        except OSError:
            return "unusable"
        keep = False
        try:
            os.pwrite(fd, _head((size - HEADER) // _BUCKET, ident).ljust(HEADER, b"\0"), 0)
            _allocate(fd, size)
            st = os.fstat(fd)
            new = st.st_blocks * 512
            with Ledger(d) as led:
                if os.path.lexists(p):
                    return "missing"
                led.make_room(limit, new)
                if led.total + led.pending + new > limit:
                    return "unusable"
                os.rename(tmp, p)
                led.added(None, new, p, st.st_mtime_ns)
            keep = True
        except OSError:
            return "unusable"
        finally:
            if not keep:
                os.close(fd)
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
        self._buckets, self._ident = (size - HEADER) // _BUCKET, ident
        self._fd, self._path, self._node, self._pid = fd, p, (st.st_dev, st.st_ino), os.getpid()
        return "ok"


_STORES: "weakref.WeakSet[IndexFile]" = weakref.WeakSet()


def _after_fork() -> None:
    for store in list(_STORES):
        store._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork)


def _allocate(fd: int, size: int) -> None:
    """Give the file `size` bytes of blocks now (zeros: empty slots)."""
    try:
        os.posix_fallocate(fd, 0, size)
        return
    except (AttributeError, OSError):
        pass
    zeros = bytes(1 << 20)
    off = os.fstat(fd).st_size
    while off < size:
        off += os.pwrite(fd, zeros[:min(len(zeros), size - off)], off)
