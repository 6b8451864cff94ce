"""LoRA adapters: where they act, merging and discarding without a trace, errors, and LoRA in the loop."""
from __future__ import annotations

import copy
import sys

import pytest
import torch

from clipunlearn.errors import ClipUnlearnError, TrainingError
from clipunlearn.training import (
    KeepRule,
    Loop,
    LoraSpec,
    OptimConfig,
    Stage,
    attach_lora,
    lora_adapters,
    lora_targets,
    run_loop,
)

CONV = "visual.conv2.weight"  # a stem conv: its forward is called (open_clip zero-inits each block's bn3,
DOWN = "visual.layer1.0.downsample.0.weight"  # so a random model ignores the residual branches' convs)
POOL = ["visual.attnpool.q_proj.weight", "visual.attnpool.c_proj.weight"]  # read directly by the pooling
TEXT = ["transformer.resblocks.0.mlp.c_fc.weight", "transformer.resblocks.0.attn.out_proj.weight"]


def _inputs(clip):
    return torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0)), clip.tokenize(["a cat", "a dog"])


def _outputs(clip, x, tokens):
    with torch.no_grad():
        return clip.encode_image(x), clip.model.encode_text(tokens)


@torch.no_grad()
def _tower_output(clip, name, x, tokens):
    """The output of the tower that tensor ``name`` belongs to."""
    return clip.encode_image(x) if name.startswith("visual.") else clip.model.encode_text(tokens)


def _layout(model):
    return (list(model.state_dict()), {n: type(m) for n, m in model.named_modules()}, set(vars(model)))


@torch.no_grad()
def _nonzero_b(params):
    gen = torch.Generator().manual_seed(1)
    for n, p in params.items():
        if "lora_B" in n:
            p.copy_(torch.randn(p.shape, generator=gen))


def test_each_adapter_acts_alone_and_a_peft_wrapper_on_the_pooling_would_not(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    x, tokens = _inputs(clip)
    img0, _ = _outputs(clip, x, tokens)
    for name in [CONV, DOWN, *POOL, *TEXT]:
        start = _tower_output(clip, name, x, tokens)
        adapters = attach_lora(clip.model, [name], LoraSpec(seed=2))
        # B = 0: nothing changes yet (up to rounding: frozen weights send attention down another kernel)
        rounding = float((_tower_output(clip, name, x, tokens) - start).abs().max())
        assert rounding < 1e-5 and len(adapters.params) == 2
        _nonzero_b(adapters.params)
        assert float((_tower_output(clip, name, x, tokens) - start).abs().max()) > max(10 * rounding, 1e-6), name
        adapters.remove(merge=False)
    # the finding behind the parametrised adapters: peft's own wrapper there leaves the output as it was
    from peft import LoraConfig
    from peft.tuners.lora import LoraModel

    model = copy.deepcopy(clip.model)
    LoraModel(model, LoraConfig(r=4, target_modules="^visual.attnpool.c_proj$"), "default")
    _nonzero_b(dict(model.named_parameters()))
    with torch.no_grad():
        assert torch.equal(model.encode_image(clip.normalize(x)), img0)


def test_merge_equals_the_adapted_model_and_leaves_no_trace(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    x, tokens = _inputs(clip)
    model = clip.model
    model.logit_scale.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layout = _layout(model)
    names = [CONV, POOL[1], TEXT[0]]
    with lora_adapters(model, names, LoraSpec(rank=2, alpha=4.0)) as params:
        assert all(p.requires_grad == (n in params) for n, p in model.named_parameters())
        assert model.visual.conv2.scaling["default"] == 2.0  # peft's alpha / rank, as the parametrised ones
        assert model.visual.attnpool.c_proj.parametrizations.weight[0].scale == 2.0
        _nonzero_b(params)
        adapted = _outputs(clip, x, tokens)
    merged = _outputs(clip, x, tokens)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(adapted, merged))
    assert _layout(model) == layout  # keys in order, module types, no attribute left by peft
    after = model.state_dict()
    assert sorted(k for k in before if not torch.equal(before[k], after[k])) == sorted(names)
    assert not model.logit_scale.requires_grad and model.visual.conv2.weight.requires_grad  # flags as before


def test_an_exception_discards_the_adapters(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    layout = _layout(clip.model)
    with pytest.raises(RuntimeError, match="boom"), lora_adapters(clip.model, [CONV, POOL[0]], LoraSpec()) as params:
        _nonzero_b(params)
        raise RuntimeError("boom")
    assert _layout(clip.model) == layout
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())


def test_the_seed_fixes_the_start_and_leaves_the_global_random_state(mini_rn_random):
    model = copy.deepcopy(mini_rn_random.model)
    starts = []
    for _ in range(2):
        state = torch.get_rng_state()
        adapters = attach_lora(model, [CONV, POOL[0]], LoraSpec(seed=5))
        assert torch.equal(torch.get_rng_state(), state)
        starts.append({n: p.detach().clone() for n, p in adapters.params.items()})
        adapters.remove(merge=False)
    assert starts[0].keys() == starts[1].keys()
    assert all(torch.equal(starts[0][n], starts[1][n]) for n in starts[0])


def test_names_that_cannot_carry_an_adapter_and_a_missing_peft_are_one_line_errors(mini_rn_random, monkeypatch):
    model = copy.deepcopy(mini_rn_random.model)
    layout = _layout(model)
    for bad in ["visual.attnpool.c_proj.bias", "visual.bn1.weight", "transformer.resblocks.0.attn.in_proj_weight",
                "visual.nope.weight", "token_embedding.weight"]:
        with pytest.raises(TrainingError, match="only the weight of a Conv2d or Linear") as e:
            attach_lora(model, [CONV, bad], LoraSpec())
        assert bad in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(TrainingError, match="dropout cannot act on 'visual.attnpool.q_proj'"):
        attach_lora(model, [POOL[0]], LoraSpec(dropout=0.1))
    with pytest.raises(TrainingError, match="rank must be at least 1"):
        attach_lora(model, [CONV], LoraSpec(rank=0))
    assert _layout(model) == layout
    assert lora_targets(model, [CONV, "visual.bn1.weight", POOL[0], CONV]) == [CONV, POOL[0]]
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ClipUnlearnError) as e:
        attach_lora(model, [CONV], LoraSpec())
    assert str(e.value) == "LoRA needs peft: pip install -e '.[lora]'"


