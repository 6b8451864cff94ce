"""Tests of clipunlearn.metrics: paper values, hand-computed values and brute-force references."""
from __future__ import annotations

import math
import random
import statistics

import numpy as np
import pytest

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.metrics import (
    avg_score,
    precision_at_k,
    precision_at_k_per_class,
    ratio_score,
    sensitivity_analysis,
)

# --------------------------------------------------------------------------- avg_score


def test_avg_score_paper_table4_lip_stanforddogs_pekinese():
    target = (0.705, 0.066)
    others = [(0.515, 0.514), (0.558, 0.559), (0.857, 0.867), (0.661, 0.658)]
    assert round(avg_score(target, others), 2) == 0.02


#: rows of the paper's Table 4 (ResNet): method, class, target (BF, AF), other classes (BF, AF), the
#: other datasets' (BF, AF), and the printed Avg. Score (three decimals, from unrounded accuracies)
TABLE4_ROWS = [
    ("Lip", "2010 Dodge Ram Pickup 3500 Crew Cab", (0.405, 0.143), [(0.558, 0.544), (0.517, 0.502), (0.857, 0.845), (0.661, 0.638)], 0.091),
    ("Lip", "trumpet creeper", (0.588, 0.0), [(0.661, 0.643), (0.558, 0.557), (0.517, 0.503), (0.857, 0.866)], 0.011),
    ("Emb", "Pekinese", (0.705, 0.361), [(0.515, 0.484), (0.558, 0.559), (0.857, 0.84), (0.661, 0.633)], 0.127),
    ("Emb", "platypus", (0.9, 0.0), [(0.857, 0.829), (0.558, 0.549), (0.517, 0.49), (0.661, 0.597)], 0.039),
    ("Amns", "2010 Dodge Ram Pickup 3500 Crew Cab", (0.405, 0.429), [(0.558, 0.49), (0.517, 0.5), (0.857, 0.868), (0.661, 0.658)], 0.244),
    ("Amns", "gazania", (0.957, 0.87), [(0.658, 0.595), (0.558, 0.557), (0.517, 0.489), (0.857, 0.834)], 0.217),
    ("EMMN", "Scotch terrier", (0.5, 0.0), [(0.517, 0.046), (0.558, 0.1), (0.857, 0.284), (0.661, 0.061)], 0.661),
    ("EMMN", "gazania", (0.957, 0.0), [(0.658, 0.107), (0.558, 0.11), (0.517, 0.104), (0.857, 0.643)], 0.538),
    ("AmnsRetain", "Pekinese", (0.705, 0.049), [(0.515, 0.667), (0.558, 0.531), (0.857, 0.835), (0.661, 0.61)], 0.044),
]


@pytest.mark.parametrize("method,name,target,others,printed", TABLE4_ROWS)
def test_avg_score_paper_table4_rows(method, name, target, others, printed):
    # the table's accuracies are rounded to three decimals, so allow that much slack
    assert avg_score(target, others) == pytest.approx(printed, abs=1.5e-3)


def test_avg_score_hand_computed():
    # target 0.4/0.8 = 0.5; others: (0.5-0.25)/0.5 = 0.5 and 0 -> (0.5 + 0.5 + 0) / 3
    assert avg_score((0.8, 0.4), [(0.5, 0.25), (0.6, 0.6)]) == pytest.approx(1 / 3)


def test_avg_score_clips_improvements_at_zero():
    # the other column improved: its term is 0, not negative
    assert avg_score((0.5, 0.0), [(0.5, 0.9)]) == 0.0
    assert avg_score((0.5, 0.25), [(0.4, 0.8), (0.4, 0.2)]) == pytest.approx((0.5 + 0 + 0.5) / 3)


def test_avg_score_without_others_is_the_target_ratio():
    assert avg_score((0.8, 0.2), []) == pytest.approx(0.25)


def test_avg_score_accepts_numpy_scalars_and_lists():
    value = avg_score([np.float32(0.8), np.float64(0.4)], np.array([[0.5, 0.25], [0.6, 0.6]]))
    assert value == pytest.approx(1 / 3)


