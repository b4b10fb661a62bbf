"""slimcv.measure: statistics, timing, pinning, energy meters, memory probe, whole benchmarks."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from rich.console import Console
from torch import nn

from slimcv.errors import SlimcvError, UnknownNameError
from slimcv.exporters.onnx import export_onnx
from slimcv.measure import BenchConfig, BenchRecord, BenchResult, LatencyStats, bench
from slimcv.measure import energy as energy_mod
from slimcv.measure.allocator import steady_malloc
from slimcv.measure.energy import EstimateMeter, RaplMeter, counter_delta, select_meter
from slimcv.measure.machine import CpuSnapshot, interference
from slimcv.measure.memory import ProbeRequest, probe_memory
from slimcv.measure.timing import measure, pinned
from slimcv.report.bench_table import bench_table
from slimcv.sources import LoadedModel, load_model

HAS_GPU = torch.cuda.is_available()
RECORD_KEYS = {
    "backend",
    "precision",
    "batch",
    "threads",
    "status",
    "reason",
    "median_ms",
    "p90_ms",
    "iqr_ms",
    "mean_ms",
    "min_ms",
    "std_ms",
    "runs",
    "warmup_runs",
    "throughput_ips",
    "peak_memory_bytes",
    "memory_increase_bytes",
    "memory_method",
    "energy_mj_per_image",
    "energy_method",
    "details",
}
#: Short timings: these tests check correctness, not the stability of the figures.
QUICK = {"warmup_s": 0.05, "min_warmup": 2, "min_time_s": 0.1, "min_runs": 5}


# --- statistics -------------------------------------------------------------------------------


def test_stats_on_known_samples_are_exact() -> None:
    samples_ns = np.arange(1, 11) * 1_000_000  # 1..10 ms
    rng = np.random.default_rng(0)
    stats = LatencyStats.from_ns(rng.permutation(samples_ns))  # order must not matter
    assert stats.median_ms == pytest.approx(5.5)
    assert stats.p90_ms == pytest.approx(9.1)  # linear interpolation: 1 + 0.9 * 9
    assert stats.iqr_ms == pytest.approx(7.75 - 3.25)
    assert stats.mean_ms == pytest.approx(5.5)
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.std_ms == pytest.approx(np.std(np.arange(1, 11), ddof=1))
    assert stats.runs == 10


def test_stats_single_sample_and_empty() -> None:
    stats = LatencyStats.from_ns([2_500_000])
    assert (stats.median_ms, stats.p90_ms, stats.iqr_ms, stats.std_ms) == (2.5, 2.5, 0.0, 0.0)
    with pytest.raises(SlimcvError):
        LatencyStats.from_ns([])


# --- timing loop and pinning ------------------------------------------------------------------


def test_measure_meets_both_count_and_time_minimums() -> None:
    calls: list[bool] = []

    def call() -> None:
        calls.append(gc.isenabled())
        time.sleep(0.002)

    timing = measure(call, warmup_s=0.0, min_warmup=3, min_time_s=0.05, min_runs=4, max_runs=1000)
    assert timing.warmup_runs == 3
    assert timing.samples_ns.size >= 4
    assert timing.timed_s >= 0.05
    assert len(calls) == timing.warmup_runs + timing.samples_ns.size
    assert not any(calls), "the garbage collector must be off during warm-up and timing"
    assert gc.isenabled()
    assert np.all(timing.samples_ns >= 2_000_000)


def test_measure_stops_at_max_runs_and_calls_the_start_hook_once() -> None:
    started: list[int] = []
    timing = measure(
        lambda: None,
        warmup_s=0.0,
        min_warmup=0,
        min_time_s=60.0,
        min_runs=7,
        max_runs=7,
        on_timed_start=lambda: started.append(1),
    )
    assert timing.samples_ns.size == 7
    assert started == [1]


@pytest.mark.skipif(not hasattr(os, "sched_setaffinity"), reason="Linux affinity API")
def test_pinned_restricts_every_thread_and_restores() -> None:
    before = os.sched_getaffinity(0)
    release = threading.Event()
    worker = threading.Thread(target=release.wait)
    worker.start()
    try:
        with pinned(1) as cpus:
            assert len(cpus) == 1
            assert os.sched_getaffinity(0) == set(cpus)
            assert os.sched_getaffinity(worker.native_id) == set(cpus)
        assert os.sched_getaffinity(0) == before
        assert os.sched_getaffinity(worker.native_id) == before
    finally:
        release.set()
        worker.join()


def test_interference_counts_other_processes_not_ourselves() -> None:
    before = CpuSnapshot(wall_s=0.0, busy_s=10.0, steal_s=1.0, own_s=5.0)
    after = CpuSnapshot(wall_s=2.0, busy_s=14.0, steal_s=1.5, own_s=8.0)
    # 4 s busy machine-wide, 3 s of it ours: 1 s of others over 2 s of wall time.
    assert interference(before, after) == {"other_load_cores": 0.5, "steal_cores": 0.25}
    assert interference(before, CpuSnapshot(0.0, None, None, 0.0)) == {}


@pytest.mark.skipif(not os.path.exists("/proc/stat"), reason="Linux procfs")
def test_snapshots_count_all_our_threads_as_ours() -> None:
    stop = time.monotonic() + 0.5

    def spin() -> None:
        while time.monotonic() < stop:
            pass

    worker = threading.Thread(target=spin)
    before = CpuSnapshot.take()
    worker.start()
    worker.join()
    after = CpuSnapshot.take()
    assert after.own_s - before.own_s >= 0.4  # the worker's CPU time is ours, not "other"
    figures = interference(before, after)
    assert set(figures) == {"other_load_cores", "steal_cores"}
    assert 0 <= figures["other_load_cores"] <= (os.cpu_count() or 1)


def test_steady_malloc_is_reported_and_can_be_turned_off() -> None:
    import platform

    with steady_malloc(False) as description:
        assert description is None
    with steady_malloc(True) as description:
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            assert description and "glibc" in description
        block = np.ones(64 << 20, dtype=np.uint8)  # allocations still work inside
        assert int(block.sum()) == 64 << 20


# --- configuration ----------------------------------------------------------------------------


def test_unknown_backend_lists_known_names() -> None:
    with pytest.raises(UnknownNameError) as info:
        BenchConfig(backends=("torch", "onnxruntim"))
    message = str(info.value)
    assert "onnxruntim" in message
    for known in ("torch", "onnxruntime", "openvino", "cuda", "tensorrt"):
        assert known in message


@pytest.mark.parametrize(
    "kwargs",
    [
        {"batches": (0,)},
        {"batches": ()},
        {"backends": ()},
        {"precision": "int4"},
        {"threads": 0},
        {"min_runs": 0},
        {"min_runs": 50, "max_runs": 10},
        {"warmup_s": -1.0},
        {"backends": ("torch", "torch")},
    ],
)
def test_config_rejects_bad_values(kwargs: dict) -> None:
    with pytest.raises(SlimcvError):
        BenchConfig(**kwargs)


def test_config_to_dict_is_plain() -> None:
    data = BenchConfig(batches=[1, 8]).to_dict()
    assert data["batches"] == [1, 8]
    assert data["backends"] == ["torch", "onnxruntime", "openvino"]
    json.dumps(data)


# --- energy -----------------------------------------------------------------------------------


def _fake_rapl(root: Path, energy_uj: int, max_uj: int = 10_000) -> None:
    zone = root / "intel-rapl:0"
    (zone / "intel-rapl:0:0").mkdir(parents=True, exist_ok=True)  # a sub-zone: not added
    (zone / "energy_uj").write_text(f"{energy_uj}\n")
    (zone / "max_energy_range_uj").write_text(f"{max_uj}\n")
    (zone / "intel-rapl:0:0" / "energy_uj").write_text("123\n")


def test_rapl_reads_package_counters_across_wrap_around(tmp_path: Path) -> None:
    _fake_rapl(tmp_path, 9_000)
    meter = RaplMeter(root=tmp_path)
    assert meter.unavailable_reason() is None
    assert [zone.name for zone in meter.zones()] == ["intel-rapl:0"]
    start = meter.start()
    _fake_rapl(tmp_path, 500)  # wrapped: 9000 -> 10000 -> 0 -> 500
    reading = meter.stop(start, images=3, busy_s=1.0, threads=2)
    assert reading.mj_per_image == pytest.approx(1.5 / 3)  # 1500 uJ over 3 images
    assert reading.method.startswith("RAPL")
    assert not reading.is_estimate
    assert counter_delta(100, 400, 1000) == 300
    assert counter_delta(900, 100, 1000) == 200


def test_energy_is_a_labelled_estimate_without_rapl(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(energy_mod, "RAPL_ROOT", tmp_path / "absent")
    meter, _ = select_meter("onnxruntime")
    assert isinstance(meter, EstimateMeter)
    reading = meter.stop(meter.start(), images=10, busy_s=2.0, threads=2)
    assert reading.is_estimate
    assert "estimate" in reading.method and "W per busy core" in reading.method
    assert "no RAPL" in reading.method
    # 5 W x 2 cores x 2 s = 20 J over 10 images
    assert reading.mj_per_image == pytest.approx(
        energy_mod.ESTIMATE_WATTS_PER_CORE * 2 * 2.0 * 1000 / 10
    )


def test_unreadable_rapl_is_passed_over(tmp_path: Path) -> None:
    _fake_rapl(tmp_path, 1)
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("not a number")
    assert "unreadable" in (RaplMeter(root=tmp_path).unavailable_reason() or "")


@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU answer")
def test_no_cpu_estimate_for_gpu_backends() -> None:
    meter, why = select_meter("cuda")
    assert meter is None
    assert why


# --- the table on hand-made results -----------------------------------------------------------


def _result(*records: BenchRecord) -> BenchResult:
    return BenchResult(
        model="m",
        input_shape=[1, 3, 8, 8],
        machine={"cpu": "cpu X", "logical_cpus": 2},
        config=BenchConfig().to_dict() | {"threads": 2},
        records=list(records),
    )


def test_table_shows_actual_precision_estimates_and_skip_reasons() -> None:
    ok = BenchRecord(
        backend="openvino",
        precision="f32",
        batch=1,
        threads=2,
        median_ms=2.0,
        p90_ms=2.5,
        iqr_ms=0.1,
        runs=30,
        throughput_ips=500.0,
        peak_memory_bytes=300 << 20,
        memory_increase_bytes=40 << 20,
        memory_method="peak RSS",
        energy_mj_per_image=12.5,
        energy_method="estimate: assumes 5 W",
        details={"inference_precision": "bf16"},
    )
    skipped = BenchRecord(
        backend="cuda",
        precision="f32",
        batch=1,
        threads=2,
        status="skipped",
        reason="cuda: no CUDA GPU on this machine; skipped",
    )
    console = Console(record=True, width=250)
    console.print(bench_table(_result(ok, skipped)))
    text = console.export_text()
    assert "f32 (runs bf16)" in text
    assert "~12.5" in text
    assert "300 (+40)" in text
    assert "no CUDA GPU on this machine" in text
    assert "cpu X" in text and "pinned to 2 CPU" in text


# --- whole benchmarks -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return load_model("torchvision:mobilenet_v3_small", num_classes=10, image_size=64)


@pytest.fixture(scope="module")
def result(tiny: LoadedModel) -> BenchResult:
    config = BenchConfig(
        backends=("torch", "onnxruntime", "openvino", "cuda", "tensorrt"),
        batches=(1, 2),
        threads=1,
        **QUICK,
    )
    return bench(tiny, config, progress=False)


@pytest.mark.slow
def test_bench_ok_records_are_consistent(result: BenchResult) -> None:
    ok = [rec for rec in result.records if rec.ok]
    assert {(rec.backend, rec.batch) for rec in ok} == {
        (b, n) for b in ("torch", "onnxruntime", "openvino") for n in (1, 2)
    }
    for rec in ok:
        assert rec.median_ms is not None and rec.median_ms > 0
        assert rec.p90_ms >= rec.median_ms >= rec.min_ms > 0
        assert rec.iqr_ms >= 0 and rec.std_ms >= 0
        assert rec.runs >= QUICK["min_runs"] and rec.warmup_runs >= QUICK["min_warmup"]
        assert rec.throughput_ips == pytest.approx(rec.batch * 1000 / rec.median_ms)
        assert rec.threads == 1 and rec.precision == "f32"
        assert len(rec.details["affinity"]) == 1
        assert rec.details["other_load_cores"] >= 0


@pytest.mark.slow
@pytest.mark.skipif(HAS_GPU, reason="checks the no-GPU answer")
def test_bench_skips_gpu_backends_with_a_reason(result: BenchResult) -> None:
    for backend in ("cuda", "tensorrt"):
        for batch in (1, 2):
            rec = result.record(backend, batch)
            assert rec.status == "skipped"
            assert "GPU" in rec.reason
            assert rec.median_ms is None and rec.peak_memory_bytes is None


@pytest.mark.slow
def test_openvino_reports_the_precision_it_really_runs(result: BenchResult) -> None:
    assert result.record("openvino", 1).details["inference_precision"] == "f32"


@pytest.mark.slow
def test_memory_probe_gives_a_plausible_peak(result: BenchResult) -> None:
    for rec in (r for r in result.records if r.ok):
        baseline = rec.details["memory_baseline_bytes"]
        assert rec.peak_memory_bytes is not None, rec.details.get("memory_error")
        assert baseline < rec.peak_memory_bytes < 8 << 30
        assert rec.memory_increase_bytes == rec.peak_memory_bytes - baseline
        # mobilenet_v3_small is a few MB of weights: a huge increase would mean the probe
        # counted something else (e.g. the parent's memory).
        assert rec.memory_increase_bytes < 1 << 30
        assert "subprocess" in rec.memory_method


@pytest.mark.slow
def test_energy_is_measured_or_labelled_estimate(result: BenchResult) -> None:
    rapl_readable = RaplMeter().unavailable_reason() is None
    for rec in (r for r in result.records if r.ok):
        assert rec.energy_mj_per_image is not None and rec.energy_mj_per_image > 0
        if rapl_readable:
            assert rec.energy_method.startswith("RAPL")
        else:
            assert rec.energy_method.startswith("estimate")


@pytest.mark.slow
def test_bench_to_dict_is_json_with_documented_keys(result: BenchResult) -> None:
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {"model", "input_shape", "machine", "config", "records"}
    assert data["input_shape"] == [1, 3, 64, 64]
    assert data["config"]["threads"] == 1
    for key in ("cpu", "logical_cpus", "affinity", "os", "versions"):
        assert key in data["machine"]
    assert {"torch", "onnxruntime", "openvino"} <= set(data["machine"]["versions"])
    assert len(data["records"]) == 10
    for rec in data["records"]:
        assert set(rec) == RECORD_KEYS


@pytest.mark.slow
def test_onnx_only_model_skips_torch_and_runs_onnx_backends(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    path = tmp_path / "tiny.onnx"
    export_onnx(tiny.module, path, tiny.input_shape(1))
    onnx_model = load_model(str(path))
    config = BenchConfig(backends=("torch", "onnxruntime"), memory=False, threads=1, **QUICK)
    result = bench(onnx_model, config, progress=False)
    torch_rec, ort_rec = result.record("torch", 1), result.record("onnxruntime", 1)
    assert torch_rec.status == "skipped" and "ONNX-only" in torch_rec.reason
    assert ort_rec.ok and ort_rec.details["onnx"] == str(path)


@pytest.mark.slow
def test_unsupported_precision_is_skipped_not_fatal(tiny: LoadedModel) -> None:
    config = BenchConfig(
        backends=("onnxruntime",), precision="bf16", memory=False, energy=False, **QUICK
    )
    rec = bench(tiny, config, progress=False).record("onnxruntime", 1)
    assert rec.status == "skipped" and "bf16" in rec.reason


class _OnlyBatchOne(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3 * 8 * 8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != 1:
            raise RuntimeError("this model takes batch 1 only")
        return self.fc(x.flatten(1))


def test_a_batch_the_model_cannot_take_fails_only_its_record() -> None:
    from slimcv.sources.model import Preprocess

    model = LoadedModel(
        source="test:only-batch-one",
        num_classes=4,
        preprocess=Preprocess(image_size=8),
        module=_OnlyBatchOne().eval(),
    )
    config = BenchConfig(backends=("torch",), batches=(1, 2), memory=False, energy=False, **QUICK)
    result = bench(model, config, progress=False)
    assert result.record("torch", 1).ok
    failed = result.record("torch", 2)
    assert failed.status == "failed" and "batch 1 only" in failed.reason
    assert failed.median_ms is None


def test_failed_memory_probe_gives_no_figure_and_a_reason(tmp_path: Path) -> None:
    request = ProbeRequest(
        backend="onnxruntime",
        precision="f32",
        threads=1,
        batch=1,
        image_size=8,
        num_classes=4,
        onnx=tmp_path / "missing.onnx",
    )
    reading = probe_memory(request, timeout_s=120)
    assert reading.peak_bytes is None and reading.increase_bytes is None
    assert reading.error and "memory probe failed" in reading.error
    with pytest.raises(SlimcvError):
        ProbeRequest(
            backend="torch", precision="f32", threads=1, batch=1, image_size=8, num_classes=4
        )
