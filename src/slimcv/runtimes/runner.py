"""Run a model on batches on any backend, for accuracy work (eval, predict, export checks)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from slimcv.errors import InputShapeError
from slimcv.runtimes.base import RuntimeOptions, get_backend
from slimcv.sources.model import LoadedModel

LogitsFn = Callable[[torch.Tensor], torch.Tensor]


def logits_fn(
    model: LoadedModel,
    backend: str | None = None,
    options: RuntimeOptions | None = None,
    graph_path: Path | None = None,
) -> LogitsFn:
    """A function from an NCHW float batch to logits.

    Args:
        model: the model; a PyTorch module runs as is unless ``backend`` says otherwise.
        backend: a runtime name; default ``torch`` for modules, ``onnxruntime`` for ONNX files.
        options: precision and threads for the backend (default f32, all cores).
        graph_path: the exported file a graph runtime runs (default ``model.onnx_path``).

    The model is tried once on a batch of the configured size first, so an input size it
    cannot take fails with one clear line before any real work starts.
    """
    if backend is None and model.module is not None:
        module = model.module.eval()

        def run(batch: torch.Tensor) -> torch.Tensor:
            with torch.inference_mode():
                return module(batch)

    else:
        runtime = get_backend(backend or "onnxruntime")
        opts = options or RuntimeOptions()
        runtime.check(opts)
        session = runtime.open(model, opts, graph_path or model.onnx_path)

        def run(batch: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(session.run(batch.numpy().astype(np.float32)))

    check_input_size(run, model.input_shape(1))
    return run


def check_input_size(run: Callable[[torch.Tensor], object], shape: tuple[int, ...]) -> None:
    """Raises :class:`InputShapeError` if ``run`` fails on a zero batch of ``shape``."""
    try:
        run(torch.zeros(shape))
    except Exception as exc:  # noqa: BLE001 - torch, ORT and user code raise many types
        text = "x".join(map(str, shape))
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise InputShapeError(f"model cannot take input {text}: {first[:300]}") from None
