"""``bench``: every requested backend at every batch size, measured the same way.

For each backend, in order: check it can run here (otherwise its records are *skipped* with
the one-line reason), pin the process to ``threads`` CPUs and keep freed memory in it, open one
session, then for each batch size warm up and time it (energy and the CPU time of other
processes read around the timed loop); release the session; finally measure peak memory per
batch in fresh subprocesses, so no probe runs while anything is being timed. ONNX backends
share one export, made on first need in a temporary directory.
"""

from __future__ import annotations

import gc
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from slimcv.errors import BackendUnavailable, SlimcvError
from slimcv.measure.allocator import steady_malloc
from slimcv.measure.config import BenchConfig
from slimcv.measure.energy import EnergyReading, select_meter
from slimcv.measure.machine import CpuSnapshot, interference, machine_info
from slimcv.measure.memory import ProbeRequest, probe_memory
from slimcv.measure.results import FAILED, SKIPPED, BenchRecord, BenchResult
from slimcv.measure.stats import LatencyStats
from slimcv.measure.timing import Timing, measure, pinned
from slimcv.progress import progress_bar
from slimcv.runtimes import Backend, RuntimeOptions, Session, available_cores, get_backend
from slimcv.sources.model import LoadedModel


def bench(
    model: LoadedModel | str, config: BenchConfig | None = None, progress: bool = True
) -> BenchResult:
    """Measures latency, throughput, peak memory and energy of ``model`` per backend and batch.

    Args:
        model: the model, or a source string for :func:`slimcv.sources.load_model`.
        config: what to measure; defaults to :class:`BenchConfig`'s defaults.
        progress: show a progress bar on stderr (stdout stays clean for ``--json``).

    Returns:
        One record per (backend, batch); backends that cannot run here give skipped records
        with the reason instead of an exception.

    Raises:
        SourceError: ``model`` is a source string that does not load.
    """
    config = config if config is not None else BenchConfig()
    if isinstance(model, str):
        from slimcv.sources.loader import load_model

        model = load_model(model)
    threads = config.threads or available_cores()
    options = RuntimeOptions(precision=config.precision, threads=threads)
    records: list[BenchRecord] = []
    with (
        tempfile.TemporaryDirectory(prefix="slimcv-bench-") as tmp,
        progress_bar(progress) as bar,
    ):
        files = _ModelFiles(model, Path(tmp))
        task = bar.add_task("bench", total=len(config.backends) * len(config.batches), status="")
        for name in config.backends:
            bar.update(task, status=name)
            for record in _bench_backend(get_backend(name), model, options, config, files):
                records.append(record)
                bar.update(task, advance=1, status=_status(record))
    return BenchResult(
        model=model.source,
        input_shape=list(model.input_shape(1)),
        machine=machine_info(),
        config={**config.to_dict(), "threads": threads},
        records=records,
    )


def _bench_backend(
    backend: Backend,
    model: LoadedModel,
    options: RuntimeOptions,
    config: BenchConfig,
    files: _ModelFiles,
) -> Iterator[BenchRecord]:
    """Records of one backend, batch by batch."""
    threads = options.resolved_threads()

    def blank(batch: int, **fields: Any) -> BenchRecord:
        return BenchRecord(
            backend=backend.name,
            precision=options.precision,
            batch=batch,
            threads=threads,
            **fields,
        )

    try:
        onnx_path = _prepare(backend, model, options, files)
    except SlimcvError as exc:
        for batch in config.batches:
            yield blank(batch, status=SKIPPED, reason=str(exc))
        return

    timed: dict[int, BenchRecord] = {}
    with pinned(threads) as cpus, steady_malloc(config.steady_malloc) as allocator:
        try:
            session = backend.open(model, options, onnx_path)
        except Exception as exc:  # noqa: BLE001 - runtimes raise their own error types
            status = SKIPPED if isinstance(exc, SlimcvError) else FAILED
            for batch in config.batches:
                yield blank(batch, status=status, reason=_one_line(exc), details={"affinity": cpus})
            return
        try:
            for batch in config.batches:
                record = blank(
                    batch, details={**session.details, "affinity": cpus, "allocator": allocator}
                )
                try:
                    _time(session, model, batch, config, record)
                except Exception as exc:  # noqa: BLE001 - e.g. a model fixed to batch 1
                    record.status, record.reason = FAILED, _one_line(exc)
                timed[batch] = record
        finally:
            session.close()
            del session
            gc.collect()

    for batch, record in timed.items():
        if record.ok and config.memory:
            _probe(backend, model, options, batch, files, record)
        record.details["onnx"] = files.onnx_origin if backend.needs_onnx else None
        yield record


def _prepare(
    backend: Backend, model: LoadedModel, options: RuntimeOptions, files: _ModelFiles
) -> Path | None:
    """The ONNX file the backend runs (``None`` for PyTorch backends).

    Raises:
        SlimcvError: the backend cannot run here or on this model; the message says why.
    """
    backend.check(options)
    if not backend.needs_onnx:
        if model.module is None:
            what = (
                f"the artifact {model.meta['artifact']} holds only its exported graph "
                "(e.g. INT8 QDQ)"
                if model.meta.get("graph_only")
                else f"{model.source} is ONNX-only"
            )
            raise BackendUnavailable(f"{backend.name} runs a PyTorch module; {what}")
        return None
    return files.onnx()


