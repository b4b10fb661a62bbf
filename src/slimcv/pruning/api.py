"""``slimcv.prune``: structured or unstructured pruning, to a ratio or a target, with fine-tuning.

The pieces live apart - the dependency-graph surgery (:mod:`.structured`), masks and schedules
(:mod:`.unstructured`, :mod:`.schedules`), target searches (:mod:`.targets`), sensitivity and
allocation (:mod:`.sensitivity`) - and this module only sequences them: choose the ratio,
prune (in one shot or in steps), fine-tune through the shared training loop, measure, save.
"""

from __future__ import annotations

import copy
import itertools
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimcv.analysis import profile_model
from slimcv.data import DataBundle, load_data
from slimcv.errors import SlimcvError
from slimcv.pruning.sensitivity import SensitivityResult
from slimcv.sources.artifact import check_output_dir, save_artifact
from slimcv.sources.model import LoadedModel
from slimcv.training.objective import Objective

MODES = ("structured", "unstructured", "2:4")
#: Ratio for layers whose own ratio is set per layer (the config needs one in (0, 1)).
MIN_LAYER_RATIO = 0.01
ALLOCATIONS = ("uniform", "sensitivity")


@dataclass
class PruneConfig:
    """What to prune and how far.

    Exactly one of ``ratio``, ``target_macs`` and ``target_latency_ms`` says how far:

    Attributes:
        mode: ``structured`` (remove channels, filters and heads), ``unstructured`` (zero
            single weights) or ``2:4`` (two of every four weights).
        ratio: structured: fraction of channels removed per layer; unstructured: sparsity.
        target_macs: keep this fraction of the model's MACs (structured only).
        target_latency_ms: reach this batch-1 latency on ``backend`` (structured only).
        backend: the runtime a latency target is measured on.
        criterion: channel importance: l1, l2, bn, taylor, fpgm or random.
        global_ranking: rank channels across layers instead of a uniform ratio per layer.
        allocation: ``uniform``, or ``sensitivity`` (per-layer ratios from measured
            accuracy curves; needs data and a MACs target).
        round_to: round kept channel counts to this multiple.
        ignore: module names left unpruned.
        schedule: ``oneshot``, ``iterative:K`` (K prune + fine-tune rounds) or, for
            unstructured, ``gradual:K`` (polynomial-decay sparsity over K rounds).
        finetune_epochs: total fine-tuning epochs (split over the rounds); needs data.
        lr: fine-tuning learning rate.
        bn_sparsity: network slimming: L1 weight on BatchNorm scales during fine-tuning
            rounds before the ``bn`` criterion ranks channels.
        distill: fine-tune with the unpruned model as the teacher (soft targets, see
            :mod:`slimcv.distillation`) instead of labels alone; needs fine-tuning epochs.
        sensitivity_samples: validation images used per sensitivity probe.
        threads: threads for latency measurements (default all cores).
        seed: seeds data order and splits.
    """

    mode: str = "structured"
    ratio: float | None = None
    target_macs: float | None = None
    target_latency_ms: float | None = None
    backend: str = "onnxruntime"
    criterion: str = "l2"
    global_ranking: bool = False
    allocation: str = "uniform"
    round_to: int | None = None
    ignore: tuple[str, ...] = ()
    schedule: str = "oneshot"
    finetune_epochs: int = 0
    lr: float = 1e-3
    bn_sparsity: float = 0.0
    distill: bool = False
    sensitivity_samples: int = 256
    threads: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        from slimcv.pruning.schedules import parse_schedule

        self.ignore = tuple(self.ignore)
        if self.mode not in MODES:
            raise SlimcvError(f"unknown pruning mode {self.mode!r}; known: {', '.join(MODES)}")
        targets = [self.ratio, self.target_macs, self.target_latency_ms]
        if sum(t is not None for t in targets) != 1:
            raise SlimcvError("give exactly one of --ratio, --target-macs, --target-latency-ms")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise SlimcvError(f"--ratio must be between 0 and 1 (exclusive), got {self.ratio}")
        if self.target_macs is not None and not 0 < self.target_macs < 1:
            raise SlimcvError(
                f"--target-macs is the fraction of MACs to keep, in (0, 1); got {self.target_macs}"
            )
        if self.target_latency_ms is not None and self.target_latency_ms <= 0:
            raise SlimcvError(f"--target-latency-ms must be positive, got {self.target_latency_ms}")
        if self.mode != "structured" and self.ratio is None:
            raise SlimcvError(
                "unstructured sparsity does not lower MACs or latency on dense runtimes; "
                "give the sparsity with --ratio"
            )
        if self.allocation not in ALLOCATIONS:
            raise SlimcvError(
                f"unknown allocation {self.allocation!r}; known: uniform, sensitivity"
            )
        if self.allocation == "sensitivity" and self.target_macs is None:
            raise SlimcvError("--allocation sensitivity needs --target-macs")
        if self.finetune_epochs < 0:
            raise SlimcvError("--finetune-epochs must be 0 or more")
        if self.distill and not self.finetune_epochs:
            raise SlimcvError("--distill teaches the fine-tuning; give --finetune-epochs N")
        kind, steps = parse_schedule(self.schedule)
        if kind == "gradual" and self.mode == "structured":
            raise SlimcvError("gradual schedules are for unstructured pruning; use iterative:K")
        if steps > 1 and self.finetune_epochs and self.finetune_epochs < steps:
            raise SlimcvError(f"{self.schedule} needs at least {steps} --finetune-epochs")


