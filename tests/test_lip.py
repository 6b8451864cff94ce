"""Lip's parts: the loss, tensor selection, the schedule, keep/revert/stop, generation, determinism."""
from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from clipunlearn.errors import ClipUnlearnError, TrainingError
from clipunlearn.methods import (
    ForgetContext,
    ForgetRequest,
    ImageBatch,
    Knobs,
    get_method,
)
from clipunlearn.methods.lip import OFFICIAL_VIT_K, Lip, LipConfig
from clipunlearn.synthetic import GenerationConfig, generate_synthetic
from clipunlearn.training import (
    lipschitz_terms,
    reduce_terms,
    select_top_k,
    vocabulary_to_keep,
)


def test_loss_against_hand_computation():
    clean = torch.tensor([[0.0, 0.0], [1.0, 1.0]])
    text = torch.tensor([[3.0, 4.0], [1.0, 1.0]])
    perturbed = torch.tensor([[[0.0, 0.0], [1.0, 2.0]], [[3.0, 0.0], [1.0, 1.0]]])  # draws x images x dim
    eps_norm = torch.tensor([[1.0, 2.0], [0.5, 1.0]])
    k = lipschitz_terms(clean, text, perturbed, eps_norm)
    # draw 0: img0 (0 + 5)/1 = 5; img1 (1 + 1)/2 = 1. draw 1: img0 (3 + 4)/0.5 = 14; img1 (0 + 0)/1 = 0
    assert k.flatten().tolist() == pytest.approx([5.0, 1.0, 14.0, 0.0])
    assert reduce_terms(k, "official").item() == pytest.approx((5 + 1 + 14 + 0) / 2 / (2 * 2))
    assert reduce_terms(k, "mean").item() == pytest.approx(5.0)
    with pytest.raises(ValueError):
        reduce_terms(k, "other")


def test_top_k_selection_on_toy_model():
    model = nn.Module()
    model.a = nn.Linear(2, 2)
    model.b = nn.Linear(2, 2)
    model.c = nn.Linear(2, 2)
    for scale, m in ((1.0, model.a), (3.0, model.b), (2.0, model.c)):
        m.weight.grad = torch.full_like(m.weight, -scale)
        m.bias.grad = torch.full_like(m.bias, scale / 10)
    towers = {"image": ["a.weight", "b.weight", "c.weight"], "text": ["a.bias", "b.bias", "c.bias"]}
    kept = select_top_k(model, towers, {"image": 2, "text": 1})
    assert kept == ["b.weight", "c.weight", "b.bias"]
    assert model.a.weight.grad is None and model.a.bias.grad is None and model.c.bias.grad is None
    assert model.b.weight.grad is not None


def test_paper_schedule():
    st = Lip.build_config("paper", "resnet").stages(8, 48)
    assert [s.values["sigma"] for s in st] == [0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0]
    assert [s.k["image"] for s in st] == [5, 7, 8, 8, 8, 8, 8]  # capped by the 8 attention-pool tensors
    assert [s.k["text"] for s in st] == [5, 7, 12, 18, 25, 30, 35]
    vit = Lip.build_config("paper", "vit").stages(152, 144)
    # the official code's ViT schedule: 25 + [0, 2, 5, 8, 10, 15, 20] in both towers
    assert [s.k["image"] for s in vit] == [25, 27, 30, 33, 35, 40, 45] == [s.k["text"] for s in vit]
    assert OFFICIAL_VIT_K == (25, 27, 30, 33, 35, 40, 45)


@pytest.fixture(scope="module")
def tiny_synthetic(mini_rn_random):
    cfg = GenerationConfig(n_per_class=3, threshold=0.0, max_steps=2, seed=1)
    return generate_synthetic(mini_rn_random, ["cat", "dog", "car"], [0, 1], "toy", "a photo of a {}.", cfg)


