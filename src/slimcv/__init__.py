"""slimcv: make vision models small and fast on a real target, and prove it by measuring.

The public API mirrors the CLI::

    import slimcv
    model = slimcv.load_model("torchvision:resnet18", num_classes=10, image_size=32)
    slimcv.train(model, "digits", "run/")
    print(slimcv.evaluate("run/", "digits").top1)
    print(slimcv.profile("torchvision:resnet18").macs)

Heavy modules are imported on first use, so ``import slimcv`` stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_API = {
    "profile": "slimcv.api",
    "evaluate": "slimcv.api",
    "predict": "slimcv.api",
    "train": "slimcv.api",
    "bench": "slimcv.api",
    "export": "slimcv.api",
    "prune": "slimcv.api",
    "quantize": "slimcv.api",
    "distill": "slimcv.api",
    "search": "slimcv.api",
    "PruneConfig": "slimcv.pruning",
    "QuantizeConfig": "slimcv.quant",
    "DistillConfig": "slimcv.distillation",
    "load_model": "slimcv.sources",
    "load_data": "slimcv.data",
    "LoadedModel": "slimcv.sources",
    "Preprocess": "slimcv.sources",
    "TrainConfig": "slimcv.training",
    "BenchConfig": "slimcv.measure",
    "ExportConfig": "slimcv.exporters",
    "SearchConfig": "slimcv.nas",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    if name in _API:
        import importlib

        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'slimcv' has no attribute {name!r}")
