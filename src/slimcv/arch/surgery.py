"""Model surgery: rewrite layers of a trained model in place, recorded as data for reloading.

:func:`separable_convs_` replaces every standard KxK convolution (``groups=1``, K>1) by a
depthwise KxK convolution followed by a pointwise 1x1 convolution (MobileNet's factorisation).
A KxK conv from M to N channels on an HxW output costs H*W*K^2*M*N MACs; the pair costs
H*W*(K^2*M*r + M*r*N) with ``rank`` r (the depth multiplier), i.e. a fraction ``r/N + r/K^2``
of the original: about 1/8 for 3x3 kernels on 64+ channels at r=1.

Design choices:

- **No BatchNorm or activation between the two convs.** The replacement is a *linear* operator
  that stands in for one conv, so the normalisation and activation that followed the original
  conv (resnet's ``bn1``/``relu``) now follow the pointwise conv, and fold into it for export
  as before (:func:`slimcv.exporters.fold.fold_batchnorm` sees a plain Conv->BN pair). Xception
  (Chollet 2017, Fig. 10) found that no intermediate non-linearity trains faster and ends
  better than a ReLU between depthwise and pointwise convs; and staying linear is what makes
  the initialisation below an approximation of the original layer rather than a new network.
- **Initialisation by per-input-channel SVD.** A separable conv computes
  ``W[o, i] = sum_k P[o, i*r+k] * D[i*r+k]`` - for every input channel ``i`` a rank-r
  factorisation of the matrix ``W[:, i]`` (N x K^2). The truncated SVD of each such matrix is
  its best rank-r approximation (Eckart-Young), so the converted model starts at the
  separable conv closest to the trained one (exact when ``rank = K^2``) and distillation from
  the original (``slimcv distill --teacher ORIGINAL --student DIR``) only has to recover what
  the factorisation lost, instead of training a new network from random weights.

The change is recorded as a ``separable_convs`` architecture change (the replaced names and
the rank); reloading an artifact rebuilds the original architecture, replays the change and
loads the weights, with no pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from slimcv.errors import ArtifactError, SlimcvError
from slimcv.sources.model import LoadedModel

CHANGE_KIND = "separable_convs"


class SeparableConv2d(nn.Sequential):
    """A depthwise KxK conv (``rank`` filters per input channel) then a pointwise 1x1 conv.

    Built from the conv it replaces: same input and output channels, stride, padding,
    dilation and padding mode; the bias, if any, moves to the pointwise conv. Subclassing
    ``nn.Sequential`` keeps it traceable by ``torch.fx`` (BatchNorm folding) and exportable
    as two plain Conv nodes.
    """

    def __init__(self, conv: nn.Conv2d, rank: int = 1) -> None:
        in_channels, out_channels = conv.in_channels, conv.out_channels
        depthwise = nn.Conv2d(
            in_channels,
            in_channels * rank,
            conv.kernel_size,  # type: ignore[arg-type]
            conv.stride,  # type: ignore[arg-type]
            conv.padding,  # type: ignore[arg-type]
            conv.dilation,  # type: ignore[arg-type]
            groups=in_channels,
            bias=False,
            padding_mode=conv.padding_mode,
        )
        pointwise = nn.Conv2d(in_channels * rank, out_channels, 1, bias=conv.bias is not None)
        super().__init__()
        self.depthwise = depthwise.to(conv.weight.device, conv.weight.dtype)
        self.pointwise = pointwise.to(conv.weight.device, conv.weight.dtype)
        self.rank = rank
        self.in_channels, self.out_channels = in_channels, out_channels

    @torch.no_grad()
    def init_from(self, conv: nn.Conv2d) -> float:
        """Sets the weights to the best rank-``rank`` factorisation of ``conv``'s kernel.

        Returns:
            The relative Frobenius error of the factorised kernel, ``|W - W'| / |W|`` (0 when
            the rank reaches K^2).
        """
        weight = conv.weight.detach().float()  # (N, M, K, K)
        out_channels, in_channels, kh, kw = weight.shape
        # One (N x K^2) matrix per input channel, SVD'd together as a batch.
        mats = weight.permute(1, 0, 2, 3).reshape(in_channels, out_channels, kh * kw)
        u, s, vh = torch.linalg.svd(mats, full_matrices=False)
        r = self.rank
        if r > s.shape[1]:
            u = nn.functional.pad(u, (0, r - s.shape[1]))
            vh = nn.functional.pad(vh, (0, 0, 0, r - s.shape[1]))
            s = nn.functional.pad(s, (0, r - s.shape[1]))
        root = s[:, :r].sqrt()  # split the singular values evenly between the two factors
        dw = (root[:, :, None] * vh[:, :r, :]).reshape(in_channels * r, 1, kh, kw)
        pw = (u[:, :, :r] * root[:, None, :]).permute(1, 0, 2).reshape(out_channels, -1)
        self.depthwise.weight.copy_(dw)
        self.pointwise.weight.copy_(pw[:, :, None, None])
        if conv.bias is not None:
            self.pointwise.bias.copy_(conv.bias)
        approx = torch.einsum(
            "oir,irk->oik",
            pw.reshape(out_channels, in_channels, r),
            dw.view(in_channels, r, kh * kw),
        )
        exact = weight.reshape(out_channels, in_channels, kh * kw)
        return float((exact - approx).norm() / exact.norm().clamp_min(1e-12))


def _candidates(
    model: nn.Module, min_channels: int, kernel_sizes: Sequence[int]
) -> list[tuple[str, nn.Conv2d]]:
    found = []
    for name, sub in model.named_modules():
        # Exact type: QAT / fake-quant convs subclass nn.Conv2d and must not be rewritten.
        if type(sub) is not nn.Conv2d or sub.groups != 1:
            continue
        kh, kw = sub.kernel_size  # type: ignore[misc]
        if kh != kw or kh not in kernel_sizes or sub.in_channels < min_channels:
            continue
        found.append((name, sub))
    return found


def _set_submodule(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, new)


def separable_convs_(
    model: nn.Module,
    *,
    min_channels: int = 16,
    kernel_sizes: Sequence[int] = (3, 5, 7),
    rank: int = 1,
    init: bool = True,
) -> list[str]:
    """Replaces standard KxK convs by depthwise + pointwise pairs, in place.

    Args:
        model: the model; edited in place.
        min_channels: convs with fewer input channels stay (the stem, whose 3 RGB channels
            would leave a depthwise conv only 3 filters, stays with the default of 16).
        kernel_sizes: square kernel sizes to replace (K>1; 1x1 convs are already pointwise).
        rank: depthwise filters per input channel (the depth multiplier); ``K^2`` reproduces
            the original conv exactly, at a higher cost.
        init: initialise from the original kernels (see the module docstring); ``False``
            leaves PyTorch's random initialisation.

    Returns:
        The dotted names of the replaced convs, in module order.

    Raises:
        SlimcvError: a bad option.
    """
    config = SeparableConfig(min_channels, tuple(kernel_sizes), rank)
    return list(_convert(model, config, init=init))


def _convert(model: nn.Module, config: SeparableConfig, *, init: bool) -> dict[str, float]:
    """Replaces the matching convs; returns name -> kernel error (NaN without ``init``)."""
    errors = {}
    for name, conv in _candidates(model, config.min_channels, config.kernel_sizes):
        replacement = SeparableConv2d(conv, config.rank)
        errors[name] = replacement.init_from(conv) if init else float("nan")
        replacement.train(conv.training)
        _set_submodule(model, name, replacement)
    return errors


def separable_convs_change(names: Sequence[str], rank: int) -> dict[str, Any]:
    """The ``separable_convs`` architecture change recorded in an artifact's manifest."""
    return {"kind": CHANGE_KIND, "names": list(names), "rank": int(rank)}


