"""The closed-form edit of the text projection (training.text_edit), against a reference solve."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from clipunlearn.errors import TrainingError
from clipunlearn.training.text_edit import edit_text_projection, pooled_text

MOVED = ["a photo of a tree mallow.", "tree mallow", "a view of a tree mallow."]
KEPT = ["a photo of a mallow.", "a photo of a tree.", "a photo of a cat.", "a photo of a dog.", "mallow", "tree"]


def test_the_pooled_feature_times_the_projection_is_the_towers_output(mini_rn_random):
    clip = mini_rn_random
    with torch.no_grad():
        full = clip.model.encode_text(clip.tokenize(KEPT))
    pooled = pooled_text(clip, KEPT, batch=4)  # two batches
    assert pooled.shape == (len(KEPT), clip.model.text_projection.shape[0])
    torch.testing.assert_close(pooled @ clip.model.text_projection.detach(), full, rtol=1e-5, atol=1e-5)
    assert clip.model.text_projection is not None  # put back


def test_the_edit_is_the_weighted_least_squares_answer(mini_rn_random):
    """Reference: the same problem as one stacked least-squares system (rows of the moved prompts, of the
    kept ones and of the ridge, each scaled by the square root of its weight), solved by lstsq."""
    clip = copy.deepcopy(mini_rn_random)
    p = clip.model.text_projection.detach().double().clone()
    gen = torch.Generator().manual_seed(0)
    targets = torch.randn(len(MOVED), p.shape[1], generator=gen)
    xm, xk = pooled_text(clip, MOVED).double(), pooled_text(clip, KEPT).double()
    w, ridge = 4.0, 1e-2
    r = ridge * float(torch.diagonal(xm.T @ xm / len(xm) + w * xk.T @ xk / len(xk)).mean())
    rows = torch.cat([xm / len(xm) ** 0.5, xk * (w / len(xk)) ** 0.5, torch.eye(len(p), dtype=p.dtype) * r ** 0.5])
    rhs = torch.cat([targets.double() / len(xm) ** 0.5, xk @ p * (w / len(xk)) ** 0.5, p * r ** 0.5])
    want = torch.linalg.lstsq(rows, rhs).solution
    done = edit_text_projection(clip, MOVED, targets, KEPT, keep_weight=w, ridge=ridge)
    torch.testing.assert_close(clip.model.text_projection.detach().double(), want, rtol=1e-4, atol=1e-6)
    assert done.relative_change == pytest.approx(float((want - p).norm() / p.norm()), rel=1e-4)
    assert done.moved_cos_after > done.moved_cos_before


def test_a_heavy_keep_weight_keeps_the_kept_prompts_and_still_moves_the_others(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    with torch.no_grad():
        kept_before = F.normalize(clip.encode_text(KEPT), dim=-1)
        targets = clip.encode_text(["a photo of a zqxvbn.", "zqxvbn", "a view of a zqxvbn."])
    done = edit_text_projection(clip, MOVED, targets, KEPT, keep_weight=1e3)
    with torch.no_grad():
        kept_after = F.normalize(clip.encode_text(KEPT), dim=-1)
        moved_after = F.normalize(clip.encode_text(MOVED), dim=-1)
    assert float((kept_after * kept_before).sum(-1).min()) > 0.999
    assert done.kept_cos_after > 0.999
    assert float((moved_after * F.normalize(targets, dim=-1)).sum(-1).mean()) == pytest.approx(done.moved_cos_after, abs=1e-4)
    assert done.moved_cos_after > done.moved_cos_before + 0.01
    # and with no kept prompts at all the moved ones reach their targets
    clip2 = copy.deepcopy(mini_rn_random)
    assert edit_text_projection(clip2, MOVED, targets, [], keep_weight=1.0, ridge=1e-6).moved_cos_after > 0.99


@pytest.mark.parametrize("kwargs, match", [
    ({"targets": torch.zeros(2, 4)}, "^edit_text_projection needs one target per moved prompt, got 3 prompts and 2 targets\\.$"),
    ({"keep_weight": -1.0}, "^edit_text_projection needs keep_weight >= 0 and ridge > 0, got -1.0 and 0.001\\.$"),
    ({"ridge": 0.0}, "^edit_text_projection needs keep_weight >= 0 and ridge > 0, got 1.0 and 0.0\\.$"),
])
def test_bad_edits_are_refused_and_change_nothing(mini_rn_random, kwargs, match):
    clip = copy.deepcopy(mini_rn_random)
    before = clip.model.text_projection.detach().clone()
    args = {"targets": torch.zeros(len(MOVED), before.shape[1]), "keep_weight": 1.0, "ridge": 1e-3, **kwargs}
    with pytest.raises(TrainingError, match=match):
        edit_text_projection(clip, MOVED, args["targets"], KEPT, keep_weight=args["keep_weight"], ridge=args["ridge"])
    assert torch.equal(clip.model.text_projection.detach(), before)


def test_a_text_tower_without_a_projection_matrix_is_refused_naming_what_to_use(mini_rn_random):
    want = ("The text tower of mini-rn has no projection matrix (text_projection) to edit (a text tower from "
            "Hugging Face, or none); use a text side that trains (text_side='train') or the image side instead.")
    clip = copy.deepcopy(mini_rn_random)
    clip.model.text_projection = None
    with pytest.raises(TrainingError) as e:
        pooled_text(clip, KEPT)
    assert str(e.value) == want
    del clip.model.text_projection  # no such attribute at all (a tower of another kind)
    with pytest.raises(TrainingError) as e:
        edit_text_projection(clip, MOVED, torch.zeros(len(MOVED), 4), KEPT, keep_weight=1.0)
    assert str(e.value) == want
    clip.model.text_projection = torch.nn.Parameter(torch.zeros(3))  # not a matrix
    with pytest.raises(TrainingError, match="no projection matrix"):
        pooled_text(clip, KEPT)


def test_an_edit_that_moves_no_prompt_is_refused(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    with pytest.raises(TrainingError, match="^edit_text_projection needs one target per moved prompt, got 0 prompts and 0"):
        edit_text_projection(clip, [], torch.zeros(0, 4), KEPT, keep_weight=1.0)


def test_the_edits_figures_are_the_cosines_recomputed_here(mini_rn_random):
    """Each figure of the returned record against the same cosine computed here from the features and the
    projections before and after; a keep weight of 0 is allowed (the kept prompts then pull nothing) and
    an edit with no kept prompt reports their cosine as 1 (nothing to keep)."""
    clip = copy.deepcopy(mini_rn_random)
    p = clip.model.text_projection.detach().double().clone()
    targets = torch.randn(len(MOVED), p.shape[1], generator=torch.Generator().manual_seed(1))
    moved = KEPT[:3]  # moved and kept at once: the kept prompts cannot all stay
    xm, xk = pooled_text(clip, moved).double(), pooled_text(clip, KEPT).double()
    done = edit_text_projection(clip, moved, targets, KEPT, keep_weight=2.0)
    new = clip.model.text_projection.detach().double()
    cos = torch.nn.functional.cosine_similarity
    assert done.moved_cos_before == pytest.approx(float(cos(xm @ p, targets.double(), dim=1).mean()), abs=1e-6)
    assert done.moved_cos_after == pytest.approx(float(cos(xm @ new, targets.double(), dim=1).mean()), abs=1e-5)
    assert done.kept_cos_after == pytest.approx(float(cos(xk @ new, xk @ p, dim=1).mean()), abs=1e-5)
    assert done.kept_cos_after < 0.99  # the kept prompts moved: the figure is not a constant
    free = copy.deepcopy(mini_rn_random)
    none_kept = edit_text_projection(free, MOVED, targets, [], keep_weight=1.0)
    zero_weight = edit_text_projection(copy.deepcopy(mini_rn_random), MOVED, targets, KEPT, keep_weight=0.0)
    assert none_kept.kept_cos_after == 1.0
    assert zero_weight.moved_cos_after == pytest.approx(none_kept.moved_cos_after, abs=1e-6)
    assert edit_text_projection(copy.deepcopy(mini_rn_random), MOVED, targets, KEPT, keep_weight=0.5).kept_cos_after > 0
