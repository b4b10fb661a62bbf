"""Auto mode end to end: baseline, sensitivity, candidates, latency, selection, bench, report.

Every step is a stage of one :class:`~slimcv.pipeline.workspace.Workspace`, so a crash - or
``kill -9`` - followed by ``resume=True`` reuses every stage whose output verifies and redoes
the rest. Inside the candidates stage each pruning level is finished on its own (see
:mod:`slimcv.pipeline.auto.candidates`), so levels completed before a crash are reused too.

Latency is measured in this process after all candidates are prepared, never while workers
train: timing next to a training job would measure the neighbour. Candidates are timed in
round-robin passes and each gets the median over passes, so a machine drifting over minutes
slows them all alike and the ratios between them hold.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from slimcv.errors import DataError, SlimcvError
from slimcv.pipeline.auto.candidates import (
    LEVEL_FLOAT_ONNX,
    LevelJob,
    Variant,
    prepare_level,
)
from slimcv.pipeline.auto.config import AutoConfig
from slimcv.pipeline.auto.select import Selection, select
from slimcv.pipeline.workspace import StageRecord, Workspace
from slimcv.progress import progress_bar
from slimcv.sources.artifact import MANIFEST, sha256_file

#: Below the accuracy floor by more than this many points, a level's float model says that
#: pruning further will not come back into the bound (fine-tune noise on a few hundred images
#: is about this size), so deeper levels are skipped.
EARLY_STOP_SLACK = 0.5


@dataclass
class AutoResult:
    """The outcome of :func:`optimize_auto`; ``to_dict()`` is ``slimcv optimize --json``."""

    out_dir: str
    model: str
    data: str
    config: AutoConfig
    selection: Selection
    stages: list[StageRecord]
    seconds: float
    report: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "model": self.model,
            "data": self.data,
            "config": self.config.to_dict(),
            "selection": self.selection.to_dict(),
            "stages": [s.to_dict() for s in self.stages],
            "seconds": self.seconds,
            "report": self.report,
        }


def optimize_auto(
    model: str,
    data: str,
    out_dir: str | Path,
    config: AutoConfig | None = None,
    *,
    num_classes: int | None = None,
    image_size: int | None = None,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    on_stage: Callable[[StageRecord], None] | None = None,
    command: str | None = None,
) -> AutoResult:
    """Finds the fastest model on ``config.target`` within ``config.max_drop`` points.

    Args:
        model: a model source (a trained artifact directory, or any source with
            ``config.train_epochs`` to train it first).
        data: the data source its accuracy is measured on (labeled).
        out_dir: the workspace.
        config: the search; defaults to ONNX Runtime, 1 point.
        num_classes / image_size: passed to the model loader.
        resume / force: as for recipes.
        progress: progress bars.
        on_stage: called after each stage.
        command: the command line that started the run, recorded for the report.

    Raises:
        SlimcvError: bad config, a target runtime that cannot run here, unlabeled data.
        ArtifactError: workspace problems (see :meth:`Workspace.open`).
    """
    import slimcv
    from slimcv.data import load_data
    from slimcv.runtimes import RuntimeOptions, get_backend

    config = config or AutoConfig()
    # Bad input gets one clear line before any work and before --out is touched.
    get_backend(config.target).check(RuntimeOptions())
    loaded = slimcv.load_model(model, num_classes=num_classes, image_size=image_size)
    bundle = load_data(data, loaded.preprocess, seed=config.seed)
    if not bundle.labeled:
        raise DataError(f"{data} has no labels; auto mode bounds top-1, so it needs labeled data")
    if bundle.num_classes != loaded.num_classes:
        raise DataError(
            f"{data} has {bundle.num_classes} classes, the model {loaded.num_classes}; "
            "pass --num-classes"
        )
    identity = hashlib.sha256(
        json.dumps(
            {"model": model, "data": data, "config": config.to_dict(), "classes": num_classes},
            sort_keys=True,
        ).encode()
    ).hexdigest()
    workspace = Workspace.open(
        out_dir,
        kind="auto",
        identity=identity,
        header={
            "model": model,
            "data": data,
            "num_classes": num_classes,
            "image_size": image_size,
            "auto": config.to_dict(),
            "command": command,
        },
        inputs=[model],
        resume=resume,
        force=force,
    )
    out = workspace.out
    started = time.perf_counter()
    # Workers get the baseline as a path: a model that is not an artifact yet is saved once.
    first = "train" if config.train_epochs else ("model" if "artifact" not in loaded.meta else None)
    planned = ["baseline", "sensitivity", "candidates", "latency", "select", "bench"]
    workspace.plan([first, *planned] if first else planned)
    baseline_dir = model
    if first == "train":
        from slimcv.training import TrainConfig, seed_everything

        def train(directory: Path) -> dict[str, Any]:
            seed_everything(config.seed)
            fresh = slimcv.load_model(model, num_classes=num_classes, image_size=image_size)
            result = slimcv.train(
                fresh,
                data,
                directory,
                TrainConfig(epochs=config.train_epochs, seed=config.seed),
                progress=progress,
            )
            return {"val_top1": result.final_val_top1}

        baseline_dir = str(out / workspace.stage("train", train, on_stage).directory)
    elif first == "model":

        def save(directory: Path) -> dict[str, Any]:
            from slimcv.sources.artifact import save_artifact

            save_artifact(directory, loaded, command="optimize-baseline")
            return {}

        baseline_dir = str(out / workspace.stage("model", save, on_stage).directory)

    base = workspace.stage(
        "baseline", lambda d: _baseline(baseline_dir, data, config, d), on_stage
    ).metrics
    record = workspace.stage(
        "sensitivity", lambda d: _sensitivity(baseline_dir, data, config, d, progress), on_stage
    )
    sens_file = out / record.directory / "result.json"
    sensitivity = json.loads(sens_file.read_text()).get("curves") if sens_file.is_file() else None
    job = LevelJob(
        baseline=baseline_dir,
        data=data,
        config=config,
        sensitivity=sensitivity,
        baseline_top1=base["top1"],
        staging=str(out / ".staging"),
        threads=max(1, _cores() // config.workers),
    )
    record = workspace.stage("candidates", lambda d: _candidates(job, d, progress), on_stage)
    candidates_dir = out / record.directory
    record = workspace.stage(
        "latency",
        lambda d: _latency(candidates_dir, baseline_dir, config, d, progress),
        on_stage,
    )
    latency_dir = out / record.directory
    record = workspace.stage(
        "select",
        lambda d: _select(candidates_dir, latency_dir, baseline_dir, base, config, d),
        on_stage,
    )
    selection = Selection.from_dict(
        json.loads((out / record.directory / "result.json").read_text())
    )
    select_dir = out / record.directory
    workspace.stage(
        "bench",
        lambda d: _bench(baseline_dir, candidates_dir, select_dir, config, d, progress),
        on_stage,
    )
    shutil.rmtree(out / ".staging", ignore_errors=True)
    from slimcv.report.optimize_report import write_report

    report = write_report(out)
    return AutoResult(
        out_dir=str(out),
        model=model,
        data=data,
        config=config,
        selection=selection,
        stages=workspace.records,
        seconds=time.perf_counter() - started,
        report={k: str(v) for k, v in report.items()},
    )


def _cores() -> int:
    from slimcv.runtimes.base import available_cores

    return available_cores()


def _write_result(directory: Path, data: dict[str, Any]) -> None:
    from slimcv.training.checkpoint import atomic_write

    directory.mkdir(parents=True, exist_ok=True)
    atomic_write(
        directory / "result.json", lambda fh: fh.write(json.dumps(data, indent=2).encode())
    )


def _baseline(model_dir: str, data: str, config: AutoConfig, out: Path) -> dict[str, Any]:
    """Top-1 of the baseline on the target runtime (f32) and in PyTorch, params and MACs."""
    import slimcv
    from slimcv.exporters.onnx import export_onnx
    from slimcv.pipeline.auto.candidates import _top1_on

    loaded = slimcv.load_model(model_dir)
    if loaded.module is None:
        raise SlimcvError(f"auto mode needs a PyTorch model to prune; {model_dir} has none")
    out.mkdir(parents=True)
    onnx_path = out / "model.onnx"
    export_onnx(loaded.require_module("export"), onnx_path, loaded.input_shape(1))
    profile = slimcv.profile(loaded)
    torch_top1 = slimcv.evaluate(loaded, data).top1
    top1 = _top1_on(loaded, data, config.target, "f32", onnx_path, config.seed)
    metrics = {
        "top1": top1,
        "torch_top1": torch_top1,
        "params": profile.params,
        "macs": profile.macs,
        "size_bytes": onnx_path.stat().st_size,
        "image_size": loaded.preprocess.image_size,
        "artifact": model_dir,
    }
    _write_result(out, {**metrics, "layers": [layer.__dict__ for layer in profile.layers]})
    return metrics


def _sensitivity(
    model_dir: str, data: str, config: AutoConfig, out: Path, progress: bool
) -> dict[str, Any]:
    """Per-layer pruning sensitivity curves, measured once for every level and the report."""
    import slimcv
    from slimcv.pruning.sensitivity import analyze_sensitivity

    if all(k >= 1.0 for k in config.keep_macs) or "sensitivity" not in config.allocations:
        _write_result(out, {"curves": None, "reason": "no level uses sensitivity allocation"})
        return {"layers": 0}
    curves = analyze_sensitivity(
        slimcv.load_model(model_dir),
        data,
        criterion=config.criterion,
        samples=config.sensitivity_samples,
        seed=config.seed,
        progress=progress,
    )
    _write_result(out, {"curves": curves.to_dict()})
    return {"layers": len(curves.curves), "baseline_top1": curves.baseline_top1}


def _candidates(job: LevelJob, out: Path, progress: bool) -> dict[str, Any]:
    """Prepares the levels, most MACs first, in batches of ``workers``; stops early when a
    level's float model falls clearly below the accuracy floor."""
    from slimcv.parallel import TaskPool

    config = job.config
    staging = Path(job.staging)
    staging.mkdir(parents=True, exist_ok=True)
    floor = job.baseline_top1 - config.max_drop
    levels: list[dict[str, Any]] = []
    skipped: list[float] = []
    pending = config.levels()
    with (
        TaskPool(prepare_level, job, workers=config.workers, address=config.ray_address) as pool,
        progress_bar(progress) as bar,
    ):
        task = bar.add_task("candidates", total=len(pending), status="")
        while pending:
            batch, pending = pending[: config.workers], pending[config.workers :]

            def done(_: int, level: dict[str, Any]) -> None:
                best = max((v["top1"] for v in level["variants"]), default=float("nan"))
                bar.update(
                    task,
                    advance=1,
                    status=f"{level['level']}: top-1 {best:.2f}"
                    + (f" ({level['error']})" if level.get("error") else ""),
                )

            results = pool.run(batch, done)
            levels.extend(results)
            deepest = min(level["keep_macs"] for level in results)
            floats = [
                v["top1"]
                for level in levels
                if level["keep_macs"] == deepest
                for v in level["variants"]
                if v["kind"] == "float"
            ]
            finished_keep = all(keep != deepest for keep, _ in pending)
            if pending and finished_keep and floats and max(floats) < floor - EARLY_STOP_SLACK:
                skipped = sorted({keep for keep, _ in pending}, reverse=True)
                pending = []
                bar.update(task, total=len(levels))
    out.mkdir(parents=True)
    for level in levels:
        source = staging / level["level"]
        if source.is_dir():
            shutil.move(str(source), str(out / source.name))
    failed = [lvl for lvl in levels if lvl.get("error")]
    if len(failed) == len(levels):
        raise SlimcvError(f"every candidate failed; first: {failed[0]['error']}")
    manifests = {
        str(p.parent.relative_to(out)): sha256_file(p) for p in sorted(out.glob(f"*/*/{MANIFEST}"))
    }
    _write_result(
        out,
        {
            "floor": floor,
            "levels": levels,
            "skipped_levels": skipped,
            "skipped_reason": (
                f"the level before fell more than {EARLY_STOP_SLACK} points below the floor"
                if skipped
                else None
            ),
            "artifact_manifests": manifests,
        },
    )
    return {
        "levels": len(levels),
        "variants": sum(len(lvl["variants"]) for lvl in levels),
        "skipped_levels": len(skipped),
        "failed_levels": len(failed),
    }


