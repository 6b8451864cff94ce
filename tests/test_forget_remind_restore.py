"""forget-remind-restore (CVPR'25 §4): which layers change, the restore direction, the ViT alternative."""
from __future__ import annotations

import copy

import pytest
import torch

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.methods import get_method

FRR = get_method("forget-remind-restore")
SMALL = {"fisher_images": 4, "align_steps": 2, "remind_steps": 2, "batch_size": 8, "forget_epochs": 2}


def _run(clip, make_context, **options):
    ctx = make_context(clip, FRR, seed=1, max_epochs=2)
    trace = FRR(FRR.build_config("default", clip.family, None, {**SMALL, **options})).run(ctx)
    return ctx, trace


def _state(clip):
    return {k: v.detach().clone() for k, v in clip.model.state_dict().items()}


@pytest.mark.parametrize("lora", [True, False])
def test_only_the_top_relative_fisher_layers_change(mini_rn_random, make_context, lora):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    ctx, trace = _run(clip, make_context, restore=False, remind_steps=0, top_layers=2, lora=lora, forget_lr=1e-2)
    after = _state(clip)
    assert set(after) == set(before)  # LoRA merged back: the plain state dict, no adapter left
    layers = trace.info["layers"]
    assert len(layers) == 2 and all(layer.startswith("visual.") for layer in layers)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= {f"{layer}.weight" for layer in layers}
    assert set(ctx.data_seen) == {"real_forget", "real_retain"}
    assert "restore: skipped" in trace.stopped_because


def test_a_soup_of_alpha_one_is_the_original_model(mini_rn_random, make_context):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    _, trace = _run(clip, make_context, soup_alpha=1.0, forget_lr=1e-2)
    assert trace.info["soup_alpha"] == 1.0
    after = _state(clip)
    assert all(torch.allclose(before[k].float(), after[k].float(), atol=1e-6) for k in before)


def test_the_calibrated_soup_reports_each_alpha(mini_rn_random, make_context):
    clip = copy.deepcopy(mini_rn_random)
    _, trace = _run(clip, make_context, soup_alphas=[0.0, 0.5], forget_lr=1e-2)
    assert set(trace.info["soup_scores"]) == {"0.0", "0.5"} and trace.info["soup_alpha"] in (0.0, 0.5)
    assert [r["phase"] for r in trace.steps][-2:] == ["remind (EMA)", "restore"]
    assert all("negatives" not in r for r in trace.steps)  # remind_negatives 0: the paper's reminding loss


def test_a_vit_needs_the_documented_alternative(make_context):
    from clipunlearn.models import load_clip

    torch.manual_seed(0)
    vit = load_clip("mini-vit", pretrained="none")
    with pytest.raises(ClipUnlearnError, match="remind_alignment=false"):
        _run(copy.deepcopy(vit), make_context)
    _, trace = _run(copy.deepcopy(vit), make_context, remind_alignment=False, forget_lr=1e-2)
    assert "bn_loss_before" not in trace.info and "remind: 2 steps" in trace.stopped_because


@pytest.mark.parametrize("unit", ["channel", "element"])
def test_finer_fisher_units_change_only_the_masked_weights(mini_rn_random, make_context, unit, monkeypatch):
    """fisher_unit channel / element: forgetting, reminding and the soup move only the masked share of
    the candidate weights, every other element stays the original's."""
    from clipunlearn.training.fisher import relative_fisher_mask

    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    masks = {}
    real = relative_fisher_mask

    def spy(*args, **kwargs):
        masks.update(real(*args, **kwargs))
        return masks

    monkeypatch.setattr("clipunlearn.methods.forget_remind_restore.relative_fisher_mask", spy)
    _, trace = _run(clip, make_context, fisher_unit=unit, fisher_share=0.02, forget_lr=1e-2, soup_alphas=[0.0, 0.5])
    after = _state(clip)
    assert trace.info["fisher_unit"] == unit and trace.info["masked_layers"]
    share = sum(float(m.sum()) for m in masks.values()) / sum(m.numel() for m in masks.values())
    assert share == pytest.approx(0.02, abs=0.01 if unit == "channel" else 1e-4)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and changed <= set(masks)
    moved = 0.0
    for name in changed:  # outside the mask, every element is the original's (to the EMA's and soup's rounding)
        outside, inside = masks[name] == 0, masks[name] == 1
        assert torch.allclose(after[name][outside], before[name][outside], atol=1e-6), name
        if inside.any():
            moved = max(moved, float((after[name][inside] - before[name][inside]).abs().max()))
    assert moved > 1e-4  # while the masked ones moved
    if unit == "channel":
        for name, m in masks.items():  # whole rows
            rows = m.reshape(m.shape[0], -1)
            assert bool(((rows == 0).all(1) | (rows == 1).all(1)).all()), name


