"""Quantization-aware training wins back what post-training quantization loses."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from slimcv.data import load_data
from slimcv.errors import DataError
from slimcv.quant import QuantizeConfig, quantize
from slimcv.sources.model import LoadedModel, Preprocess
from slimcv.training.loop import TrainConfig, fit, seed_everything


def _small_cnn() -> nn.Module:
    def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU()]

    return nn.Sequential(
        *block(3, 16, 1), *block(16, 32, 2), *block(32, 64, 2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10),
    )  # fmt: skip


@pytest.fixture(scope="module")
def digits_cnn():
    seed_everything(0)
    pre = Preprocess(image_size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    data = load_data("digits", pre)
    module = _small_cnn()
    fit(module, data, TrainConfig(epochs=8, lr=5e-3), progress=False)
    return LoadedModel(source="small-cnn", num_classes=10, preprocess=pre, module=module), data


def test_qat_recovers_what_3_bit_ptq_loses(digits_cnn, tmp_path):
    model, data = digits_cnn
    ptq = quantize(model, QuantizeConfig(weight_bits=3), data=data, out_dir=tmp_path / "ptq")
    qat = quantize(
        model,
        QuantizeConfig(weight_bits=3, method="qat", qat_epochs=5, qat_lr=2e-3),
        data=data,
        out_dir=tmp_path / "qat",
    )
    assert ptq.drop > 2.0
    assert qat.drop <= 1.0
    assert qat.int8_checks and all(c["passed"] for c in qat.int8_checks)


def test_qat_needs_labels(digits_cnn, tmp_path):
    model, _ = digits_cnn
    images = torch.randn(8, 3, 16, 16)
    with pytest.raises(DataError, match="QAT trains on labels"):
        quantize(model, QuantizeConfig(method="qat"), data=images, out_dir=tmp_path / "q")
    assert not (tmp_path / "q").exists()
