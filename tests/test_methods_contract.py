"""The method contract, checked for every registered method (a new method is tested by being registered).

Each method: builds every preset and ablation for both image-tower families; runs on a random-init
ResNet and ViT CLIP; asks only for the data it declares (the context raises on anything else, and
the source records what was asked); repeats exactly under a seed; and, through the pipeline on the
trained mini-rn and mini-vit, writes results.json in the one schema that the typed reader reads.
"""
from __future__ import annotations

import copy
import json

import pytest
import torch

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.methods import (
    DATA_KINDS,
    ForgetContext,
    ForgetRequest,
    Knobs,
    get_method,
    method_names,
)
from clipunlearn.runs import ForgetSettings, forget, read_results

METHODS = method_names()
PAPER_METHODS = {"lip", "emb", "amns", "emmn", "ulip", "amns-retain", "salun"}


def test_the_papers_methods_are_registered():
    missing = PAPER_METHODS - set(METHODS)
    assert not missing, f"not registered yet: {sorted(missing)}"


@pytest.fixture(scope="module")
def mini_vit_random():
    from clipunlearn.models import load_clip

    torch.manual_seed(0)
    return load_clip("mini-vit", pretrained="none")


@pytest.mark.parametrize("name", METHODS)
def test_declares_presets_ablations_and_needs(name):
    cls = get_method(name)
    assert cls.name == name and cls.title and cls.needs <= set(DATA_KINDS)
    assert {"paper", "default"} <= set(cls.presets)
    for family in ("resnet", "vit"):
        for preset in cls.presets:
            cls.build_config(preset, family)
            for ablation in cls.ablations:
                cls.build_config(preset, family, ablation)
    d = cls.describe()
    assert {"name", "needs", "presets", "ablations"} <= set(d) and json.dumps(d)


def _state(clip):
    return {k: v.detach().clone() for k, v in clip.model.state_dict().items()}


#: the knobs that make a method cheap enough for a unit test, set where a method's config has them
SMALL = (("n_draws", 2), ("retain_steps", 2), ("noise_steps", 2), ("align_steps", 2), ("remind_steps", 2),
         ("fisher_images", 4), ("noise_per_class", 8), ("retain_noise_per_class", 2))


def _small(cls, preset="paper", family="resnet"):
    """The preset made cheap enough for a unit test, through the same option mechanism users have."""
    cfg = cls.build_config(preset, family)
    for field, value in (*SMALL, ("batch_size", 8)):
        if hasattr(cfg, field):
            setattr(cfg, field, value)
    return cfg


@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("family", ["resnet", "vit"])
def test_runs_sees_only_what_it_declares_and_repeats_under_a_seed(name, family, mini_rn_random, mini_vit_random,
                                                                  make_context):
    cls = get_method(name)
    base = mini_rn_random if family == "resnet" else mini_vit_random
    if family not in cls.families:  # a clear error, not a half-done run
        with pytest.raises(ClipUnlearnError, match="--set"):
            cls(_small(cls, "paper", family)).run(make_context(copy.deepcopy(base), cls, seed=3, max_epochs=2))
        return
    states, traces = [], []
    for _ in range(2):
        clip = copy.deepcopy(base)
        ctx = make_context(clip, cls, seed=3, max_epochs=2)
        trace = cls(_small(cls, "paper", family)).run(ctx)
        assert set(ctx._source.calls) <= cls.needs, f"{name} asked for undeclared data"
        assert set(ctx.data_seen) <= cls.needs
        assert trace.steps and trace.stopped_because and trace.epochs <= 2 + 2  # two-phase methods: 2 loops
        json.dumps(trace.steps), json.dumps(trace.info)
        for row in trace.steps:
            assert "epoch" in row and "kept" in row
        states.append(_state(clip))
        traces.append(trace.steps)
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0]), f"{name} does not repeat under a seed"
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in traces[0]] == \
           [{k: v for k, v in r.items() if k != "seconds"} for r in traces[1]]


