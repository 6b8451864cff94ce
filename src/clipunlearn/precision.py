"""Numeric precision of a run's compute: ``--precision auto|fp32|tf32|bf16`` on every verb that computes.

* ``fp32``: every op in float32, TF32 off (the reference; what every run did before this option).
* ``tf32``: float32 tensors, matrix products and convolutions on CUDA's TF32 units (10-bit mantissa
  inputs, float32 accumulation). TF32 is a CUDA tensor-core mode: on the CPU ``tf32`` runs as
  ``fp32`` (a warning says so, and results.json records ``fp32``).
* ``bf16``: forward passes under ``torch.autocast(dtype=torch.bfloat16)`` on the device's type.
  Parameters stay float32 (the master weights), so gradients and the optimiser's state are float32;
  backward passes and optimiser steps run outside autocast, and the loss is taken in float32.
* ``auto`` (the default): ``tf32`` on CUDA, ``fp32`` on the CPU.

:func:`computing` sets a precision for a block (a run, an evaluation, a generation, an audit): the
TF32 flags for everything in it, and the precision that :func:`forward_pass` applies. The shared
machinery (the training loop, evaluation, synthetic generation, the training parts of training/ and
the audit) wraps its forward passes in :func:`forward_pass`, so a method never handles precision
itself. Outside any :func:`computing` block nothing is changed.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from enum import Enum

import torch

from .errors import ClipUnlearnError

log = logging.getLogger("clipunlearn")


class Precision(str, Enum):
    AUTO = "auto"
    FP32 = "fp32"
    TF32 = "tf32"
    BF16 = "bf16"


PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)
DEFAULT_PRECISION = Precision.AUTO

_ACTIVE: ContextVar[Precision | None] = ContextVar("clipunlearn_precision", default=None)


def parse_precision(value: str | Precision) -> Precision:
    """``value`` as a :class:`Precision`, or a one-line error naming the choices."""
    if isinstance(value, Precision):
        return value
    try:
        return Precision(str(value).strip().lower())
    except ValueError:
        raise ClipUnlearnError(f"Unknown precision {value!r}: use --precision auto, fp32, tf32 or bf16 "
                               "(Python: precision='bf16').") from None


def _device_type(device: str | torch.device) -> str:
    return torch.device(device).type


def resolve_precision(value: str | Precision, device: str | torch.device) -> Precision:
    """The precision ``value`` means on ``device``: never ``auto``; ``tf32`` on a device without TF32
    units (the CPU) is ``fp32``."""
    p = parse_precision(value)
    kind = _device_type(device)
    if p is Precision.AUTO:
        return Precision.TF32 if kind == "cuda" else Precision.FP32
    if p is Precision.TF32 and kind != "cuda":
        return Precision.FP32
    return p


def active_precision() -> Precision | None:
    """The precision of the innermost :func:`computing` block, None outside any."""
    return _ACTIVE.get()


def cache_tag() -> str | None:
    """What a cache key of computed numbers (image features, synthetic sets) adds for the active
    precision: its name when it is not ``fp32``, else None, so keys made before this option (all
    fp32) stay valid."""
    p = _ACTIVE.get()
    return None if p in (None, Precision.FP32) else p.value


@contextmanager
def computing(value: str | Precision, device: str | torch.device) -> Iterator[Precision]:
    """Within the block compute at ``value`` resolved for ``device`` (yielded): TF32 flags on for
    ``tf32``, off otherwise (restored on leaving), and :func:`forward_pass` applies bf16 autocast for
    ``bf16``."""
    requested = parse_precision(value)
    p = resolve_precision(requested, device)
    if requested is Precision.TF32 and p is not Precision.TF32:
        log.warning(f"--precision tf32 is a CUDA mode; on {_device_type(device)} this computes in fp32")
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = p is Precision.TF32
    token = _ACTIVE.set(p)
    try:
        yield p
    finally:
        _ACTIVE.reset(token)
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def forward_pass(device: str | torch.device):
    """A context for a forward pass on ``device``: bf16 autocast when the active precision is
    ``bf16``, nothing otherwise. Cast what it returns with ``.float()`` before losses and logits."""
    if _ACTIVE.get() is Precision.BF16:
        return torch.autocast(device_type=_device_type(device), dtype=torch.bfloat16)
    return nullcontext()


def outside_autocast(device: str | torch.device):
    """A context for a backward pass or an optimiser step: autocast off, even inside a caller's
    :func:`forward_pass` (gradients and optimiser state stay float32, like the parameters)."""
    return torch.autocast(device_type=_device_type(device), enabled=False)


__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "Precision", "active_precision", "cache_tag", "computing",
           "forward_pass", "outside_autocast", "parse_precision", "resolve_precision"]
