"""Early exits on digits: how much compute a confidence threshold saves, and at what accuracy.

Setting: a plain conv-BN-ReLU SpecNet (``SPEC`` below; 3.9 M MACs at 32x32, trains in about a
minute on two cores) gets exit heads after ``stages.0`` and ``stages.1`` (pool, 1x1 conv to 64,
linear; :class:`slimcv.arch.early_exit.EarlyExitNet`)
and is trained jointly, from scratch, with :class:`EarlyExitObjective` (the sum of the three
exits' cross-entropies) through the shared training engine: AdamW, cosine schedule, seed 0,
digits' seeded 80/20 split. Then :func:`slimcv.arch.early_exit.tradeoff` sweeps the
confidence threshold on the val split: each image leaves at the first exit whose top softmax
probability reaches it. Average MACs are the mean of the images' batch-1 path MACs (backbone up
to the exit plus every head evaluated on the way), each measured with
``slimcv.analysis.profile_model``; a threshold above 1 runs the plain backbone (the full
network point). MACs and accuracy are the point; the wall time is on a shared 2-core machine.

Rerun (writes benchmarks/results/early_exit_digits.{md,json,png} and prints the Markdown)::

    python benchmarks/early_exit_digits.py
    python benchmarks/early_exit_digits.py --epochs 8 --threads 2
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch

from slimcv.arch import build_network
from slimcv.arch.early_exit import EarlyExitNet, EarlyExitObjective, tradeoff
from slimcv.data import load_data
from slimcv.sources.model import Preprocess
from slimcv.training import TrainConfig, fit, seed_everything

SPEC = "stem_c16_s2,conv_r2_c48_s2,conv_r2_c64_s2,conv_r2_c128_s2,head_c256"
EXITS = ("stages.0", "stages.1")
THRESHOLDS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99, 0.999, 1.01)
RESULTS = Path(__file__).parent / "results"


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    seed_everything(0)
    size = 32
    net = EarlyExitNet(
        build_network(SPEC, num_classes=10),
        EXITS,
        input_shape=(1, 3, size, size),
        hidden_channels=64,
    )
    bundle = load_data("digits", Preprocess(image_size=size), seed=0)
    config = TrainConfig(epochs=args.epochs, batch_size=64, lr=5e-3, device="cpu")
    history = fit(net, bundle, config, objective=EarlyExitObjective(), progress=False)
    train_seconds = time.perf_counter() - started
    points = tradeoff(net, bundle, THRESHOLDS)
    paths = net.path_macs()
    full_macs = net.backbone_macs()
    exits_alone = _exit_accuracy(net, bundle)
    return {
        "setting": {
            "data": "digits (val split, seed 0)",
            "val_images": len(bundle.val),  # type: ignore[arg-type]
            "image_size": size,
            "spec": SPEC,
            "exits": list(EXITS),
            "head": "global average pool, 1x1 conv to 64 + ReLU, linear",
            "train": {**config.__dict__, "augment": list(config.augment)},
            "loss": "sum of the three exits' cross-entropies (weights 1, 1, 1)",
            "macs": "batch-1 MACs from slimcv.analysis.profile_model (conv/linear only)",
            "threads": args.threads,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
        },
        "final_epoch": history[-1].to_dict(),
        "path_macs": dict(zip(net.path_names, paths, strict=True)),
        "full_network_macs": full_macs,
        "exit_top1_alone": exits_alone,
        "points": [p.to_dict() for p in points],
        "train_seconds": round(train_seconds, 1),
        "total_seconds": round(time.perf_counter() - started, 1),
    }


@torch.no_grad()
def _exit_accuracy(net: EarlyExitNet, bundle: Any) -> dict[str, float]:
    """Val top-1 of every exit used for all images."""
    net.eval()
    correct = [0] * len(net.path_names)
    seen = 0
    for images, labels in torch.utils.data.DataLoader(bundle.val, batch_size=256):
        for i, logits in enumerate(net.forward_all(images)):
            correct[i] += int((logits.argmax(1) == labels).sum())
        seen += len(labels)
    return {n: 100 * c / seen for n, c in zip(net.path_names, correct, strict=True)}


def markdown(result: dict[str, Any]) -> str:
    setting = result["setting"]
    full = result["full_network_macs"]
    lines = [
        "# Early exits on digits",
        "",
        f"SpecNet `{setting['spec']}` at {setting['image_size']}x{setting['image_size']}, "
        f"exits after {', '.join(f'`{e}`' for e in setting['exits'])} ({setting['head']}), "
        f"trained jointly for {setting['train']['epochs']} epochs on digits "
        f"({result['train_seconds']} s on {setting['threads']} shared CPU threads). "
        f"Val split: {setting['val_images']} images. {setting['macs']}.",
        "",
        "| exit | path MACs | x full | top-1 if every image left here |",
        "|---|---:|---:|---:|",
    ]
    for name, macs in result["path_macs"].items():
        lines.append(
            f"| {name} | {macs:,} | {macs / full:.2f} | {result['exit_top1_alone'][name]:.1f}% |"
        )
    top1 = result["exit_top1_alone"]["final"]
    lines += [
        f"| full network (no heads) | {full:,} | 1.00 | {top1:.1f}% |",
        "",
        "| threshold | top-1 | avg MACs | x full | images per exit |",
        "|---:|---:|---:|---:|---|",
    ]
    for p in result["points"]:
        hist = ", ".join(f"{k} {v}" for k, v in p["histogram"].items())
        lines.append(
            f"| {p['threshold']:g} | {p['top1']:.1f}% | {p['avg_macs']:,.0f} | "
            f"{p['avg_macs'] / full:.2f} | {hist} |"
        )
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = [p for p in result["points"] if p["threshold"] <= 1]
    full = result["full_network_macs"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(
        [p["avg_macs"] / 1e6 for p in points],
        [p["top1"] for p in points],
        "o-",
        label="early exit (threshold sweep)",
    )
    for p in points:
        ax.annotate(
            f"{p['threshold']:g}",
            (p["avg_macs"] / 1e6, p["top1"]),
            fontsize=7,
            xytext=(3, -9),
            textcoords="offset points",
        )
    ax.plot(
        [full / 1e6], [result["exit_top1_alone"]["final"]], "s", color="black", label="full network"
    )
    ax.set_xlabel("average MACs per image (M, batch 1)")
    ax.set_ylabel("val top-1 (%)")
    ax.set_title("Early exits on digits (32x32)")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    result = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "early_exit_digits.json").write_text(json.dumps(result, indent=2) + "\n")
    text = markdown(result)
    (RESULTS / "early_exit_digits.md").write_text(text)
    plot(result, RESULTS / "early_exit_digits.png")
    print(text)


if __name__ == "__main__":
    main()
