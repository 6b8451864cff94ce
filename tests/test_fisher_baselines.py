"""The diagonal and relative Fisher information (CVPR'25 Eq. 1-2) and the CVPR'25 baselines ft, ga,
emmn-real, fisher and lip-foster: their maths against hand computations, the data they see, which
tensors change, and that each moves the model the way it says."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from clipunlearn.errors import TrainingError
from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs, get_method
from clipunlearn.methods.fisher_noise import fisher_noise_std
from clipunlearn.models.catalogue import eligible_names
from clipunlearn.training import (
    class_features,
    diagonal_fisher,
    draw_perturbations,
    image_lipschitz_loss,
    layer_fisher,
    layer_of,
    lipschitz_loss,
    rank_layers,
    relative_fisher,
    signed_prompt_ce,
    similarity_terms,
)
from clipunlearn.training.relabel import class_prompt_ce, zero_shot_logits
from conftest import TOY_CLASSES, FakeSource

TEMPLATE = "a photo of a {}."


@pytest.fixture(autouse=True)
def one_thread():
    """Small batches run fastest on one thread, and two threads crawl when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _state(clip):
    return {k: v.detach().clone() for k, v in clip.model.state_dict().items()}


def _changed(clip, before):
    return {k for k, v in clip.model.state_dict().items() if not torch.equal(v, before[k])}


def _context(clip, name, classes=(1,), seed=0, max_epochs=2):
    cls = get_method(name)
    request = ForgetRequest("toy", TOY_CLASSES, list(classes), TEMPLATE)
    return ForgetContext(clip, request, FakeSource(clip, seed=seed), cls.needs,
                         Knobs(seed=seed, max_epochs=max_epochs, max_steps=2), name)


def _run(clip, name, seed=0, max_epochs=2, **options):
    cls = get_method(name)
    ctx = _context(clip, name, seed=seed, max_epochs=max_epochs)
    return cls(cls.build_config("paper", clip.family, None, options)).run(ctx), ctx


# --- the Fisher information -----------------------------------------------------------------------

def test_diagonal_fisher_is_the_mean_squared_gradient_per_sample_or_per_chunk():
    lin = nn.Linear(2, 1)
    with torch.no_grad():
        lin.weight.copy_(torch.tensor([[1.0, -2.0]]))
        lin.bias.fill_(0.5)
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [1.0, 1.0]])
    y = torch.tensor([0.0, 1.0, 1.0, -1.0])

    def loss_fn(xb, yb):  # ½ (w·x + b − y)², mean over the chunk
        return 0.5 * (lin(xb).squeeze(-1) - yb).pow(2).mean()

    # residuals r = w·x + b − y: 1.5, −2.5, −0.5, 0.5; per sample ∂/∂w = r x, ∂/∂b = r
    r = torch.tensor([1.5, -2.5, -0.5, 0.5])
    lin.train(True)
    f = diagonal_fisher(lin, ["weight", "bias"], loss_fn, x, y, batch_size=1)
    assert torch.allclose(f["weight"], ((r[:, None] * x) ** 2).mean(0, keepdim=True))
    assert torch.allclose(f["bias"], (r ** 2).mean().reshape(1))
    # chunks of 2: the chunk's mean gradient, squared, averaged over the 2 chunks
    f2 = diagonal_fisher(lin, ["weight", "bias"], loss_fn, x, y, batch_size=2)
    g = torch.stack([(r[i:i + 2, None] * x[i:i + 2]).mean(0) for i in (0, 2)])
    assert torch.allclose(f2["weight"], (g ** 2).mean(0, keepdim=True))
    assert torch.allclose(f2["bias"], torch.stack([r[:2].mean(), r[2:].mean()]).pow(2).mean().reshape(1))
    # the model is as before: training mode, every tensor requires gradients, no .grad left
    assert lin.training and lin.weight.requires_grad and lin.bias.requires_grad
    assert lin.weight.grad is None and lin.bias.grad is None
    # only the named tensors; one the loss does not reach gets zeros
    only = diagonal_fisher(lin, ["bias"], loss_fn, x, y)
    assert set(only) == {"bias"} and torch.allclose(only["bias"], f["bias"])
    extra = nn.Parameter(torch.ones(3))
    lin.register_parameter("unused", extra)
    assert torch.equal(diagonal_fisher(lin, ["unused", "bias"], loss_fn, x, y)["unused"], torch.zeros(3))
    with pytest.raises(TrainingError, match="empty"):
        diagonal_fisher(lin, [], loss_fn, x, y)
    with pytest.raises(TrainingError, match="one label each"):
        diagonal_fisher(lin, ["bias"], loss_fn, x[:0], y[:0])
    with pytest.raises(TrainingError, match="not|nan"):
        diagonal_fisher(lin, ["bias"], lambda a, b: loss_fn(a, b) * float("nan"), x, y)


