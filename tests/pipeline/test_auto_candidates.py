"""Auto mode's candidates: mixed precision is tried exactly when full INT8 leaves the bound."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest

import slimcv
from slimcv.pipeline.auto.candidates import LevelJob, _int8_variants
from slimcv.pipeline.auto.config import AutoConfig


@dataclass
class _Quantized:
    float_score: float
    quant_score: float
    onnx_bytes: int = 100
    float_layers: dict = field(default_factory=dict)


@dataclass
class _Profile:
    params: int = 10
    macs: int = 1000


@pytest.mark.parametrize(
    ("int8_top1", "expect_mixed"),
    [(98.5, False), (97.0, True)],  # floor: 99.0 - 1.0 = 98.0
)
def test_mixed_precision_only_when_full_int8_falls_below_the_floor(
    monkeypatch, tmp_path, int8_top1, expect_mixed
) -> None:
    calls: list = []

    def fake_quantize(model, config, *, data, out_dir):
        calls.append(config)
        if config.max_drop is None:
            return _Quantized(99.0, int8_top1)
        return _Quantized(99.0, 98.4, float_layers={"layer1.0.conv1": "mixed precision"})

    monkeypatch.setattr(slimcv, "quantize", fake_quantize)
    job = LevelJob("base", "digits", AutoConfig(max_drop=1.0), None, 99.0, str(tmp_path), 1)
    variants = _int8_variants(job, 0.5, Path("m"), tmp_path, "keep0.50", _Profile())
    names = [v.name for v in variants]
    if expect_mixed:
        assert names == ["keep0.50-int8", "keep0.50-int8-mixed"]
        # The mixed quantizer may spend what is left of the bound: float 99.0 - floor 98.0.
        assert calls[1].max_drop == pytest.approx(1.0)
        assert variants[1].float_layers == ["layer1.0.conv1"] and variants[1].top1 == 98.4
    else:
        assert names == ["keep0.50-int8"] and len(calls) == 1
