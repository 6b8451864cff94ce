"""Summary scores of forgetting: one number from before/after accuracies.

Each column is a ``(before, after)`` pair of accuracies in ``[0, 1]``: the accuracy
of the model on one class (or dataset) before forgetting (BF) and after it (AF).
The *target* is the column that should be forgotten; the *others* should be kept.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

from ..errors import ClipUnlearnError

Pair = tuple[float, float]


def avg_score(target: Pair, others: Sequence[Pair]) -> float:
    """Avg. Score of Kravets & Namboodiri (WACV 2025), Eq. 10; lower is better.

    ``(AF/BF of the target + sum over others of max(0, (BF - AF) / BF)) / (N + 1)``
    with ``N = len(others)``. The target term is the share of the target's accuracy
    that survived; each other term is the share of that column's accuracy that was
    lost (gains count as 0). A perfect forgetting scores 0.

    Args:
        target: ``(before, after)`` accuracy of the forgotten class, in ``[0, 1]``.
        others: ``(before, after)`` accuracies of the columns that should be kept.

    Raises:
        ClipUnlearnError: on a malformed pair, an accuracy that is NaN or outside
            ``[0, 1]``, or a before-accuracy of 0 (the ratio is undefined).
    """
    bf, af = _pair(target, "target")
    _check_before_positive(bf, "target")
    total = af / bf
    for i, pair in enumerate(_others(others)):
        obf, oaf = _pair(pair, f"others[{i}]")
        _check_before_positive(obf, f"others[{i}]")
        total += max(0.0, (obf - oaf) / obf)
    return total / (len(others) + 1)


def ratio_score(target: Pair, others: Sequence[Pair]) -> float:
    """Ratio score of the subgroup-forgetting paper (Sec. 5.1); higher is better.

    Per column the ratio ``AF / BF``: for each kept column it is capped at 1 (a gain
    does not count above keeping everything); for the target column the score is
    ``1 - AF / BF`` clipped to ``[0, 1]``. The result is the mean over the
    ``N + 1`` columns. A perfect forgetting scores 1.

    Args:
        target: ``(before, after)`` accuracy of the forgotten class, in ``[0, 1]``.
        others: ``(before, after)`` accuracies of the columns that should be kept.

    Raises:
        ClipUnlearnError: as :func:`avg_score`.
    """
    bf, af = _pair(target, "target")
    _check_before_positive(bf, "target")
    total = min(1.0, max(0.0, 1.0 - af / bf))
    for i, pair in enumerate(_others(others)):
        obf, oaf = _pair(pair, f"others[{i}]")
        _check_before_positive(obf, f"others[{i}]")
        total += min(1.0, oaf / obf)
    return total / (len(others) + 1)


def _others(others: Sequence[Pair]) -> Sequence[Pair]:
    if isinstance(others, (str, bytes)) or _length(others) is None:
        raise ClipUnlearnError(
            f"others must be a sequence of (before, after) accuracy pairs, got "
            f"{type(others).__name__}. Pass e.g. [(0.5, 0.49), (0.7, 0.71)], or [] if "
            f"there is no other column."
        )
    return others


def _length(obj: Any) -> int | None:
    """``len(obj)``, or None for an object without a length."""
    try:
        return len(obj)
    except TypeError:
        return None


def _pair(pair: Any, what: str) -> Pair:
    """Check one ``(before, after)`` pair and return it as two floats."""
    if isinstance(pair, (str, bytes)) or _length(pair) != 2:
        raise ClipUnlearnError(
            f"{what} must be a (before, after) pair of accuracies, got {pair!r}. "
            f"Pass two numbers in [0, 1], e.g. (0.705, 0.066)."
        )
    before = _accuracy(pair[0], f"{what} before-accuracy")
    after = _accuracy(pair[1], f"{what} after-accuracy")
    return before, after


def _accuracy(value: Any, what: str) -> float:
    """One accuracy as a float in ``[0, 1]``."""
    if isinstance(value, (bool, str, bytes)):
        raise ClipUnlearnError(f"The {what} must be a number in [0, 1], got {value!r}.")
    if not isinstance(value, Real):
        try:  # numpy scalars and 0-d torch tensors
            value = float(value)
        except (TypeError, ValueError):
            raise ClipUnlearnError(
                f"The {what} must be a number in [0, 1], got {type(value).__name__}."
            ) from None
    value = float(value)
    if math.isnan(value):
        raise ClipUnlearnError(
            f"The {what} is NaN. Check the evaluation that produced it (an empty "
            f"class gives 0/0); a score needs a measured accuracy."
        )
    if not 0.0 <= value <= 1.0:
        hint = " If it is a percentage, divide it by 100." if 1.0 < value <= 100.0 else ""
        raise ClipUnlearnError(f"The {what} is {value}, outside [0, 1].{hint}")
    return value


def _check_before_positive(before: float, what: str) -> None:
    if before == 0.0:
        raise ClipUnlearnError(
            f"The {what} before-accuracy is 0, so the after/before ratio is undefined: "
            f"the model never recognised this class before forgetting. Leave this "
            f"column out of the score, or choose a class the model recognises."
        )
