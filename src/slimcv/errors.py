"""Typed errors for user mistakes.

Every problem a user can cause (a bad path, a malformed source string, a broken checkpoint, an
image size the model cannot take) is raised as a subclass of :class:`SlimcvError` with a message
that fits on one line. The CLI turns these into one line on stderr and exit code 2; anything
else is a bug in slimcv and keeps its traceback.
"""

from __future__ import annotations


class SlimcvError(Exception):
    """Base class: a problem with the user's input, explained in one line."""


class SourceError(SlimcvError):
    """A model source string is malformed, unknown or points at nothing."""


class CheckpointError(SlimcvError):
    """A checkpoint is missing, truncated, not a checkpoint, unsafe, or does not fit the model."""


class ArtifactError(SlimcvError):
    """An artifact directory is incomplete, corrupted, or would overwrite its own input."""


class DataError(SlimcvError):
    """A data source is malformed, empty, or unreadable."""


class InputShapeError(SlimcvError):
    """The model cannot take inputs of the requested size."""


class BackendUnavailable(SlimcvError):
    """A runtime cannot run here (package missing, no GPU); the message says how to fix it."""


class ExportError(SlimcvError):
    """Export failed or the exported model does not match PyTorch."""


class UnknownNameError(SlimcvError, KeyError):
    """A registry look-up for a name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class SpecError(SlimcvError):
    """An architecture spec string is malformed; the message points at the bad token."""


class SearchError(SlimcvError):
    """A search cannot run as asked (unknown space or objective, impossible budget)."""


class RecipeError(SlimcvError):
    """A recipe file is malformed; the message names the file, the line and the key."""
