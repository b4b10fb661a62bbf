"""Early exits (dynamic inference): easy inputs leave the network at an intermediate classifier.

:class:`EarlyExitNet` attaches an :class:`~slimcv.arch.blocks.exits.ExitHead` after named
layers of any backbone (``stages.1`` of a SpecNet, ``layer2`` of a resnet) through forward
hooks, so the backbone's code is not touched and its own classifier is the last exit.

- **Training**: in train mode ``forward`` returns every exit's logits, shallow to deep, the
  backbone's last; :class:`EarlyExitObjective` minimises a weighted sum of their
  cross-entropies through the shared training engine (:func:`slimcv.training.fit`). In eval
  mode ``forward`` is the plain backbone, so the engine's validation, profiling and export see
  the full network.
- **Inference**: :meth:`EarlyExitNet.predict` gives each sample the logits of the first exit
  whose top softmax probability reaches the threshold (batch-1 semantics, computed for a batch
  with masks), and stops the backbone as soon as every sample of the batch has left.
- **Cost**: a sample leaving at exit ``i`` ran the backbone up to that layer and the heads of
  exits ``0..i`` (each was needed to decide); :meth:`EarlyExitNet.path_macs` measures each path
  with :func:`slimcv.analysis.profile_model` on a forward pass that really stops there. A
  threshold above 1 can never be met, so :meth:`predict` then runs the plain backbone, without
  heads, at exactly the full network's cost. The average MACs at a threshold is the mean of the
  samples' path MACs (:func:`tradeoff`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from slimcv.arch.blocks.exits import ExitHead
from slimcv.errors import SlimcvError, UnknownNameError
from slimcv.training.objective import Objective, StepOutput

FINAL = "final"


class _Exited(Exception):
    """Raised from an exit hook to stop the backbone once every sample has left."""


@contextlib.contextmanager
def _hooks(modules: Sequence[nn.Module], hook: Any) -> Iterator[None]:
    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _first_tensor(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, (tuple, list)) else output


class EarlyExitNet(nn.Module):
    """A backbone with exit heads after named layers.

    Args:
        backbone: the classifier; its output is the last exit.
        exits: layer names, shallow to deep, each run exactly once per forward pass and
            producing an (N, C, H, W) map.
        input_shape: batch-1 input shape, to size the heads and measure path MACs.
        hidden_channels: width of each head's 1x1 conv (after pooling); 0 for a linear head.
        dropout: dropout in each head.

    Raises:
        UnknownNameError: an exit is not a layer of the backbone (the message lists them).
        SlimcvError: no exits, exits out of execution order, or an exit that is not a map.
    """

    def __init__(
        self,
        backbone: nn.Module,
        exits: Sequence[str],
        *,
        input_shape: tuple[int, ...] = (1, 3, 32, 32),
        hidden_channels: int = 0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        exits = tuple(exits)
        if not exits:
            raise SlimcvError("an early-exit network needs at least one exit layer")
        layers = dict(backbone.named_modules())
        layers.pop("", None)
        for name in exits:
            if name not in layers:
                known = ", ".join(n for n in layers if n.count(".") <= 1)
                raise UnknownNameError(f"the backbone has no layer {name!r}; its layers: {known}")
        shapes, order, output = _probe(backbone, [layers[n] for n in exits], input_shape)
        for name, shape, calls in zip(exits, shapes, order, strict=True):
            if len(calls) != 1:
                raise SlimcvError(
                    f"exit layer {name!r} runs {len(calls)} times per forward pass, not once"
                )
            if len(shape) != 4:
                raise SlimcvError(f"exit layer {name!r} outputs shape {shape}, not an NCHW map")
        first_calls = [calls[0] for calls in order]
        if first_calls != sorted(first_calls):
            ran = [n for _, n in sorted(zip(first_calls, exits, strict=True))]
            raise SlimcvError(f"list exits shallow to deep, as they run: {','.join(ran)}")
        if len(output) != 2:
            raise SlimcvError(f"the backbone outputs shape {output}, not (N, classes) logits")
        self.backbone = backbone
        self.exits = exits
        self.num_classes = output[1]
        self.input_shape = tuple(input_shape)
        self.heads = nn.ModuleList(
            ExitHead(shape[1], self.num_classes, hidden_channels=hidden_channels, dropout=dropout)
            for shape in shapes
        )

    @property
    def path_names(self) -> list[str]:
        """The exits' names and ``final`` (the backbone's own classifier)."""
        return [*self.exits, FINAL]

    def _exit_modules(self) -> list[nn.Module]:
        return [self.backbone.get_submodule(name) for name in self.exits]

    def forward_all(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Every exit's logits, shallow to deep, then the backbone's (one backbone pass)."""
        features: dict[int, torch.Tensor] = {}

        def hook(index: int) -> Any:
            def store(module: nn.Module, args: Any, output: Any) -> None:
                features[index] = _first_tensor(output)

            return store

        with _hooks(self._exit_modules(), hook):
            final = self.backbone(x)
        return [head(features[i]) for i, head in enumerate(self.heads)] + [final]

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:  # type: ignore[override]
        """Train mode: all exits' logits (for the loss); eval mode: the plain backbone."""
        return self.forward_all(x) if self.training else self.backbone(x)

    @torch.no_grad()
    def predict(self, x: torch.Tensor, threshold: float) -> ExitDecision:
        """Classifies ``x`` leaving each sample at its first confident exit.

        A sample takes exit ``i`` when exit ``i``'s top softmax probability is ``>= threshold``
        and no earlier exit's was; samples no exit is sure of get the backbone's logits. The
        backbone stops once every sample has left, so a batch of one runs exactly its path.
        """
        was_training = self.training
        self.eval()
        try:
            return self._predict(x, threshold)
        finally:
            self.train(was_training)

    def _predict(self, x: torch.Tensor, threshold: float) -> ExitDecision:
        n = x.shape[0]
        last = len(self.exits)
        exit_index = torch.full((n,), last, dtype=torch.long, device=x.device)
        if threshold > 1:  # no softmax reaches it: skip the heads entirely
            logits = self.backbone(x)
            return ExitDecision(logits, exit_index, torch.softmax(logits, 1).amax(1))
        chosen: torch.Tensor | None = None
        confidence = torch.zeros(n, device=x.device)
        done = torch.zeros(n, dtype=torch.bool, device=x.device)

        def hook(index: int) -> Any:
            def decide(module: nn.Module, args: Any, output: Any) -> None:
                nonlocal chosen
                logits = self.heads[index](_first_tensor(output))
                if chosen is None:
                    chosen = torch.empty_like(logits)
                conf = torch.softmax(logits, 1).amax(1)
                take = ~done & (conf >= threshold)
                chosen[take] = logits[take]
                confidence[take] = conf[take]
                exit_index[take] = index
                done.logical_or_(take)
                if bool(done.all()):
                    raise _Exited

            return decide

        final = None
        with _hooks(self._exit_modules(), hook), contextlib.suppress(_Exited):
            final = self.backbone(x)
        if final is not None:
            rest = ~done
            if chosen is None:
                chosen = final.clone()
            chosen[rest] = final[rest]
            confidence[rest] = torch.softmax(final[rest], 1).amax(1)
        assert chosen is not None
        return ExitDecision(chosen, exit_index, confidence)

    def path_macs(self, input_shape: tuple[int, ...] | None = None) -> list[int]:
        """Batch-1 MACs of leaving at each exit (``final`` last), measured by profile_model.

        Path ``i`` runs the backbone up to exit ``i`` and the heads of exits ``0..i``; the
        ``final`` path runs the whole backbone and every head.
        """
        from slimcv.analysis import profile_model

        shape = tuple(input_shape or self.input_shape)
        return [profile_model(_ExitPath(self, i), shape).macs for i in range(len(self.exits) + 1)]

    def backbone_macs(self, input_shape: tuple[int, ...] | None = None) -> int:
        """Batch-1 MACs of the plain backbone: the full network, no head evaluated."""
        from slimcv.analysis import profile_model

        return profile_model(self.backbone, tuple(input_shape or self.input_shape)).macs


