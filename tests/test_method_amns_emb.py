"""The Emb, Amns and AmnsRetain baselines: their losses against hand / reference computations, the
relabelling, the batches, which tensors change, seeding and presets."""
from __future__ import annotations

import copy
import math

import pytest
import torch

from clipunlearn.errors import TrainingError
from clipunlearn.methods import get_method
from clipunlearn.methods.amns import Amns, AmnsConfig
from clipunlearn.methods.amns_retain import AmnsRetain, AmnsRetainConfig
from clipunlearn.methods.emb import Emb, EmbConfig
from clipunlearn.models.catalogue import eligible_names
from clipunlearn.training.embedding import embedding_loss, embedding_terms
from clipunlearn.training.relabel import (
    ShuffledBatches,
    class_prompt_ce,
    random_other_labels,
    relabel_pool,
)


def _state(clip):
    return {k: v.clone() for k, v in clip.model.state_dict().items()}


def _changed(clip, before):
    return {k for k, v in clip.model.state_dict().items() if not torch.equal(v, before[k])}


# --- Emb ----------------------------------------------------------------------------------------
def test_embedding_terms_against_hand_computation():
    clean = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    text = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    perturbed = torch.tensor([[[0.0, 0.0], [1.0, 2.0]], [[3.0, 0.0], [1.0, 1.0]]])  # draws x images x dim
    # draw 0: img0 0 + 5 = 5, img1 1 + 1 = 2; draw 1: img0 3 + 4 = 7, img1 0 + 0 = 0 -> mean 3.5
    # alpha term: ‖(3, 4)‖ = 5, ‖(2, 2)‖ = 2√2 -> mean (5 + 2√2) / 2
    alpha_term = (5 + 2 * math.sqrt(2)) / 2
    assert embedding_terms(clean, text, perturbed, 0.0).item() == pytest.approx(3.5)
    assert embedding_terms(clean, text, perturbed, 1.0).item() == pytest.approx(3.5 + alpha_term)
    assert embedding_terms(clean, text, perturbed, 0.5).item() == pytest.approx(3.5 + 0.5 * alpha_term)


@pytest.mark.parametrize("perturbation", ["paper", "official"])
def test_embedding_loss_against_reference(mini_rn_random, perturbation):
    clip = mini_rn_random
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 64, 64, generator=gen)
    eps = torch.randn(3, 2, 3, 64, 64, generator=gen) * 0.5
    tokens = clip.tokenize(["A picture of cat", "A picture of dog"])
    with torch.no_grad():
        loss = embedding_loss(clip, pixels, tokens, eps, alpha=0.7, perturbation=perturbation)
        x = clip.normalize(pixels)
        clean = clip.model.encode_image(x)
        text = clip.model.encode_text(tokens)
        total = 0.0
        for n in range(3):
            shifted = x + eps[n]
            if perturbation == "official":
                shifted = torch.maximum(torch.minimum(shifted, x.max()), x.min())
            pert = clip.model.encode_image(shifted)
            for b in range(2):
                total += float(torch.linalg.vector_norm(clean[b] - pert[b]) + torch.linalg.vector_norm(text[b] - pert[b]))
        expected = total / 6 + 0.7 * float((clean + text).norm(dim=1).mean())
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ValueError):
        embedding_loss(clip, pixels, tokens, eps, perturbation="other")


def _small_emb(**kw):
    base = {"n_draws": 2, "sigmas": (0.1, 0.3), "k_image": (2, 3), "k_text": (2, 3), "max_epochs": 3,
            "keep": "target_prob", "goal_acc": None}
    return EmbConfig(**{**base, **kw})


