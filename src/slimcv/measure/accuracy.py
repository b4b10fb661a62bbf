"""Accuracy on a data source: top-1, top-5 and per-class accuracy, in percent."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from slimcv.data import load_data
from slimcv.data.base import DataBundle
from slimcv.errors import DataError
from slimcv.progress import progress_bar
from slimcv.runtimes.runner import logits_fn
from slimcv.sources.model import LoadedModel

SPLITS = ("val", "train")


@dataclass
class EvalResult:
    """Accuracy of a model on one split.

    Attributes:
        top1: percent of images whose highest-scoring class is right.
        top5: percent whose right class is among the five highest (top1 if fewer classes).
        per_class: class name -> percent correct (top-1) for that class.
        samples: images evaluated.
        data: the data source; split: which split.
        runtime: what ran the model (``torch`` or ``onnxruntime``).
    """

    top1: float
    top5: float
    per_class: dict[str, float]
    samples: int
    data: str
    split: str
    runtime: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate(
    model: LoadedModel,
    data: str | DataBundle,
    *,
    split: str = "val",
    batch_size: int = 64,
    seed: int = 0,
    backend: str | None = None,
    graph_path: Path | None = None,
    progress: bool = True,
) -> EvalResult:
    """Evaluates ``model`` (PyTorch or ONNX) on a split of ``data``.

    The data is loaded with the model's own preprocessing, and the split uses the same seed as
    training did, so ``val`` is never an image the model was trained on. ``backend`` and
    ``graph_path`` run an exported file on another runtime (f32), e.g. OpenVINO IR.

    Raises:
        DataError: unknown split, unlabeled data (``photos``), or class count different from
            the model's outputs.
    """
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; known: {', '.join(SPLITS)}")
    bundle = data if isinstance(data, DataBundle) else load_data(data, model.preprocess, seed=seed)
    bundle.require_labels("top-1")
    if bundle.num_classes != model.num_classes:
        raise DataError(
            f"{bundle.name} has {bundle.num_classes} classes but the model outputs "
            f"{model.num_classes}"
        )
    dataset = bundle.val if split == "val" else bundle.train
    run = logits_fn(model, backend, graph_path=graph_path)
    k = min(5, model.num_classes)
    hits1 = hitsk = 0
    per_class_hits = torch.zeros(bundle.num_classes)
    per_class_total = torch.zeros(bundle.num_classes)
    loader = DataLoader(dataset, batch_size=batch_size)
    with progress_bar(progress) as bar:
        task = bar.add_task("eval", total=len(loader), status="")
        for images, labels in loader:
            logits = run(images)
            topk = logits.topk(k, dim=1).indices
            right1 = topk[:, 0] == labels
            hits1 += int(right1.sum())
            hitsk += int((topk == labels[:, None]).any(1).sum())
            per_class_total += torch.bincount(labels, minlength=bundle.num_classes)
            per_class_hits += torch.bincount(labels[right1], minlength=bundle.num_classes)
            bar.update(task, advance=1, status=f"top-1 {100 * hits1 / per_class_total.sum():.1f}%")
    total = int(per_class_total.sum())
    per_class = {
        name: float(100 * per_class_hits[i] / per_class_total[i])
        for i, name in enumerate(bundle.classes)
        if per_class_total[i] > 0
    }
    return EvalResult(
        top1=100 * hits1 / total,
        top5=100 * hitsk / total,
        per_class=per_class,
        samples=total,
        data=bundle.name,
        split=split,
        runtime=backend or ("onnxruntime" if model.is_onnx else "torch"),
    )
