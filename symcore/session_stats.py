"""Counters and memory accounting of a `Session`'s fitness cache."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

__all__ = ["SessionStats", "entry_bytes", "key_bytes"]

#: estimated bytes of one cache entry besides its key (OrderedDict node, float, tuple)
_ENTRY_BYTES = 160
#: a prefix-program entry besides 8 bytes per token: node, int key, (value, tokens) pair,
#: the tokens tuple's header
_PREFIX_ENTRY_BYTES = _ENTRY_BYTES + 32 + 40


@dataclass
class SessionStats:
    """Counters of a session (cumulative over every `score` call)."""

    calls: int = 0
    candidates: int = 0
    hits: int = 0          # answered from the cache (incl. repeats within one call)
    misses: int = 0        # scored
    classes: int = 0       # distinct cache classes scored
    entries: int = 0       # entries in the cache now
    evictions: int = 0
    bytes: int = 0         # estimated memory of the cache's entries
    table_bytes: int = 0   # the native prefix table's arrays and token tuples (score_prefix)
    seconds: dict[str, float] = field(default_factory=lambda: {
        "read": 0.0, "canonicalise": 0.0, "compile": 0.0, "score": 0.0})

    @property
    def hit_rate(self) -> float:
        return self.hits / self.candidates if self.candidates else 0.0

    @property
    def memory(self) -> int:
        """Estimated bytes the fitness cache holds in all (entries and the native table)."""
        return self.bytes + self.table_bytes



def entry_bytes(k: Any, v: Any) -> int:
    """Estimated bytes of one cache entry (a prefix entry's value holds its tokens tuple)."""
    if type(v) is tuple:
        return _PREFIX_ENTRY_BYTES + 8 * len(v[1]) + (
            sys.getsizeof(k[1]) if type(k) is tuple else 0)
    return _ENTRY_BYTES + key_bytes(k)


def key_bytes(k: Any) -> int:
    if type(k) is tuple:
        n = sys.getsizeof(k)
        if len(k) == 2 and type(k[1]) is bytes:     # (key, per-candidate weights digest)
            n += sys.getsizeof(k[1]) + (sys.getsizeof(k[0]) if type(k[0]) is tuple else 0)
        return n
    if isinstance(k, bytes) or type(k) is int:     # an int: a native-table slot's key
        return sys.getsizeof(k)
    return 0    # an interned Expr: shared with the candidates, counted there