def _variants(candidates_dir: Path) -> list[Variant]:
    data = json.loads((candidates_dir / "result.json").read_text())
    return [Variant(**v) for level in data["levels"] for v in level["variants"]]


def _graph(candidates_dir: Path, variant: Variant) -> Path:
    """The ONNX file a variant's runtime loads."""
    if variant.kind == "int8":
        return candidates_dir / variant.artifact / "model.onnx"
    return candidates_dir / variant.level / LEVEL_FLOAT_ONNX


def _latency(
    candidates_dir: Path, baseline_dir: str, config: AutoConfig, out: Path, progress: bool
) -> dict[str, Any]:
    """Median latency of every variant on the target, and of the baseline in PyTorch eager."""
    import numpy as np

    import slimcv
    from slimcv.measure.machine import machine_info
    from slimcv.measure.timing import measure, pinned
    from slimcv.runtimes import RuntimeOptions, get_backend

    variants = _variants(candidates_dir)
    baseline = slimcv.load_model(baseline_dir)
    threads = config.threads or _cores()
    backend = get_backend(config.target)
    inputs = np.random.default_rng(config.seed).standard_normal(
        baseline.input_shape(config.batch), dtype=np.float32
    )
    sessions: dict[str, Any] = {}
    for variant in variants:
        options = RuntimeOptions(precision=variant.precision, threads=threads)
        sessions[variant.name] = backend.open(baseline, options, _graph(candidates_dir, variant))
    torch_name = "pytorch-eager-f32"
    sessions[torch_name] = get_backend("torch").open(baseline, RuntimeOptions(threads=threads))
    samples: dict[str, list[float]] = {name: [] for name in sessions}
    p90: dict[str, list[float]] = {name: [] for name in sessions}
    with pinned(threads), progress_bar(progress) as bar:
        task = bar.add_task("latency", total=config.timing_rounds * len(sessions), status="")
        for round_index in range(config.timing_rounds):
            for name, session in sessions.items():
                timing = measure(
                    lambda session=session: session.run(inputs),
                    warmup_s=0.2 if round_index else 0.5,
                    min_warmup=5,
                    min_time_s=config.min_time_s,
                    min_runs=20,
                    max_runs=10_000,
                )
                ms = timing.samples_ns / 1e6
                samples[name].append(float(np.median(ms)))
                p90[name].append(float(np.percentile(ms, 90)))
                bar.update(task, advance=1, status=f"{name}: {samples[name][-1]:.3f} ms")
    for session in sessions.values():
        session.close()
    latency = {name: statistics.median(values) for name, values in samples.items()}
    _write_result(
        out,
        {
            "target": config.target,
            "batch": config.batch,
            "threads": threads,
            "rounds": config.timing_rounds,
            "min_time_s": config.min_time_s,
            "median_ms": latency,
            "p90_ms": {name: statistics.median(values) for name, values in p90.items()},
            "per_round_ms": samples,
            "machine": machine_info(),
            "method": (
                f"{config.timing_rounds} round-robin passes over all candidates; per pass, "
                f"warm-up then >= {config.min_time_s} s of timed calls on one seeded random "
                f"batch of {config.batch}; latency = median over passes of the per-pass median"
            ),
        },
    )
    return {"candidates": len(variants), torch_name + "_ms": latency[torch_name]}


