from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from slimcv.data import calibration_subset, load_data
from slimcv.errors import DataError
from slimcv.sources import Preprocess


def test_digits_is_real_split_and_seeded():
    data = load_data("digits", image_size=32)
    assert len(data.train) + len(data.val) == 1797
    assert data.classes == [str(d) for d in range(10)]
    image, label = data.val[0]
    assert image.shape == (3, 32, 32) and 0 <= label < 10
    again = load_data("digits", image_size=32)
    assert again.val.indices == data.val.indices
    other = load_data("digits", image_size=32, seed=1)
    assert other.val.indices != data.val.indices
    assert not set(data.train.indices) & set(data.val.indices)


def test_digits_uses_the_models_normalisation():
    pre = Preprocess(image_size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    image, _ = load_data("digits", pre).train[0]
    assert image.shape == (3, 16, 16)
    assert image.min() >= -1.0 - 1e-6 and image.max() <= 1.0 + 1e-6


def test_synthetic_options_and_errors():
    data = load_data("synthetic:classes=4,samples=40", image_size=8)
    assert data.num_classes == 4 and len(data.train) + len(data.val) == 40
    with pytest.raises(DataError, match="unknown options"):
        load_data("synthetic:colour=red")
    with pytest.raises(DataError, match="malformed data option"):
        load_data("synthetic:classes")


def _write_images(root: Path, classes: int, per_class: int) -> None:
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"c{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")


def test_image_folder_split_by_seed(tmp_path: Path):
    _write_images(tmp_path, classes=3, per_class=5)
    data = load_data(str(tmp_path), image_size=16)
    assert data.classes == ["c0", "c1", "c2"]
    assert len(data.train) + len(data.val) == 15
    image, _ = data.val[0]
    assert image.shape == (3, 16, 16)


def test_image_folder_with_train_and_val(tmp_path: Path):
    _write_images(tmp_path / "train", classes=2, per_class=3)
    _write_images(tmp_path / "val", classes=2, per_class=2)
    data = load_data(str(tmp_path), image_size=16)
    assert (len(data.train), len(data.val)) == (6, 4)


def test_empty_and_missing_folders(tmp_path: Path):
    with pytest.raises(DataError, match="no images found"):
        load_data(str(tmp_path))
    with pytest.raises(DataError, match="not found"):
        load_data(str(tmp_path / "absent"))
    with pytest.raises(DataError, match="unknown data source"):
        load_data("imagenet")


def test_calibration_subset_is_seeded():
    data = load_data("digits", image_size=8)
    a = calibration_subset(data.train, 50, seed=3)
    b = calibration_subset(data.train, 50, seed=3)
    assert len(a) == 50 and a.indices == b.indices
    assert torch.equal(a[0][0], b[0][0])
    with pytest.raises(DataError):
        calibration_subset(data.train, 0)
