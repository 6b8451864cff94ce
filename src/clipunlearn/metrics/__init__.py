"""Metrics of forgetting: pure functions of numbers (numpy arrays, lists or torch tensors).

* :func:`avg_score`, :func:`ratio_score`: one score from before/after accuracies.
* :func:`precision_at_k`, :func:`precision_at_k_per_class`: retrieval precision@k.
* :func:`sensitivity_analysis`: how far the images that forgetting turned wrong fell.
* :func:`relearning_score` (R), :func:`relearning_area`: how much of a forgotten class relearning brings
  back, the oracle at 0 and the original at 1.

Every bad input raises :class:`clipunlearn.errors.ClipUnlearnError`.
"""
from __future__ import annotations

from .relearning import relearning_area, relearning_score
from .retrieval import precision_at_k, precision_at_k_per_class
from .scores import avg_score, ratio_score
from .sensitivity import sensitivity_analysis

__all__ = [
    "avg_score",
    "precision_at_k",
    "precision_at_k_per_class",
    "ratio_score",
    "relearning_area",
    "relearning_score",
    "sensitivity_analysis",
]
