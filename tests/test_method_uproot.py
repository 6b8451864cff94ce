"""Uproot's text side on a toy request: the reset touches only the word pieces that the forgotten name
alone uses, and the image side takes over when the name has none of its own."""
from __future__ import annotations

import copy

import pytest
import torch

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs, get_method
from clipunlearn.methods.uproot import names_to_keep
from clipunlearn.training.names import name_pieces


def _context(clip, classnames, forget):
    from conftest import FakeSource

    cls = get_method("uproot")
    request = ForgetRequest("toy", classnames, [classnames.index(forget)], "a photo of a {}.")
    return ForgetContext(clip, request, FakeSource(clip, seed=0), cls.needs, Knobs(seed=0, max_epochs=2, max_steps=2),
                         cls.name)


def test_the_default_redraws_only_the_names_own_word_pieces(mini_rn_random):
    cls = get_method("uproot")
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    classes = ["cat", "minaret", "car side"]
    trace = cls(cls.build_config("default")).run(_context(clip, classes, "minaret"))
    ids = name_pieces(clip, ["minaret"], names_to_keep(classes, ["minaret"]))
    assert ids and trace.info["reset_tokens"] == ids
    after = clip.model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["token_embedding.weight"]
    rows = torch.nonzero((before["token_embedding.weight"] != after["token_embedding.weight"]).any(1)).flatten()
    assert rows.tolist() == ids
    assert trace.changed_tensors == ["token_embedding.weight"] and trace.kept_any_step
    assert [r["epoch"] for r in trace.steps] == [0, 1] and "forget_acc" in trace.steps[1]
    with torch.no_grad():  # every other name embeds exactly as before
        other = clip.tokenize(["a photo of a cat.", "a photo of a car side."])
        assert torch.equal(clip.model.encode_text(other), mini_rn_random.model.encode_text(other))


def test_a_name_of_shared_pieces_is_forgotten_by_editing_the_text_projection(mini_rn_random):
    """"dog" is an everyday name the model keeps, so the reset cannot redraw it: the default edits the
    text projection instead. The image tower is untouched, the name's prompts under the run's template
    move toward an unknown word, and the kept names' prompts stay close to where they were."""
    import torch.nn.functional as F

    cls = get_method("uproot")
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    trace = cls(cls.build_config("default")).run(_context(clip, ["cat", "dog", "bird"], "dog"))
    after = clip.model.state_dict()
    assert [k for k in before if not torch.equal(before[k], after[k])] == ["text_projection"]
    assert trace.changed_tensors == ["text_projection"] and trace.kept_any_step
    assert trace.info["reset_tokens"] == [] and "edited" in trace.info["shared_pieces"]
    edit = trace.info["text_edit"]
    keep = names_to_keep(["cat", "dog", "bird"], ["dog"])  # under 3 templates, and 1000 dated names
    assert edit["moved_cos_after"] > edit["moved_cos_before"] and edit["kept_prompts"] == 3 * len(keep) + 1000
    assert edit["moved_prompts"] == 9 and set(edit["unknown_words"]) == {"dog"}
    word = edit["unknown_words"]["dog"]
    with torch.no_grad():
        now = F.normalize(clip.encode_text(["a photo of a dog.", "a photo of a cat."]), dim=-1)
        clip.model.load_state_dict(before)
        was = F.normalize(clip.encode_text(["a photo of a dog.", "a photo of a cat.", f"a photo of a {word}."]), dim=-1)
    assert float(now[0] @ was[2]) > float(was[0] @ was[2])  # "dog" moved toward the unknown word
    assert float(now[1] @ was[1]) > 0.95  # a kept name stayed
    assert [r["epoch"] for r in trace.steps] == [0, 1] and "moved_cos" in trace.steps[1]


def test_a_name_of_shared_pieces_is_forgotten_on_the_image_side_in_the_ablation(mini_rn_random):
    cls = get_method("uproot")
    cfg = cls.build_config("default", ablation="image-fallback")
    cfg.max_epochs, cfg.retain_steps, cfg.attack_steps = 1, 2, 1
    clip = copy.deepcopy(mini_rn_random)
    trace = cls(cfg).run(_context(clip, ["cat", "dog", "bird"], "dog"))  # "dog" is in everyday names
    assert trace.info["reset_tokens"] == [] and "image side" in trace.info["image_side"]
    assert any(n.startswith("visual.") for n in trace.changed_tensors)
    assert "token_embedding.weight" not in trace.changed_tensors


def test_the_scatter_templates_are_none_of_the_prompts_the_audit_tries():
    """Uproot's image side may push the class down under its own templates, never under the audit's
    prompts attack's (the three changed templates, open_clip's 80 ImageNet templates, the run's): the
    attack stays held out."""
    from clipunlearn.audit.attacks import imagenet_templates
    from clipunlearn.data.registry import CHANGED_TEMPLATES, DEFAULT_TEMPLATE
    from clipunlearn.methods.uproot import SCATTER_TEMPLATES

    tried = {t.format("X") for t in (*imagenet_templates(), *CHANGED_TEMPLATES, DEFAULT_TEMPLATE)}
    assert len(SCATTER_TEMPLATES) == 8 and all("{}" in t for t in SCATTER_TEMPLATES)
    assert not {t.format("X") for t in SCATTER_TEMPLATES} & tried