def test_generation_accepts_each_image_on_its_own(mini_rn_random):
    # threshold 0: an image is accepted as soon as its target is the argmax; others keep going
    cfg = GenerationConfig(n_per_class=4, threshold=0.0, max_steps=40, seed=0)
    s = generate_synthetic(mini_rn_random, ["cat", "dog", "car"], [2], "toy", "a photo of a {}.", cfg)
    assert s.images.shape == (4, 3, 64, 64) and s.images.min() >= 0 and s.images.max() <= 1
    assert s.targets.tolist() == [2, 2, 2, 2]
    assert s.accepted.all()
    assert s.steps.min() >= 1 and (s.steps <= 40).all()


def test_generation_threshold_lowering_and_give_up(mini_rn_random):
    cfg = GenerationConfig(n_per_class=2, threshold=0.999, threshold_floor=0.95, threshold_drop=0.025,
                           max_steps=1, seed=0)
    s = generate_synthetic(mini_rn_random, [f"class {i}" for i in range(50)], [0], "toy", "{}", cfg)
    assert s.final_threshold == pytest.approx(0.974)  # dropped once to 0.974, the next drop would pass the floor
    assert not s.accepted.any()  # given up with their best state, reported as not accepted
    with pytest.raises(ClipUnlearnError):
        generate_synthetic(mini_rn_random, ["a"], [], "toy", "{}", cfg)


def _request():
    return ForgetRequest("toy", ["cat", "dog", "car"], [0, 1], "a photo of a {}.")


class _Source:
    """Serves one synthetic set; retain images are made like the pipeline's (a tiny budget)."""

    def __init__(self, synthetic):
        self.synthetic = synthetic

    def synthetic_forget(self, request, **options):
        s = self.synthetic
        return ImageBatch(s.images, s.targets, list(s.classnames), "synthetic")

    def synthetic_retain(self, request, **options):
        from clipunlearn.runs.data import RunData

        return RunData(self.clip, None, max_steps=2).synthetic_retain(request, **options)


def _run(cfg, clip, synthetic, seed=0):
    source = _Source(synthetic)
    source.clip = clip
    ctx = ForgetContext(clip, _request(), source, Lip.needs, Knobs(seed=seed), "lip")
    trace = Lip(cfg).run(ctx)
    return trace, ctx


def _state(clip):
    return {k: v.clone() for k, v in clip.model.state_dict().items()}


def test_no_kept_step_returns_the_original(mini_rn_random, tiny_synthetic):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    # keep on accuracy with best starting at 1.0 and a learning rate of 0: nothing can improve
    cfg = LipConfig(lr=0.0, weight_decay=0.0, n_draws=2, max_epochs=5, keep="target_prob",
                    sigmas=(0.1, 0.3), k_image=(2, 3), k_text=(2, 3))
    trace, _ = _run(cfg, clip, tiny_synthetic)
    assert not trace.kept_any_step and trace.stopped_because == "stages exhausted"
    assert trace.epochs == 2 and [r["kept"] for r in trace.steps[1:]] == [False, False]
    after = clip.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_kept_steps_change_only_eligible_tensors_and_stop(mini_rn_random, tiny_synthetic):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    cfg = LipConfig(lr=1e-2, n_draws=2, max_epochs=3, keep="target_prob", goal_acc=-1.0)
    trace, _ = _run(cfg, clip, tiny_synthetic)
    assert trace.epochs <= 3
    changed = {k for k, v in clip.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed <= set(trace.changed_tensors)
    for name in changed:
        assert name.startswith(("visual.attnpool.", "transformer.resblocks."))
    for row in trace.steps[1:]:
        n_img = sum(n.startswith("visual.") for n in row["selected"])
        assert n_img <= row["k_image"] and len(row["selected"]) - n_img <= row["k_text"]


def test_seeded_run_repeats_exactly(mini_rn_random, tiny_synthetic):
    states = []
    for _ in range(2):
        clip = copy.deepcopy(mini_rn_random)
        _run(LipConfig(lr=1e-3, n_draws=3, max_epochs=2, keep="target_prob"), clip, tiny_synthetic, seed=7)
        states.append(_state(clip))
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_nan_loss_keeps_original_and_names_stage(mini_rn_random, tiny_synthetic):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    bad = copy.copy(tiny_synthetic)
    bad.images = tiny_synthetic.images.clone()
    bad.images[0, 0, 0, 0] = math.nan
    with pytest.raises(TrainingError, match="stage 0"):
        _run(LipConfig(n_draws=2, max_epochs=2), clip, bad)
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())