def test_emb_changes_only_top_k_eligible_tensors_and_repeats(mini_rn_random, make_context):
    states, traces = [], []
    for _ in range(2):
        clip = copy.deepcopy(mini_rn_random)
        before = _state(clip)
        ctx = make_context(clip, Emb, seed=3, max_epochs=2)
        traces.append(Emb(_small_emb(lr=1e-2, keep="always")).run(ctx))
        states.append(_state(clip))
    trace = traces[0]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # same seed, same model
    assert ctx._source.calls == ["synthetic_forget"]
    assert trace.epochs == 2 and all(r["kept"] for r in trace.steps[1:])
    assert all(math.isfinite(r["embedding"]) and "forget_acc" in r for r in trace.steps[1:])
    changed = _changed(clip, before)
    eligible = set(eligible_names(clip.model, "image")) | set(eligible_names(clip.model, "text"))
    assert changed and changed <= set(trace.changed_tensors) <= eligible
    for row in trace.steps[1:]:
        n_img = sum(n.startswith("visual.") for n in row["selected"])
        assert n_img <= row["k_image"] and len(row["selected"]) - n_img <= row["k_text"]


def test_emb_no_kept_step_returns_the_original(mini_rn_random, make_context):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    trace = Emb(_small_emb(lr=0.0, weight_decay=0.0)).run(make_context(clip, Emb, max_epochs=5))
    assert not trace.kept_any_step and trace.stopped_because == "stages exhausted"
    assert not _changed(clip, before)


# --- relabelling, the loss and the batches ------------------------------------------------------
def test_random_other_labels_never_true_and_seeded():
    labels = torch.tensor([0, 1, 2, 1] * 250)
    a = random_other_labels(labels, [0, 1, 2, 3], torch.Generator().manual_seed(5))
    b = random_other_labels(labels, [0, 1, 2, 3], torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not (a == labels).any() and set(a.tolist()) <= {0, 1, 2, 3}
    # uniform over the 3 other classes: each about a third of the images of class 1
    counts = torch.bincount(a[labels == 1], minlength=4).tolist()
    assert counts[1] == 0 and all(120 < c < 215 for i, c in enumerate(counts) if i != 1)
    with pytest.raises(TrainingError):
        random_other_labels(torch.tensor([2]), [2], torch.Generator())


def test_relabel_pool():
    assert relabel_pool(5, [1]) == [0, 2, 3, 4]
    assert relabel_pool(3, [0, 1, 2]) == [0, 1, 2]  # everything forgotten: any class but the image's own


def test_class_prompt_ce_against_reference(mini_rn_random):
    clip = mini_rn_random
    pixels = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 0, 1])
    prompts = ["a photo of a cat.", "a photo of a dog.", "a photo of a car."]
    with torch.no_grad():
        loss = class_prompt_ce(clip, pixels, labels, clip.tokenize(prompts))
        img = clip.encode_image(pixels, normalize=True)
        txt = clip.encode_text(prompts, normalize=True)
        expected = 0.0
        for i, y in enumerate(labels.tolist()):
            z = [100 * float(img[i] @ txt[c]) for c in range(3)]
            expected -= z[y] - math.log(sum(math.exp(v - max(z)) for v in z)) - max(z)
        expected /= 3
    assert loss.item() == pytest.approx(expected, rel=1e-4, abs=1e-5)


def test_shuffled_batches_cover_every_item_each_epoch():
    batches = ShuffledBatches(10, 4, torch.Generator().manual_seed(0))
    assert batches.steps == 3
    epochs = [[batches.indices(s) for s in range(batches.steps)] for _ in range(2)]
    for parts in epochs:
        assert [len(p) for p in parts] == [4, 4, 2] and sorted(torch.cat(parts).tolist()) == list(range(10))
    assert not torch.equal(torch.cat(epochs[0]), torch.cat(epochs[1]))
    again = ShuffledBatches(10, 4, torch.Generator().manual_seed(0))
    assert torch.equal(again.indices(0), epochs[0][0])
    with pytest.raises(TrainingError):
        ShuffledBatches(0, 4, torch.Generator())


