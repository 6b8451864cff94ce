"""The audit's score functions at their edges (issue 35: the mutation survivors of audit/scores.py): each
error's full message, each bound, the default seeds, the interval's percentiles by hand, and numbers that
stay right for half-precision or far-apart logits."""
from __future__ import annotations

import math

import numpy as np
import pytest

from clipunlearn.audit.scores import (
    bootstrap_threshold_auc,
    classifier_auc,
    mean_kl,
    membership_scores,
    percentile_interval,
    probe_auc,
    resampled_auc,
    softmax,
    threshold_auc,
    threshold_auc_intervals,
)
from clipunlearn.errors import ClipUnlearnError


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ClipUnlearnError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def _both_sides(what, labels):
    return (f"{what} needs images of both sides (the forgotten class and the rest), got only label(s) {labels}. "
            "Use a dataset split that holds both.")


def test_one_sided_labels_are_named_for_each_attack():
    x = np.zeros((4, 2))
    assert _message(probe_auc, x, [1, 1, 1, 1], x, [0, 1, 0, 1]) == _both_sides(
        "The linear probe's training split", [1])
    assert _message(probe_auc, x, [0, 1, 0, 1], x, [0, 0, 0, 0]) == _both_sides("The linear probe's test split", [0])
    for fn, args in [(threshold_auc, ([1, 1], [0.1, 0.2])), (bootstrap_threshold_auc, ([1, 1], [0.1, 0.2])),
                     (classifier_auc, ([1, 1], np.zeros((2, 3))))]:
        assert _message(fn, *args) == _both_sides("The membership attack", [1])


def test_resample_counts_that_do_not_match_are_named():
    pos, neg = np.zeros(3), np.zeros(2)
    fix = " do not match 3 members and 2 non-members; pass one row of counts per resample for each side."
    assert _message(resampled_auc, pos, neg, np.ones((4, 3)), np.ones((5, 2))) == \
        "Resample counts of shapes (4, 3) and (5, 2)" + fix  # one resample count more on one side only
    assert _message(resampled_auc, pos, neg, np.ones((4, 3)), np.ones(2)) == \
        "Resample counts of shapes (4, 3) and (2,)" + fix  # one side not a matrix


def test_the_bootstrap_takes_one_resample_and_refuses_none():
    member, loss = [1, 1, 0], [0.1, 0.2, 0.3]
    assert bootstrap_threshold_auc(member, loss, resamples=1).tolist() == [1.0]  # members' losses all lower
    assert _message(bootstrap_threshold_auc, member, loss, resamples=0) == \
        "The bootstrap needs at least 1 resample, got 0. Pass a positive number."


@pytest.mark.parametrize("losses, shape", [([0.1, 0.2], "(2,)"), (np.zeros((2, 3, 1)), "(2, 3, 1)")])
def test_losses_that_do_not_match_the_images_are_named(losses, shape):
    assert _message(bootstrap_threshold_auc, [1, 0, 1], losses) == (
        f"Losses of shape {shape} do not match 3 images; pass one loss per image (N) or one row per model (M×N).")


def test_the_default_seeds_are_0():
    rng = np.random.default_rng(5)
    member, loss = np.r_[np.ones(12, int), np.zeros(9, int)], rng.normal(size=21)
    zero = bootstrap_threshold_auc(member, loss, resamples=50, seed=0)
    assert np.array_equal(bootstrap_threshold_auc(member, loss, resamples=50), zero)
    assert not np.array_equal(bootstrap_threshold_auc(member, loss, resamples=50, seed=1), zero)
    # the intervals draw with their own seed: the same as the bootstrap's under that seed
    for seed in (0, 4):
        kwargs = {} if seed == 0 else {"seed": seed}
        out = threshold_auc_intervals(member, {"a": loss}, resamples=50, level=0.5, **kwargs)
        expected = np.percentile(bootstrap_threshold_auc(member, loss, resamples=50, seed=seed), [25, 75])
        assert out == {"interval": {"a": expected.tolist()}, "minus_reference": {}}


