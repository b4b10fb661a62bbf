"""Data-parallel training: torchrun with 2 CPU processes (gloo) against one process.

The model has no BatchNorm: with it, each process would normalise with its own half-batch's
statistics and the curves would differ by design, not by a bug. Every other difference is
float summation order, so the curves agree to ~1e-7; the test allows 1e-4. Random
augmentations are left out: each process draws its own, as in any data-parallel run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from slimcv.sources import load_model

MODELS = Path(__file__).parent / "tiny_models.py"
LOSS_TOLERANCE = 1e-4  # absolute, on the per-epoch mean train and val loss
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def train_args(out: Path) -> list[str]:
    return [
        "-m", "slimcv.cli", "train", f"{MODELS}:net", "--data", "digits", "--out", str(out),
        "--epochs", "3", "--image-size", "16", "--batch-size", "64", "--lr", "0.01",
        "--json",
    ]  # fmt: skip


def test_torchrun_two_processes_follow_the_single_process_curve(tmp_path: Path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    ddp = subprocess.Popen(
        [*torchrun, "--nproc_per_node", "2", *train_args(tmp_path / "ddp")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    single = subprocess.run(
        [sys.executable, *train_args(tmp_path / "single")], capture_output=True, text=True, env=ENV
    )
    ddp_out, ddp_err = ddp.communicate(timeout=300)
    assert single.returncode == 0, single.stderr
    assert ddp.returncode == 0, ddp_err
    one = json.loads(single.stdout)["epochs"]
    two = json.loads(ddp_out)["epochs"]  # one JSON document: only rank 0 reports
    assert len(one) == len(two) == 3
    for a, b in zip(one, two, strict=True):
        assert b["train_loss"] == pytest.approx(a["train_loss"], abs=LOSS_TOLERANCE)
        assert b["val_loss"] == pytest.approx(a["val_loss"], abs=LOSS_TOLERANCE)
        assert b["val_top1"] == pytest.approx(a["val_top1"], abs=0.3)  # one image of 360
        assert b["step"] == a["step"]
    assert two[-1]["train_loss"] < two[0]["train_loss"]
    state = torch.load(tmp_path / "ddp" / "checkpoints" / "last.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no stray staging dirs
    reloaded = load_model(str(tmp_path / "ddp")).module.state_dict()
    for key, tensor in load_model(str(tmp_path / "single")).module.state_dict().items():
        torch.testing.assert_close(reloaded[key], tensor, rtol=1e-3, atol=1e-4)
