"""What every data source returns: train/val datasets plus the facts needed to use them."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset


@dataclass
class DataBundle:
    """A classification data set split into train and val.

    Attributes:
        name: the data source string it came from.
        train: training split; items are ``(CHW float tensor, int label)``.
        val: validation split, never used for training.
        classes: class names, index-aligned with labels.
        image_size: side of the square images the datasets produce.
    """

    name: str
    train: Dataset
    val: Dataset
    classes: list[str]
    image_size: int

    @property
    def num_classes(self) -> int:
        return len(self.classes)
