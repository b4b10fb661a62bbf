"""Per-layer sensitivity to structured pruning, and ratio allocation from it.

Sensitivity analysis prunes one layer at a time at a few ratios and measures accuracy on a
validation subset: a curve per layer of top-1 against ratio. Allocation then spends a MACs
budget where it costs the least predicted accuracy: a greedy choice of the (layer, ratio)
step with the lowest accuracy drop per MAC saved, finished by scaling all ratios together
until the real MACs (not the additive prediction) meet the target.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from slimcv.analysis import profile_model
from slimcv.errors import SlimcvError
from slimcv.progress import progress_bar
from slimcv.pruning.structured import StructuredConfig, prunable_layers, prune_structured_

EvalFn = Callable[[nn.Module], float]


@dataclass
class SensitivityCurve:
    """Top-1 (percent) and MACs when only ``layer`` is pruned, at each ratio."""

    layer: str
    channels: int
    ratios: list[float]
    top1: list[float]
    macs: list[int]


@dataclass
class SensitivityResult:
    baseline_top1: float
    baseline_macs: int
    criterion: str
    samples: int
    curves: list[SensitivityCurve] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SensitivityResult:
        curves = [SensitivityCurve(**c) for c in data.get("curves", [])]
        return cls(
            data["baseline_top1"], data["baseline_macs"], data["criterion"], data["samples"], curves
        )


def _prune_only(
    module: nn.Module, example, layer: str, ratio: float, others: list[str], criterion: str
) -> None:
    config = StructuredConfig(
        ratio=ratio, criterion=criterion, ignore=tuple(name for name in others if name != layer)
    )
    prune_structured_(module, example, config)


def layer_sensitivity(
    module: nn.Module,
    input_shape: tuple[int, ...],
    evaluate: EvalFn,
    *,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    criterion: str = "l2",
    layers: Sequence[str] | None = None,
    samples: int = 0,
    progress: bool = True,
) -> SensitivityResult:
    """Prunes each layer alone at each ratio and measures top-1 with ``evaluate``."""
    import torch

    if not ratios or any(not 0 < r < 1 for r in ratios):
        raise SlimcvError(f"sensitivity ratios must be in (0, 1), got {list(ratios)}")
    example = torch.zeros(input_shape)
    channels = dict(prunable_layers(module, example))
    available = list(channels)
    chosen = list(layers) if layers else available
    unknown = [name for name in chosen if name not in channels]
    if unknown:
        raise SlimcvError(f"not a prunable layer: {unknown[0]}")
    result = SensitivityResult(
        evaluate(module), profile_model(module, input_shape).macs, criterion, samples
    )
    with progress_bar(progress) as bar:
        task = bar.add_task("sensitivity", total=len(chosen) * len(ratios), status="")
        for name in chosen:
            curve = SensitivityCurve(name, channels[name], list(ratios), [], [])
            for ratio in ratios:
                trial = copy.deepcopy(module)
                _prune_only(trial, example, name, ratio, available, criterion)
                curve.top1.append(evaluate(trial))
                curve.macs.append(profile_model(trial, input_shape).macs)
                bar.update(task, advance=1, status=f"{name} @ {ratio:.2f}")
            result.curves.append(curve)
    return result


def allocate_ratios(result: SensitivityResult, target_macs_fraction: float) -> dict[str, float]:
    """Greedy per-layer ratios whose predicted MACs meet the target at the least predicted drop.

    Savings are predicted as additive across layers, which overestimates them when adjacent
    layers are both pruned; :func:`scale_to_target` corrects with real MACs afterwards.
    """
    base = result.baseline_macs
    need = (1 - target_macs_fraction) * base
    level = {c.layer: -1 for c in result.curves}  # index into the curve; -1 = unpruned
    saved = 0.0

    def cost(curve: SensitivityCurve, idx: int) -> tuple[float, float]:
        drop = max(0.0, result.baseline_top1 - curve.top1[idx]) if idx >= 0 else 0.0
        gain = base - curve.macs[idx] if idx >= 0 else 0.0
        return drop, gain

    while saved < need:
        best = None
        for curve in result.curves:
            idx = level[curve.layer]
            if idx + 1 >= len(curve.ratios):
                continue
            drop0, gain0 = cost(curve, idx)
            drop1, gain1 = cost(curve, idx + 1)
            delta_gain = gain1 - gain0
            if delta_gain <= 0:
                continue
            score = (drop1 - drop0 + 1e-3) / delta_gain
            if best is None or score < best[0]:
                best = (score, curve, delta_gain)
        if best is None:
            break
        _, curve, delta_gain = best
        level[curve.layer] += 1
        saved += delta_gain
    return {c.layer: c.ratios[level[c.layer]] for c in result.curves if level[c.layer] >= 0}


def plot_sensitivity(result: SensitivityResult, path: str | Path, top: int = 12) -> Path:
    """Writes a PNG of the curves (the ``top`` most sensitive layers labelled)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    order = sorted(result.curves, key=lambda c: min(c.top1))
    for rank, curve in enumerate(order):
        xs = [0.0, *curve.ratios]
        ys = [result.baseline_top1, *curve.top1]
        label = curve.layer if rank < top else None
        ax.plot(
            xs,
            ys,
            marker="o",
            linewidth=1.2 if label else 0.6,
            alpha=1 if label else 0.35,
            label=label,
        )
    ax.set_xlabel("fraction of the layer's channels removed (only this layer pruned)")
    ax.set_ylabel("top-1 %")
    ax.set_title(f"sensitivity ({result.criterion}, {result.samples} val images)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", title="most sensitive")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def analyze_sensitivity(
    model: Any,
    data: str,
    *,
    ratios: Sequence[float] = (0.25, 0.5, 0.75),
    criterion: str = "l2",
    samples: int = 256,
    layers: Sequence[str] | None = None,
    seed: int = 0,
    progress: bool = True,
) -> SensitivityResult:
    """``slimcv sensitivity``: curves for a LoadedModel on ``samples`` val images of ``data``."""
    from torch.utils.data import DataLoader

    from slimcv.data import calibration_subset, load_data
    from slimcv.training.loop import evaluate_loss

    module = model.require_module("sensitivity analysis")
    bundle = load_data(data, model.preprocess, seed=seed)
    if bundle.num_classes != model.num_classes:
        raise SlimcvError(f"{data} has {bundle.num_classes} classes, the model {model.num_classes}")
    subset = calibration_subset(bundle.val, samples, seed)
    loader = DataLoader(subset, batch_size=128)

    def top1(m: nn.Module) -> float:
        return evaluate_loss(m, loader, nn.CrossEntropyLoss())[1]

    return layer_sensitivity(
        module,
        model.input_shape(1),
        top1,
        ratios=ratios,
        criterion=criterion,
        layers=layers,
        samples=len(subset),
        progress=progress,
    )
