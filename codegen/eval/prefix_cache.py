"""The native fitness cache of prefix programs (`Session.score_prefix`): programs keyed by the
addresses of their token objects, looked up in native code that reads the CPython list/tuple
objects directly, so a program seen before costs no Python work per token.

A table entry holds (a strong reference to) the token tuple it was scored for, so while it
lives its token addresses name those very objects: address equality is the identity the
cache requires for a hit (1, 1.0, True, 0.0 and -0.0 are other objects, hence other keys).
Reading object memory is guarded: CPython only, GIL build only, the list/tuple layout checked
at first use on known objects and then by running the lookup on them; the native functions are
called with the GIL held (ctypes.PYFUNCTYPE: no thread mutates a list during a read), check
the type of every container (exactly list or tuple; anything else is left to the caller) and
read only the tuples the table itself holds.

The held tuples are taken off the collector's list (PyObject_GC_UnTrack, what CPython does itself
for tuples of atomic items): they are referenced only from the table's object array, which the
collector does not traverse, so it could never free them or a cycle through them anyway; tracked,
every entry would survive into the oldest generation and make the interpreter's full collections
(over the whole heap of the search that calls us) start sooner and cost more.  The native half (prefix_cache_emit.py) is
generated with llvmlite, compiled once and cached on disk like the tape packer.
"""

from __future__ import annotations

import ctypes
import sys
import sysconfig
import threading
from collections import deque
from typing import Any, Sequence

import numpy as np

from symcore.codegen.eval.prefix_cache_emit import EMPTY, LAYOUT, emit_module
from symcore.codegen.llvm import cache as _cache
from symcore.codegen.llvm import jit as _jit

__all__ = ["available", "PrefixCache"]

_VERSION = "pc-3"
_OB_TYPE, _OB_SIZE, _LIST_ITEMS, _TUPLE_ITEMS = LAYOUT
_EMPTY = EMPTY
#: bytes of a tuple besides its items
_TUPLE_HEAD = tuple.__basicsize__ + 16     # the collector's header
#: the fewest cells of a table
_MIN_TABLE = 1024

_P = ctypes.c_void_p
_L = ctypes.c_int64
# PYFUNCTYPE: the GIL stays held during the call (no Python thread runs, so no list changes
# under the reader)
_LOOKUP_T = ctypes.PYFUNCTYPE(None, ctypes.py_object, _L, _L, _L, _P, _L, _P, _P, _P, _P, _P,
                              _P, _P, _P, _P, _P, _P, _P, _P, _P, _L, _P)
_INSERT_T = ctypes.PYFUNCTYPE(None, _P, _P, _P, _L, _P, _L, _P, _P, _P, _L, _P, _P)
_RELEASE_T = ctypes.PYFUNCTYPE(None, _P, _L, _P, _L, _P, _P, _P, _P)
_REBUILD_T = ctypes.PYFUNCTYPE(None, _P, _L, _P, _P, _L)
_LOCK = threading.Lock()
_STATE: dict[str, Any] = {}
_untrack = ctypes.pythonapi.PyObject_GC_UnTrack
_untrack.argtypes = [ctypes.py_object]
_untrack.restype = None


def _word(addr: int) -> int:
    return ctypes.c_int64.from_address(addr).value