@dataclass
class PruneResult:
    """What pruning did and what it cost, measured."""

    out_dir: str | None
    mode: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    top1_before: float | None = None
    top1_after: float | None = None
    latency_ms_before: float | None = None
    latency_ms_after: float | None = None
    search: dict[str, Any] | None = None
    layer_ratios: dict[str, float] = field(default_factory=dict)
    layers: dict[str, list[int]] = field(default_factory=dict)
    sparsity: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["macs_fraction"] = self.macs_after / self.macs_before if self.macs_before else None
        return data


def prune(
    model: LoadedModel,
    config: PruneConfig,
    *,
    data: str | DataBundle | None = None,
    out_dir: str | Path | None = None,
    progress: bool = True,
    sensitivity: SensitivityResult | None = None,
) -> PruneResult:
    """Prunes ``model`` (in place) and, with ``out_dir``, saves it as an artifact.

    ``sensitivity`` gives curves measured earlier on this same model (``allocation:
    sensitivity`` then skips measuring them again): auto mode measures them once and prunes
    to several targets from them.

    Raises:
        SlimcvError: a bad config, a target the model cannot reach, a missing data source for
            something that needs one, an unknown layer name.
    """
    out = None
    if out_dir is not None:
        inputs = [model.meta["artifact"]] if "artifact" in model.meta else []
        out = check_output_dir(out_dir, inputs)
    module = model.require_module("pruning").eval()
    shape = model.input_shape(1)
    needs_data = (
        config.finetune_epochs > 0
        or config.criterion == "taylor"
        or (config.allocation == "sensitivity")
    )
    if needs_data and data is None:
        raise SlimcvError("this pruning setup needs --data (fine-tuning, taylor, or sensitivity)")
    bundle = load_data(data, model.preprocess, seed=config.seed) if isinstance(data, str) else data
    if bundle is not None and bundle.num_classes != model.num_classes:
        raise SlimcvError(
            f"{bundle.name} has {bundle.num_classes} classes, the model {model.num_classes}"
        )
    before = profile_model(module, shape)
    # The unpruned model teaches its pruned self during fine-tuning (a frozen copy).
    teacher = _distill_objective(module) if config.distill else None
    result = PruneResult(
        None,
        config.mode,
        before.params,
        before.params,
        before.macs,
        before.macs,
        config=asdict(config),
    )
    if bundle is not None:
        result.top1_before = _top1(module, bundle)
    if config.mode == "structured":
        _structured(model, config, bundle, result, progress, teacher, sensitivity)
    else:
        _unstructured(model, config, bundle, result, progress, teacher)
    after = profile_model(module, shape)
    result.params_after, result.macs_after = after.params, after.macs
    if bundle is not None:
        result.top1_after = _top1(module, bundle)
    if out is not None:
        metrics = {
            k: v
            for k, v in result.to_dict().items()
            if k
            in (
                "macs_before",
                "macs_after",
                "params_before",
                "params_after",
                "top1_before",
                "top1_after",
                "latency_ms_before",
                "latency_ms_after",
            )
        }
        save_artifact(
            out,
            model,
            command="prune",
            args=asdict(config),
            metrics=metrics,
            sparse=config.mode != "structured",
        )
        result.out_dir = str(out)
    return result


