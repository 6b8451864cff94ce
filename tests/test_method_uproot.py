"""Uproot's text side on a toy request: the reset touches only the word pieces that the forgotten name
alone uses, and the image side takes over when the name has none of its own."""
from __future__ import annotations

import copy

import torch

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


def test_a_name_of_shared_pieces_is_forgotten_on_the_image_side(mini_rn_random):
    cls = get_method("uproot")
    cfg = cls.build_config("default")
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
