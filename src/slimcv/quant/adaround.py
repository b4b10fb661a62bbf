"""AdaRound: learn whether each weight rounds up or down (Nagel et al., ICML 2020).

Rounding every weight to its nearest grid point minimises the error of each weight alone, not
the error of the layer's *output*, which is what the network sees; on depthwise-heavy models
(MobileNet, EfficientNet-Lite) per-channel min-max INT8 weights with nearest rounding already
cost several points of top-1 agreement. AdaRound keeps each weight's grid cell
(``floor(w / s)``) and learns the choice between its two ends: with a continuous variable
``V`` per weight and the rectified sigmoid ``h(V)`` in ``[0, 1]``, the soft weight is
``s * (floor(w / s) + h(V))``, trained to minimise

    || f(W x + b) - f(W_soft x_q + b) ||^2  +  lambda * sum(1 - |2 h(V) - 1| ** beta)

per layer, in graph order, where

- ``x`` is the layer's input in the float model, so the target is the float model's output
  of that layer;
- ``x_q`` is the layer's input in the *quantized* model (activation quantizers on, earlier
  layers already rounded: the paper's asymmetric reconstruction, so each layer also absorbs
  some of the error made before it);
- ``f`` is the ReLU / ReLU6 that follows the layer, if any: errors it clips away cannot
  change the network's output, so the rounding choices are spent where they matter (the
  paper's Eq. 25);
- the regulariser is off for the first 20 % of the iterations, then its temperature
  ``beta`` falls from 20 to 2, pushing every ``h(V)`` to exactly 0 or 1.

The result is written back into ``layer.weight`` as values exactly on the grid
(``scale * q`` with integer ``q`` inside the spec's range), so the layer's weight quantizer
reproduces it bit for bit and the ONNX export stores those same integers.

Cost is kept to a minute or two for an EfficientNet-Lite0 on two CPU cores by fitting a few
thousand sampled output positions per layer (a conv's output pixel depends only on one input
patch, so sampled positions are exact training samples) instead of whole feature maps, and,
where the loss is quadratic in the weight, by precomputing the samples' second moments once
(see :func:`_objective`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from slimcv.quant.layers import QuantConv2d, QuantLinear
from slimcv.quant.layerwise import (
    active_layers,
    capture_float_outputs,
    following_activations,
    limit_images,
    walk_layers,
)
from slimcv.quant.prepare import QuantizedModel

#: Stretch of the rectified sigmoid, as in the paper: h(V) reaches 0 and 1 at finite V.
ZETA, GAMMA = 1.1, -0.1


@dataclass(frozen=True)
class AdaRoundConfig:
    """How hard AdaRound works on each layer.

    Attributes:
        iterations: Adam steps per layer.
        samples: output positions (pixels of conv outputs, rows of linear outputs) kept per
            layer; the reconstruction is fitted on these.
        batch_size: positions per Adam step.
        lr: Adam learning rate on ``V``.
        reg_weight: ``lambda``, the weight of the rounding regulariser.
        warmup: fraction of the iterations without the regulariser.
        beta: the regulariser's temperature at the start and at the end of its schedule.
        seed: for sampling positions and mini-batches.
        max_images: calibration images used at most (the first ones); every one of them is
            held in memory as activations while the model is walked layer by layer.
    """

    iterations: int = 500
    samples: int = 4096
    batch_size: int = 512
    lr: float = 1e-2
    reg_weight: float = 0.01
    warmup: float = 0.2
    beta: tuple[float, float] = (20.0, 2.0)
    seed: int = 0
    max_images: int = 128

    def __post_init__(self) -> None:
        if min(self.iterations, self.samples, self.batch_size, self.max_images) < 1:
            raise ValueError("iterations, samples, batch_size and max_images must be positive")
        if not 0.0 <= self.warmup < 1.0:
            raise ValueError(f"warmup must be in [0, 1), got {self.warmup}")


def adaround_(
    qmodel: QuantizedModel,
    float_module: nn.Module | None,
    batches: Sequence[torch.Tensor],
    *,
    iterations: int = 500,
    config: AdaRoundConfig | None = None,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """Learns the rounding of every quantized layer's weights, in place.

    Call after calibration (activation quantizers set), before bias correction.

    Args:
        qmodel: the calibrated simulation; its layers' weights are replaced by grid values.
        float_module: the float model ``qmodel`` was prepared from (after any equalization),
            which gives the per-layer targets; ``None`` uses ``qmodel`` with its quantizers
            off, which is the same as long as its weights have not been changed yet.
        batches: calibration images (64-128 are enough; at most ``config.max_images`` are used).
        iterations: Adam steps per layer (ignored when ``config`` is given).
        config: every knob; defaults to ``AdaRoundConfig(iterations=iterations)``.
        progress: show a progress bar on stderr.

    Returns:
        Per layer name, the reconstruction error (mean over sampled positions of the squared
        output error) with nearest rounding (``nearest``) and with the learned rounding
        (``adaround``), and the fraction of weights rounded the other way (``flipped``).
        A layer where learning did not beat nearest rounding keeps nearest rounding.
    """
    config = config or AdaRoundConfig(iterations=iterations)
    batches = limit_images(batches, config.max_images)
    if not batches:
        raise ValueError("AdaRound needs at least one calibration batch")
    names = active_layers(qmodel)
    activations = following_activations(qmodel.module, names)
    generator = torch.Generator().manual_seed(config.seed)
    sizes = [len(b) for b in batches]
    samples: dict[str, _Samples] = {}

    def record(name: str, index: int, output: torch.Tensor) -> None:
        if name not in samples:
            samples[name] = _Samples(config.samples, sizes)
        samples[name].add(index, output, generator)

    capture_float_outputs(qmodel, float_module, names, batches, record)
    report: dict[str, dict[str, float]] = {}

    def visit(name: str, layer: nn.Module, inputs: list[torch.Tensor]) -> None:
        taken = samples[name]
        x = torch.cat([_gather_inputs(layer, inputs[i], rows) for i, rows in taken.rows()])
        report[name] = _round_layer(
            layer, x, taken.targets(), activations.get(name), config, generator
        )

    walk_layers(qmodel, batches, visit, names=names, description="adaround", progress=progress)
    return report


class _Samples:
    """The output positions sampled for one layer, and the float outputs there.

    A position is a flat index into one batch's output, viewed as ``[positions, channels]``
    (``N * H * W`` pixels of a conv output, ``N`` rows of a linear output). Each batch gets
    its share of ``total`` in proportion to its size.
    """

    def __init__(self, total: int, sizes: list[int]) -> None:
        self.total = total
        self.sizes = sizes
        self.indices: dict[int, torch.Tensor] = {}
        self.values: list[torch.Tensor] = []

    def add(self, batch: int, output: torch.Tensor, generator: torch.Generator) -> None:
        if batch in self.indices:  # a layer called twice: its first call is the one fitted
            return
        rows = _as_rows(output)
        share = math.ceil(self.total * self.sizes[batch] / sum(self.sizes))
        if share >= len(rows):
            index = torch.arange(len(rows))
        else:
            index = torch.randperm(len(rows), generator=generator)[:share].sort().values
        self.indices[batch] = index
        self.values.append(rows[index])

    def rows(self) -> list[tuple[int, torch.Tensor]]:
        return sorted(self.indices.items())

    def targets(self) -> torch.Tensor:
        return torch.cat(self.values)


def _as_rows(output: torch.Tensor) -> torch.Tensor:
    """A layer output as ``[positions, channels]``: NCHW conv maps, ``[..., C]`` linear."""
    if output.dim() == 4:
        return output.permute(0, 2, 3, 1).reshape(-1, output.shape[1])
    return output.reshape(-1, output.shape[-1])


def _gather_inputs(layer: nn.Module, x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """The input values that produce the sampled output positions, as ``[P, fan_in]`` rows in
    the weight's own layout (``in_channel * kh * kw + ky * kw + kx`` for a conv)."""
    if isinstance(layer, QuantLinear):
        return x.reshape(-1, x.shape[-1])[index]
    assert isinstance(layer, QuantConv2d)
    kh, kw = layer.kernel_size
    sh, sw = layer.stride
    dh, dw = layer.dilation
    x = _pad(layer, x)
    out_h = (x.shape[2] - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[3] - dw * (kw - 1) - 1) // sw + 1
    n, rest = index // (out_h * out_w), index % (out_h * out_w)
    oy, ox = rest // out_w, rest % out_w
    taps = [x[n, :, oy * sh + ky * dh, ox * sw + kx * dw] for ky in range(kh) for kx in range(kw)]
    return torch.stack(taps, dim=2).reshape(len(index), -1)