def test_layers_are_modules_and_layer_fisher_pools_their_elements():
    assert layer_of("visual.layer1.0.conv1.weight") == "visual.layer1.0.conv1"
    assert layer_of("visual.attnpool.q_proj.bias") == "visual.attnpool.q_proj"
    assert layer_of("visual.transformer.resblocks.0.attn.in_proj_weight") == "visual.transformer.resblocks.0.attn"
    assert layer_of("visual.proj") == "visual.proj" and layer_of("logit_scale") == "logit_scale"
    fisher = {"a.weight": torch.tensor([[1.0, 3.0]]), "a.bias": torch.tensor([2.0]),
              "b.in_proj_weight": torch.tensor([4.0, 0.0]), "b.in_proj_bias": torch.tensor([2.0]),
              "visual.proj": torch.tensor([[5.0]])}
    assert layer_fisher(fisher) == {"a": 2.0, "b": 2.0, "visual.proj": 5.0}


class TwoBranches(nn.Module):
    """y = shared(x[:, :2]) + special(x[:, 2:]): the special branch only sees the last two inputs."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.shared = nn.Linear(2, 3)
        self.special = nn.Linear(2, 3, bias=False)

    def forward(self, x):
        return self.shared(x[:, :2]) + self.special(x[:, 2:])


def test_relative_fisher_prefers_the_layer_only_the_forget_data_uses():
    model = TwoBranches()
    gen = torch.Generator().manual_seed(0)
    forget = torch.cat([3 * torch.randn(6, 2, generator=gen), 0.3 * torch.randn(6, 2, generator=gen)], 1)
    retain = torch.cat([3 * torch.randn(6, 2, generator=gen), torch.zeros(6, 2)], 1)  # never uses `special`
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    names = [n for n, _ in model.named_parameters()]

    def loss_fn(x, y):
        return nn.functional.cross_entropy(model(x), y)

    f_forget = layer_fisher(diagonal_fisher(model, names, loss_fn, forget, labels))
    f_retain = layer_fisher(diagonal_fisher(model, names, loss_fn, retain, labels))
    assert f_retain["special"] == 0.0 and f_retain["shared"] > 0
    assert f_forget["shared"] > f_forget["special"] > 0  # the plain Fisher ranks `shared` first ...
    assert rank_layers(f_forget, 1) == ["shared"]
    rel = relative_fisher(f_forget, f_retain, eps=1e-8)
    assert rel["special"] == pytest.approx(f_forget["special"] / 1e-8)
    assert rel["shared"] == pytest.approx(f_forget["shared"] / (f_retain["shared"] + 1e-8))
    assert rank_layers(rel, 1) == ["special"]  # ... the relative Fisher ranks `special` first


def test_rank_layers_is_deterministic_and_inputs_are_checked():
    scores = {"a": 1.0, "b": 2.0, "c": 2.0, "d": 0.0}
    assert rank_layers(scores, 3) == ["b", "c", "a"]
    assert rank_layers(scores, 0) == [] and rank_layers(scores, 10) == ["b", "c", "a", "d"]
    with pytest.raises(TrainingError, match="NaN"):
        rank_layers({"a": float("nan")}, 1)
    with pytest.raises(TrainingError, match="top"):
        rank_layers(scores, -1)
    with pytest.raises(TrainingError, match="eps"):
        relative_fisher({"a": 1.0}, {"a": 1.0}, 0.0)
    with pytest.raises(TrainingError, match="different layers"):
        relative_fisher({"a": 1.0}, {"b": 1.0}, 1e-8)


# --- the signed zero-shot CE and the Lipschitz terms ------------------------------------------------

def test_relative_fisher_masks_keep_the_share_of_highest_ratio_by_hand():
    from clipunlearn.training.fisher import relative_fisher_mask

    forget = {"a": torch.tensor([[4.0, 0.0], [1.0, 1.0]]), "b": torch.tensor([[2.0, 2.0]]), "c": torch.tensor([3.0])}
    retain = {"a": torch.tensor([[1.0, 1.0], [1.0, 1.0]]), "b": torch.tensor([[4.0, 4.0]]), "c": torch.tensor([1.0])}
    # channels: forget rows (4, 2), (4), c's one element (3); retain rows (2, 2), (8), (1); mean retain 13/4
    floor = 1e-3 * 13 / 4
    ratios = {"a0": 4 / (2 + floor), "a1": 2 / (2 + floor), "b0": 4 / (8 + floor), "c": 3 / (1 + floor)}
    assert sorted(ratios, key=ratios.get, reverse=True)[:2] == ["c", "a0"]
    m = relative_fisher_mask(forget, retain, share=0.5, unit="channel")
    assert m["a"].tolist() == [[1.0, 1.0], [0.0, 0.0]] and m["b"].tolist() == [[0.0, 0.0]] and m["c"].tolist() == [1.0]
    # elements: ratios about 4, 0, 1, 1 | 0.5, 0.5 | 3 (floor 1e-3 · 13/7): the top 2 of 7 are a[0, 0] and c
    m = relative_fisher_mask(forget, retain, share=2 / 7, unit="element")
    assert m["a"].tolist() == [[1.0, 0.0], [0.0, 0.0]] and not m["b"].any() and m["c"].tolist() == [1.0]
    assert all(m[k].shape == forget[k].shape and m[k].dtype == forget[k].dtype for k in forget)
    for bad, match in ((dict(share=0.0), "must lie in"), (dict(share=1.5), "must lie in"),
                       (dict(share=0.5, unit="layer"), "Unknown Fisher unit"), (dict(share=0.5, eps=0.0), "eps")):
        with pytest.raises(TrainingError, match=match):
            relative_fisher_mask(forget, retain, **bad)
    with pytest.raises(TrainingError, match="different tensors"):
        relative_fisher_mask(forget, {"a": retain["a"]}, 0.5)


def test_signed_prompt_ce_against_class_prompt_ce(mini_rn_random):
    clip = mini_rn_random
    pixels = torch.rand(3, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([2, 0, 1])
    names = ["cat", "dog", "car"]
    with torch.no_grad():
        text = class_features(clip, names, TEMPLATE)
        tokens = clip.tokenize([TEMPLATE.format(c) for c in names])
        per_image = torch.stack([class_prompt_ce(clip, pixels[i:i + 1], labels[i:i + 1], tokens) for i in range(3)])
        loss, ce = signed_prompt_ce(clip, pixels, labels, torch.tensor([1, -1, 1]), text)
        logits = zero_shot_logits(clip, pixels, text)
    assert torch.allclose(ce, per_image, rtol=1e-4, atol=1e-5)
    assert loss.item() == pytest.approx(float(per_image[0] - per_image[1] + per_image[2]) / 3, rel=1e-4, abs=1e-5)
    assert logits.abs().max() <= 100.0 + 1e-3  # bounded: CE cannot diverge


def test_similarity_terms_against_hand_computation():
    text = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    clean = torch.tensor([[2.0, 0.0]])  # s = (1, 0)
    perturbed = torch.tensor([[[0.0, 3.0]], [[1.0, 0.0]]])  # s = (0, 1), (1, 0)
    k = similarity_terms(clean, perturbed, text, torch.tensor([[2.0], [1.0]]))
    assert k.flatten().tolist() == pytest.approx([math.sqrt(2) / 2, 0.0])


def test_image_lipschitz_loss_shares_the_lip_image_term(mini_vit_random_small):
    clip = mini_vit_random_small
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, clip.image_size, clip.image_size, generator=gen)
    eps = draw_perturbations(3, pixels.shape, 0.5, gen)
    with torch.no_grad():
        image_only, parts = image_lipschitz_loss(clip, pixels, eps)
        reference = lipschitz_loss(clip, pixels, None, eps, scaling="mean", perturbation="paper")
        text = class_features(clip, ["cat", "dog"], TEMPLATE)
        both, parts2 = image_lipschitz_loss(clip, pixels, eps, text)
    assert image_only.item() == pytest.approx(reference.item(), rel=1e-5)
    assert parts["lipschitz_embedding"] == pytest.approx(image_only.item(), rel=1e-5)
    assert both.item() == pytest.approx(parts2["lipschitz_embedding"] + parts2["lipschitz_similarity"], rel=1e-5)
    assert parts2["lipschitz_similarity"] > 0


@pytest.fixture(scope="module")
def mini_vit_random_small():
    from clipunlearn.models import load_clip

    torch.manual_seed(0)
    return load_clip("mini-vit", pretrained="none")


# --- the methods ---------------------------------------------------------------------------------

def _retain_ce(clip, ctx):
    retain = ctx.real_retain()
    text = class_features(clip, ctx.request.classnames, TEMPLATE)
    with torch.no_grad():
        return float(signed_prompt_ce(clip, retain.images, retain.labels, torch.ones(len(retain)), text)[0])


def test_ft_fits_the_retain_images_and_changes_only_the_image_tower(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    ce_before = _retain_ce(clip, _context(copy.deepcopy(mini_rn_random), "ft"))
    trace, ctx = _run(clip, "ft", batch_size=6)  # the paper preset: lr 1e-5
    assert ctx._source.calls == ["real_retain"] and get_method("ft").zero_shot() == "not ZS"
    assert trace.info == {"train_images": 12, "unlearned_images": 0, "steps_per_epoch": 2} and trace.epochs == 2
    assert all({"retain_acc", "ce"} <= set(r) for r in trace.steps[1:])
    assert _retain_ce(clip, ctx) < ce_before
    image = eligible_names(clip.model, "image", "all")
    assert set(trace.changed_tensors) == set(image)  # the whole image encoder ...
    assert _changed(clip, before) <= set(image) and "visual.conv1.weight" in _changed(clip, before)
    assert not any(n.startswith("transformer.") for n in _changed(clip, before))  # ... and no text tensor


def test_ft_refuses_a_request_without_retain_images(mini_rn_random):
    ctx = _context(copy.deepcopy(mini_rn_random), "ft", classes=range(len(TOY_CLASSES)))
    with pytest.raises(TrainingError, match="ft needs retain images"):
        get_method("ft")().run(ctx)


def test_ga_lowers_the_forget_images_probability_and_stops_at_its_goal(mini_rn_random):
    trace, ctx = _run(copy.deepcopy(mini_rn_random), "ga", lr=1e-4)
    assert ctx._source.calls == ["real_forget"] and get_method("ga").zero_shot() == "semi ZS"
    assert trace.info["unlearned_images"] == 3 == trace.info["train_images"]
    probs = [r["target_prob"] for r in trace.steps]
    assert probs[-1] < probs[0] and trace.stopped_because == "reached max_epochs (2)"
    assert [r["ce"] for r in trace.steps[1:]] == sorted(r["ce"] for r in trace.steps[1:])  # ascending CE
    stopped, _ = _run(copy.deepcopy(mini_rn_random), "ga", lr=1e-4, goal_acc=1.0)
    assert stopped.epochs == 1 and stopped.stopped_because.startswith("forget_acc")
    with pytest.raises(TrainingError, match="ga needs forget images"):
        get_method("ga")().run(_context(copy.deepcopy(mini_rn_random), "ga", classes=()))


def test_emmn_real_ascends_on_forget_and_descends_on_retain(mini_rn_random, monkeypatch):
    from clipunlearn.training import finetune

    seen = []

    def recording(clip, pixels, labels, signs, text):
        seen.append((labels.clone(), signs.clone()))
        return signed_prompt_ce(clip, pixels, labels, signs, text)

    monkeypatch.setattr(finetune, "signed_prompt_ce", recording)
    trace, ctx = _run(copy.deepcopy(mini_rn_random), "emmn-real", max_epochs=1, batch_size=8)
    assert sorted(ctx._source.calls) == ["real_forget", "real_retain"]
    assert get_method("emmn-real").zero_shot() == "not ZS" and get_method("emmn").zero_shot() == "ZS"
    labels = torch.cat([s[0] for s in seen])
    signs = torch.cat([s[1] for s in seen])
    # 3 forget images of "dog" (1) ascended, 3 images of each other class descended, in batches of 8
    assert sorted(zip(labels.tolist(), signs.tolist())) == sorted([(1, -1)] * 3 + [(c, 1) for c in (0, 2, 3, 4)
                                                                                   for _ in range(3)])
    assert trace.info == {"train_images": 15, "unlearned_images": 3, "steps_per_epoch": 2}
    assert {"forget_acc", "target_prob", "retain_acc"} <= set(trace.steps[-1])
    with pytest.raises(TrainingError, match="emmn-real needs retain images"):
        get_method("emmn-real")().run(_context(copy.deepcopy(mini_rn_random), "emmn-real",
                                               classes=range(len(TOY_CLASSES))))


def test_fisher_noise_std_is_scaled_by_the_largest_fisher():
    std = fisher_noise_std({"a": torch.tensor([0.0, 1.0]), "b": torch.tensor([4.0])}, 0.2)
    assert std["a"].tolist() == pytest.approx([0.0, math.sqrt(0.2 / 4)]) and std["b"].tolist() == pytest.approx(
        [math.sqrt(0.2)])
    assert torch.equal(fisher_noise_std({"a": torch.zeros(2)}, 0.2)["a"], torch.zeros(2))
    with pytest.raises(TrainingError, match="scale"):
        fisher_noise_std({"a": torch.ones(1)}, -1.0)


def test_fisher_adds_the_seeded_fisher_scaled_noise_and_scale_0_changes_nothing(mini_rn_random):
    original = copy.deepcopy(mini_rn_random)
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    trace, ctx = _run(clip, "fisher", seed=5)
    assert ctx._source.calls == ["real_forget"] and trace.kept_any_step
    assert [r["epoch"] for r in trace.steps] == [0, 1] and trace.steps[1]["relative_change"] > 0
    # the same perturbation by hand: the per-image Fisher of the original model, σ² = 0.2 F / max F,
    # noise drawn tensor by tensor from the run's generator
    names = eligible_names(original.model, "image", "all")
    forget = ctx.real_forget()
    text = class_features(original, TOY_CLASSES, TEMPLATE)
    fisher = diagonal_fisher(original.model, names, lambda x, y: torch.nn.functional.cross_entropy(
        zero_shot_logits(original, x, text), y), forget.images, forget.labels)
    std = fisher_noise_std(fisher, 0.2)
    gen = ctx.generator()
    params = dict(clip.model.named_parameters())
    for name in names:
        expected = torch.randn(params[name].shape, generator=gen) * std[name]
        assert torch.allclose(params[name].detach() - before[name], expected, rtol=1e-4, atol=1e-6), name
    assert _changed(clip, before) <= set(names)
    # another seed, another perturbation; scale 0: the model is untouched
    other = copy.deepcopy(mini_rn_random)
    _run(other, "fisher", seed=6)
    assert _changed(other, before) and all(not torch.equal(other.model.state_dict()[n], clip.model.state_dict()[n])
                                           for n in _changed(other, before))
    still = copy.deepcopy(mini_rn_random)
    trace0, _ = _run(still, "fisher", scale=0.0)
    assert _changed(still, before) == set() and not trace0.kept_any_step and trace0.changed_tensors == []


def test_lip_foster_lowers_the_lipschitz_ratio_of_the_forget_images(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    ctx = _context(clip, "lip-foster", max_epochs=3)
    forget = ctx.real_forget()
    text = class_features(clip, TOY_CLASSES, TEMPLATE)
    probe = draw_perturbations(4, forget.images.shape, 0.5, torch.Generator().manual_seed(9))

    def ratio():
        with torch.no_grad():
            return image_lipschitz_loss(clip, forget.images, probe, text)[0].item()

    start = ratio()
    trace = get_method("lip-foster")(get_method("lip-foster").build_config(
        "paper", "resnet", None, {"lr": 1e-4, "n_draws": 4, "max_epochs": 3})).run(ctx)
    assert ratio() < start
    assert all({"lipschitz_embedding", "lipschitz_similarity", "forget_acc"} <= set(r) for r in trace.steps[1:])
    assert trace.info == {"forget_images": 3, "steps_per_epoch": 1} and trace.epochs == 3
    cfg = get_method("lip-foster").build_config("paper")
    assert (cfg.n_draws, cfg.sigma, cfg.max_epochs, cfg.eligibility, cfg.through_copies) == (10, 0.5, 2, "all", True)


def test_presets_carry_the_papers_settings():
    for name in ("ft", "ga", "emmn-real", "lip-foster"):
        cfg = get_method(name).build_config("paper", "vit")
        assert (cfg.lr, cfg.max_epochs, cfg.eligibility) == (1e-5, 2, "all"), name
    assert get_method("fisher").build_config("paper").scale == 0.2
