"""Where the simulation puts quantizers, and that it computes what the float model does."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from conftest import randomize_batchnorm
from slimcv.quant.calibrate import calibrate
from slimcv.quant.layers import QuantConv2d, QuantLinear
from slimcv.quant.prepare import PrepareConfig, prepare
from slimcv.quant.quantizer import Quantizer
from slimcv.quant.spec import QuantSpec


def _resnet18() -> nn.Module:
    torch.manual_seed(0)
    return randomize_batchnorm(torchvision.models.resnet18(num_classes=10).eval())


def _calls(qmodel, target_prefix: str) -> list:
    return [
        n
        for n in qmodel.module.graph.nodes
        if n.op == "call_module" and str(n.target).startswith(target_prefix)
    ]


def test_every_conv_and_linear_is_quantized_and_logits_stay_float():
    qmodel = prepare(_resnet18())
    convs = [m for m in qmodel.module.modules() if isinstance(m, QuantConv2d)]
    linears = [m for m in qmodel.module.modules() if isinstance(m, QuantLinear)]
    assert len(convs) == 20 and len(linears) == 1
    assert len(qmodel.layers) == 21 and not qmodel.float_layers
    output = next(n for n in qmodel.module.graph.nodes if n.op == "output")
    assert not str(output.args[0].target).startswith("activation_quantizers")


def test_relu_is_fused_before_the_quantizer_and_maxpool_shares_its_input_scale():
    qmodel = prepare(_resnet18())
    for node in _calls(qmodel, "activation_quantizers"):
        producer = node.args[0]
        if producer.op == "call_module" and "conv" in str(producer.target):
            # a conv feeding a quantizer directly must not be followed by a ReLU
            assert not any("relu" in str(u.target) for u in producer.users)
    pool = next(n for n in qmodel.module.graph.nodes if n.target == "maxpool")
    before = pool.args[0].target
    after = next(iter(pool.users)).target
    assert before == after  # one Quantizer module called twice: same scale in and out


def test_timm_batchnorm_act_is_folded_and_relu6_fused():
    from slimcv.sources.loader import load_model

    module = load_model("timm:efficientnet_lite0").module.eval()
    randomize_batchnorm(module)
    qmodel = prepare(module)
    names = [str(n.target) for n in qmodel.module.graph.nodes]
    assert not any("batch_norm" in n for n in names)
    assert len(qmodel.layers) == 50
    for node in _calls(qmodel, "activation_quantizers"):
        producer = node.args[0]
        if producer.op == "call_module" and producer.target in qmodel.layers:
            assert not any(
                isinstance(qmodel.module.get_submodule(u.target), nn.ReLU6)
                for u in producer.users
                if u.op == "call_module"
            )


def test_simulation_tracks_the_float_model_at_8_bits():
    model = _resnet18()
    qmodel = prepare(model)
    x = torch.randn(16, 3, 32, 32)
    calibrate(qmodel, [x[:8], x[8:]])
    with torch.no_grad():
        ref, sim = model(x), qmodel.module(x)
    assert (ref.argmax(1) == sim.argmax(1)).float().mean() >= 0.9
    assert (ref - sim).abs().max() < 0.1 * ref.abs().max()


def test_fewer_weight_bits_cost_more_error():
    model = _resnet18()
    x = torch.randn(8, 3, 32, 32)
    errors = []
    for bits in (8, 4):
        spec = QuantSpec(bits=bits, symmetric=True, per_channel=True, narrow=True)
        qmodel = prepare(model, PrepareConfig(weight=spec))
        calibrate(qmodel, [x])
        with torch.no_grad():
            errors.append(float((model(x) - qmodel.module(x)).abs().mean()))
    assert errors[1] > 2 * errors[0]


class _WithTransposed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.up = nn.ConvTranspose2d(8, 8, 2, stride=2)
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        x = self.up(x)
        return self.head(x.mean((2, 3)))


def test_a_layer_slimcv_cannot_quantize_stays_float_with_a_warning_naming_it():
    with pytest.warns(UserWarning, match="up .*ConvTranspose2d"):
        qmodel = prepare(_WithTransposed().eval())
    assert "up" in qmodel.float_layers
    assert set(qmodel.layers) == {"conv", "head"}


def test_skip_keeps_named_layers_float():
    qmodel = prepare(_resnet18(), PrepareConfig(skip=("conv1", "fc")))
    assert set(qmodel.float_layers) == {"conv1", "fc"}
    assert isinstance(qmodel.module.get_submodule("conv1"), nn.Conv2d)
    assert not isinstance(qmodel.module.get_submodule("conv1"), QuantConv2d)


def test_lsq_scales_receive_gradients_and_freeze_back_to_buffers():
    model = _resnet18()
    qmodel = prepare(model)
    x = torch.randn(4, 3, 32, 32)
    calibrate(qmodel, [x])
    quantizers = [m for m in qmodel.module.modules() if isinstance(m, Quantizer)]
    for q in quantizers:
        q.make_learnable()
    qmodel.module.train()
    qmodel.module(x).square().mean().backward()
    grads = [q.scale.grad for q in quantizers]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) > 0 for g in grads) > len(grads) // 2
    for q in quantizers:
        q.freeze()
    assert not any(isinstance(q.scale, nn.Parameter) for q in quantizers)
