"""The timed loop: warm-up, per-call ``perf_counter_ns`` timings, CPU pinning, GC paused.

Runtimes create their thread pools when a session opens, and Linux applies
``sched_setaffinity`` to one thread only, so :func:`pinned` restricts every thread of the
process (existing ones explicitly, new ones by inheritance) and is meant to wrap both the
session's creation and its measurement.
"""

from __future__ import annotations

import contextlib
import gc
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Timing:
    """Raw result of one timed loop.

    Attributes:
        samples_ns: duration of each timed call, in nanoseconds.
        warmup_runs: untimed calls made first.
        warmup_s: seconds the warm-up took.
        timed_s: wall seconds of the timed loop (calls plus loop overhead).
    """

    samples_ns: np.ndarray
    warmup_runs: int
    warmup_s: float
    timed_s: float

    @property
    def busy_s(self) -> float:
        """Seconds spent inside the timed calls."""
        return float(self.samples_ns.sum()) / 1e9


def measure(
    call: Callable[[], object],
    *,
    warmup_s: float,
    min_warmup: int,
    min_time_s: float,
    min_runs: int,
    max_runs: int,
    on_timed_start: Callable[[], None] | None = None,
) -> Timing:
    """Warms ``call`` up, then times it call by call.

    Warm-up lasts until both ``min_warmup`` calls and ``warmup_s`` seconds are done, because
    runtimes finish their lazy work (kernel selection, memory arenas, clock ramp-up) at
    different paces. Timing stops once both ``min_runs`` calls and ``min_time_s`` seconds are
    reached, or at ``max_runs``. The garbage collector is paused throughout so that a
    collection never lands inside a timed call.

    Args:
        call: runs one inference.
        on_timed_start: called right before the first timed call (to start an energy meter).
    """
    clock = time.perf_counter_ns
    with gc_paused():
        warm = 0
        start = clock()
        warmup_ns = warmup_s * 1e9
        while warm < min_warmup or clock() - start < warmup_ns:
            call()
            warm += 1
        warm_end = clock()
        if on_timed_start is not None:
            on_timed_start()
        samples: list[int] = []
        min_ns = min_time_s * 1e9
        loop_start = clock()
        while len(samples) < max_runs:
            t0 = clock()
            call()
            t1 = clock()
            samples.append(t1 - t0)
            if len(samples) >= min_runs and t1 - loop_start >= min_ns:
                break
        loop_end = clock()
    return Timing(
        samples_ns=np.asarray(samples, dtype=np.int64),
        warmup_runs=warm,
        warmup_s=(warm_end - start) / 1e9,
        timed_s=(loop_end - loop_start) / 1e9,
    )


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Collects once, then keeps Python's garbage collector off until the block ends."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def pinned(threads: int) -> Iterator[list[int]]:
    """Restricts the whole process to ``threads`` of its allowed CPUs for the block.

    Yields:
        The CPUs the process is pinned to (empty where the OS has no affinity API). When
        ``threads`` exceeds the allowed CPUs, all of them are used and the runtime is
        oversubscribed; the yielded list shows it.
    """
    if not hasattr(os, "sched_setaffinity"):  # pragma: no cover - macOS, Windows
        yield []
        return
    allowed = sorted(os.sched_getaffinity(0))
    cpus = allowed[: max(1, threads)]
    saved: dict[int, set[int]] = {}
    for tid in _thread_ids():
        with contextlib.suppress(OSError):  # the thread may have exited meanwhile
            saved[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    try:
        yield cpus
    finally:
        # Threads born inside the block inherited the pinned mask; they get the original one.
        for tid in _thread_ids():
            with contextlib.suppress(OSError):
                os.sched_setaffinity(tid, saved.get(tid, allowed))


def _thread_ids() -> list[int]:
    try:
        return [int(name) for name in os.listdir("/proc/self/task")]
    except OSError:  # pragma: no cover - no procfs: only the calling thread can be pinned
        return [0]