class _ExitPath(nn.Module):
    """What a sample leaving at exit ``index`` runs (for profiling): the backbone up to that
    exit, really stopped there, and the heads of exits ``0..index``."""

    def __init__(self, net: EarlyExitNet, index: int) -> None:
        super().__init__()
        self.net = net
        self.index = index

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        net, out = self.net, []

        def hook(index: int) -> Any:
            def run(module: nn.Module, args: Any, output: Any) -> None:
                if index <= self.index:
                    out.append(net.heads[index](_first_tensor(output)))
                if index == self.index:
                    raise _Exited

            return run

        with _hooks(net._exit_modules(), hook), contextlib.suppress(_Exited):
            out.append(net.backbone(x))
        return out[-1]


def _probe(
    backbone: nn.Module, modules: list[nn.Module], input_shape: tuple[int, ...]
) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """Output shapes and call positions of ``modules``, and the backbone's output shape."""
    shapes: list[list[int]] = [[] for _ in modules]
    calls: list[list[int]] = [[] for _ in modules]
    counter = [0]

    def hook(index: int) -> Any:
        def record(module: nn.Module, args: Any, output: Any) -> None:
            counter[0] += 1
            calls[index].append(counter[0])
            shapes[index] = list(_first_tensor(output).shape)

        return record

    was_training = backbone.training
    param = next(iter(backbone.parameters()), torch.empty(0))
    try:
        backbone.eval()
        with torch.no_grad(), _hooks(modules, hook):
            out = backbone(torch.zeros(input_shape, dtype=param.dtype, device=param.device))
    finally:
        backbone.train(was_training)
    return shapes, calls, list(_first_tensor(out).shape)


@dataclass
class ExitDecision:
    """What :meth:`EarlyExitNet.predict` decided for a batch.

    Attributes:
        logits: (N, classes) logits of the exit each sample took.
        exit_index: (N,) index of that exit in :attr:`EarlyExitNet.path_names`.
        confidence: (N,) its top softmax probability.
    """

    logits: torch.Tensor
    exit_index: torch.Tensor
    confidence: torch.Tensor


