"""--precision: every registered method, evaluation and the run folder under bf16 against fp32 (CPU autocast).

Each comparison runs the same thing twice from the same weights and data, once in fp32 (the
reference) and once under ``computing("bf16", "cpu")``, and checks the bf16 figures against the fp32
ones within the tolerances below (measured deviations on mini-rn, CPU, torch 2.x, in the comments).
"""
from __future__ import annotations

import copy
import json
import logging

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.methods import get_method, method_names
from clipunlearn.precision import (
    Precision,
    active_precision,
    cache_tag,
    computing,
    forward_pass,
    parse_precision,
    resolve_precision,
)
from clipunlearn.runs.spec import RunSpec

#: the first optimiser step's gradient over the model's parameters: cosine to fp32's (measured >= 0.986)
GRAD_COSINE = 0.97
#: ... and its distance to fp32's, relative to fp32's norm (measured <= 0.17)
GRAD_RELATIVE = 0.3
#: a method's mean loss over its first epoch: relative to fp32's, plus an absolute floor for losses near 0
#: (measured <= 4.2 %: Adam's steps spread bf16's rounding over the epoch's later steps)
LOSS_RELATIVE, LOSS_ABSOLUTE = 0.1, 0.02
#: a change a method makes in closed form (no optimiser): its direction under bf16 against fp32's
#: (measured 1.000: Uproot's edit solves in float64 from fp32 text features at any precision)
CHANGE_COSINE = 0.9
#: an accuracy measured before training on the method's own images (3 per class): one image of a class
METHOD_ACCURACY = 0.34
#: zero-shot top-1 on a dataset slice (24 and 18 images): about two images (measured: identical; logits within 0.55)
EVAL_ACCURACY = 0.1
#: image features of the slice: cosine of each to its fp32 feature (measured >= 0.99992)
FEATURE_COSINE = 0.999


@pytest.fixture(scope="module")
def mini_rn():
    from clipunlearn.models import load_clip

    return load_clip("mini-rn")


def _small(cls):
    """The method's paper preset made cheap (the contract tests' reduction)."""
    cfg = cls.build_config("paper", "resnet")
    for field, value in (("n_draws", 2), ("retain_steps", 2), ("noise_steps", 2), ("batch_size", 8),
                         ("align_steps", 2), ("remind_steps", 2), ("fisher_images", 4)):
        if hasattr(cfg, field):
            setattr(cfg, field, value)
    return cfg


def _run(cls, base, make_context, precision: str):
    """One epoch of the method at ``precision``: its trace, the model after it, and the gradient of the
    first optimiser step over model parameters (not pixels a method optimises), by parameter index."""
    clip = copy.deepcopy(base)
    ctx = make_context(clip, cls, seed=3, max_epochs=1)
    first: list[dict[int, torch.Tensor]] = []

    def hook(opt, args, kwargs):
        params = [p for g in opt.param_groups for p in g["params"]]
        if not first and any(isinstance(p, torch.nn.Parameter) for p in params):
            first.append({i: p.grad.detach().double().flatten() for i, p in enumerate(params) if p.grad is not None})

    handle = register_optimizer_step_pre_hook(hook)
    try:
        with computing(precision, "cpu"):
            trace = cls(_small(cls)).run(ctx)
    finally:
        handle.remove()
    return trace, clip, (first[0] if first else None)


def _flat(grads: dict[int, torch.Tensor], keys: list[int], other: dict[int, torch.Tensor]) -> torch.Tensor:
    """A tensor without a gradient in one precision (e.g. a key bias, whose gradient is 0 in exact
    arithmetic: fp32 skips it, bf16 autocast gives it ~0) counts as zeros."""
    return torch.cat([grads[k] if k in grads else torch.zeros_like(other[k]) for k in keys])


