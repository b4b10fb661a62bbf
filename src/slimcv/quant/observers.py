"""Calibration observers: watch the tensors a quantizer will see and choose its range.

An observer is the part of post-training quantization (and of QAT's range tracking) that
answers one question: which ``[min, max]`` should the integer grid cover? Covering the full
observed range (``minmax``) never clips but wastes resolution on rare outliers; the other
methods trade a little clipping for finer steps on the bulk of the values. Every observer
turns its chosen range into ``(scale, zero_point)`` through
:func:`slimcv.quant.spec.qparams_from_range`, so all of them obey the same conventions (zero
exact, the scale floor, narrow symmetric weights).

Design choices that the rest of ``quant/`` relies on:

- Observers are ``nn.Module`` s so that ``model.to(device)`` moves their state with the
  model, but their buffers are *non-persistent*: calibration statistics are transient, and the
  fake-quant module that owns an observer saves the resulting scale and zero point instead.
  (Persistent buffers whose shape is only known after the first batch would also make a saved
  ``state_dict`` unloadable into a fresh model.)
- Nothing keeps every observed value: activations of a real network are hundreds of MB per
  batch. Per-tensor methods that need the distribution share :class:`RunningHistogram`; the
  per-channel MSE search keeps a bounded random sample per channel (weights are small).
- Bad calibration data fails loudly with :class:`slimcv.errors.DataError` instead of
  producing NaN scales that would only surface as garbage accuracy much later.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
from typing import ClassVar

import torch
from torch import nn

from slimcv.errors import DataError
from slimcv.quant.spec import MIN_SCALE, QuantSpec, fake_quantize, qparams_from_range
from slimcv.registry import Registry

__all__ = [
    "OBSERVERS",
    "EntropyObserver",
    "MinMaxObserver",
    "MovingAverageObserver",
    "MseObserver",
    "Observer",
    "PercentileObserver",
    "RunningHistogram",
    "make_observer",
]

#: Calibration methods by name (``--calibration`` on the CLI, ``calibration:`` in recipes).
OBSERVERS: Registry[type[Observer]] = Registry("calibration method")


def make_observer(name: str, spec: QuantSpec, **options: object) -> Observer:
    """Builds the observer registered as ``name`` for quantizers of format ``spec``.

    Options are the keyword arguments of that observer's class (e.g. ``momentum`` for
    ``moving-average``, ``percentile`` for ``percentile``).

    Raises:
        UnknownNameError: no calibration method is called ``name``; lists the known ones.
        ValueError: an option the method does not take, or a spec it cannot serve.
    """
    cls = OBSERVERS.get(name)
    accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "spec")]
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        known = ", ".join(accepted) or "none"
        raise ValueError(
            f"calibration method {name!r} does not take option(s) {', '.join(unknown)}; "
            f"it takes: {known}"
        )
    return cls(spec, **options)


def _f32(value: float) -> float:
    """``value`` as the nearest float32, the precision ``torch.histc`` compares edges in."""
    return torch.tensor(value, dtype=torch.float32).item()


def _count_dtype(device: torch.device) -> torch.dtype:
    """float64 counts (float32 stops counting exactly at 2**24), except where unsupported."""
    return torch.float32 if device.type == "mps" else torch.float64


class Observer(nn.Module):
    """Collects statistics of the tensors it sees; turns them into ``(scale, zero_point)``.

    Subclasses implement :meth:`_observe`, :meth:`_compute` and :meth:`_reset`; this base class
    owns validation, the batch count and gradient isolation, so every method fails the same way
    on bad data.
    """

    #: The registry name, for messages and ``repr``.
    name: ClassVar[str] = ""

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__()
        self.spec = spec
        self._seen = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Observes ``x`` and returns it unchanged, so an observer can sit inside a model."""
        self.observe(x.detach())
        return x

    def observe(self, x: torch.Tensor) -> None:
        """Adds one tensor (a batch of activations, or a weight) to the statistics.

        Raises:
            DataError: the tensor is empty, contains NaN/Inf, or has a channel count that
                differs from earlier tensors (per-channel specs).
        """
        if x.numel() == 0:
            raise DataError(f"calibration batch is empty (shape {tuple(x.shape)})")
        if not x.is_floating_point() or x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()  # histc and the search maths want float32 or float64
        with torch.no_grad():
            self._observe(x.detach())
        self._seen += 1

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The quantization parameters for everything observed so far.

        Returns:
            ``(scale, zero_point)``: float32 and int32, shape ``[]`` per tensor or ``[C]``
            per channel (``C = x.shape[spec.ch_axis]``).

        Raises:
            DataError: nothing has been observed yet.
        """
        if self._seen == 0:
            raise DataError(
                f"no calibration batches were observed by the {self.name or 'observer'} "
                "observer; run calibration data through the model before computing scales"
            )
        with torch.no_grad():
            return self._compute()

    def reset(self) -> None:
        """Forgets all statistics (e.g. before recalibrating)."""
        self._seen = 0
        self._reset()

    @property
    def seen(self) -> int:
        """Number of tensors observed since construction or the last :meth:`reset`."""
        return self._seen

    def extra_repr(self) -> str:
        return f"{self.spec.short()}, seen={self._seen}"

    # -- for subclasses --------------------------------------------------------------------

    def _observe(self, x: torch.Tensor) -> None:
        raise NotImplementedError

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _reset(self) -> None:
        raise NotImplementedError

    def _require_per_tensor(self) -> None:
        if self.spec.per_channel:
            raise ValueError(
                f"the {self.name} calibration method supports per-tensor quantizers only "
                "(use minmax or mse for per-channel weights)"
            )

    def _channels_first(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` as ``[C, N]`` with the spec's channel axis first (per-channel specs)."""
        axis = self.spec.ch_axis
        if not -x.dim() <= axis < x.dim() or x.dim() == 0:
            raise DataError(
                f"per-channel calibration needs a tensor with axis {axis}, "
                f"got shape {tuple(x.shape)}"
            )
        return x.movedim(axis, 0).reshape(x.shape[axis], -1)

    def _batch_range(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Min and max of ``x``: scalars, or ``[C]`` for per-channel specs; checks finiteness.

        The check reuses the reduction that every observer needs anyway (NaN and Inf both
        propagate into min/max), so validating costs nothing extra.
        """
        if self.spec.per_channel:
            lo, hi = torch.aminmax(self._channels_first(x), dim=1)
        else:
            lo, hi = torch.aminmax(x)
        if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
            raise DataError(
                f"calibration data contains NaN or Inf (tensor of shape {tuple(x.shape)}); "
                "check the data source and the model's numerics before quantizing"
            )
        return lo, hi

    def _check_channels(self, old: torch.Tensor, new: torch.Tensor) -> None:
        if old.numel() and old.shape != new.shape:
            raise DataError(
                f"per-channel calibration saw {new.numel()} channels after {old.numel()}; "
                "an observer must watch tensors of one shape along the channel axis"
            )


@OBSERVERS.register("minmax")
class MinMaxObserver(Observer):
    """The running minimum and maximum over all batches: never clips, the safe default."""

    name = "minmax"

    def __init__(self, spec: QuantSpec) -> None:
        super().__init__(spec)
        self.register_buffer("min_val", torch.empty(0), persistent=False)
        self.register_buffer("max_val", torch.empty(0), persistent=False)

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = self._batch_range(x)
        if self.min_val.numel() == 0:
            self.min_val, self.max_val = lo.float(), hi.float()
            return
        self._check_channels(self.min_val, lo)
        self.min_val = torch.minimum(self.min_val, lo.float())
        self.max_val = torch.maximum(self.max_val, hi.float())

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        return qparams_from_range(self.min_val, self.max_val, self.spec)

    def _reset(self) -> None:
        self.min_val = torch.empty(0, device=self.min_val.device)
        self.max_val = torch.empty(0, device=self.max_val.device)


@OBSERVERS.register("moving-average")
class MovingAverageObserver(MinMaxObserver):
    """An exponential moving average of each batch's min and max.

    During QAT the activation ranges drift as the weights train; a running min/max would keep
    the widest range ever seen (often from the first, untrained steps), while the average
    follows the current network. ``momentum`` is the weight of the newest batch.
    """

    name = "moving-average"

    def __init__(self, spec: QuantSpec, momentum: float = 0.01) -> None:
        if not 0.0 < momentum <= 1.0:
            raise ValueError(f"momentum must be in (0, 1], got {momentum}")
        super().__init__(spec)
        self.momentum = momentum

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = self._batch_range(x)
        if self.min_val.numel() == 0:  # the first batch initialises the average
            self.min_val, self.max_val = lo.float(), hi.float()
            return
        self._check_channels(self.min_val, lo)
        self.min_val = torch.lerp(self.min_val, lo.float(), self.momentum)
        self.max_val = torch.lerp(self.max_val, hi.float(), self.momentum)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, momentum={self.momentum}"


class RunningHistogram(nn.Module):
    """A fixed-size histogram whose range grows with the data, re-binned exactly.

    The bins lie on a grid anchored at 0: bin ``j`` covers
    ``[(offset + j) * width, (offset + j + 1) * width)``. When a batch falls outside the
    current range, the width doubles (as often as needed) and the window shifts; since the new
    bins are unions of whole old bins, the old counts move over without any interpolation
    error. The price is resolution: after growing, the data may occupy as few as a quarter of
    the bins, which still leaves hundreds of bins per quantization step at 8 bits.
    """

    def __init__(self, bins: int = 2048) -> None:
        super().__init__()
        if bins < 16:
            raise ValueError(f"a calibration histogram needs at least 16 bins, got {bins}")
        self.bins = bins
        self.width = 0.0
        self.offset = 0
        self.register_buffer("counts", torch.empty(0), persistent=False)

    @property
    def empty(self) -> bool:
        return self.counts.numel() == 0

    @property
    def edges(self) -> torch.Tensor:
        """The ``bins + 1`` bin edges (float64)."""
        idx = torch.arange(self.offset, self.offset + self.bins + 1, dtype=torch.float64)
        return (idx * self.width).to(self.counts.device)

    def value_at(self, index: float) -> float:
        """The value at fractional bin position ``index`` (0 = left edge of the first bin)."""
        return (self.offset + index) * self.width

    def add(self, x: torch.Tensor, lo: float, hi: float) -> None:
        """Counts the values of ``x``, whose minimum and maximum are ``lo`` and ``hi``."""
        lo, hi = min(lo, 0.0), max(hi, 0.0)  # 0 is always in range (the grid's anchor)
        if self.empty:
            # bins - 2: one bin of slack so that float rounding cannot push hi out of range
            self.width = max(hi - lo, MIN_SCALE) / (self.bins - 2)
            self.offset = math.floor(lo / self.width)
            while not self._covers(self.offset, self.width, lo, hi):
                self.offset -= 1
            self.counts = torch.zeros(self.bins, dtype=_count_dtype(x.device), device=x.device)
        else:
            self._grow(lo, hi)
        start = self.offset * self.width
        counts = torch.histc(x, self.bins, min=start, max=start + self.bins * self.width)
        self.counts += counts.to(self.counts.dtype)

    def quantile(self, q: float) -> float:
        """The value below which a fraction ``q`` of the counts lie (linear within a bin)."""
        cum = torch.cumsum(self.counts, 0)
        target = q * cum[-1]
        i = int(torch.searchsorted(cum, target.reshape(1)).clamp(max=self.bins - 1))
        before = cum[i - 1] if i > 0 else torch.zeros((), dtype=cum.dtype)
        count = self.counts[i]
        frac = float((target - before) / count) if count > 0 else 0.0
        return self.value_at(i + min(max(frac, 0.0), 1.0))

    def _covers(self, offset: int, width: float, lo: float, hi: float) -> bool:
        """Whether the window starting at ``offset`` holds ``[lo, hi]`` as histc will see it."""
        return _f32(offset * width) <= lo and _f32((offset + self.bins) * width) >= hi

    def _grow(self, lo: float, hi: float) -> None:
        if self._covers(self.offset, self.width, lo, hi):
            return
        old_first, old_last = self.offset, self.offset + self.bins - 1
        k, width = 0, self.width
        while True:
            k += 1
            width *= 2.0
            factor = 2**k
            first = min(old_first // factor, math.floor(lo / width))
            last = max(old_last // factor, math.floor(hi / width))
            if last - first < self.bins and self._covers(first, width, lo, hi):
                break
        # |offset| stays below ~bins, so any shift past 62 maps like 62 (to 0 or -1) in int64
        shift = 2 ** min(k, 62)
        old_idx = torch.arange(old_first, old_last + 1, device=self.counts.device)
        new_idx = torch.div(old_idx, shift, rounding_mode="floor") - first
        counts = torch.zeros_like(self.counts)
        counts.index_add_(0, new_idx, self.counts)
        self.counts, self.width, self.offset = counts, width, first

    def reset(self) -> None:
        self.width, self.offset = 0.0, 0
        self.counts = torch.empty(0, device=self.counts.device)

    def extra_repr(self) -> str:
        return f"bins={self.bins}"


class _HistogramObserver(Observer):
    """Per-tensor observers that decide from a :class:`RunningHistogram` of the values.

    Symmetric formats histogram ``|x|``: only magnitudes matter to them, and folding the sign
    doubles the resolution.
    """

    def __init__(self, spec: QuantSpec, bins: int = 2048) -> None:
        super().__init__(spec)
        self._require_per_tensor()
        self.hist = RunningHistogram(bins)
        self.register_buffer("min_val", torch.empty(0), persistent=False)
        self.register_buffer("max_val", torch.empty(0), persistent=False)

    @property
    def _abs(self) -> bool:
        return self.spec.symmetric

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = self._batch_range(x)
        if self.min_val.numel() == 0:
            self.min_val, self.max_val = lo.float(), hi.float()
        else:
            self.min_val = torch.minimum(self.min_val, lo.float())
            self.max_val = torch.maximum(self.max_val, hi.float())
        lo_f, hi_f = float(lo), float(hi)
        if self._abs:
            self.hist.add(x.abs(), 0.0, max(-lo_f, hi_f))
        else:
            self.hist.add(x, lo_f, hi_f)

    def _qparams(self, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
        """qparams for ``[lo, hi]`` (``[0, amax]`` when histogramming magnitudes), never wider
        than what was observed: a bin edge may lie beyond the true extreme."""
        if self._abs:
            amax = min(hi, float(torch.maximum(-self.min_val, self.max_val)))
            lo, hi = -amax, amax
        else:
            lo, hi = max(lo, float(self.min_val)), min(hi, float(self.max_val))
        device = self.max_val.device
        return qparams_from_range(
            torch.tensor(lo, device=device), torch.tensor(hi, device=device), self.spec
        )

    def _reset(self) -> None:
        self.hist.reset()
        self.min_val = torch.empty(0, device=self.min_val.device)
        self.max_val = torch.empty(0, device=self.max_val.device)


@OBSERVERS.register("percentile")
class PercentileObserver(_HistogramObserver):
    """Clips at a percentile of the distribution, so a handful of outliers cannot set the scale.

    Symmetric formats clip ``|x|`` at the ``percentile``; asymmetric ones clip the low side at
    ``100 - percentile`` and the high side at ``percentile`` (for non-negative data the low
    side is 0 anyway, since the range always includes zero).
    """

    name = "percentile"

    def __init__(self, spec: QuantSpec, percentile: float = 99.99, bins: int = 2048) -> None:
        if not 50.0 < percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {percentile}")
        super().__init__(spec, bins)
        self.percentile = percentile

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        q = self.percentile / 100.0
        hi = self.hist.quantile(q)
        lo = 0.0 if self._abs else self.hist.quantile(1.0 - q)
        return self._qparams(lo, hi)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, percentile={self.percentile}"


def _shrink_factors(count: int, device: torch.device) -> torch.Tensor:
    """Shrink factors ``1, (count-1)/count, ..., 1/count``: widest first, so that ties keep
    the full range and the search can never do worse than minmax."""
    return torch.arange(count, 0, -1, dtype=torch.float32, device=device) / count


@OBSERVERS.register("mse")
class MseObserver(Observer):
    """Chooses the range that minimises the squared quantization error (rounding + clipping).

    Candidates are the observed ``[min, max]`` shrunk toward zero by ``1/num_candidates``
    steps, the unshrunk range included, so the result is never worse than ``minmax`` by this
    measure. Per-tensor specs evaluate the candidates on a histogram of ``x`` (each bin's
    count at its centre) and, for asymmetric formats, then shrink each end on its own.
    Per-channel specs (weights) evaluate them on the values themselves, kept as a random sample
    of at most ``max_samples`` per channel (a weight is usually far smaller than that).
    """

    name = "mse"

    def __init__(
        self,
        spec: QuantSpec,
        num_candidates: int = 100,
        bins: int = 2048,
        max_samples: int = 16384,
    ) -> None:
        if num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
        super().__init__(spec)
        self.num_candidates = num_candidates
        self.max_samples = max_samples
        self.hist = None if spec.per_channel else RunningHistogram(bins)
        self.register_buffer("min_val", torch.empty(0), persistent=False)
        self.register_buffer("max_val", torch.empty(0), persistent=False)
        self.register_buffer("samples", torch.empty(0), persistent=False)
        self._generator = torch.Generator().manual_seed(0)

    def _observe(self, x: torch.Tensor) -> None:
        lo, hi = self._batch_range(x)
        if self.min_val.numel() == 0:
            self.min_val, self.max_val = lo.float(), hi.float()
        else:
            self._check_channels(self.min_val, lo)
            self.min_val = torch.minimum(self.min_val, lo.float())
            self.max_val = torch.maximum(self.max_val, hi.float())
        if self.hist is not None:
            self.hist.add(x, float(lo), float(hi))
            return
        values = self._channels_first(x).float()
        if self.samples.numel():
            values = torch.cat([self.samples, values], dim=1)
        else:
            values = values.clone()  # never keep a view of a weight that training will change
        if values.shape[1] > self.max_samples:
            keep = torch.randperm(values.shape[1], generator=self._generator)[: self.max_samples]
            values = values[:, keep.to(values.device)]
        self.samples = values

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        factors = _shrink_factors(self.num_candidates, self.min_val.device)
        if self.hist is not None:
            return self._compute_per_tensor(factors)
        return self._compute_per_channel(factors)

    def _compute_per_tensor(self, factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        counts = self.hist.counts
        nonzero = counts > 0
        edges = self.hist.edges
        centres = ((edges[:-1] + edges[1:]) / 2)[nonzero].float()
        weights = counts[nonzero]
        # clamp centres into the true range: the outermost bins' centres may lie beyond it
        centres = torch.clamp(centres, self.min_val, self.max_val)

        def errors(lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
            scale, zp = qparams_from_range(lo, hi, self.spec)
            s, z = scale[:, None], zp[:, None].float()
            q = torch.clamp(torch.round(centres / s) + z, self.spec.qmin, self.spec.qmax)
            return (((q - z) * s - centres).double() ** 2 * weights).sum(dim=1)

        # shrink both ends together first (the unshrunk range is candidate 0)...
        err = errors(factors * self.min_val, factors * self.max_val)
        best = int(torch.argmin(err))
        lo, hi, best_err = factors[best] * self.min_val, factors[best] * self.max_val, err[best]
        if not self.spec.symmetric:
            # ...then, for asymmetric formats, each end alone: one-sided outliers (a long
            # positive tail over a compact negative side) call for unequal shrinking. Only
            # strict improvements are taken, so the error never rises above the joint search.
            for _ in range(2):
                improved = False
                for side in ("lo", "hi"):
                    cand_lo = factors * self.min_val if side == "lo" else lo.expand_as(factors)
                    cand_hi = factors * self.max_val if side == "hi" else hi.expand_as(factors)
                    err = errors(cand_lo, cand_hi)
                    best = int(torch.argmin(err))
                    if err[best] < best_err:
                        lo, hi, best_err = cand_lo[best], cand_hi[best], err[best]
                        improved = True
                if not improved:
                    break
        return qparams_from_range(lo, hi, self.spec)

    def _compute_per_channel(self, factors: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        values = self.samples
        spec = dataclasses.replace(self.spec, ch_axis=0)
        best_err = best_scale = best_zp = None
        for f in factors.tolist():  # one pass over the (small) weight per candidate
            scale, zp = qparams_from_range(f * self.min_val, f * self.max_val, spec)
            err = fake_quantize(values, scale, zp, spec).sub_(values).square_().sum(dim=1)
            if best_err is None:  # the unshrunk range: minmax
                best_err, best_scale, best_zp = err, scale, zp
                continue
            better = err < best_err  # strict: ties keep the wider range
            best_err = torch.where(better, err, best_err)
            best_scale = torch.where(better, scale, best_scale)
            best_zp = torch.where(better, zp, best_zp)
        return best_scale, best_zp

    def _reset(self) -> None:
        if self.hist is not None:
            self.hist.reset()
        device = self.min_val.device
        self.min_val = torch.empty(0, device=device)
        self.max_val = torch.empty(0, device=device)
        self.samples = torch.empty(0, device=device)
        self._generator.manual_seed(0)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, num_candidates={self.num_candidates}"


@OBSERVERS.register("entropy")
class EntropyObserver(_HistogramObserver):
    """TensorRT-style calibration: the clipping range that loses the least information.

    For each candidate window of histogram bins, ``P`` is the observed distribution clipped to
    the window (values outside it pile up in its edge bins, as clipping puts them there) and
    ``Q`` is that window re-expressed with as many levels as the integer format has
    (``2**(bits-1)`` magnitudes for symmetric formats, ``2**bits`` values otherwise), each
    level's mass spread over the bins it merges that held data. The window minimising
    ``KL(P || Q)`` wins. Symmetric formats search one threshold on ``|x|`` (TensorRT's
    algorithm, though Q's groups here are proportional rather than ``length // levels`` bins
    with the remainder in the last); asymmetric ones histogram ``x`` and move the window's two
    ends in turn (coordinate descent), so that a one-sided tail is clipped on its side only.
    """

    name = "entropy"

    #: Windows evaluated in the coarse pass of the threshold search.
    _COARSE = 128

    def __init__(self, spec: QuantSpec, bins: int = 2048) -> None:
        levels = 2 ** (spec.bits - 1) if spec.symmetric else 2**spec.bits
        if bins < levels:
            raise ValueError(f"entropy calibration needs at least {levels} bins, got {bins}")
        super().__init__(spec, bins)
        self.levels = levels

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.hist.counts.double()
        nbins, levels = self.hist.bins, self.levels
        zero = min(max(-self.hist.offset, 0), nbins)  # bin index of value 0 (0 for magnitudes)
        start, stop = 0, nbins
        # Coordinate descent over the window's two ends: for magnitudes (and non-negative
        # data) the low end is pinned at 0 and one sweep is exactly TensorRT's threshold search.
        sweeps = ["stop"] if zero == 0 else ["stop", "start", "stop"]
        for end in sweeps:
            if end == "stop":
                stops = torch.arange(max(zero + 1, start + levels), nbins + 1)
                starts = torch.full_like(stops, start)
            else:
                starts = torch.arange(0, min(zero, stop - levels) + 1)
                stops = torch.full_like(starts, stop)
            if len(starts) == 0:
                continue
            best = self._search(h, starts, stops)
            start, stop = int(starts[best]), int(stops[best])
        return self._qparams(self.hist.value_at(start), self.hist.value_at(stop))

    def _search(self, h: torch.Tensor, starts: torch.Tensor, stops: torch.Tensor) -> int:
        """Index of the window with the least divergence, coarse to fine.

        Every ``stride``-th window first, then every window around the best of those: about
        ``_COARSE + 2 * stride`` evaluations instead of one per bin (up to 2048), which keeps
        ``compute()`` well under a second on a busy CPU at the cost of possibly missing a
        narrow, isolated dip of the divergence curve.
        """
        stride = max(1, len(starts) // self._COARSE)
        coarse = torch.arange(0, len(starts), stride)
        if int(coarse[-1]) != len(starts) - 1:
            coarse = torch.cat([coarse, torch.tensor([len(starts) - 1])])
        kl = self._divergences(h, starts[coarse], stops[coarse])
        centre = int(coarse[int(torch.argmin(kl))])
        fine = torch.arange(max(0, centre - stride + 1), min(len(starts), centre + stride))
        kl = self._divergences(h, starts[fine], stops[fine])
        return int(fine[int(torch.argmin(kl))])

    def _divergences(
        self, h: torch.Tensor, starts: torch.Tensor, stops: torch.Tensor
    ) -> torch.Tensor:
        """``KL(P || Q)`` for the windows ``[start, stop)`` of histogram ``h``."""
        nbins, levels = h.numel(), self.levels
        starts, stops = starts.to(h.device), stops.to(h.device)
        lengths = stops - starts
        j = torch.arange(nbins, device=h.device)[None, :]
        a, n = starts[:, None], lengths[:, None]
        inside = (j >= a) & (j < a + n)
        clipped = h * inside
        cum = torch.cumsum(h, 0)
        below = torch.where(starts > 0, cum[(starts - 1).clamp(min=0)], 0.0)
        above = cum[-1] - cum[starts + lengths - 1]
        p = clipped.clone()
        p.scatter_add_(1, a, below[:, None])
        p.scatter_add_(1, a + n - 1, above[:, None])
        # Q: merge the window's bins into `levels` groups, spread each group over its
        # non-empty bins (outliers excluded: clipping them is what the divergence should see)
        group = torch.where(inside, torch.div((j - a) * levels, n, rounding_mode="floor"), levels)
        group = group.clamp(max=levels)
        occupied = ((h > 0) & inside).double()
        mass = torch.zeros(len(starts), levels + 1, dtype=h.dtype, device=h.device)
        mass.scatter_add_(1, group, clipped)
        filled = torch.zeros_like(mass).scatter_add_(1, group, occupied)
        q = torch.gather(mass / filled.clamp(min=1.0), 1, group) * occupied
        p = p / p.sum(dim=1, keepdim=True)
        q_total = q.sum(dim=1, keepdim=True)
        q = q / q_total.clamp(min=torch.finfo(h.dtype).tiny)
        # empty Q bins under P's mass (e.g. outliers piled into an empty edge bin) cost a
        # large but finite penalty, as in TensorRT's smoothed divergence
        q = torch.clamp(q, min=1e-12)
        terms = torch.where(p > 0, p * (torch.log(p) - torch.log(q)), 0.0)
        kl = terms.sum(dim=1)
        return torch.where(q_total[:, 0] > 0, kl, math.inf)
