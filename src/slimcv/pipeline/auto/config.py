"""What auto mode searches over, for which target, under which bounds."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from slimcv.errors import SlimcvError, UnknownNameError

#: Per target runtime: the ways a candidate can run on it, as (variant name, model kind,
#: runtime precision). ``float`` models are the pruned float weights; ``int8`` models are
#: slimcv's QDQ INT8 export, which the runtime executes with integer kernels.
TARGET_VARIANTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "onnxruntime": (("f32", "float", "f32"), ("int8", "int8", "f32")),
    # OpenVINO silently runs bf16 on CPUs with AVX512-BF16; here both are candidates, named.
    "openvino": (("f32", "float", "f32"), ("bf16", "float", "bf16"), ("int8", "int8", "f32")),
    "tensorrt": (("f32", "float", "f32"), ("f16", "float", "f16")),
}


ALLOCATIONS = ("sensitivity", "uniform")


@dataclass
class AutoConfig:
    """Auto mode: the fastest model on ``target`` within ``max_drop`` points of the baseline.

    The search combines structured pruning (to each fraction of MACs in ``keep_macs``, with
    per-layer ratios allocated each way in ``allocations``, and a distillation fine-tune from
    the unpruned model), INT8 quantization (falling back to mixed precision when full INT8 costs
    too much), and the runtime precisions the target offers (see :data:`TARGET_VARIANTS`).
    Every candidate's top-1 is measured on the target runtime and its latency on the target,
    in this process, one candidate at a time.

    Attributes:
        target: the runtime the model is optimized for.
        max_drop: the accuracy bound, in top-1 points below the baseline on the target.
        latency_budget_ms: a latency the chosen model must also meet (else exit 2, report
            written).
        batch: the batch size latency is measured at.
        keep_macs: fractions of the baseline's MACs to prune to (1.0 = no pruning).
        allocations: how per-layer ratios are set, each tried at every level: ``sensitivity``
            (from measured curves: the least-sensitive layers lose the most) and ``uniform``
            (one ratio everywhere); which wins depends on the model and the runtime.
        criterion: channel importance for pruning.
        finetune_epochs: fine-tuning epochs after pruning.
        distill: fine-tune from the unpruned model's soft targets.
        round_to: kept channel counts are multiples of this (runtime kernels prefer it).
        int8: try INT8 variants.
        mixed_precision: when full INT8 drops too far, retry leaving the most sensitive
            layers in float.
        train_epochs: train the model on the data first (for a model with no trained head).
        workers: candidates prepared at once (Ray tasks when above 1).
        ray_address: an existing Ray cluster to prepare candidates on.
        threads: threads for latency measurements (default all cores).
        timing_rounds: latency is the median over this many round-robin passes over all
            candidates, so slow drift of the machine hits them all alike.
        min_time_s: seconds of timed calls per candidate per round.
        bench_time_s: seconds of timed calls per record in the final before/after bench.
        sensitivity_samples: validation images per sensitivity probe.
        seed: seeds training, pruning fine-tunes and calibration.
    """

    target: str = "onnxruntime"
    max_drop: float = 1.0
    latency_budget_ms: float | None = None
    batch: int = 1
    keep_macs: tuple[float, ...] = (1.0, 0.5, 0.25, 0.12, 0.08, 0.05)
    allocations: tuple[str, ...] = ("sensitivity", "uniform")
    criterion: str = "l2"
    finetune_epochs: int = 10
    distill: bool = True
    round_to: int = 8
    int8: bool = True
    mixed_precision: bool = True
    train_epochs: int = 0
    workers: int = 1
    ray_address: str | None = None
    threads: int | None = None
    timing_rounds: int = 3
    min_time_s: float = 0.5
    bench_time_s: float = 1.0
    sensitivity_samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.target not in TARGET_VARIANTS:
            raise UnknownNameError(
                f"unknown target {self.target!r}; known: {', '.join(TARGET_VARIANTS)}"
            )
        if self.max_drop < 0:
            raise SlimcvError(f"--max-drop is in points and must be >= 0, got {self.max_drop}")
        if self.latency_budget_ms is not None and self.latency_budget_ms <= 0:
            raise SlimcvError(f"--latency-budget-ms must be positive, got {self.latency_budget_ms}")
        if self.batch < 1:
            raise SlimcvError(f"--batch must be at least 1, got {self.batch}")
        self.keep_macs = tuple(sorted({float(k) for k in self.keep_macs}, reverse=True))
        if not self.keep_macs or any(not 0 < k <= 1 for k in self.keep_macs):
            raise SlimcvError(f"keep_macs fractions must be in (0, 1], got {list(self.keep_macs)}")
        if isinstance(self.allocations, str):
            self.allocations = (self.allocations,)
        self.allocations = tuple(dict.fromkeys(self.allocations))
        unknown = [a for a in self.allocations if a not in ALLOCATIONS]
        if unknown or not self.allocations:
            raise UnknownNameError(
                f"unknown allocation {unknown[0] if unknown else ''!r}; known: "
                + ", ".join(ALLOCATIONS)
            )
        if self.finetune_epochs < 0 or self.train_epochs < 0:
            raise SlimcvError("epochs must be 0 or more")
        if self.workers < 1:
            raise SlimcvError(f"--workers must be at least 1, got {self.workers}")
        if self.timing_rounds < 1 or self.min_time_s <= 0 or self.bench_time_s <= 0:
            raise SlimcvError("timing_rounds must be >= 1, min_time_s and bench_time_s > 0")
        if self.distill and not self.finetune_epochs:
            self.distill = False  # nothing to distill into; not an error for --finetune-epochs 0

    def levels(self) -> list[tuple[float, str]]:
        """(MACs fraction, allocation) of every level, most MACs first; 1.0 only once (an
        unpruned model has no allocation)."""
        out = []
        for keep in self.keep_macs:
            for allocation in self.allocations[:1] if keep >= 1.0 else self.allocations:
                out.append((keep, allocation))
        return out

    def variants(self) -> list[tuple[str, str, str]]:
        """(name, model kind, runtime precision) of every way a candidate runs on the target."""
        return [v for v in TARGET_VARIANTS[self.target] if self.int8 or v[1] != "int8"]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