def _loop_parts(clip):
    x, tokens = _inputs(clip)

    def step(stage, epoch, s):
        img, txt = clip.encode_image(x), clip.model.encode_text(tokens)
        return img.pow(2).mean() + txt.pow(2).mean(), {}

    seen = []

    def measure():
        seen.append(_outputs(clip, x, tokens))
        return {"m": values.pop(0)} if values else {}

    values: list[float] = []
    return step, measure, seen, values, (x, tokens)


def test_a_lora_loop_changes_only_its_layers_and_saves_a_plain_model(mini_rn_random, tmp_path, monkeypatch):
    from clipunlearn.models import load_clip

    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    layout = _layout(clip.model)
    towers = {"image": [CONV, POOL[1]], "text": [TEXT[0]]}
    step, measure, seen, _, inputs = _loop_parts(clip)
    loop = Loop(towers=towers, optim=OptimConfig("adam", 1e-2), max_epochs=2, lora=LoraSpec(rank=2))
    trace = run_loop(clip, loop, step, measure)
    assert trace.changed_tensors == [CONV, POOL[1], TEXT[0]] and trace.steps[-1]["selected"] == trace.changed_tensors
    after = clip.model.state_dict()
    assert _layout(clip.model) == layout
    assert sorted(k for k in before if not torch.equal(before[k], after[k])) == sorted(trace.changed_tensors)
    merged = _outputs(clip, *inputs)  # the model after merging = the adapted one at the last measure
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(seen[-1], merged))
    assert not all(torch.allclose(a, b) for a, b in zip(seen[0], merged))
    assert all(p.requires_grad for p in clip.model.parameters())
    clip.save(tmp_path / "model.safetensors")
    monkeypatch.setitem(sys.modules, "peft", None)  # a saved model loads without peft
    fresh = load_clip("mini-rn", pretrained="none", weights=tmp_path / "model.safetensors")
    assert all(torch.equal(v, after[k]) for k, v in fresh.model.state_dict().items())


def test_a_lora_loop_reverts_adapters_and_merges_only_the_kept_epoch(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    step, measure, seen, values, inputs = _loop_parts(clip)
    values += [1.0, 0.5, 0.7, 0.6]  # start, kept, reverted (next stage), reverted: stages exhausted
    loop = Loop(towers={"image": [CONV, POOL[0]]}, optim=OptimConfig("adam", 1e-2), max_epochs=5,
                stages=[Stage(0), Stage(1)], keep=KeepRule("m"), lora=LoraSpec())
    trace = run_loop(clip, loop, step, measure)
    assert [r["kept"] for r in trace.steps] == [None, True, False, False] and trace.stopped_because == "stages exhausted"
    final = _outputs(clip, *inputs)
    assert all(torch.allclose(a, b, atol=1e-5, rtol=1e-4) for a, b in zip(seen[1], final))
    assert not torch.allclose(seen[2][0], final[0])


def test_a_lora_loop_that_keeps_nothing_or_fails_leaves_the_model_as_it_was(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    layout = _layout(clip.model)
    step, measure, _, values, _ = _loop_parts(clip)
    values += [0.1, 0.5]
    never = Loop(towers={"image": [CONV]}, optim=OptimConfig("adam", 1e-2), max_epochs=3, keep=KeepRule("m"),
                 lora=LoraSpec())
    trace = run_loop(clip, never, step, measure)
    assert not trace.kept_any_step and trace.changed_tensors == []
    nan = Loop(towers={"image": [CONV]}, optim=OptimConfig("adam", 1e-2), max_epochs=2, lora=LoraSpec())
    with pytest.raises(TrainingError, match="loss became nan"):
        run_loop(clip, nan, lambda st, e, s: (torch.tensor(float("nan"), requires_grad=True), {}))
    with pytest.raises(TrainingError, match="LoRA trains every adapter"):
        run_loop(clip, Loop(towers={"image": [CONV]}, optim=OptimConfig(), max_epochs=1, selection="top_k",
                            stages=[Stage(0, {"image": 1})], lora=LoraSpec()), step)
    assert _layout(clip.model) == layout
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())
