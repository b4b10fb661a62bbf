"""Data sources: digits, synthetic, ImageFolder; seeded splits; calibration subsets."""

from slimcv.data.base import DataBundle
from slimcv.data.sources import DATA_HELP, DATA_SOURCES, calibration_subset, load_data
from slimcv.data.transforms import eval_transform, image_tensor, load_image, train_transform

__all__ = [
    "DATA_HELP",
    "DATA_SOURCES",
    "DataBundle",
    "calibration_subset",
    "eval_transform",
    "image_tensor",
    "load_data",
    "load_image",
    "train_transform",
]
