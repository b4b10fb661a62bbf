"""``slimcv search``: hardware-aware neural architecture search."""

from __future__ import annotations

from slimcv.cli import app  # noqa: F401