def test_the_percentile_interval_by_hand():
    samples = np.arange(101.0)  # its p-th percentile is p
    assert percentile_interval(samples, 0.5) == (25.0, 75.0)
    assert percentile_interval(samples, 0.9) == pytest.approx((5.0, 95.0), abs=1e-9)
    assert percentile_interval(samples) == pytest.approx((2.5, 97.5), abs=1e-9)  # the default level, 0.95
    for level in (0.0, 1.0, 1.5):
        assert _message(percentile_interval, samples, level) == \
            f"An interval's level must lie between 0 and 1, got {level}. Pass e.g. 0.95."


def test_intervals_against_a_reference_at_a_given_level():
    rng = np.random.default_rng(6)
    member = np.r_[np.ones(10, int), np.zeros(10, int)]
    a, ref = rng.normal(size=20), rng.normal(size=20)
    out = threshold_auc_intervals(member, {"a": a, "ref": ref}, "ref", resamples=40, level=0.5, seed=2)
    boots = bootstrap_threshold_auc(member, np.stack([a, ref]), resamples=40, seed=2)
    assert out["interval"]["ref"] == np.percentile(boots[:, 1], [25, 75]).tolist()
    assert out["minus_reference"]["a"]["interval"] == np.percentile(boots[:, 0] - boots[:, 1], [25, 75]).tolist()
    assert _message(threshold_auc_intervals, member, {"a": a, "b": ref}, "oracle") == (
        "The reference model 'oracle' has no losses (models: a, b). Pass the losses of the reference too.")


def test_the_classifier_attack_needs_two_of_each_side():
    rng = np.random.default_rng(7)
    feats = rng.normal(size=(5, 3))
    assert 0.0 <= classifier_auc([1, 1, 0, 0, 0], feats) <= 1.0  # two members: two folds
    assert _message(classifier_auc, [1, 0, 0, 0, 0], feats) == (
        "The classifier membership attack needs at least 2 members and 2 non-members. Use a dataset with more "
        "images of the class.")


def test_logits_far_apart_across_rows_and_in_half_precision():
    """Each row is shifted by its own maximum: a row 1000 below another, or 1000 above 0, stays finite; and
    half-precision logits are computed in float64 (the expectation: math on the same half values)."""
    logits = np.array([[1000.0, 1000.0 + math.log(3)], [0.0, math.log(3)]])
    np.testing.assert_allclose(softmax(logits), [[0.25, 0.75], [0.25, 0.75]], rtol=1e-12)
    s = membership_scores(logits, [1, 0])
    np.testing.assert_allclose(s["loss"], [-math.log(0.75), -math.log(0.25)], rtol=1e-12)
    assert mean_kl(logits, logits[::-1]) == pytest.approx(0.0, abs=1e-12)

    half = np.array([[0.1, 0.7, -0.3]], dtype=np.float16)
    v = [float(x) for x in half[0]]
    z = [math.exp(x - max(v)) for x in v]
    p = [e / sum(z) for e in z]
    np.testing.assert_allclose(softmax(half)[0], p, rtol=1e-12)
    s = membership_scores(half, [2])
    assert s["loss"][0] == pytest.approx(-math.log(p[2]), rel=1e-12)
    assert s["entropy"][0] == pytest.approx(-sum(q * math.log(q) for q in p), rel=1e-12)
    q = [1 / 3] * 3
    kl = sum(a * (math.log(a + 1e-12) - math.log(b + 1e-12)) for a, b in zip(p, q))
    assert mean_kl(half, np.zeros((1, 3), dtype=np.float16)) == pytest.approx(kl, rel=1e-9)


def test_mean_kl_by_hand_is_a_mean_over_images():
    # image 1: p = (1/2, 1/2) vs q = (1/4, 3/4); image 2: identical; KL(p‖q) = ½ ln 2 + ½ ln(2/3)
    p = np.array([[0.0, 0.0], [1.0, 2.0]])
    q = np.array([[0.0, math.log(3)], [1.0, 2.0]])
    kl = 0.5 * math.log(2) + 0.5 * math.log(2 / 3)
    assert mean_kl(p, q) == pytest.approx(kl / 2, rel=1e-9)
    assert _message(mean_kl, p, q[:, :1]) == ("The two models' logits have shapes (2, 2) and (2, 1); evaluate both "
                                             "on the same images and classes.")


