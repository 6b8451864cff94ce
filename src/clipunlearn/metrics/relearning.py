"""The relearning score R: how much of a forgotten class a relearning attack brings back, on a scale
where a model that never learnt the class (the oracle) is 0 and the model before forgetting is 1.

A relearning curve is a model's accuracy on the forgotten class read at fixed step counts of an attack
(step 0 first: before any step). Its area is the trapezoid rule over the readings taken as equally
spaced, whatever the step counts are: with the audit's steps 0, 5, 25, 100 (roughly geometric) it is
an area over log-steps, so the first few steps weigh as much as the last many.

    area(c)  = (c_0 / 2 + c_1 + ... + c_{n-2} + c_{n-1} / 2) / (n - 1)          (mean height, in [0, 1])
    R        = (Σ_a area(forgotten_a) − Σ_a area(oracle_a)) / (Σ_a area(original_a) − Σ_a area(oracle_a))

over the attacks ``a`` of a grid, each run on the three models from the same data. The areas are
summed before the ratio, so an attack where the original and the oracle end alike (both relearn the
class, or neither moves) adds nothing to the scale instead of dividing by nearly zero. R is 0 for a
forgotten model whose curves are the oracle's, 1 when they are the original's; it is below 0 when the
forgotten model relearns less than the oracle, above 1 when more than the original. It is undefined
(``nan``) when the original's total area is not above the oracle's by ``min_gap``: then the oracle
relearns the class as well as the original knew it, and no model can be told apart by relearning.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ClipUnlearnError

Curve = Sequence[float]

#: R is undefined when the original's summed area exceeds the oracle's by no more than this (in units
#: of one curve's area)
MIN_GAP = 1e-3


def relearning_area(curve: Curve) -> float:
    """Area under one relearning curve: the trapezoid rule with the readings equally spaced, divided by
    the span (the curve's mean height; for one reading, that reading)."""
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or len(c) == 0:
        raise ClipUnlearnError(f"A relearning curve is a non-empty list of accuracies, got shape {c.shape}. "
                               "Pass the accuracies read at each step count, step 0 first.")
    if not np.isfinite(c).all():
        raise ClipUnlearnError(f"A relearning curve holds a non-finite accuracy: {c.tolist()}. Measure it on a "
                               "non-empty set of images.")
    if len(c) == 1:
        return float(c[0])
    return float((c[0] / 2 + c[1:-1].sum() + c[-1] / 2) / (len(c) - 1))


def _total(curves: Sequence[Curve], what: str, n: int | None, length: Sequence[int] | None) -> float:
    if n is not None and len(curves) != n:
        raise ClipUnlearnError(f"The {what} has {len(curves)} relearning curves, the forgotten model {n}: "
                               "run the same attacks on every model.")
    if length is not None and [len(c) for c in curves] != list(length):
        raise ClipUnlearnError(f"The {what}'s curves have {[len(c) for c in curves]} readings, the forgotten "
                               f"model's {list(length)}: read every model at the same steps.")
    return sum(relearning_area(c) for c in curves)


def relearning_score(forgotten: Sequence[Curve], original: Sequence[Curve], oracle: Sequence[Curve] | None = None,
                     min_gap: float = MIN_GAP) -> float:
    """R over a grid of attacks: the i-th curve of each model comes from the same attack (see the
    module docstring). ``oracle`` None: a model at accuracy 0 throughout (a floor, not a measured oracle:
    R is then larger than with any real oracle that relearns something)."""
    if len(forgotten) == 0:
        raise ClipUnlearnError("R needs at least one relearning curve. Run at least one relearning attack.")
    lengths = [len(c) for c in forgotten]
    f = _total(forgotten, "forgotten model", None, None)
    o = _total(original, "original model", len(forgotten), lengths)
    z = 0.0 if oracle is None else _total(oracle, "oracle", len(forgotten), lengths)
    if not o - z > min_gap * len(forgotten):
        return float("nan")
    return float((f - z) / (o - z))


__all__ = ["MIN_GAP", "relearning_area", "relearning_score"]