@pytest.mark.parametrize("name", method_names())
def test_every_method_under_bf16_stays_within_tolerance_of_fp32(name, mini_rn, make_context):
    cls = get_method(name)
    if "resnet" not in cls.families:
        pytest.skip(f"{name} does not run on ResNet towers")
    ref, ref_clip, ref_grad = _run(cls, mini_rn, make_context, "fp32")
    low, low_clip, low_grad = _run(cls, mini_rn, make_context, "bf16")
    # parameters stay fp32 (the master weights): bf16 never reaches the model's tensors
    assert all(p.dtype == torch.float32 for p in low_clip.model.parameters())
    assert (ref_grad is None) == (low_grad is None)
    if ref_grad is not None:
        keys = sorted(set(ref_grad) | set(low_grad))
        a, b = _flat(ref_grad, keys, low_grad), _flat(low_grad, keys, ref_grad)
        assert a.norm() > 0
        cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
        assert cosine >= GRAD_COSINE, f"{name}: gradient cosine {cosine:.4f} to fp32's"
        assert float((a - b).norm() / a.norm()) <= GRAD_RELATIVE
    before_ref, before_low = ref.steps[0], low.steps[0]
    accuracies = [k for k, v in before_ref.items() if isinstance(v, float) and k.endswith("acc")]
    for k in accuracies:
        assert abs(before_ref[k] - before_low[k]) <= METHOD_ACCURACY, f"{name}: {k} {before_ref[k]} vs {before_low[k]}"
    first_ref, first_low = ref.steps[1], low.steps[1]
    assert first_ref["epoch"] == first_low["epoch"] == 1
    if "loss" in first_ref:
        r, b = first_ref["loss"], first_low["loss"]
        assert abs(r - b) <= LOSS_RELATIVE * abs(r) + LOSS_ABSOLUTE, f"{name}: loss {b} under bf16, {r} in fp32"
    if ref_grad is None and "loss" not in first_ref and name != "fisher":
        # a change made in closed form (no optimiser, no loss): the change itself, fp32's against bf16's
        base = mini_rn.model.state_dict()
        changed = [k for k, v in ref_clip.model.state_dict().items() if not torch.equal(v, base[k])]
        assert changed, f"{name}: nothing was compared"
        for k in changed:
            a = (ref_clip.model.state_dict()[k] - base[k]).double().flatten()
            b = (low_clip.model.state_dict()[k] - base[k]).double().flatten()
            cosine = float(torch.nn.functional.cosine_similarity(a, b, dim=0))
            assert cosine >= CHANGE_COSINE, f"{name}: the change of {k} under bf16 has cosine {cosine:.4f} to fp32's"


def test_fisher_noise_under_bf16_perturbs_like_fp32(mini_rn, make_context):
    """The one method without an optimiser: its Fisher information (gradients) sets the noise, so the
    relative size of the change it makes is compared instead."""
    cls = get_method("fisher")
    ref = _run(cls, mini_rn, make_context, "fp32")[0].steps[1]
    low = _run(cls, mini_rn, make_context, "bf16")[0].steps[1]
    assert ref["relative_change"] > 0
    assert abs(low["relative_change"] - ref["relative_change"]) <= 0.05 * ref["relative_change"]


def test_evaluation_under_bf16_is_within_tolerance_and_cached_apart(mini_rn, data_slice):
    from clipunlearn.api import evaluate
    from clipunlearn.evaluation import Evaluator, FeatureCache

    cache = FeatureCache()
    evaluator = Evaluator(mini_rn, cache, progress=False)
    ref = evaluate(mini_rn, "caltech101,cifar10", data_slice, evaluator=evaluator, precision="fp32")
    misses = cache.misses
    low = evaluate(mini_rn, "caltech101,cifar10", data_slice, evaluator=evaluator, precision="bf16")
    assert cache.misses == 2 * misses, "bf16 features must not be served from the fp32 entries"
    for name, r in ref.items():
        assert r.n == low[name].n
        assert abs(r.top1 - low[name].top1) <= EVAL_ACCURACY, f"{name}: top-1 {low[name].top1} vs {r.top1}"
        assert low[name].logits.dtype == r.logits.dtype
    from clipunlearn.data import load_image_set

    images = load_image_set("caltech101", data_slice, "test")
    f32 = evaluator.image_features(images)
    with computing("bf16", "cpu"):
        f16 = evaluator.image_features(images)
    assert f16.dtype == torch.float32
    assert float(torch.nn.functional.cosine_similarity(f32, f16, dim=1).min()) >= FEATURE_COSINE
    assert not torch.equal(f32, f16), "the bf16 forward pass did not run in bf16"


def test_precision_is_recorded_in_results_and_in_the_run_id(data_slice, tmp_path):
    from clipunlearn.runs import ForgetSettings, forget, read_results

    settings = dict(model="mini-rn", dataset="caltech101", classes=["accordion"], data_root=str(data_slice),
                    other_datasets=["cifar10"], method="emb", n_per_class=2, max_epochs=1, generation_max_steps=2,
                    retrieval=False, template_change=False, progress=False)
    results = forget(ForgetSettings(out=str(tmp_path / "bf16"), precision="bf16", **settings))
    assert results["precision"] == "bf16" and results["settings"]["precision"] == "bf16"
    on_disk = json.loads((tmp_path / "bf16" / "results.json").read_text())
    assert on_disk["precision"] == "bf16"
    read_results(tmp_path / "bf16")  # the typed reader takes the new field
    auto = forget(ForgetSettings(out=str(tmp_path / "auto"), **settings))
    assert auto["precision"] == "fp32" and auto["settings"]["precision"] == "auto"  # auto on the CPU

    spec = RunSpec(model="mini-rn", method="lip", dataset="caltech101", classes=("accordion",), weights_hash="w")
    assert "precision" not in spec.key(), "the default must leave run ids made before --precision as they were"
    import dataclasses

    ids = {p: dataclasses.replace(spec, precision=p).run_id for p in ("auto", "fp32", "tf32", "bf16")}
    assert ids["auto"] == spec.run_id and len(set(ids.values())) == 4
    assert dataclasses.replace(spec, precision="bf16").key()["precision"] == "bf16"


