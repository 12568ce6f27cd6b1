"""The one object-code cache: `get_or_compile(key, build)` in front of an in-memory LRU and an
on-disk directory whose every file is verified (checksum, compiler identity, key) before use.

On disk (`$SYMCORE_CACHE`, default ~/.cache/symcore; empty string = memory only), one
subdirectory per machine identity, one file per key: a fixed header (magic, identity length,
payload length, blake2b-256 over identity and payload), the identity (llvmlite and LLVM versions,
CPU name and features, `CODEGEN_VERSION`, the key itself), then the payload.  A file that fails
any check (truncated, flipped bits, garbage, another key's or machine's entry, unreadable) is
deleted and reported once per process; the caller recompiles and the entry is rewritten.

Loading object code is running it: a cache directory or file owned by another user, or
writable by group or others, is never read or written (warned once; code is compiled in memory),
as Python refuses untrusted bytecode.  Writes go to a temporary file renamed into place, so
concurrent processes see a whole entry or none.  `$SYMCORE_CACHE_MAX_MB` (default 512, may be
fractional) caps the blocks the directory uses (st_blocks, not apparent size): checked before
every write against the directory's ledger, an exact running total shared by every process
(`llvm.disk_usage`), so no write costs a scan of the directory; from 7/8 of the cap the least
recently written entries are taken out, down to 3/4 of it, and unlinked by a background thread
(their blocks count toward the cap until then).

Beside the entries, one key index per directory (`index_get`/`index_put`: a structure key ->
the 16-byte id of the object holding its kernel, for tier 1) lives in one file, `keys.index`: a
fixed table of checksummed slots (`llvm.index_store`), 1/16 of the cap and at most 32 MB,
allocated when it is created and counted toward the cap; a full bucket drops its oldest entry,
an entry whose object is gone is overwritten when that kernel is compiled again.  Memory only
(or where no table can be used: untrusted, a cap too small for one, something else in its
place), index entries live in the in-memory LRU like objects.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import stat
import struct
import tempfile
import threading
import warnings
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Literal, Sequence

from symcore.codegen.llvm import host
from symcore.codegen.llvm.disk_usage import Ledger, blocks, prune, remove, used
from symcore.codegen.llvm.index_store import IndexFile

__all__ = ["get_or_compile", "object_cache", "ObjectCache", "cache_dir", "disk_limit",
           "CacheWarning", "CODEGEN_VERSION", "MEMORY_CAPACITY"]

#: bump when the generated code or the file format changes meaning
CODEGEN_VERSION = "2"

_MAGIC = b"SYMCORE\x00OBJ\x00v2"
#: magic, identity length, payload length, blake2b-256(identity + payload)
_HEAD = struct.Struct(f"<{len(_MAGIC)}sIQ32s")
_SUFFIX = ".o"

_log = logging.getLogger("symcore.cache")

Memory = Literal["always", "without_disk"]


#: bytes an in-memory cache entry costs besides its payload (key string, bytes header, node)
_ENTRY_OVERHEAD = 256
#: default size of the in-memory tier (payloads plus overhead).  It only saves re-reading a
#: verified file (or recompiling, when the disk cache is off) for code that was unloaded: the
#: live libraries hold what runs.  Was 16 MB, which a compile loop took ~2 minutes to fill
#: (bench_soak counted it as growth); 4 MB holds ~30 populations of 200 new structures.
MEMORY_CAPACITY = 4 << 20

class CacheWarning(RuntimeWarning):
    """A cache entry was damaged (and recompiled), or a cache directory is not trusted."""


_warned: set[str] = set()
_warn_lock = threading.Lock()


def _report(kind: str, msg: str) -> None:
    """Log every event at debug level; warn once per process and kind."""
    _log.debug(msg)
    with _warn_lock:
        if kind in _warned:
            return
        _warned.add(kind)
    _log.warning(msg)
    warnings.warn(msg, CacheWarning, stacklevel=4)


@functools.lru_cache(maxsize=None)
def _machine_key() -> str:
    return hashlib.blake2b(f"{host.identity()}|{CODEGEN_VERSION}".encode(),
                           digest_size=8).hexdigest()


def cache_dir() -> Path | None:
    """On-disk cache directory: `$SYMCORE_CACHE` or ~/.cache/symcore (empty string = disabled),
    one subdirectory per machine identity."""
    env = os.environ.get("SYMCORE_CACHE")
    if env is not None and env.strip() == "":
        return None
    base = Path(env) if env else Path.home() / ".cache" / "symcore"
    return base / _machine_key()


def disk_limit() -> int:
    """`$SYMCORE_CACHE_MAX_MB` (default 512) in bytes."""
    env = os.environ.get("SYMCORE_CACHE_MAX_MB", "").strip()
    try:
        mb = float(env) if env else 512.0
    except ValueError:
        mb = 512.0
    return int(max(mb, 0.0) * (1 << 20))


#: in-memory key prefix of index entries (memory-only mode)
_IDX = "idx|"


def _index_identity() -> bytes:
    """What the key index's header carries: the machine and code generator identity."""
    return hashlib.blake2b(f"{host.identity()}|codegen {CODEGEN_VERSION}|index".encode(),
                           digest_size=16).digest()


