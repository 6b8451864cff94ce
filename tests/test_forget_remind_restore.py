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
