"""Workspaces: a recipe runs stage by stage, and a run killed with -9 resumes where it stopped."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from slimcv.errors import ArtifactError
from slimcv.pipeline.workspace import WORKSPACE, run_recipe

RECIPE = """\
name: tiny
model: slimcv.distillation.students:tiny_cnn
data: digits
num_classes: 10
image_size: 16
stages:
  - train: {epochs: 2}
  - prune: {ratio: 0.5}
  - quantize: {precision: int8, calibration_size: 256}
  - bench: {backends: [onnxruntime], min_time_s: 0.2, warmup_s: 0.1, memory: false, energy: false}
"""


def _manifest(out: Path) -> dict:
    return json.loads((out / WORKSPACE).read_text())


def _figures(out: Path) -> list[dict]:
    """Per-stage metrics that do not depend on timing."""
    return [s["metrics"] for s in _manifest(out)["stages"] if s["name"] != "bench"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("ws")
    recipe = root / "tiny.yaml"
    recipe.write_text(RECIPE)
    result = run_recipe(recipe, root / "done")
    assert [s.status for s in result.stages] == ["done"] * 4
    return recipe, root / "done"


def test_every_stage_writes_its_output_and_the_manifest_records_it(finished) -> None:
    _, out = finished
    manifest = _manifest(out)
    assert manifest["model"] == "slimcv.distillation.students:tiny_cnn"
    assert [s["directory"] for s in manifest["stages"]] == [
        "01-train",
        "02-prune",
        "03-quantize",
        "04-bench",
    ]
    for stage in manifest["stages"][:3]:
        assert (out / stage["directory"] / "slimcv.json").is_file()
        assert len(stage["output_sha256"]) == 64
    assert (out / "04-bench" / "bench.json").is_file()
    prune = manifest["stages"][1]["metrics"]
    assert prune["macs_after"] < prune["macs_before"]
    assert (out / "recipe.yaml").read_text() == RECIPE


def test_an_existing_run_needs_resume_or_force(finished, tmp_path: Path) -> None:
    recipe, out = finished
    with pytest.raises(ArtifactError, match="already holds another run"):
        run_recipe(recipe, out)
    other = tmp_path / "other.yaml"
    other.write_text(RECIPE.replace("epochs: 2", "epochs: 1"))
    with pytest.raises(ArtifactError, match="made by another recipe"):
        run_recipe(other, out, resume=True)


def test_kill_9_during_quantize_then_resume(finished, tmp_path: Path) -> None:
    recipe, _ = finished
    out = tmp_path / "run"
    reference = tmp_path / "reference"
    command = [
        sys.executable,
        "-c",
        "from slimcv.cli import run; run()",
        "optimize",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--json",
    ]
    # One thread: multi-threaded float reductions differ from run to run, and the uninterrupted
    # and the resumed run must be comparable to the last digit.
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    # The uninterrupted run goes through the same command, so both use the same process setup.
    uninterrupted = [*command[:-2], str(reference), "--json"]
    assert subprocess.run(uninterrupted, capture_output=True, env=env).returncode == 0
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = time.time() + 300
    killed_in = None
    while time.time() < deadline and process.poll() is None:
        try:
            stages = _manifest(out)["stages"]
        except (OSError, ValueError):
            stages = []
        if stages and stages[1]["status"] == "done":  # prune finished: quantize is running
            process.send_signal(signal.SIGKILL)
            process.wait()
            killed_in = [s["status"] for s in _manifest(out)["stages"]]
            break
        time.sleep(0.02)
    assert killed_in is not None, (process.returncode, process.stderr.read()[-2000:])
    assert killed_in[:2] == ["done", "done"] and killed_in[3] == "pending"
    prune_hash = _manifest(out)["stages"][1]["output_sha256"]

    result = subprocess.run([*command, "--resume"], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr
    resumed = json.loads(result.stdout)
    assert [s["skipped"] for s in resumed["stages"][:2]] == [True, True]
    assert resumed["stages"][1]["output_sha256"] == prune_hash  # prune was not redone
    assert not resumed["stages"][3]["skipped"]
    assert _figures(out) == _figures(reference)  # same results as the uninterrupted run


def test_a_distill_stage_trains_the_student_from_the_model_so_far(tmp_path) -> None:
    recipe = tmp_path / "distill.yaml"
    recipe.write_text(
        "model: slimcv.distillation.students:small_cnn\ndata: digits\nnum_classes: 10\n"
        "image_size: 16\nstages:\n  - train: {epochs: 2}\n"
        "  - distill: {student: 'slimcv.distillation.students:tiny_cnn', epochs: 2}\n"
        "  - quantize: {precision: int8, calibration_size: 64}\n"
    )
    result = run_recipe(recipe, tmp_path / "ws")
    distilled = result.stages[1].metrics
    assert distilled["macs_ratio"] < 0.5  # the student, not the teacher, flows on
    assert distilled["student_top1"] > 30  # learned (10 classes: chance is 10%)
    assert distilled["teacher_top1"] == pytest.approx(result.stages[0].metrics["val_top1"])
    student = json.loads((tmp_path / "ws" / "02-distill" / "slimcv.json").read_text())
    assert "tiny_cnn" in json.dumps(student)
    assert result.stages[2].metrics["float_score"] == pytest.approx(
        distilled["student_top1"], abs=0.5
    )