def test_avg_score_target_before_zero_raises():
    with pytest.raises(ClipUnlearnError, match="never recognised"):
        avg_score((0.0, 0.0), [(0.5, 0.5)])


def test_avg_score_other_before_zero_raises():
    with pytest.raises(ClipUnlearnError, match=r"others\[1\].*undefined"):
        avg_score((0.5, 0.1), [(0.5, 0.5), (0.0, 0.1)])


@pytest.mark.parametrize("bad", [(1.2, 0.5), (0.5, -0.1), (70.5, 6.6)])
def test_avg_score_accuracy_outside_unit_interval_raises(bad):
    with pytest.raises(ClipUnlearnError, match=r"outside \[0, 1\]"):
        avg_score(bad, [])


def test_avg_score_percentage_hint():
    with pytest.raises(ClipUnlearnError, match="divide it by 100"):
        avg_score((0.7, 0.1), [(51.5, 51.4)])


def test_avg_score_nan_raises():
    with pytest.raises(ClipUnlearnError, match="NaN"):
        avg_score((0.7, float("nan")), [])
    with pytest.raises(ClipUnlearnError, match="NaN"):
        avg_score((0.7, 0.1), [(np.nan, 0.5)])


@pytest.mark.parametrize("bad", [(0.5,), (0.5, 0.4, 0.3), "ab", 0.5, (True, 0.5), ("0.5", 0.4)])
def test_avg_score_malformed_pair_raises(bad):
    with pytest.raises(ClipUnlearnError):
        avg_score(bad, [])


def test_avg_score_malformed_others_raises():
    with pytest.raises(ClipUnlearnError, match="others"):
        avg_score((0.5, 0.1), 0.3)
    with pytest.raises(ClipUnlearnError, match=r"others\[0\]"):
        avg_score((0.5, 0.1), [0.3])


# --------------------------------------------------------------------------- ratio_score


def test_ratio_score_hand_computed():
    # target 1 - 0.2/0.8 = 0.75; others 0.25/0.5 = 0.5, min(0.9/0.6, 1) = 1 -> mean 0.75
    assert ratio_score((0.8, 0.2), [(0.5, 0.25), (0.6, 0.9)]) == pytest.approx(0.75)


def test_ratio_score_perfect_and_worst():
    assert ratio_score((0.9, 0.0), [(0.5, 0.5), (0.3, 0.3)]) == pytest.approx(1.0)
    assert ratio_score((0.9, 0.9), [(0.5, 0.0)]) == pytest.approx(0.0)


def test_ratio_score_target_term_clipped_at_zero():
    # target accuracy doubled: 1 - 2 = -1 is clipped to 0; other kept: 1 -> (0 + 1) / 2
    assert ratio_score((0.4, 0.8), [(0.5, 0.5)]) == pytest.approx(0.5)


def test_ratio_score_errors():
    with pytest.raises(ClipUnlearnError, match="never recognised"):
        ratio_score((0.0, 0.0), [])
    with pytest.raises(ClipUnlearnError, match="undefined"):
        ratio_score((0.5, 0.0), [(0.0, 0.3)])
    with pytest.raises(ClipUnlearnError, match="NaN"):
        ratio_score((0.5, math.nan), [])
    with pytest.raises(ClipUnlearnError, match=r"outside \[0, 1\]"):
        ratio_score((0.5, 0.1), [(0.5, 1.5)])


# --------------------------------------------------------------------------- precision@k


def brute_force_precision(query_labels, database_labels, similarity, k, exclude_self):
    """Per-query precision@k with plain Python loops (ties to the lower database index)."""
    out = []
    for i, qlabel in enumerate(query_labels):
        candidates = [j for j in range(len(database_labels)) if not (exclude_self and j == i)]
        candidates.sort(key=lambda j: (-similarity[i][j], j))
        top = candidates[:k]
        out.append(sum(1 for j in top if database_labels[j] == qlabel) / k)
    return out


