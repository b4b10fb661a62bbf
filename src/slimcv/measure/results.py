"""Benchmark results: one record per (backend, batch), and the whole run with its machine."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

OK = "ok"
SKIPPED = "skipped"
FAILED = "failed"


@dataclass
class BenchRecord:
    """One backend at one batch size: latency, throughput, memory and energy, or why not.

    Attributes:
        status: ``ok``; ``skipped`` when the backend cannot run here (package missing, no GPU,
            precision unsupported, PyTorch backend on an ONNX-only model); ``failed`` when the
            runtime raised while opening or running the model.
        reason: why the record is skipped or failed.
        median_ms, p90_ms, iqr_ms, mean_ms, min_ms, std_ms: per-call latency of the whole batch.
        runs: timed calls; warmup_runs: untimed calls before them.
        throughput_ips: images per second, ``batch / median``.
        peak_memory_bytes: peak RSS of an isolated process running the model.
        memory_increase_bytes: that peak minus the process's RSS after imports.
        memory_method: how the memory figures were obtained.
        energy_mj_per_image: millijoules per image (an estimate if ``energy_method`` says so).
        energy_method: how the energy figure was obtained, or why there is none.
        details: runtime facts: the runtime's own report (OpenVINO's ``inference_precision``),
            the CPUs pinned to (``affinity``), where the ONNX file came from, probe errors.
    """

    backend: str
    precision: str
    batch: int
    threads: int
    status: str = OK
    reason: str | None = None
    median_ms: float | None = None
    p90_ms: float | None = None
    iqr_ms: float | None = None
    mean_ms: float | None = None
    min_ms: float | None = None
    std_ms: float | None = None
    runs: int = 0
    warmup_runs: int = 0
    throughput_ips: float | None = None
    peak_memory_bytes: int | None = None
    memory_increase_bytes: int | None = None
    memory_method: str | None = None
    energy_mj_per_image: float | None = None
    energy_method: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return _jsonable(asdict(self))


@dataclass
class BenchResult:
    """A whole benchmark.

    Attributes:
        model: the model's source string.
        input_shape: NCHW shape at batch 1 (each record's batch replaces N).
        machine: CPU, cores, affinity, OS and runtime versions.
        config: the :class:`~slimcv.measure.config.BenchConfig` used, with threads resolved.
        records: one per (backend, batch), in the order measured.
    """

    model: str
    input_shape: list[int]
    machine: dict[str, Any]
    config: dict[str, Any]
    records: list[BenchRecord] = field(default_factory=list)

    def record(self, backend: str, batch: int) -> BenchRecord:
        """The record of ``backend`` at ``batch``.

        Raises:
            KeyError: no such record.
        """
        for rec in self.records:
            if rec.backend == backend and rec.batch == batch:
                return rec
        raise KeyError(f"no record for {backend} at batch {batch}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "machine": _jsonable(self.machine),
            "config": _jsonable(self.config),
            "records": [rec.to_dict() for rec in self.records],
        }


def _jsonable(value: Any) -> Any:
    """Plain JSON types only: runtimes report their own objects (OpenVINO types, paths)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        items = sorted(value) if isinstance(value, set) else value
        return [_jsonable(v) for v in items]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)
