"""Progress bars on stderr, so ``--json`` output on stdout stays machine-readable."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

_STDERR = Console(stderr=True)


@contextlib.contextmanager
def progress_bar(enabled: bool = True) -> Iterator[Progress]:
    """A Rich progress bar on stderr; disabled (but still usable) when ``enabled`` is False.

    Bars are also hidden when stderr is not a terminal, unless ``enabled`` is forced; this
    keeps CI logs short.
    """
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=_STDERR,
        disable=not enabled or not sys.stderr.isatty(),
        transient=False,
    )
    with progress:
        yield progress