def test_a_suite_passes_its_precision_to_every_cell(tmp_path):
    from clipunlearn.benchmark import load_suite
    from conftest import SMALL_SUITE

    path = tmp_path / "s.toml"
    path.write_text(SMALL_SUITE.replace('name = "small"', 'name = "small"\nprecision = "bf16"')
                    .format(methods='methods = [{ method = "lip" }]'))
    cells = load_suite(path).cells()
    assert cells and all(c.precision == "bf16" and c.key()["precision"] == "bf16" for c in cells)
    path.write_text(SMALL_SUITE.replace('name = "small"', 'name = "small"\nprecision = "fp16"')
                    .format(methods='methods = [{ method = "lip" }]'))
    with pytest.raises(ClipUnlearnError, match="precision.*auto, fp32, tf32 or bf16"):
        load_suite(path)


def test_resolution_flags_and_scope():
    assert resolve_precision("auto", "cpu") is Precision.FP32
    assert resolve_precision("auto", "cuda") is Precision.TF32
    assert resolve_precision("tf32", "cuda:0") is Precision.TF32
    assert resolve_precision("tf32", "cpu") is Precision.FP32  # TF32 is a CUDA mode
    assert resolve_precision(" BF16 ", torch.device("cpu")) is Precision.BF16
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    assert active_precision() is None and cache_tag() is None
    with computing("auto", "cuda") as p:  # the flags are process settings: testable without a GPU
        assert p is Precision.TF32 and cache_tag() == "tf32"
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        with computing("fp32", "cuda"):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
            assert cache_tag() is None
        assert torch.backends.cuda.matmul.allow_tf32
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32) == before
    x = torch.randn(4, 8)
    w = torch.randn(8, 3)
    with forward_pass("cpu"):
        assert (x @ w).dtype == torch.float32  # no scope: nothing changes
    with computing("bf16", "cpu"):
        with forward_pass("cpu"):
            assert (x @ w).dtype == torch.bfloat16
        assert (x @ w).dtype == torch.float32  # outside a forward pass: fp32
    assert active_precision() is None


def test_tf32_on_the_cpu_says_it_runs_as_fp32():
    # a handler on clipunlearn's own logger: a CLI test before this one in the same process may have set
    # that logger not to propagate to the root logger, where caplog listens
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("clipunlearn")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    try:
        with computing("tf32", "cpu") as p:
            assert p is Precision.FP32
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    assert any("tf32 is a CUDA mode" in m for m in seen)


@pytest.mark.parametrize("bad", ["fp16", "", "float32"])
def test_bad_precision_is_a_one_line_error_naming_the_choices(bad):
    with pytest.raises(ClipUnlearnError) as e:
        parse_precision(bad)
    assert "\n" not in str(e.value) and "--precision auto, fp32, tf32 or bf16" in str(e.value)


@pytest.mark.parametrize("argv", [
    ["eval", "--model", "mini-rn", "--datasets", "caltech101"],
    ["generate", "--model", "mini-rn", "--dataset", "caltech101", "--classes", "accordion", "--out", "{tmp}/s.safetensors"],
    ["forget", "--model", "mini-rn", "--dataset", "caltech101", "--classes", "accordion", "--out", "{tmp}/run"],
    ["audit", "{tmp}/no-run"],
    ["benchmark", "--suite", "quick", "--out", "{tmp}/suite", "--dry-run"],
])
def test_every_computing_verb_refuses_a_bad_precision_in_one_line(argv, data_slice, tmp_path, capsys):
    from clipunlearn.cli import main

    args = [a.format(tmp=tmp_path) for a in argv] + ["--precision", "half"]
    if argv[0] in ("eval", "generate", "forget", "benchmark"):
        args += ["--data-root", str(data_slice)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Unknown precision 'half'" in err and "bf16" in err
    assert not (tmp_path / "run").exists() and not (tmp_path / "s.safetensors").exists()