def random_fixture(n_query, n_database, n_labels, seed):
    rng = random.Random(seed)
    q = [rng.randrange(n_labels) for _ in range(n_query)]
    db = [rng.randrange(n_labels) for _ in range(n_database)]
    # one decimal: many ties, so the tie rule is exercised
    sim = [[round(rng.uniform(-1, 1), 1) for _ in range(n_database)] for _ in range(n_query)]
    return q, db, sim


def test_precision_at_k_hand_example():
    sim = np.array([[0.9, 0.1, 0.5], [0.2, 0.2, 0.8]])
    # query 0 (label 0): order 0, 2, 1 -> labels 0, 0, 1
    # query 1 (label 1): order 2, 0, 1 (0 before 1 on the tie) -> labels 0, 0, 1
    result = precision_at_k([0, 1], [0, 1, 0], sim, ks=(1, 2, 3))
    assert result == pytest.approx({1: 0.5, 2: 0.5, 3: 0.5})
    per_class = precision_at_k_per_class([0, 1], [0, 1, 0], sim, ks=(1, 2, 3))
    assert sorted(per_class) == [0, 1]
    assert per_class[0] == pytest.approx({1: 1.0, 2: 1.0, 3: 2 / 3})
    assert per_class[1] == pytest.approx({1: 0.0, 2: 0.0, 3: 1 / 3})


def test_precision_at_k_matches_brute_force():
    q, db, sim = random_fixture(7, 11, 3, seed=0)
    ks = (1, 3, 5, 11)
    result = precision_at_k(q, db, np.array(sim), ks=ks)
    for k in ks:
        assert result[k] == pytest.approx(statistics.mean(brute_force_precision(q, db, sim, k, False)))


def test_precision_at_k_per_class_matches_brute_force():
    q, db, sim = random_fixture(9, 10, 3, seed=1)
    ks = (1, 4)
    result = precision_at_k_per_class(q, db, sim, ks=ks)
    assert sorted(result) == sorted(set(q))
    for k in ks:
        per_query = brute_force_precision(q, db, sim, k, False)
        for label in set(q):
            expected = statistics.mean(p for p, ql in zip(per_query, q) if ql == label)
            assert result[label][k] == pytest.approx(expected)


def test_precision_at_k_exclude_self_matches_brute_force():
    labels, _, sim = random_fixture(8, 8, 2, seed=2)
    ks = (1, 2, 7)
    result = precision_at_k(labels, labels, sim, ks=ks, exclude_self=True)
    per_class = precision_at_k_per_class(labels, labels, sim, ks=ks, exclude_self=True)
    for k in ks:
        per_query = brute_force_precision(labels, labels, sim, k, True)
        assert result[k] == pytest.approx(statistics.mean(per_query))
        for label in set(labels):
            expected = statistics.mean(p for p, ql in zip(per_query, labels) if ql == label)
            assert per_class[label][k] == pytest.approx(expected)


def test_precision_at_k_exclude_self_removes_the_diagonal():
    sim = np.eye(3)  # each item is most similar to itself
    labels = [0, 1, 1]
    assert precision_at_k(labels, labels, sim, ks=(1,))[1] == pytest.approx(1.0)
    # without itself, item 0 has no match; item 1 ranks 0 (tie, lower index) before 2
    assert precision_at_k(labels, labels, sim, ks=(1, 2), exclude_self=True) == pytest.approx(
        {1: 0.0, 2: (0 + 0.5 + 0.5) / 3}
    )


def test_precision_at_k_string_labels_and_torch():
    torch = pytest.importorskip("torch")
    sim = torch.tensor([[0.1, 0.9], [0.8, 0.3]])
    result = precision_at_k_per_class(["cat", "dog"], ["cat", "dog"], sim, ks=(1,))
    assert result == {"cat": {1: 0.0}, "dog": {1: 0.0}}
    assert all(isinstance(label, str) for label in result)


