"""The in-memory model that flows between slimcv's stages.

A :class:`LoadedModel` is a PyTorch module (or an ONNX file, for ``bench`` and ``eval``) plus the
metadata every later stage needs: how to rebuild it (the source string), how to feed it (the
preprocessing) and what its outputs mean (the labels).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class Preprocess:
    """How raw images become the model's input tensor.

    Attributes:
        image_size: side of the square input the model takes.
        crop_pct: centre-crop fraction; images are resized to ``image_size / crop_pct`` first.
        mean: per-channel mean subtracted after scaling pixels to [0, 1].
        std: per-channel standard deviation divided by.
        interpolation: resize filter, ``bilinear`` or ``bicubic``.
    """

    image_size: int = 224
    crop_pct: float = 0.875
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def __post_init__(self) -> None:
        if self.image_size < 1:
            raise ValueError(f"image_size must be positive, got {self.image_size}")
        if not 0 < self.crop_pct <= 1:
            raise ValueError(f"crop_pct must be in (0, 1], got {self.crop_pct}")
        self.mean = tuple(float(v) for v in self.mean)  # type: ignore[assignment]
        self.std = tuple(float(v) for v in self.std)  # type: ignore[assignment]

    @property
    def resize_size(self) -> int:
        return max(self.image_size, int(round(self.image_size / self.crop_pct)))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Preprocess:
        known = {
            k: data[k]
            for k in ("image_size", "crop_pct", "mean", "std", "interpolation")
            if k in data
        }
        return cls(**known)


@dataclass
class LoadedModel:
    """A model plus what it takes to rebuild, feed and read it.

    Attributes:
        source: the source string that rebuilds the architecture (``torchvision:resnet18``).
        num_classes: size of the classifier output.
        preprocess: input size and normalisation the model expects.
        module: the PyTorch module, or ``None`` for an ONNX-only model.
        onnx_path: the ONNX file for ONNX-only models (and exports).
        labels: class names, index-aligned with the outputs, when known.
        meta: provenance carried into artifacts (history of commands, metrics).
    """

    source: str
    num_classes: int
    preprocess: Preprocess = field(default_factory=Preprocess)
    module: torch.nn.Module | None = None
    onnx_path: Path | None = None
    labels: list[str] | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def is_onnx(self) -> bool:
        return self.module is None

    def input_shape(self, batch: int = 1) -> tuple[int, int, int, int]:
        size = self.preprocess.image_size
        return (batch, 3, size, size)

    def label(self, index: int) -> str:
        if self.labels and 0 <= index < len(self.labels):
            return self.labels[index]
        return str(index)

    def require_module(self, what: str) -> torch.nn.Module:
        """Returns the PyTorch module, or says clearly that ``what`` needs one."""
        from slimcv.errors import SourceError

        if self.module is None:
            raise SourceError(f"{what} needs a PyTorch model; {self.source} is an ONNX file")
        return self.module
