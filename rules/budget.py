"""The time budget of one `dedupe` call: its deadline, and the time reserved for the work that
must still follow each phase (result building, e-graph extraction, the collector's tail), priced
with idle-machine costs scaled by how fast this process is running right now."""

from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from typing import Iterator

__all__ = ["Budget", "gc_paused"]

# Idle-machine costs, measured on 0.05-1.7M distinct adversarial candidates (bench_dedupe
# --huge); every reserve is one of these times `Budget.speed` times SAFETY.
#: grouping inputs by canonical form (one dict lookup per input): also the speed yardstick
INDEX_SECONDS_PER_INPUT = 0.8e-6
#: the result without an e-graph (class lists; the call's locals freed on return)
RESULT_SECONDS_PER_INPUT = 1.0e-6
#: the result after an e-graph (class merging by representative, then class lists), besides
#: the canonical pass over extracted terms (which stops at its own deadline)
RESULT_EGRAPH_SECONDS_PER_INPUT = 2.0e-6
#: params mode: per node of the representatives, their parameters renumbered
#: (rules/extract.renumber_all walks every term)
RENUMBER_SECONDS_PER_NODE = 2e-6
#: preparing, writing and loading one e-node of a chunk into egglog
INSERT_SECONDS_PER_NODE = 18e-6
#: freezing the e-graph and choosing the cheapest term of every class, per e-node
EXTRACT_SECONDS_PER_ENODE = 6e-6
#: building the IR of one extracted representative
BUILD_SECONDS_PER_ROOT = 25e-6
#: `simplify` after its canonical pass, per node: the saturation test, the compact spelling
#: and the cost comparison (0.45 s for a 20,000-term sum of 160k nodes)
SIMPLIFY_TAIL_SECONDS_PER_NODE = 3e-6
#: one object allocated during the call: all sit in the collector's youngest generation (it
#: is paused, see `gc_paused`) and the first allocation after the call traverses them all
#: (measured 0.3 us each: 1.2 s after a time-limited dedupe of 400k inputs, 3.3 s of 1.7M)
GC_SECONDS_PER_OBJECT = 0.3e-6
#: margin on every predicted cost (the load can change after the speed is measured; with 1.5
#: the 1.7M case ended at 0.74-0.81x its limit, with 1.25 a sudden 2x slowdown right after
#: the last measurement still ends within ~6 % over)
SAFETY = 1.25
#: a speed measured on fewer inputs than this is noise (scheduler slices are milliseconds)
MIN_CALIBRATION_INPUTS = 4096


class Budget:
    """Deadline bookkeeping for one call over `n` inputs (`time_limit` None: no deadline;
    `renumber_nodes`: nodes whose parameters the result renumbers, params mode)."""

    def __init__(self, time_limit: float | None, n: int, t0: float,
                 renumber_nodes: int = 0) -> None:
        self.deadline = None if time_limit is None else t0 + time_limit
        self.n = n
        self.renumber_nodes = renumber_nodes
        #: measured slowdown against the idle costs (1 until measured; never below 1)
        self.speed = 1.0
        self._recent: list[float] = []

    def calibrate(self, seconds: float, units: int, idle_per_unit: float) -> None:
        """Measured `seconds` for `units` of work that costs `idle_per_unit` on an idle machine."""
        if units >= MIN_CALIBRATION_INPUTS:
            # the median of the last three (the upper one of two): one measurement is ~10 ms
            # of work, and a preemption or a dict resize inside it reads as a 2-5x slowdown
            # (measured 0.5-4.4x from one chunk to the next on a steady load)
            self._recent = (self._recent + [seconds / (units * idle_per_unit)])[-3:]
            now = sorted(self._recent)[len(self._recent) // 2]
            self.speed = min(100.0, max(1.0, now))

    def cost(self, idle_seconds: float) -> float:
        """Predicted seconds, now, for work of `idle_seconds` on an idle machine."""
        return SAFETY * self.speed * idle_seconds

    def tail(self, egraph: bool, more_objects: float = 0.0) -> float:
        """Predicted seconds of everything after the last phase: the result, and the traversal
        of the objects allocated so far (and `more_objects` still to come) by the collector."""
        per = RESULT_EGRAPH_SECONDS_PER_INPUT if egraph else RESULT_SECONDS_PER_INPUT
        young = gc.get_count()[0] + more_objects
        return self.cost(per * self.n + RENUMBER_SECONDS_PER_NODE * self.renumber_nodes +
                         GC_SECONDS_PER_OBJECT * young)

    def until(self, reserve: float) -> float | None:
        """The deadline of a phase after which `reserve` seconds of work must still fit."""
        return None if self.deadline is None else self.deadline - reserve

    def left(self, reserve: float = 0.0) -> float | None:
        """Seconds from now until `until(reserve)` (negative when past it)."""
        return None if self.deadline is None else self.deadline - reserve - time.perf_counter()


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic collector paused (the call builds millions of small acyclic objects: full
    collections would traverse every live Expr again and again, measured 2.5x the time).
    (Moving the young objects to the oldest generation on exit, by gc.freeze + gc.unfreeze,
    would skip their traversal, but it also thaws objects the caller froze; Python 3.12
    itself freezes some at start-up.)"""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