# --- Amns and AmnsRetain ------------------------------------------------------------------------
def test_amns_relabels_learns_the_labels_trains_every_eligible_tensor_and_repeats(mini_rn_random, make_context):
    states, traces = [], []
    for _ in range(2):
        clip = copy.deepcopy(mini_rn_random)
        before = _state(clip)
        ctx = make_context(clip, Amns, seed=4, max_epochs=3)
        traces.append(Amns(AmnsConfig(lr=1e-4, batch_size=3, max_epochs=3)).run(ctx))
        states.append(_state(clip))
    trace = traces[0]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])  # same seed, same model
    assert ctx._source.calls == ["synthetic_forget"]
    assert trace.info == {"train_images": 3, "steps_per_epoch": 1}
    assert trace.epochs == 3 and all(r["kept"] for r in trace.steps[1:])
    assert all({"forget_acc", "target_prob", "ce"} <= set(r) for r in trace.steps[1:])
    ce = [r["ce"] for r in trace.steps[1:]]
    assert ce[-1] < ce[0]  # it fits the random labels
    eligible = set(eligible_names(clip.model, "image")) | set(eligible_names(clip.model, "text"))
    assert set(trace.changed_tensors) == eligible  # selection "all": every eligible tensor gets a step
    assert _changed(clip, before) <= eligible
    forget = ctx.synthetic_forget()
    new = Amns.relabel(ctx, forget)
    assert not (new == forget.labels).any() and set(new.tolist()) <= set(ctx.request.other_classes)


def test_amns_retain_uses_real_forget_and_retain_batches(mini_rn_random, make_context):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    ctx = make_context(clip, AmnsRetain, max_epochs=1)
    trace = AmnsRetain(AmnsRetainConfig(lr=1e-3, batch_size=8)).run(ctx)
    assert sorted(ctx._source.calls) == ["real_forget", "real_retain"]
    # 3 forget images of "dog" + 3 images of each of the 4 other classes, in batches of 8
    assert trace.info == {"train_images": 15, "steps_per_epoch": 2} and trace.epochs == 1
    assert all({"forget_acc", "target_prob", "retain_acc", "ce"} <= set(r) for r in trace.steps[1:])
    eligible = set(eligible_names(clip.model, "image")) | set(eligible_names(clip.model, "text"))
    assert set(trace.changed_tensors) == eligible and _changed(clip, before) <= eligible
    images, labels, measured = AmnsRetain(AmnsRetainConfig()).training_data(ctx)
    forget, retain = measured["forget"], measured["retain"]
    assert len(images) == len(labels) == len(forget) + len(retain)
    assert not (labels[:len(forget)] == forget.labels).any()  # forget images relabelled
    assert torch.equal(labels[len(forget):], retain.labels)  # retain images keep their labels


@pytest.mark.parametrize("name,cls", [("emb", Emb), ("amns", Amns), ("amns-retain", AmnsRetain)])
def test_registry_and_presets(name, cls):
    assert get_method(name) is cls
    for preset, family in (("paper", "resnet"), ("default", "vit"), ("paper", "vit"), ("default", "resnet")):
        assert isinstance(cls.build_config(preset, family), cls.config_cls)
    assert cls.zero_shot() == ("not ZS" if cls is AmnsRetain else "ZS")


def test_emb_paper_preset_follows_lip():
    from clipunlearn.methods.lip import Lip

    for family in ("resnet", "vit"):
        emb, lip = Emb.build_config("paper", family), Lip.build_config("paper", family)
        for field in ("lr", "betas", "adam_eps", "weight_decay", "n_draws", "perturbation", "prompt", "keep",
                      "goal_acc", "eligibility", "sigmas", "k_image", "k_text", "max_epochs"):
            assert getattr(emb, field) == getattr(lip, field), field
        assert emb.alpha == 1.0
    cfg = AmnsRetain.build_config("paper", "resnet")
    assert (cfg.lr, cfg.batch_size, cfg.retain_per_class, cfg.forget_per_class) == (1e-5, 64, 10, None)
