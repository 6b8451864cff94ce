"""Metrics of forgetting: pure functions of numbers (numpy arrays, lists or torch tensors).

* :func:`avg_score`, :func:`ratio_score`: one score from before/after accuracies.
* :func:`precision_at_k`, :func:`precision_at_k_per_class`: retrieval precision@k.
* :func:`sensitivity_analysis`: how far the images that forgetting turned wrong fell.

Every bad input raises :class:`clipunlearn.errors.ClipUnlearnError`.
"""
from __future__ import annotations

from .retrieval import precision_at_k, precision_at_k_per_class
from .scores import avg_score, ratio_score
from .sensitivity import sensitivity_analysis

__all__ = [
    "avg_score",
    "precision_at_k",
    "precision_at_k_per_class",
    "ratio_score",
    "sensitivity_analysis",
]
