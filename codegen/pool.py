"""The process's one thread pool, sized by `$SYMCORE_THREADS` (default: the usable CPUs): kernel
candidate ranges, tier-1 compilation and `fit` all run on it (native calls release the GIL)."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

__all__ = ["n_threads", "executor", "run_ranges", "MIN_WORK_PER_TASK"]

#: below this many node·rows of work per task, splitting costs more than it saves
MIN_WORK_PER_TASK = 200_000
#: tasks per thread: candidates differ in cost (early exits), smaller tasks balance the load
TASKS_PER_THREAD = 4

_pool: ThreadPoolExecutor | None = None
_lock = threading.Lock()


def n_threads() -> int:
    """Worker threads: `$SYMCORE_THREADS` or the CPUs this process may use."""
    env = os.environ.get("SYMCORE_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not on Linux
        return max(1, os.cpu_count() or 1)


def executor(workers: int | None = None) -> ThreadPoolExecutor:
    """The process's one worker pool, with at least `workers` threads (default `n_threads()`).
    Tasks it runs must not wait on other tasks of this pool (a full pool would deadlock)."""
    global _pool
    workers = n_threads() if workers is None else max(1, int(workers))
    with _lock:
        if _pool is None or _pool._max_workers < workers:  # noqa: SLF001 - sizing only
            old, _pool = _pool, ThreadPoolExecutor(max_workers=workers,
                                                   thread_name_prefix="symcore")
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run_ranges(n: int, work: float, fn: Callable[[int, int], None],
               threads: int | None = None) -> None:
    """Call fn(c0, c1) over a partition of [0, n), on the pool when `work` (total node·rows)
    is large enough, inline otherwise.  Exceptions propagate."""
    threads = n_threads() if threads is None else max(1, int(threads))
    tasks = min(n, threads * TASKS_PER_THREAD, max(1, int(work // MIN_WORK_PER_TASK)))
    if threads == 1 or tasks <= 1:
        if n:
            fn(0, n)
        return
    bounds = [n * i // tasks for i in range(tasks + 1)]
    ex = executor(threads)
    futs = [ex.submit(fn, bounds[i], bounds[i + 1]) for i in range(tasks)
            if bounds[i] < bounds[i + 1]]
    for f in futs:
        f.result()