def _identity(key: str) -> bytes:
    return f"{host.identity()}|codegen {CODEGEN_VERSION}|{key}".encode()


def _digest(ident: bytes, payload: bytes) -> bytes:
    h = hashlib.blake2b(digest_size=32)
    h.update(ident)
    h.update(payload)
    return h.digest()


def encode(key: str, payload: bytes) -> bytes:
    """The file contents for `payload` under `key`."""
    ident = _identity(key)
    return _HEAD.pack(_MAGIC, len(ident), len(payload), _digest(ident, payload)) + ident + payload


def decode(key: str, data: bytes) -> tuple[bytes | None, str]:
    """(payload, "") when `data` is a whole, intact entry for `key` made under this identity,
    else (None, why)."""
    if len(data) < _HEAD.size:
        return None, "truncated header"
    magic, n_ident, n_payload, digest = _HEAD.unpack_from(data)
    if magic != _MAGIC:
        return None, "not a symcore cache entry"
    if len(data) != _HEAD.size + n_ident + n_payload:
        return None, "length mismatch (truncated or extended)"
    ident = data[_HEAD.size:_HEAD.size + n_ident]
    payload = data[_HEAD.size + n_ident:]
    if ident != _identity(key):
        return None, "made for another key, compiler or CPU"
    if _digest(ident, payload) != digest:
        return None, "checksum mismatch"
    return payload, ""


def _untrusted(st: os.stat_result) -> str:
    """Why a directory or file with this status must not be loaded from ("" when trusted)."""
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return f"owned by uid {st.st_uid}"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return "writable by group or others"
    return ""


