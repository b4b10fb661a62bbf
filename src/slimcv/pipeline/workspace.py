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


class Workspace:
    """One output directory of staged work: a manifest, and one directory per stage.

    :func:`run_recipe` and auto mode (:mod:`slimcv.pipeline.auto`) both run their stages
    through :meth:`stage`, which reuses a stage from an earlier run (``resume=True``) when its
    recorded output still verifies by hash and every stage before it was reused too; otherwise
    it deletes whatever the stage directory holds, runs the stage, hashes its output and
    rewrites the manifest atomically.

    Use :meth:`open` to create one.
    """

    def __init__(self, out: Path, manifest: dict[str, Any], previous: dict[str, Any] | None):
        self.out = out
        self.manifest = manifest
        self.records: list[StageRecord] = manifest["stages"]
        self._previous = {s["directory"]: s for s in (previous or {}).get("stages", [])}
        self._reusable = previous is not None
        self._next = 0

    def plan(self, names: list[str]) -> None:
        """Lists the stages to come as ``pending`` in the manifest, before any runs."""
        for name in names:
            index = len(self.records)
            self.records.append(
                StageRecord(index=index, name=name, directory=f"{index + 1:02d}-{name}")
            )
        self.save()

    @classmethod
    def open(
        cls,
        out_dir: str | Path,
        *,
        kind: str,
        identity: str,
        header: dict[str, Any],
        inputs: list[str],
        resume: bool = False,
        force: bool = False,
    ) -> Workspace:
        """Prepares ``out_dir`` for a run.

        Args:
            kind: what made the workspace (``recipe``, ``auto``), checked on resume.
            identity: a hash of everything that defines the run (the recipe text, the auto
                config); ``resume`` refuses a workspace made with another.
            header: manifest fields written as given (model, data, ...).
            inputs: paths the run reads, which ``out_dir`` must not be or contain.

        Raises:
            ArtifactError: ``out_dir`` holds another run and neither ``resume`` nor ``force``
                was given, or it holds something that is not a workspace; ``resume`` of a
                workspace made by another run; ``out_dir`` would overwrite an input.
        """
        out = Path(out_dir).resolve()
        for path in inputs:
            source = Path(path).resolve()
            if source == out or out in source.parents:
                raise ArtifactError(f"--out {out} would overwrite the input {path}")
        holds_run = (out / WORKSPACE).is_file()
        previous = None
        if resume:
            if not holds_run:
                raise ArtifactError(f"--resume: {out} holds no workspace to resume")
            previous = _read_workspace(out)
            if previous.get("kind", "recipe") != kind or previous.get("identity") != identity:
                raise ArtifactError(
                    f"--resume: {out} was made by another {previous.get('kind', 'run')}; use "
                    "--force to start over"
                )
        elif out.exists() and any(out.iterdir()):
            if not force:
                what = "another run" if holds_run else "files that are not a slimcv workspace"
                raise ArtifactError(
                    f"--out {out} already holds {what}; pass --resume to continue it or --force "
                    "to replace it"
                )
            shutil.rmtree(out)
        out.mkdir(parents=True, exist_ok=True)
        manifest = {
            "format": FORMAT,
            "kind": kind,
            "identity": identity,
            **header,
            "versions": artifact_versions(),
            "stages": [],
        }
        return cls(out, manifest, previous)

    def stage(
        self,
        name: str,
        run: Callable[[Path], dict[str, Any]],
        on_stage: Callable[[StageRecord], None] | None = None,
    ) -> StageRecord:
        """Runs (or reuses) the next stage; ``run(directory)`` writes there, returns metrics."""
        index = self._next
        self._next += 1
        if index < len(self.records) and self.records[index].name == name:
            record = self.records[index]  # planned
        else:
            del self.records[index:]  # the plan changed from here on
            record = StageRecord(index=index, name=name, directory=f"{index + 1:02d}-{name}")
            self.records.append(record)
        directory = self.out / record.directory
        old = self._previous.get(record.directory)
        if self._reusable and old and _verified(directory, old):
            record.status, record.output_sha256 = "done", old["output_sha256"]
            record.metrics, record.seconds, record.skipped = old["metrics"], old["seconds"], True
        else:
            self._reusable = False
            shutil.rmtree(directory, ignore_errors=True)
            self.save()
            tick = time.perf_counter()
            record.metrics = run(directory)
            record.seconds = time.perf_counter() - tick
            record.output_sha256 = _output_hash(directory)
            record.status = "done"
        self.save()
        if on_stage is not None:
            on_stage(record)
        return record

    def save(self) -> None:
        """Rewrites the manifest atomically."""
        _write_workspace(self.out, self.manifest)

    def write_text(self, name: str, text: str) -> Path:
        """Writes a file at the workspace's top level atomically."""
        _atomic_text(self.out / name, text)
        return self.out / name


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
    workspace = Workspace.open(
        out_dir,
        kind="recipe",
        identity=recipe_hash,
        header={
            "recipe": str(recipe.path) if recipe.path else None,
            "recipe_sha256": recipe_hash,
            "model": recipe.model,
            "data": recipe.data,
            "num_classes": recipe.num_classes,
            "image_size": recipe.image_size,
        },
        inputs=[recipe.model],
        resume=resume,
        force=force,
    )
    if recipe.path:
        workspace.write_text("recipe.yaml", recipe_text)
    workspace.plan([stage.name for stage in recipe.stages])
    started = time.perf_counter()
    current: Any = None  # the model flowing between stages (source, artifact dir or module)
    for stage in recipe.stages:

        def run(directory: Path, stage: Stage = stage, current: Any = current) -> dict[str, Any]:
            return _run_stage(stage, recipe, current, directory, progress)

        record = workspace.stage(stage.name, run, on_stage)
        if stage.name != "bench":
            current = str(workspace.out / record.directory)
    return WorkspaceResult(
        out_dir=str(workspace.out),
        recipe=str(recipe.path) if recipe.path else None,
        model=recipe.model,
        data=recipe.data,
        stages=workspace.records,
        seconds=time.perf_counter() - started,
    )


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
    if stage.name == "distill":
        from slimcv.api import as_loaded

        teacher = as_loaded(model, image_size=image_size)
        student = slimcv.load_model(
            stage.student or "",
            num_classes=teacher.num_classes,
            image_size=teacher.preprocess.image_size,
        )
        result = slimcv.distill(teacher, student, recipe.data, out, stage.config)
        return {
            "teacher_top1": result.teacher_top1[0] if result.teacher_top1 else None,
            "student_top1": result.student_top1,
            "macs_ratio": result.macs_ratio,
        }
    raise RecipeError(f"stage {stage.index + 1} ({stage.name}) has no runner")


def _pick(data: dict[str, Any], keys: tuple[str, ...]) -> dict[str, Any]:
    return {k: data[k] for k in keys if k in data}


#: A stage directory's file whose hash stands for the whole output, in order of preference: an
#: artifact manifest (it holds the sha256 of every file), or a result file (which, for stages
#: holding several artifacts, records each one's manifest hash).
HASHED_FILES = (MANIFEST, "result.json", "bench.json")


def _output_hash(directory: Path) -> str:
    """The hash that proves a stage's output unchanged."""
    for name in HASHED_FILES:
        if (directory / name).is_file():
            return sha256_file(directory / name)
    raise ArtifactError(f"stage output {directory} holds none of {', '.join(HASHED_FILES)}")


def _verified(directory: Path, record: dict[str, Any]) -> bool:
    if record.get("status") != "done" or not directory.is_dir():
        return False
    try:
        for manifest in [directory / MANIFEST, *directory.glob(f"*/{MANIFEST}")]:
            if manifest.is_file():
                verify_files(manifest.parent, read_manifest(manifest.parent))
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
