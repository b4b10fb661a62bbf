"""slimcv pruning against Torch-Pruning's defaults, in one run on this machine.

For each ratio, both prune the same trained model to the same MACs and get the same fine-tuning
budget through slimcv's training loop; then top-1 on the digits val split and ONNX Runtime
latency (batch 1, median, measured alternately in this process) are compared.

- Torch-Pruning as its README applies it: ``MetaPruner`` with ``MagnitudeImportance(p=2)``,
  uniform ``pruning_ratio``, the classifier ignored.
- slimcv: ``slimcv.prune`` with ``--target-macs`` set to the MACs fraction Torch-Pruning
  reached, per-layer ratios allocated from measured sensitivity curves, channel counts rounded
  to multiples of 8.

Usage: ``python benchmarks/prune_vs_torch_pruning.py [--ratios 0.3,0.5] [--epochs 3]``.
Writes ``benchmarks/results/prune_vs_torch_pruning.md`` and prints the table.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
from pathlib import Path

import torch
import torch_pruning as tp

from slimcv.analysis import profile_model
from slimcv.data import load_data
from slimcv.pruning import PruneConfig, prune
from slimcv.pruning.targets import measure_latency_ms
from slimcv.sources import LoadedModel, load_model
from slimcv.training import TrainConfig, fit, seed_everything

RESULTS = Path(__file__).parent / "results"


def torch_pruning_defaults(module: torch.nn.Module, example: torch.Tensor, ratio: float) -> None:
    pruner = tp.pruner.MetaPruner(
        module,
        example,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        ignored_layers=[module.fc],
    )
    pruner.step()


def latency_224(module: torch.nn.Module, runs_s: float) -> float:
    return measure_latency_ms(module.eval(), (1, 3, 224, 224), "onnxruntime", None, runs_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratios", default="0.3,0.5")
    parser.add_argument("--epochs", type=int, default=3, help="fine-tuning epochs for both")
    parser.add_argument("--base-epochs", type=int, default=5)
    parser.add_argument("--image-size", type=int, default=32)
    args = parser.parse_args()

    seed_everything(0)
    base = load_model("torchvision:resnet18", num_classes=10, image_size=args.image_size)
    data = load_data("digits", base.preprocess)
    fit(base.module, data, TrainConfig(epochs=args.base_epochs), progress=False)
    shape = base.input_shape(1)
    example = torch.zeros(shape)
    base_macs = profile_model(base.module, shape).macs
    base_top1 = fit_free_top1(base.module, data)
    rows = []
    for ratio in (float(r) for r in args.ratios.split(",")):
        theirs = copy.deepcopy(base.module)
        torch_pruning_defaults(theirs, example, ratio)
        fraction = profile_model(theirs, shape).macs / base_macs
        fit(
            theirs,
            data,
            TrainConfig(epochs=args.epochs, lr=1e-3, warmup_fraction=0.0),
            progress=False,
        )
        ours_model = LoadedModel(base.source, 10, base.preprocess, copy.deepcopy(base.module))
        prune(
            ours_model,
            PruneConfig(
                target_macs=fraction,
                allocation="sensitivity",
                round_to=8,
                finetune_epochs=args.epochs,
                lr=1e-3,
            ),
            data=data,
            progress=False,
        )
        ours = ours_model.module
        lat_theirs, lat_ours, lat_base = [], [], []
        for _ in range(3):  # alternate, so drift hits both alike
            lat_base.append(latency_224(base.module, 1.0))
            lat_theirs.append(latency_224(theirs, 1.0))
            lat_ours.append(latency_224(ours, 1.0))
        rows.append(
            {
                "ratio": ratio,
                "macs_fraction_tp": fraction,
                "macs_fraction_slimcv": profile_model(ours, shape).macs / base_macs,
                "top1_base": base_top1,
                "top1_tp": fit_free_top1(theirs, data),
                "top1_slimcv": fit_free_top1(ours, data),
                "latency_base_ms": sorted(lat_base)[1],
                "latency_tp_ms": sorted(lat_theirs)[1],
                "latency_slimcv_ms": sorted(lat_ours)[1],
            }
        )
    write(rows, args)


def fit_free_top1(module: torch.nn.Module, data) -> float:
    from torch.utils.data import DataLoader

    from slimcv.training.loop import evaluate_loss

    return evaluate_loss(module, DataLoader(data.val, batch_size=128), torch.nn.CrossEntropyLoss())[
        1
    ]


def write(rows: list[dict], args: argparse.Namespace) -> None:
    lines = [
        "# Pruning: slimcv vs Torch-Pruning defaults",
        "",
        f"resnet18 trained {args.base_epochs} epochs on digits at {args.image_size}px; both "
        f"pruned to the same MACs and fine-tuned {args.epochs} epochs with the same loop. "
        "Latency: ONNX Runtime f32, batch 1, 224x224 input, median of timed runs, all cores, "
        f"measured alternately in one run on {platform.processor() or platform.machine()}.",
        "",
        "| channel ratio (TP) | MACs kept TP / slimcv | top-1 base | top-1 TP | top-1 slimcv "
        "| latency ms base | TP | slimcv |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['ratio']:.2f} | {r['macs_fraction_tp']:.3f} / {r['macs_fraction_slimcv']:.3f}"
            f" | {r['top1_base']:.2f} | {r['top1_tp']:.2f} | {r['top1_slimcv']:.2f} "
            f"| {r['latency_base_ms']:.2f} | {r['latency_tp_ms']:.2f} "
            f"| {r['latency_slimcv_ms']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "prune_vs_torch_pruning.md").write_text(text)
    (RESULTS / "prune_vs_torch_pruning.json").write_text(json.dumps(rows, indent=2))
    print(text)


if __name__ == "__main__":
    main()