def test_precision_at_k_k_too_large_raises():
    sim = np.zeros((2, 3))
    with pytest.raises(ClipUnlearnError, match="k=4"):
        precision_at_k([0, 1], [0, 1, 0], sim, ks=(1, 4))
    with pytest.raises(ClipUnlearnError, match="excluding"):
        precision_at_k([0, 1, 0], [0, 1, 0], np.zeros((3, 3)), ks=(3,), exclude_self=True)


@pytest.mark.parametrize(
    "q, db, sim, kwargs, match",
    [
        ([0, 1], [0, 1, 0], np.zeros((3, 2)), {}, "shape"),
        ([0, 1], [0, 1, 0], np.zeros((2, 3)), {"exclude_self": True, "ks": (1,)}, "square"),
        ([0, 1], [0, 1, 0], [[0.0, np.nan, 0.0], [0, 0, 0]], {"ks": (1,)}, "NaN"),
        ([0.5, 1.0], [0, 1, 0], np.zeros((2, 3)), {"ks": (1,)}, "integer or string"),
        (["a", "b"], [0, 1, 0], np.zeros((2, 3)), {"ks": (1,)}, "different kinds"),
        ([], [0, 1, 0], np.zeros((0, 3)), {"ks": (1,)}, "non-empty"),
        ([0, 1], [0, 1, 0], np.zeros((2, 3)), {"ks": (0,)}, "positive"),
        ([0, 1], [0, 1, 0], np.zeros((2, 3)), {"ks": ()}, "empty"),
    ],
)
def test_precision_at_k_bad_inputs_raise(q, db, sim, kwargs, match):
    with pytest.raises(ClipUnlearnError, match=match):
        precision_at_k(q, db, sim, **kwargs)


# --------------------------------------------------------------------------- sensitivity


def sensitivity_fixture():
    before = np.array(
        [
            [5.0, 0, 0, 0, 0],  # a: label 0, right before
            [0, 5.0, 0, 0, 0],  # b: label 1, right before
            [0, 0, 5.0, 0, 0],  # c: label 2, right before
            [0, 0, 0, 5.0, 0],  # d: label 3, right before, right after: not counted
            [5.0, 0, 0, 0, 0],  # e: label 4, wrong before: not counted
            [0, 5.0, 0, 0, 0],  # f: label 0, wrong before, right after: not counted
        ]
    )
    after = np.array(
        [
            [3.0, 4.0, 0, 0, 0],  # a: one class above the true class -> rank 2
            [5.0, 2.0, 4.0, 0, 0],  # b: two classes above -> rank 3
            [4.0, 3.0, 0.0, 2.0, 1.0],  # c: four classes above -> rank 5
            [0, 0, 0, 5.0, 0],
            [0, 0, 0, 0, 1.0],
            [2.0, 0, 0, 0, 0],
        ]
    )
    labels = np.array([0, 1, 2, 3, 4, 0])
    return before, after, labels


def test_sensitivity_hand_fixture():
    before, after, labels = sensitivity_fixture()
    result = sensitivity_analysis(before, after, labels)
    assert result["n_turned_wrong"] == 3
    assert isinstance(result["n_turned_wrong"], int)
    assert result["share_rank1"] == pytest.approx(1 / 3)
    assert result["share_rank_le2"] == pytest.approx(2 / 3)
    gaps = [
        (4.0 - 3.0) / statistics.pstdev([3.0, 4.0, 0, 0, 0]),
        (5.0 - 2.0) / statistics.pstdev([5.0, 2.0, 4.0, 0, 0]),
        (4.0 - 0.0) / statistics.pstdev([4.0, 3.0, 0.0, 2.0, 1.0]),
    ]
    assert result["mean_std_logit_gap"] == pytest.approx(statistics.mean(gaps))


def test_sensitivity_tie_at_top_counts_as_rank2():
    # argmax picks class 0 on the tie, so label 1 is wrong and ranked second
    before = np.array([[0.0, 1.0, 0.0]])
    after = np.array([[2.0, 2.0, 0.0]])
    result = sensitivity_analysis(before, after, [1])
    assert result["n_turned_wrong"] == 1
    assert result["share_rank1"] == 1.0
    assert result["share_rank_le2"] == 1.0
    assert result["mean_std_logit_gap"] == 0.0