def _structured(
    model: LoadedModel,
    config: PruneConfig,
    bundle: DataBundle | None,
    result: PruneResult,
    progress: bool,
    teacher: Objective | None = None,
    sensitivity: SensitivityResult | None = None,
) -> None:
    from slimcv.pruning.schedules import parse_schedule
    from slimcv.pruning.structured import StructuredConfig, prune_structured_
    from slimcv.pruning.targets import (
        bisect_ratio,
        latency_fn,
        macs_fraction_fn,
        measure_latency_ms,
    )

    module = model.require_module("pruning")
    shape = model.input_shape(1)
    example = torch.zeros(shape)
    batches = _batches(bundle, 4) if config.criterion == "taylor" and bundle else None

    def structured_config(ratio: float, layer_ratios: dict[str, float] | None = None):
        return StructuredConfig(
            ratio=ratio,
            criterion=config.criterion,
            global_ranking=config.global_ranking,
            round_to=config.round_to,
            ignore=config.ignore,
            layer_ratios=layer_ratios or {},
        )

    def prune_copy(trial: nn.Module, ratio: float) -> None:
        prune_structured_(trial, example, structured_config(ratio), batches=batches)

    ratio = config.ratio
    layer_ratios: dict[str, float] = {}
    if config.target_latency_ms is not None:
        result.latency_ms_before = measure_latency_ms(module, shape, config.backend, config.threads)
        search = bisect_ratio(
            latency_fn(module, shape, prune_copy, config.backend, config.threads),
            config.target_latency_ms,
            unit="ms",
            tolerance=0.05,
        )
        result.search, ratio = search.to_dict(), search.ratio
    elif config.target_macs is not None and config.allocation == "sensitivity":
        layer_ratios = _sensitivity_allocation(model, config, bundle, progress, sensitivity)
        ratio = MIN_LAYER_RATIO  # placeholder: every prunable layer has a ratio of its own
        result.layer_ratios = layer_ratios
    elif config.target_macs is not None:
        search = bisect_ratio(
            macs_fraction_fn(module, shape, prune_copy),
            config.target_macs,
            unit="of MACs",
            tolerance=0.01,
        )
        result.search, ratio = search.to_dict(), search.ratio
    assert ratio is not None
    _, rounds = parse_schedule(config.schedule)
    # Each round removes the same share of what is left, so K rounds keep (1 - ratio).
    step_ratio = 1 - (1 - ratio) ** (1 / rounds)
    step_layers = {k: 1 - (1 - v) ** (1 / rounds) for k, v in layer_ratios.items()}
    epochs = _split(config.finetune_epochs, rounds)
    changes = list(model.meta.get("architecture_changes", []))
    for index in range(rounds):
        if config.bn_sparsity > 0 and config.criterion == "bn" and epochs[index] and bundle:
            _finetune(module, bundle, config, epochs[index], progress, bn=True)
        report = prune_structured_(
            module, example, structured_config(step_ratio, step_layers), batches=batches
        )
        changes.append(report.change)
        for name, (old, new) in report.layers.items():
            first = result.layers.get(name, [old, new])
            result.layers[name] = [first[0], new]
        step = {"round": index + 1, "ratio": step_ratio, "macs": report.macs_after}
        if bundle is not None and epochs[index]:
            step["finetune_top1"] = _finetune(
                module, bundle, config, epochs[index], progress, objective=teacher
            )
        result.steps.append(step)
    model.meta["architecture_changes"] = changes
    if config.target_latency_ms is not None:
        result.latency_ms_after = measure_latency_ms(
            module, shape, config.backend, config.threads, min_time_s=2.0
        )
        error = abs(result.latency_ms_after - config.target_latency_ms) / config.target_latency_ms
        result.notes.append(
            f"measured {result.latency_ms_after:.3f} ms on {config.backend} "
            f"for a {config.target_latency_ms:g} ms target ({error:.1%} off)"
        )


def _sensitivity_allocation(
    model: LoadedModel,
    config: PruneConfig,
    bundle: DataBundle | None,
    progress: bool,
    curves: SensitivityResult | None = None,
) -> dict[str, float]:
    """Per-layer ratios from sensitivity curves, scaled together to meet the MACs target.

    Every prunable layer gets a ratio of its own.
    """
    from slimcv.pruning.sensitivity import allocate_ratios, layer_sensitivity
    from slimcv.pruning.structured import StructuredConfig, prune_structured_
    from slimcv.pruning.targets import bisect_ratio

    assert bundle is not None and config.target_macs is not None
    module = model.require_module("pruning")
    shape = model.input_shape(1)
    if curves is None:
        subset = _val_subset(bundle, config.sensitivity_samples, config.seed)
        curves = layer_sensitivity(
            module,
            shape,
            lambda m: _top1(m, subset),
            criterion=config.criterion,
            samples=len(subset.val),
            progress=progress,
        )
    allocated = allocate_ratios(curves, config.target_macs)
    if not allocated:
        raise SlimcvError("sensitivity analysis found no prunable layer")
    layers = [c.layer for c in curves.curves]
    base = curves.baseline_macs
    example = torch.zeros(shape)

    def blended(t: float) -> dict[str, float]:
        # t = 0 is the allocation itself; t -> 1 prunes every layer towards all of it. The
        # additive prediction behind the allocation is only approximate, so the real MACs
        # decide where between the two the target lies.
        return {name: min(0.95, 1 - (1 - t) * (1 - allocated.get(name, 0.0))) for name in layers}

    def macs_at(t: float) -> float:
        trial = copy.deepcopy(module)
        prune_structured_(
            trial,
            example,
            StructuredConfig(
                ratio=MIN_LAYER_RATIO,
                criterion=config.criterion,
                round_to=config.round_to,
                ignore=config.ignore,
                layer_ratios=blended(t),
            ),
        )
        return profile_model(trial, shape).macs / base

    search = bisect_ratio(macs_at, config.target_macs, unit="of MACs", tolerance=0.01)
    return blended(search.ratio)


