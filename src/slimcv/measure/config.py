"""What a benchmark measures and how long it insists (the timing defaults are argued here)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from slimcv.errors import SlimcvError
from slimcv.runtimes import PRECISIONS, get_backend


@dataclass
class BenchConfig:
    """How to benchmark a model.

    The timing defaults were chosen on a shared 2-core VM, where two benchmarks in a row give
    medians within 10% of each other, mostly within 2% (resnet18 at 224, batch 1 and 8, on
    torch, onnxruntime and openvino; about 40 s for all six records with memory probes): a
    second of warm-up lets one-off work (kernel choice, arena growth) finish even when each
    call is fast, and two seconds of timed calls give enough of them that a neighbour's burst
    moves the median little. What remains is the machine itself drifting by a few percent over
    a minute, which longer loops do not remove.

    Attributes:
        backends: runtime backends to measure, by registered name.
        batches: batch sizes; one record per backend and batch.
        precision: ``f32``, ``bf16`` or ``f16``, set explicitly on every backend (one that
            cannot run it is skipped, never silently run at another precision).
        threads: runtime threads, and CPUs the process is pinned to; ``None`` means all
            available cores.
        warmup_s: minimum seconds of untimed calls before timing.
        min_warmup: minimum number of untimed calls.
        min_time_s: minimum seconds of timed calls.
        min_runs: minimum number of timed calls.
        max_runs: timing stops here even before ``min_time_s`` (very fast models).
        steady_malloc: keep freed memory in the process while timing (glibc only), so that
            PyTorch's large activation buffers are not returned to the OS and faulted in again
            on every call; without it PyTorch eager at batch 8 varies 10-20% between runs.
            See :mod:`slimcv.measure.allocator`.
        memory: measure peak memory in an isolated subprocess (about 2 s per record).
        energy: measure (or, labelled, estimate) energy per image.
        seed: seed of the random input batch.
    """

    backends: tuple[str, ...] = ("torch", "onnxruntime", "openvino")
    batches: tuple[int, ...] = (1,)
    precision: str = "f32"
    threads: int | None = None
    warmup_s: float = 1.0
    min_warmup: int = 5
    min_time_s: float = 2.0
    min_runs: int = 20
    max_runs: int = 10_000
    steady_malloc: bool = True
    memory: bool = True
    energy: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.backends, str):
            self.backends = (self.backends,)
        self.backends = tuple(self.backends)
        if not self.backends:
            raise SlimcvError("backends is empty; name at least one")
        for name in self.backends:
            get_backend(name)  # raises UnknownNameError listing the known backends
        if len(set(self.backends)) != len(self.backends):
            raise SlimcvError(f"a backend is listed twice in {', '.join(self.backends)}")
        if isinstance(self.batches, int):
            self.batches = (self.batches,)
        self.batches = tuple(self.batches)
        if not self.batches:
            raise SlimcvError("batches is empty; give at least one batch size")
        for batch in self.batches:
            if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
                raise SlimcvError(f"batch sizes must be integers of at least 1, got {batch!r}")
        if len(set(self.batches)) != len(self.batches):
            raise SlimcvError(f"a batch size is listed twice in {self.batches}")
        if self.precision not in PRECISIONS:
            raise SlimcvError(
                f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}"
            )
        if self.threads is not None and self.threads < 1:
            raise SlimcvError(f"threads must be at least 1, got {self.threads}")
        if self.warmup_s < 0 or self.min_time_s < 0:
            raise SlimcvError("warmup_s and min_time_s cannot be negative")
        if self.min_warmup < 0:
            raise SlimcvError(f"min_warmup cannot be negative, got {self.min_warmup}")
        if self.min_runs < 1:
            raise SlimcvError(f"min_runs must be at least 1, got {self.min_runs}")
        if self.max_runs < self.min_runs:
            raise SlimcvError(
                f"max_runs ({self.max_runs}) must be at least min_runs ({self.min_runs})"
            )

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["backends"] = list(self.backends)
        data["batches"] = list(self.batches)
        return data
