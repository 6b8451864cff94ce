"""Pure functions behind the audit's attacks: numbers in, numbers out (numpy arrays, no model).

* :func:`probe_auc`: a logistic-regression probe on frozen features, target vs rest, test AUC;
* :func:`membership_scores`: per image, the zero-shot loss, confidence and entropy of its true class;
* :func:`threshold_auc` and :func:`classifier_auc`: the loss-threshold and the classifier membership
  attacks (the latter as SalUn's SVC attack), as ROC AUC with members as positives;
* :func:`mean_kl`: the mean KL divergence between two models' zero-shot output distributions.
"""
from __future__ import annotations

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


__all__ = ["classifier_auc", "mean_kl", "membership_scores", "probe_auc", "softmax", "threshold_auc"]
