"""Top-1 agreement: how often a model picks the same class as a reference model.

Where images carry no labels (the ``photos`` source), accuracy cannot be measured, but the
question a compressed model has to answer is still well posed: does it decide like the model
it replaces? Agreement with the FP32 reference is that figure, and it is stricter than an
accuracy drop, since it counts a flip between two wrong classes too.
"""

from __future__ import annotations

from torch.utils.data import DataLoader, Dataset

from slimcv.errors import DataError
from slimcv.runtimes.runner import LogitsFn


def top1_agreement(
    logits_fn_a: LogitsFn, logits_fn_b: LogitsFn, dataset: Dataset, batch_size: int = 64
) -> float:
    """Fraction (0 to 1) of the images in ``dataset`` where both models' argmax agree.

    Args:
        logits_fn_a: one model, as a function from an NCHW batch to logits
            (:func:`slimcv.runtimes.runner.logits_fn` makes one for any backend).
        logits_fn_b: the other model, usually the FP32 reference.
        dataset: items ``(image, label)`` as every data source yields; labels are ignored.
        batch_size: images per call of each model.

    Raises:
        DataError: the dataset is empty, or the two models output different class counts.
    """
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise DataError("cannot measure agreement on an empty data set")
    same = total = 0
    for images, *_ in DataLoader(dataset, batch_size=batch_size):
        a, b = logits_fn_a(images), logits_fn_b(images)
        if a.shape != b.shape:
            raise DataError(
                f"models disagree on output shape: {tuple(a.shape)} vs {tuple(b.shape)}"
            )
        same += int((a.argmax(1) == b.argmax(1)).sum())
        total += images.shape[0]
    return same / total
