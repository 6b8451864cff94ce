"""Pure functions behind the audit's attacks: numbers in, numbers out (numpy arrays, no model).

* :func:`probe_auc`: a logistic-regression probe on frozen features, target vs rest, test AUC;
* :func:`membership_scores`: per image, the zero-shot loss, confidence and entropy of its true class;
* :func:`threshold_auc` and :func:`classifier_auc`: the loss-threshold and the classifier membership
  attacks (the latter as SalUn's SVC attack), as ROC AUC with members as positives;
* :func:`threshold_auc_intervals` (from :func:`bootstrap_threshold_auc`, :func:`resampled_auc` and
  :func:`percentile_interval`): how far the loss-threshold AUC can move with the sample sizes (members
  and non-members resampled apart, the same draws for every model, so differences are paired);
* :func:`mean_kl`: the mean KL divergence between two models' zero-shot output distributions.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ClipUnlearnError


def _two_classes(y: np.ndarray, what: str) -> None:
    if len(np.unique(y)) != 2:
        raise ClipUnlearnError(f"{what} needs images of both sides (the forgotten class and the rest), got "
                               f"only label(s) {sorted(set(np.asarray(y).tolist()))}. Use a dataset split that "
                               "holds both.")


def probe_auc(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
              seed: int = 0) -> float:
    """Test ROC AUC of a logistic regression (balanced class weights) trained on ``train_x`` to tell
    ``train_y`` = 1 (the forgotten class) from 0 (the rest). 1.0: the features separate it perfectly."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    train_y, test_y = np.asarray(train_y).astype(int), np.asarray(test_y).astype(int)
    _two_classes(train_y, "The linear probe's training split")
    _two_classes(test_y, "The linear probe's test split")
    clf = LogisticRegression(max_iter=2000, class_weight="balanced", random_state=seed)
    clf.fit(np.asarray(train_x, dtype=np.float64), train_y)
    return float(roc_auc_score(test_y, clf.decision_function(np.asarray(test_x, dtype=np.float64))))


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def membership_scores(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: ``loss`` (cross-entropy of the true class), ``confidence`` (its probability) and
    ``entropy`` of the output distribution, from zero-shot ``logits`` (N×C) and true ``labels`` (N)."""
    labels = np.asarray(labels).astype(int)
    p = softmax(logits)
    conf = p[np.arange(len(labels)), labels]
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    loss = -log_p[np.arange(len(labels)), labels]
    entropy = -(p * log_p).sum(axis=1)
    return {"loss": loss, "confidence": conf, "entropy": entropy}


def threshold_auc(member: np.ndarray, loss: np.ndarray) -> float:
    """ROC AUC of the loss-threshold attack: an image is called a member when its loss is low (score
    −loss, members positive). 0.5: no signal; above: members have lower loss than non-members."""
    from sklearn.metrics import roc_auc_score

    member = np.asarray(member).astype(int)
    _two_classes(member, "The membership attack")
    return float(roc_auc_score(member, -np.asarray(loss, dtype=np.float64)))


#: the membership verdict's bootstrap: resamples and the interval's coverage
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_LEVEL = 0.95


def resampled_auc(member_scores: np.ndarray, non_member_scores: np.ndarray, member_counts: np.ndarray,
                  non_member_counts: np.ndarray) -> np.ndarray:
    """ROC AUC (members positive, higher score = member) of each resample given by how often it draws each
    image: ``member_counts`` (R×P) and ``non_member_counts`` (R×Q), each row summing to P and Q. The AUC of
    a sample is the Mann-Whitney statistic, the share of (member, non-member) pairs the member wins (a tie
    half), so a resample's AUC is that share over its drawn pairs: counts · kernel · counts, one product
    for all R rows instead of R sorts."""
    pos, neg = np.asarray(member_scores, dtype=np.float64), np.asarray(non_member_scores, dtype=np.float64)
    cp, cq = np.asarray(member_counts, dtype=np.float64), np.asarray(non_member_counts, dtype=np.float64)
    if cp.ndim != 2 or cq.ndim != 2 or cp.shape[1] != len(pos) or cq.shape[1] != len(neg) or len(cp) != len(cq):
        raise ClipUnlearnError(f"Resample counts of shapes {cp.shape} and {cq.shape} do not match {len(pos)} members "
                               f"and {len(neg)} non-members; pass one row of counts per resample for each side.")
    kernel = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    return ((cp @ kernel) * cq).sum(axis=1) / (cp.sum(axis=1) * cq.sum(axis=1))


def _draw_counts(rng: np.random.Generator, n: int, resamples: int) -> np.ndarray:
    """How often each of ``n`` items is drawn in each of ``resamples`` draws of ``n`` with replacement
    (R×n; one bincount over all rows, several times faster than numpy's multinomial)."""
    picks = rng.integers(0, n, size=(resamples, n)) + n * np.arange(resamples)[:, None]
    return np.bincount(picks.ravel(), minlength=resamples * n).reshape(resamples, n)


def bootstrap_threshold_auc(member: np.ndarray, losses: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES,
                            seed: int = 0) -> np.ndarray:
    """Loss-threshold AUC (as :func:`threshold_auc`) of ``resamples`` seeded bootstrap resamples: members
    and non-members are drawn with replacement apart, so each resample keeps the sample's sizes. ``losses``
    holds one model's per-image losses (N) or several models' on the same images (M×N); every model is
    scored on the same draws, so the differences of two columns are a paired bootstrap of the difference
    of their AUCs. Returns R AUCs, or R×M."""
    member = np.asarray(member).astype(int)
    _two_classes(member, "The membership attack")
    if resamples < 1:
        raise ClipUnlearnError(f"The bootstrap needs at least 1 resample, got {resamples}. Pass a positive number.")
    loss = np.asarray(losses, dtype=np.float64)
    rows = loss[None, :] if loss.ndim == 1 else loss
    if rows.ndim != 2 or rows.shape[1] != len(member):
        raise ClipUnlearnError(f"Losses of shape {loss.shape} do not match {len(member)} images; pass one loss per "
                               "image (N) or one row per model (M×N).")
    is_member = member == 1
    p, q = int(is_member.sum()), int((~is_member).sum())
    rng = np.random.default_rng(seed)
    cp, cq = _draw_counts(rng, p, resamples), _draw_counts(rng, q, resamples)
    aucs = np.stack([resampled_auc(-row[is_member], -row[~is_member], cp, cq) for row in rows], axis=1)
    return aucs[:, 0] if loss.ndim == 1 else aucs


def percentile_interval(samples: np.ndarray, level: float = BOOTSTRAP_LEVEL) -> tuple[float, float]:
    """The central ``level`` interval of bootstrap ``samples`` (percentile method), as (low, high)."""
    if not 0.0 < level < 1.0:
        raise ClipUnlearnError(f"An interval's level must lie between 0 and 1, got {level}. Pass e.g. 0.95.")
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(np.asarray(samples, dtype=np.float64), [tail, 100.0 - tail])
    return float(low), float(high)


def threshold_auc_intervals(member: np.ndarray, losses: dict[str, np.ndarray], reference: str | None = None,
                            resamples: int = BOOTSTRAP_RESAMPLES, level: float = BOOTSTRAP_LEVEL,
                            seed: int = 0) -> dict[str, Any]:
    """The ``level`` bootstrap interval of each model's loss-threshold AUC (``losses``: model -> per-image
    loss on the same images) and, with a ``reference`` model, of each other model's AUC minus the
    reference's, from the same resamples (paired): ``{"interval": {model: [low, high]},
    "minus_reference": {model: {"estimate": AUC − reference AUC, "interval": [low, high]}}}``."""
    names = list(losses)
    if reference is not None and reference not in losses:
        raise ClipUnlearnError(f"The reference model {reference!r} has no losses (models: {', '.join(names)}). "
                               "Pass the losses of the reference too.")
    aucs = bootstrap_threshold_auc(member, np.stack([np.asarray(losses[n], dtype=np.float64) for n in names]),
                                   resamples, seed)
    out: dict[str, Any] = {"interval": {n: list(percentile_interval(aucs[:, i], level)) for i, n in enumerate(names)},
                            "minus_reference": {}}
    if reference is not None:
        ref = names.index(reference)
        point = threshold_auc(member, losses[reference])
        for i, n in enumerate(names):
            if n != reference:
                out["minus_reference"][n] = {"estimate": threshold_auc(member, losses[n]) - point,
                                             "interval": list(percentile_interval(aucs[:, i] - aucs[:, ref], level))}
    return out


def classifier_auc(member: np.ndarray, features: np.ndarray, seed: int = 0, folds: int = 5) -> float:
    """Cross-validated ROC AUC of an RBF SVC (on standardised ``features``, e.g. [loss, confidence,
    entropy]) telling members from non-members, as SalUn's SVC membership attack; stratified folds
    (at most ``folds``, at most the size of the smaller side), out-of-fold decision values."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    member = np.asarray(member).astype(int)
    _two_classes(member, "The membership attack")
    n_splits = int(min(folds, np.bincount(member).min()))
    if n_splits < 2:
        raise ClipUnlearnError("The classifier membership attack needs at least 2 members and 2 non-members. "
                               "Use a dataset with more images of the class.")
    cv = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    model = make_pipeline(StandardScaler(), SVC(C=3.0, kernel="rbf", gamma="scale"))
    scores = cross_val_predict(model, np.asarray(features, dtype=np.float64), member, cv=cv,
                               method="decision_function")
    return float(roc_auc_score(member, scores))


def mean_kl(logits_p: np.ndarray, logits_q: np.ndarray) -> float:
    """Mean over images of KL(p ‖ q) between the softmax distributions of two models' logits (N×C each)."""
    lp, lq = np.asarray(logits_p, dtype=np.float64), np.asarray(logits_q, dtype=np.float64)
    if lp.shape != lq.shape:
        raise ClipUnlearnError(f"The two models' logits have shapes {lp.shape} and {lq.shape}; evaluate both "
                               "on the same images and classes.")
    p, q = softmax(lp), softmax(lq)
    eps = 1e-12
    return float((p * (np.log(p + eps) - np.log(q + eps))).sum(axis=1).mean())


__all__ = ["BOOTSTRAP_LEVEL", "BOOTSTRAP_RESAMPLES", "bootstrap_threshold_auc", "classifier_auc", "mean_kl",
           "membership_scores", "percentile_interval", "probe_auc", "resampled_auc", "softmax", "threshold_auc",
           "threshold_auc_intervals"]
