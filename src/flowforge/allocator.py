"""Process-wide allocator settings for the command-line tool.

On Linux with glibc, a tensor above ``M_MMAP_THRESHOLD`` (128 KiB at start, adjusted upwards
as blocks are freed) is mapped fresh from the kernel, and freed heap above
``M_TRIM_THRESHOLD`` is handed back; either way the next tensor of that size page-faults on
its first write. Flow layers allocate activation-sized tensors (``batch x 128`` floats, 2 MiB
at batch 4096) several times per layer, so at evaluation batch sizes much of ``log_prob`` is
page faults: ``torch.profiler`` shows them as ``aten::copy_`` inside ``addmm``. Raising both
thresholds keeps freed blocks for reuse. ``python benchmarks/malloc_env.py`` measures it
(``docs/benchmarks.md``).

This changes the whole process, so the library never does it on import; ``flowforge`` (the
CLI) calls :func:`tune_allocator` at start unless ``FLOWFORGE_NO_MALLOC_TUNING`` is set. A
program that embeds flowforge can call it, or export ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` before Python starts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import platform

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "tune_allocator"]

MMAP_THRESHOLD = 64 << 20  # bytes: blocks below come from the reusable heap
TRIM_THRESHOLD = 128 << 20  # bytes of free heap kept before any is returned

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers


def tune_allocator() -> bool:
    """Raises glibc's mmap and trim thresholds; ``False`` (and no change) elsewhere or when
    ``FLOWFORGE_NO_MALLOC_TUNING`` is set."""
    if os.environ.get("FLOWFORGE_NO_MALLOC_TUNING"):
        return False
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(
        mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    )