def _layout_ok() -> bool:
    """The interpreter's list/tuple layout is the one the native code reads, checked on known
    objects, reading only inside them (their basic sizes first)."""
    if sys.implementation.name != "cpython" or ctypes.sizeof(ctypes.c_void_p) != 8:
        return False
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return False
    gil = getattr(sys, "_is_gil_enabled", None)
    if gil is not None and not gil():
        return False
    # refcount, type, size, then the item pointer and allocated count (list) / items (tuple)
    if (list.__basicsize__, tuple.__basicsize__, tuple.__itemsize__) != (40, 24, 8):
        return False
    a, c, d = object(), 1.5, "x"
    lst, tup = [a, c, d], (a, c, d)
    want = [id(a), id(c), id(d)]
    if (_word(id(lst) + _OB_TYPE), _word(id(lst) + _OB_SIZE)) != (id(list), 3):
        return False
    if (_word(id(tup) + _OB_TYPE), _word(id(tup) + _OB_SIZE)) != (id(tuple), 3):
        return False
    if [_word(id(tup) + _TUPLE_ITEMS + 8 * k) for k in range(3)] != want:
        return False
    # a list's allocated count (after ob_item) must agree with its reported size before its
    # item pointer is followed
    alloc = _word(id(lst) + _LIST_ITEMS + 8)
    if not 3 <= alloc == (sys.getsizeof(lst) - sys.getsizeof([])) // 8:
        return False
    items = _word(id(lst) + _LIST_ITEMS)
    return bool(items) and [_word(items + 8 * k) for k in range(3)] == want


def _functions() -> dict[str, Any] | None:
    """The compiled functions, or None where the layout check or the self-test failed."""
    with _LOCK:
        if "fns" not in _STATE:
            _STATE["fns"] = None
            if _layout_ok():
                src = _jit.source_hash("eval/prefix_cache.py", "eval/prefix_cache_emit.py")
                key = f"prefix-cache|{_VERSION}|{src}"
                obj = _cache.get_or_compile(key, lambda: _jit.compile_object(
                    str(emit_module()), opt_ir=2, opt_codegen=2))
                names = ["pc_lookup", "pc_insert", "pc_release", "pc_rebuild"]
                lib = _jit.load_library([obj], names)
                fns = {"lib": lib}
                for nm, t in zip(names, (_LOOKUP_T, _INSERT_T, _RELEASE_T, _REBUILD_T)):
                    fns[nm] = t(lib.addresses[nm])
                _STATE["fns"] = fns
                if not _self_test():
                    _STATE["fns"] = None
        return _STATE["fns"]


def _self_test() -> bool:
    """The native lookup on known programs: hits, misses and repeats where they must be."""
    x, y = object(), object()
    pc = PrefixCache(_fns=_STATE["fns"])
    held = [(x, 1.5), (y,), ()]
    if pc.insert(held, np.array([1.0, 2.0, 3.0])).tolist() != [0, 1, 2]:
        return False
    progs = [[x, 1.5], (y,), [y], [x], [x, 1.5], [], [y, x], [y, x]]
    out = np.full(len(progs), -1.0)
    r = pc.lookup(progs, out)
    if r is None:
        return False
    hit, grp, first = r
    return (hit.tolist() == [0, 1, 1, 0, 2] and grp.tolist() ==
            [-1, -1, -1, 0, -1, -1, 1, 1] and first.tolist() == [3, 6] and
            out[[0, 1, 2, 4, 5]].tolist() == [1.0, 2.0, 2.0, 1.0, 3.0] and
            pc.lookup([[x], 5], np.empty(2)) is None)


def available() -> bool:
    """True where the native cache runs (CPython, GIL build, layout and self-test passed)."""
    return _functions() is not None