def _unstructured(
    model: LoadedModel,
    config: PruneConfig,
    bundle: DataBundle | None,
    result: PruneResult,
    progress: bool,
    teacher: Objective | None = None,
) -> None:
    from slimcv.pruning.schedules import iterative_steps, parse_schedule, polynomial_decay
    from slimcv.pruning.unstructured import (
        UnstructuredConfig,
        apply_masks_,
        make_permanent_,
        sparsity_report,
    )

    module = model.require_module("pruning")
    assert config.ratio is not None
    kind, rounds = parse_schedule(config.schedule)
    if kind == "gradual":
        targets = [
            polynomial_decay(k, final=config.ratio, begin=0, end=rounds)
            for k in range(1, rounds + 1)
        ]
    else:
        targets = iterative_steps(config.ratio, rounds)
    pattern = "2:4" if config.mode == "2:4" else "unstructured"
    epochs = _split(config.finetune_epochs, rounds)
    for index, sparsity in enumerate(targets):
        cfg = UnstructuredConfig(
            sparsity=min(sparsity, 0.999),
            scope="global" if config.global_ranking or config.mode == "unstructured" else "layer",
            pattern=pattern,
            ignore=config.ignore,
        )
        report = apply_masks_(module, cfg)
        step = {"round": index + 1, "sparsity": report.overall_sparsity}
        if bundle is not None and epochs[index]:
            step["finetune_top1"] = _finetune(
                module, bundle, config, epochs[index], progress, objective=teacher
            )
        result.steps.append(step)
        if pattern == "2:4":
            break  # 2:4 is one fixed pattern; more rounds would change nothing
    make_permanent_(module)
    report = sparsity_report(module)
    result.sparsity = report.to_dict()
    result.notes.append(report.note)


def _finetune(
    module: nn.Module,
    bundle: DataBundle,
    config: PruneConfig,
    epochs: int,
    progress: bool,
    bn: bool = False,
    objective: Objective | None = None,
) -> float:
    """Fine-tunes in place; ``objective`` (a teacher's soft targets) replaces plain labels."""
    from slimcv.training import TrainConfig, fit

    extra = None
    if bn:
        from slimcv.pruning.structured import bn_sparsity_loss

        def extra(m: nn.Module) -> torch.Tensor:
            return bn_sparsity_loss(m, config.bn_sparsity)

    history = fit(
        module,
        bundle,
        TrainConfig(epochs=epochs, lr=config.lr, seed=config.seed, warmup_fraction=0.0),
        extra_loss=extra,
        objective=objective,
        progress=progress,
        description="slimming" if bn else ("distill fine-tune" if objective else "fine-tune"),
    )
    return history[-1].val_top1


def _distill_objective(module: nn.Module) -> Objective:
    from slimcv.distillation import teacher_objective

    return teacher_objective(module)


def _split(total: int, rounds: int) -> list[int]:
    base, extra = divmod(total, rounds)
    return [base + (1 if i < extra else 0) for i in range(rounds)]


def _batches(bundle: DataBundle, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    from torch.utils.data import DataLoader

    loader = DataLoader(bundle.train, batch_size=32, shuffle=False)
    return list(itertools.islice(loader, count))


def _val_subset(bundle: DataBundle, size: int, seed: int) -> DataBundle:
    from slimcv.data import calibration_subset

    return DataBundle(
        bundle.name,
        bundle.train,
        calibration_subset(bundle.val, size, seed),
        bundle.classes,
        bundle.image_size,
    )


def _top1(module: nn.Module, bundle: DataBundle) -> float:
    from torch.utils.data import DataLoader

    from slimcv.training.loop import evaluate_loss

    loader = DataLoader(bundle.val, batch_size=128)
    return evaluate_loss(module, loader, nn.CrossEntropyLoss())[1]
