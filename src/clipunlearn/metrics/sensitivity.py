"""How far forgotten images fell: the sensitivity analysis of WACV 2025, App. D, Table 14."""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ClipUnlearnError
from .retrieval import finite_numeric, to_numpy


def sensitivity_analysis(logits_before: Any, logits_after: Any, labels: Any) -> dict[str, Any]:
    """Ranks and logit gaps of the images that forgetting turned from right to wrong.

    An image *turned wrong* if ``argmax(logits_before) == label`` and
    ``argmax(logits_after) != label``. Ties follow ``argmax``: classes are ranked by
    decreasing logit with ties to the lower class index, so the rank of the true
    class after forgetting is ``1 +`` the number of classes ranked above it (a
    turned-wrong image always has rank >= 2).

    Returns:
        ``n_turned_wrong``: the number of such images.
        ``share_rank1``: share of them whose true class is at rank 2 (it fell one
        rank: exactly one class above it).
        ``share_rank_le2``: share at rank 2 or 3 (at most two classes above it).
        ``mean_std_logit_gap``: mean over them of
        ``(max logit after - true-class logit after) / std of the image's logits
        after`` (population std, ``ddof=0``).
        With ``n_turned_wrong == 0`` the shares and the gap are NaN.

    Args:
        logits_before: ``(n, n_classes)`` logits of the model before forgetting.
        logits_after: ``(n, n_classes)`` logits of the same images after it.
        labels: ``(n,)`` integer true classes in ``[0, n_classes)``.

    Raises:
        ClipUnlearnError: on mismatched shapes, non-finite logits, labels out of
            range, or a turned-wrong image whose logits after are all equal (its
            standardised gap is 0/0).
    """
    before = _logits(logits_before, "logits_before")
    after = _logits(logits_after, "logits_after")
    if before.shape != after.shape:
        raise ClipUnlearnError(
            f"logits_before has shape {before.shape} but logits_after has shape "
            f"{after.shape}. Evaluate both models on the same images and classes."
        )
    y = _labels(labels, before.shape)
    turned = (before.argmax(axis=1) == y) & (after.argmax(axis=1) != y)
    n = int(turned.sum())
    if n == 0:
        nan = float("nan")
        return {"n_turned_wrong": 0, "share_rank1": nan, "share_rank_le2": nan, "mean_std_logit_gap": nan}
    after_w, y_w = after[turned], y[turned]
    ranks = _ranks(after_w, y_w)
    true_logit = after_w[np.arange(n), y_w]
    std = after_w.std(axis=1)
    flat = np.flatnonzero(std == 0)
    if flat.size:
        index = int(np.flatnonzero(turned)[flat[0]])
        raise ClipUnlearnError(
            f"Image {index} has all its logits after forgetting equal, so its "
            f"standardised logit gap is 0/0. Check the model after forgetting: a "
            f"collapsed model gives constant logits."
        )
    gaps = (after_w.max(axis=1) - true_logit) / std
    return {
        "n_turned_wrong": n,
        "share_rank1": float(np.mean(ranks == 2)),
        "share_rank_le2": float(np.mean(ranks <= 3)),
        "mean_std_logit_gap": float(gaps.mean()),
    }


def _ranks(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """1-based rank of each row's true class: higher logits, then lower index, come first."""
    true = logits[np.arange(len(labels)), labels][:, None]
    index = np.arange(logits.shape[1])[None, :]
    above = (logits > true) | ((logits == true) & (index < labels[:, None]))
    return 1 + above.sum(axis=1)


def _logits(logits: Any, what: str) -> np.ndarray:
    arr = to_numpy(logits, what)
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] < 2:
        raise ClipUnlearnError(
            f"{what} must have shape (n_images, n_classes) with at least one image and "
            f"two classes, got {arr.shape}. Stack one row of class logits per image."
        )
    arr = finite_numeric(arr, what, "iuf", ". Check the model's outputs (a NaN weight after training "
                         "gives NaN logits).")
    return arr


def _labels(labels: Any, shape: tuple[int, ...]) -> np.ndarray:
    n, n_classes = shape
    y = to_numpy(labels, "labels")
    if y.shape != (n,):
        raise ClipUnlearnError(
            f"labels has shape {y.shape}, expected ({n},): one true class per row of "
            f"the logits."
        )
    if y.dtype.kind not in "iu":
        raise ClipUnlearnError(
            f"labels must be integer class indices, got dtype {y.dtype}. Convert them, "
            f"e.g. labels.astype(int)."
        )
    if y.min() < 0 or y.max() >= n_classes:
        raise ClipUnlearnError(
            f"labels must lie in [0, {n_classes}) for {n_classes} classes, got values "
            f"from {y.min()} to {y.max()}. Map class names to column indices of the logits."
        )
    return y.astype(np.int64)