def replay_separable_convs(module: nn.Module, change: dict[str, Any]) -> nn.Module:
    """Re-applies a recorded ``separable_convs`` change to a freshly built module.

    Raises:
        ArtifactError: a recorded name is not a standard conv in the rebuilt model.
    """
    rank = int(change.get("rank", 1))
    for name in change.get("names", []):
        try:
            conv = module.get_submodule(name)
        except AttributeError:
            conv = None
        if type(conv) is not nn.Conv2d or conv.groups != 1:  # type: ignore[union-attr]
            raise ArtifactError(f"recorded change names conv {name}, which the model lacks")
        _set_submodule(module, name, SeparableConv2d(conv, rank))  # type: ignore[arg-type]
    return module


@dataclass
class SeparableConfig:
    """Options of :func:`separable`.

    Attributes:
        min_channels: convs with fewer input channels stay.
        kernel_sizes: square kernel sizes to replace.
        rank: depthwise filters per input channel.
    """

    min_channels: int = 16
    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    rank: int = 1

    def __post_init__(self) -> None:
        self.kernel_sizes = tuple(int(k) for k in self.kernel_sizes)
        if self.rank < 1:
            raise SlimcvError(f"rank must be at least 1, got {self.rank}")
        if self.min_channels < 1:
            raise SlimcvError(f"min_channels must be at least 1, got {self.min_channels}")
        if not self.kernel_sizes or min(self.kernel_sizes) < 2:
            raise SlimcvError(f"kernel sizes must be 2 or more, got {list(self.kernel_sizes)}")


