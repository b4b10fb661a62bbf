"""Runtime backends behind one interface (see :mod:`slimcv.runtimes.base`)."""

from slimcv.runtimes.base import (
    BACKENDS,
    PRECISIONS,
    Backend,
    RuntimeOptions,
    Session,
    available_cores,
    get_backend,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "RuntimeOptions",
    "Session",
    "available_cores",
    "get_backend",
]