def test_sensitivity_none_turned_wrong_gives_nan():
    before, _, labels = sensitivity_fixture()
    result = sensitivity_analysis(before, before, labels)
    assert result["n_turned_wrong"] == 0
    assert math.isnan(result["share_rank1"])
    assert math.isnan(result["share_rank_le2"])
    assert math.isnan(result["mean_std_logit_gap"])


def test_sensitivity_accepts_torch():
    torch = pytest.importorskip("torch")
    before, after, labels = sensitivity_fixture()
    result = sensitivity_analysis(torch.tensor(before), torch.tensor(after), torch.tensor(labels))
    assert result["n_turned_wrong"] == 3


@pytest.mark.parametrize(
    "before, after, labels, match",
    [
        (np.zeros((2, 3)), np.zeros((2, 4)), [0, 1], "same images"),
        (np.zeros(3), np.zeros(3), [0], "n_images, n_classes"),
        (np.zeros((2, 3)), np.zeros((2, 3)), [0, 1, 2], "one true class per row"),
        (np.zeros((2, 3)), np.zeros((2, 3)), [0, 3], r"\[0, 3\)"),
        (np.zeros((2, 3)), np.zeros((2, 3)), [0.0, 1.0], "integer"),
        (np.array([[np.nan, 0, 0], [0, 0, 0]]), np.zeros((2, 3)), [0, 1], "NaN"),
    ],
)
def test_sensitivity_bad_inputs_raise(before, after, labels, match):
    with pytest.raises(ClipUnlearnError, match=match):
        sensitivity_analysis(before, after, labels)


def test_sensitivity_constant_logits_after_raise():
    before = np.array([[0.0, 1.0, 0.0]])
    after = np.zeros((1, 3))
    with pytest.raises(ClipUnlearnError, match="Image 0.*all its logits"):
        sensitivity_analysis(before, after, [1])


# --- each bad input's message names the column and the value (what a user reads) -------------------

@pytest.mark.parametrize("score", [avg_score, ratio_score])
def test_a_bad_score_input_is_named_in_its_message(score):
    import re

    cases = [  # (target, others, the whole message)
        ((0.0, 0.1), [], "The target before-accuracy is 0, so the after/before ratio is undefined"),
        ((0.5, 0.1), [(0.5, 0.5), (0.0, 0.1)], "The others[1] before-accuracy is 0, so the after/before ratio"),
        ((50, 0.1), [], "The target before-accuracy is 50.0, outside [0, 1]. If it is a percentage, divide it by 100."),
        ((0.5, 0.1), [(0.5, 100)], "The others[0] after-accuracy is 100.0, outside [0, 1]. If it is a percentage, "
                                   "divide it by 100."),
        ((0.5, 150), [], "The target after-accuracy is 150.0, outside [0, 1]."),
        ((0.5, -0.5), [], "The target after-accuracy is -0.5, outside [0, 1]."),
        (("0.5", 0.1), [], "The target before-accuracy must be a number in [0, 1], got '0.5'."),
        ((0.5, [0.1]), [], "The target after-accuracy must be a number in [0, 1], got list."),
        ((0.5,), [], "target must be a (before, after) pair of accuracies, got (0.5,)."),
        ((0.5, 0.1), 3, "others must be a sequence of (before, after) accuracy pairs, got int."),
    ]
    for target, others, message in cases:
        with pytest.raises(ClipUnlearnError) as caught:
            score(target, others)
        text = str(caught.value)
        assert text.startswith(message) or message in text, (message, text)
        if "outside" in message and "percentage" not in message:
            assert "percentage" not in text  # the hint is for values in (1, 100] only
    with pytest.raises(ClipUnlearnError, match=re.escape("outside [0, 1].")) as caught:
        score((0.5, 1.0000001), [])
    assert "percentage" in str(caught.value)  # just above 1: read as a percentage
    assert score((np.float64(0.5), np.float32(0.25)), [(0.5, 0.5)]) == score((0.5, 0.25), [(0.5, 0.5)])


