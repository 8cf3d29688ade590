"""Host allocator settings for training: glibc's malloc keeps freed memory for the next batch.

By default glibc serves blocks of more than 128 KiB (a threshold it raises, up to 32 MiB, as such
blocks are freed) with fresh ``mmap`` pages and gives the top of its heap back to the system once
128 KiB (then twice the threshold) are free there. A training step allocates and frees the same
few-MiB tensors every batch (images, warps, heatmaps, activations, gradients), so the system zeroes
and maps their pages again on every step: thousands of page faults a step, 2-10 ms of a 90 ms CPU
step of the heatmapper, and a step time that moves with the heap's state from run to run.
``keep_freed_host_memory`` serves blocks up to 32 MiB from the heap and keeps up to 1 GiB free
there, so the pages are mapped once. The same effect as ``MALLOC_MMAP_THRESHOLD_`` and
``MALLOC_TRIM_THRESHOLD_`` in the environment, or an allocator such as jemalloc under
``LD_PRELOAD`` (then this changes nothing, as glibc's malloc is not the one in use).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

M_TRIM_THRESHOLD = -1  # glibc <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024**2  # glibc's largest (HEAP_MAX_SIZE / 2 on 64-bit)
TRIM_THRESHOLD = 1024**3


def keep_freed_host_memory(mmap_threshold: int = MMAP_THRESHOLD, trim_threshold: int = TRIM_THRESHOLD) -> bool:
    """Set glibc's ``M_MMAP_THRESHOLD`` and ``M_TRIM_THRESHOLD`` for this process (bytes). Returns
    whether both were set: False off Linux, without glibc (musl has no ``mallopt``), if glibc
    refused a value, or if ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` is set in the
    environment (the user's own setting wins)."""
    if not sys.platform.startswith("linux") or any(k in os.environ for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt(M_MMAP_THRESHOLD, int(mmap_threshold)) == 1 and mallopt(M_TRIM_THRESHOLD, int(trim_threshold)) == 1
