"""Evaluation wiring against second computations (issue 35): the feature cache's key holds the batch-norm
statistics, and the error analysis pools its sets weighted by the images each turned wrong."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from clipunlearn.data import ImageSet, load_image_set
from clipunlearn.evaluation import Evaluator, FeatureCache
from clipunlearn.evaluation.forgetting import Targets, error_analysis
from clipunlearn.evaluation.zeroshot import EvalResult


# the stem's statistic (below both cached cuts) and one of layer4's (below the pool's input, the second cut);
# layer4's shortcut, since the last batch norm of a random-init block has a zero scale and hides its statistics
@pytest.mark.parametrize("buffer", ["visual.bn1.running_mean", "visual.layer4.0.downsample.1.running_mean"])
def test_a_changed_batch_norm_statistic_is_never_served_from_the_cache(data_slice, mini_rn_random, buffer):
    clip = copy.deepcopy(mini_rn_random)
    images = load_image_set("caltech101", data_slice, "test")
    cache = FeatureCache()
    ev = Evaluator(clip, cache, workers=0, progress=False)
    first = ev.evaluate(images)
    with torch.no_grad():  # only a buffer: no parameter of the model changes
        dict(clip.model.named_buffers())[buffer].add_(0.5)
    hits = cache.hits
    changed = ev.evaluate(images)
    assert cache.hits == hits  # both cuts depend on the statistic: nothing may be read back
    fresh = Evaluator(clip, FeatureCache(), workers=0, progress=False).evaluate(images)
    np.testing.assert_allclose(changed.logits, fresh.logits, rtol=1e-5, atol=1e-4)
    assert not np.allclose(changed.logits, first.logits, atol=1e-3)


def test_the_pooled_error_analysis_weighs_each_set_by_the_images_it_turned_wrong():
    """Set a: of its kept images one turned wrong, its true class one rank down. Set b: three turned wrong,
    two ranks down, two ranks down and three ranks down; one stayed right. Pooled over the four images
    turned wrong: 1/4 fell one rank, 3/4 at most two, and the gap is the mean of the four gaps (a mean of
    the two sets' shares, 1/2 and 5/6, or one weighted by the sets' sizes would be another number)."""
    main = ImageSet("a", "test", ["x", "y", "z"], [0, 1, 2], "mem")  # x is forgotten: its image is left out
    other = ImageSet("b", "test", ["u", "v", "w", "t"], [0, 1, 2, 3], "mem")
    before_a = np.array([[3.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 3.0]])
    after_a = np.array([[0.0, 3.0, 1.0], [0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])  # y: z above it (rank 2)
    before_b = 3.0 * np.eye(4)
    after_b = np.array([[1.0, 3.0, 2.0, 0.0],  # u: v and w above it (rank 3)
                        [2.0, 1.0, 3.0, 0.0],  # v: u and w above (rank 3)
                        [3.0, 2.0, 1.0, 4.0],  # w: u, v and t above (rank 4)
                        [0.0, 0.0, 0.0, 3.0]])  # t: still right
    gaps = [(3 - 1) / np.std([0, 1, 3]), (3 - 1) / np.std([1, 3, 2, 0]), (3 - 1) / np.std([2, 1, 3, 0]),
            (4 - 1) / np.std([3, 2, 1, 4])]

    def r(s, x):
        return EvalResult(s.name, s.classnames, np.asarray(s.labels), x)

    out = error_analysis({"a": r(main, before_a), "b": r(other, before_b)},
                         {"a": r(main, after_a), "b": r(other, after_b)}, Targets(main, [0], [other]))
    assert out["other_classes"] == pytest.approx({"n_turned_wrong": 1, "share_rank1": 1.0, "share_rank_le2": 1.0,
                                                  "mean_std_logit_gap": gaps[0]})
    assert out["b"] == pytest.approx({"n_turned_wrong": 3, "share_rank1": 0.0, "share_rank_le2": 2 / 3,
                                      "mean_std_logit_gap": np.mean(gaps[1:])})
    assert out["pooled"] == pytest.approx({"n_turned_wrong": 4, "share_rank1": 1 / 4, "share_rank_le2": 3 / 4,
                                           "mean_std_logit_gap": np.mean(gaps)})
