"""Keep freed memory in the process while timing, so page faults do not pose as compute.

glibc's malloc hands large blocks (PyTorch's activation tensors: 25 MB each for resnet18 at
batch 8) back to the kernel when they are freed, so the next call faults every page in again,
zeroed. Whether it does depends on the allocation history of the whole process (its dynamic
mmap threshold and heap trimming), which made PyTorch eager at batch 8 swing 10-20% between two
benchmarks of the same model. Raising the mmap and trim thresholds for the duration of the
measurement gives the steady state a long-running server reaches, and that every caching
allocator (jemalloc, tcmalloc, ONNX Runtime's and OpenVINO's arenas) gives anyway.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import platform
from collections.abc import Iterator

# mallopt parameters from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_GLIBC_DEFAULT_THRESHOLD = 128 * 1024
_KEEP = 1 << 30  # 1 GiB: no single inference buffer is that large on a CPU


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:  # pragma: no cover
        return None


@contextlib.contextmanager
def steady_malloc(enabled: bool = True) -> Iterator[str | None]:
    """Raises glibc's mmap and trim thresholds for the block, then restores and trims.

    After the block the thresholds return to glibc's documented defaults (128 KiB) as fixed
    values, and the memory kept meanwhile is returned to the OS with ``malloc_trim``.

    Yields:
        A description for the records, or ``None`` where nothing was changed (disabled, or
        not glibc).
    """
    libc = _glibc() if enabled else None
    if libc is None or not (
        libc.mallopt(_M_MMAP_THRESHOLD, _KEEP) and libc.mallopt(_M_TRIM_THRESHOLD, _KEEP)
    ):
        yield None
        return
    try:
        yield "glibc malloc kept freed memory while timing (mmap and trim thresholds 1 GiB)"
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_THRESHOLD)
        libc.malloc_trim(0)
