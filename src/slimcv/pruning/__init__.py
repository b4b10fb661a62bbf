"""Pruning: structured (channels, filters, heads, blocks) and unstructured (weights, 2:4).

Modules: ``structured`` (Torch-Pruning's dependency graph plus slimcv's fixes), ``criteria``,
``unstructured`` and ``schedules`` (masks and sparsity schedules), ``targets`` (ratio searches
for MACs and measured latency), ``sensitivity`` (per-layer curves and allocation), ``api``
(``slimcv.prune``). Names are resolved lazily so that importing one part does not import all.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PruneConfig": "slimcv.pruning.api",
    "PruneResult": "slimcv.pruning.api",
    "prune": "slimcv.pruning.api",
    "StructuredConfig": "slimcv.pruning.structured",
    "StructuredReport": "slimcv.pruning.structured",
    "prune_structured_": "slimcv.pruning.structured",
    "prunable_layers": "slimcv.pruning.structured",
    "remove_blocks_": "slimcv.pruning.structured",
    "UnstructuredConfig": "slimcv.pruning.unstructured",
    "apply_masks_": "slimcv.pruning.unstructured",
    "make_permanent_": "slimcv.pruning.unstructured",
    "sparsity_report": "slimcv.pruning.unstructured",
    "SensitivityResult": "slimcv.pruning.sensitivity",
    "analyze_sensitivity": "slimcv.pruning.sensitivity",
    "plot_sensitivity": "slimcv.pruning.sensitivity",
}

__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'slimcv.pruning' has no attribute {name!r}")
