"""Seeded random crops of the natural photographs that ship inside scikit-image.

Calibrating INT8 and checking that it still agrees with FP32 need *real* images: random noise
has none of the activation statistics (large flat regions, strong edges, saturated colour) that
decide where quantization ranges clip. scikit-image bundles a handful of photographs in its
wheel, so they are available offline on every machine that has the package. They carry no
labels, so they serve calibration and top-1 agreement with a reference model, never accuracy.

Each crop is a random square-ish window (20-100% of the shorter side, aspect ratio jittered
between 3:4 and 4:3), flipped horizontally half the time, resized to the model's input size
and normalised with the model's mean and std. The crop *parameters* are drawn up front from a
seeded generator and the pixels are cut on access, so a data set of hundreds of crops costs
almost no memory and the same seed always gives the same images.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

from slimcv.errors import DataError
from slimcv.sources.model import Preprocess

#: Photographs bundled in scikit-image's wheel (no download). Colour ones first; the greyscale
#: ones (camera, coins, moon, clock, textures) add variety and are repeated to 3 channels.
#: Documents, logos, synthetic patterns (colorwheel, checkerboard) and the files scikit-image
#: fetches from the network (lily, eagle, ...) are left out.
PHOTOS = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "motorcycle",
    "hubble_deep_field",
    "immunohistochemistry",
    "retina",
    "camera",
    "coins",
    "moon",
    "clock",
    "grass",
    "gravel",
    "brick",
)

#: Crop side as a fraction of the photo's shorter side, and the aspect-ratio range.
SCALE = (0.2, 1.0)
ASPECT = (3 / 4, 4 / 3)

_INTERPOLATION = {"bilinear": InterpolationMode.BILINEAR, "bicubic": InterpolationMode.BICUBIC}


@dataclass(frozen=True)
class Crop:
    """Where one crop comes from: photo index, window (pixels) and whether it is mirrored."""

    photo: int
    top: int
    left: int
    height: int
    width: int
    flip: bool


@functools.cache
def load_photo(name: str) -> torch.Tensor:
    """One bundled photo as a uint8 ``(3, H, W)`` tensor (read once per process).

    Raises:
        DataError: scikit-image is missing, or its bundled file cannot be read.
    """
    try:
        from skimage import data
        from skimage.util import img_as_ubyte
    except ImportError:
        raise DataError(
            "the photos data source needs scikit-image: pip install scikit-image"
        ) from None
    try:
        pixels = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    except Exception as exc:  # noqa: BLE001 - file or decoder errors of many kinds
        raise DataError(f"cannot read scikit-image's bundled photo {name!r}: {exc}") from None
    pixels = img_as_ubyte(pixels)
    if pixels.ndim == 2:
        pixels = np.repeat(pixels[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(pixels[..., :3])).permute(2, 0, 1).contiguous()


def sample_crops(sizes: list[tuple[int, int]], count: int, rng: np.random.Generator) -> list[Crop]:
    """Draws ``count`` crop windows over photos of the given ``(height, width)``.

    Every photo is equally likely, whatever its size, so large photos (retina, Hubble) do not
    crowd out the everyday ones.
    """
    crops = []
    for _ in range(count):
        photo = int(rng.integers(len(sizes)))
        height, width = sizes[photo]
        side = rng.uniform(*SCALE) * min(height, width)
        aspect = math.exp(rng.uniform(math.log(ASPECT[0]), math.log(ASPECT[1])))
        h = max(1, min(height, round(side / math.sqrt(aspect))))
        w = max(1, min(width, round(side * math.sqrt(aspect))))
        top = int(rng.integers(height - h + 1))
        left = int(rng.integers(width - w + 1))
        crops.append(Crop(photo, top, left, h, w, bool(rng.random() < 0.5)))
    return crops


class PhotoCrops(Dataset):
    """Crops of bundled photos as the model's normalised CHW input, with label -1.

    Attributes:
        names: the photos, indexed by :attr:`Crop.photo`.
        crops: the crop windows, one per item.
    """

    def __init__(self, names: tuple[str, ...], crops: list[Crop], pre: Preprocess) -> None:
        self.names = names
        self.crops = crops
        self.size = pre.image_size
        self.interpolation = _INTERPOLATION[pre.interpolation]
        self.mean = torch.tensor(pre.mean).view(3, 1, 1)
        self.std = torch.tensor(pre.std).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.crops)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        crop = self.crops[index]
        photo = load_photo(self.names[crop.photo])
        window = photo[:, crop.top : crop.top + crop.height, crop.left : crop.left + crop.width]
        image = TF.resize(
            window.float() / 255.0,
            [self.size, self.size],
            interpolation=self.interpolation,
            antialias=True,
        )
        # Bicubic overshoots; clamping matches what an 8-bit image file would hold.
        image = image.clamp_(0.0, 1.0)
        if crop.flip:
            image = image.flip(-1)
        return (image - self.mean) / self.std, -1


def photo_splits(
    count: int, val_fraction: float, seed: int, pre: Preprocess
) -> tuple[PhotoCrops, PhotoCrops]:
    """Calibration (train) and held-out (val) crops, ``count`` in all.

    The two splits are drawn from independent random streams of the same seed, so they share
    no crop, and changing ``count`` or ``val_fraction`` keeps each split's first crops.

    Raises:
        DataError: fewer than 2 crops, or a split would be empty.
    """
    n_val = round(count * val_fraction)
    n_train = count - n_val
    if n_val < 1 or n_train < 1:
        raise DataError(
            f"photos: {count} crops with val_fraction {val_fraction} leaves a split empty; "
            "ask for more crops"
        )
    sizes = [tuple(load_photo(name).shape[1:]) for name in PHOTOS]
    train = sample_crops(sizes, n_train, np.random.default_rng([seed, 0]))
    val = sample_crops(sizes, n_val, np.random.default_rng([seed, 1]))
    return PhotoCrops(PHOTOS, train, pre), PhotoCrops(PHOTOS, val, pre)
