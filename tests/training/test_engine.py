"""The training engine's parts: schedules, augmentations, early stopping, bf16, atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from slimcv.data import load_data
from slimcv.errors import SlimcvError, UnknownNameError
from slimcv.sources import load_model
from slimcv.training import Checkpointing, EpochMetrics, TrainConfig, fit, seed_everything
from slimcv.training.augment import AUGMENTATIONS, augment_batch
from slimcv.training.checkpoint import atomic_write, load_checkpoint
from slimcv.training.distributed import DistContext
from slimcv.training.loop import EpochBatches
from slimcv.training.schedule import lr_factor, momentum_at

MODELS = Path(__file__).parent / "tiny_models.py"


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny():
    seed_everything(0)
    model = load_model(f"{MODELS}:net", num_classes=10, image_size=16)
    return model, load_data("digits", model.preprocess)


def test_cosine_warms_up_linearly_then_decays_to_zero():
    f = lr_factor("cosine", total_steps=100, warmup_steps=10)
    assert f(0) == pytest.approx(0.1)
    assert f(9) == pytest.approx(1.0)
    assert f(10) == pytest.approx(1.0)
    assert f(55) == pytest.approx(0.5)
    assert f(100) == pytest.approx(0.0, abs=1e-12)
    assert all(f(s) >= f(s + 1) for s in range(10, 100))


def test_onecycle_lr_and_momentum_cycle():
    f = lr_factor("onecycle", total_steps=100, warmup_steps=30)
    assert f(0) == pytest.approx(1 / 25)
    assert f(30) == pytest.approx(1.0)
    assert f(100) == pytest.approx(1 / 25e4)
    assert all(f(s) < f(s + 1) for s in range(30))
    assert [momentum_at("onecycle", 100, 30, s) for s in (0, 30, 100)] == pytest.approx(
        [0.95, 0.85, 0.95]
    )
    assert momentum_at("cosine", 100, 30, 5) is None
    assert lr_factor("constant", 100, 0)(70) == 1.0


def test_onecycle_drives_the_optimizer():
    model, bundle = tiny()
    config = TrainConfig(epochs=1, batch_size=256, lr=0.1, optimizer="sgd", schedule="onecycle")
    history = fit(model.module, bundle, config, progress=False)
    steps = len(bundle.train) // 256
    assert history[0].step == steps
    assert history[0].lr == pytest.approx(0.1 * lr_factor("onecycle", steps, 0)(steps))


@pytest.mark.parametrize("name", AUGMENTATIONS.names())
def test_augmentations_are_seeded_and_keep_shapes(name: str):
    images = torch.randn(16, 3, 12, 12)
    first = augment_batch(images, [name], torch.Generator().manual_seed(1))
    again = augment_batch(images, [name], torch.Generator().manual_seed(1))
    other = augment_batch(images, [name], torch.Generator().manual_seed(2))
    assert first.shape == images.shape
    assert torch.equal(first, again)
    assert not torch.equal(first, images) and not torch.equal(first, other)


def test_flip_and_erase_do_what_they_say():
    images = torch.randn(64, 3, 8, 8)
    flipped = AUGMENTATIONS.get("flip")(images, torch.Generator().manual_seed(0))
    same = [torch.equal(a, b) for a, b in zip(flipped, images, strict=True)]
    mirrored = [torch.equal(a, b.flip(-1)) for a, b in zip(flipped, images, strict=True)]
    assert all(s or m for s, m in zip(same, mirrored, strict=True))
    assert 16 < sum(mirrored) < 48
    erased = AUGMENTATIONS.get("erase")(images, torch.Generator().manual_seed(0))
    zeros = (erased == 0).float().mean(dim=(1, 2, 3))
    assert ((zeros >= 0.01) & (zeros <= 0.34)).all()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"schedule": "linear"},
        {"precision": "fp16"},
        {"device": "tpu"},
        {"patience": 0},
        {"augment": ("rotate",)},
        {"warmup_fraction": 1.0},
    ],
)
def test_new_config_fields_are_validated(kwargs):
    with pytest.raises(SlimcvError):
        TrainConfig(**kwargs)


def test_unknown_augmentation_lists_the_known_ones():
    with pytest.raises(UnknownNameError, match="known: crop, flip, erase"):
        TrainConfig(augment=("crop", "rotate"))


def test_processes_share_exactly_the_global_batches():
    single = EpochBatches(100, 32, seed=3, ctx=DistContext())
    ranks = [EpochBatches(100, 32, seed=3, ctx=DistContext(2, r, r)) for r in (0, 1)]
    for sampler in [single, *ranks]:
        sampler.epoch = 2
    for whole, part0, part1 in zip(single, *ranks, strict=True):
        assert whole == part0 + part1 and len(part0) == len(part1) == 16
    single.epoch = 3
    assert list(single) != list(ranks[0])  # a new order every epoch
    assert len(single) == 3  # the incomplete last batch is dropped


def test_early_stopping_keeps_the_best_epoch(tmp_path: Path):
    model, bundle = tiny()
    # A learning rate this small cannot change a prediction: epoch 1 stays the best.
    config = TrainConfig(epochs=6, lr=1e-9, patience=1, schedule="constant", warmup_fraction=0)
    history = fit(model.module, bundle, config, progress=False, checkpoints=Checkpointing(tmp_path))
    assert [m.epoch for m in history] == [1, 2]
    best = load_checkpoint(tmp_path / "best.pt")
    last = load_checkpoint(tmp_path / "last.pt")
    assert best["epoch"] == 1 and last["epoch"] == 2
    state = model.module.state_dict()
    assert all(torch.equal(state[k], v) for k, v in best["model"].items())
    assert not all(torch.equal(state[k], v) for k, v in last["model"].items())
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert [EpochMetrics(**m) for m in metrics] == history


def test_bf16_autocast_trains():
    model, bundle = tiny()
    config = TrainConfig(epochs=1, lr=0.01, precision="bf16")
    history = fit(model.module, bundle, config, progress=False)
    assert math.isfinite(history[0].train_loss)
    assert history[0].val_top1 > 50
    assert next(model.module.parameters()).dtype == torch.float32


def test_a_failed_write_leaves_the_old_file(tmp_path: Path):
    path = tmp_path / "last.pt"
    atomic_write(path, lambda fh: fh.write(b"old"))

    def half(fh):
        fh.write(b"new, half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(path, half)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_depthwise_networks_train_channels_last_and_come_back_contiguous():
    from slimcv.arch import build_network
    from slimcv.training.loop import training_memory_format

    cpu = torch.device("cpu")
    mobile = build_network("stem_c8,ir_k5_s2_e2_c16", num_classes=10)
    dense = load_model("slimcv.distillation.students:tiny_cnn", num_classes=10).module
    assert training_memory_format(mobile, cpu) == torch.channels_last
    assert training_memory_format(dense, cpu) == torch.contiguous_format

    data = load_data("digits", image_size=16, seed=0)
    before = [p.detach().clone() for p in mobile.parameters()]
    history = fit(mobile, data, TrainConfig(epochs=1, batch_size=64, lr=5e-3), progress=False)
    assert math.isfinite(history[-1].train_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, mobile.parameters(), strict=True))
    # Saved weights must be plain contiguous tensors (safetensors refuses anything else).
    assert all(t.is_contiguous() for t in mobile.state_dict().values())
