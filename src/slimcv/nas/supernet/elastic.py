"""The elastic MobileNetV2-space network: one set of weights, every sub-network of the space.

The supernet is the space's largest network (width 1.0, depth 3, kernel 7, expansion 6, SE on)
and runs any :class:`~slimcv.nas.space.Candidate` of the space by slicing its weights
(Once-for-All, Cai et al. 2020):

- **width**: a stage (and the stem) of ``make_divisible(base * width)`` channels uses the first
  that many output channels of the full layer, and the next layer the first that many inputs.
- **depth**: a stage of ``d`` blocks runs its first ``d`` blocks.
- **expansion**: a block with ``make_divisible(in_channels * e)`` hidden channels uses the first
  that many; :meth:`ElasticMobileNet.sort_hidden_channels_` reorders them by importance first,
  so the channels a small expansion keeps are the ones that matter most.
- **kernel**: a 5x5 depthwise kernel is the centre of the 7x7 one passed through a learned
  25x25 matrix, a 3x3 one the centre of the (transformed) 5x5 one through a 9x9 matrix. The
  matrices are shared by the channels of a layer and start as the identity (plain centre crop);
  they let the small kernels differ from the centre of the large one where that helps.
- **SE**: ``se0`` skips the squeeze-excitation; with it on, the bottleneck is
  ``max(1, int(in_channels * ratio))`` wide, the rule of
  :class:`~slimcv.arch.blocks.mobile.InvertedResidual`, sliced from the full SE.
- **resolution**: the network is fully convolutional up to global pooling; the caller feeds
  images of the candidate's size.

Batch normalisation is sliced too (the first ``c`` scales, shifts and running statistics). The
running statistics of a slice are not those of the sub-network run alone, so a sub-network's
statistics are re-estimated on a few training batches before it is evaluated
(:func:`recalibrate_bn`).

:func:`extract` turns a candidate into an ordinary :class:`~slimcv.arch.SpecNet` holding the
sliced (and kernel-transformed) weights: it computes what the supernet computes, and it can be
saved, exported and fine-tuned like any other model.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.arch import SpecNet, build_network
from slimcv.arch.layers import make_divisible
from slimcv.arch.spec import NetworkSpec
from slimcv.errors import SearchError
from slimcv.nas.space import Candidate, Genotype, MobileNetV2Space, SearchSpace

Tensors = dict[str, torch.Tensor]


def _bn(x: torch.Tensor, bn: nn.BatchNorm2d, channels: int) -> torch.Tensor:
    # Slices of the running buffers are views, so training updates the shared statistics.
    assert bn.running_mean is not None and bn.running_var is not None
    return F.batch_norm(
        x,
        bn.running_mean[:channels],
        bn.running_var[:channels],
        bn.weight[:channels],
        bn.bias[:channels],
        bn.training,
        bn.momentum if bn.momentum is not None else 0.1,
        bn.eps,
    )


def _bn_state(bn: nn.BatchNorm2d, channels: int) -> Tensors:
    assert bn.running_mean is not None and bn.running_var is not None
    assert bn.num_batches_tracked is not None
    return {
        "weight": bn.weight[:channels],
        "bias": bn.bias[:channels],
        "running_mean": bn.running_mean[:channels],
        "running_var": bn.running_var[:channels],
        "num_batches_tracked": bn.num_batches_tracked,
    }


def _prefixed(prefix: str, tensors: Tensors) -> Tensors:
    return {f"{prefix}{name}": tensor for name, tensor in tensors.items()}


class ElasticConvBN(nn.Module):
    """A dense conv + BatchNorm whose first ``out`` outputs and ``in`` inputs can be used."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        self.stride, self.kernel_size = stride, kernel_size
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, bias=False)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor, out_channels: int) -> torch.Tensor:
        weight = self.conv.weight[:out_channels, : x.shape[1]]
        y = F.conv2d(x, weight, None, self.stride, self.kernel_size // 2)
        return _bn(y, self.bn, out_channels)

    def state(self, in_channels: int, out_channels: int) -> Tensors:
        """The slice as a ``ConvNormAct`` state dict (``0.`` conv, ``1.`` norm)."""
        weight = self.conv.weight[:out_channels, :in_channels]
        return {"0.weight": weight, **_prefixed("1.", _bn_state(self.bn, out_channels))}


class ElasticDepthwise(nn.Module):
    """A depthwise conv + BatchNorm with elastic channels and kernel size.

    Args:
        kernels: the kernel sizes used, largest first is not required; the largest is stored.
        transform: learn OFA's kernel-transformation matrices (else plain centre crops).
    """

    def __init__(
        self, channels: int, kernels: Iterable[int], stride: int, *, transform: bool = True
    ) -> None:
        super().__init__()
        self.kernels = tuple(sorted(set(kernels), reverse=True))
        self.stride = stride
        size = self.kernels[0]
        self.weight = nn.Parameter(torch.empty(channels, 1, size, size))
        self.bn = nn.BatchNorm2d(channels)
        self.transforms = nn.ParameterDict()
        if transform:
            for big, small in zip(self.kernels, self.kernels[1:], strict=False):
                self.transforms[f"{big}to{small}"] = nn.Parameter(torch.eye(small * small))

    def kernel(self, channels: int, size: int) -> torch.Tensor:
        """The ``size`` x ``size`` kernels of the first ``channels`` channels."""
        if size not in self.kernels:
            raise SearchError(f"kernel {size} is not one of the supernet's {self.kernels}")
        weight = self.weight[:channels]
        current = self.kernels[0]
        for small in self.kernels[1:]:
            if current == size:
                break
            start = (current - small) // 2
            weight = weight[:, :, start : start + small, start : start + small]
            matrix = self.transforms[f"{current}to{small}"] if self.transforms else None
            if matrix is not None:
                flat = F.linear(weight.reshape(channels, small * small), matrix)
                weight = flat.reshape(channels, 1, small, small)
            current = small
        return weight

    def forward(self, x: torch.Tensor, size: int) -> torch.Tensor:
        channels = x.shape[1]
        y = F.conv2d(x, self.kernel(channels, size), None, self.stride, size // 2, 1, channels)
        return _bn(y, self.bn, channels)

    def state(self, channels: int, size: int) -> Tensors:
        return {
            "0.weight": self.kernel(channels, size),
            **_prefixed("1.", _bn_state(self.bn, channels)),
        }


class ElasticInvertedResidual(nn.Module):
    """:class:`~slimcv.arch.blocks.mobile.InvertedResidual` with every dimension elastic.

    Sizes are the maxima over the space; :meth:`forward` takes the active ones. The skip
    connection follows InvertedResidual's rule (stride 1 and equal widths) on the active widths.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden_channels: int,
        se_channels: int,
        stride: int,
        kernels: Iterable[int],
        *,
        kernel_transform: bool = True,
    ) -> None:
        super().__init__()
        self.stride = stride
        self.expand = ElasticConvBN(in_channels, hidden_channels, 1)
        self.depthwise = ElasticDepthwise(
            hidden_channels, kernels, stride, transform=kernel_transform
        )
        self.se_reduce = nn.Conv2d(hidden_channels, se_channels, 1)
        self.se_expand = nn.Conv2d(se_channels, hidden_channels, 1)
        self.project = ElasticConvBN(hidden_channels, out_channels, 1)

    @staticmethod
    def widths(in_channels: int, expansion: float, se_ratio: float) -> tuple[int, int]:
        """Hidden and SE widths, exactly as InvertedResidual derives them."""
        hidden = make_divisible(in_channels * expansion) if expansion != 1 else in_channels
        reduced = max(1, int(in_channels * se_ratio)) if se_ratio > 0 else 0
        return hidden, reduced

    def forward(
        self, x: torch.Tensor, out_channels: int, kernel: int, expansion: float, se_ratio: float
    ) -> torch.Tensor:
        in_channels = x.shape[1]
        hidden, reduced = self.widths(in_channels, expansion, se_ratio)
        y = F.relu6(self.expand(x, hidden))
        y = F.relu6(self.depthwise(y, kernel))
        if reduced:
            scale = y.mean((2, 3), keepdim=True)
            scale = F.conv2d(
                scale, self.se_reduce.weight[:reduced, :hidden], self.se_reduce.bias[:reduced]
            )
            scale = F.conv2d(
                F.relu6(scale),
                self.se_expand.weight[:hidden, :reduced],
                self.se_expand.bias[:hidden],
            )
            y = y * torch.sigmoid(scale)
        y = self.project(y, out_channels)
        if self.stride == 1 and in_channels == out_channels:
            y = y + x
        return y

    def state(
        self, in_channels: int, out_channels: int, kernel: int, expansion: float, se_ratio: float
    ) -> Tensors:
        """The slice as an InvertedResidual state dict."""
        hidden, reduced = self.widths(in_channels, expansion, se_ratio)
        tensors = {
            **_prefixed("expand.", self.expand.state(in_channels, hidden)),
            **_prefixed("depthwise.", self.depthwise.state(hidden, kernel)),
            **_prefixed("project.", self.project.state(hidden, out_channels)),
        }
        if reduced:
            tensors["se.reduce.weight"] = self.se_reduce.weight[:reduced, :hidden]
            tensors["se.reduce.bias"] = self.se_reduce.bias[:reduced]
            tensors["se.expand.weight"] = self.se_expand.weight[:hidden, :reduced]
            tensors["se.expand.bias"] = self.se_expand.bias[:hidden]
        return tensors

    @torch.no_grad()
    def sort_hidden_channels_(self) -> None:
        """Reorders the hidden channels by importance (L1 norm of their projection weights).

        A permutation of the hidden channels of every layer that touches them leaves the full
        block's function unchanged, and makes "the first k channels" of a small expansion the
        k most important ones.
        """
        importance = self.project.conv.weight.abs().sum(dim=(0, 2, 3))
        order = torch.argsort(importance, descending=True)
        self.expand.conv.weight.copy_(self.expand.conv.weight[order])
        for bn in (self.expand.bn, self.depthwise.bn):
            for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
                assert tensor is not None
                tensor.copy_(tensor[order])
        self.depthwise.weight.copy_(self.depthwise.weight[order])
        self.se_reduce.weight.copy_(self.se_reduce.weight[:, order])
        self.se_expand.weight.copy_(self.se_expand.weight[order])
        self.se_expand.bias.copy_(self.se_expand.bias[order])
        self.project.conv.weight.copy_(self.project.conv.weight[:, order])


def max_genotype(space: SearchSpace) -> Genotype:
    """The largest point of the space: the last (largest) choice of every dimension."""
    return {d.name: max(d.choices) for d in space.dimensions}


def min_genotype(space: SearchSpace) -> Genotype:
    """The smallest point of the space."""
    return {d.name: min(d.choices) for d in space.dimensions}


class ElasticMobileNet(nn.Module):
    """The supernet of a :class:`~slimcv.nas.space.MobileNetV2Space`.

    Parameter names follow SpecNet's layout (``stem``, ``stages.i.j``, ``head``,
    ``classifier``) so the correspondence with an extracted network is plain to read.

    Args:
        space: the space whose every candidate this network runs.
        num_classes: classifier outputs.
        kernel_transform: learn OFA's kernel-transformation matrices (else plain centre crops).
    """

    def __init__(
        self, space: SearchSpace, num_classes: int, *, kernel_transform: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(space, MobileNetV2Space):
            raise SearchError(
                f"the supernet covers the mobilenetv2 space only, not {space.name!r}; "
                "use the short-train or zero-cost estimator"
            )
        self.space = space
        self.num_classes = num_classes
        self.max_spec = space.decode(max_genotype(space)).spec
        widths = space.widths
        stem_max = max(make_divisible(space.stem.channels * w) for w in widths)
        self.stem = ElasticConvBN(3, stem_max, 3, space.stem.stride)
        stages = []
        for index, layout in enumerate(space.stages):
            blocks = []
            for position in range(max(space.depths)):
                if index == 0 and position == 0:
                    base_in = space.stem.channels
                elif position == 0:
                    base_in = space.stages[index - 1].channels
                else:
                    base_in = layout.channels
                ins = [make_divisible(base_in * w) for w in widths]
                hidden = max(
                    ElasticInvertedResidual.widths(c, e, 0)[0]
                    for c in ins
                    for e in space.expansions
                )
                se = max(
                    ElasticInvertedResidual.widths(c, 1, r)[1] for c in ins for r in space.se_ratios
                )
                blocks.append(
                    ElasticInvertedResidual(
                        max(ins),
                        max(make_divisible(layout.channels * w) for w in widths),
                        hidden,
                        max(se, 1),
                        layout.stride if position == 0 else 1,
                        space.kernels,
                        kernel_transform=kernel_transform,
                    )
                )
            stages.append(nn.ModuleList(blocks))
        self.stages = nn.ModuleList(stages)
        last = max(make_divisible(space.stages[-1].channels * w) for w in widths)
        self.head = ElasticConvBN(last, space.head, 1) if space.head else None
        self.classifier = nn.Linear(space.head or last, num_classes)
        self._init_weights()

    def _init_weights(self) -> None:
        # SpecNet's recipe, so the supernet starts where a stand-alone network would.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01)
                nn.init.zeros_(module.bias)
            elif isinstance(module, ElasticDepthwise):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")

    def check(self, spec: NetworkSpec) -> None:
        """Raises :class:`SearchError` if ``spec`` is not a sub-network of this supernet."""
        full = self.max_spec
        same_frame = (
            len(spec.blocks) == len(full.blocks)
            and spec.stem_stride == full.stem_stride
            and spec.head_channels == full.head_channels
            and spec.act == full.act
            and spec.stem_channels <= full.stem_channels
        )
        if same_frame:
            for block, big in zip(spec.blocks, full.blocks, strict=True):
                if (
                    block.kind != "ir"
                    or block.stride != big.stride
                    or block.repeats > big.repeats
                    or block.out_channels > big.out_channels
                    or block.kernel_size not in self.space.kernels
                    or (block.expansion or 6.0) > (big.expansion or 6.0)
                    or block.se_ratio > big.se_ratio
                    or block.act not in (None, full.act)
                ):
                    same_frame = False
                    break
        if not same_frame:
            raise SearchError(f"{spec.to_string()} is not a sub-network of the supernet")

    def forward(self, x: torch.Tensor, spec: NetworkSpec | None = None) -> torch.Tensor:
        """Runs the sub-network ``spec`` (a candidate's spec; the full network if omitted)."""
        spec = spec or self.max_spec
        x = F.relu6(self.stem(x, spec.stem_channels))
        for stage, block in zip(self.stages, spec.blocks, strict=True):
            for layer in list(stage)[: block.repeats]:
                x = layer(
                    x,
                    block.out_channels,
                    block.kernel_size or 3,
                    block.expansion if block.expansion is not None else 6.0,
                    block.se_ratio,
                )
        if self.head is not None:
            x = F.relu6(self.head(x, self.space.head))
        x = x.mean((2, 3))
        return F.linear(x, self.classifier.weight[:, : x.shape[1]], self.classifier.bias)

    def subnet_state(self, spec: NetworkSpec) -> Tensors:
        """The sliced weights of ``spec``, keyed as a SpecNet of that spec names them."""
        self.check(spec)
        tensors = _prefixed("stem.", self.stem.state(3, spec.stem_channels))
        channels = spec.stem_channels
        for i, (stage, block) in enumerate(zip(self.stages, spec.blocks, strict=True)):
            for j in range(block.repeats):
                layer = stage[j]
                assert isinstance(layer, ElasticInvertedResidual)
                state = layer.state(
                    channels,
                    block.out_channels,
                    block.kernel_size or 3,
                    block.expansion if block.expansion is not None else 6.0,
                    block.se_ratio,
                )
                tensors.update(_prefixed(f"stages.{i}.{j}.", state))
                channels = block.out_channels
        if self.head is not None:
            tensors.update(_prefixed("head.", self.head.state(channels, self.space.head)))
            channels = self.space.head
        tensors["classifier.weight"] = self.classifier.weight[:, :channels]
        tensors["classifier.bias"] = self.classifier.bias
        return {name: t.detach().clone().contiguous() for name, t in tensors.items()}

    def sort_hidden_channels_(self) -> None:
        """Sorts every block's hidden channels by importance (see the block's method)."""
        for stage in self.stages:
            for layer in stage:
                assert isinstance(layer, ElasticInvertedResidual)
                layer.sort_hidden_channels_()


def extract(supernet: ElasticMobileNet, candidate: Candidate | NetworkSpec) -> SpecNet:
    """A stand-alone SpecNet of the candidate carrying the supernet's shared weights.

    The result is in eval mode and computes what ``supernet(x, candidate.spec)`` computes in
    eval mode; its BatchNorm statistics are the supernet's slices, so re-estimate them with
    :func:`recalibrate_bn` before trusting its accuracy.

    Raises:
        SearchError: the candidate is not a sub-network of the supernet.
    """
    spec = candidate.spec if isinstance(candidate, Candidate) else candidate
    supernet.check(spec)
    network = build_network(spec, supernet.num_classes)
    network.load_state_dict(supernet.subnet_state(spec), strict=True)
    return network.to(next(supernet.parameters()).device).eval()


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> nn.Module:
    """Re-estimates every BatchNorm's running statistics from ``batches`` (images only).

    The statistics become the plain average over the batches (momentum ``None``), which is
    what Once-for-All does for every sub-network before measuring it. Returns the model in
    eval mode, momentum restored.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [bn.momentum for bn in norms]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for images in batches:
        model(images)
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    return model.eval()