def _time(
    session: Session, model: LoadedModel, batch: int, config: BenchConfig, record: BenchRecord
) -> None:
    """Warms up and times ``session`` on a seeded random batch; fills ``record``."""
    inputs = np.random.default_rng(config.seed).standard_normal(
        model.input_shape(batch), dtype=np.float32
    )
    meter, no_meter = select_meter(record.backend) if config.energy else (None, "")
    started: list[Any] = []
    cpu: list[CpuSnapshot] = []

    def on_timed_start() -> None:
        cpu.append(CpuSnapshot.take())
        if meter is not None:
            started.append(meter.start())

    timing = measure(
        lambda: session.run(inputs),
        warmup_s=config.warmup_s,
        min_warmup=config.min_warmup,
        min_time_s=config.min_time_s,
        min_runs=config.min_runs,
        max_runs=config.max_runs,
        on_timed_start=on_timed_start,
    )
    cpu.append(CpuSnapshot.take())
    if config.energy:
        reading = _energy(meter, started, timing, batch, record.threads, no_meter)
        record.energy_mj_per_image, record.energy_method = reading.mj_per_image, reading.method
    stats = LatencyStats.from_ns(timing.samples_ns)
    record.median_ms, record.p90_ms, record.iqr_ms = stats.median_ms, stats.p90_ms, stats.iqr_ms
    record.mean_ms, record.min_ms, record.std_ms = stats.mean_ms, stats.min_ms, stats.std_ms
    record.runs, record.warmup_runs = stats.runs, timing.warmup_runs
    record.throughput_ips = batch * 1000.0 / stats.median_ms if stats.median_ms > 0 else None
    record.details["warmup_s"] = round(timing.warmup_s, 3)
    record.details["timed_s"] = round(timing.timed_s, 3)
    # Other load on a shared machine is the usual cause of a surprising figure; keep it visible.
    record.details.update(interference(cpu[0], cpu[1]))


def _energy(
    meter: Any, started: list[Any], timing: Timing, batch: int, threads: int, no_meter: str
) -> EnergyReading:
    if meter is None:
        return EnergyReading(None, f"unavailable: {no_meter}")
    try:
        return meter.stop(
            started[0],
            images=timing.samples_ns.size * batch,
            busy_s=timing.busy_s,
            threads=threads,
        )
    except Exception as exc:  # noqa: BLE001 - a meter failing must not lose the latency figures
        return EnergyReading(None, f"unavailable: {meter.name} failed ({exc})")


def _probe(
    backend: Backend,
    model: LoadedModel,
    options: RuntimeOptions,
    batch: int,
    files: _ModelFiles,
    record: BenchRecord,
) -> None:
    """Measures peak memory in a subprocess; a failure leaves the figure empty with a reason."""
    try:
        source = {"onnx": files.onnx()} if backend.needs_onnx else {"artifact": files.artifact()}
    except SlimcvError as exc:
        record.details["memory_error"] = f"could not prepare the probe's model: {exc}"
        return
    reading = probe_memory(
        ProbeRequest(
            backend=backend.name,
            precision=options.precision,
            threads=record.threads,
            batch=batch,
            image_size=model.preprocess.image_size,
            num_classes=model.num_classes,
            **source,
        )
    )
    record.memory_method = reading.method
    record.peak_memory_bytes = reading.peak_bytes
    record.memory_increase_bytes = reading.increase_bytes
    record.details["memory_baseline_bytes"] = reading.baseline_bytes
    if reading.error:
        record.details["memory_error"] = reading.error


class _ModelFiles:
    """The model on disk, made once on first need: its ONNX export and an artifact directory.

    A failure is remembered, so every backend that needs the file reports the same reason
    without trying again.
    """

    def __init__(self, model: LoadedModel, directory: Path) -> None:
        self.model = model
        self.directory = directory
        self._made: dict[str, Path | SlimcvError] = {}

    @property
    def onnx_origin(self) -> str:
        if self.model.onnx_path is not None and self.model.module is None:
            return str(self.model.onnx_path)
        return "exported by slimcv (BatchNorm folded, simplified, dynamic batch)"

    def onnx(self) -> Path:
        return self._get("onnx", self._export)

    def artifact(self) -> Path:
        return self._get("artifact", self._save)

    def _get(self, key: str, make: Callable[[], Path]) -> Path:
        if key not in self._made:
            try:
                self._made[key] = make()
            except SlimcvError as exc:
                self._made[key] = exc
        made = self._made[key]
        if isinstance(made, SlimcvError):
            raise made
        return made

    def _export(self) -> Path:
        if self.model.module is None:
            if self.model.onnx_path is None:
                raise BackendUnavailable(f"{self.model.source} has neither a module nor ONNX")
            return Path(self.model.onnx_path)
        from slimcv.exporters.onnx import export_onnx

        path = self.directory / "model.onnx"
        export_onnx(self.model.module, path, self.model.input_shape(1))
        return path

    def _save(self) -> Path:
        from slimcv.sources.artifact import save_artifact

        return save_artifact(self.directory / "artifact", self.model, command="bench-memprobe")


def _status(record: BenchRecord) -> str:
    if record.ok and record.median_ms is not None:
        return f"{record.backend} b{record.batch}: {record.median_ms:.2f} ms"
    return f"{record.backend} b{record.batch}: {record.status}"


def _one_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else type(exc).__name__
    return text if isinstance(exc, SlimcvError) else f"{type(exc).__name__}: {text[:300]}"
