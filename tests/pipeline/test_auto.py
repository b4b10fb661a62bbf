"""Auto mode end to end on a small model: stages, choice, report, resume and bad input."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AUTO_ARGS, auto_test_config, run_auto_test
from slimcv.errors import ArtifactError, SlimcvError, UnknownNameError
from slimcv.pipeline.auto import AutoConfig, optimize_auto
from slimcv.pipeline.auto.select import TIE_TOLERANCE


def _cli(*args: str) -> subprocess.CompletedProcess:
    """``slimcv ARGS`` in a fresh process."""
    return subprocess.run(
        [sys.executable, "-m", "slimcv.cli", *args], capture_output=True, text=True
    )


def _manifest(out: Path) -> dict:
    return json.loads((out / "workspace.json").read_text())


def test_every_stage_runs_and_the_choice_is_the_fastest_within_the_bound(auto_workspace) -> None:
    manifest = _manifest(auto_workspace)
    names = [s["name"] for s in manifest["stages"]]
    assert names == ["train", "baseline", "sensitivity", "candidates", "latency", "select", "bench"]
    assert all(s["status"] == "done" and len(s["output_sha256"]) == 64 for s in manifest["stages"])
    selection = json.loads((auto_workspace / "06-select" / "result.json").read_text())
    floor = selection["floor"]
    assert floor == pytest.approx(selection["baseline"]["top1"] - 1.0)
    variants = selection["variants"]
    # Two levels x (f32, int8) on ONNX Runtime, plus a mixed-precision variant at most per level.
    assert {v["name"] for v in variants} >= {
        "keep1.00-f32",
        "keep1.00-int8",
        "keep0.80-f32",
        "keep0.80-uniform-f32",
    }
    assert {v["allocation"] for v in variants} == {"none", "sensitivity", "uniform"}
    chosen = selection["chosen"]
    assert chosen is not None and chosen["top1"] >= floor
    feasible = [v for v in variants if v["top1"] >= floor]
    fastest = min(v["latency_ms"] for v in feasible)
    # The fastest, or the most accurate of those within timing noise of it.
    ties = [v for v in feasible if v["latency_ms"] <= fastest * (1 + TIE_TOLERANCE)]
    assert chosen["name"] in {v["name"] for v in ties}
    assert chosen["top1"] == max(v["top1"] for v in ties)
    assert (auto_workspace / "06-select" / "model" / "slimcv.json").is_file()
    pruned = next(v for v in variants if v["name"] == "keep0.80-f32")
    assert pruned["macs"] <= 0.82 * selection["baseline"]["macs"]


def test_the_chosen_model_reloads_and_runs_on_the_target_in_a_fresh_process(
    auto_workspace,
) -> None:
    model = str(auto_workspace / "06-select" / "model")
    done = _cli("eval", model, "--data", "digits", "--json")
    assert done.returncode == 0, done.stderr
    selection = json.loads((auto_workspace / "06-select" / "result.json").read_text())
    # eval runs the artifact as slimcv would deploy it; same val split, same weights.
    assert json.loads(done.stdout)["top1"] == pytest.approx(selection["chosen"]["top1"], abs=0.6)


def test_the_report_holds_every_section_and_no_external_resource(auto_workspace) -> None:
    page = (auto_workspace / "report.html").read_text()
    for section in (
        "Before and after",
        "Accuracy against latency",
        "Per-block MACs",
        "Sensitivity",
        "Reproduce",
        'id="plot-pareto"',
        'id="plot-blocks"',
        'id="plot-sensitivity"',
        "peak memory",
        "energy",
    ):
        assert section in page, section
    # Nothing to fetch: no link, script, image source or CSS url; XML namespaces only.
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", page)
    assert not re.search(r"url\((?!#)", page)  # only in-page references: url(#clip)
    assert "<script" not in page and "<link" not in page
    assert set(re.findall(r"https?://[^\"' ]+", page)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    for table in re.findall(r"<table>(.*?)</table>", page, flags=re.DOTALL):
        rows = re.findall(r"<tr[^>]*>(.*?)</tr>", table, flags=re.DOTALL)
        width = rows[0].count("<th>")
        assert all(row.count("<td>") == width for row in rows[1:]), rows[0]
    data = json.loads((auto_workspace / "report.json").read_text())
    assert data["selection"]["chosen"]["name"] in (auto_workspace / "report.md").read_text()
    blocks = data["bench"]["baseline"]["latency_blocks"]["blocks"]
    assert sum(blocks.values()) > 0 and len(blocks) >= 3  # times found their modules
    assert set(data["bench"]["baseline"]["macs_blocks"]) <= set(blocks) | {"(other)"}


def test_slimcv_report_rebuilds_the_report_from_the_workspace(auto_workspace, tmp_path) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(auto_workspace, copy)
    for name in ("report.html", "report.json", "report.md"):
        (copy / name).unlink()
    done = _cli("report", str(copy), "--json")
    assert done.returncode == 0, done.stderr
    assert (copy / "report.html").read_text().count("<svg") == 3
    original = json.loads((auto_workspace / "report.json").read_text())
    rebuilt = json.loads((copy / "report.json").read_text())
    assert rebuilt["selection"] == original["selection"]


def test_resume_of_a_finished_run_reuses_every_stage(auto_workspace, tmp_path) -> None:
    copy = tmp_path / "ws"
    shutil.copytree(auto_workspace, copy)
    # The run that made the fixture; the same arguments make the same identity.
    result = run_auto_test(copy, resume=True)
    assert all(s.skipped for s in result.stages)
    # A damaged stage output is redone, with everything after it.
    (copy / "05-latency" / "result.json").write_text("{}")
    result = run_auto_test(copy, resume=True)
    assert [s.skipped for s in result.stages] == [True] * 4 + [False] * 3


def test_bad_input_fails_before_any_work(tmp_path) -> None:
    with pytest.raises(UnknownNameError, match="unknown target 'onnxrt'.*onnxruntime"):
        AutoConfig(target="onnxrt")
    with pytest.raises(SlimcvError, match="max-drop"):
        AutoConfig(max_drop=-1)
    with pytest.raises(SlimcvError, match="keep_macs"):
        AutoConfig(keep_macs=(1.0, 1.5))
    with pytest.raises(UnknownNameError, match="unknown allocation 'global'"):
        AutoConfig(allocations=("sensitivity", "global"))
    levels = AutoConfig(keep_macs=(1.0, 0.5)).levels()
    assert levels == [(1.0, "sensitivity"), (0.5, "sensitivity"), (0.5, "uniform")]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ArtifactError, match="not a slimcv workspace.*--force"):
        optimize_auto(AUTO_ARGS["model"], "digits", other, auto_test_config(), num_classes=10)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "tensorrtx"], "unknown target 'tensorrtx'"),
        (["--keep-macs", "1,half"], "--keep-macs takes comma-separated fractions"),
        (["--max-drop", "-2"], "--max-drop is in points"),
        (["--data", "photos"], "photos has no labels"),
        (["--num-classes", "7"], "digits has 10 classes, the model 7"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, args, message) -> None:
    out = str(tmp_path / "ws")
    done = _cli("optimize", "--model", AUTO_ARGS["model"], "--data", "digits", "--out", out, *args)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "ws").exists()


def test_cli_refuses_an_out_dir_holding_another_run(auto_workspace) -> None:
    out = str(auto_workspace)
    done = _cli("optimize", "--model", AUTO_ARGS["model"], "--data", "digits", "--out", out)
    assert done.returncode == 2
    assert "already holds another run" in done.stderr and "--resume" in done.stderr


def test_a_recipe_with_auto_mode_options_is_refused(tmp_path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: x\ndata: digits\nstages:\n  - train: {epochs: 1}\n")
    out = str(tmp_path / "ws")
    done = _cli("optimize", "--recipe", str(recipe), "--data", "digits", "--out", out)
    assert done.returncode == 2 and "--data: auto-mode options" in done.stderr


RUN_AUTO = """
import sys
sys.path.insert(0, {tests!r})
from conftest import AUTO_ARGS, auto_test_config, run_auto_test
from slimcv.pipeline.auto import optimize_auto
optimize_auto(AUTO_ARGS["model"], AUTO_ARGS["data"], {out!r},
              auto_test_config(allocations=("sensitivity",), keep_macs=(1.0, 0.9, 0.8)),
              num_classes=10, image_size=16, resume={resume})
