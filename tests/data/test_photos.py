"""The ``photos`` source: real, seeded, unlabeled crops with disjoint splits."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimcv.data import load_data
from slimcv.errors import DataError
from slimcv.measure.accuracy import evaluate
from slimcv.sources import LoadedModel, Preprocess

pytest.importorskip("skimage")

HALF = Preprocess(image_size=32, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


def _pixels(dataset, count: int) -> torch.Tensor:
    return torch.stack([dataset[i][0] for i in range(count)])


def test_photos_are_seeded_and_split_by_val_fraction():
    data = load_data("photos:crops=20", HALF, val_fraction=0.25)
    assert (len(data.train), len(data.val)) == (15, 5)
    again = load_data("photos:crops=20", HALF, val_fraction=0.25)
    assert data.train.crops == again.train.crops and data.val.crops == again.val.crops
    assert torch.equal(_pixels(data.val, 3), _pixels(again.val, 3))
    other = load_data("photos:crops=20,seed=1", HALF, val_fraction=0.25)
    assert other.train.crops != data.train.crops
    # The seed option and the loader's seed name the same stream.
    assert load_data("photos:crops=20", HALF, seed=1, val_fraction=0.25).val.crops == (
        other.val.crops
    )


def test_photos_splits_share_no_crop():
    data = load_data("photos:crops=60", HALF)
    assert not set(data.train.crops) & set(data.val.crops)
    train, val = _pixels(data.train, len(data.train)), _pixels(data.val, len(data.val))
    distances = torch.cdist(val.flatten(1), train.flatten(1))
    assert distances.min() > 1.0
    # Crops cover several photos, not one.
    assert len({crop.photo for crop in data.train.crops}) >= 8


def test_photos_shape_normalisation_and_no_labels():
    data = load_data("photos:crops=10", HALF)
    image, label = data.train[0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert label == -1 and not data.labeled and data.classes == []
    batch = _pixels(data.train, len(data.train))
    assert batch.min() >= -1.0 - 1e-6 and batch.max() <= 1.0 + 1e-6
    assert batch.std() > 0.2  # real image content, not a flat fill
    imagenet = load_data("photos:crops=4", Preprocess(image_size=24)).val[0][0]
    assert imagenet.shape == (3, 24, 24) and imagenet.min() < -0.5  # ImageNet mean/std applied


def test_photos_bad_options():
    with pytest.raises(DataError, match="unknown options"):
        load_data("photos:size=3")
    with pytest.raises(DataError, match="integers"):
        load_data("photos:crops=many")
    with pytest.raises(DataError, match="at least 2 crops"):
        load_data("photos:crops=1")


def test_evaluate_refuses_unlabeled_data():
    model = LoadedModel(
        "tiny",
        num_classes=3,
        preprocess=HALF,
        module=nn.Sequential(nn.Flatten(), nn.LazyLinear(3)),
    )
    with pytest.raises(DataError, match="photos has no labels.*agreement with a reference"):
        evaluate(model, load_data("photos:crops=4", HALF), progress=False)