# ----------------------------------------------------------------- full messages and boundaries (issue 35)


def _message(fn, *args, **kwargs) -> str:
    with pytest.raises(ClipUnlearnError) as info:
        fn(*args, **kwargs)
    return str(info.value)


def test_an_accuracy_outside_the_unit_interval_gets_the_percentage_hint_only_up_to_100():
    hint = " If it is a percentage, divide it by 100."
    assert _message(avg_score, (100.0, 0.5), []) == f"The target before-accuracy is 100.0, outside [0, 1].{hint}"
    assert _message(avg_score, (100.5, 0.5), []) == "The target before-accuracy is 100.5, outside [0, 1]."
    assert _message(avg_score, (0.5, -0.5), []) == "The target after-accuracy is -0.5, outside [0, 1]."


def test_a_zero_dimensional_array_is_read_as_its_number():
    # np.array(x) is not a numbers.Real: it goes through float(), like a 0-d torch tensor
    assert avg_score((np.array(0.5), np.array(0.25)), []) == 0.5
    assert ratio_score((np.array(0.5), np.array(0.25)), [(np.array(0.5), np.array(0.25))]) == 0.5


def test_precision_reads_a_tensor_that_requires_grad():
    torch = pytest.importorskip("torch")
    sim = torch.tensor([[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]], requires_grad=True)
    # query 0 ranks db 0 (label 0: hit) then db 2 (label 1); query 1 ranks db 1 (label 1: hit) then db 0
    assert precision_at_k(torch.tensor([0, 1]), [0, 1, 1], sim, ks=(1, 2)) == {1: 1.0, 2: 0.5}


def test_only_an_object_with_detach_and_cpu_is_read_as_a_tensor():
    class Rows(list):  # an array-like that happens to have one of the two attributes
        cpu = "not a tensor"

    class Labels(list):
        detach = "not a tensor"

    assert precision_at_k(Labels([0, 1]), [0, 1], Rows([[1.0, 0.0], [0.0, 1.0]]), ks=(1,)) == {1: 1.0}


def test_a_single_int_k_is_one_cut_off():
    assert precision_at_k([0, 1], [0, 1, 1], [[0.9, 0.1, 0.5], [0.2, 0.8, 0.1]], ks=2) == {2: 0.5}


@pytest.mark.parametrize("args, kwargs, message", [
    (([[0, 1], [2]], [0, 1], np.zeros((2, 2))), {"ks": (1,)}, "query_labels cannot be read as an array ("),
    (([0, 1], [[0, 1], [2]], np.zeros((2, 2))), {"ks": (1,)}, "database_labels cannot be read as an array ("),
    (([0, 1], [0, 1], [[0.0, 1.0], [2.0]]), {"ks": (1,)}, "similarity cannot be read as an array ("),
])
def test_an_unreadable_input_is_named_with_the_fix(args, kwargs, message):
    got = _message(precision_at_k, *args, **kwargs)
    assert got.startswith(message) and got.endswith("). Pass a numpy array.")


