"""Bounded equality saturation: one egglog e-graph stepped one iteration at a time from Python,
checking e-node count and wall time between steps (egglog has no node or time limit itself)."""

from __future__ import annotations

import enum
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

from egglog import bindings

from symcore.errors import SymcoreError

from symcore.rules import analysis, rulesets
from symcore.ops import generation

from symcore.rules.language import CTOR, FREE_PARAM, declarations

#: constructors whose rows are e-nodes (relations and the Root table are not counted)
ENODE_FUNCTIONS = frozenset({"Num", "Var", "Par", "Spec", FREE_PARAM, *CTOR.values()})
SHRINK_REPEAT = 1   # shrink/analysis passes after each growing pass
#: first guess of one step's growth factor and time per e-node (then measured per step)
FIRST_GROWTH = 3.0
GUARD_MARGIN = 3.0
SECONDS_PER_ENODE = 1e-6


class StopReason(enum.Enum):
    """Why saturation stopped."""

    SATURATED = "saturated"
    ITERATION_LIMIT = "iteration limit"
    NODE_LIMIT = "node limit"
    TIME_LIMIT = "time limit"
    MEMORY_LIMIT = "memory limit"


@dataclass(frozen=True)
class Limits:
    iterations: int = 8
    node_limit: int | None = None     # None: 100,000 or 20x the inserted e-nodes, whichever is more
    time_limit: float | None = 10.0   # seconds of saturation

    def check(self) -> None:
        if isinstance(self.iterations, bool) or not isinstance(self.iterations, int) \
                or self.iterations < 0:
            raise SymcoreError(f"iterations must be an int >= 0, got {self.iterations!r}")
        if self.node_limit is not None and (isinstance(self.node_limit, bool) or
                                            not isinstance(self.node_limit, int) or
                                            self.node_limit < 1):
            raise SymcoreError(f"node_limit must be a positive int, got {self.node_limit!r}")
        if self.time_limit is not None and (isinstance(self.time_limit, bool) or
                                            not isinstance(self.time_limit, (int, float)) or
                                            not self.time_limit > 0):
            raise SymcoreError(f"time_limit must be a positive number, got {self.time_limit!r}")


def _prelude(topics: Sequence[str]) -> str:
    return (declarations() + "(ruleset grow)\n(ruleset shrink)\n"
            + analysis.program("params" in topics) + "\n" + rulesets.program(topics))


def _scheduler(match_limit: int) -> str:
    return f"\n(let-scheduler bo (back-off :match-limit {int(match_limit)}))"


