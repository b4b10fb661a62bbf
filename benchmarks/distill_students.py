"""Does a resnet18 teacher make a small student better? Teacher vs student from labels vs
student distilled, on digits, over several seeds.

Setting: the teacher is torchvision's resnet18 trained with ``slimcv.train`` on digits at 32x32
(as the test suite's ``trained_digits`` fixture: 5 epochs, AdamW, seed 0). The student is
``slimcv.distillation.students:small_cnn`` (2.8 M MACs at 32x32, 0.076 of the teacher's 37 M,
counted by ``slimcv.analysis``). Each seed trains the student twice with the same epochs,
learning rate, batch size, data order and initial weights: once from the labels alone (the
training loop's plain cross-entropy) and once with soft targets (``slimcv.distill``, teacher
logits cached once and reused). Every run uses the same seeded train/val split as the teacher
(split seed 0), so the val images are held out from the teacher too. Figures are val top-1
(percent) after the last epoch; mean and sample standard deviation over the seeds.

Rerun (1223 s measured on the shared 2-core machine with other jobs running; writes
benchmarks/results/distill_students.{md,json} and prints the Markdown)::

    python benchmarks/distill_students.py
    python benchmarks/distill_students.py --epochs 10 --seeds 3 --kd 1:0.5 --kd 4:0.9
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from slimcv.analysis import profile_model
from slimcv.data import load_data
from slimcv.distillation import DistillConfig, distill
from slimcv.sources import load_model
from slimcv.training import TrainConfig, fit, seed_everything, train

STUDENT = "slimcv.distillation.students:small_cnn"
RESULTS = Path(__file__).parent / "results"


def _student(seed: int, size: int):
    seed_everything(seed)  # the same initial weights for both students of a seed
    return load_model(STUDENT, num_classes=10, image_size=size)


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "mean": statistics.mean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "runs": values,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="distill-bench-"))
    seed_everything(0)
    teacher_model = load_model("torchvision:resnet18", num_classes=10, image_size=args.size)
    teacher_run = train(
        teacher_model, "digits", work / "teacher", TrainConfig(epochs=args.teacher_epochs)
    )
    teacher_dir = work / "teacher"
    bundle = load_data("digits", teacher_model.preprocess, seed=0)
    shape = (1, 3, args.size, args.size)
    teacher_macs = profile_model(load_model(str(teacher_dir)).module, shape).macs
    student_macs = profile_model(_student(0, args.size).module, shape).macs
    kd_settings = [tuple(float(v) for v in item.split(":")) for item in args.kd]
    rows: dict[str, list[float]] = {"labels": []}
    rows.update({f"kd T={t:g} alpha={a:g}": [] for t, a in kd_settings})
    started = time.perf_counter()
    for seed in range(args.seeds):
        student = _student(seed, args.size)
        config = TrainConfig(epochs=args.epochs, lr=args.lr, seed=seed)
        history = fit(student.module, bundle, config, progress=False)
        rows["labels"].append(history[-1].val_top1)
        for temperature, alpha in kd_settings:
            result = distill(
                load_model(str(teacher_dir)),
                _student(seed, args.size),
                bundle,
                work / f"kd-{temperature:g}-{alpha:g}-{seed}",
                DistillConfig(
                    temperature=temperature,
                    alpha=alpha,
                    epochs=args.epochs,
                    lr=args.lr,
                    seed=seed,
                    cache_dir=str(work / "cache"),
                ),
            )
            rows[f"kd T={temperature:g} alpha={alpha:g}"].append(result.student_top1)
        print(f"seed {seed}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in rows.items()))
    return {
        "setting": {
            "data": "digits (1437 train / 360 val, split seed 0)",
            "image_size": args.size,
            "teacher": f"torchvision:resnet18, slimcv.train {args.teacher_epochs} epochs, seed 0",
            "student": STUDENT,
            "student_epochs": args.epochs,
            "lr": args.lr,
            "batch_size": 64,
            "optimizer": "adamw, weight decay 0.05, warm-up 10% then cosine",
            "seeds": list(range(args.seeds)),
            "threads": args.threads,
            "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
            "torch": torch.__version__,
            "seconds": round(time.perf_counter() - started, 1),
        },
        "teacher": {"top1": teacher_run.final_val_top1, "macs": teacher_macs},
        "student_macs": student_macs,
        "macs_ratio": student_macs / teacher_macs,
        "students": {name: _stats(values) for name, values in rows.items()},
    }


def markdown(data: dict[str, Any]) -> str:
    s = data["setting"]
    lines = [
        "# Distilling resnet18 into a small CNN on digits",
        "",
        f"Val top-1 (%) at {s['image_size']}x{s['image_size']}, student trained "
        f"{s['student_epochs']} epochs (lr {s['lr']}, {s['optimizer']}); mean ± sample std "
        f"over seeds {s['seeds']}. Teacher: {s['teacher']}. MACs counted by slimcv.analysis "
        f"(batch 1). {s['threads']} threads, torch {s['torch']}, {s['seconds']} s.",
        "",
        "| model | trained | MACs | val top-1 % (mean ± std) | per seed |",
        "|---|---|---:|---:|---|",
        f"| resnet18 (teacher) | labels | {data['teacher']['macs'] / 1e6:.1f} M | "
        f"{data['teacher']['top1']:.2f} | seed 0 |",
    ]
    for name, stats in data["students"].items():
        runs = ", ".join(f"{v:.2f}" for v in stats["runs"])
        lines.append(
            f"| small_cnn ({data['macs_ratio']:.3f}x MACs) | {name} | "
            f"{data['student_macs'] / 1e6:.1f} M | {stats['mean']:.2f} ± {stats['std']:.2f} | "
            f"{runs} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10, help="student epochs")
    parser.add_argument("--teacher-epochs", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=5e-3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--kd",
        action="append",
        help="T:alpha of a distilled row (repeatable); default 1:0.5 and 4:0.9",
    )
    args = parser.parse_args()
    args.kd = args.kd or ["1:0.5", "4:0.9"]
    data = run(args)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "distill_students.json").write_text(json.dumps(data, indent=2) + "\n")
    text = markdown(data)
    (RESULTS / "distill_students.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