"""


def test_kill_9_while_candidates_are_prepared_then_resume_reuses_finished_work(
    tmp_path,
) -> None:
    """The run is killed after the first pruning level finished; resuming keeps the model,
    the baseline, the sensitivity curves and that level, and the candidates' top-1s equal an
    uninterrupted run's."""
    import os
    import signal
    import time

    tests = str(Path(__file__).parents[1])

    def command(out: Path, resume: bool) -> list[str]:
        code = RUN_AUTO.format(tests=tests, out=str(out), resume=resume)
        return [sys.executable, "-c", code]

    out = tmp_path / "ws"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # bit-identical reruns
    process = subprocess.Popen(
        command(out, False), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    level = out / ".staging" / "keep1.00" / "level.json"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None and not level.is_file():
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read()[-2000:]
    process.send_signal(signal.SIGKILL)
    process.wait()
    before = level.read_bytes()
    stages = {s["name"]: s for s in _manifest(out)["stages"]}
    assert stages["sensitivity"]["status"] == "done" and stages["candidates"]["status"] != "done"

    done = subprocess.run(command(out, True), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    reused = {s["name"]: s["skipped"] for s in _manifest(out)["stages"]}
    assert reused["train"] and reused["baseline"] and reused["sensitivity"]
    assert not reused["candidates"]
    assert (out / "04-candidates" / "keep1.00" / "level.json").read_bytes() == before

    reference = tmp_path / "reference"
    done = subprocess.run(command(reference, False), capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-2000:]

    def top1s(ws: Path) -> dict[str, float]:
        data = json.loads((ws / "04-candidates" / "result.json").read_text())
        return {v["name"]: v["top1"] for lvl in data["levels"] for v in lvl["variants"]}

    assert top1s(out) == top1s(reference) and len(top1s(out)) >= 4
