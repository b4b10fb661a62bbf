"""Top-k classes for image files, with the model's own preprocessing (``slimcv.predict``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from slimcv.data.transforms import image_tensor
from slimcv.errors import SlimcvError
from slimcv.runtimes.runner import logits_fn
from slimcv.sources.model import LoadedModel


@dataclass
class Prediction:
    """The top classes for one image: ``{index, label, prob}`` each, most likely first."""

    image: str
    top: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {"image": self.image, "predictions": self.top}


def predict(model: LoadedModel, images: list[str | Path], top_k: int = 5) -> list[Prediction]:
    """Classifies image files (resize, centre crop and normalise as the model expects).

    Raises:
        DataError: an image is missing or unreadable (checked before any model runs).
    """
    if top_k < 1:
        raise SlimcvError(f"top-k must be at least 1, got {top_k}")
    if not images:
        raise SlimcvError("no images given")
    batch = torch.stack([image_tensor(path, model.preprocess) for path in images])
    run = logits_fn(model)
    probs = run(batch).float().softmax(dim=1)
    k = min(top_k, probs.shape[1])
    values, indices = probs.topk(k, dim=1)
    return [
        Prediction(
            image=str(path),
            top=[
                {"index": int(i), "label": model.label(int(i)), "prob": float(p)}
                for p, i in zip(row_p, row_i, strict=True)
            ],
        )
        for path, row_p, row_i in zip(images, values, indices, strict=True)
    ]
