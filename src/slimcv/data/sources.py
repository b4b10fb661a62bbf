"""Data sources: ``digits``, ``synthetic``, ``photos`` and ImageFolder directories.

=====================  =====================================================================
``digits``             scikit-learn's 1,797 real 8x8 handwritten digits, resized, 3 channels
``synthetic``          seeded random images whose class is learnable (for tests);
                       options: ``synthetic:classes=10,samples=512``
``photos``             seeded random crops of the colour and greyscale photographs bundled
                       with scikit-image, *unlabeled* (for INT8 calibration and top-1
                       agreement with a reference model); options: ``photos:crops=300,seed=0``
``path/``              an ImageFolder: ``path/train`` and ``path/val`` with one folder per
                       class, or class folders directly under ``path`` split by seed
=====================  =====================================================================

All splits are fixed by a seed, stratified by class, so val never leaks into training; the
``photos`` splits are drawn from separate random streams, so no crop is in both.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset

from slimcv.data.base import DataBundle
from slimcv.errors import DataError
from slimcv.registry import Registry
from slimcv.sources.model import Preprocess

DATA_HELP = (
    "digits, synthetic[:classes=N,samples=M], photos[:crops=N,seed=S] (unlabeled), "
    "or an image folder path"
)
DataFactory = Callable[[dict[str, str], Preprocess, int, float], DataBundle]
#: Named data sources (paths are handled apart).
DATA_SOURCES: Registry[DataFactory] = Registry("data source")


def stratified_split(
    labels: np.ndarray, val_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices of a seeded split that keeps each class's share in both parts."""
    from sklearn.model_selection import train_test_split

    indices = np.arange(len(labels))
    counts = np.bincount(labels)
    stratify = labels if counts[counts > 0].min() >= 2 else None
    train, val = train_test_split(
        indices, test_size=val_fraction, random_state=seed, stratify=stratify
    )
    return np.sort(train), np.sort(val)