def test_fisher_settings_are_refused_before_the_model_loads():
    for options, match in (({"fisher_unit": "row"}, "Unknown fisher_unit 'row'"),
                           ({"fisher_unit": "channel", "fisher_share": 0.0}, "fisher_share.*must lie in")):
        with pytest.raises(ClipUnlearnError, match=match):
            FRR(FRR.build_config("default", "resnet", None, options)).check_classes(["a"])


def test_reminding_with_the_forgotten_subgroup_as_negatives(mini_rn_random, make_context, monkeypatch):
    """remind_negatives > 0: each reminding step adds −log(1 − p(coarse label | forget image)) at that weight,
    on a batch of forget images (recomputed here by hand from the step's logits); 0 is the paper's loss."""
    from clipunlearn.methods import forget_remind_restore as frr

    seen = []
    real = frr.zero_shot_logits

    def spy(clip, images, text):
        out = real(clip, images, text)
        seen.append((images.shape[0], out.detach().clone()))
        return out

    monkeypatch.setattr(frr, "zero_shot_logits", spy)
    clip = copy.deepcopy(mini_rn_random)
    _, trace = _run(clip, make_context, remind_negatives=2.0, restore=False, forget_lr=1e-2)
    (row,) = [r for r in trace.steps if r.get("phase") == "remind" and r["epoch"] >= 1]  # 1 epoch of 2 steps: means
    assert len(seen) == 4  # per step: the retain batch, then the forget batch
    # the toy request forgets class 1 ("dog"): every forget label is 1
    per_step = [float(-torch.log1p(-logits.softmax(-1)[:, 1]).mean()) for _, logits in seen[1::2]]
    assert row["negatives"] == pytest.approx(sum(per_step) / 2, rel=1e-4)
    assert row["loss"] == pytest.approx(row["ce"] + 2.0 * row["negatives"], rel=1e-4)
    assert "as negatives (weight 2.0)" in trace.stopped_because


def test_forgetting_keeps_the_retain_images_at_the_forget_keep_weight(mini_rn_random, make_context, monkeypatch):
    """forget_keep > 0: each forgetting step adds the cross-entropy of a batch of retain images (their coarse
    label) at that weight, recomputed here from the step's logits; none of them is held out for the soup."""
    import torch.nn.functional as F

    from clipunlearn.methods import forget_remind_restore as frr

    held, seen = {}, []
    real_hold, real_logits = frr._hold_out, frr.zero_shot_logits

    def hold(run):
        out = real_hold(run)
        held.update(retain=run.retain, calibration=set(out[1].tolist()))
        return out

    def spy(clip, images, text):
        out = real_logits(clip, images, text)
        seen.append((images.detach().cpu().clone(), out.detach().clone()))
        return out

    monkeypatch.setattr(frr, "_hold_out", hold)
    monkeypatch.setattr(frr, "zero_shot_logits", spy)
    clip = copy.deepcopy(mini_rn_random)
    _, trace = _run(clip, make_context, forget_keep=3.0, remind_steps=0, forget_lr=1e-2, soup_alphas=[0.0, 0.5])
    rows = [r for r in trace.steps if r.get("phase") == "forget" and "keep_ce" in r]
    assert rows and seen and len(seen) % len(rows) == 0  # reminding is off: every call is a forgetting step's
    retain = held["retain"]
    flat = retain.images.flatten(1)
    ces = []
    for images, logits in seen:
        idx = [int((flat == img.flatten()).all(1).nonzero()[0]) for img in images]
        assert not set(idx) & held["calibration"]
        ces.append(float(F.cross_entropy(logits, retain.labels[idx].to(logits.device))))
    per_epoch = len(seen) // len(rows)
    for i, row in enumerate(rows):
        assert row["keep_ce"] == pytest.approx(sum(ces[i * per_epoch:(i + 1) * per_epoch]) / per_epoch, rel=1e-4)
        assert row["loss"] == pytest.approx(row["similarity"] + 3.0 * row["keep_ce"], rel=1e-4)
    assert "retain images kept at weight 3.0" in trace.stopped_because
    _, plain = _run(copy.deepcopy(mini_rn_random), make_context, remind_steps=0, forget_lr=1e-2)
    assert all("keep_ce" not in r for r in plain.steps)  # forget_keep 0: the paper's forgetting loss