def choose_exits(
    all_logits: Sequence[torch.Tensor], threshold: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The exit rule applied to precomputed logits (every exit's, the final last).

    Returns:
        The chosen logits (N, classes) and exit indices (N,), exactly as
        :meth:`EarlyExitNet.predict` chooses them.
    """
    last = len(all_logits) - 1
    chosen = all_logits[-1].clone()
    index = torch.full((chosen.shape[0],), last, dtype=torch.long, device=chosen.device)
    if threshold > 1:
        return chosen, index
    for i in range(last - 1, -1, -1):  # deep to shallow: the shallowest confident exit wins
        take = torch.softmax(all_logits[i], 1).amax(1) >= threshold
        chosen[take] = all_logits[i][take]
        index[take] = i
    return chosen, index


class EarlyExitObjective(Objective):
    """A weighted sum of every exit's cross-entropy (the backbone's classifier included).

    Args:
        weights: one weight per exit, shallow to deep, the backbone's last; default all 1.
        label_smoothing: cross-entropy label smoothing.
    """

    def __init__(self, weights: Sequence[float] | None = None, label_smoothing: float = 0.0):
        super().__init__()
        if weights is not None and any(w < 0 for w in weights):
            raise SlimcvError(f"exit weights must be >= 0, got {list(weights)}")
        self.weights = None if weights is None else [float(w) for w in weights]
        self.label_smoothing = label_smoothing

    def forward(  # type: ignore[override]
        self,
        module: nn.Module,
        images: torch.Tensor,
        labels: torch.Tensor,
        indices: torch.Tensor,
    ) -> StepOutput:
        outputs = module(images)
        if not isinstance(outputs, (list, tuple)):
            raise SlimcvError("the early-exit objective trains an EarlyExitNet (in train mode)")
        weights = self.weights or [1.0] * len(outputs)
        if len(weights) != len(outputs):
            raise SlimcvError(f"{len(weights)} exit weights for {len(outputs)} exits")
        loss = outputs[-1].new_zeros(())
        parts = {}
        for i, (logits, weight) in enumerate(zip(outputs, weights, strict=True)):
            ce = nn.functional.cross_entropy(
                logits.float(), labels, label_smoothing=self.label_smoothing
            )
            loss = loss + weight * ce
            parts[f"ce:{i}"] = float(ce.detach())
        return StepOutput(loss, outputs[-1], parts)


class TradeoffPoint(NamedTuple):
    """Accuracy and cost at one threshold.

    Attributes:
        threshold: the confidence an exit must reach.
        top1: accuracy (percent) of the chosen exits' predictions.
        avg_macs: mean batch-1 MACs of the samples' paths.
        histogram: samples per exit, by name (``final`` for the backbone).
    """

    threshold: float
    top1: float
    avg_macs: float
    histogram: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return dict(self._asdict())


def _batches(data: Any, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    from slimcv.data import DataBundle

    if isinstance(data, DataBundle):
        data = data.val
    if isinstance(data, Dataset):
        return DataLoader(data, batch_size=batch_size)
    return data  # already batches of (images, labels)


@torch.no_grad()
def tradeoff(
    model: EarlyExitNet,
    data: Any,
    thresholds: Sequence[float],
    *,
    batch_size: int = 256,
) -> list[TradeoffPoint]:
    """Accuracy against average MACs over ``thresholds``.

    Every exit's logits are computed once per batch; each threshold then applies
    :func:`choose_exits` (the rule :meth:`EarlyExitNet.predict` uses).

    Args:
        data: a :class:`~slimcv.data.DataBundle` (its val split), a dataset, or an iterable of
            ``(images, labels)`` batches.
    """
    was_training = model.training
    model.eval()
    try:
        collected: list[list[torch.Tensor]] = []
        labels_all = []
        device = next(iter(model.parameters()), torch.empty(0)).device
        for images, labels in _batches(data, batch_size):
            collected.append([t.cpu() for t in model.forward_all(images.to(device))])
            labels_all.append(torch.as_tensor(labels))
    finally:
        model.train(was_training)
    if not labels_all:
        raise SlimcvError("tradeoff needs at least one labeled sample")
    all_logits = [torch.cat(parts) for parts in zip(*collected, strict=True)]
    labels = torch.cat(labels_all)
    paths = torch.tensor(model.path_macs(), dtype=torch.float64)
    plain = float(model.backbone_macs())
    names = model.path_names
    points = []
    for threshold in thresholds:
        chosen, index = choose_exits(all_logits, threshold)
        counts = torch.bincount(index, minlength=len(names))
        avg = plain if threshold > 1 else float(paths[index].mean())
        points.append(
            TradeoffPoint(
                threshold=float(threshold),
                top1=100 * float((chosen.argmax(1) == labels).float().mean()),
                avg_macs=avg,
                histogram={n: int(c) for n, c in zip(names, counts, strict=True)},
            )
        )
    return points