class PrefixCache:
    """An address-keyed table of prefix programs: slots hold (token tuple, hash, value); a
    cell array maps hash -> slot (open addressing).  A slot number names an entry until it is
    released (the caller's LRU keys its entries by slot).  Thread-safe: every native call runs
    under the cache's lock with the GIL held.

    A slot holds its tuple from before the table refers to it until after it no longer
    does (`insert`, `release`), so the table never refers to a tuple it does not hold."""

    def __init__(self, *, _fns: dict[str, Any] | None = None) -> None:
        fns = _fns if _fns is not None else _functions()
        if fns is None:
            raise RuntimeError("the native prefix cache is not available here")
        self._fns = fns
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._held = np.empty(0, dtype=object)        # the tuple of every slot (or None)
        self._free = np.empty(0, np.int32)            # a stack of free slots
        self._nfree = 0
        self._hash = np.zeros(0, np.int64)
        self._tup = np.zeros(0, np.int64)
        self._val = np.zeros(0, np.float64)
        self._tab = np.full(_MIN_TABLE, _EMPTY, np.int32)
        self._used = 0          # cells not empty (live entries and removed ones)
        self.live = 0
        self._tuple_bytes = 0   # of the held tuples
        self._sc: tuple[np.ndarray, ...] | None = None
        self._set_ptrs()

    def __len__(self) -> int:
        return self.live

    def nbytes(self) -> int:
        """Bytes of the table's arrays (slots, cells, the free stack, the held-tuple
        pointers, the lookup scratch) and of the token tuples it holds (not the tokens)."""
        arrays = (self._hash, self._tup, self._val, self._tab, self._free, self._held,
                  *(self._sc or ()))
        return sum(a.nbytes for a in arrays) + self._tuple_bytes

    # -- lookup ---------------------------------------------------------------------------------
    def lookup(self, programs: Sequence[Any], out: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Look every program up: `out[i]` <- the value of a hit.  Returns (the hits' slots
        in program order, group per program or -1 for a hit, first program of each group):
        the new programs grouped by identical token objects, groups in order of first
        occurrence.  None when `programs` is not a list or tuple of lists and tuples (or
        changed size meanwhile): the caller takes another path."""
        tp = type(programs)
        if tp is not list and tp is not tuple:
            return None
        P = len(programs)
        if out.dtype != np.float64 or out.shape != (P,) or not out.flags.c_contiguous:
            raise ValueError("out must be a contiguous float64 array of one value a program")
        with self._lock:
            ia, la, ltab, res = self._scratch(P)
            L = ltab.size
            ltab.fill(_EMPTY)
            pi, pl = ia.ctypes.data, la.ctypes.data
            self._fns["pc_lookup"](programs, P, id(list), id(tuple), *self._ptrs,
                                   out.ctypes.data, pi, pi + 4 * P, pi + 8 * P,
                                   *(pl + 8 * P * k for k in range(6)), ltab.ctypes.data, L - 1,
                                   res.ctypes.data)
            if res[0] != -1:
                return None
            nh, m = int(res[1]), int(res[2])
            # copies: the scratch is the next call's
            return ia[:nh].copy(), ia[P:2 * P].copy(), ia[2 * P:2 * P + m].copy()

    def _scratch(self, P: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Lookup buffers for P programs (kept, grown as needed; used under the lock):
        int32 hits/groups/firsts, int64 group items/sizes/hashes and program hashes/items/
        sizes, the call's own cells."""
        L = 16
        while L < 2 * P:
            L *= 2
        sc = self._sc
        if sc is None or sc[0].size < 3 * P or sc[2].size < L:
            Q = max(P, 64)
            sc = self._sc = (np.empty(3 * Q, np.int32), np.empty(6 * Q, np.int64),
                             np.empty(L, np.int32), np.zeros(3, np.int64))
        return sc[0], sc[1], sc[2][:L], sc[3]

    def _set_ptrs(self) -> None:
        """Addresses of the table arrays as the native calls take them (after any resize)."""
        self._ptrs = (self._tab.ctypes.data, self._tab.size - 1, self._hash.ctypes.data,
                      self._tup.ctypes.data, self._val.ctypes.data)

    # -- insert ---------------------------------------------------------------------------------
    def insert(self, toks: Sequence[tuple], vals: np.ndarray) -> np.ndarray:
        """Enter each token tuple with its value: an int32 array of their slots, -1 where
        the same tokens are in the table already (then the table keeps the old entry).
        TypeError (nothing entered) for an object that is not exactly a tuple."""
        m = len(toks)
        if not m:
            return np.zeros(0, np.int32)
        objs = np.fromiter(toks, dtype=object, count=m)   # its buffer: the objects' addresses
        v = np.ascontiguousarray(vals, dtype=np.float64)
        if v.shape != (m,):
            raise ValueError("one value a tuple")
        ok = np.empty(m, np.int32)
        res = np.zeros(2, np.int64)
        with self._lock:
            if self._nfree < m:
                self._grow_slots(m - self._nfree)
            top = self._nfree
            sa = self._free[top - m:top][::-1].copy()
            self._nfree = top - m
            self._fit_table(m)
            held = self._held
            held[sa] = objs                          # held before the table refers to them
            self._fns["pc_insert"](objs.ctypes.data, sa.ctypes.data, v.ctypes.data, m,
                                   *self._ptrs, id(tuple), ok.ctypes.data, res.ctypes.data)
            if res[1] >= 0:
                self._unhold(sa)
                raise TypeError(f"the table holds exact tuples only, got "
                                f"{type(toks[int(res[1])]).__name__}")
            dup = ok == 0
            n_ok = m - int(np.count_nonzero(dup))
            self.live += n_ok
            self._used += n_ok - int(res[0])
            if n_ok < m:
                self._unhold(sa[dup])
                sa[dup] = -1
                kept = objs[~dup]
            else:
                kept = objs
            # see the module docstring: held tuples are not the collector's
            deque(map(_untrack, kept), 0)
            self._tuple_bytes += _TUPLE_HEAD * kept.size + 8 * sum(map(len, kept))
            return sa

    def _unhold(self, sa: np.ndarray) -> None:
        """Slots the table does not refer to (any more): their tuples go, the slots are free."""
        self._held[sa] = None
        k = sa.size
        self._free[self._nfree:self._nfree + k] = sa
        self._nfree += k

    def _grow_slots(self, need: int) -> None:
        C = self._hash.size
        C2 = max(2 * C, C + need, 256)
        for name in ("_hash", "_tup", "_val"):
            old = getattr(self, name)
            new = np.zeros(C2, old.dtype)
            new[:C] = old
            setattr(self, name, new)
        held = np.empty(C2, dtype=object)
        held[:C] = self._held
        self._held = held
        # the free stack is popped from its top: the new slots go under the free old ones
        free = np.empty(C2, np.int32)
        free[:C2 - C] = np.arange(C2 - 1, C - 1, -1)
        free[C2 - C:C2 - C + self._nfree] = self._free[:self._nfree]
        self._free = free
        self._nfree += C2 - C
        self._set_ptrs()

    def _fit_table(self, m: int) -> None:
        """Cells for m more entries at a load of at most one half (removed cells count)."""
        H = self._tab.size
        if 2 * (self._used + m) <= H and not (self.live < H // 16 and H > _MIN_TABLE):
            return
        H2 = _MIN_TABLE
        while H2 < 4 * (self.live + m):
            H2 *= 2
        tab = np.full(H2, _EMPTY, np.int32)
        self._fns["pc_rebuild"](tab.ctypes.data, H2 - 1, self._hash.ctypes.data,
                                self._tup.ctypes.data, self._hash.size)
        self._tab = tab
        self._used = self.live
        self._set_ptrs()

    # -- removal --------------------------------------------------------------------------------
    def release(self, slots: Sequence[int]) -> None:
        """Remove the entries of `slots` (from an LRU's eviction): the table lets go of their
        tuples once it no longer refers to them; a slot without an entry is ignored."""
        sa = np.asarray(slots, dtype=np.int32).reshape(-1)
        if not sa.size:
            return
        if sa.min() < 0 or sa.max() >= self._hash.size:
            raise ValueError("no such slot")
        done = np.empty(sa.size, np.int32)
        res = np.zeros(1, np.int64)
        with self._lock:
            self._fns["pc_release"](sa.ctypes.data, sa.size, *self._ptrs[:4],
                                    done.ctypes.data, res.ctypes.data)
            gone = sa[done != 0]
            self._tuple_bytes -= (_TUPLE_HEAD * gone.size
                                  + 8 * sum(map(len, self._held[gone])))
            self._unhold(gone)
            self.live -= gone.size

    def clear(self) -> None:
        with self._lock:
            self._reset()