def _pad(layer: QuantConv2d, x: torch.Tensor) -> torch.Tensor:
    """``x`` padded as the convolution pads it, so windows can be cut without bounds checks."""
    if isinstance(layer.padding, str):  # "same" / "valid"
        pads: list[int] = []
        for k, d in zip(reversed(layer.kernel_size), reversed(layer.dilation), strict=True):
            total = 0 if layer.padding == "valid" else d * (k - 1)
            pads += [total // 2, total - total // 2]
    else:
        ph, pw = layer.padding
        pads = [pw, pw, ph, ph]
    if not any(pads):
        return x
    mode = "constant" if layer.padding_mode == "zeros" else layer.padding_mode
    return F.pad(x, pads, mode=mode)


def _apply(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The layer's output at the gathered positions (``[P, out]``) for a given weight."""
    out_channels = weight.shape[0]
    groups = getattr(layer, "groups", 1)
    if groups == 1:
        y = x @ weight.reshape(out_channels, -1).t()
    else:
        per_group = out_channels // groups
        xg = x.reshape(len(x), groups, -1)
        wg = weight.reshape(groups, per_group, -1)
        if per_group == 1:  # depthwise: an elementwise product, no matrix to multiply
            y = (xg * wg.squeeze(1)).sum(-1)
        else:
            y = torch.einsum("pgi,goi->pgo", xg, wg).reshape(len(x), out_channels)
    return y if layer.bias is None else y + layer.bias


def _round_layer(
    layer: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    activation: nn.Module | None,
    config: AdaRoundConfig,
    generator: torch.Generator,
) -> dict[str, float]:
    """Learns one layer's rounding on ``x -> target`` and writes the hard result into it."""
    quantizer = layer.weight_quantizer
    spec = quantizer.spec
    weight = layer.weight.detach()
    shape = [1] * weight.dim()
    if spec.per_channel:
        shape[spec.ch_axis] = -1
    scale = quantizer.scale.detach().reshape(shape)
    zero_point = quantizer.zero_point.detach().float().reshape(shape)
    grid = weight / scale + zero_point
    floor = torch.floor(grid)
    f = activation if activation is not None else nn.Identity()

    def soft_weight(offset: torch.Tensor) -> torch.Tensor:
        return scale * (torch.clamp(floor + offset, spec.qmin, spec.qmax) - zero_point)

    def error(w: torch.Tensor) -> float:
        return float(((f(_apply(layer, x, w)) - f(target)) ** 2).sum(1).mean())

    nearest = torch.clamp(torch.round(grid), spec.qmin, spec.qmax) - floor
    before = error(soft_weight(nearest))
    objective = _objective(layer, x, target, activation, config.batch_size, generator)
    # V starts where h(V) equals the fractional part: the soft weight is the float weight.
    frac = (grid - floor).clamp(1e-3, 1 - 1e-3)
    v = (-torch.log((ZETA - GAMMA) / (frac - GAMMA) - 1)).requires_grad_(True)
    optimizer = torch.optim.Adam([v], lr=config.lr)
    warmup = int(config.warmup * config.iterations)
    with torch.enable_grad():
        for step in range(config.iterations):
            h = torch.clamp(torch.sigmoid(v) * (ZETA - GAMMA) + GAMMA, 0, 1)
            loss = objective(soft_weight(h))
            if step >= warmup:
                progress = (step - warmup) / max(1, config.iterations - warmup)
                beta = config.beta[0] + (config.beta[1] - config.beta[0]) * progress
                loss = loss + config.reg_weight * (1 - (2 * h - 1).abs().pow(beta)).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    learned = (v.detach() >= 0).float()
    after = error(soft_weight(learned))
    chosen = learned if after < before else nearest
    with torch.no_grad():
        layer.weight.copy_(soft_weight(chosen))
    return {
        "nearest": before,
        "adaround": min(after, before),
        "flipped": float((chosen != nearest).float().mean()),
    }


Objective = Callable[[torch.Tensor], torch.Tensor]


def _objective(
    layer: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    activation: nn.Module | None,
    batch_size: int,
    generator: torch.Generator,
) -> Objective:
    """The reconstruction loss of one layer as a function of its weight, in the cheapest exact
    form available.

    The loss is ``mean_p sum_o (f(x_p . w_o + b_o) - f(y_po))^2``. Where it is quadratic in
    the weight, it equals ``sum_o (w_o G w_o - 2 w_o g_o)`` plus a constant, with the second
    moments ``G = mean_p x_p x_p^T`` and ``g_o = mean_p x_p (y_po - b_o)`` computed once: every
    step then uses all samples at a cost independent of their number.

    - Depthwise convs (the slow case: few weights, many input values): one small ``G`` per
      channel. A following ReLU / ReLU6 is accounted for by keeping only the samples where
      the float output is in the activation's linear range - outside it the activation
      hides the error, at least while the rounded output stays close to the float one.
    - Dense layers without an activation (the linear bottlenecks), when ``G`` is no larger
      than a mini-batch: one shared ``G``.
    - Everything else: mini-batches of ``batch_size`` sampled positions, through ``f``.
    """
    out_channels = layer.weight.shape[0]
    groups = getattr(layer, "groups", 1)
    rows, fan_in = len(x), x.shape[1] // groups
    residual = target if layer.bias is None else target - layer.bias.detach()
    if groups > 1 and groups == out_channels:
        xg = x.reshape(rows, groups, fan_in)
        if activation is None:
            mask = torch.ones_like(target)
        else:
            mask = (activation(target) == target).to(x.dtype)
        masked = (xg * mask.unsqueeze(-1)).permute(1, 2, 0)  # [C, fan_in, P]
        gram = torch.bmm(masked, xg.permute(1, 0, 2)) / rows  # [C, fan_in, fan_in]
        cross = torch.einsum("cip,pc->ci", masked, residual) / rows  # [C, fan_in]

        def depthwise(weight: torch.Tensor) -> torch.Tensor:
            w = weight.reshape(groups, fan_in)
            return ((torch.bmm(w.unsqueeze(1), gram).squeeze(1) - 2 * cross) * w).sum()

        return depthwise
    if groups == 1 and activation is None and fan_in <= 1.5 * min(batch_size, rows):
        gram = x.t() @ x / rows
        cross = residual.t() @ x / rows  # [out, fan_in]

        def dense(weight: torch.Tensor) -> torch.Tensor:
            w = weight.reshape(out_channels, fan_in)
            return ((w @ gram - 2 * cross) * w).sum()

        return dense
    f = activation if activation is not None else nn.Identity()
    goal = f(target)

    def sampled(weight: torch.Tensor) -> torch.Tensor:
        pick = torch.randint(rows, (min(batch_size, rows),), generator=generator)
        return ((f(_apply(layer, x[pick], weight)) - goal[pick]) ** 2).sum(1).mean()

    return sampled