def test_context_refuses_undeclared_data(mini_rn_random):
    from conftest import FakeSource

    request = ForgetRequest("toy", ["cat", "dog"], [1], "a photo of a {}.")
    source = FakeSource(mini_rn_random)
    ctx = ForgetContext(mini_rn_random, request, source, {"synthetic_forget"}, Knobs(), "zs-method")
    assert len(ctx.synthetic_forget()) == 3
    for kind in ("real_forget", "real_retain", "synthetic_retain"):
        with pytest.raises(ClipUnlearnError, match=f"zs-method asked for {kind}.*does not declare"):
            getattr(ctx, kind)()
    assert source.calls == ["synthetic_forget"] and set(ctx.data_seen) == {"synthetic_forget"}
    with pytest.raises(ClipUnlearnError, match="Unknown data kind"):
        ForgetContext(mini_rn_random, request, source, {"test_images"})


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
@pytest.mark.parametrize("model", ["mini-rn", "mini-vit"])
def test_pipeline_on_the_mini_zoo_writes_the_one_schema(name, model, data_slice, tmp_path):
    cls = get_method(name)
    options = {k: v for k, v in SMALL if hasattr(cls.config_cls(), k)}
    out = tmp_path / name
    if {"mini-rn": "resnet", "mini-vit": "vit"}[model] not in cls.families:
        with pytest.raises(ClipUnlearnError):
            forget(ForgetSettings(model=model, dataset="caltech101", classes=["motorbike"], out=str(out),
                                  data_root=str(data_slice), other_datasets=["cifar10"], method=name,
                                  max_epochs=1, progress=False, options=options))
        assert not out.exists()
        return
    results = forget(ForgetSettings(model=model, dataset="caltech101", classes=["motorbike"], out=str(out),
                                    data_root=str(data_slice), other_datasets=["cifar10"], method=name,
                                    n_per_class=2, max_epochs=1, generation_max_steps=2, progress=False,
                                    options=options))
    r = read_results(out)
    assert r.schema_version == 2 and r.method == name and r.preset == "default" and r.model["arch"] == model
    assert set(r.data_seen) <= cls.needs and all(v["n"] > 0 for v in r.data_seen.values())
    if cls.needs & {"real_forget", "real_retain"}:
        assert any("train" in v["source"] for v in r.data_seen.values())
    assert r.retrieval and set(r.retrieval["before"]) >= {"ks", "ift", "ifi"}
    # "before" is measured on the starting model, before the method runs: the same for every method
    before = (r.target.before, r.other_classes.before, r.datasets["cifar10"].before,
              r.template_change["before"], r.retrieval["before"])
    assert before == _BEFORE.setdefault(model, before), f"{name}'s before differs from another method's"
    assert (out / "report.md").read_text().startswith("# Forgetting motorbike")
    log = (out / "log.txt").read_text()  # every line, though nothing set the logger's level
    assert "before: target" in log and "after: target" in log and "stopped:" in log
    reference = json.loads((tmp_path / name / "results.json").read_text())
    assert set(reference) == set(results)
    _KEYS.setdefault("keys", set(reference))
    assert set(reference) == _KEYS["keys"], "results.json top-level fields differ between methods"


_KEYS: dict[str, set] = {}
_BEFORE: dict[str, tuple] = {}


def test_a_setting_can_change_the_data_a_method_sees(mini_rn_random):
    """Lip forgetting with real images (the verification of WACV'25 App. I) is no longer zero-shot,
    and the context serves it real forget images and no synthetic ones."""
    import copy

    from conftest import TOY_CLASSES, FakeSource

    lip = get_method("lip")
    real = lip(lip.build_config("default", "resnet", None, {"forget_images": "real", "n_draws": 2,
                                                            "retain_steps": 2, "max_epochs": 1}))
    assert real.data_kinds == {"real_forget", "synthetic_retain"} and lip.zero_shot(real.data_kinds) == "semi ZS"
    assert lip(lip.build_config()).data_kinds == lip.needs and lip.zero_shot() == "ZS"
    clip = copy.deepcopy(mini_rn_random)
    request = ForgetRequest("toy", TOY_CLASSES, [1], "a photo of a {}.")
    ctx = ForgetContext(clip, request, FakeSource(clip), real.data_kinds, Knobs(max_epochs=1, max_steps=2), "lip")
    real.run(ctx)
    assert set(ctx.data_seen) == {"real_forget", "synthetic_retain"}
