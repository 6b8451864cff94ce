"""The relearning score R against an independent computation (numpy's trapezoid over step indices)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.metrics import relearning_area, relearning_score


def _reference_area(curve):
    c = np.asarray(curve, dtype=float)
    return float(np.trapezoid(c, x=np.arange(len(c))) / (len(c) - 1)) if len(c) > 1 else float(c[0])


def test_area_hand_computed():
    # readings at steps 0, 5, 25, 100: (0.2/2 + 0.4 + 0.6 + 0.8/2) / 3 = 1.5 / 3
    assert relearning_area([0.2, 0.4, 0.6, 0.8]) == pytest.approx(0.5)
    assert relearning_area([0.3]) == pytest.approx(0.3)
    assert relearning_area([1.0, 1.0, 1.0]) == pytest.approx(1.0)


def test_score_hand_computed():
    original = [[0.7, 0.8, 0.9, 0.9], [0.7, 0.7, 0.7, 0.7]]
    oracle = [[0.0, 0.0, 0.1, 0.4], [0.0, 0.0, 0.0, 0.0]]
    forgotten = [[0.2, 0.5, 0.8, 0.9], [0.2, 0.3, 0.3, 0.3]]
    # areas: original 2.5/3 + 0.7; oracle 0.3/3 + 0; forgotten 1.85/3 + 0.85/3 -> (0.9 - 0.1) / (1.5333 - 0.1)
    assert relearning_score(forgotten, original, oracle) == pytest.approx(0.8 / (2.5 / 3 + 0.7 - 0.1))


def test_references_are_zero_and_one():
    original = [[0.7, 0.9, 1.0], [0.6, 0.6, 0.7]]
    oracle = [[0.0, 0.1, 0.3], [0.0, 0.0, 0.0]]
    assert relearning_score(oracle, original, oracle) == pytest.approx(0.0)
    assert relearning_score(original, original, oracle) == pytest.approx(1.0)
    assert relearning_score([[0.0, 0.0, 0.0]] * 2, original, oracle) < 0  # relearns less than the oracle


def test_without_an_oracle_the_floor_is_zero_accuracy():
    original = [[0.8, 0.8, 0.8]]
    assert relearning_score([[0.4, 0.4, 0.4]], original) == pytest.approx(0.5)


def test_undefined_when_the_oracle_relearns_as_well_as_the_original_knew():
    same = [[0.5, 0.9, 1.0]]
    assert math.isnan(relearning_score([[0.1, 0.2, 0.3]], same, same))


@pytest.mark.parametrize("bad", [[], [[0.1, float("nan")]], [[]]])
def test_bad_curves_raise(bad):
    with pytest.raises(ClipUnlearnError):
        relearning_score(bad, [[0.5, 0.5]] * max(1, len(bad)))


def test_mismatched_grids_raise():
    with pytest.raises(ClipUnlearnError, match="same attacks"):
        relearning_score([[0.1, 0.2]], [[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(ClipUnlearnError, match="same steps"):
        relearning_score([[0.1, 0.2]], [[0.5, 0.5, 0.5]])


curves = st.lists(st.floats(0, 1), min_size=2, max_size=5)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(curves, curves, curves), min_size=1, max_size=4))
def test_matches_an_independent_computation(triples):
    n = min(len(c) for t in triples for c in t)
    forgotten = [t[0][:n] for t in triples]
    original = [t[1][:n] for t in triples]
    oracle = [t[2][:n] for t in triples]
    f, o, z = (sum(_reference_area(c) for c in m) for m in (forgotten, original, oracle))
    got = relearning_score(forgotten, original, oracle)
    if o - z > 1e-3 * len(forgotten):
        assert got == pytest.approx((f - z) / (o - z), rel=1e-9, abs=1e-9)
    else:
        assert math.isnan(got)


@settings(max_examples=60, deadline=None)
@given(curves, st.integers(0, 4), st.floats(0, 1))
def test_r_grows_with_any_reading_of_the_forgotten_curve(curve, i, bump):
    original, oracle = [[1.0] * len(curve)], [[0.0] * len(curve)]
    higher = list(curve)
    higher[i % len(curve)] = min(1.0, higher[i % len(curve)] + bump)
    assert relearning_score([higher], original, oracle) >= relearning_score([curve], original, oracle)


# ----------------------------------------------------------------- full messages and boundaries (issue 35)


def _raises_exactly(message, fn, *args, **kwargs):
    with pytest.raises(ClipUnlearnError) as info:
        fn(*args, **kwargs)
    assert str(info.value) == message


def test_each_error_names_the_problem_and_the_fix():
    _raises_exactly("R needs at least one relearning curve. Run at least one relearning attack.",
                    relearning_score, [], [])
    _raises_exactly("A relearning curve is a non-empty list of accuracies, got shape (0,). "
                    "Pass the accuracies read at each step count, step 0 first.", relearning_area, [])
    _raises_exactly("A relearning curve holds a non-finite accuracy: [0.1, nan]. Measure it on a "
                    "non-empty set of images.", relearning_area, [0.1, float("nan")])
    _raises_exactly("The original model has 2 relearning curves, the forgotten model 1: run the same attacks "
                    "on every model.", relearning_score, [[0.1, 0.2]], [[0.5, 0.5], [0.5, 0.5]])
    _raises_exactly("The original model's curves have [3] readings, the forgotten model's [2]: read every "
                    "model at the same steps.", relearning_score, [[0.1, 0.2]], [[0.5, 0.5, 0.5]])
    # the oracle is checked like the original, against the forgotten model's grid
    _raises_exactly("The oracle has 2 relearning curves, the forgotten model 1: run the same attacks on "
                    "every model.", relearning_score, [[0.1, 0.2]], [[0.9, 0.9]], [[0.0, 0.0], [0.0, 0.0]])
    _raises_exactly("The oracle's curves have [3] readings, the forgotten model's [2]: read every model at "
                    "the same steps.", relearning_score, [[0.1, 0.2]], [[0.9, 0.9]], [[0.0, 0.0, 0.0]])


def test_the_area_is_taken_in_double_precision_whatever_the_input():
    half = np.array([0.1, 0.7, 0.3], dtype=np.float16)
    a, b, c = (float(x) for x in half)  # the exact half-precision readings, as Python floats
    assert relearning_area(half) == (a / 2 + b + c / 2) / 2
    assert relearning_area(half) != float((half[0] / 2 + half[1] + half[2] / 2) / 2)  # half arithmetic differs


def test_undefined_exactly_at_the_gap_and_the_gap_scales_with_the_attacks():
    # one attack: the original's area exceeds the oracle's by exactly min_gap, which is not above it
    assert math.isnan(relearning_score([[0.5, 0.5]], [[0.5, 0.5]], [[0.25, 0.25]], min_gap=0.25))
    assert relearning_score([[0.5, 0.5]], [[0.5, 0.5]], [[0.25, 0.25]], min_gap=0.2) == 1.0
    # two attacks: the summed gap 0.15 is below min_gap × 2 = 0.2 (though above min_gap / 2)
    original, oracle = [[0.5, 0.5], [0.5, 0.5]], [[0.425, 0.425], [0.425, 0.425]]
    assert math.isnan(relearning_score(original, original, oracle, min_gap=0.1))
    assert relearning_score(original, original, oracle, min_gap=0.07) == pytest.approx(1.0)
