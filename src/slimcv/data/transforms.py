"""Image transforms shared by data loading and ``predict``, built from a model's Preprocess."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, UnidentifiedImageError
from torchvision import transforms as T

from slimcv.errors import DataError
from slimcv.sources.model import Preprocess

_INTERPOLATION = {
    "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC,
}


def eval_transform(pre: Preprocess) -> T.Compose:
    """Resize to ``image_size / crop_pct``, centre-crop ``image_size``, normalise."""
    return T.Compose(
        [
            T.Resize(pre.resize_size, interpolation=_INTERPOLATION[pre.interpolation]),
            T.CenterCrop(pre.image_size),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def train_transform(pre: Preprocess) -> T.Compose:
    """Mild augmentation: random resized crop (80-100% of the area) and horizontal flip."""
    return T.Compose(
        [
            T.RandomResizedCrop(
                pre.image_size, scale=(0.8, 1.0), interpolation=_INTERPOLATION[pre.interpolation]
            ),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(pre.mean, pre.std),
        ]
    )


def load_image(path: str | Path) -> Image.Image:
    """Opens an image as RGB, with a one-line error for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path} is not a readable image: {exc}") from None


def image_tensor(path: str | Path, pre: Preprocess) -> torch.Tensor:
    """One image file as the model's normalised CHW input."""
    return eval_transform(pre)(load_image(path))
