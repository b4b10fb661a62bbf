"""Every block's MACs, as slimcv.analysis counts them, equal the closed form written by hand.

slimcv counts multiply-accumulates of convolutions (``Ho*Wo*Cout*Cin/groups*K^2``), linear
layers and attention matmuls only; normalisation, activations, pooling, adds, interpolation and
SE gating multiplies are not MACs. The formulas below follow that convention term by term, so a
block that does more (or less) work than its docstring says fails here.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from slimcv.analysis import profile_model
from slimcv.arch.blocks import (
    DepthwiseSeparable,
    ExitHead,
    GhostBottleneck,
    GhostModule,
    GroupedConvShuffle,
    InvertedResidual,
    MobileViTBlock,
    ShuffleUnit,
    WindowAttentionBlock,
)
from slimcv.arch.layers import ConvNormAct, SqueezeExcite, make_divisible
from slimcv.errors import SpecError

# (height, width, stride): square and odd sizes, both strides.
SHAPES = [(16, 16, 1), (15, 9, 1), (16, 16, 2), (15, 9, 2)]


def macs(module: nn.Module, channels: int, height: int, width: int) -> int:
    return profile_model(module, (1, channels, height, width)).macs


def out_size(size: int, stride: int) -> int:
    # Convs padded with kernel // 2 keep the size at stride 1 and round up at stride 2.
    return (size - 1) // stride + 1


@pytest.mark.parametrize(("h", "w", "s"), SHAPES)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_plain_conv(h: int, w: int, s: int, k: int) -> None:
    m, n = 8, 12
    ho, wo = out_size(h, s), out_size(w, s)
    assert macs(ConvNormAct(m, n, k, s), m, h, w) == ho * wo * k * k * m * n


@pytest.mark.parametrize(("h", "w", "s"), SHAPES)
@pytest.mark.parametrize("k", [3, 5])
def test_depthwise_separable(h: int, w: int, s: int, k: int) -> None:
    m, n = 8, 12
    ho, wo = out_size(h, s), out_size(w, s)
    block = DepthwiseSeparable(m, n, kernel_size=k, stride=s)
    assert macs(block, m, h, w) == ho * wo * k * k * m + ho * wo * m * n


def test_depthwise_separable_saves_about_k_squared() -> None:
    """MobileNetV1's classic: H*W*K^2*M + H*W*M*N against H*W*K^2*M*N."""
    h = w = 28
    k, m, n = 3, 64, 64
    standard = macs(ConvNormAct(m, n, k), m, h, w)
    separable = macs(DepthwiseSeparable(m, n, kernel_size=k), m, h, w)
    assert standard == h * w * k * k * m * n
    assert separable == h * w * k * k * m + h * w * m * n
    ratio = standard / separable
    # 1 / (1/N + 1/K^2) = 7.89 for K=3, N=64: "8 to 9 times fewer" (MobileNetV1, Sec. 3.1).
    assert ratio == pytest.approx(1 / (1 / n + 1 / k**2))
    assert 7.8 < ratio < 9


@pytest.mark.parametrize(("h", "w", "s"), SHAPES)
@pytest.mark.parametrize(("expansion", "se_ratio"), [(1.0, 0.0), (6.0, 0.0), (4.0, 0.25)])
def test_inverted_residual(h: int, w: int, s: int, expansion: float, se_ratio: float) -> None:
    m, n, k = 16, 24, 3
    ho, wo = out_size(h, s), out_size(w, s)
    block = InvertedResidual(m, n, kernel_size=k, stride=s, expansion=expansion, se_ratio=se_ratio)
    hidden = m if expansion == 1 else make_divisible(m * expansion)
    expected = h * w * m * hidden if expansion != 1 else 0
    expected += ho * wo * k * k * hidden
    if se_ratio:
        reduced = int(m * se_ratio)  # on the pooled 1x1 map: two tiny 1x1 convs
        expected += 2 * hidden * reduced
    expected += ho * wo * hidden * n
    assert macs(block, m, h, w) == expected


@pytest.mark.parametrize(("channels", "reduced", "h", "w"), [(32, 8, 7, 7), (48, 12, 10, 3)])
def test_squeeze_excite_costs_two_small_matvecs(
    channels: int, reduced: int, h: int, w: int
) -> None:
    # Independent of the spatial size: pooling and the gate multiply are not MACs.
    assert macs(SqueezeExcite(channels, reduced), channels, h, w) == 2 * channels * reduced


