"""One interface for every runtime slimcv measures on.

A :class:`Backend` turns a :class:`~slimcv.sources.model.LoadedModel` (and, for graph runtimes,
its ONNX export) into a :class:`Session` that runs NCHW float32 numpy batches. Backends are
registered by name in :data:`BACKENDS`; each imports its runtime package lazily, inside
``open``, so slimcv never imports a runtime it does not use.
"""

from __future__ import annotations

import abc
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from slimcv.errors import BackendUnavailable, SlimcvError
from slimcv.registry import Registry
from slimcv.sources.model import LoadedModel

PRECISIONS = ("f32", "bf16", "f16")


@dataclass(frozen=True)
class RuntimeOptions:
    """How a backend should run.

    Attributes:
        precision: ``f32``, ``bf16`` or ``f16``; set explicitly on every runtime (OpenVINO
            would otherwise silently pick bf16 on CPUs with AVX512-BF16).
        threads: intra-op threads; ``None`` means one per available core.
    """

    precision: str = "f32"
    threads: int | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise SlimcvError(
                f"unknown precision {self.precision!r}; known: {', '.join(PRECISIONS)}"
            )
        if self.threads is not None and self.threads < 1:
            raise SlimcvError(f"threads must be at least 1, got {self.threads}")

    def resolved_threads(self) -> int:
        return self.threads or available_cores()


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        return os.cpu_count() or 1


@dataclass
class Session(abc.ABC):
    """A model ready to run on one runtime.

    Attributes:
        backend: the backend's name.
        precision: the precision the runtime really executes (read back where possible).
        threads: intra-op threads the runtime was given.
        details: runtime facts worth reporting (device, provider, execution precision).
    """

    backend: str
    precision: str
    threads: int
    details: dict[str, Any] = field(default_factory=dict)

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """Runs one NCHW float32 batch and returns the logits as float32."""

    def close(self) -> None:  # noqa: B027 - optional hook, most sessions hold nothing to free
        """Releases the runtime's resources."""


class Backend(abc.ABC):
    """A runtime slimcv can run and measure a model on."""

    name: ClassVar[str]
    #: Whether the backend runs the ONNX export rather than the PyTorch module.
    needs_onnx: ClassVar[bool] = False
    precisions: ClassVar[tuple[str, ...]] = ("f32",)
    #: One line telling the user how to make the backend available.
    install_hint: ClassVar[str] = ""

    def unavailable_reason(self) -> str | None:
        """Why this backend cannot run here, or ``None`` if it can."""
        return None

    def check(self, options: RuntimeOptions) -> None:
        """Raises :class:`BackendUnavailable` if this backend cannot run with ``options``."""
        reason = self.unavailable_reason()
        if reason:
            raise BackendUnavailable(f"{self.name}: {reason}")
        if options.precision not in self.precisions:
            raise BackendUnavailable(
                f"{self.name} does not run {options.precision} here; it runs "
                f"{', '.join(self.precisions)}"
            )

    @abc.abstractmethod
    def open(
        self, model: LoadedModel, options: RuntimeOptions, onnx_path: Path | None = None
    ) -> Session:
        """Prepares ``model`` (or its ONNX export ``onnx_path``) to run."""


BACKENDS: Registry[type[Backend]] = Registry("backend")


def get_backend(name: str) -> Backend:
    """Returns a backend instance by name (import of its runtime is deferred to ``open``)."""
    # The backend modules register themselves on import; importing them is cheap because each
    # imports its runtime package only when opening a session.
    import slimcv.runtimes.backends  # noqa: F401

    return BACKENDS.get(name)()


def package_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None
