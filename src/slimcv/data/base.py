"""What every data source returns: train/val datasets plus the facts needed to use them."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from slimcv.errors import DataError


@dataclass
class DataBundle:
    """A classification data set split into train and val.

    Attributes:
        name: the data source string it came from.
        train: training split; items are ``(CHW float tensor, int label)``.
        val: validation split, never used for training.
        classes: class names, index-aligned with labels.
        image_size: side of the square images the datasets produce.
        labeled: whether the labels are real. Unlabeled sources (``photos``) give every image
            the label -1 and no classes; they serve calibration and agreement with a
            reference model, and anything that needs labels refuses them via
            :meth:`require_labels` instead of reporting a meaningless accuracy.
    """

    name: str
    train: Dataset
    val: Dataset
    classes: list[str]
    image_size: int
    labeled: bool = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def require_labels(self, what: str) -> None:
        """Raises :class:`DataError` if ``what`` (e.g. "top-1") needs labels this data lacks."""
        if not self.labeled:
            raise DataError(
                f"{self.name} has no labels, so {what} cannot be computed; "
                "use agreement with a reference model (slimcv.measure.top1_agreement)"
            )
