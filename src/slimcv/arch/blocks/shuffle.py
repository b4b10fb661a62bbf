"""ShuffleNet's building blocks: the V2 split/concat unit and the V1 grouped-conv unit.

Grouped 1x1 convs cut a pointwise conv's cost by the number of groups, but each group then only
sees its own channels; a channel shuffle (reshape, transpose, reshape) between grouped layers
lets information cross groups for free (ShuffleNetV1). ShuffleNetV2 drops grouped convs, whose
memory access cost is high for their MACs, and instead sends only half the channels through the
block, concatenating the untouched half back (no add, equal in/out widths for the 1x1 convs,
which the paper's guidelines G1-G4 favour).
"""

from __future__ import annotations

import torch
from torch import nn

from slimcv.arch.kinds import register_block
from slimcv.arch.layers import ConvNormAct, LayerFactory, channel_shuffle, make_act, make_divisible
from slimcv.arch.spec import BlockSpec
from slimcv.errors import SpecError


class ShuffleUnit(nn.Module):
    """ShuffleNetV2 unit.

    With stride 1 and equal widths, the input is split in half: one half passes through
    untouched, the other through 1x1 -> depthwise KxK (no activation) -> 1x1; the halves are
    concatenated and shuffled with two groups. With stride 2, or when the width changes, both
    halves of the output come from the whole input: a depthwise KxK + 1x1 branch and the
    1x1 -> depthwise -> 1x1 branch.

    MACs at output size Ho x Wo, half width c = out/2: stride 1,
    ``H*W*(2*c^2 + K^2*c)``; two-branch form, ``Ho*Wo*(K^2*M + M*c) + H*W*M*c +
    Ho*Wo*(K^2*c + c^2)``.

    Raises:
        SpecError: ``out_channels`` is odd (the two halves must be equal).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if out_channels % 2:
            raise SpecError(f"shuffle block: output channels must be even, got {out_channels}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.split = stride == 1 and in_channels == out_channels
        half = out_channels // 2
        branch_in = half if self.split else in_channels
        self.branch1 = (
            nn.Identity()
            if self.split
            else nn.Sequential(
                ConvNormAct(
                    in_channels,
                    in_channels,
                    kernel_size,
                    stride,
                    groups=in_channels,
                    act_layer=None,
                    norm_layer=norm_layer,
                ),
                ConvNormAct(in_channels, half, 1, act_layer=act_layer, norm_layer=norm_layer),
            )
        )
        self.branch2 = nn.Sequential(
            ConvNormAct(branch_in, half, 1, act_layer=act_layer, norm_layer=norm_layer),
            # No activation after the depthwise conv: it would only add nonlinearity to a
            # layer that mixes no channels (ShuffleNetV2, as in MobileNetV2's linear layers).
            ConvNormAct(
                half, half, kernel_size, stride, groups=half, act_layer=None, norm_layer=norm_layer
            ),
            ConvNormAct(half, half, 1, act_layer=act_layer, norm_layer=norm_layer),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.split:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class GroupedConvShuffle(nn.Module):
    """ShuffleNetV1 unit: grouped 1x1, channel shuffle, depthwise KxK, grouped 1x1.

    The bottleneck is ``out_channels * expansion`` wide (a quarter in the paper), rounded to a
    multiple of ``groups``. Neither the depthwise conv nor the last grouped conv has an
    activation; the activation comes after the shortcut is merged. Shortcut: an add when the
    shape is kept; otherwise (stride 2 or a wider output) the input, average-pooled 3x3/2 when
    striding, is concatenated and the branch only makes the ``out - in`` new channels.
    The first 1x1 is ungrouped when ``in_channels`` is not a multiple of ``groups`` (the paper
    does this for the first stage, whose input is the stem's 24 channels).

    MACs (no pool/add/shuffle counted): ``H*W*M*B/g1 + Ho*Wo*K^2*B + Ho*Wo*B*N'/g`` with B the
    bottleneck, g1 the first conv's groups and N' the branch output.

    Raises:
        SpecError: the unit would need to narrow while striding or widening, or the branch
            output is not a multiple of ``groups``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        kernel_size: int = 3,
        stride: int = 1,
        expansion: float = 0.25,
        groups: int = 2,
        act_layer: LayerFactory = nn.ReLU,
        norm_layer: LayerFactory = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.add = stride == 1 and in_channels == out_channels
        branch_out = out_channels if self.add else out_channels - in_channels
        if branch_out <= 0:
            raise SpecError(
                f"gshuffle block: {in_channels} -> {out_channels} channels; a unit that strides "
                "or changes width concatenates its input, so it must widen"
            )
        if groups < 1 or branch_out % groups:
            raise SpecError(
                f"gshuffle block: {branch_out} new channels are not divisible into {groups} groups"
            )
        self.groups = groups
        self.first_groups = groups if in_channels % groups == 0 else 1
        hidden = make_divisible(out_channels * expansion, groups)
        self.hidden_channels = hidden
        self.reduce = ConvNormAct(
            in_channels,
            hidden,
            1,
            groups=self.first_groups,
            act_layer=act_layer,
            norm_layer=norm_layer,
        )
        self.depthwise = ConvNormAct(
            hidden,
            hidden,
            kernel_size,
            stride,
            groups=hidden,
            act_layer=None,
            norm_layer=norm_layer,
        )
        self.expand = ConvNormAct(
            hidden, branch_out, 1, groups=groups, act_layer=None, norm_layer=norm_layer
        )
        self.shortcut = nn.AvgPool2d(3, stride, 1) if stride > 1 and not self.add else nn.Identity()
        self.act = make_act(act_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.reduce(x)
        if self.first_groups > 1:
            out = channel_shuffle(out, self.first_groups)
        out = self.expand(self.depthwise(out))
        if self.add:
            return self.act(out + x)
        return self.act(torch.cat((self.shortcut(x), out), dim=1))


@register_block("shuffle", "k", "ShuffleNetV2 unit: channel split, branch, concat, shuffle")
def _shuffle(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return ShuffleUnit(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        act_layer=act,
        norm_layer=norm,
    )


@register_block(
    "gshuffle", "k e g", "ShuffleNetV1 unit: grouped 1x1, shuffle, depthwise, grouped 1x1"
)
def _gshuffle(
    cin: int, spec: BlockSpec, stride: int, act: LayerFactory, norm: LayerFactory
) -> nn.Module:
    return GroupedConvShuffle(
        cin,
        spec.out_channels,
        kernel_size=spec.kernel_size or 3,
        stride=stride,
        expansion=spec.expansion if spec.expansion is not None else 0.25,
        groups=spec.groups or 2,
        act_layer=act,
        norm_layer=norm,
    )
