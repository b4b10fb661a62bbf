"""``slimcv demo``: slimcv's whole job on the bundled default, in a few minutes on 2 cores.

Trains torchvision's resnet18 on scikit-learn's real handwritten digits (32 px), then runs auto
mode for ONNX Runtime on this CPU with a 1-point accuracy bound: sensitivity analysis,
pruning levels fine-tuned with distillation, INT8 and mixed precision, every candidate timed
on ONNX Runtime; the fastest within the bound is chosen and the report written. It is exactly
``slimcv optimize --model torchvision:resnet18 --data digits --num-classes 10 --image-size 32
--train-epochs 5 --target onnxruntime --max-drop 1 --out DIR``.
"""

from __future__ import annotations

from pathlib import Path

from slimcv.pipeline.auto import AutoConfig, AutoResult, optimize_auto

DEMO_MODEL = "torchvision:resnet18"
DEMO_DATA = "digits"
DEMO_IMAGE_SIZE = 32
DEMO_TARGET = "onnxruntime"
DEMO_MAX_DROP = 1.0


def demo_command(out_dir: str | Path, epochs: int, workers: int) -> str:
    """The ``slimcv optimize`` line that does what the demo does."""
    return (
        f"slimcv optimize --model {DEMO_MODEL} --data {DEMO_DATA} --num-classes 10 "
        f"--image-size {DEMO_IMAGE_SIZE} --train-epochs {epochs} --target {DEMO_TARGET} "
        f"--max-drop {DEMO_MAX_DROP:g} --workers {workers} --out {out_dir}"
    )


def run_demo(
    out_dir: str | Path = "slimcv-demo",
    *,
    epochs: int = 5,
    workers: int = 1,
    resume: bool = False,
    force: bool = False,
    progress: bool = True,
) -> AutoResult:
    """Runs the demo into ``out_dir`` (a workspace; ``report.html`` at its top)."""
    return optimize_auto(
        DEMO_MODEL,
        DEMO_DATA,
        out_dir,
        AutoConfig(
            target=DEMO_TARGET, max_drop=DEMO_MAX_DROP, train_epochs=epochs, workers=workers
        ),
        num_classes=10,
        image_size=DEMO_IMAGE_SIZE,
        resume=resume,
        force=force,
        progress=progress,
        command=f"slimcv demo --out {out_dir} --epochs {epochs} --workers {workers}\n"
        f"# the same as: {demo_command(out_dir, epochs, workers)}",
    )
