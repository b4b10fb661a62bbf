"""Shared fixtures: small real models and data, made offline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from slimcv.sources import LoadedModel, load_model


def randomize_batchnorm(module: nn.Module, seed: int = 0) -> nn.Module:
    """Gives every BatchNorm non-trivial statistics and affine parameters.

    Freshly initialised torchvision models have identity BatchNorms (mean 0, var 1, weight 1,
    bias 0), and several of them output logits of 1e-15: comparing exports on such outputs
    would prove nothing. Trained-looking statistics make the comparison meaningful.
    """
    generator = torch.Generator().manual_seed(seed)
    for sub in module.modules():
        if isinstance(sub, nn.modules.batchnorm._BatchNorm):
            n = sub.num_features
            sub.running_mean.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
            sub.running_var.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            sub.weight.data.copy_(torch.rand(n, generator=generator) * 0.5 + 0.75)
            sub.bias.data.copy_(torch.rand(n, generator=generator) * 0.2 - 0.1)
    return module


@pytest.fixture
def small_model() -> LoadedModel:
    """mobilenet_v3_small with 10 classes at 64x64: real architecture, fast."""
    model = load_model("torchvision:mobilenet_v3_small", num_classes=10, image_size=64)
    randomize_batchnorm(model.module)
    return model


@pytest.fixture(scope="session")
def trained_digits(tmp_path_factory: pytest.TempPathFactory):
    """resnet18 trained 5 epochs on digits at 32x32, saved as an artifact (once per run)."""
    from slimcv.training import TrainConfig, seed_everything, train

    out = tmp_path_factory.mktemp("trained") / "run"
    seed_everything(0)  # the same starting weights in every session
    model = load_model("torchvision:resnet18", num_classes=10, image_size=32)
    result = train(model, "digits", out, TrainConfig(epochs=5), progress=False)
    return out, result


def eval_in_fresh_process(model_dir: str | Path, data: str = "digits") -> dict:
    """``slimcv eval MODEL --data D --json`` in a new Python process: proves the artifact
    reloads without anything this test process holds."""
    done = subprocess.run(
        [sys.executable, "-m", "slimcv.cli", "eval", str(model_dir), "--data", data, "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


#: A small auto-mode run: tiny_cnn trained 2 epochs on digits at 16 px, two pruning levels,
#: short timings. Shared by the pipeline and report tests (about half a minute once per run).
AUTO_ARGS = {
    "model": "slimcv.distillation.students:tiny_cnn",
    "data": "digits",
    "num_classes": 10,
    "image_size": 16,
}


def auto_test_config(**overrides):
    from slimcv.pipeline.auto import AutoConfig

    options = dict(
        max_drop=1.0,
        keep_macs=(1.0, 0.8),
        finetune_epochs=1,
        train_epochs=2,
        timing_rounds=1,
        min_time_s=0.05,
        bench_time_s=0.1,
        sensitivity_samples=64,
    )
    options.update(overrides)
    return AutoConfig(**options)


def run_auto_test(out: Path, *, resume: bool = False):
    """The small auto-mode run, into ``out`` (the same identity every time, so it resumes)."""
    from slimcv.pipeline.auto import optimize_auto

    return optimize_auto(
        AUTO_ARGS["model"],
        AUTO_ARGS["data"],
        out,
        auto_test_config(),
        num_classes=AUTO_ARGS["num_classes"],
        image_size=AUTO_ARGS["image_size"],
        resume=resume,
        command="slimcv optimize --model slimcv.distillation.students:tiny_cnn ...",
    )


@pytest.fixture(scope="session")
def auto_workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished auto-mode workspace (``report.html`` written)."""
    out = tmp_path_factory.mktemp("auto") / "ws"
    run_auto_test(out)
    return out