def test_climb_again_raises_the_class_under_the_model_as_it_is_and_leaves_the_weights_alone(mini_rn_random):
    """A few more generation steps from the same images: the target probability, computed here again,
    rises; pixels stay valid; no parameter gets a gradient; the input is not changed in place."""
    import torch.nn.functional as F

    from clipunlearn.evaluation.zeroshot import LOGIT_SCALE, zero_shot_classifier
    from clipunlearn.synthetic import climb_again

    clip = mini_rn_random
    clip.model.eval()
    names = ["cat", "minaret", "car side"]
    weights = zero_shot_classifier(clip, names, ["a photo of a {}."])
    images = torch.rand(4, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([1, 1, 2, 2])
    kept = images.clone()

    def target_prob(x):
        with torch.no_grad():
            feats = F.normalize(clip.model.encode_image(clip.normalize(x)), dim=-1)
            return F.softmax(LOGIT_SCALE * feats @ weights.T, dim=1)[torch.arange(4), labels]

    x, prob = climb_again(clip, images, labels, weights, 8, gen=torch.Generator().manual_seed(1))
    assert torch.equal(images, kept) and x.shape == images.shape
    assert float(x.min()) >= 0 and float(x.max()) <= 1
    assert all(p.grad is None for p in clip.model.parameters())
    torch.testing.assert_close(prob, target_prob(x), atol=1e-4, rtol=0)
    assert float(target_prob(x).mean()) > float(target_prob(images).mean())
    with pytest.raises(ClipUnlearnError, match="at least 1 step"):
        climb_again(clip, images, labels, weights, 0)


def test_refresh_and_neighbours_in_a_run_of_the_image_side(mini_rn_random):
    """refresh_steps: each trained step reports the refreshed images' class probability; retain_neighbours:
    the run names the kept concepts it anchored, none of them the dataset's own classes."""
    cls = get_method("uproot")
    cfg = cls.build_config("default", ablation="image-fallback")
    cfg.max_epochs, cfg.retain_steps, cfg.attack_steps, cfg.refresh_steps, cfg.retain_neighbours = 2, 2, 0, 2, 3
    clip = copy.deepcopy(mini_rn_random)
    trace = cls(cfg).run(_context(clip, ["cat", "dog", "bird"], "dog"))
    trained = [s for s in trace.steps if s.get("epoch", 0) > 0]
    assert trained and all(0 <= s["refreshed_prob"] <= 1 for s in trained)
    near = trace.info["retain_neighbours"]
    assert len(near) == 3 and not set(near) & {"cat", "dog", "bird"}


def test_nearest_names_ranks_candidates_by_their_closest_forgotten_prompt(mini_rn_random):
    """Against a reference: the cosine of each candidate's prompt with every forgotten prompt, computed
    here from the text tower; forgotten names are never chosen; k bounds the list."""
    import torch.nn.functional as F

    from clipunlearn.training import nearest_names

    clip, template = mini_rn_random, "a photo of a {}."
    forget, candidates = ["minaret", "car side"], ["cat", "Minaret", "tower", "sedan", "bird", "wheel"]
    with torch.no_grad():
        emb = F.normalize(clip.model.encode_text(clip.tokenize([template.format(n) for n in
                                                                [*forget, *candidates]])).float(), dim=-1)
    near = (emb[2:] @ emb[:2].T).max(1).values.tolist()
    pool = [(near[i], c) for i, c in enumerate(candidates) if c != "Minaret"]
    expected = [c for _, c in sorted(pool, key=lambda t: -t[0])]
    assert nearest_names(clip, forget, candidates, template, 3) == expected[:3]
    assert nearest_names(clip, forget, candidates, template, 99) == expected
    assert nearest_names(clip, forget, candidates, template, 0) == []


def test_the_retain_plan_adds_a_methods_own_names_once_and_never_a_forgotten_one(mini_rn_random):
    from clipunlearn.runs.data import RunData

    request = ForgetRequest("toy", ["cat", "car side", "bird"], [1], "a photo of a {}.")
    data = RunData(mini_rn_random, None, max_steps=2)
    plain, kept_plain, _ = data.retain_plan(request, 48, True, 2)
    names, kept, _ = data.retain_plan(request, 48, True, 2, ("sedan", "car side", "car", "cat", "sedan", "car"))
    assert "car" not in plain  # the everyday word shares "car" with the forgotten name: not anchored by default
    assert names == [*plain, "sedan", "car"]  # asked for: "car" is kept, the forgotten name and repeats are not
    assert kept == [*kept_plain, len(plain), len(plain) + 1]


def test_a_negative_refresh_or_neighbour_count_is_refused_naming_the_knob(mini_rn_random):
    from clipunlearn.errors import TrainingError

    cls = get_method("uproot")
    for knob in ("refresh_steps", "retain_neighbours", "edit_dated_names"):
        cfg = cls.build_config("default")
        setattr(cfg, knob, -1)
        with pytest.raises(TrainingError, match=f"uproot's {knob} must be 0 \\(off\\) or more, got -1"):
            cls(cfg).run(_context(copy.deepcopy(mini_rn_random), ["cat", "dog", "bird"], "dog"))
    cfg = cls.build_config("default")
    cfg.refresh_steps, cfg.stop_refreshed_at = 0, 0.01
    with pytest.raises(TrainingError, match="set refresh_steps to 1 or more, or leave stop_refreshed_at unset"):
        cls(cfg).run(_context(copy.deepcopy(mini_rn_random), ["cat", "dog", "bird"], "dog"))


def test_the_refresh_stop_rule_ends_the_image_side_at_the_first_step_whose_climbed_images_miss_the_class(
        mini_rn_random):
    cls = get_method("uproot")
    cfg = cls.build_config("default", ablation="image-fallback")
    cfg.max_epochs, cfg.retain_steps, cfg.attack_steps, cfg.refresh_steps = 4, 2, 0, 1
    cfg.stop_refreshed_at = 1.0  # every probability is at most 1: the first kept step stops
    trace = cls(cfg).run(_context(copy.deepcopy(mini_rn_random), ["cat", "dog", "bird"], "dog"))
    trained = [s for s in trace.steps if s.get("epoch", 0) > 0]
    assert len(trained) == 1 and trace.stopped_because.startswith("refreshed_prob ")
    cfg.stop_refreshed_at = -1.0  # never reached: every step runs (the test's knobs cap them at 2)
    trace = cls(cfg).run(_context(copy.deepcopy(mini_rn_random), ["cat", "dog", "bird"], "dog"))
    assert len([s for s in trace.steps if s.get("epoch", 0) > 0]) == 2


@pytest.mark.parametrize("knob, value, match", [
    ("shared_pieces", "both", "Unknown shared_pieces 'both'; use one of edit, image"),
    ("edit_keep_weight", -1.0, "edit_keep_weight must be 0 or more and edit_ridge more than 0, got -1.0 and 0.001"),
    ("edit_ridge", 0.0, "edit_ridge more than 0, got 10.0 and 0.0"),
])
def test_a_bad_edit_setting_is_refused_before_anything_changes(mini_rn_random, knob, value, match):
    from clipunlearn.errors import TrainingError

    cls = get_method("uproot")
    cfg = cls.build_config("default")
    setattr(cfg, knob, value)
    clip = copy.deepcopy(mini_rn_random)
    with pytest.raises(TrainingError, match=match):
        cls(cfg).run(_context(clip, ["cat", "dog", "bird"], "dog"))
    assert all(torch.equal(a, b) for a, b in zip(clip.model.state_dict().values(),
                                                  mini_rn_random.model.state_dict().values()))


def test_a_bad_setting_is_refused_by_the_early_check_before_any_model_loads():
    from clipunlearn.errors import TrainingError

    cls = get_method("uproot")
    cfg = cls.build_config("default")
    cfg.edit_ridge = 0.0
    with pytest.raises(TrainingError, match="edit_ridge more than 0"):
        cls(cfg).check_classes(["car side"])
    cls(cls.build_config("default")).check_classes(["car side"])  # a good one passes


def test_dated_names_put_a_seeded_year_before_kept_names():
    from clipunlearn.errors import TrainingError
    from clipunlearn.methods.uproot import YEARS, dated_names

    names = ["canoe", "red fox", "tram"]
    dated = dated_names(names, 200, torch.Generator().manual_seed(0))
    assert len(dated) == 200 and dated == dated_names(names, 200, torch.Generator().manual_seed(0))
    years = [int(d.split(" ", 1)[0]) for d in dated]
    assert {d.split(" ", 1)[1] for d in dated} == set(names)  # every name drawn, and only these
    assert min(years) >= YEARS[0] and max(years) <= YEARS[1] and len(set(years)) > 50
    assert dated != dated_names(names, 200, torch.Generator().manual_seed(1))
    assert dated_names([], 0, torch.Generator()) == []
    with pytest.raises(TrainingError, match="^dated_names needs at least one name to date; pass the kept names.$"):
        dated_names([], 3, torch.Generator())


def test_the_ablation_without_dated_names_keeps_the_kept_names_only(mini_rn_random):
    cls = get_method("uproot")
    assert cls.build_config("default").edit_dated_names == 1000
    cfg = cls.build_config("default", ablation="no-dated-names")
    trace = cls(cfg).run(_context(copy.deepcopy(mini_rn_random), ["cat", "dog", "bird"], "dog"))
    assert trace.info["text_edit"]["kept_prompts"] == 3 * len(names_to_keep(["cat", "dog", "bird"], ["dog"]))
