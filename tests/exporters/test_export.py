import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from conftest import randomize_batchnorm
from slimcv.errors import ExportError, SlimcvError
from slimcv.exporters import (
    ExportConfig,
    count_batchnorm,
    export,
    export_onnx,
    fold_batchnorm,
)
from slimcv.exporters.verify import check_file, reference_inputs, torch_outputs
from slimcv.sources import load_model


@pytest.mark.parametrize(
    "name", ["resnet18", "mobilenet_v2", "efficientnet_b0", "mobilenet_v3_small"]
)
def test_export_matches_pytorch_and_has_no_batchnorm(name: str, tmp_path: Path):
    model = load_model(f"torchvision:{name}")
    randomize_batchnorm(model.module)
    result = export(model, tmp_path / name, ExportConfig(verify_batch=2))
    assert result.graph["batchnorm_nodes"] == 0
    proto = onnx.load(str(tmp_path / name / "model.onnx"))
    assert not [n for n in proto.graph.node if n.op_type == "BatchNormalization"]
    assert result.graph["opset"] >= 17
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param  # dynamic batch
    assert {c.format for c in result.checks} == {"onnx", "openvino"}
    for check in result.checks:
        # the logits are O(1) after randomize_batchnorm, so 1e-4 is a real bound
        assert check.max_abs_diff <= 1e-4, check
        assert check.top1_agreement == 1.0
    manifest = json.loads((tmp_path / name / "slimcv.json").read_text())
    assert manifest["exports"] == {"onnx": "model.onnx", "openvino": "openvino/model.xml"}


def test_fold_batchnorm_keeps_the_function(small_model):
    module = small_model.module.eval()
    folded = fold_batchnorm(module)
    assert count_batchnorm(module) > 0 and count_batchnorm(folded) == 0
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(module(x), folded(x), atol=1e-5)
    assert count_batchnorm(module) > 0  # the input module is left as it was


def test_verification_catches_a_wrong_file(small_model, tmp_path: Path):
    """A file that computes something else must fail the check, not pass silently."""
    export_onnx(small_model.module, tmp_path / "a.onnx", small_model.input_shape(1))
    other = load_model("torchvision:mobilenet_v3_small", num_classes=10, image_size=64)
    randomize_batchnorm(other.module, seed=1)
    inputs = reference_inputs(small_model, 2)
    reference = torch_outputs(other, inputs)
    check = check_file(
        small_model, tmp_path / "a.onnx", "onnx", "onnxruntime", inputs, reference, 1e-4
    )
    assert not check.passed and check.max_abs_diff > 1e-3


def test_export_refuses_mismatch(small_model, tmp_path: Path, monkeypatch):
    import slimcv.exporters.api as api

    def bad_outputs(model, inputs):
        return np.zeros((inputs.shape[0], model.num_classes), np.float32) + 5.0

    monkeypatch.setattr(api, "torch_outputs", bad_outputs)
    with pytest.raises(ExportError, match="does not match PyTorch"):
        export(small_model, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_export_config_validation():
    with pytest.raises(SlimcvError, match="unknown export format"):
        ExportConfig(formats=("tflite",))
    with pytest.raises(SlimcvError, match="opset"):
        ExportConfig(opset=11)
