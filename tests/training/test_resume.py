"""Checkpoints and --resume: a run killed mid-epoch continues to the same result."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from slimcv.cli import main
from slimcv.data import load_data
from slimcv.errors import CheckpointError
from slimcv.sources import load_model
from slimcv.training import Checkpointing, Objective, StepOutput, TrainConfig, fit, seed_everything
from slimcv.training.loop import evaluate_loss

MODELS = Path(__file__).parent / "tiny_models.py"


# One thread per run: two runs share the 2 cores without oversubscribing them.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models train much faster on one thread, above all on a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_cmd(out: Path, *extra: str, factory: str = "slow") -> list[str]:
    return [
        sys.executable,
        "-m",
        "slimcv.cli",
        "train",
        f"{MODELS}:{factory}",
        "--data",
        "digits",
        "--out",
        str(out),
        "--epochs",
        "6",
        "--image-size",
        "16",
        "--batch-size",
        "64",
        "--lr",
        "0.01",
        "--augment",
        "crop",
        "--json",
        *extra,
    ]


def epochs_done(out: Path) -> int:
    try:
        return len(json.loads((out / "checkpoints" / "metrics.json").read_text()))
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def val_top1(model_dir: Path) -> float:
    model = load_model(str(model_dir))
    bundle = load_data("digits", model.preprocess)
    loader = torch.utils.data.DataLoader(bundle.val, batch_size=256)
    return evaluate_loss(model.module, loader, torch.nn.CrossEntropyLoss())[1]


def test_killed_in_epoch_3_resumes_to_the_uninterrupted_result(tmp_path: Path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    baseline = subprocess.Popen(
        train_cmd(whole), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV
    )
    victim = subprocess.Popen(
        train_cmd(broken), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=ENV
    )
    deadline = time.monotonic() + 120
    while epochs_done(broken) < 2:
        assert victim.poll() is None, victim.stderr.read().decode()
        assert time.monotonic() < deadline, "the run never reached epoch 2"
        time.sleep(0.05)
    time.sleep(0.3)  # epoch 3 is under way (an epoch takes ~1 s: 22 steps of >= 40 ms)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    victim.stderr.close()
    state = torch.load(broken / "checkpoints" / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and epochs_done(broken) == 2  # killed during epoch 3
    assert not (broken / "slimcv.json").exists()
    assert not [p for p in (broken / "checkpoints").iterdir() if p.name.startswith(".")]

    resumed = subprocess.run(train_cmd(broken, "--resume"), capture_output=True, text=True, env=ENV)
    assert resumed.returncode == 0, resumed.stderr
    out, _ = baseline.communicate()
    assert baseline.returncode == 0
    reference = json.loads(out)["epochs"]
    continued = json.loads(resumed.stdout)["epochs"]
    assert [e["epoch"] for e in continued] == [1, 2, 3, 4, 5, 6]
    # Same optimizer, schedule, RNG and data order: the same numbers, not just close ones.
    for ours, theirs in zip(continued, reference, strict=True):
        assert ours["train_loss"] == pytest.approx(theirs["train_loss"], rel=1e-6)
        assert ours["val_top1"] == pytest.approx(theirs["val_top1"], abs=1.0)
    acc_whole, acc_resumed = val_top1(whole), val_top1(broken)
    assert acc_whole > 80
    assert abs(acc_resumed - acc_whole) <= 1.0, (acc_resumed, acc_whole)
    final = load_model(str(broken)).module.state_dict()
    for key, tensor in load_model(str(whole)).module.state_dict().items():
        torch.testing.assert_close(final[key], tensor, rtol=1e-5, atol=1e-6)
    assert (broken / "checkpoints" / "last.pt").is_file()  # carried into the artifact


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "net"
    code = main(
        [
            "train",
            f"{MODELS}:net",
            "--data",
            "digits",
            "--out",
            str(out),
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--json",
        ]
    )
    assert code == 0
    return out


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(directory)): p.read_bytes() for p in directory.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    ("factory", "data", "extra", "message"),
    [
        ("wide", "digits", [], "is from another run: its source"),
        ("net", "digits", ["--lr", "0.1"], r"other settings \(lr=0.002 there, 0.1 here\)"),
        ("net", "synthetic", [], "its data is 'digits', not 'synthetic'"),
    ],
)
def test_resume_from_another_run_is_one_line_exit_2(
    finished_run: Path, capsys, factory: str, data: str, extra: list[str], message: str
):
    before = _snapshot(finished_run)
    code = main(
        [
            "train",
            f"{MODELS}:{factory}",
            "--data",
            data,
            "--out",
            str(finished_run),
            "--epochs",
            "1",
            "--image-size",
            "16",
            "--resume",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert re.search(message, err), err
    assert _snapshot(finished_run) == before  # nothing overwritten


def test_resume_without_checkpoint_is_one_line_exit_2(tmp_path: Path, capsys):
    code = main(
        [
            "train",
            f"{MODELS}:net",
            "--out",
            str(tmp_path / "none"),
            "--image-size",
            "16",
            "--resume",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no checkpoint" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "none").exists()


def test_unfinished_run_needs_resume(tmp_path: Path, finished_run: Path, capsys):
    out = tmp_path / "unfinished"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "last.pt").write_bytes(
        (finished_run / "checkpoints/last.pt").read_bytes()
    )
    code = main(["train", f"{MODELS}:net", "--out", str(out), "--image-size", "16"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--resume" in err, err


def test_checkpoint_with_other_shapes_is_refused(tmp_path: Path, finished_run: Path):
    """Same identity, different architecture (e.g. a file edited between runs)."""
    model = load_model(f"{MODELS}:wide", num_classes=10, image_size=16)
    bundle = load_data("digits", model.preprocess)
    (tmp_path / "checkpoints").mkdir()
    last = tmp_path / "checkpoints" / "last.pt"
    last.write_bytes((finished_run / "checkpoints" / "last.pt").read_bytes())
    state = torch.load(last, weights_only=True)
    config = TrainConfig(**{**state["config"], "augment": tuple(state["config"]["augment"])})
    with pytest.raises(CheckpointError, match="is from another model: features.0.weight has shape"):
        fit(
            model.module,
            bundle,
            config,
            progress=False,
            checkpoints=Checkpointing(tmp_path / "checkpoints", resume=True),
        )


def test_unsafe_checkpoint_is_not_unpickled(tmp_path: Path):
    class Boom:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    (tmp_path / "checkpoints").mkdir()
    torch.save({"format": "slimcv-train-checkpoint", "x": Boom()}, tmp_path / "checkpoints/last.pt")
    model = load_model(f"{MODELS}:net", num_classes=10, image_size=16)
    with pytest.raises(CheckpointError, match="not a readable training checkpoint"):
        fit(
            model.module,
            load_data("digits", model.preprocess),
            TrainConfig(epochs=1),
            progress=False,
            checkpoints=Checkpointing(tmp_path / "checkpoints", resume=True),
        )
    assert not (tmp_path / "pwned").exists()


class Crash(Exception):
    pass


class ScaledCE(Objective):
    """An objective that learns something (a logit scale) and can crash at a given step."""

    def __init__(self, crash_at: int | None = None) -> None:
        super().__init__()
        self.log_scale = torch.nn.Parameter(torch.zeros(()))
        self.crash_at, self.calls = crash_at, 0

    def forward(self, module, images, labels, indices):
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash
        logits = module(images) * self.log_scale.exp()
        loss = torch.nn.functional.cross_entropy(logits, labels)
        return StepOutput(loss, logits, {"scale": float(self.log_scale.detach().exp())})


def test_objective_state_and_augmentation_rng_resume_in_process(tmp_path: Path):
    def run(crash_at: int | None, resume: bool) -> tuple[torch.nn.Module, ScaledCE, list]:
        seed_everything(0)
        model = load_model(f"{MODELS}:net", num_classes=10, image_size=16)
        bundle = load_data("digits", model.preprocess)
        objective = ScaledCE(crash_at)
        config = TrainConfig(
            epochs=3,
            batch_size=64,
            lr=0.02,
            augment=("crop", "flip", "erase"),
            schedule="onecycle",
            warmup_fraction=0.3,
        )
        where = tmp_path / ("whole" if crash_at is None and not resume else "crashed")
        history = fit(
            model.module,
            bundle,
            config,
            objective=objective,
            progress=False,
            checkpoints=Checkpointing(where, resume=resume),
        )
        return model.module, objective, history

    whole, whole_obj, whole_history = run(None, False)
    with pytest.raises(Crash):
        run(22 * 2 + 3, False)  # 22 steps per epoch: dies in epoch 3
    assert torch.load(tmp_path / "crashed/last.pt", weights_only=True)["epoch"] == 2
    resumed, resumed_obj, history = run(None, True)
    assert [m.train_loss for m in history] == [m.train_loss for m in whole_history]
    assert [m.val_top1 for m in history] == [m.val_top1 for m in whole_history]
    assert history[-1].val_top1 > 50  # it learns: the comparison is not between two no-ops
    assert "scale" in history[-1].parts and history[-1].parts["scale"] != 1.0
    torch.testing.assert_close(resumed_obj.log_scale, whole_obj.log_scale, rtol=0, atol=0)
    for key, tensor in whole.state_dict().items():
        torch.testing.assert_close(resumed.state_dict()[key], tensor, rtol=0, atol=0)
