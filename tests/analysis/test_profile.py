"""Tests for slimcv.analysis.profile_model: published MACs, exact hand counts, clean-up."""

from __future__ import annotations

import functools
import json

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from slimcv.analysis import LayerProfile, ProfileResult, profile_model
from slimcv.errors import InputShapeError

# Published MACs at 224x224, batch 1 (torchvision model docs, "GFLOPS" meaning multiply-adds).
PUBLISHED_MACS = {
    "resnet18": 1.81e9,
    "resnet50": 4.09e9,
    "mobilenet_v2": 0.300e9,
    "mobilenet_v3_small": 0.056e9,
    "efficientnet_b0": 0.39e9,
    "shufflenet_v2_x1_0": 0.146e9,
    "vit_b_16": 17.56e9,
}


@functools.cache
def _zoo_profile(name: str) -> tuple[nn.Module, ProfileResult]:
    # Cached so the published-count, per-layer and attention tests share one build of each model.
    model = getattr(torchvision.models, name)(weights=None)
    return model, profile_model(model, (1, 3, 224, 224))


@pytest.fixture(params=sorted(PUBLISHED_MACS))
def zoo_profile(request: pytest.FixtureRequest) -> tuple[str, nn.Module, ProfileResult]:
    return (request.param, *_zoo_profile(request.param))


def test_macs_match_published_counts(zoo_profile: tuple[str, nn.Module, ProfileResult]) -> None:
    name, _, result = zoo_profile
    published = PUBLISHED_MACS[name]
    print(f"{name}: published {published / 1e9:.3f} GMACs, measured {result.macs / 1e9:.4f}")
    assert result.macs == pytest.approx(published, rel=0.02)


def test_layer_figures_sum_to_totals(zoo_profile: tuple[str, nn.Module, ProfileResult]) -> None:
    _, model, result = zoo_profile
    assert sum(layer.macs for layer in result.layers) == result.macs
    assert sum(layer.other_ops for layer in result.layers) == result.other_ops
    assert sum(layer.params for layer in result.layers) == result.params
    assert result.params == sum(p.numel() for p in model.parameters())
    assert result.input_shape == [1, 3, 224, 224]
    assert 0 < result.peak_activation_bytes < 200 * 2**20
    names = {name for name, _ in model.named_modules()}
    assert all(layer.name in names for layer in result.layers)


def test_vit_attention_is_charged_to_multihead_attention() -> None:
    # nn.MultiheadAttention runs functionally (its out_proj hook never fires), so its MACs must
    # land on the attention module itself: 197 tokens, width 768.
    _, result = _zoo_profile("vit_b_16")
    by_name = {layer.name: layer for layer in result.layers}
    attention = by_name["encoder.layers.encoder_layer_0.self_attention"]
    tokens, width = 197, 768
    expected = 4 * tokens * width * width + 2 * tokens * tokens * width
    assert attention.macs == expected
    assert by_name["encoder.layers.encoder_layer_0.self_attention.out_proj"].calls == 0


def test_hand_computed_depthwise_separable_macs() -> None:
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
        nn.Conv2d(8, 16, 1),  # pointwise
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    result = profile_model(model, (1, 3, 8, 8))
    h = w = 8
    k, m, n = 3, 8, 16
    conv = h * w * 8 * 3 * k * k
    depthwise_separable = h * w * k * k * m + h * w * m * n
    linear = 16 * 10
    assert [layer.macs for layer in result.layers] == [
        conv,
        h * w * k * k * m,
        h * w * m * n,
        0,
        0,
        linear,
    ]
    assert result.macs == conv + depthwise_separable + linear
    assert result.params == sum(p.numel() for p in model.parameters())
    assert [layer.params for layer in result.layers] == [224, 80, 144, 0, 0, 170]
    assert result.layers[2].output_shape == [1, 16, 8, 8]
    assert result.layers[2].activation_bytes == 16 * 8 * 8 * 4


def test_functional_attention_in_parent_is_counted_and_attributed() -> None:
    class TinyAttention(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, 3 * dim)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            b, n, c = x.shape
            qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]).transpose(1, 2)

    tokens, dim = 16, 32
    result = profile_model(TinyAttention(dim, heads=4), (1, tokens, dim))
    by_name = {layer.name: layer for layer in result.layers}
    assert by_name["qkv"].macs == tokens * dim * 3 * dim
    assert by_name[""].macs == 2 * tokens * tokens * dim  # q @ k^T and attn @ v, all heads
    assert result.macs == sum(layer.macs for layer in result.layers)