@dataclass
class SeparableResult:
    """What :func:`separable` changed.

    Attributes:
        replaced: dotted names of the replaced convs.
        kernel_error: per replaced conv, the relative Frobenius error of the factorised kernel
            (how much of the trained kernel the initialisation could not keep).
        macs_before / macs_after / params_before / params_after: batch-1 figures at the
            model's input size (:func:`slimcv.analysis.profile_model`).
    """

    out_dir: str
    source: str
    input_shape: list[int]
    config: dict[str, Any]
    replaced: list[str]
    kernel_error: dict[str, float] = field(default_factory=dict)
    macs_before: int = 0
    macs_after: int = 0
    params_before: int = 0
    params_after: int = 0

    @property
    def macs_ratio(self) -> float:
        return self.macs_after / self.macs_before if self.macs_before else 1.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["macs_ratio"] = self.macs_ratio
        return data


def separable(
    model: LoadedModel, out_dir: str | Path, config: SeparableConfig | None = None
) -> SeparableResult:
    """Converts ``model`` (in place) to separable convs and saves it as an artifact.

    The next step is usually distillation from the original:
    ``slimcv distill --teacher ORIGINAL --student OUT``.

    Raises:
        ArtifactError: ``out_dir`` is an input or not writable as an artifact.
        SlimcvError: nothing to replace.
    """
    from slimcv.analysis import profile_model
    from slimcv.sources.artifact import check_output_dir, save_artifact

    config = config or SeparableConfig()
    inputs = [model.meta["artifact"]] if "artifact" in model.meta else []
    out = check_output_dir(out_dir, inputs)
    module = model.require_module("separable-conv surgery")
    shape = model.input_shape(1)
    before = profile_model(module, shape)
    errors = _convert(module, config, init=True)
    if not errors:
        raise SlimcvError(
            f"{model.source} has no standard conv with a kernel in {list(config.kernel_sizes)} "
            f"and at least {config.min_channels} input channels"
        )
    names = list(errors)
    after = profile_model(module, shape)
    model.meta["architecture_changes"] = [
        *model.meta.get("architecture_changes", []),
        separable_convs_change(names, config.rank),
    ]
    result = SeparableResult(
        out_dir=str(out),
        source=model.source,
        input_shape=list(shape),
        config=asdict(config),
        replaced=names,
        kernel_error=errors,
        macs_before=before.macs,
        macs_after=after.macs,
        params_before=before.params,
        params_after=after.params,
    )
    metrics = {"macs": after.macs, "params": after.params, "macs_before": before.macs}
    save_artifact(out, model, command="arch separable", args=asdict(config), metrics=metrics)
    return result