class TensorImages(Dataset):
    """Small single-channel images kept in memory, resized and normalised on access.

    Resizing per item keeps memory at the size of the raw images (1,797 x 8 x 8 for digits)
    whatever the requested ``image_size``.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, pre: Preprocess) -> None:
        self.images = images  # (N, 1, h, w) in [0, 1]
        self.labels = labels
        self.size = pre.image_size
        self.mean = torch.tensor(pre.mean).view(3, 1, 1)
        self.std = torch.tensor(pre.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        img = self.images[index : index + 1]
        if img.shape[-1] != self.size:
            img = F.interpolate(
                img, size=(self.size, self.size), mode="bilinear", align_corners=False
            )
        img = img[0].expand(3, -1, -1)
        return (img - self.mean) / self.std, int(self.labels[index])


@DATA_SOURCES.register("digits")
def digits(options: dict[str, str], pre: Preprocess, seed: int, val_fraction: float) -> DataBundle:
    """scikit-learn's handwritten digits (bundled with the package, no download)."""
    from sklearn.datasets import load_digits

    if options:
        raise DataError(f"digits takes no options, got {', '.join(options)}")
    raw = load_digits()
    images = torch.from_numpy(raw.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = raw.target.astype(np.int64)
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    dataset = TensorImages(images, torch.from_numpy(labels), pre)
    return DataBundle(
        name="digits",
        train=Subset(dataset, train_idx.tolist()),
        val=Subset(dataset, val_idx.tolist()),
        classes=[str(d) for d in range(10)],
        image_size=pre.image_size,
    )


@DATA_SOURCES.register("synthetic")
def synthetic(
    options: dict[str, str], pre: Preprocess, seed: int, val_fraction: float
) -> DataBundle:
    """Seeded noise images with a class-dependent bright patch, so models can learn them."""
    allowed = {"classes", "samples"}
    unknown = set(options) - allowed
    if unknown:
        raise DataError(f"synthetic: unknown options {sorted(unknown)}; known: classes, samples")
    try:
        classes = int(options.get("classes", 10))
        samples = int(options.get("samples", 512))
    except ValueError:
        raise DataError("synthetic: classes and samples must be integers") from None
    if classes < 2 or samples < 2 * classes:
        raise DataError("synthetic needs at least 2 classes and 2 samples per class")
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(samples) % classes
    base = 16
    images = torch.rand(samples, 1, base, base, generator=generator) * 0.3
    for cls in range(classes):
        row, col = divmod(cls, 4)
        r0, c0 = (row * 4) % base, (col * 4) % base
        images[labels == cls, :, r0 : r0 + 4, c0 : c0 + 4] += 0.7
    train_idx, val_idx = stratified_split(labels.numpy(), val_fraction, seed)
    dataset = TensorImages(images.clamp(0, 1), labels, pre)
    return DataBundle(
        name="synthetic",
        train=Subset(dataset, train_idx.tolist()),
        val=Subset(dataset, val_idx.tolist()),
        classes=[f"class{i}" for i in range(classes)],
        image_size=pre.image_size,
    )


@DATA_SOURCES.register("photos")
def photos(options: dict[str, str], pre: Preprocess, seed: int, val_fraction: float) -> DataBundle:
    """Unlabeled crops of scikit-image's bundled photos: train = calibration, val = held out.

    ``seed`` in the options overrides the loader's seed, so a calibration set can be named in
    one string (``photos:crops=100,seed=1``).
    """
    from slimcv.data.photos import photo_splits

    unknown = set(options) - {"crops", "seed"}
    if unknown:
        raise DataError(f"photos: unknown options {sorted(unknown)}; known: crops, seed")
    try:
        crops = int(options.get("crops", 300))
        seed = int(options.get("seed", seed))
    except ValueError:
        raise DataError("photos: crops and seed must be integers") from None
    if crops < 2:
        raise DataError(f"photos needs at least 2 crops (one per split), got {crops}")
    train, val = photo_splits(crops, val_fraction, seed, pre)
    return DataBundle(
        name="photos", train=train, val=val, classes=[], image_size=pre.image_size, labeled=False
    )


def image_folder(path: Path, pre: Preprocess, seed: int, val_fraction: float) -> DataBundle:
    """``path/train`` + ``path/val``, or class folders under ``path`` split by seed."""
    from torchvision.datasets import ImageFolder

    from slimcv.data.transforms import eval_transform, train_transform

    def folder(root: Path, transform: Callable) -> ImageFolder:
        try:
            return ImageFolder(str(root), transform=transform)
        except (FileNotFoundError, RuntimeError) as exc:
            raise DataError(
                f"no images found in {root} (expected one sub-folder per class holding "
                f".jpg/.png files): {str(exc).splitlines()[0]}"
            ) from None

    if (path / "train").is_dir() and (path / "val").is_dir():
        train = folder(path / "train", train_transform(pre))
        val = folder(path / "val", eval_transform(pre))
        if train.classes != val.classes:
            raise DataError(f"{path}: train and val have different class folders")
        return DataBundle(str(path), train, val, list(train.classes), pre.image_size)
    train_view = folder(path, train_transform(pre))
    val_view = folder(path, eval_transform(pre))
    labels = np.asarray(train_view.targets)
    if len(labels) < 2:
        raise DataError(f"{path} holds fewer than 2 images; cannot split into train and val")
    train_idx, val_idx = stratified_split(labels, val_fraction, seed)
    return DataBundle(
        str(path),
        Subset(train_view, train_idx.tolist()),
        Subset(val_view, val_idx.tolist()),
        list(train_view.classes),
        pre.image_size,
    )


def parse_data_source(source: str) -> tuple[str, dict[str, str]]:
    """Splits ``name:key=value,...`` into the name and its options."""
    name, _, rest = source.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise DataError(f"malformed data option {item!r} in {source!r}; expected key=value")
        options[key.strip()] = value.strip()
    return name, options


def load_data(
    source: str,
    preprocess: Preprocess | None = None,
    *,
    image_size: int | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> DataBundle:
    """Loads a data source with the model's preprocessing.

    Args:
        source: ``digits``, ``synthetic[:...]``, ``photos[:...]`` or an ImageFolder path.
        preprocess: the model's preprocessing (size, mean, std); ImageNet defaults otherwise.
        image_size: overrides ``preprocess.image_size``.
        seed: fixes the train/val split.
        val_fraction: share of the data held out for validation.

    Raises:
        DataError: unknown source, missing or empty folder, bad options.
    """
    pre = preprocess or Preprocess()
    if image_size is not None:
        pre = Preprocess(image_size, pre.crop_pct, pre.mean, pre.std, pre.interpolation)
    if not 0 < val_fraction < 1:
        raise DataError(f"val_fraction must be in (0, 1), got {val_fraction}")
    path = Path(source)
    if path.is_dir():
        return image_folder(path, pre, seed, val_fraction)
    name, options = parse_data_source(source.strip())
    if name in DATA_SOURCES:
        return DATA_SOURCES.get(name)(options, pre, seed, val_fraction)
    if "/" in source or path.suffix or source.startswith("."):
        raise DataError(f"data folder not found: {source}")
    raise DataError(f"unknown data source {source!r}; expected {DATA_HELP}")


def calibration_subset(dataset: Dataset, size: int, seed: int = 0) -> Subset:
    """A seeded random subset of ``size`` items (e.g. for INT8 calibration)."""
    total = len(dataset)  # type: ignore[arg-type]
    if size < 1:
        raise DataError(f"calibration size must be at least 1, got {size}")
    generator = np.random.default_rng(seed)
    picked = generator.choice(total, size=min(size, total), replace=False)
    return Subset(dataset, sorted(picked.tolist()))