def test_forgetting_anchors_the_features_of_the_retain_and_synthetic_kept_images(mini_rn_random, monkeypatch):
    """forget_anchor > 0: the run also sees synthetic images of classes to keep; the anchor holds the reminding
    retain images (none held out for the soup) and those, with the original model's features; each
    forgetting step adds W · (1 − cos) over a batch of them, zero while the weights have not moved."""
    import torch.nn.functional as F
    from tests.conftest import TOY_CLASSES, FakeSource

    from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs
    from clipunlearn.methods import forget_remind_restore as frr

    anchors, held = [], {}
    real_anchor, real_hold = frr._Anchor, frr._hold_out

    def spy(run, images):
        anchors.append((real_anchor(run, images), run))
        return anchors[-1][0]

    def hold(run):
        out = real_hold(run)
        held["calibration"] = run.retain.images[out[1]]
        return out

    monkeypatch.setattr(frr, "_Anchor", spy)
    monkeypatch.setattr(frr, "_hold_out", hold)
    traces = {}
    for lr in (0.0, 1e-2):
        clip = copy.deepcopy(mini_rn_random)
        original = copy.deepcopy(clip)
        method = FRR(FRR.build_config("default", clip.family, None,
                                      {**SMALL, "forget_anchor": 4.0, "forget_lr": lr, "remind_steps": 0,
                                       "soup_alphas": [0.0, 0.5], "forget_stop": -1.0}))  # both epochs run
        assert method.data_kinds == {"real_forget", "real_retain", "synthetic_retain"}
        source = FakeSource(clip, seed=1)
        ctx = ForgetContext(clip, ForgetRequest("toy", TOY_CLASSES, [1], "a photo of a {}."), source,
                            method.data_kinds, Knobs(seed=1, max_epochs=2, max_steps=2), method.name)
        traces[lr] = method.run(ctx)
        anchor, run = anchors[-1]
        assert source.calls.count("synthetic_retain") == 1 and run.keep is not None
        assert len(anchor.images) == len(run.retain) - len(held["calibration"]) + len(run.keep)
        flat = anchor.images.flatten(1)
        assert not any(bool((flat == img.flatten()).all(1).any()) for img in held["calibration"])
        with torch.no_grad():
            expected = F.normalize(original.encode_image(anchor.images), dim=-1)
        assert torch.allclose(anchor.original, expected, atol=1e-5)
    for lr, trace in traces.items():
        rows = [r for r in trace.steps if r.get("phase") == "forget" and "anchor_drift" in r]
        assert rows and "features anchored at weight 4.0" in trace.stopped_because
        for row in rows:
            assert row["loss"] == pytest.approx(row["similarity"] + 4.0 * row["anchor_drift"], rel=1e-4, abs=1e-6)
        if lr == 0.0:
            assert all(abs(r["anchor_drift"]) < 1e-5 for r in rows)  # unmoved weights: the original features
        else:
            assert max(r["anchor_drift"] for r in rows) > 1e-4


