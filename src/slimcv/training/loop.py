"""The one training engine: fine-tuning, QAT, distillation and ``slimcv train`` all call it.

It knows nothing about pruning or quantization: it trains a module on a DataBundle with a
config and reports per-epoch metrics. What a step minimises comes from an
:class:`~slimcv.training.objective.Objective`; everything else is here: SGD/AdamW, cosine and
one-cycle schedules with warm-up, batch augmentations, bf16 autocast on GPU, a checkpoint
after every epoch (atomic), exact resumption, early stopping on val top-1, and data-parallel
training under ``torchrun`` (see ``docs/training.md``).
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from slimcv.data.base import DataBundle
from slimcv.errors import CheckpointError, SlimcvError
from slimcv.progress import progress_bar
from slimcv.training import checkpoint as ckpt
from slimcv.training.augment import AUGMENTATIONS, augment_batch
from slimcv.training.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_sum,
    average_gradients,
    broadcast_parameters,
    process_group,
    resolve_device,
)
from slimcv.training.objective import CrossEntropyObjective, Objective
from slimcv.training.schedule import SCHEDULES, lr_factor, momentum_at

OPTIMIZERS = ("adamw", "sgd")
PRECISIONS = ("auto", "fp32", "bf16")
# Fields a resumed run may change without changing the computation it continues.
_RESUMABLE_CHANGES = {"device"}


@dataclass
class TrainConfig:
    """How to train.

    Attributes:
        epochs: passes over the training split.
        batch_size: images per step, over all processes together (the global batch); under
            torchrun each of N processes takes ``batch_size / N`` of every batch.
        lr: peak learning rate.
        optimizer: ``adamw`` or ``sgd`` (momentum 0.9, Nesterov).
        weight_decay: decoupled (AdamW) or L2 (SGD) weight decay; never on biases and norms.
        warmup_fraction: share of all steps spent warming the learning rate up.
        schedule: ``cosine`` (linear warm-up, cosine to 0), ``onecycle`` (warm-up from lr/25,
            cosine to ~0, momentum cycled 0.95-0.85-0.95) or ``constant`` (warm-up, then flat).
        label_smoothing: cross-entropy label smoothing.
        augment: batch augmentations applied in order (``crop``, ``flip``, ``erase``; see
            :mod:`slimcv.training.augment`).
        patience: stop when val top-1 has not improved for this many epochs, and return the
            weights of the best epoch; ``None`` trains every epoch and keeps the last weights.
        seed: seeds Python, NumPy and PyTorch (plus the process rank), and the data order.
        device: ``auto`` (CUDA when available), ``cpu`` or ``cuda``.
        precision: ``auto`` (bf16 autocast on a GPU that supports it, else fp32), ``fp32``
            or ``bf16``.
    """

    epochs: int = 5
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adamw"
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    schedule: str = "cosine"
    label_smoothing: float = 0.0
    augment: tuple[str, ...] = ()
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"

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
        if self.schedule not in SCHEDULES:
            raise SlimcvError(f"unknown schedule {self.schedule!r}; known: {', '.join(SCHEDULES)}")
        if self.precision not in PRECISIONS:
            raise SlimcvError(
                f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}"
            )
        if self.device not in ("auto", "cpu", "cuda"):
            raise SlimcvError(f"device must be auto, cpu or cuda, got {self.device!r}")
        if not 0 <= self.warmup_fraction < 1:
            raise SlimcvError("warmup_fraction must be in [0, 1)")
        if not 0 <= self.label_smoothing < 1:
            raise SlimcvError("label_smoothing must be in [0, 1)")
        if self.patience is not None and self.patience < 1:
            raise SlimcvError(f"patience must be at least 1 epoch, got {self.patience}")
        self.augment = tuple(self.augment)
        for name in self.augment:
            AUGMENTATIONS.get(name)  # unknown names fail here, listing the known ones


@dataclass
class EpochMetrics:
    """One epoch's figures (train figures averaged over the epoch, over all processes).

    Attributes:
        step: optimizer steps taken since the start of the run, at the end of this epoch.
        parts: the objective's named loss components averaged over the epoch (e.g. ``kd``).
    """

    epoch: int
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    lr: float
    seconds: float
    step: int = 0
    parts: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Checkpointing:
    """Where and how :func:`fit` keeps checkpoints.

    Attributes:
        directory: holds ``last.pt`` (after every epoch), ``best.pt`` (with ``patience``) and
            ``metrics.json``; created if missing.
        resume: continue from ``directory/last.pt`` instead of starting afresh.
        identity: facts the checkpoint must share with this run to be resumed (model source,
            data...); a mismatch is a :class:`~slimcv.errors.CheckpointError`.
    """

    directory: Path
    resume: bool = False
    identity: dict[str, Any] = field(default_factory=dict)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def best_epoch(history: list[EpochMetrics]) -> int:
    """The epoch with the highest val top-1 (the first of equals); 0 for no history."""
    best, top = 0, -1.0
    for metrics in history:
        if metrics.val_top1 > top:
            best, top = metrics.epoch, metrics.val_top1
    return best


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


def _set_momentum(optimizer: torch.optim.Optimizer, momentum: float | None) -> None:
    if momentum is None:
        return
    for group in optimizer.param_groups:
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum


class EpochBatches(torch.utils.data.Sampler[list[int]]):
    """This process's share of every global batch of an epoch.

    The epoch's order is a permutation drawn from ``seed + epoch`` (nothing to save for
    resumption); global batch ``s`` is ``order[s*B:(s+1)*B]`` and process ``r`` of ``N`` takes
    its ``r``-th contiguous part, so N processes see exactly the batches one process would.
    An incomplete last batch is dropped, unless it is the only one.
    """

    def __init__(self, size: int, batch_size: int, seed: int, ctx: DistContext) -> None:
        self.size, self.batch_size, self.seed, self.ctx = size, batch_size, seed, ctx
        self.epoch = 1

    def __len__(self) -> int:
        return max(1, self.size // self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.size, generator=generator)
        for step in range(len(self)):
            batch = order[step * self.batch_size : (step + 1) * self.batch_size]
            yield torch.tensor_split(batch, self.ctx.world_size)[self.ctx.rank].tolist()


def fit(
    module: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    *,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None = None,
    objective: Objective | None = None,
    progress: bool = True,
    description: str = "train",
    checkpoints: Checkpointing | None = None,
) -> list[EpochMetrics]:
    """Trains ``module`` in place and returns metrics for every epoch.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) it joins the process group, wraps the module in
    DistributedDataParallel and splits every batch across the processes; only rank 0 writes
    checkpoints and shows progress. The module ends on the device it started on, in eval mode.

    Args:
        module: the model; trained in place.
        data: train and val splits.
        config: optimisation settings.
        extra_loss: a regulariser added to every step's loss, computed from the module (e.g.
            network slimming's L1 on BatchNorm scales); techniques plug in here so the loop
            stays ignorant of them.
        objective: what each step minimises (default: cross-entropy with the config's label
            smoothing); see :mod:`slimcv.training.objective`. Its trainable parameters are
            optimised with the module's and its ``state_dict`` is checkpointed.
        progress: show a progress bar on stderr.
        description: the progress bar's label.
        checkpoints: write a checkpoint after every epoch (and resume from one); ``None``
            writes nothing.

    Returns:
        Every epoch's metrics, resumed epochs included. With ``patience``, training may stop
        early and the module holds the weights of :func:`best_epoch`.

    Raises:
        CheckpointError: ``resume`` without a checkpoint, or one from another model, data or
            config.
        SlimcvError: the batch does not split over the processes.
    """
    with process_group(config.device) as ctx:
        return _fit(
            module, data, config, extra_loss, objective, progress, description, checkpoints, ctx
        )


def _fit(
    module: nn.Module,
    data: DataBundle,
    config: TrainConfig,
    extra_loss: Callable[[nn.Module], torch.Tensor] | None,
    objective: Objective | None,
    progress: bool,
    description: str,
    checkpoints: Checkpointing | None,
    ctx: DistContext,
) -> list[EpochMetrics]:
    if config.batch_size % ctx.world_size:
        raise SlimcvError(
            f"batch size {config.batch_size} does not split evenly over {ctx.world_size} processes"
        )
    device = resolve_device(config.device, ctx)
    home = next(iter(module.parameters()), torch.empty(0)).device
    bf16 = config.precision == "bf16" or (
        config.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()
    )
    seed_everything(config.seed + ctx.rank)
    aug_generator = torch.Generator().manual_seed(config.seed + 7919 * (ctx.rank + 1))
    sampler = EpochBatches(len(data.train), config.batch_size, config.seed, ctx)  # type: ignore[arg-type]
    train_loader = DataLoader(IndexedDataset(data.train), batch_sampler=sampler)
    val_size = len(data.val)  # type: ignore[arg-type]
    shard = torch.tensor_split(torch.arange(val_size), ctx.world_size)[ctx.rank].tolist()
    val_loader = DataLoader(Subset(data.val, shard), batch_size=max(config.batch_size, 128))
    objective = objective or CrossEntropyObjective(config.label_smoothing)
    module.to(device)
    layout = training_memory_format(module, device)
    module.to(memory_format=layout)
    objective.to(device)
    optimizer = _optimizer(module, config, objective)
    steps_per_epoch = len(sampler)
    total_steps = config.epochs * steps_per_epoch
    warmup = int(config.warmup_fraction * total_steps)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_factor(config.schedule, total_steps, warmup)
    )
    criterion = nn.CrossEntropyLoss(label_smoothing=config.label_smoothing)
    history: list[EpochMetrics] = []
    best_state: dict[str, torch.Tensor] | None = None
    if checkpoints is not None and checkpoints.resume:
        history, best_state = _resume(
            checkpoints, config, module, objective, optimizer, scheduler, aug_generator, ctx
        )
    broadcast_parameters(objective, ctx)
    trained: nn.Module = module
    if ctx.enabled:
        trained = nn.parallel.DistributedDataParallel(
            module, device_ids=[device.index] if device.type == "cuda" else None
        )
    objective_params = [p for p in objective.parameters() if p.requires_grad]
    step = len(history) * steps_per_epoch
    with progress_bar(progress and ctx.is_main) as bar:
        task = bar.add_task(description, total=total_steps, completed=step, status="")
        for epoch in range(len(history) + 1, config.epochs + 1):
            if _should_stop(history, config):
                break
            start = time.perf_counter()
            sampler.epoch = epoch
            module.train()
            objective.train()
            sums = [0.0, 0.0, 0.0]  # loss * n, correct, n
            parts_sum: dict[str, float] = {}
            for images, labels, indices in train_loader:
                images, labels = images.to(device), labels.to(device)
                if config.augment:
                    images = augment_batch(images, config.augment, aug_generator)
                _set_momentum(optimizer, momentum_at(config.schedule, total_steps, warmup, step))
                optimizer.zero_grad(set_to_none=True)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                    out = objective(trained, images, labels, indices.to(device))
                    total = out.loss + extra_loss(module) if extra_loss is not None else out.loss
                total.backward()
                average_gradients(objective_params, ctx)
                optimizer.step()
                scheduler.step()
                step += 1
                n = len(labels)
                sums[0] += out.loss.item() * n
                sums[1] += int((out.logits.argmax(1) == labels).sum())
                sums[2] += n
                for key, value in (out.parts or {}).items():
                    parts_sum[key] = parts_sum.get(key, 0.0) + float(value) * n
                bar.update(
                    task,
                    advance=1,
                    status=f"epoch {epoch}/{config.epochs} "
                    f"loss {sums[0] / sums[2]:.3f} acc {100 * sums[1] / sums[2]:.1f}%",
                )
            keys = sorted(parts_sum)
            totals = all_reduce_sum(sums + [parts_sum[k] for k in keys], ctx, device)
            seen = max(totals[2], 1)
            v_loss, v_correct, v_seen = all_reduce_sum(
                _evaluate_sums(module, val_loader, criterion, device, bf16), ctx, device
            )
            metrics = EpochMetrics(
                epoch=epoch,
                train_loss=totals[0] / seen,
                train_top1=100 * totals[1] / seen,
                val_loss=v_loss / max(v_seen, 1),
                val_top1=100 * v_correct / max(v_seen, 1),
                lr=optimizer.param_groups[0]["lr"],
                seconds=time.perf_counter() - start,
                step=step,
                parts={k: totals[3 + i] / seen for i, k in enumerate(keys)},
            )
            history.append(metrics)
            improved = config.patience is not None and best_epoch(history) == epoch
            if improved and checkpoints is None:
                best_state = copy.deepcopy(module.state_dict())
            if checkpoints is not None:
                _save(
                    checkpoints,
                    config,
                    module,
                    objective,
                    optimizer,
                    scheduler,
                    aug_generator,
                    history,
                    improved,
                    ctx,
                )
            bar.update(
                task, status=f"epoch {epoch}/{config.epochs} val acc {metrics.val_top1:.1f}%"
            )
    if config.patience is not None and best_epoch(history) != history[-1].epoch:
        if best_state is None and checkpoints is not None:
            best_state = _load_best(checkpoints.directory)
        if best_state is not None:
            module.load_state_dict(best_state)
    module.to(home, memory_format=torch.contiguous_format)
    objective.to(home)
    module.eval()
    objective.eval()
    return history


def training_memory_format(module: nn.Module, device: torch.device) -> torch.memory_format:
    """``channels_last`` on CPU for networks with grouped or depthwise convolutions.

    PyTorch's CPU backward of depthwise convolutions is slower in the default NCHW layout: on
    this project's 2-core machine, MobileNetV2-style networks on 32 px digits trained 1.2x
    (3x3 kernels) to 1.5x (5x5 and 7x7) faster per epoch in channels_last
    (``benchmarks/train_layout.py``), and on a loaded
    machine one 5x5 depthwise batch took 48 s in NCHW against 0.08 s. Dense networks (ResNets)
    keep the default layout, where oneDNN is already fast. The module is returned to
    the contiguous layout when training ends, so saved weights are plain contiguous tensors.
    """
    grouped = any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in module.modules())
    return torch.channels_last if device.type == "cpu" and grouped else torch.contiguous_format


def _should_stop(history: list[EpochMetrics], config: TrainConfig) -> bool:
    if config.patience is None or not history:
        return False
    return history[-1].epoch - best_epoch(history) >= config.patience


def _config_dict(config: TrainConfig) -> dict[str, Any]:
    data = asdict(config)
    data["augment"] = list(config.augment)
    return data


def _save(
    checkpoints: Checkpointing,
    config: TrainConfig,
    module: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    history: list[EpochMetrics],
    improved: bool,
    ctx: DistContext,
) -> None:
    rng = all_gather_objects(ckpt.rng_state(generator), ctx)  # every rank takes part
    if not ctx.is_main:
        return
    directory = checkpoints.directory
    epoch = history[-1].epoch
    if improved:  # before last.pt, so a checkpoint never names a best that is not on disk
        ckpt.save_checkpoint(directory / ckpt.BEST, {"epoch": epoch, "model": module.state_dict()})
    ckpt.save_checkpoint(
        directory / ckpt.LAST,
        {
            "epoch": epoch,
            "step": history[-1].step,
            "world_size": ctx.world_size,
            "config": _config_dict(config),
            "identity": checkpoints.identity,
            "model": module.state_dict(),
            "objective": objective.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "rng": rng,
            "history": [m.to_dict() for m in history],
        },
    )
    ckpt.save_json(directory / ckpt.METRICS, [m.to_dict() for m in history])


def _resume(
    checkpoints: Checkpointing,
    config: TrainConfig,
    module: nn.Module,
    objective: Objective,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    generator: torch.Generator,
    ctx: DistContext,
) -> tuple[list[EpochMetrics], dict[str, torch.Tensor] | None]:
    path = checkpoints.directory / ckpt.LAST
    state = ckpt.load_checkpoint(path)
    stored_identity = state.get("identity", {})
    for key, value in checkpoints.identity.items():
        if stored_identity.get(key) != value:
            raise CheckpointError(
                f"{path} is from another run: its {key} is {stored_identity.get(key)!r}, "
                f"not {value!r}"
            )
    stored_config, current = state.get("config", {}), _config_dict(config)
    changed = [
        f"{k}={stored_config.get(k)!r} there, {v!r} here"
        for k, v in current.items()
        if k not in _RESUMABLE_CHANGES and stored_config.get(k) != v
    ]
    if changed:
        raise CheckpointError(
            f"{path} was trained with other settings ({'; '.join(changed)}); "
            "resume with the original options"
        )
    ckpt.check_fits(path, state["model"], module)
    ckpt.check_fits(path, state["objective"], objective)
    module.load_state_dict(state["model"])
    objective.load_state_dict(state["objective"])
    try:
        optimizer.load_state_dict(state["optimizer"])
    except (ValueError, KeyError) as exc:
        raise CheckpointError(f"{path}: the optimizer state does not fit: {exc}") from None
    scheduler.load_state_dict(state["scheduler"])
    rng = state["rng"]
    if ctx.rank < len(rng):
        ckpt.set_rng_state(rng[ctx.rank], generator)
    history = [EpochMetrics(**m) for m in state["history"]]
    best = None
    if config.patience is not None and history and best_epoch(history) != history[-1].epoch:
        best = _load_best(checkpoints.directory)
    return history, best


def _load_best(directory: Path) -> dict[str, torch.Tensor]:
    return ckpt.load_checkpoint(directory / ckpt.BEST)["model"]


class IndexedDataset(torch.utils.data.Dataset):
    """Yields ``(image, label, index)``: objectives look up per-sample data by index."""

    def __init__(self, dataset: torch.utils.data.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = self.dataset[index]
        return image, label, index


def _evaluate_sums(
    module: nn.Module,
    loader: DataLoader,
    criterion: nn.Module,
    device: torch.device,
    bf16: bool,
) -> list[float]:
    """[loss * n, correct, n] of ``module`` over ``loader``."""
    module.eval()
    loss_sum, correct, seen = 0.0, 0, 0
    with torch.inference_mode(), torch.autocast(device.type, torch.bfloat16, enabled=bf16):
        for images, labels in loader:
            images, labels = images.to(device), labels.to(device)
            logits = module(images)
            loss_sum += criterion(logits.float(), labels).item() * len(labels)
            correct += int((logits.argmax(1) == labels).sum())
            seen += len(labels)
    return [loss_sum, float(correct), float(seen)]


def evaluate_loss(
    module: nn.Module, loader: DataLoader, criterion: nn.Module
) -> tuple[float, float]:
    """Mean loss and top-1 (percent) of ``module`` over ``loader`` (on the module's device)."""
    device = next(iter(module.parameters()), torch.empty(0)).device
    loss_sum, correct, seen = _evaluate_sums(module, loader, criterion, device, bf16=False)
    return loss_sum / max(seen, 1), 100 * correct / max(seen, 1)
