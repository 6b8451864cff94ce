"""Out of memory: what counts as it, and a batch size that halves when it happens.

Evaluation (image features, text classifiers) and synthetic generation run their batches through one
:class:`HalvingBatch`: a CUDA out-of-memory error or a failed CPU allocation halves the batch and
retries the same items, down to one at a time, and then fails with a one-line
:class:`~clipunlearn.errors.NotEnoughMemoryError`. Each :class:`HalvingBatch` warns once, at its
first halving (later halvings are logged at INFO), and keeps the size that fitted for the batches
after it. Training does not retry: the loop stops the run naming the batch size to try
(:mod:`clipunlearn.training.loop`).

:func:`steady_heap` keeps a long evaluation's peak memory from creeping up with the number of images.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import sys
from collections.abc import Callable
from typing import TypeVar

import torch

from .errors import ClipUnlearnError, NotEnoughMemoryError

log = logging.getLogger("clipunlearn")
T = TypeVar("T")

#: what an allocator says when it could not allocate (CUDA, MPS, the CPU allocator on Linux and Windows)
_OUT_OF_MEMORY_MESSAGES = ("out of memory", "can't allocate memory", "cannot allocate memory",
                           "could not allocate", "not enough memory")


#: glibc's mallopt parameter for the size above which an allocation gets pages of its own (mmap)
_M_MMAP_THRESHOLD = -3
#: 128 KiB: glibc's starting value, which it then raises to the largest block freed so far (up to 32 MiB)
STEADY_MMAP_THRESHOLD = 128 * 1024


def steady_heap(threshold: int = STEADY_MMAP_THRESHOLD) -> bool:
    """Fix glibc's mmap threshold at ``threshold`` bytes for this process; True where it was set.

    glibc serves blocks above the threshold from pages of their own, returned to the system when freed,
    but raises the threshold to the largest block freed so far: after the first batches an evaluation's
    per-batch tensors (a few MiB to 32 MiB) come from the heap, which then holds on to the pages of
    every size it has served, and peak RSS creeps up with the number of images (mini-rn, 1000 classes:
    1060 MiB at 10k images, 1097 at 30k). With the threshold fixed it stayed flat (935, 945 MiB;
    docs/results/eval-memory-mini-rn.md). A no-op (False) outside glibc (macOS, Windows, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, int(threshold)))


def is_out_of_memory(error: BaseException) -> bool:
    """True for ``torch.cuda.OutOfMemoryError``, ``MemoryError`` and a ``RuntimeError`` whose message
    says that memory could not be allocated (e.g. "DefaultCPUAllocator: can't allocate memory")."""
    if isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    if isinstance(error, RuntimeError):
        text = str(error).lower()
        return any(m in text for m in _OUT_OF_MEMORY_MESSAGES)
    return False


def first_line(error: BaseException, limit: int = 160) -> str:
    """The first line of an error's message, at most ``limit`` characters, for a one-line error."""
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def free_memory() -> None:
    """Give back what the failed attempt held: Python's cycles, and CUDA's cached blocks."""
    gc.collect()
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()


class HalvingBatch:
    """A batch size that halves when a batch runs out of memory (see the module docstring).

    ``what`` completes "out of memory ...", e.g. ``"computing image features"``.
    """

    def __init__(self, size: int, what: str):
        if size < 1:
            raise ClipUnlearnError(f"The batch size for {what} must be at least 1, got {size}.")
        self.size = int(size)
        self.what = what
        self.halvings = 0

    def run(self, fn: Callable[[int], T], limit: int | None = None) -> T:
        """``fn(size)`` with ``size`` = the current batch size (at most ``limit``, the items left);
        out of memory: the size halves and ``fn`` runs again on the same items. ``fn`` must not have
        changed anything before it ran out of memory."""
        while True:
            size = self.size if limit is None else max(1, min(self.size, limit))
            try:
                return fn(size)
            except (RuntimeError, MemoryError) as e:
                if not is_out_of_memory(e):
                    raise
                reason = first_line(e)
            # out of the except block: the failed attempt's tensors, held by its traceback, are freed
            self._halve(size, reason)

    def chunks(self, fn: Callable[[int, int], T], n: int) -> list[T]:
        """``fn(start, stop)`` over consecutive slices of ``range(n)`` of the current batch size; a slice
        that runs out of memory is done again in smaller slices. Returns the results in order."""
        out: list[T] = []
        start = 0
        while start < n:
            value, start = self.run(lambda size, a=start: (fn(a, min(n, a + size)), min(n, a + size)), limit=n - start)
            out.append(value)
        return out

    def _halve(self, tried: int, reason: str) -> None:
        if tried <= 1:
            raise NotEnoughMemoryError(
                f"Out of memory {self.what} even one at a time ({reason}). Free memory (other processes on the "
                "device), use a smaller model, or run on a device with more memory (--device)."
            )
        free_memory()
        self.size = (tried + 1) // 2  # half, rounded up: 7 images -> 4
        self.halvings += 1
        message = f"out of memory {self.what} at batch size {tried} ({reason}); retrying at batch size {self.size}"
        if self.halvings == 1:
            log.warning(message)
        else:
            log.info(message)


__all__ = ["HalvingBatch", "first_line", "free_memory", "is_out_of_memory"]