class ObjectCache:
    """Object code keyed by a string: an in-memory LRU in front of the verified on-disk
    directory.  Keys must include everything the code depends on except the machine identity
    (which the directory and every file's header carry)."""

    def __init__(self, capacity_bytes: int = MEMORY_CAPACITY) -> None:
        self.capacity_bytes = capacity_bytes
        self._mem: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._index = IndexFile(_index_identity, _report, _untrusted)

    # -- directory --------------------------------------------------------------------------
    def _dir(self, create: bool) -> Path | None:
        """The trusted cache directory (created if asked), or None (disabled or untrusted)."""
        d = cache_dir()
        if d is None:
            return None
        try:
            if create:
                d.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                d.mkdir(exist_ok=True, mode=0o700)
            st_base, st = d.parent.stat(), d.stat()
        except OSError:
            return None
        for p, s in ((d.parent, st_base), (d, st)):
            why = _untrusted(s)
            if why:
                _report("untrusted", f"symcore: not using the object cache {p} ({why}); "
                                     f"compiling in memory")
                return None
        return d

    @staticmethod
    def _name(key: str) -> str:
        return hashlib.blake2b(key.encode(), digest_size=16).hexdigest() + _SUFFIX

    @classmethod
    def _file(cls, d: Path, key: str) -> str:
        # a str, not a Path: pathlib interns every path component it parses, and on
        # Python 3.12 an interned string is immortal (one leaked name per key, ~25 KB per
        # population of 200 new structures in bench_soak)
        return os.path.join(os.fspath(d), cls._name(key))

    def _read(self, key: str) -> bytes | None:
        d = self._dir(create=False)
        if d is None:
            return None
        p = self._file(d, key)
        try:
            fd = os.open(p, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except FileNotFoundError:
            return None
        except OSError as err:
            self._discard_file(p, f"unreadable ({err.strerror})")
            return None
        try:
            st = os.fstat(fd)
            why = _untrusted(st) or ("" if stat.S_ISREG(st.st_mode) else "not a regular file")
            if why:
                _report("untrusted", f"symcore: not loading cache file {p} ({why})")
                return None
            with os.fdopen(fd, "rb", closefd=False) as f:
                data = f.read()
        except OSError as err:
            self._discard_file(p, f"unreadable ({err.strerror})")
            return None
        finally:
            os.close(fd)
        payload, why = decode(key, data)
        if payload is None:
            self._discard_file(p, why)
        return payload

    def _discard_file(self, p: str, why: str) -> None:
        _report("damaged", f"symcore: discarded damaged cache file {p} ({why}); recompiling")
        remove(p)

    def _write(self, key: str, payload: bytes) -> None:
        d = self._dir(create=True)
        if d is None:
            return
        p = self._file(d, key)
        limit = disk_limit()
        try:
            fd, tmp = tempfile.mkstemp(dir=d, prefix=".", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(encode(key, payload))
                    f.flush()
                    st = os.fstat(f.fileno())   # a rename keeps blocks and mtime
                new = st.st_blocks * 512
                # the cap holds before the entry appears: room is made first (an entry larger
                # than the whole cap is not kept); stat, rename and the ledger update happen
                # under the ledger's lock, so concurrent writers keep the total exact
                with Ledger(d) as led:
                    old = blocks(p, missing=None)
                    if new <= limit:
                        led.make_room(limit, new - (old or 0))
                        old = blocks(p, missing=None)       # pruned, maybe
                    if led.total + led.pending + new - (old or 0) <= limit:
                        os.replace(tmp, p)   # atomic: others see the old entry or this one
                        led.added(old, new, p, st.st_mtime_ns)
                        if led.due():
                            led.reconcile()
                    else:
                        os.unlink(tmp)
            except BaseException:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
                raise
        except OSError:
            return  # an unwritable cache only costs recompilation

    # -- public -----------------------------------------------------------------------------
    def get(self, key: str, memory: Memory = "always") -> bytes | None:
        """The verified payload under `key` (memory, then disk), or None.  `memory`: keep an
        entry read from disk in memory "always" or only "without_disk" (never, then)."""
        with self._lock:
            obj = self._mem.get(key)
            if obj is not None:
                self._mem.move_to_end(key)
                return obj
        obj = self._read(key)
        if obj is not None and memory == "always":
            self._remember(key, obj)
        return obj

    def put(self, key: str, obj: bytes, memory: Memory = "always") -> None:
        """Store `obj` under `key` on disk and in memory; with memory="without_disk", in
        memory only when there is no (trusted) disk directory.  Entries that many keys have
        (tier-1 kernel objects) use that: thousands of long-lived objects in memory pin
        Python's allocator arenas (measured: RSS kept growing in bench_soak)."""
        if memory == "always" or self._dir(create=False) is None:
            self._remember(key, obj)
        self._write(key, obj)

    def index_get(self, keys: Sequence[str]) -> dict[str, bytes]:
        """{key: 16-byte value} for the keys found in the key index (memory, then the disk
        table); a missing or damaged entry is simply absent."""
        out: dict[str, bytes] = {}
        rest: list[str] = []
        with self._lock:
            for k in keys:
                v = self._mem.get(_IDX + k)
                if v is None:
                    rest.append(k)
                else:
                    self._mem.move_to_end(_IDX + k)
                    out[k] = v
        d = self._dir(create=False) if rest else None
        if d is not None:
            out.update(self._index.get(d, rest) or {})
        return out

    def index_put(self, pairs: Sequence[tuple[str, bytes]]) -> None:
        """Index (key, 16-byte value) pairs: in the directory's table, or in memory when there
        is none that can be used."""
        d = self._dir(create=True)
        if d is None or not self._index.put(d, disk_limit(), pairs):
            for k, v in pairs:
                self._remember(_IDX + k, v)

    def discard(self, key: str) -> None:
        """Forget `key` in memory and on disk (a verified entry that still failed to load)."""
        with self._lock:
            old = self._mem.pop(key, None)
            if old is not None:
                self._bytes -= len(old) + _ENTRY_OVERHEAD
        d = self._dir(create=False)
        if d is not None:
            remove(self._file(d, key))

    def _remember(self, key: str, obj: bytes) -> None:
        with self._lock:
            old = self._mem.pop(key, None)
            # an entry costs its payload plus the dict node, key and bytes header: counting
            # the payload alone let ~32-byte index entries take ~10x their budget
            self._bytes += len(obj) + _ENTRY_OVERHEAD - (
                len(old) + _ENTRY_OVERHEAD if old is not None else 0)
            self._mem[key] = obj
            while self._bytes > self.capacity_bytes and len(self._mem) > 1:
                _, dropped = self._mem.popitem(last=False)
                self._bytes -= len(dropped) + _ENTRY_OVERHEAD

    @property
    def memory_bytes(self) -> int:
        """Bytes of object code held in memory (bounded by `capacity_bytes`)."""
        return self._bytes

    def clear_memory(self) -> None:
        with self._lock:
            self._mem.clear()
            self._bytes = 0


def _used(d: Path | str) -> int:
    """Bytes of blocks the cache files in `d` use (a full scan)."""
    return used(d)


def _prune(d: Path | str, limit: int) -> int:
    """Delete the least recently written cache files until `d` uses at most 3/4 of `limit`
    bytes of blocks (when it uses more than `limit`); returns the blocks still used."""
    return prune(d, limit)[0]


@functools.lru_cache(maxsize=None)
def object_cache() -> ObjectCache:
    """The process-wide object-code cache."""
    return ObjectCache()


def get_or_compile(key: str, build: Callable[[], bytes], memory: Memory = "always") -> bytes:
    """The object code under `key`: from memory, else from a verified disk entry, else
    `build()` (then cached on disk, and in memory as `memory` says: see `ObjectCache.put`)."""
    cache = object_cache()
    obj = cache.get(key, memory)
    if obj is None:
        obj = build()
        cache.put(key, obj, memory)
    return obj