def test_registry_and_presets():
    assert get_method("lip") is Lip
    assert Lip.build_config("paper", "resnet").keep == "accuracy"
    assert Lip.build_config("paper", "resnet").retain_weight == 0 and Lip.build_config("paper", "vit").text_tower
    with pytest.raises(ClipUnlearnError):
        get_method("lipp")
    with pytest.raises(ClipUnlearnError, match="preset of lip 'fast'"):
        Lip.build_config("fast", "resnet")
    with pytest.raises(ClipUnlearnError, match="ablation of lip 'no-text'.*no-text-loss"):
        Lip.build_config("default", "resnet", "no-text")
    cfg = Lip.build_config("paper", "resnet", "no-text-loss", {"max_epochs": 3})
    assert (cfg.text_term, cfg.text_tower, cfg.max_epochs, cfg.perturbation) == (False, False, 3, "official")


def test_retain_kl_against_reference(mini_rn_random):
    import torch.nn.functional as F

    from clipunlearn.training import RetainAnchor

    clip = copy.deepcopy(mini_rn_random)
    names = ["cat", "dog", "car"]
    images = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    anchor = RetainAnchor(clip, images, names, "a photo of a {}.")
    assert anchor.kl(clip).item() == pytest.approx(0.0, abs=1e-6)
    with torch.no_grad():
        clip.model.visual.attnpool.c_proj.weight.mul_(1.5).add_(0.01)
        # independent reference: sum_c p log(p / q), averaged over images
        text = F.normalize(clip.model.encode_text(clip.tokenize([f"a photo of a {n}." for n in names])), dim=-1)
        q = F.softmax(100 * clip.encode_image(images, normalize=True) @ text.T, dim=1)
        p = anchor.reference
        expected = (p * (p.log() - q.log())).sum(1).mean().item()
    assert expected > 0
    assert anchor.kl(clip).item() == pytest.approx(expected, rel=1e-4, abs=1e-6)