@pytest.mark.parametrize(("h", "w"), [(16, 16), (15, 9)])
@pytest.mark.parametrize("k", [3, 5])
def test_shuffle_unit_stride_1(h: int, w: int, k: int) -> None:
    c = 32
    half = c // 2
    expected = h * w * (2 * half * half + k * k * half)
    assert macs(ShuffleUnit(c, c, kernel_size=k), c, h, w) == expected


@pytest.mark.parametrize(("h", "w", "s"), SHAPES)
def test_shuffle_unit_two_branches(h: int, w: int, s: int) -> None:
    # Stride 2, or a width change at stride 1: both branches read the whole input.
    m, n, k = 24, 48, 3
    half = n // 2
    ho, wo = out_size(h, s), out_size(w, s)
    branch1 = ho * wo * k * k * m + ho * wo * m * half
    branch2 = h * w * m * half + ho * wo * k * k * half + ho * wo * half * half
    assert macs(ShuffleUnit(m, n, kernel_size=k, stride=s), m, h, w) == branch1 + branch2


@pytest.mark.parametrize(("h", "w"), [(16, 16), (15, 9)])
@pytest.mark.parametrize(
    ("m", "n", "s", "g"),
    [(24, 24, 1, 3), (24, 48, 1, 4), (24, 48, 2, 4), (30, 60, 2, 3), (30, 62, 2, 4)],
)
def test_grouped_conv_shuffle(h: int, w: int, m: int, n: int, s: int, g: int) -> None:
    # Same shape: residual add. Otherwise the input is concatenated (average-pooled when
    # striding) and the branch makes only the n - m new channels.
    branch_out = n if s == 1 and m == n else n - m
    k = 3
    ho, wo = out_size(h, s), out_size(w, s)
    block = GroupedConvShuffle(m, n, kernel_size=k, stride=s, expansion=0.25, groups=g)
    bottleneck = make_divisible(n * 0.25, g)
    first_groups = g if m % g == 0 else 1  # 30 channels, 4 groups: the first conv is ungrouped
    expected = (
        h * w * m * bottleneck // first_groups
        + ho * wo * k * k * bottleneck
        + ho * wo * bottleneck * branch_out // g
    )
    assert block.hidden_channels == bottleneck
    assert macs(block, m, h, w) == expected


def test_grouped_conv_shuffle_rejects_narrowing_concat() -> None:
    with pytest.raises(SpecError, match="must widen"):
        GroupedConvShuffle(24, 24, stride=2)
    with pytest.raises(SpecError, match="groups"):
        GroupedConvShuffle(24, 34, groups=4)


@pytest.mark.parametrize(("h", "w", "s"), SHAPES)
@pytest.mark.parametrize("n", [16, 15])
def test_ghost_module(h: int, w: int, s: int, n: int) -> None:
    m = 12
    primary = math.ceil(n / 2)
    ho, wo = out_size(h, s), out_size(w, s)
    module = GhostModule(m, n, stride=s)
    expected = ho * wo * m * primary + ho * wo * 3 * 3 * primary
    assert macs(module, m, h, w) == expected
    with torch.no_grad():
        assert module.eval()(torch.randn(1, m, h, w)).shape == (1, n, ho, wo)


def test_ghost_module_halves_a_pointwise_conv() -> None:
    m, n, h, w = 64, 64, 14, 14
    ratio = macs(ConvNormAct(m, n, 1), m, h, w) / macs(GhostModule(m, n), m, h, w)
    assert ratio == pytest.approx((m * n) / (m * n / 2 + 9 * n / 2))  # 1.75: near 2 when m >> 9
    assert 1.7 < ratio < 2


