"""Progressive shrinking: training the supernet once so that every sub-network works.

Once-for-All trains the largest network first, then opens the elastic dimensions one at a time,
so small sub-networks start from weights that already work in the large one instead of
fighting it from scratch:

=========  =============================================================  ==================
phase      sampled per step                                                sub-networks/step
=========  =============================================================  ==================
full       the largest network (resolution elastic throughout)             1
kernel     + kernel 3/5/7 and SE on/off per stage                          2
depth      + depth 1-3 per stage                                           2
expand     + expansion per stage and the width multiplier                  2
=========  =============================================================  ==================

In the shrinking phases each sub-network's loss is cross-entropy plus distillation from the
full network's soft predictions (a frozen copy of it after the first phase), and the losses of
the step's sub-networks are summed (their gradients accumulate into the shared weights); when a
step draws several, the first is the phase's smallest (BigNAS's sandwich rule). Before
the expansion phase the hidden channels are sorted by importance, so "the first k channels"
keep the important ones.

Why a loop of its own rather than :func:`slimcv.training.fit`: every step samples new
sub-networks (and a resolution) and sums several forward/backward passes through the shared
weights, and the phases change what is sampled and reorder channels between them; ``fit``
trains one fixed module per step. The pieces that fit are reused: the learning-rate schedule
(:func:`~slimcv.training.schedule.lr_factor`), the soft-target loss of
:mod:`slimcv.distillation`, the atomic writes of :mod:`slimcv.training.checkpoint`, the data
sources of :mod:`slimcv.data`.

The data are held in memory as tensors at every resolution of the space (digits at 32 px is
1,437 x 3 x 32 x 32 floats, 18 MB), and the convolutions run in channels-last layout: PyTorch's
CPU backward of a 7x7 depthwise convolution is 10-20x slower in the default layout.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from slimcv.distillation.losses.soft_targets import soft_target_loss, soft_targets
from slimcv.errors import SearchError
from slimcv.nas.space import Genotype, MobileNetV2Space, SearchSpace
from slimcv.nas.supernet.elastic import (
    ElasticMobileNet,
    extract,
    max_genotype,
    min_genotype,
    recalibrate_bn,
)
from slimcv.training.checkpoint import atomic_write, save_json
from slimcv.training.schedule import lr_factor

PHASES = ("full", "kernel", "depth", "expand")
# Dimension-name prefixes each phase makes elastic, on top of the previous phases'.
_OPENS = {"full": ("resolution",), "kernel": ("k", "se"), "depth": ("d",), "expand": ("e", "width")}
FORMAT_VERSION = 1
WEIGHTS = "supernet.safetensors"
CONFIG = "supernet.json"
# Beyond this the in-memory data would crowd out everything else; such data want short-train.
_MAX_DATA_BYTES = 2 * 1024**3


@dataclass
class ShrinkingConfig:
    """How the supernet is trained.

    Attributes:
        epochs: epochs of each phase, in :data:`PHASES` order (full, kernel, depth, expand).
        subnets_per_step: sub-networks sampled (losses summed) per step, per phase.
        sandwich: in the shrinking phases that draw several sub-networks per step, make the
            first of them the phase's smallest one (BigNAS's sandwich rule; not in OFA). The
            smallest networks share the fewest weights with the rest and are otherwise drawn
            too rarely to learn.
        batch_size: images per step.
        lr: peak AdamW learning rate of the first phase (the full network).
        shrink_lr: peak learning rate of the shrinking phases (lower: they refine shared
            weights that already work).
        weight_decay: AdamW decay of conv and linear weights (not of norms, biases or the
            kernel-transformation matrices, which start as the identity).
        warmup_fraction: share of each phase's steps spent warming the learning rate up.
        kd_weight: weight of distillation from the full network in the shrinking phases.
        temperature: softmax temperature of that distillation.
        kernel_transform: learn OFA's kernel-transformation matrices (else plain centre crops).
        max_steps_per_epoch: cap on steps per epoch (tests, quick looks); ``None`` for all.
        seed: initialisation, data order and sampled sub-networks.
    """

    epochs: tuple[int, ...] = (3, 2, 2, 4)
    subnets_per_step: tuple[int, ...] = (1, 2, 2, 2)
    sandwich: bool = True
    batch_size: int = 64
    lr: float = 3e-3
    shrink_lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    kd_weight: float = 1.0
    temperature: float = 1.0
    kernel_transform: bool = True
    max_steps_per_epoch: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        self.epochs = tuple(int(e) for e in self.epochs)
        self.subnets_per_step = tuple(int(n) for n in self.subnets_per_step)
        if len(self.epochs) != len(PHASES) or min(self.epochs) < 0 or self.epochs[0] < 1:
            raise SearchError(
                f"supernet epochs must be {len(PHASES)} counts ({', '.join(PHASES)}), the first "
                f"at least 1, got {self.epochs}"
            )
        if len(self.subnets_per_step) != len(PHASES) or min(self.subnets_per_step) < 1:
            raise SearchError(
                f"subnets_per_step must be {len(PHASES)} counts of at least 1, "
                f"got {self.subnets_per_step}"
            )
        if self.batch_size < 1 or self.lr <= 0 or self.shrink_lr <= 0 or self.temperature <= 0:
            raise SearchError("supernet batch size, learning rates and temperature must be > 0")
        if self.max_steps_per_epoch is not None and self.max_steps_per_epoch < 1:
            raise SearchError("max_steps_per_epoch must be at least 1")
        if not 0 <= self.warmup_fraction < 1:
            raise SearchError("warmup_fraction must be in [0, 1)")


@dataclass
class PhaseMetrics:
    """One phase's figures.

    Attributes:
        losses: mean training loss (summed over the step's sub-networks) of every epoch.
        val_top1_max, val_top1_min: val top-1 of the largest and the smallest sub-network at
            the end of the phase, each with recalibrated BatchNorm statistics.
    """

    phase: str
    epochs: int
    steps: int
    seconds: float
    losses: list[float] = field(default_factory=list)
    step_losses: list[float] = field(default_factory=list)
    val_top1_max: float | None = None
    val_top1_min: float | None = None


@dataclass
class TensorSplits:
    """A data set held as tensors at each resolution of a space (same samples, same order)."""

    train: dict[int, torch.Tensor]
    train_labels: torch.Tensor
    val: dict[int, torch.Tensor]
    val_labels: torch.Tensor


def _stack(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    items = [dataset[i] for i in range(len(dataset))]  # type: ignore[arg-type]
    images = torch.stack([image for image, _ in items])
    labels = torch.tensor([int(label) for _, label in items], dtype=torch.int64)
    return images, labels


def load_splits(data: str, resolutions: tuple[int, ...], seed: int) -> TensorSplits:
    """Loads ``data`` at every resolution through :func:`slimcv.data.load_data`.

    Each resolution is resized from the source images (not from another resolution), exactly
    as a stand-alone model at that size would see them.

    Raises:
        DataError: the data source is unknown or unlabeled.
        SearchError: the data would not fit in memory at these resolutions.
    """
    from slimcv.data import load_data

    train: dict[int, torch.Tensor] = {}
    val: dict[int, torch.Tensor] = {}
    labels = val_labels = torch.empty(0, dtype=torch.int64)
    for size in sorted(set(resolutions)):
        bundle = load_data(data, image_size=size, seed=seed)
        bundle.require_labels("supernet training")
        total = (len(bundle.train) + len(bundle.val)) * 3 * size * size * 4  # type: ignore[arg-type]
        if total * len(resolutions) > _MAX_DATA_BYTES:
            raise SearchError(
                f"{data} at {size} px is too large to hold in memory for the supernet; "
                "use the short-train estimator"
            )
        train[size], labels = _stack(bundle.train)
        val[size], val_labels = _stack(bundle.val)
    return TensorSplits(train, labels, val, val_labels)


def phase_choices(space: SearchSpace, phase: str) -> dict[str, tuple[Any, ...]]:
    """Each dimension's choices that ``phase`` samples from (the largest one if not open)."""
    opened = tuple(p for name in PHASES[: PHASES.index(phase) + 1] for p in _OPENS[name])
    choices = {}
    for dim in space.dimensions:
        stem = dim.name.rstrip("0123456789")
        choices[dim.name] = dim.choices if stem in opened else (max(dim.choices),)
    return choices


def sample_genotype(choices: dict[str, tuple[Any, ...]], rng: random.Random) -> Genotype:
    return {name: rng.choice(options) for name, options in choices.items()}


def _optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        # Norms and biases are 1-D; transformation matrices must stay near the identity.
        (no_decay if param.ndim <= 1 or "transforms" in name else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


@torch.no_grad()
def subnet_top1(
    supernet: ElasticMobileNet,
    genotype: Genotype,
    splits: TensorSplits,
    *,
    bn_images: int = 512,
    seed: int = 0,
) -> float:
    """Val top-1 (percent) of a sub-network, extracted, BN statistics re-estimated first."""
    candidate = supernet.space.decode(genotype)
    network = extract(supernet, candidate)
    return calibrated_top1(network, splits, candidate.image_size, bn_images=bn_images, seed=seed)


@torch.no_grad()
def calibrated_top1(
    network: torch.nn.Module,
    splits: TensorSplits,
    resolution: int,
    *,
    bn_images: int = 512,
    batch_size: int = 128,
    seed: int = 0,
) -> float:
    """Re-estimates ``network``'s BN statistics on ``bn_images`` seeded training images at
    ``resolution``, then returns its val top-1 in percent (the network is changed in place)."""
    network.to(memory_format=torch.channels_last)  # see the module docstring
    train = splits.train[resolution]
    generator = torch.Generator().manual_seed(seed)
    picked = torch.randperm(len(train), generator=generator)[:bn_images]
    recalibrate_bn(
        network,
        (
            train[picked[i : i + batch_size]].contiguous(memory_format=torch.channels_last)
            for i in range(0, len(picked), batch_size)
        ),
    )
    return accuracy(network, splits.val[resolution], splits.val_labels, batch_size)


@torch.no_grad()
def accuracy(
    network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 128
) -> float:
    """Top-1 in percent of ``network`` (eval mode) on ``images``."""
    network.eval()
    correct = 0
    for start in range(0, len(images), batch_size):
        batch = images[start : start + batch_size].contiguous(memory_format=torch.channels_last)
        logits = network(batch)
        correct += int((logits.argmax(1) == labels[start : start + batch_size]).sum())
    return 100.0 * correct / max(1, len(images))


def train_supernet(
    supernet: ElasticMobileNet,
    splits: TensorSplits,
    config: ShrinkingConfig,
    *,
    evaluate: bool = True,
    log: Any = None,
) -> list[PhaseMetrics]:
    """Trains ``supernet`` in place by progressive shrinking; returns each phase's figures.

    Args:
        evaluate: measure the largest and smallest sub-network after each phase.
        log: called with one line of text after each epoch (e.g. ``print``), or ``None``.
    """
    space = supernet.space
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    order_generator = torch.Generator().manual_seed(config.seed)
    resolutions = sorted(splits.train)
    size = len(splits.train_labels)
    steps_per_epoch = max(1, size // config.batch_size)
    if config.max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, config.max_steps_per_epoch)
    train_cl = {r: t.contiguous(memory_format=torch.channels_last) for r, t in splits.train.items()}
    teacher: ElasticMobileNet | None = None
    history: list[PhaseMetrics] = []
    for index, phase in enumerate(PHASES):
        epochs = config.epochs[index]
        if epochs == 0:
            continue
        if phase != "full" and teacher is None and config.kd_weight > 0:
            teacher = copy.deepcopy(supernet).train()
            teacher.requires_grad_(False)
        if phase == "expand":
            supernet.sort_hidden_channels_()
        choices = phase_choices(space, phase)
        lr = config.lr if phase == "full" else config.shrink_lr
        optimizer = _optimizer(supernet, lr, config.weight_decay)
        total = epochs * steps_per_epoch
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_factor("cosine", total, int(config.warmup_fraction * total))
        )
        metrics = PhaseMetrics(phase, epochs, total, 0.0)
        start = time.perf_counter()
        supernet.train()
        for epoch in range(1, epochs + 1):
            order = torch.randperm(size, generator=order_generator)
            epoch_loss = 0.0
            for step in range(steps_per_epoch):
                batch = order[step * config.batch_size : (step + 1) * config.batch_size]
                labels = splits.train_labels[batch]
                resolution = rng.choice(resolutions)
                images = train_cl[resolution][batch]
                soft = None
                if teacher is not None and phase != "full":
                    with torch.no_grad():
                        soft = soft_targets(teacher(images), config.temperature)
                optimizer.zero_grad(set_to_none=True)
                step_loss = 0.0
                many = config.subnets_per_step[index] > 1
                for draw in range(config.subnets_per_step[index]):
                    if config.sandwich and phase != "full" and draw == 0 and many:
                        genotype = _phase_extreme(choices, min)
                    else:
                        genotype = sample_genotype(choices, rng)
                    genotype["resolution"] = resolution  # one resolution per batch (OFA)
                    logits = supernet(images, space.decode(genotype).spec)
                    loss = F.cross_entropy(logits, labels)
                    if soft is not None:
                        loss = loss + config.kd_weight * soft_target_loss(
                            logits, soft, config.temperature
                        )
                    loss.backward()
                    step_loss += float(loss.detach())
                optimizer.step()
                scheduler.step()
                if not math.isfinite(step_loss):
                    raise SearchError(f"supernet training diverged in phase {phase} (loss nan)")
                metrics.step_losses.append(step_loss)
                epoch_loss += step_loss
            metrics.losses.append(epoch_loss / steps_per_epoch)
            if log is not None:
                log(f"supernet {phase} epoch {epoch}/{epochs} loss {metrics.losses[-1]:.3f}")
        metrics.seconds = time.perf_counter() - start
        if evaluate:
            metrics.val_top1_max = subnet_top1(supernet, _phase_extreme(choices, max), splits)
            metrics.val_top1_min = subnet_top1(supernet, _phase_extreme(choices, min), splits)
            if log is not None:
                log(
                    f"supernet {phase}: val top-1 largest {metrics.val_top1_max:.1f}% "
                    f"smallest {metrics.val_top1_min:.1f}%"
                )
        supernet.train()
        history.append(metrics)
    return history


def _phase_extreme(choices: dict[str, tuple[Any, ...]], pick: Any) -> Genotype:
    return {name: pick(options) for name, options in choices.items()}


def config_hash(space: SearchSpace, data: str, num_classes: int, config: ShrinkingConfig) -> str:
    """What a stored supernet must match to be reused: format, space, data, classes, config."""
    identity = {
        "format": FORMAT_VERSION,
        "space": space.name,
        "image_size": getattr(space, "image_size", None),
        "dimensions": [[d.name, list(d.choices)] for d in space.dimensions],
        "data": data,
        "num_classes": num_classes,
        "config": asdict(config),
    }
    text = json.dumps(identity, sort_keys=True, default=list)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def save_supernet(
    directory: Path, supernet: ElasticMobileNet, info: dict[str, Any]
) -> tuple[Path, Path]:
    """Writes ``supernet.safetensors`` and ``supernet.json`` (weights first, both atomic)."""
    from safetensors.torch import save

    tensors = {k: v.detach().contiguous() for k, v in supernet.state_dict().items()}
    weights, meta = directory / WEIGHTS, directory / CONFIG
    atomic_write(weights, lambda fh: fh.write(save(tensors)))
    save_json(meta, info)
    return weights, meta


def load_supernet(
    directory: Path, space: SearchSpace, num_classes: int, expected_hash: str | None = None
) -> tuple[ElasticMobileNet, dict[str, Any]] | None:
    """The stored supernet, or ``None`` when there is none or it is for another setting."""
    from safetensors.torch import load_file

    weights, meta = directory / WEIGHTS, directory / CONFIG
    if not (weights.is_file() and meta.is_file()):
        return None
    try:
        info = json.loads(meta.read_text())
    except (OSError, ValueError):
        return None
    if expected_hash is not None and info.get("hash") != expected_hash:
        return None
    config = ShrinkingConfig(**info["config"])
    supernet = ElasticMobileNet(space, num_classes, kernel_transform=config.kernel_transform)
    supernet.load_state_dict(load_file(str(weights)), strict=True)
    return supernet.eval(), info


def prepare_supernet(
    directory: Path,
    space: SearchSpace,
    data: str,
    num_classes: int,
    config: ShrinkingConfig | None = None,
    *,
    log: Any = None,
) -> tuple[ElasticMobileNet, dict[str, Any]]:
    """Loads the supernet stored in ``directory`` for this setting, or trains and stores one.

    Raises:
        SearchError: the space is not the mobilenetv2 space, or training diverged.
        DataError: the data cannot be loaded or has no labels.
    """
    if not isinstance(space, MobileNetV2Space):
        raise SearchError(f"the supernet covers the mobilenetv2 space only, not {space.name!r}")
    config = config or ShrinkingConfig()
    digest = config_hash(space, data, num_classes, config)
    stored = load_supernet(directory, space, num_classes, digest)
    if stored is not None:
        return stored
    resolutions = next(d.choices for d in space.dimensions if d.name == "resolution")
    splits = load_splits(data, resolutions, config.seed)
    labels = int(splits.train_labels.max()) + 1
    if labels > num_classes:
        raise SearchError(f"{data} has {labels} classes but the search asks for {num_classes}")
    torch.manual_seed(config.seed)
    supernet = ElasticMobileNet(space, num_classes, kernel_transform=config.kernel_transform)
    start = time.perf_counter()
    history = train_supernet(supernet, splits, config, log=log)
    info = {
        "format": FORMAT_VERSION,
        "hash": digest,
        "space": space.name,
        "image_size": space.image_size,
        "data": data,
        "num_classes": num_classes,
        "config": asdict(config),
        "seconds": time.perf_counter() - start,
        "threads": torch.get_num_threads(),
        "phases": [asdict(m) for m in history],
        "max_genotype": max_genotype(space),
        "min_genotype": min_genotype(space),
    }
    save_supernet(directory, supernet, info)
    return supernet.eval(), info