def _select(
    candidates_dir: Path,
    latency_dir: Path,
    baseline_dir: str,
    base: dict[str, Any],
    config: AutoConfig,
    out: Path,
) -> dict[str, Any]:
    timing = json.loads((latency_dir / "result.json").read_text())
    variants = _variants(candidates_dir)
    for variant in variants:
        variant.latency_ms = timing["median_ms"][variant.name]
        variant.p90_ms = timing["p90_ms"][variant.name]
    selection = select(
        variants,
        baseline_top1=base["top1"],
        max_drop=config.max_drop,
        latency_budget_ms=config.latency_budget_ms,
        torch_ms=timing["median_ms"]["pytorch-eager-f32"],
    )
    out.mkdir(parents=True)
    if selection.chosen is not None:
        chosen = selection.chosen
        source = (
            Path(baseline_dir)
            if chosen.artifact == "baseline"
            else candidates_dir / chosen.artifact
        )
        shutil.copytree(source, out / "model")
        if chosen.kind == "float":
            shutil.copy2(_graph(candidates_dir, chosen), out / "model.onnx")
    _write_result(out, selection.to_dict())
    return selection.headline()


def _bench(
    baseline_dir: str,
    candidates_dir: Path,
    select_dir: Path,
    config: AutoConfig,
    out: Path,
    progress: bool,
) -> dict[str, Any]:
    """The full before/after measurement (p50/p90, throughput, peak memory, energy), per-block
    MACs, and per-block latency on the target, for the baseline and the chosen model."""
    import slimcv
    from slimcv.measure import BenchConfig
    from slimcv.measure.layer_latency import layer_latency, macs_per_block

    selection = Selection.from_dict(json.loads((select_dir / "result.json").read_text()))
    out.mkdir(parents=True)
    batches = tuple(sorted({config.batch, 32}))
    # role: (artifact to bench, runtime precision, ONNX file the target runs, float weights)
    roles = {
        "baseline": (
            baseline_dir,
            "f32",
            _graph(candidates_dir, selection.baseline),
            baseline_dir,
        )
    }
    if selection.chosen is not None:
        chosen = selection.chosen
        float_dir = (
            baseline_dir
            if chosen.keep_macs >= 1.0
            else str(candidates_dir / chosen.level / "float")
        )
        roles["chosen"] = (
            str(select_dir / "model"),
            chosen.precision,
            _graph(candidates_dir, chosen),
            float_dir,
        )
    results: dict[str, Any] = {}
    for role, (source, precision, graph, float_dir) in roles.items():
        backends = ("torch", config.target) if role == "baseline" else (config.target,)
        records = []
        for backend in backends:
            measured = slimcv.bench(
                source,
                BenchConfig(
                    backends=(backend,),
                    batches=batches,
                    precision=precision if backend == config.target else "f32",
                    threads=config.threads,
                    min_time_s=config.bench_time_s,
                ),
                progress=progress,
            )
            records.extend(r.to_dict() for r in measured.records)
        float_model = slimcv.load_model(float_dir)
        profile = slimcv.profile(float_model)
        results[role] = {
            "records": records,
            "macs_blocks": macs_per_block([layer.__dict__ for layer in profile.layers]),
            "latency_blocks": layer_latency(
                graph,
                float_model.input_shape(config.batch),
                config.target,
                precision=precision,
                threads=config.threads,
            ),
        }
    _write_result(out, results)
    headline: dict[str, Any] = {}
    for role, data in results.items():
        for record in data["records"]:
            if record["status"] == "ok" and record["batch"] == config.batch:
                headline[f"{role}_{record['backend']}_ms"] = record["median_ms"]
    return headline
