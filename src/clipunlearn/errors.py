"""Errors clipunlearn raises on bad input.

Every error names the problem and the fix. The CLI prints ``str(error)`` without a
traceback and exits with status 2.
"""
from __future__ import annotations

import difflib
from collections.abc import Iterable


class ClipUnlearnError(Exception):
    """Base class of the errors caused by the user's input or environment."""


class UnknownNameError(ClipUnlearnError, KeyError):
    """A model, dataset, method or class name that is not known."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class DataError(ClipUnlearnError):
    """A dataset folder, manifest or image that cannot be used."""


class WeightsError(ClipUnlearnError):
    """Weights that are missing, unsafe or do not fit the architecture."""


class RunExistsError(ClipUnlearnError):
    """An output that exists and would be overwritten."""


class TrainingError(ClipUnlearnError):
    """A training loop that cannot go on (NaN loss, nothing to update, ...)."""


class NotEnoughMemoryError(ClipUnlearnError):
    """The device or the machine ran out of memory, also at the smallest batch worth trying."""


class NotEnoughDiskError(ClipUnlearnError):
    """A folder's disk would not hold what is about to be written to it (checked before any work)."""


def suggest(name: str, choices: Iterable[str], n: int = 3) -> str:
    """A ' Did you mean ...?' clause with the closest matches, or ''."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    if not close:
        return ""
    return " Did you mean " + ", ".join(repr(lowered[c]) for c in close) + "?"


def unknown(kind: str, name: str, choices: Iterable[str]) -> UnknownNameError:
    choices = sorted(choices)
    hint = suggest(name, choices)
    listing = ", ".join(choices) if len(choices) <= 12 else f"{len(choices)} names"
    return UnknownNameError(f"Unknown {kind} {name!r}.{hint} Known: {listing}.")
