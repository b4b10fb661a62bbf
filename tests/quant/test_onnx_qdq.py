"""The QDQ file: int8 weights, int32 biases, runtimes on integer kernels, same numbers."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
import torchvision
from onnx import numpy_helper

from conftest import randomize_batchnorm
from slimcv.errors import ExportError
from slimcv.exporters.onnx import export_onnx
from slimcv.quant.calibrate import calibrate
from slimcv.quant.int8_check import check_int8_execution, require_int8_execution
from slimcv.quant.onnx_qdq import export_qdq_onnx
from slimcv.quant.prepare import PrepareConfig, prepare
from slimcv.quant.spec import QuantSpec

SHAPE = (1, 3, 64, 64)


def _simulated(arch: str = "resnet18", skip: tuple[str, ...] = (), weight_bits: int = 8):
    torch.manual_seed(0)
    model = randomize_batchnorm(getattr(torchvision.models, arch)(num_classes=10).eval())
    spec = QuantSpec(bits=weight_bits, symmetric=True, per_channel=True, narrow=True)
    qmodel = prepare(model, PrepareConfig(weight=spec, skip=skip))
    calibrate(qmodel, [torch.randn(8, *SHAPE[1:])])
    return model, qmodel


@pytest.fixture(scope="module")
def resnet_files(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("qdq")
    model, qmodel = _simulated()
    export_onnx(model, tmp / "float.onnx", SHAPE)
    facts = export_qdq_onnx(qmodel, tmp / "int8.onnx", SHAPE)
    return model, qmodel, tmp, facts


def test_weights_are_int8_and_biases_int32_and_file_is_a_quarter(resnet_files):
    _, _, tmp, facts = resnet_files
    assert facts["quantized_weights"] == 21 and facts["quantized_biases"] == 21
    proto = onnx.load(str(tmp / "int8.onnx"))
    arrays = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    assert sum(a.dtype == np.int8 and a.ndim >= 2 for a in arrays) == 21  # zero points aside
    assert sum(a.dtype == np.int32 and a.size > 1 for a in arrays) >= 20
    big_float = [
        t.name
        for t in proto.graph.initializer
        if numpy_helper.to_array(t).dtype == np.float32 and numpy_helper.to_array(t).size > 1000
    ]
    assert not big_float
    ratio = (tmp / "int8.onnx").stat().st_size / (tmp / "float.onnx").stat().st_size
    assert ratio <= 0.30


def test_onnxruntime_and_openvino_compute_what_the_simulation_computes(resnet_files):
    import onnxruntime as ort
    import openvino as ov

    _, qmodel, tmp, _ = resnet_files
    x = torch.randn(4, *SHAPE[1:])
    with torch.no_grad():
        sim = qmodel.module(x).numpy()
    session = ort.InferenceSession(str(tmp / "int8.onnx"), providers=["CPUExecutionProvider"])
    ort_out = session.run(None, {"input": x.numpy()})[0]
    compiled = ov.Core().compile_model(
        str(tmp / "int8.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    ov_out = compiled(x.numpy())[0]
    scale = np.abs(sim).max()
    # integer kernels requantize in their own order: a few output steps apart at most
    assert np.abs(ort_out - sim).max() < 0.05 * scale
    assert np.abs(ov_out - sim).max() < 0.05 * scale
    assert (ort_out.argmax(1) == sim.argmax(1)).mean() >= 0.75  # random model: near-ties


def test_every_quantized_layer_runs_on_integer_kernels(resnet_files):
    _, _, tmp, _ = resnet_files
    checks = require_int8_execution(
        tmp / "int8.onnx", ["onnxruntime", "openvino"], expected_integer=21, expected_float=0
    )
    assert all(c.integer_layers == 21 and c.float_layers == 0 for c in checks)
    assert checks[0].ops.get("QLinearConv") == 20


def test_a_float_fallback_is_caught(resnet_files):
    _, _, tmp, _ = resnet_files
    # the float file claims nothing: as a "quantized" model it runs every layer in float
    check = check_int8_execution(
        tmp / "float.onnx", "onnxruntime", expected_integer=21, expected_float=0
    )
    assert not check.passed and check.float_layers == 21
    with pytest.raises(ExportError, match="silently run in float"):
        require_int8_execution(
            tmp / "float.onnx", ["onnxruntime"], expected_integer=21, expected_float=0
        )


@pytest.mark.parametrize(
    "skip",
    [
        ("layer4.1.conv2",),  # its output feeds a residual add
        ("layer1.0.conv1",),  # between two quantized layers: ReLU, then a quantized conv
        ("conv1", "fc"),  # the stem, and a Gemm
    ],
)
def test_layers_kept_float_are_float_in_the_file(tmp_path, skip):
    """Float layers run in float, with their own weights, and their neighbours on integers.

    ONNX Runtime would otherwise quantize a float layer's weights itself (per tensor) when its
    input comes from a DequantizeLinear, and fuse it into an integer kernel."""
    _, qmodel = _simulated(skip=skip)
    facts = export_qdq_onnx(qmodel, tmp_path / "mixed.onnx", SHAPE)
    assert facts["quantized_weights"] == 21 - len(skip)
    for backend in ("onnxruntime", "openvino"):
        check = check_int8_execution(
            tmp_path / "mixed.onnx", backend, expected_integer=21 - len(skip),
            expected_float=len(skip),
        )  # fmt: skip
        assert check.integer_layers == 21 - len(skip) and check.float_layers == len(skip), backend


def test_four_bit_weights_are_stored_as_int8_codes_within_range(tmp_path):
    _, qmodel = _simulated(weight_bits=4)
    export_qdq_onnx(qmodel, tmp_path / "w4.onnx", SHAPE)
    proto = onnx.load(str(tmp_path / "w4.onnx"))
    arrays = [numpy_helper.to_array(t) for t in proto.graph.initializer]
    codes = [a for a in arrays if a.dtype == np.int8 and a.ndim >= 2]
    assert len(codes) == 21
    assert max(int(np.abs(c).max()) for c in codes) == 7


def test_mobilenet_v2_fuses_every_conv(tmp_path):
    _, qmodel = _simulated("mobilenet_v2")
    export_qdq_onnx(qmodel, tmp_path / "mv2.onnx", SHAPE)
    check = check_int8_execution(
        tmp_path / "mv2.onnx", "onnxruntime", expected_integer=53, expected_float=0
    )
    assert check.passed
    assert check.ops.get("QLinearConv") == 52 and check.ops.get("QLinearAdd") == 10
    # The pool before the classifier runs on integers too, and nothing is dequantized early.
    assert check.ops.get("QLinearGlobalAveragePool") == 1 and "DequantizeLinear" not in check.ops


def test_a_dead_channel_with_a_bias_does_not_overflow_int32(tmp_path):
    import onnxruntime as ort
    from torch import nn

    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 1), nn.Flatten(),
        nn.Linear(4 * 8 * 8, 3),
    ).eval()  # fmt: skip
    with torch.no_grad():
        model[0].weight[1] = 0.0  # all-zero filter: its scale is the 1e-8 floor
        model[0].bias[1] = 0.7
        model[2].weight[2] = 1e-9
        model[2].bias[2] = 2.0
    qmodel = prepare(model)
    x = torch.randn(8, 3, 8, 8)
    calibrate(qmodel, [x])
    export_qdq_onnx(qmodel, tmp_path / "dead.onnx", (1, 3, 8, 8))
    session = ort.InferenceSession(str(tmp_path / "dead.onnx"), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        sim = qmodel.module(x).numpy()
    assert np.abs(session.run(None, {"input": x.numpy()})[0] - sim).max() < 1e-3