def test_default_preset_updates_image_tower_only_for_fixed_epochs(mini_rn_random, tiny_synthetic):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    cfg = Lip.build_config("default", "resnet")
    assert cfg.keep == "always" and cfg.goal_acc is None and not cfg.text_tower and cfg.retain_weight > 0
    cfg.n_draws, cfg.max_epochs, cfg.retain_steps = 2, 2, 2
    trace, ctx = _run(cfg, clip, tiny_synthetic)
    assert trace.epochs == 2 and all(r["kept"] for r in trace.steps[1:])
    assert trace.stopped_because == "reached max_epochs (2)"
    # one retain image for the only class that is not forgotten ("car") and one per everyday concept
    n_retain = 1 + len(vocabulary_to_keep(["cat", "dog", "car"], ["cat", "dog"]))
    assert trace.info["retain_images"] == n_retain == ctx.data_seen["synthetic_retain"]["n"]
    assert set(ctx.data_seen) == {"synthetic_forget", "synthetic_retain"}
    assert all(math.isfinite(r["retain_kl"]) for r in trace.steps[1:])
    changed = {k for k, v in clip.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(name.startswith("visual.attnpool.") for name in changed)
    assert all(r["k_image"] == 8 and r["k_text"] == 0 for r in trace.steps[1:])  # k capped to the 8 pool tensors


def test_vocabulary_skips_classes_and_words_of_forgotten_classes():
    words = vocabulary_to_keep(["cat", "tree"], ["African hunting dog"], ("dog", "Cat", "tree", "bird", "hunting horn"))
    assert words == ["bird"]


def test_api_generate_mirrors_the_cli(data_slice, mini_rn_random):
    import clipunlearn as cu

    cfg = GenerationConfig(n_per_class=2, threshold=0.0, max_steps=3, seed=0)
    s = cu.generate(mini_rn_random, "caltech101", "accordion", data_root=data_slice, config=cfg)
    assert len(s) == 2 and s.target_names == ["accordion"] and s.dataset == "caltech101"
    with pytest.raises(ClipUnlearnError, match="accordion"):
        cu.generate(mini_rn_random, "caltech101", "acordion", data_root=data_slice, config=cfg)
    with pytest.raises(ClipUnlearnError, match="empty"):
        cu.generate(mini_rn_random, "caltech101", " , ", data_root=data_slice, config=cfg)


def test_apply_options_checks_names_types_and_structured_fields():
    from clipunlearn.errors import ClipUnlearnError, UnknownNameError
    from clipunlearn.methods import apply_options, parse_option

    cfg = Lip.build_config("default", "resnet")
    apply_options(cfg, dict(parse_option(o) for o in ["lr=1e-4", "goal_acc=null", "text_tower=true", "max_epochs=2"]))
    assert (cfg.lr, cfg.goal_acc, cfg.text_tower, cfg.max_epochs) == (1e-4, None, True, 2)
    apply_options(cfg, {"retain_weight": 1})
    assert cfg.retain_weight == 1.0 and isinstance(cfg.retain_weight, float)
    with pytest.raises(UnknownNameError, match="'goal_acc'"):
        apply_options(cfg, {"goal_ac": 0.1})
    with pytest.raises(ClipUnlearnError, match="does not fit"):
        apply_options(cfg, {"max_epochs": 1.5})
    with pytest.raises(ClipUnlearnError, match="does not fit"):
        apply_options(cfg, {"text_tower": "yes"})
    apply_options(cfg, {"sigmas": [1, 0.5], "k_image": [4]})  # a list of numbers for a tuple[number, ...] field
    assert cfg.sigmas == (1.0, 0.5) and cfg.k_image == (4,)
    with pytest.raises(ClipUnlearnError, match="non-empty list of ints"):
        apply_options(cfg, {"k_image": [0.5]})
    with pytest.raises(ClipUnlearnError, match="cannot be set from the command line"):
        apply_options(cfg, {"betas": [0.9, 0.99]})
    assert parse_option("prompt=a photo of {}") == ("prompt", "a photo of {}")



def test_official_perturbation_clamps_to_the_batch_range_and_divides_by_the_clamped_step(mini_rn_random):
    from clipunlearn.training import draw_perturbations, lipschitz_loss

    clip = copy.deepcopy(mini_rn_random)
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(2, 3, 64, 64, generator=gen)
    tokens = clip.tokenize(["a cat", "a dog"])
    eps = draw_perturbations(3, pixels.shape, 1.5, gen)
    with torch.no_grad():
        official = lipschitz_loss(clip, pixels, tokens, eps, perturbation="official").item()
        paper = lipschitz_loss(clip, pixels, tokens, eps, perturbation="paper").item()
        # independent computation, one draw and image at a time
        x = clip.normalize(pixels)
        lo, hi = x.min(), x.max()
        img = clip.model.encode_image(x)
        txt = clip.model.encode_text(tokens)
        total_official = total_paper = 0.0
        for n in range(3):
            for b in range(2):
                xo = (x[b] + eps[n, b]).clamp(lo, hi)
                fo = clip.model.encode_image(xo[None])[0]
                fp = clip.model.encode_image((x[b] + eps[n, b])[None])[0]
                total_official += ((img[b] - fo).norm() + (txt[b] - fo).norm()).item() / (xo - x[b]).norm().item()
                total_paper += ((img[b] - fp).norm() + (txt[b] - fp).norm()).item() / eps[n, b].norm().item()
    assert official == pytest.approx(total_official / 2 / (2 * 3), rel=1e-4)
    assert paper == pytest.approx(total_paper / 2 / (2 * 3), rel=1e-4)
    assert abs(official - paper) / paper > 0.05  # at σ = 1.5 the clamp matters
    with torch.no_grad():  # a perturbation inside the range is not clamped: both agree
        small = eps * 1e-3
        a = lipschitz_loss(clip, pixels, tokens, small, perturbation="official").item()
        b = lipschitz_loss(clip, pixels, tokens, small, perturbation="paper").item()
    assert a == pytest.approx(b, rel=1e-3)
    with pytest.raises(ValueError, match="perturbation"):
        lipschitz_loss(clip, pixels, tokens, eps, perturbation="other")


def test_paper_preset_uses_the_official_choices():
    for family in ("resnet", "vit"):
        assert Lip.build_config("paper", family).perturbation == "official"
        assert Lip.build_config("default", family).perturbation == "paper"
    assert Lip.build_config("paper", "vit").eligibility == "official"
    assert Lip.build_config("paper", "resnet").eligibility == "catalogue"


def test_official_vit_eligibility_in_layers_json(capsys):
    import json

    from clipunlearn.cli import main

    def eligible(*extra):
        assert main(["layers", "--model", "ViT-B-16", "--json", *extra]) == 0
        d = json.loads(capsys.readouterr().out)
        return {t["name"] for t in d["tensors"] if t["eligible"] and t["tower"] == "image"}

    ours = eligible()
    official = eligible("--method", "lip", "--preset", "paper")
    extra = official - ours
    assert {"visual.class_embedding", "visual.conv1.weight", "visual.ln_post.weight", "visual.positional_embedding",
            "visual.proj"} <= extra
    assert ours < official
    assert eligible("--method", "lip", "--preset", "default") == ours


def test_text_perturbation_hook_is_exact_at_zero_noise(mini_rn_random):
    from clipunlearn.training import encode_text_perturbed

    clip = copy.deepcopy(mini_rn_random)
    tokens = clip.tokenize(["a cat", "a dog"])
    width = clip.model.token_embedding.embedding_dim
    with torch.no_grad():
        plain = clip.model.encode_text(tokens)
        zero = encode_text_perturbed(clip.model, tokens, torch.zeros(3, 2, tokens.shape[1], width), chunk=4)
        noisy = encode_text_perturbed(clip.model, tokens, torch.randn(1, 2, tokens.shape[1], width), chunk=4)
    assert torch.allclose(zero, plain.expand(3, -1, -1), atol=1e-5)
    assert not torch.allclose(noisy[0], plain, atol=1e-3)
    assert not clip.model.token_embedding._forward_hooks  # the hook is removed


@pytest.mark.parametrize("ablation", sorted(Lip.ablations))
def test_every_ablation_runs_and_changes_what_it_says(ablation, mini_rn_random, make_context):
    clip = copy.deepcopy(mini_rn_random)
    before = _state(clip)
    cfg = Lip.build_config("paper", "resnet", ablation, {"n_draws": 2, "lr": 1e-2, "keep": "always", "goal_acc": None})
    trace = Lip(cfg).run(make_context(clip, Lip, max_epochs=2))
    changed = {k for k, v in clip.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and trace.epochs == (1 if ablation == "one-iter" else 2)
    if ablation in ("no-text-loss",):
        assert all(n.startswith("visual.") for n in changed)
    if ablation == "all-params-vary":  # beyond the catalogue: the ResNet body and the text embeddings train
        assert any(n.startswith("visual.layer") for n in changed) and "token_embedding.weight" in changed
    else:
        assert all(n.startswith(("visual.attnpool.", "transformer.resblocks.")) for n in changed)


def test_cupl_gen_through_the_pipeline_records_its_sentences(data_slice, tmp_path):
    from clipunlearn.runs import ForgetSettings, forget, read_results

    forget(ForgetSettings(model="mini-rn", pretrained="none", dataset="caltech101", classes=["motorbike"],
                          out=str(tmp_path / "run"), data_root=str(data_slice), other_datasets=[], ablation="cupl-gen",
                          n_per_class=2, max_epochs=1, generation_max_steps=2, progress=False,
                          retrieval=False, template_change=False))
    r = read_results(tmp_path / "run")
    seen = r.data_seen["synthetic_forget"]
    assert r.ablation == "cupl-gen" and "CuPL" in seen["source"] and "motorbike" in seen["descriptions"]