@pytest.mark.parametrize("args, kwargs, message", [
    (([[0, 1]], [0, 1], np.zeros((1, 2))), {"ks": (1,)},
     "query_labels must be a non-empty 1-D sequence of labels, got shape (1, 2). Pass one label per item."),
    (([0, 1], [[0, 1]], np.zeros((2, 2))), {"ks": (1,)},
     "database_labels must be a non-empty 1-D sequence of labels, got shape (1, 2). Pass one label per item."),
    (([0, 1], [0.5, 1.0], np.zeros((2, 2))), {"ks": (1,)},
     "database_labels must hold integer or string labels, got dtype float64. Convert class ids to int (e.g. "
     "labels.astype(int)) or names to str."),
    (([0, 1], [0, 1], np.array([["a", "b"], ["c", "d"]])), {"ks": (1,)},
     "similarity must be numeric, got dtype <U1."),
    (([0, 1], [0, 1], [[0.0, np.inf], [0.0, 0.0]]), {"ks": (1,)},
     "similarity holds NaN or infinite values, so the ranking is undefined. Check the embeddings (a zero vector "
     "normalised gives NaN)."),
    (([0, 1], [0, 1], np.zeros((2, 2))), {"ks": ()},
     "ks is empty. Pass at least one cut-off, e.g. ks=(1, 5, 10)."),
    (([0, 1], [0, 1], np.zeros((2, 2))), {"ks": (True,)}, "Each k must be a positive integer, got True."),
    (([0, 1], [0, 1], np.zeros((2, 2))), {"ks": (1.0,)}, "Each k must be a positive integer, got 1.0."),
    (([0, 1], [0, 1, 0], np.zeros((2, 3))), {"ks": (1, 4)},
     "k=4 is larger than the 3 database items that can be ranked. Use k <= 3, or a larger database."),
    (([0, 1, 0], [0, 1, 0], np.zeros((3, 3))), {"ks": (3,), "exclude_self": True},
     "k=3 is larger than the 2 database items that can be ranked after excluding each query itself. Use k <= 2, "
     "or a larger database."),
])
def test_each_precision_error_names_the_problem_and_the_fix(args, kwargs, message):
    assert _message(precision_at_k, *args, **kwargs) == message


def test_sensitivity_share_at_rank_2_or_3_leaves_out_rank_4():
    before = np.array([[5.0, 0.0, 0.0, 0.0, 0.0], [5.0, 0.0, 0.0, 0.0, 0.0]])
    after = np.array([[1.0, 2.0, 3.0, 4.0, 0.0],   # true class 0 below three classes: rank 4
                      [2.0, 3.0, 4.0, 0.0, 1.0]])  # below two: rank 3
    result = sensitivity_analysis(before, after, [0, 0])
    assert (result["n_turned_wrong"], result["share_rank1"], result["share_rank_le2"]) == (2, 0.0, 0.5)
    # gaps 3 and 2 over the population std of 0..4, which is sqrt(2)
    assert result["mean_std_logit_gap"] == pytest.approx((3 / math.sqrt(2) + 2 / math.sqrt(2)) / 2)


def test_sensitivity_with_two_classes():
    result = sensitivity_analysis([[2.0, 1.0]], [[1.0, 2.0]], [0])
    assert result == {"n_turned_wrong": 1, "share_rank1": 1.0, "share_rank_le2": 1.0,
                      "mean_std_logit_gap": 2.0}  # gap 1 over std([1, 2]) = 0.5


@pytest.mark.parametrize("before, after, labels, message", [
    (np.zeros((0, 3)), np.zeros((0, 3)), [], "logits_before must have shape (n_images, n_classes) with at least "
     "one image and two classes, got (0, 3). Stack one row of class logits per image."),
    (np.zeros((2, 3)), np.zeros((2, 1)), [0, 0], "logits_after must have shape (n_images, n_classes) with at "
     "least one image and two classes, got (2, 1). Stack one row of class logits per image."),
    (np.full((1, 2), "a"), np.zeros((1, 2)), [0], "logits_before must be numeric, got dtype <U1."),
    (np.zeros((1, 2)), [[0.0, np.inf]], [0], "logits_after holds NaN or infinite values. Check the model's "
     "outputs (a NaN weight after training gives NaN logits)."),
])
def test_each_sensitivity_error_names_the_logits_and_the_fix(before, after, labels, message):
    assert _message(sensitivity_analysis, before, after, labels) == message


def test_unreadable_sensitivity_inputs_are_named():
    for args, what in [(([[0.0, 1.0], [2.0]], np.zeros((2, 2)), [0, 1]), "logits_before"),
                       ((np.zeros((2, 2)), [[0.0, 1.0], [2.0]], [0, 1]), "logits_after"),
                       ((np.zeros((2, 2)), np.zeros((2, 2)), [[0], [0, 1]]), "labels")]:
        got = _message(sensitivity_analysis, *args)
        assert got.startswith(f"{what} cannot be read as an array (") and got.endswith("). Pass a numpy array.")
