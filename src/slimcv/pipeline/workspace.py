"""Runs a recipe into one workspace directory, stage by stage, resumable after a crash.

Layout of ``OUT/``::

    workspace.json      the manifest: recipe (text and sha256), model and data, versions,
                        and per stage its directory, status, output hash, metrics and seconds
    recipe.yaml         the recipe as given
    01-train/           each stage's output: an artifact directory (train, prune, quantize,
    02-prune/           export) or a result file (bench.json)
    ...

Each stage writes its output atomically (the commands already do) and the manifest is rewritten
atomically after every stage, so a crash - ``kill -9`` included - leaves finished stages
finished and the interrupted one absent or marked incomplete. ``resume=True`` skips every
stage whose recorded output still matches its hash and redoes the first one that does not,
and everything after it. Inputs are never written: the recipe's model is read, never replaced.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimcv.errors import ArtifactError, RecipeError
from slimcv.pipeline.recipe import Recipe, Stage, load_recipe
from slimcv.sources.artifact import MANIFEST, read_manifest, sha256_file, verify_files
from slimcv.sources.artifact import _versions as artifact_versions
from slimcv.training.checkpoint import atomic_write

WORKSPACE = "workspace.json"
FORMAT = "slimcv-workspace"


@dataclass
class StageRecord:
    """What the manifest says about one stage."""

    index: int
    name: str
    directory: str
    status: str = "pending"  # pending | done
    output_sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    skipped: bool = False  # reused from an earlier run by --resume

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class WorkspaceResult:
    """The outcome of :func:`run_recipe`; ``to_dict()`` is ``slimcv optimize --json``."""

    out_dir: str
    recipe: str | None
    model: str
    data: str
    stages: list[StageRecord]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "out_dir": self.out_dir,
            "recipe": self.recipe,
            "model": self.model,
            "data": self.data,
            "stages": [s.to_dict() for s in self.stages],
            "seconds": self.seconds,
        }


def run_recipe(
    recipe: Recipe | str | Path,
    out_dir: str | Path,
    *,
    resume: bool = False,
    force: bool = False,
    progress: bool = False,
    on_stage: Callable[[StageRecord], None] | None = None,
) -> WorkspaceResult:
    """Runs every stage of ``recipe`` into ``out_dir``.

    Args:
        recipe: a validated recipe or the path of a recipe file.
        out_dir: the workspace.
        resume: continue the run already in ``out_dir``, skipping verified stages.
        force: replace whatever ``out_dir`` holds.
        progress: show the commands' progress bars.
        on_stage: called after each stage finishes (or is skipped).

    Raises:
        ArtifactError: ``out_dir`` holds another run and neither ``resume`` nor ``force`` was
            given, or it holds something that is not a workspace; ``resume`` with a different
            recipe.
        RecipeError: a stage that cannot run as written.
    """
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe)
    assert recipe.model is not None  # the recipe checks guarantee it
    recipe_text = recipe.path.read_text() if recipe.path else ""
    recipe_hash = hashlib.sha256(recipe_text.encode()).hexdigest()
    out = _prepare(Path(out_dir), recipe, recipe_hash, resume=resume, force=force)
    previous = _read_workspace(out) if resume else None
    records = [
        StageRecord(index=s.index, name=s.name, directory=f"{s.index + 1:02d}-{s.name}")
        for s in recipe.stages
    ]
    manifest = {
        "format": FORMAT,
        "recipe": str(recipe.path) if recipe.path else None,
        "recipe_sha256": recipe_hash,
        "model": recipe.model,
        "data": recipe.data,
        "num_classes": recipe.num_classes,
        "image_size": recipe.image_size,
        "versions": artifact_versions(),
        "stages": records,
    }
    if recipe.path:
        _atomic_text(out / "recipe.yaml", recipe_text)
    started = time.perf_counter()
    current: Any = None  # the model flowing between stages (source, artifact dir or module)
    reusable = True
    for stage, record in zip(recipe.stages, records, strict=True):
        old = previous["stages"][stage.index] if previous else None
        if reusable and old and _verified(out / record.directory, old):
            record.status, record.output_sha256 = "done", old["output_sha256"]
            record.metrics, record.seconds, record.skipped = old["metrics"], old["seconds"], True
        else:
            reusable = False
            shutil.rmtree(out / record.directory, ignore_errors=True)
            _write_workspace(out, manifest)
            tick = time.perf_counter()
            record.metrics = _run_stage(stage, recipe, current, out / record.directory, progress)
            record.seconds = time.perf_counter() - tick
            record.output_sha256 = _output_hash(out / record.directory)
            record.status = "done"
        _write_workspace(out, manifest)
        if on_stage is not None:
            on_stage(record)
        if stage.name != "bench":
            current = str(out / record.directory)
    return WorkspaceResult(
        out_dir=str(out),
        recipe=str(recipe.path) if recipe.path else None,
        model=recipe.model,
        data=recipe.data,
        stages=records,
        seconds=time.perf_counter() - started,
    )


def _prepare(out: Path, recipe: Recipe, recipe_hash: str, *, resume: bool, force: bool) -> Path:
    out = out.resolve()
    model_path = Path(recipe.model or "").resolve()
    if model_path == out or out in model_path.parents:
        raise ArtifactError(f"--out {out} would overwrite the input {recipe.model}")
    holds_run = (out / WORKSPACE).is_file()
    if resume:
        if not holds_run:
            raise ArtifactError(f"--resume: {out} holds no workspace to resume")
        if _read_workspace(out).get("recipe_sha256") != recipe_hash:
            raise ArtifactError(
                f"--resume: {out} was made by another recipe; use --force to start over"
            )
        return out
    if out.exists() and any(out.iterdir()):
        if not force:
            what = "another run" if holds_run else "files that are not a slimcv workspace"
            raise ArtifactError(
                f"--out {out} already holds {what}; pass --resume to continue it or --force "
                "to replace it"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def _run_stage(
    stage: Stage, recipe: Recipe, current: Any, out: Path, progress: bool
) -> dict[str, Any]:
    """Runs one stage through the public API and returns its headline metrics."""
    import slimcv

    model = current
    if model is None:
        from slimcv.training import seed_everything

        # Seeded before the model is built, as `slimcv train` does, so a rerun (or the
        # uninterrupted twin of a resumed run) starts from the same initial weights.
        seed_everything(getattr(stage.config, "seed", 0))
        model = slimcv.load_model(
            recipe.model or "", num_classes=recipe.num_classes, image_size=recipe.image_size
        )
    image_size = recipe.image_size if current is None else None
    if stage.name == "train":
        result = slimcv.train(
            model, recipe.data, out, stage.config, image_size=image_size, progress=progress
        )
        return {"val_top1": result.final_val_top1}
    if stage.name == "prune":
        result = slimcv.prune(
            model,
            stage.config,
            data=recipe.data,
            out_dir=out,
            image_size=image_size,
            progress=progress,
        )
        return _pick(result.to_dict(), ("macs_before", "macs_after", "top1_before", "top1_after"))
    if stage.name == "quantize":
        result = slimcv.quantize(
            model,
            stage.config,
            data=recipe.data,
            out_dir=out,
            image_size=image_size,
            progress=progress,
        )
        return _pick(
            result.to_dict(),
            ("metric", "float_score", "quant_score", "drop", "size_ratio", "backend"),
        )
    if stage.name == "export":
        result = slimcv.export(model, out, stage.config, image_size=image_size)
        return {"files": sorted(result.to_dict().get("files", {}))}
    if stage.name == "bench":
        result = slimcv.bench(model, stage.config, image_size=image_size, progress=progress)
        data = result.to_dict()
        tmp = out.parent / f".{out.name}.tmp"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        (tmp / "bench.json").write_text(json.dumps(data, indent=2))
        tmp.rename(out)
        return {
            f"{r['backend']}_b{r['batch']}_median_ms": r["median_ms"]
            for r in data.get("records", [])
            if r.get("status") == "ok"
        }
    raise RecipeError(
        f"stage {stage.index + 1} ({stage.name}) cannot run on its own yet: it needs a student "
        "model; use 'prune: {distill: true}' or 'quantize: {method: qat, distill: true}'"
    )


def _pick(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in keys if k in data}


def _output_hash(directory: Path) -> str:
    """The hash that proves a stage's output unchanged: its artifact manifest (which holds the
    sha256 of every file) or its result file."""
    manifest = directory / MANIFEST
    return sha256_file(manifest if manifest.is_file() else directory / "bench.json")


def _verified(directory: Path, record: dict[str, Any]) -> bool:
    if record.get("status") != "done" or not directory.is_dir():
        return False
    try:
        if (directory / MANIFEST).is_file():
            verify_files(directory, read_manifest(directory))
        return _output_hash(directory) == record.get("output_sha256")
    except (ArtifactError, OSError):
        return False


def _read_workspace(out: Path) -> dict[str, Any]:
    try:
        data = json.loads((out / WORKSPACE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ArtifactError(f"{out / WORKSPACE} is unreadable: {exc}") from None
    if data.get("format") != FORMAT:
        raise ArtifactError(f"{out / WORKSPACE} is not a slimcv workspace manifest")
    return data


def _write_workspace(out: Path, manifest: dict[str, Any]) -> None:
    data = dict(manifest)
    data["stages"] = [r.to_dict() for r in manifest["stages"]]
    _atomic_text(out / WORKSPACE, json.dumps(data, indent=2))


def _atomic_text(path: Path, text: str) -> None:
    atomic_write(path, lambda fh: fh.write(text.encode()))
