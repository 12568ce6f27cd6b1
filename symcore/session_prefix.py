"""The prefix-token path of a `Session` (a mixin): programs a search keeps as prefix token
lists (gplearn's `program` lists) scored without IR — a fitness cache keyed by the token
objects (a native table, codegen.eval.prefix_cache, where it runs), the new programs packed
together into shared tapes (codegen.eval.dag) and run on the session's data, one tape per
thread for large work."""

from __future__ import annotations

import collections
import copy
import itertools
import operator
import threading
import time
from typing import Any, Mapping, Sequence

import numpy as np

from symcore.errors import SymcoreError
from symcore.session_stats import entry_bytes

__all__ = ["PrefixScoring", "SLOT_KEY_BASE", "is_slot_key"]

_is = operator.is_
#: makes a session's native table once when threads race for it
_NATIVE_LOCK = threading.Lock()


#: the LRU key of the native table's slot s is SLOT_KEY_BASE + s: an int no other path's key
#: equals (the Python path keys by hash(), a signed 64-bit value below 2**63).  An int, not an
#: object per slot: it is made only for the slots a call enters or hits, and the collector
#: does not track it
SLOT_KEY_BASE = 1 << 63
_BASE_U64 = np.uint64(SLOT_KEY_BASE)


def is_slot_key(k: Any) -> bool:
    """True for the LRU key of a native-table entry."""
    return type(k) is int and k >= SLOT_KEY_BASE


def _slot_keys(slots: np.ndarray) -> np.ndarray:
    """The LRU keys of table slots (an object array of Python ints)."""
    return (slots.astype(np.uint64) + _BASE_U64).astype(object)