def test_the_anchored_preset_anchors_reminds_on_raw_images_with_negatives(mini_rn_random):
    """The anchored preset: the features anchored while forgetting, reminding on the raw retain images (no
    batch-norm alignment) with the forgotten subgroup as negatives, the synthetic kept classes seen."""
    from tests.conftest import TOY_CLASSES, FakeSource

    from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs

    clip = copy.deepcopy(mini_rn_random)
    cfg = FRR.build_config("anchored", clip.family, None, {**SMALL, "forget_lr": 1e-2})
    assert (cfg.forget_anchor, cfg.remind_negatives, cfg.remind_alignment, cfg.skip_first) == (10.0, 1.0, False, 0.75)
    method = FRR(cfg)
    source = FakeSource(clip, seed=1)
    ctx = ForgetContext(clip, ForgetRequest("toy", TOY_CLASSES, [1], "a photo of a {}."), source, method.data_kinds,
                        Knobs(seed=1, max_epochs=2, max_steps=2), method.name)
    trace = method.run(ctx)
    assert set(ctx.data_seen) == {"real_forget", "real_retain", "synthetic_retain"}
    assert "bn_loss_before" not in trace.info  # reminded on the raw images
    assert any("anchor_drift" in r for r in trace.steps) and any("negatives" in r for r in trace.steps)
    assert "features anchored at weight 10.0" in trace.stopped_because and "as negatives (weight 1.0)" in \
        trace.stopped_because


def test_the_wide_soup_calibration_also_keeps_synthetic_classes(mini_rn_random):
    """soup_calibration "wide": the α score has a third column, synthetic images of classes to keep made before
    forgetting (so from the original model), classified among their names; the run declares and sees them."""
    from tests.conftest import TOY_CLASSES, FakeSource

    from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs

    clip = copy.deepcopy(mini_rn_random)
    method = FRR(FRR.build_config("default", clip.family, None,
                                  {**SMALL, "soup_calibration": "wide", "soup_alphas": [0.0, 0.5, 1.0],
                                   "forget_lr": 1e-2}))
    assert method.data_kinds == {"real_forget", "real_retain", "synthetic_retain"}
    assert FRR.zero_shot(method.data_kinds) == "not ZS"
    source = FakeSource(clip, seed=1)
    ctx = ForgetContext(clip, ForgetRequest("toy", TOY_CLASSES, [1], "a photo of a {}."), source, method.data_kinds,
                        Knobs(seed=1, max_epochs=2, max_steps=2), method.name)
    trace = method.run(ctx)
    assert set(ctx.data_seen) == {"real_forget", "real_retain", "synthetic_retain"}
    assert source.calls.count("synthetic_retain") == 1 and trace.info["keep_synthetic"] > 0
    # α = 1 is the original model: every column at its BF, so the forget column scores 0 and the kept ones 1
    kept = [c for c in ("calibration", "synthetic kept classes") if c not in trace.info["soup_left_out"]]
    assert "synthetic kept classes" in kept  # the random model gets some of its own synthetic images right
    terms = [1.0] * len(kept) + ([0.0] if "forget" not in trace.info["soup_left_out"] else [])
    assert trace.info["soup_scores"]["1.0"] == pytest.approx(sum(terms) / len(terms), abs=1e-4)


def test_the_new_reminding_and_calibration_settings_are_refused_when_wrong():
    for options, match in (({"soup_calibration": "everything"}, "Unknown soup_calibration 'everything'"),
                           ({"remind_negatives": -1.0}, "remind_negatives is a loss weight"),
                           ({"forget_keep": -0.5}, "forget_keep is a loss weight"),
                           ({"forget_anchor": -2.0}, "forget_anchor is a loss weight")):
        with pytest.raises(ClipUnlearnError, match=match):
            FRR(FRR.build_config("default", "resnet", None, options)).check_classes(["a"])


