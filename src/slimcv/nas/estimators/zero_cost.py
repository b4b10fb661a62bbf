"""``zero-cost``: score an *untrained* candidate from one batch in about a second.

Proxies (all computed at the seeded initialisation, on a fixed seeded batch of the train split
at the candidate's resolution):

``naswot``
    Mellor et al., "Neural Architecture Search without Training" (ICML 2021): the binary
    codes of which activations fire for each image form a kernel ``K[i, j]`` = number of
    units on which images i and j agree; the score is ``log det(K + I)``. Networks that
    already separate the images into different linear regions score higher.
``synflow``
    Tanaka et al., "Pruning neural networks without any data" (NeurIPS 2020), used as an
    architecture proxy by Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS" (ICLR
    2021): with all weights made positive and an all-ones input, ``sum |theta * dR/dtheta|``
    for ``R`` = sum of the outputs, in float64 with BatchNorm in eval mode (an identity at
    initialisation). Reported as its natural log. Data-free; grows with trainable capacity.
``gradnorm``
    The log of the sum of the L2 norms of each parameter's cross-entropy gradient on the batch.

The estimate's ``score`` is the sum of the selected proxies, each on a log scale (default
``naswot`` + ``synflow``); each proxy's value is kept in ``details``. ``is_accuracy`` is False:
a search run with this estimator puts a *proxy* on its front's accuracy axis, useful to rank
candidates cheaply, not a top-1 anyone should quote.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from slimcv.data import load_data
from slimcv.errors import SearchError
from slimcv.nas.estimators.base import ESTIMATORS, Estimate, Estimator, EstimatorContext
from slimcv.nas.space import Candidate

_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.Hardswish, nn.GELU)

Proxy = Callable[[nn.Module, torch.Tensor, torch.Tensor], float]


def naswot(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """``log det(K + I)`` of the activation-pattern agreement kernel (Mellor et al.)."""
    n = len(images)
    kernel = torch.zeros(n, n, dtype=torch.float64)

    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        codes = (output.detach() > 0).flatten(1).float()
        # Agreements on firing plus agreements on not firing; exact small integers in float32.
        agree = codes @ codes.T + (1 - codes) @ (1 - codes).T
        kernel.add_(agree.double())

    handles = [
        m.register_forward_hook(hook) for m in model.modules() if isinstance(m, _ACTIVATIONS)
    ]
    try:
        model.train()  # batch statistics, as in the paper's untrained networks
        with torch.no_grad():
            model(images)
    finally:
        for handle in handles:
            handle.remove()
    # The identity keeps the determinant finite when two images share a code (K singular).
    _sign, logdet = torch.linalg.slogdet(kernel + torch.eye(n, dtype=torch.float64))
    return float(logdet)


def synflow(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """``log sum |theta * dR/dtheta|`` with positive weights and an all-ones input."""
    model.double().eval()
    with torch.no_grad():
        for param in model.parameters():
            param.abs_()
    model.zero_grad(set_to_none=True)
    ones = torch.ones((1, *images.shape[1:]), dtype=torch.float64)
    model(ones).sum().backward()
    total = sum(
        float((p.detach() * p.grad).abs().sum()) for p in model.parameters() if p.grad is not None
    )
    return math.log(total) if total > 0 else -math.inf


def grad_norm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """``log sum ||dL/dtheta||`` of the cross-entropy on the batch."""
    # channels_last avoids PyTorch's slow CPU backward of NCHW depthwise convolutions.
    model.to(memory_format=torch.channels_last).train()
    model.zero_grad(set_to_none=True)
    nn.functional.cross_entropy(model(images), labels).backward()
    total = sum(float(p.grad.norm()) for p in model.parameters() if p.grad is not None)
    return math.log(total) if total > 0 else -math.inf


PROXIES: dict[str, Proxy] = {"naswot": naswot, "synflow": synflow, "gradnorm": grad_norm}


@ESTIMATORS.register("zero-cost")
class ZeroCost(Estimator):
    """Training-free proxies summed on a log scale.

    Options (``EstimatorContext.options``): ``proxies`` (a list or comma-separated string,
    default ``naswot,synflow``) and ``batch_size`` (images in the scoring batch, default 64).
    """

    name = "zero-cost"
    is_accuracy = False

    def __init__(self, context: EstimatorContext) -> None:
        super().__init__(context)
        proxies = context.options.get("proxies", ("naswot", "synflow"))
        if isinstance(proxies, str):
            proxies = [p.strip() for p in proxies.split(",") if p.strip()]
        unknown = [p for p in proxies if p not in PROXIES]
        if unknown or not proxies:
            raise SearchError(
                f"unknown zero-cost proxies {unknown or proxies}; known: {', '.join(PROXIES)}"
            )
        self.proxies = tuple(proxies)
        self.batch_size = int(context.options.get("batch_size", 64))
        self._batches: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_batches"] = {}
        return state

    def batch(self, image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed seeded batch of the train split at ``image_size`` pixels."""
        if image_size not in self._batches:
            data = load_data(self.context.data, image_size=image_size, seed=self.context.seed)
            generator = torch.Generator().manual_seed(self.context.seed)
            size = len(data.train)  # type: ignore[arg-type]
            picked = torch.randperm(size, generator=generator)[: self.batch_size].tolist()
            items = [data.train[i] for i in picked]
            images = torch.stack([image for image, _ in items])
            labels = torch.tensor([label for _, label in items])
            self._batches[image_size] = (images, labels)
        return self._batches[image_size]

    def evaluate(self, candidate: Candidate) -> Estimate:
        start = time.perf_counter()
        images, labels = self.batch(candidate.image_size)
        values = {}
        for name in self.proxies:
            # A fresh, identically seeded network per proxy: synflow rewrites the weights.
            values[name] = PROXIES[name](self.build(candidate), images, labels)
        return Estimate(
            score=sum(values.values()),
            is_accuracy=False,
            seconds=time.perf_counter() - start,
            details={"proxies": values},
        )
