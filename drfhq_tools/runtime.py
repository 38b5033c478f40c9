"""Process-level settings for the generator stages."""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks instead of unmapping them. A generator step allocates and frees
    the same large activations every time; with glibc's defaults each one is mapped anew and zeroed
    by the kernel, which on the CPU cost more than half of a MobileStyleGAN training step."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        # no mmap'd blocks (their threshold cannot be raised past 32 MB, below one activation map),
        # and a heap that is not trimmed back to the kernel until 1 GiB lies free at its top
        ok = libc.mallopt(_M_MMAP_MAX, 0)
        return bool(ok and libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30))
    except (OSError, AttributeError):
        return False
