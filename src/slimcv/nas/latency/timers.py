"""How a latency table times a module on a runtime: one strategy per runtime, by name.

Every strategy does the same thing: export each module alone to ONNX (BatchNorm folded, as
slimcv deploys it), open it with the runtime's slimcv backend at the table's precision and
thread count, and time all the modules of a batch *interleaved*: round after round, each module
gets a short timed loop whose median is kept, and its latency is the smallest of its round
medians. On a shared machine a neighbour's burst slows whichever loop it lands on; spreading a
module's loops over the whole batch's time and keeping the best round discards such bursts
without averaging them in. Whole networks are timed by the very same code, so a table's
predictions and its measurements differ only in what is cut apart.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np
from torch import nn

from slimcv.registry import Registry

Job = tuple[nn.Module, tuple[int, ...]]


class ModuleTimer(Protocol):
    """Times modules at given input shapes; returns milliseconds per call, one per job."""

    def __call__(self, jobs: Sequence[Job]) -> list[float]: ...


@dataclass(frozen=True)
class TimingPlan:
    """How long each module is timed.

    The defaults time a module for ``rounds`` x ``min_time_s`` (about 0.15 s) after a short
    warm-up: enough for units of 10-500 microseconds, where one loop holds hundreds of calls.

    Attributes:
        rounds: timed loops per module, interleaved with the other modules of the batch.
        min_time_s: minimum seconds of one loop.
        min_runs: minimum calls of one loop.
        max_runs: a loop stops here even before ``min_time_s``.
        warmup_runs: untimed calls per module before its first round.
        chunk: modules opened at once (exported, then their sessions kept open).
    """

    rounds: int = 5
    min_time_s: float = 0.03
    min_runs: int = 20
    max_runs: int = 2000
    warmup_runs: int = 20
    chunk: int = 48

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RuntimeTimer:
    """Times modules on one runtime through its slimcv backend (:mod:`slimcv.runtimes`)."""

    backend: ClassVar[str] = ""

    def __init__(self, threads: int, precision: str, plan: TimingPlan | None = None) -> None:
        from slimcv.runtimes import RuntimeOptions, get_backend

        self.options = RuntimeOptions(precision=precision, threads=threads)
        self.plan = plan or TimingPlan()
        self._backend = get_backend(self.backend)
        self._backend.check(self.options)

    @classmethod
    def version(cls) -> str:
        """The runtime package's version, read without importing it."""
        from importlib import metadata

        try:
            return metadata.version(cls.backend)
        except metadata.PackageNotFoundError:
            return "not installed"

    def __call__(self, jobs: Sequence[Job]) -> list[float]:
        """Milliseconds per call of each job (the smallest of its round medians)."""
        from slimcv.measure.timing import pinned

        results: list[float] = []
        size = max(1, self.plan.chunk)
        with pinned(self.options.resolved_threads()):
            for start in range(0, len(jobs), size):
                chunk = jobs[start : start + size]
                results += self._time_chunk(chunk)
        return results

    def _time_chunk(self, jobs: Sequence[Job]) -> list[float]:
        from slimcv.exporters.onnx import export_onnx
        from slimcv.sources.model import LoadedModel

        rng = np.random.default_rng(0)
        plan = self.plan
        calls: list[Callable[[], object]] = []
        sessions = []
        with tempfile.TemporaryDirectory(prefix="slimcv-lut-") as tmp:
            for index, (module, shape) in enumerate(jobs):
                path = Path(tmp) / f"unit{index}.onnx"
                # Runtimes apply the same graph fusions as onnxslim, so the slow simplifier is
                # skipped; BatchNorm is folded in PyTorch as in every slimcv export.
                export_onnx(module, path, tuple(shape), simplify=False)  # type: ignore[arg-type]
                model = LoadedModel(source="latency-unit", num_classes=0, module=module)
                session = self._backend.open(model, self.options, path)
                sessions.append(session)
                inputs = rng.standard_normal(shape, dtype=np.float32)
                calls.append(_bind(session.run, inputs))
            try:
                best = _interleaved(calls, plan)
            finally:
                for session in sessions:
                    session.close()
        return best


def _interleaved(calls: Sequence[Callable[[], object]], plan: TimingPlan) -> list[float]:
    """The smallest round median of each call, in milliseconds, rounds interleaved.

    This is :func:`slimcv.measure.timing.measure`'s loop, with the garbage collector paused
    once for the whole batch: ``measure`` collects before every loop, which with PyTorch
    loaded costs about 0.1 s, more than the loop itself for a tiny unit.
    """
    from slimcv.measure.timing import gc_paused

    clock = time.perf_counter_ns
    best = [float("inf")] * len(calls)
    with gc_paused():
        for call in calls:
            for _ in range(plan.warmup_runs):
                call()
        min_ns = plan.min_time_s * 1e9
        for _ in range(plan.rounds):
            for index, call in enumerate(calls):
                samples: list[int] = []
                call()  # the previous module's loop evicted some of this one's data
                start = clock()
                while len(samples) < plan.max_runs:
                    t0 = clock()
                    call()
                    t1 = clock()
                    samples.append(t1 - t0)
                    if len(samples) >= plan.min_runs and t1 - start >= min_ns:
                        break
                best[index] = min(best[index], float(np.median(samples)) / 1e6)
    return best


def _bind(run: Callable[[np.ndarray], object], inputs: np.ndarray) -> Callable[[], object]:
    return lambda: run(inputs)


#: Strategies by runtime name; each imports its runtime only when a session opens.
TIMERS: Registry[type[RuntimeTimer]] = Registry("latency runtime")


@TIMERS.register("onnxruntime")
class OnnxRuntimeTimer(RuntimeTimer):
    """ONNX Runtime's CPU execution provider, all graph optimizations on."""

    backend = "onnxruntime"


@TIMERS.register("openvino")
class OpenVinoTimer(RuntimeTimer):
    """OpenVINO on the CPU; the precision is set explicitly (its CPU default may be bf16)."""

    backend = "openvino"