def test_batchnorm_and_relu_have_no_macs_but_other_ops() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
    result = profile_model(model, (1, 3, 8, 8))
    conv, bn, relu = result.layers
    assert (conv.type, bn.type, relu.type) == ("Conv2d", "BatchNorm2d", "ReLU")
    assert bn.macs == 0 and relu.macs == 0
    assert bn.other_ops == 8 * 8 * 8 and relu.other_ops == 8 * 8 * 8
    assert conv.other_ops == 0
    assert result.macs == conv.macs == 8 * 8 * 8 * 3 * 9
    # conv 224 + bn 16 params and 16 running stats at FP32, num_batches_tracked as int64.
    assert result.size_bytes == (224 + 16 + 16) * 4 + 8


def test_residual_add_is_other_ops_of_the_block() -> None:
    class Residual(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x + self.conv(x)

    result = profile_model(nn.Sequential(Residual()), (1, 4, 5, 5))
    by_name = {layer.name: layer for layer in result.layers}
    assert by_name["0"].other_ops == 4 * 5 * 5 and by_name["0"].macs == 0
    assert by_name["0.conv"].macs == 5 * 5 * 4 * 4 * 9


def test_reused_module_counts_every_call() -> None:
    linear = nn.Linear(8, 8)
    model = nn.Sequential(linear, nn.ReLU(), linear)
    result = profile_model(model, (1, 8))
    assert result.params == 72
    assert result.macs == 2 * 64
    shared = next(layer for layer in result.layers if layer.type == "Linear")
    assert shared.calls == 2 and shared.macs == 128


def test_peak_activation_tracks_live_tensors() -> None:
    # In a Sequential the previous output dies once the next one exists: the peak is the
    # largest consecutive (input, output) pair, 8x8 maps at FP32, the model input excluded.
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(8, 16, 3, padding=1),
        nn.Conv2d(16, 2, 1),
    )
    result = profile_model(model, (1, 3, 8, 8))
    assert result.peak_activation_bytes == (8 + 16) * 64 * 4
    assert any("peak_activation_bytes is an estimate" in note for note in result.notes)


@pytest.mark.parametrize(
    ("model", "shape"),
    [
        (nn.Sequential(nn.Conv2d(3, 8, 7)), (1, 3, 4, 4)),
        (nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2)), (1, 3, 9, 9)),
    ],
)
def test_impossible_input_raises_input_shape_error(
    model: nn.Module, shape: tuple[int, ...]
) -> None:
    model.train()
    with pytest.raises(InputShapeError, match=r"^model cannot take input 1x3x\dx\d: \S") as info:
        profile_model(model, shape)
    assert "\n" not in str(info.value)
    assert model.training
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_vit_rejects_other_image_size() -> None:
    model = torchvision.models.vit_b_16(weights=None)
    with pytest.raises(InputShapeError, match=r"^model cannot take input 1x3x100x100: "):
        profile_model(model, (1, 3, 100, 100))


@pytest.mark.parametrize("shape", [(2, 3, 8, 8), (1, 0, 8, 8), (), ("a", 3)])
def test_malformed_shape_is_rejected(shape: tuple) -> None:
    with pytest.raises(InputShapeError):
        profile_model(nn.Conv2d(3, 3, 1), shape)


def test_training_flags_restored_and_hooks_removed() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout())
    model.train()
    model[1].eval()  # a frozen BN inside a training model must stay frozen
    profile_model(model, (1, 3, 6, 6))
    assert [m.training for m in model.modules()] == [True, True, False, True]
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())
    assert torch.is_grad_enabled()


def test_to_dict_is_json_with_documented_keys() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())
    result = profile_model(model, (1, 3, 6, 6))
    data = json.loads(json.dumps(result.to_dict()))
    assert set(data) == {
        "params",
        "macs",
        "other_ops",
        "size_bytes",
        "peak_activation_bytes",
        "input_shape",
        "layers",
        "notes",
    }
    assert data["macs"] == result.macs == 4 * 4 * 4 * 3 * 9
    assert data["input_shape"] == [1, 3, 6, 6]
    assert data["layers"][0] == {
        "name": "0",
        "type": "Conv2d",
        "params": 112,
        "macs": 1728,
        "other_ops": 0,
        "output_shape": [1, 4, 4, 4],
        "activation_bytes": 256,
        "calls": 1,
    }
    assert isinstance(result.layers[0], LayerProfile)
    assert data["notes"] and all(isinstance(note, str) for note in data["notes"])
