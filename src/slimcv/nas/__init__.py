"""Neural architecture search: spaces, strategies, estimators, latency tables, the supernet.

The entry point is :func:`search` (``slimcv search`` on the command line)::

    from slimcv.nas import SearchConfig, search
    result = search("mobilenetv2", "digits", SearchConfig(trials=8, epochs=2))

The names below are imported on first use, so ``import slimcv.nas.space`` stays light.
"""

from __future__ import annotations

from typing import Any

_API = ("BaselineResult", "FrontMember", "SearchConfig", "SearchResult", "TrialRecord", "search")

__all__ = list(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        from slimcv.nas import api

        return getattr(api, name)
    raise AttributeError(f"module 'slimcv.nas' has no attribute {name!r}")