@pytest.mark.parametrize(("h", "w", "s"), SHAPES)
@pytest.mark.parametrize(("m", "n", "se_ratio"), [(16, 16, 0.0), (16, 24, 0.25)])
def test_ghost_bottleneck(h: int, w: int, s: int, m: int, n: int, se_ratio: float) -> None:
    k, expansion = 3, 3.0
    ho, wo = out_size(h, s), out_size(w, s)
    block = GhostBottleneck(m, n, kernel_size=k, stride=s, expansion=expansion, se_ratio=se_ratio)
    hidden = make_divisible(m * expansion)
    p1, p2 = math.ceil(hidden / 2), math.ceil(n / 2)
    expected = h * w * m * p1 + h * w * 9 * p1  # ghost expand at input resolution
    if s > 1:
        expected += ho * wo * k * k * hidden
    if se_ratio:
        expected += 2 * hidden * int(hidden * se_ratio)
    expected += ho * wo * hidden * p2 + ho * wo * 9 * p2  # linear ghost project
    if s > 1 or m != n:
        expected += ho * wo * k * k * m + ho * wo * m * n  # depthwise + 1x1 shortcut
    assert macs(block, m, h, w) == expected


def _attention_layer_macs(tokens: int, group: int, dim: int, hidden: int) -> int:
    # q/k/v + output linears, scores + weighted sum (each T*L*dim over all heads), MLP.
    return 4 * tokens * dim * dim + 2 * tokens * group * dim + 2 * tokens * dim * hidden


@pytest.mark.parametrize(("h", "w", "s"), [(8, 8, 1), (7, 9, 1), (16, 16, 2), (13, 10, 2)])
@pytest.mark.parametrize("patch", [2, 3])
def test_mobilevit_block(h: int, w: int, s: int, patch: int) -> None:
    m, n, k, depth, heads, mlp = 16, 32, 3, 2, 4, 2.0
    block = MobileViTBlock(
        m, n, kernel_size=k, stride=s, expansion=mlp, depth=depth, heads=heads, patch_size=patch
    )
    expected = 0
    c, fh, fw = m, h, w  # working width and map of the block proper
    if s > 1:  # stride-2 inverted residual (expansion 4) first
        hidden_ir = make_divisible(m * 4.0)
        fh, fw, c = out_size(h, s), out_size(w, s), n
        expected += h * w * m * hidden_ir + fh * fw * 9 * hidden_ir + fh * fw * hidden_ir * n
    dim = n
    expected += fh * fw * k * k * c * c + fh * fw * c * dim  # local conv + 1x1 into the dim
    # A map that is not a multiple of p is resized up to the next multiple (no MACs).
    hp, wp = math.ceil(fh / patch) * patch, math.ceil(fw / patch) * patch
    tokens, patches = hp * wp, (hp // patch) * (wp // patch)
    expected += depth * _attention_layer_macs(tokens, patches, dim, round(dim * mlp))
    expected += fh * fw * dim * c + fh * fw * k * k * 2 * c * n  # projection + fusion
    assert macs(block, m, h, w) == expected


@pytest.mark.parametrize(("h", "w", "s"), [(8, 8, 1), (10, 7, 1), (16, 16, 2), (13, 10, 2)])
@pytest.mark.parametrize("window", [4, 7])
def test_window_attention_block(h: int, w: int, s: int, window: int) -> None:
    m, n, depth, heads, mlp = 16, 32, 2, 4, 4.0
    block = WindowAttentionBlock(
        m, n, stride=s, expansion=mlp, depth=depth, heads=heads, window=window
    )
    ho, wo = out_size(h, s), out_size(w, s)
    kernel = 3 if s > 1 else 1
    expected = ho * wo * kernel * kernel * m * n  # downsample (or 1x1 widening) conv
    win = min(window, ho, wo)  # a map smaller than the window is one window
    hp, wp = math.ceil(ho / win) * win, math.ceil(wo / win) * win
    hidden = round(n * mlp)
    per_layer = 4 * hp * wp * n * n + 2 * hp * wp * win * win * n + 2 * ho * wo * n * hidden
    expected += depth * per_layer
    assert macs(block, m, h, w) == expected


@pytest.mark.parametrize(("hidden", "h", "w"), [(0, 7, 7), (64, 7, 7), (64, 4, 9)])
def test_exit_head(hidden: int, h: int, w: int) -> None:
    c, classes = 32, 10
    expected = c * hidden + hidden * classes if hidden else c * classes
    head = ExitHead(c, classes, hidden_channels=hidden)
    assert macs(head, c, h, w) == expected  # pooled first: independent of h and w