@pytest.mark.parametrize("remind_views", [False, True])
def test_forgetting_on_random_views_of_the_forget_images(mini_rn_random, make_context, monkeypatch, remind_views):
    """forget_views: each forgetting step encodes a random view of its batch of forget images (the batch handed
    to random_views is forget images, what is encoded is its output); remind_views: the retain batch and the
    negatives of each reminding step too. Off, no view is drawn; on, the run repeats itself under its seed."""
    from clipunlearn.methods import forget_remind_restore as frr

    calls, encoded = [], []
    real_views = frr.random_views

    def views_spy(images, views, generator):
        out = real_views(images, views, generator)
        calls.append((images.clone(), out.clone()))
        return out

    monkeypatch.setattr(frr, "random_views", views_spy)
    clip = copy.deepcopy(mini_rn_random)
    real_encode = clip.encode_image

    def encode_spy(images):
        encoded.append(images.detach().cpu().clone())
        return real_encode(images)

    clip.encode_image = encode_spy
    options = dict(forget_views=True, remind_views=remind_views, remind_negatives=1.0, restore=False, forget_lr=1e-2)
    ctx, trace = _run(clip, make_context, **options)
    forget = ctx.real_forget(per_class=None).images.flatten(1)
    forget_steps = sum(1 for r in trace.steps if r.get("phase") == "forget" and r["epoch"] >= 1)
    assert forget_steps and len(calls) >= forget_steps
    for given_images, out in calls[:forget_steps]:
        assert all(bool((forget == img.flatten()).all(1).any()) for img in given_images)  # forget images in
        assert any(bool((e.shape == out.shape) and torch.equal(e, out)) for e in encoded)  # their views encoded
        assert not torch.equal(given_images, out)
    assert (len(calls) > forget_steps) == remind_views  # reminding: 2 steps x (retain batch, negatives)
    if remind_views:
        assert len(calls) == forget_steps + 4
    again = copy.deepcopy(mini_rn_random)
    _, trace_again = _run(again, make_context, **options)
    assert [r.get("loss") for r in trace_again.steps] == [r.get("loss") for r in trace.steps]
    calls.clear()
    _run(copy.deepcopy(mini_rn_random), make_context, restore=False, remind_negatives=1.0)
    assert not calls


@pytest.mark.parametrize("ablation,knob", [("no-anchor", "forget_anchor"), ("no-negatives", "remind_negatives"),
                                           ("aligned-reminding", "remind_alignment"),
                                           ("short-forgetting", "forget_epochs")])
def test_each_ablation_of_the_anchored_preset_takes_back_one_of_its_parts(ablation, knob):
    """On top of preset anchored, each ablation differs from it in its one knob, set to the default's value."""
    import dataclasses

    anchored = dataclasses.asdict(FRR.build_config("anchored"))
    ablated = dataclasses.asdict(FRR.build_config("anchored", ablation=ablation))
    default = dataclasses.asdict(FRR.build_config("default"))
    assert {k for k in anchored if anchored[k] != ablated[k]} == {knob}
    assert ablated[knob] == default[knob]


def test_the_anchor_can_hold_the_forgotten_labels_own_synthetic_images(mini_rn_random, monkeypatch):
    """anchor_concept: the run also sees synthetic images of the forgotten coarse label (synthetic_forget, made
    from the original model); they join the anchor after the retain and kept images, with the original
    model's features; without forget_anchor the setting is refused in one line."""
    import torch.nn.functional as F
    from tests.conftest import TOY_CLASSES, FakeSource

    from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs
    from clipunlearn.methods import forget_remind_restore as frr

    anchors = []
    real_anchor = frr._Anchor

    def spy(run, images):
        anchors.append((real_anchor(run, images), run, images))
        return anchors[-1][0]

    monkeypatch.setattr(frr, "_Anchor", spy)
    clip = copy.deepcopy(mini_rn_random)
    original = copy.deepcopy(clip)
    method = FRR(FRR.build_config("anchored", clip.family, None, {**SMALL, "anchor_concept": True, "forget_lr": 1e-2}))
    assert method.data_kinds == {"real_forget", "real_retain", "synthetic_retain", "synthetic_forget"}
    source = FakeSource(clip, seed=1)
    ctx = ForgetContext(clip, ForgetRequest("toy", TOY_CLASSES, [1], "a photo of a {}."), source, method.data_kinds,
                        Knobs(seed=1, max_epochs=2, max_steps=2), method.name)
    trace = method.run(ctx)
    (anchor, run, retain_images), = anchors
    concept = ctx.synthetic_forget()
    assert run.concept is not None and trace.info["anchor_concept"] == len(concept) > 0
    assert torch.equal(anchor.images[-len(concept):].cpu(), concept.images.cpu())
    assert len(anchor.images) == len(retain_images) + len(run.keep) + len(concept)
    with torch.no_grad():
        expected = F.normalize(original.encode_image(anchor.images), dim=-1)
    assert torch.allclose(anchor.original, expected, atol=1e-5)
    assert "with the coarse label's synthetic images" in trace.stopped_because
    with pytest.raises(ClipUnlearnError, match="forget_anchor > 0"):
        FRR(FRR.build_config("default", "resnet", None, {"anchor_concept": True})).check_classes(["a", "b"])
