"""top1_agreement counts argmax matches exactly, across batches."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from slimcv.errors import DataError
from slimcv.measure import top1_agreement


def _data() -> TensorDataset:
    # 8 "images" whose logits are the rows themselves; rows 0, 3, 5 peak at class 0.
    rows = torch.rand(8, 4, generator=torch.Generator().manual_seed(0))
    rows[[0, 3, 5], 0] = 5.0
    rows[[1, 2, 4, 6, 7], 1] = 5.0
    return TensorDataset(rows, torch.full((8,), -1))


def test_identical_models_agree_fully():
    assert top1_agreement(lambda x: x, lambda x: x.clone(), _data(), batch_size=3) == 1.0


def test_agreement_counts_flipped_images():
    suppress_class0 = torch.tensor([-1.0, 1.0, 1.0, 1.0])
    value = top1_agreement(lambda x: x, lambda x: x * suppress_class0, _data(), batch_size=3)
    assert value == pytest.approx(5 / 8)


def test_agreement_errors():
    with pytest.raises(DataError, match="empty"):
        top1_agreement(lambda x: x, lambda x: x, TensorDataset(torch.zeros(0, 4)))
    with pytest.raises(DataError, match="output shape"):
        top1_agreement(lambda x: x, lambda x: x[:, :2], _data())