class PrefixScoring:
    """`Session`'s score_prefix / predict_prefix (uses the session's data, cache, stats,
    metric helpers)."""

    _cache: Any
    stats: Any
    # the session's own (codegen lives below symcore's core: session.py reaches it)
    _symbol_table: Any
    _prefix_parts: Any
    _metric_of: Any
    _prefix_cache_module: Any
    metric: str
    n_rows: int
    n_features: int
    dtype: str
    max_entries: int
    cache_mode: Any

    def score_prefix(self, programs: Sequence[Sequence[Any]], symbols: Mapping[Any, str], *,
                     weights: Any = None) -> np.ndarray:
        """`score` for programs given as prefix token lists, without building IR: the fast
        path for a search that keeps its own trees (gplearn's `program` lists).

        A token is an `int` (a column of X), a `float` (a constant) or a key of `symbols`
        (token -> ops-table name, e.g. gplearn's `_Function` objects).  A hit must hold the
        very same token objects in the same order, so a program seen before — reproduced,
        duplicated, or unchanged by a mutation — is found by the addresses of its tokens, in
        native code for the whole call where the interpreter allows it (unweighted calls with
        a cache; codegen.eval.prefix_cache), else by the token tuple's hash and an identity
        check.  The new ones are packed together, without IR, into one shared
        tape (codegen.eval.dag: every distinct subtree of the call evaluated once per row
        block, whichever programs hold it; one tape per thread for large work), with the
        values and loss sums of the tier-0 interpreter bit for bit."""
        self._local("score_prefix")
        if weights is None and self.cache_mode is not None and self.max_entries:
            px = self._prefix_table()
            if px is not None:
                got = self._score_prefix_native(px, programs, symbols)
                if got is not None:
                    return got
        st = self.stats
        t0 = time.perf_counter()
        P = len(programs)
        wkeys, wrows = self._candidate_weights(weights, P)
        out = np.empty(P, dtype=np.float64)
        cache = self._cache if self.cache_mode is not None else None
        get = cache.get if cache is not None else {}.get
        toks_all = list(map(tuple, programs))
        # a tuple's hash is not memoised by Python: hash each program once, key by the int
        # (tokens compare by value in a dict — 1 == 1.0 == True, 0.0 == -0.0 — so equal keys
        # are only candidates: an entry keeps the tokens it was scored for, and a hit needs
        # the very same objects; a colliding other program is scored and left uncached)
        try:
            hashes = list(map(hash, toks_all))
        except TypeError as err:
            raise SymcoreError(f"a program holds an unhashable token: {err}") from None
        if wkeys is not None:
            hashes = list(zip(hashes, wkeys))
        groups: dict[Any, int] = {}
        setdefault = groups.setdefault
        # per candidate: its value from the cache, or (group_of >= 0) its group among the new
        cached = [0.0] * P
        group_of = [-1] * P
        first: list[int] = []           # a group's first candidate
        uncached: list[int] = []        # groups of equal values but other objects
        hits = m = 0
        touch = cache.move_to_end if cache is not None else None
        # int (or (int, digest)) keys never equal the Expr path's keys: a hit is a
        # (value, tokens) entry of this path
        for i, k, hit in zip(range(P), hashes, list(map(get, hashes))):
            if hit is not None and all(map(_is, hit[1], toks_all[i])):
                touch(k)                               # type: ignore[misc]
                cached[i] = hit[0]
                hits += 1
                continue
            g = setdefault(k, m)
            if g != m:
                if all(map(_is, toks_all[first[g]], toks_all[i])):
                    group_of[i] = g
                    hits += 1
                    continue
                uncached.append(m)          # scored, but its key names another group
            group_of[i] = m
            first.append(i)
            m += 1
        toks = [toks_all[i] for i in first]
        ckeys: list[Any] = [hashes[i] for i in first]
        for g in uncached:
            ckeys[g] = None
        n_uncached = len(uncached)
        out[:] = cached
        st.seconds["read"] += time.perf_counter() - t0
        st.calls += 1
        st.candidates += P
        st.hits += hits
        st.misses += P - hits
        if toks:
            vals = self._run_prefix(toks, self._symbol_table(symbols),
                                    None if wrows is None else wrows[np.asarray(first)])
            gof = np.array(group_of, dtype=np.int64)
            miss = gof >= 0
            out[miss] = vals[gof[miss]]
            st.classes += len(toks)
            if cache is not None and self.max_entries:
                entries = zip(vals.tolist(), toks)
                if n_uncached:
                    keep = [k is not None for k in ckeys]
                    cache.update(zip(itertools.compress(ckeys, keep),
                                     itertools.compress(entries, keep)))
                    lens = sum(map(len, itertools.compress(toks, keep)))
                else:
                    cache.update(zip(ckeys, entries))
                    lens = sum(map(len, toks))
                # every key of one call has the same size (an int, or (int, digest)): the
                # entries' sizes differ only by their tokens (entry_bytes: 8 bytes a token)
                m = len(toks) - n_uncached
                if m:
                    k0 = next(k for k in ckeys if k is not None)
                    st.bytes += m * entry_bytes(k0, (0.0, ())) + 8 * lens
                self._evict()
        st.entries = len(self._cache)
        return out

    # -- the native table (unweighted calls with a cache) ------------------------------------
    def _prefix_table(self) -> Any:
        """The session's native prefix table (made on first use), or None where the native
        table cannot run."""
        px = self.__dict__.get("_pxc")
        if px is None:
            mod = self._prefix_cache_module()
            if mod is None:
                return None
            with _NATIVE_LOCK:
                px = self.__dict__.get("_pxc")
                if px is None:
                    px = self._pxc = mod.PrefixCache()
        return px

    def _score_prefix_native(self, px: Any, programs: Sequence[Sequence[Any]],
                             symbols: Mapping[Any, str]) -> np.ndarray | None:
        """score_prefix through the native table: programs seen before (the very same token
        objects in order) are found and filled in native code without Python work per token;
        the new ones are grouped there (repeats within the call scored once), scored as
        tuples and entered (the table holds the tuple, so the tokens' addresses stay theirs;
        the LRU entry is the slot's key and the value).  None: a container changed under the lookup (another thread), the
        caller takes the general path."""
        st = self.stats
        t0 = time.perf_counter()
        tp = type(programs)
        progs: Any = programs if tp is list or tp is tuple else list(programs)
        P = len(progs)
        out = np.empty(P, dtype=np.float64)
        r = px.lookup(progs, out)
        if r is None:
            # a program that is neither a list nor a tuple: its tokens as a tuple (the same
            # objects, so the same key)
            progs = [p if type(p) is list or type(p) is tuple else tuple(p) for p in progs]
            r = px.lookup(progs, out)
            if r is None:
                return None
        found, grp, first = r
        cache = self._cache
        if found.size:
            # the hits' LRU keys, most recent last
            touch = cache.move_to_end
            hit_keys = _slot_keys(found)
            try:
                collections.deque(map(touch, hit_keys), 0)
            except KeyError:
                # evicted (or the cache cleared) by another thread since the lookup: the
                # values read were their own; touch what is still there
                for k in hit_keys:
                    if k in cache:
                        touch(k)
        m = first.size
        toks = list(map(tuple, map(progs.__getitem__, first.tolist())))
        st.seconds["read"] += time.perf_counter() - t0
        st.calls += 1
        st.candidates += P
        st.hits += P - m
        st.misses += m
        if m:
            vals = self._run_prefix(toks, self._symbol_table(symbols), None)
            miss = grp >= 0
            out[miss] = vals[grp[miss]]
            st.classes += m
            slots = px.insert(toks, vals)
            vl: list[float] = vals.tolist()
            if slots.size and slots.min() < 0:
                # tokens entered meanwhile (by another thread): the table keeps its entry
                keep = np.flatnonzero(slots >= 0)
                slots = slots[keep]
                vl = [vl[i] for i in keep.tolist()]
                toks = [toks[i] for i in keep.tolist()]
            if slots.size:
                # the value only: the table holds the tokens (and counts their memory)
                ks = _slot_keys(slots).tolist()
                cache.update(zip(ks, vl))
                st.bytes += len(ks) * entry_bytes(ks[0], 0.0)
                self._evict()
        st.entries = len(cache)
        st.table_bytes = px.nbytes()
        return out

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the native table and its entries (a hit needs the very token
        objects, which an unpickled copy does not share)."""
        state = dict(self.__dict__)
        px = state.pop("_pxc", None)
        if px is not None:
            cache = state["_cache"]
            keep = collections.OrderedDict(
                (k, v) for k, v in cache.items() if not is_slot_key(k))
            stats = state["stats"] = copy.copy(self.stats)
            stats.seconds = dict(stats.seconds)
            stats.bytes -= sum(entry_bytes(k, v) for k, v in cache.items() if is_slot_key(k))
            stats.entries = len(keep)
            stats.table_bytes = 0
            state["_cache"] = keep
        return state

    def _prefix_evicted(self, keys: list[int]) -> None:
        """The LRU dropped native-table entries (their keys): the table lets their tokens go
        (it holds them until it has removed the entries)."""
        self._pxc.release([k - SLOT_KEY_BASE for k in keys])

    def _prefix_cleared(self) -> None:
        px = self.__dict__.get("_pxc")
        if px is not None:
            px.clear()

    def predict_prefix(self, programs: Sequence[Sequence[Any]], symbols: Mapping[Any, str]
                       ) -> np.ndarray:
        """Predictions of prefix token programs (see `score_prefix`): a (P, N) array of the
        session's dtype (not cached)."""
        self._local("predict_prefix")
        out = np.empty((len(programs), self.n_rows), dtype=self._np)
        self._prefix_parts(list(programs), self._symbol_table(symbols), out)
        return out

    # -- the prefix-token path ----------------------------------------------------------------
    def _run_prefix(self, programs: list[Any], table: dict[Any, tuple[int, int]],
                    W: np.ndarray | None) -> np.ndarray:
        """The metric of every prefix program (W: per-candidate weights; Session._metric_of)."""
        return self._metric_of(
            len(programs), W, lambda acc: self._prefix_parts(programs, table, None, acc),
            lambda c0, c1, pred: self._prefix_parts(programs[c0:c1], table, pred))
