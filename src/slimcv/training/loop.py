"""The one supervised training loop (fine-tuning, and later QAT and distillation, call it).

It knows nothing about pruning or quantization: it trains a module on a DataBundle with a
config and reports per-epoch metrics.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from slimcv.data.base import DataBundle
from slimcv.errors import SlimcvError
from slimcv.progress import progress_bar
from slimcv.training.objective import CrossEntropyObjective, Objective

OPTIMIZERS = ("adamw", "sgd")


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step.
        lr: peak learning rate, reached after a linear warm-up, then cosine decay to zero.
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay.
        warmup_fraction: share of all steps spent warming the learning rate up.
        label_smoothing: cross-entropy label smoothing.
        seed: seeds Python, NumPy and PyTorch, and the data order.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    label_smoothing: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise SlimcvError(f"epochs must be at least 1, got {self.epochs}")
        if self.batch_size < 1:
            raise SlimcvError(f"batch size must be at least 1, got {self.batch_size}")
        if self.lr <= 0:
            raise SlimcvError(f"learning rate must be positive, got {self.lr}")
        if self.optimizer not in OPTIMIZERS:
            raise SlimcvError(
                f"unknown optimizer {self.optimizer!r}; known: {', '.join(OPTIMIZERS)}"
            )
        if not 0 <= self.warmup_fraction < 1:
            raise SlimcvError("warmup_fraction must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise SlimcvError("label_smoothing must be in [0, 1)")


@dataclass
class EpochMetrics:
    epoch: int
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    lr: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _optimizer(
    module: nn.Module, config: TrainConfig, objective: Objective
) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for param in [*module.parameters(), *objective.parameters()]:
        if param.requires_grad:
            # Biases and norm scales are 1-D; decaying them hurts small models for nothing.
            (no_decay if param.ndim <= 1 else decay).append(param)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def _schedule(config: TrainConfig, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    warmup = int(config.warmup_fraction * total_steps)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor  # type: ignore[return-value]


def fit(
    module: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    objective: Objective | None = None,
    progress: bool = True,
    description: str = "train",
) -> list[EpochMetrics]:
    """Trains ``module`` in place and returns metrics for every epoch.

    Args:
        module: the model; trained in place.
        data: train and val splits.
        config: optimisation settings.
        extra_loss: a regulariser added to every step's loss, computed from the module (e.g.
            network slimming's L1 on BatchNorm scales); techniques plug in here so the loop
            stays ignorant of them.
        objective: what each step minimises (default: cross-entropy with the config's label
            smoothing); see :mod:`slimcv.training.objective`. Its trainable parameters are
            optimised with the module's.
        progress: show a progress bar on stderr.
        description: the progress bar's label.
    """
    seed_everything(config.seed)
    generator = torch.Generator().manual_seed(config.seed)
    train_loader = DataLoader(
        IndexedDataset(data.train),
        batch_size=config.batch_size,
        shuffle=True,
        generator=generator,
        drop_last=len(data.train) > config.batch_size,  # type: ignore[arg-type]
    )
    val_loader = DataLoader(data.val, batch_size=max(config.batch_size, 128))
    objective = objective or CrossEntropyObjective(config.label_smoothing)
    optimizer = _optimizer(module, config, objective)
    total_steps = config.epochs * len(train_loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(config, total_steps))
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history: list[EpochMetrics] = []
    with progress_bar(progress) as bar:
        task = bar.add_task(description, total=total_steps, status="")
        for epoch in range(1, config.epochs + 1):
            start = time.perf_counter()
            module.train()
            objective.train()
            loss_sum, correct, seen = 0.0, 0, 0
            for images, labels, indices in train_loader:
                optimizer.zero_grad(set_to_none=True)
                step = objective(module, images, labels, indices)
                loss, logits = step.loss, step.logits
                total = loss + extra_loss(module) if extra_loss is not None else loss
                total.backward()
                optimizer.step()
                scheduler.step()
                loss_sum += loss.item() * len(labels)
                correct += int((logits.argmax(1) == labels).sum())
                seen += len(labels)
                bar.update(
                    task,
                    advance=1,
                    status=f"epoch {epoch}/{config.epochs} "
                    f"loss {loss_sum / seen:.3f} acc {100 * correct / seen:.1f}%",
                )
            val_loss, val_top1 = evaluate_loss(module, val_loader, criterion)
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=loss_sum / max(seen, 1),
                train_top1=100 * correct / max(seen, 1),
                val_loss=val_loss,
                val_top1=val_top1,
                lr=optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - start,
            )
            history.append(metrics)
            bar.update(task, status=f"epoch {epoch}/{config.epochs} val acc {val_top1:.1f}%")
    module.eval()
    objective.eval()
    return history


class IndexedDataset(torch.utils.data.Dataset):
    """Yields ``(image, label, index)``: objectives look up per-sample data by index."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.dataset[index]
        return image, label, index


def evaluate_loss(
    module: nn.Module, loader: DataLoader, criterion: nn.Module
) -> tuple[float, float]:
    """Mean loss and top-1 (percent) of ``module`` over ``loader``."""
    module.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.inference_mode():
        for images, labels in loader:
            logits = module(images)
            loss_sum += criterion(logits, labels).item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    return loss_sum / max(seen, 1), 100 * correct / max(seen, 1)