class Session:
    """One e-graph with the chosen topics, a back-off scheduler and a root table."""

    def __init__(self, topics: Sequence[str], match_limit: int,
                 egraph: bindings.EGraph | None = None) -> None:
        self.topics = tuple(topics)
        self.iterations = 0
        self.pushes = 0   # (push) levels kept by saturate; popped with the session
        if egraph is None:
            self.egraph = bindings.EGraph()
            self._run(_prelude(self.topics) + _scheduler(match_limit))
        else:  # a prepared e-graph holding the prelude, inside a (push) scope
            self.egraph = egraph
            self._run(_scheduler(match_limit))

    def _run(self, text: str) -> list:
        try:
            return self.egraph.parse_and_run_program(text)
        except bindings.EggSmolError as err:  # pragma: no cover - our own programs
            raise SymcoreError(f"egglog rejected the program: {err}") from None

    def insert(self, program_text: str) -> None:
        if program_text:
            self._run(program_text)

    def enodes(self) -> int:
        return self._count(self._run("(print-size)")[0])

    @staticmethod
    def _count(size_output) -> int:
        return sum(n for name, n in size_output.sizes if name in ENODE_FUNCTIONS)

    def _shrink_and_count(self) -> tuple[bool, int]:
        out = self._run(f"(run-schedule (repeat {SHRINK_REPEAT} (run shrink)))\n(print-size)")
        return bool(out[0].report.updated), self._count(out[1])

    def step(self) -> tuple[bool, int]:
        """One growing pass (back-off scheduled) then the shrinking passes, in one egglog call;
        returns whether anything changed and the e-node count after it."""
        out = self._run("(run-schedule (run-with bo grow))\n"
                        f"(run-schedule (repeat {SHRINK_REPEAT} (run shrink)))\n(print-size)")
        rep = out[0].report
        grew = bool(rep.updated) or not bool(rep.can_stop)
        shrank = bool(out[1].report.updated)
        self.iterations += 1
        return grew or shrank, self._count(out[2])

    def saturate(self, limits: Limits, inserted_enodes: int,
                 seconds: float | None = None, reserve_per_enode: float = 0.0) -> StopReason:
        """Step until saturated or a limit: the node limit holds exactly (a step that could
        cross it runs inside (push) and is undone by (pop) when it does) and a step is only
        started when its predicted time fits in `seconds` (default: the time limit)."""
        node_limit = limits.node_limit or max(100_000, 20 * inserted_enodes)
        budget = limits.time_limit if seconds is None else seconds
        t0 = time.perf_counter()
        enodes = self._shrink_and_count()[1]
        if enodes > node_limit:
            return StopReason.NODE_LIMIT
        growth, per_node = FIRST_GROWTH, SECONDS_PER_ENODE
        for _ in range(limits.iterations):
            if budget is not None and \
                    time.perf_counter() - t0 + (per_node + reserve_per_enode) * enodes * growth \
                    > budget:
                return StopReason.TIME_LIMIT
            # growth can accelerate from one step to the next: guard with a wide margin
            guarded = enodes * max(growth, FIRST_GROWTH) * GUARD_MARGIN > node_limit
            if guarded:   # egglog's push saves a copy; pop restores it
                self._run("(push)")
                self.pushes += 1
            ts = time.perf_counter()
            changed, after = self.step()
            dt = time.perf_counter() - ts
            if guarded and after > node_limit:
                self._run("(pop)")
                self.pushes -= 1
                return StopReason.NODE_LIMIT
            growth = max(1.0, after / max(enodes, 1))
            per_node = max(per_node, dt / max(after, 1))
            enodes = after
            if not changed:
                return StopReason.SATURATED
        return StopReason.ITERATION_LIMIT

    def freeze(self) -> bindings.FrozenEGraph:
        return self.egraph.freeze()


class _Prepared:
    """An e-graph holding the declarations and rules of one topic set, reused across calls:
    each call runs between (push) and (pop), which restore the e-graph exactly."""

    def __init__(self, topics: tuple[str, ...]) -> None:
        self.lock = threading.Lock()
        self.egraph = bindings.EGraph()
        try:
            self.egraph.parse_and_run_program(_prelude(topics))
            # Run every ruleset once on the empty database: nothing matches, but egglog's
            # per-rule setup (~1 ms) then happens here once instead of in every call.
            self.egraph.parse_and_run_program(
                "(run-schedule (run load) (run shrink) (run grow))")
        except bindings.EggSmolError as err:  # pragma: no cover - our own programs
            raise SymcoreError(f"egglog rejected the program: {err}") from None


_PREPARED: dict[tuple[tuple[str, ...], int], _Prepared] = {}  # (topics, ops generation)
_PREPARED_LOCK = threading.Lock()


@contextmanager
def session(topics: Sequence[str], match_limit: int) -> Iterator[Session]:
    """A Session on the prepared e-graph of `topics` (built once per process), popped back to
    its prelude state on exit; a fresh e-graph when another thread holds the prepared one."""
    key = tuple(topics)
    with _PREPARED_LOCK:
        # the declarations bake the op set in: a registered op needs a new prepared e-graph
        pkey = (key, generation())
        prep = _PREPARED.get(pkey)
        if prep is None:
            prep = _PREPARED[pkey] = _Prepared(key)
    if not prep.lock.acquire(blocking=False):
        yield Session(key, match_limit)
        return
    try:
        prep.egraph.parse_and_run_program("(push)")
        sess = None
        try:
            sess = Session(key, match_limit, prep.egraph)
            yield sess
        finally:
            # the saved copies of saturate's guarded steps, then the prelude state
            prep.egraph.parse_and_run_program("(pop)" * (1 + (sess.pushes if sess else 0)))
    finally:
        prep.lock.release()