def test_the_classifier_attack_defaults_to_seed_0_and_5_folds():
    rng = np.random.default_rng(8)
    member = np.r_[np.ones(12, int), np.zeros(12, int)]
    feats = rng.normal(size=(24, 3))
    feats[:, 0] += 0.8 * member
    default = classifier_auc(member, feats)
    assert default == classifier_auc(member, feats, seed=0, folds=5)
    # other folds or another seed give other numbers on these features: the defaults are pinned
    assert default != classifier_auc(member, feats, seed=1) and default != classifier_auc(member, feats, folds=6)


def test_the_classifier_attack_is_an_rbf_svc_with_c_3_on_standardised_features():
    """A second computation with sklearn, as the docstring states it (SalUn's SVC attack): features on scales
    100 apart, so that leaving out the scaler, another C or hard predictions instead of decision values give
    another number (0.59, 0.90, 0.80 here)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(9)
    member = np.r_[np.ones(15, int), np.zeros(15, int)]
    feats = rng.normal(size=(30, 3)) * np.array([1.0, 100.0, 0.01])
    feats[:, 0] += member
    feats[:, 2] += 0.01 * member
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
    values = cross_val_predict(make_pipeline(StandardScaler(), SVC(C=3.0, kernel="rbf", gamma="scale")), feats, member,
                               cv=folds, method="decision_function")
    assert classifier_auc(member, feats) == roc_auc_score(member, values)


def test_the_probe_weighs_the_classes_balanced():
    """Six images of the class among 66: a probe with balanced class weights (the second computation) ranks
    the test images otherwise than an unweighted one (0.8200 vs 0.8225 here)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(9)
    rng.normal(size=(30, 3))  # the draws of the test above, so that these features are the ones described
    y_train, y_test = np.r_[np.ones(6), np.zeros(60)], np.r_[np.ones(10), np.zeros(40)]
    x_train, x_test = rng.normal(size=(66, 4)), rng.normal(size=(50, 4))
    x_train[:, 0] += 1.5 * y_train
    x_test[:, 0] += 1.5 * y_test
    x_train[:, 1] += 0.8 * y_train
    clf = LogisticRegression(max_iter=2000, class_weight="balanced").fit(x_train, y_train)
    assert probe_auc(x_train, y_train, x_test, y_test) == roc_auc_score(y_test, clf.decision_function(x_test))


def test_the_probe_runs_its_solver_to_convergence_on_ill_conditioned_features():
    """Features whose scales span two decades take lbfgs several hundred iterations: the probe must not
    stop at sklearn's default 100 and report the AUC of an unfinished fit."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning

    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 64)) * np.logspace(0, 2, 64)
    y = (x[:, 0] + 0.01 * x[:, -1] > 0).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        auc = probe_auc(x[:150], y[:150], x[150:], y[150:])
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    exact = LogisticRegression(solver="newton-cg", tol=1e-10, max_iter=10_000, class_weight="balanced")
    assert auc == pytest.approx(roc_auc_score(y[150:], exact.fit(x[:150], y[:150]).decision_function(x[150:])), abs=0.01)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_unsigned_integer_losses_rank_as_numbers(dtype):
    """A member is the image with the lower loss: losses given as unsigned integers (counts) must not wrap
    around when the attack negates them (0 stays below 3)."""
    member = np.array([1, 1, 0, 0])
    loss = np.array([0, 1, 3, 4], dtype=dtype)
    assert threshold_auc(member, loss) == 1.0
    assert np.all(bootstrap_threshold_auc(member, loss, resamples=5) == 1.0)


def test_the_classifier_attack_computes_in_float64_whatever_the_features_dtype():
    """Half-precision features (as a bf16/fp16 run may hand them over) are standardised in float64: the AUC is
    that of the same values given as float64 (standardising in float16 moves the decision values)."""
    rng = np.random.default_rng(1)
    member = np.array([1] * 40 + [0] * 40)
    half = (rng.normal(size=(80, 3)) * [1, 100, 1e3] + member[:, None] * 0.3).astype(np.float16)
    assert classifier_auc(member, half) == classifier_auc(member, half.astype(np.float64))
