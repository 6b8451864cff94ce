"""EMMN and SalUn (WACV'25 §5.1 baselines) and the saliency mask: their maths against hand computations."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clipunlearn.errors import TrainingError
from clipunlearn.evaluation.zeroshot import LOGIT_SCALE
from clipunlearn.methods import emmn as emmn_module
from clipunlearn.methods import get_method
from clipunlearn.methods import salun as salun_module
from clipunlearn.methods.emmn import EMMN, learn_noise, noise_objective
from clipunlearn.methods.salun import SalUn
from clipunlearn.models.catalogue import eligible_names
from clipunlearn.training.relabel import class_prompt_ce
from clipunlearn.training.saliency import loss_gradients, mask_fraction, saliency_mask

PROMPTS = ["a photo of a cat.", "a photo of a dog.", "a photo of a car."]


@pytest.fixture(autouse=True)
def one_thread():
    """Small batches run fastest on one thread, and two threads crawl when the cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# --- saliency mask ---------------------------------------------------------------------------------

def test_saliency_mask_is_the_top_half_of_all_elements_by_abs_gradient():
    grads = {"a": torch.tensor([[0.1, -0.5], [0.3, 0.0]]), "b": torch.tensor([0.2, -0.4, 0.05])}
    # |g| sorted: 0.5 (a), 0.4 (b), 0.3 (a), 0.2 (b) | 0.1, 0.05, 0.0; n = 7, k = round(3.5) = 4
    m = saliency_mask(grads, 0.5)
    assert torch.equal(m["a"], torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.equal(m["b"], torch.tensor([1.0, 1.0, 0.0]))
    assert m["a"].dtype == grads["a"].dtype and m["b"].shape == grads["b"].shape
    # one threshold over both tensors, not one per tensor: b keeps two of three, a two of four
    m = saliency_mask(grads, 0.2)  # k = round(5.6) = 6: everything but the 0.0
    assert torch.equal(m["a"], torch.tensor([[1.0, 1.0], [1.0, 0.0]])) and bool(m["b"].all())
    assert mask_fraction(saliency_mask(grads, 0.0)) == 1.0
    assert mask_fraction(saliency_mask(grads, 1.0)) == 0.0


def test_saliency_mask_breaks_ties_by_position_and_checks_its_input():
    m = saliency_mask({"a": torch.ones(2), "b": torch.ones(2)}, 0.5)
    assert m["a"].tolist() == [1.0, 1.0] and m["b"].tolist() == [0.0, 0.0]
    m = saliency_mask({"a": torch.tensor([2.0, 1.0, 1.0, 1.0])}, 0.5)
    assert m["a"].tolist() == [1.0, 1.0, 0.0, 0.0]
    with pytest.raises(TrainingError, match="sparsity"):
        saliency_mask({"a": torch.ones(2)}, 1.5)
    with pytest.raises(TrainingError, match="not finite"):
        saliency_mask({"a": torch.tensor([1.0, float("nan")])}, 0.5)


def test_loss_gradients_sum_the_losses_and_leave_the_model_as_it_was():
    torch.manual_seed(0)
    lin = nn.Linear(3, 2)
    x1, x2 = torch.randn(4, 3), torch.randn(5, 3)
    lin.train(True)
    g = loss_gradients(lin, ["weight"], (lin(x).pow(2).sum() for x in (x1, x2)))
    # hand: d/dW Σ_i ‖W x_i + b‖² = Σ_i 2 (W x_i + b) x_iᵀ
    x = torch.cat([x1, x2])
    with torch.no_grad():
        expected = 2 * (x @ lin.weight.T + lin.bias).T @ x
    assert set(g) == {"weight"} and torch.allclose(g["weight"], expected, atol=1e-5)
    assert lin.weight.grad is None and lin.bias.grad is None
    assert lin.weight.requires_grad and lin.bias.requires_grad and lin.training


def test_saliency_of_the_clip_forget_loss_matches_autograd(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    names = eligible_names(clip.model, "image")[:2] + eligible_names(clip.model, "text")[:2]
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, clip.image_size, clip.image_size, generator=gen)
    y = torch.tensor([1, 1, 0, 2])
    tokens = clip.tokenize(PROMPTS)
    g = loss_gradients(clip.model, names, (class_prompt_ce(clip, x[i:i + 2], y[i:i + 2], tokens) / 2 for i in (0, 2)))
    clip.model.eval()
    params = dict(clip.model.named_parameters())
    img = F.normalize(clip.model.encode_image(clip.normalize(x)), dim=-1)
    txt = F.normalize(clip.model.encode_text(tokens), dim=-1)
    ref = torch.autograd.grad(F.cross_entropy(LOGIT_SCALE * img @ txt.T, y), [params[n] for n in names])
    for n, r in zip(names, ref):
        assert torch.allclose(g[n], r, rtol=1e-3, atol=1e-6), n


# --- SalUn ---------------------------------------------------------------------------------------

def _small_salun(**kw):
    cfg = SalUn.build_config("paper", "resnet")
    cfg.batch_size, cfg.max_epochs = 8, 2
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_salun_changes_only_the_salient_half_of_the_eligible_elements(mini_rn_random, make_context):
    clip = copy.deepcopy(mini_rn_random)
    ctx = make_context(clip, SalUn, seed=1, max_epochs=2)
    before = {n: p.detach().clone() for n, p in clip.model.named_parameters()}
    names = eligible_names(clip.model, "image") + eligible_names(clip.model, "text")
    # the mask by hand: autograd of the forget loss (true labels), then the top half of |g| by sorting
    forget = make_context(copy.deepcopy(mini_rn_random), SalUn, seed=1).real_forget()
    ref = copy.deepcopy(mini_rn_random)
    ref.model.eval()
    params = dict(ref.model.named_parameters())
    tokens = ref.tokenize([ctx.request.template.format(c) for c in ctx.request.classnames])
    with ref.fast_conv_layout():  # the same arithmetic as the method's, so that no element near the threshold flips
        loss = class_prompt_ce(ref, forget.images, forget.labels, tokens)
        grads = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    flat = torch.cat([(g if g is not None else torch.zeros_like(params[n])).abs().flatten()
                      for n, g in zip(names, grads)])
    k = round(0.5 * flat.numel())
    order = torch.sort(flat, descending=True, stable=True).indices
    salient = torch.zeros(flat.numel(), dtype=torch.bool)
    salient[order[:k]] = True

    trace = SalUn(_small_salun()).run(ctx)
    after = dict(clip.model.named_parameters())
    changed = torch.cat([(after[n].detach() != before[n]).flatten() for n in names])
    assert trace.info["saliency_fraction"] == pytest.approx(0.5, abs=1e-6)
    assert bool(changed.any()), "nothing trained"
    assert not bool((changed & ~salient).any()), "an element outside the saliency mask changed"
    assert changed.sum() > 0.5 * salient.sum()
    for n, p in after.items():
        if n not in names:
            assert torch.equal(p.detach(), before[n]), f"{n} is not eligible but changed"
    assert [r["epoch"] for r in trace.steps] == [0, 1, 2]
    assert {"forget_acc", "retain_acc", "target_prob"} <= set(trace.steps[-1])


def test_salun_trains_on_forget_images_with_random_wrong_labels_and_retain_images_with_true_ones(
        mini_rn_random, make_context, monkeypatch):
    seen = []

    def recording(clip, pixels, labels, tokens):
        seen.append((pixels.detach().clone(), labels.clone()))
        return class_prompt_ce(clip, pixels, labels, tokens)

    monkeypatch.setattr(salun_module, "class_prompt_ce", recording)
    clip = copy.deepcopy(mini_rn_random)
    ctx = make_context(clip, SalUn, seed=2, max_epochs=1)
    forget, retain = ctx.real_forget(), ctx.real_retain()
    SalUn(_small_salun(max_epochs=1)).run(ctx)
    saliency_call, training_calls = seen[0], seen[1:]
    assert torch.equal(saliency_call[0], forget.images) and torch.equal(saliency_call[1], forget.labels)
    pixels = torch.cat([p for p, _ in training_calls])
    labels = torch.cat([y for _, y in training_calls])
    assert len(labels) == len(forget) + len(retain)  # one epoch: every image once
    for img, true in zip(forget.images, forget.labels.tolist()):
        row = [i for i in range(len(pixels)) if torch.equal(pixels[i], img)]
        assert len(row) == 1
        assert labels[row[0]] != true and labels[row[0]] in ctx.request.other_classes
    for img, true in zip(retain.images, retain.labels.tolist()):
        row = [i for i in range(len(pixels)) if torch.equal(pixels[i], img)]
        assert len(row) == 1 and labels[row[0]] == true


def test_salun_presets_build():
    for preset, family in (("paper", "resnet"), ("default", "vit"), ("paper", "vit"), ("default", "resnet")):
        cfg = SalUn.build_config(preset, family)
        assert cfg.sparsity == 0.5 and cfg.batch_size >= 1
    assert SalUn.build_config("paper", "resnet", "no-saliency").sparsity == 0.0
    assert get_method("salun") is SalUn and SalUn.zero_shot() == "not ZS"


# --- EMMN ----------------------------------------------------------------------------------------

def test_noise_objective_matches_a_hand_computation(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    clip.model.eval()
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(3, 3, clip.image_size, clip.image_size, generator=gen)
    y = torch.tensor([1, 0, 1])
    with torch.no_grad():
        text = F.normalize(clip.model.encode_text(clip.tokenize(PROMPTS)), dim=-1)
        f = clip.model.encode_image(z)
        f = f / f.norm(dim=-1, keepdim=True)
        p = torch.softmax(100.0 * f @ text.T, dim=1)
        ce = [-torch.log(p[i, y[i]]) for i in range(3)]
        sq = [float((z[i] ** 2).sum()) for i in range(3)]
        for maximise, sign in ((True, -1.0), (False, 1.0)):
            hand = sum(sign * float(c) + 0.1 * s for c, s in zip(ce, sq)) / 3
            got = float(noise_objective(clip, z, y, text, maximise, 0.1))
            assert got == pytest.approx(hand, rel=1e-4)
        assert float(noise_objective(clip, z, y, text, True, 0.1, n_total=6)) == pytest.approx(
            sum(-float(c) + 0.1 * s for c, s in zip(ce, sq)) / 6, rel=1e-4)


def _mean_ce(clip, x, y):
    was = clip.model.training
    clip.model.eval()  # in train mode batch norm would update its running statistics
    with torch.no_grad():
        ce = float(class_prompt_ce(clip, x, y, clip.tokenize(PROMPTS)))
    clip.model.train(was)
    return ce


def test_learn_noise_maximises_or_minimises_the_ce_of_a_frozen_model(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    clip.model.train(True)
    before = {n: p.detach().clone() for n, p in clip.model.named_parameters()}
    buffers = {n: b.clone() for n, b in clip.model.named_buffers()}
    tokens = clip.tokenize(PROMPTS)
    y = torch.tensor([1, 1, 0, 2])
    start = learn_noise(clip, y, tokens, True, 0, 0.1, 0.1, torch.Generator().manual_seed(5))
    up = learn_noise(clip, y, tokens, True, 6, 0.1, 0.0, torch.Generator().manual_seed(5))
    down = learn_noise(clip, y, tokens, False, 6, 0.1, 0.0, torch.Generator().manual_seed(5))
    assert _mean_ce(clip, up, y) > _mean_ce(clip, start, y) > _mean_ce(clip, down, y)
    # with UNSIR's L2 penalty, each objective falls from the same start
    with torch.no_grad():
        text = F.normalize(clip.model.eval().encode_text(tokens), dim=-1)
        for maximise in (True, False):
            x = learn_noise(clip, y, tokens, maximise, 6, 0.1, 0.1, torch.Generator().manual_seed(5))
            assert float(noise_objective(clip, clip.normalize(x), y, text, maximise, 0.1)) < \
                   float(noise_objective(clip, clip.normalize(start), y, text, maximise, 0.1))
    clip.model.train(True)
    for x in (start, up, down):
        assert x.shape == (4, 3, clip.image_size, clip.image_size) and x.min() >= 0 and x.max() <= 1
    # input optimisation only: the model, its flags and its mode are as before
    for n, p in clip.model.named_parameters():
        assert torch.equal(p.detach(), before[n]) and p.requires_grad and p.grad is None
    assert clip.model.training and all(torch.equal(b, buffers[n]) for n, b in clip.model.named_buffers())
    # seeded, and chunks change nothing but memory
    again = learn_noise(clip, y, tokens, True, 6, 0.1, 0.0, torch.Generator().manual_seed(5), chunk=3)
    assert torch.allclose(again, up, atol=1e-4)


def _small_emmn(**kw):
    cfg = EMMN.build_config("paper", "resnet")
    cfg.noise_steps, cfg.noise_per_class, cfg.retain_noise_per_class, cfg.batch_size = 2, 8, 2, 8
    for k, v in kw.items():
        setattr(cfg, k, v)
    return cfg


def test_emmn_impairs_on_both_noises_then_repairs_on_the_min_noise(mini_rn_random, make_context, monkeypatch):
    seen = []

    def recording(clip, pixels, labels, tokens):
        seen.append(labels.clone())
        return class_prompt_ce(clip, pixels, labels, tokens)

    monkeypatch.setattr(emmn_module, "class_prompt_ce", recording)
    clip = copy.deepcopy(mini_rn_random)
    before = {n: p.detach().clone() for n, p in clip.model.named_parameters()}
    ctx = make_context(clip, EMMN, seed=0, max_epochs=None, max_steps=None)
    trace = EMMN(_small_emmn()).run(ctx)
    assert ctx.data_seen == {} and EMMN.zero_shot() == "ZS"
    # impair: 8 max-noise images labelled "dog" (1) and 2 min-noise images of each other class
    impair_steps, repair_steps = trace.info["impair_steps_per_epoch"], trace.info["repair_steps_per_epoch"]
    assert (impair_steps, repair_steps) == (2, 1)
    impair = torch.cat(seen[:impair_steps])
    repair = torch.cat(seen[impair_steps:])
    assert sorted(impair.tolist()) == sorted([1] * 8 + [0, 0, 2, 2, 3, 3, 4, 4])
    assert sorted(repair.tolist()) == [0, 0, 2, 2, 3, 3, 4, 4]
    # one trace, both loops: a start row and one epoch each, tagged by phase
    assert [(r["phase"], r["epoch"]) for r in trace.steps] == [("impair", 0), ("impair", 1),
                                                               ("repair", 0), ("repair", 1)]
    assert trace.stopped_because.startswith("impair: ") and "; repair: " in trace.stopped_because
    assert {"max_noise_as_forget", "min_noise_acc"} <= set(trace.steps[0])
    eligible = set(eligible_names(clip.model, "image") + eligible_names(clip.model, "text"))
    for n, p in clip.model.named_parameters():
        if n not in eligible:
            assert torch.equal(p.detach(), before[n]), f"{n} is not eligible but changed"
    assert any(not torch.equal(p.detach(), before[n]) for n, p in clip.model.named_parameters() if n in eligible)
    assert set(trace.changed_tensors) <= eligible


def test_emmn_noise_steps_are_capped_by_the_run_and_presets_build(mini_rn_random, make_context):
    ctx = make_context(copy.deepcopy(mini_rn_random), EMMN, seed=0, max_epochs=1, max_steps=1)
    trace = EMMN(_small_emmn(noise_steps=5)).run(ctx)
    assert trace.info["noise_steps"] == 1
    for preset, family in (("paper", "resnet"), ("default", "vit"), ("paper", "vit"), ("default", "resnet")):
        cfg = EMMN.build_config(preset, family)
        assert cfg.noise_steps >= 1 and cfg.impair_epochs >= 1 and cfg.repair_epochs >= 1
    paper = EMMN.build_config("paper", "resnet")
    assert (paper.noise_lr, paper.noise_l2, paper.noise_steps) == (0.1, 0.1, 40)  # UNSIR
