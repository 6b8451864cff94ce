"""Out of memory, injected: evaluation and generation halve the batch and retry (one warning), down to one
image and then a one-line error; training stops naming the batch size to try; a suite records the cell
as failed with that message and goes on."""
from __future__ import annotations

import copy
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image

from clipunlearn.errors import NotEnoughMemoryError
from clipunlearn.memory import HalvingBatch, is_out_of_memory

CUDA_OOM = "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.10 GiB total capacity)"
CPU_OOM = "DefaultCPUAllocator: can't allocate memory: you tried to allocate 8589934592 bytes. Error code 12"


def _oom(kind: str = "cuda") -> BaseException:
    return torch.cuda.OutOfMemoryError(CUDA_OOM) if kind == "cuda" else RuntimeError(CPU_OOM)


def _over(limit: int, fn, kind: str = "cuda", calls: list[int] | None = None, arg: int = 0):
    """``fn`` that runs out of memory on a batch (its argument ``arg``) of more than ``limit`` items."""
    def wrapped(*args, **kwargs):
        n = len(args[arg])
        if calls is not None:
            calls.append(n)
        if n > limit:
            raise _oom(kind)
        return fn(*args, **kwargs)

    return wrapped


@pytest.fixture
def warned(caplog, monkeypatch):
    """The warnings of clipunlearn's logger (whose propagation the CLI turns off) during the test."""
    logger = logging.getLogger("clipunlearn")
    caplog.set_level(logging.INFO, logger="clipunlearn")
    monkeypatch.setattr(logger, "propagate", False)  # caught once, by the handler put on the logger itself
    logger.addHandler(caplog.handler)
    yield lambda: [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    logger.removeHandler(caplog.handler)


def test_what_counts_as_out_of_memory():
    assert is_out_of_memory(_oom("cuda")) and is_out_of_memory(_oom("cpu")) and is_out_of_memory(MemoryError())
    assert is_out_of_memory(RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"))
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied"))
    assert not is_out_of_memory(ValueError("out of memory"))  # only what an allocator raises


@pytest.mark.parametrize("kind", ["cuda", "cpu"])
def test_chunks_halve_and_retry_the_same_items(kind, warned):
    calls: list[int] = []
    batch = HalvingBatch(16, "doing a test")
    out = batch.chunks(lambda a, b: _over(3, lambda x: list(x), kind, calls)(range(a, b)), 10)
    assert [i for part in out for i in part] == list(range(10)) and batch.size == 3
    assert calls == [10, 5, 3, 3, 3, 1]  # at most the 10 items left, halved until it fits, then 3 at a time
    said = CUDA_OOM if kind == "cuda" else CPU_OOM
    # once, naming the new size; the second halving (5 -> 3) is logged at INFO
    assert warned() == [f"out of memory doing a test at batch size 10 ({said}); retrying at batch size 5"]


def test_one_at_a_time_still_out_of_memory_is_a_one_line_error():
    batch = HalvingBatch(4, "doing a test")
    with pytest.raises(NotEnoughMemoryError, match=r"^Out of memory doing a test even one at a time \(CUDA out of") as e:
        batch.run(lambda size: _over(0, len)(range(size)))
    assert "\n" not in str(e.value) and "--device" in str(e.value)


def test_other_errors_are_not_retried():
    calls: list[int] = []

    def fail(size: int):
        calls.append(size)
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes"):
        HalvingBatch(8, "doing a test").run(fail)
    assert calls == [8]


def test_text_classifier_and_image_scores_retry(mini_rn_random, monkeypatch, warned):
    from clipunlearn.evaluation import image_scores, zero_shot_classifier

    clip = copy.deepcopy(mini_rn_random)
    names = ["cat", "dog", "car", "tree", "boat", "fox", "owl"]
    images = torch.rand(6, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2, 3, 4, 5])
    want_w = zero_shot_classifier(clip, names, ["a photo of a {}.", "a {}."], batch_size=4)
    want = image_scores(clip, images, labels, names, ["a {}."], batch_size=4)
    monkeypatch.setattr(clip, "encode_text", _over(2, clip.encode_text))
    monkeypatch.setattr(clip, "encode_image", _over(2, clip.encode_image, "cpu"))
    got_w = zero_shot_classifier(clip, names, ["a photo of a {}.", "a {}."], batch_size=4)
    assert torch.allclose(got_w, want_w, atol=1e-5)
    assert image_scores(clip, images, labels, names, ["a {}."], batch_size=4) == pytest.approx(want, abs=1e-5)
    assert [m.split(" (")[0] + m.split(")")[-1] for m in warned()] == [  # one per call, not one per batch
        "out of memory encoding the prompts of a zero-shot classifier at batch size 4; retrying at batch size 2",
        "out of memory encoding the prompts of a zero-shot classifier at batch size 7; retrying at batch size 4",
        "out of memory encoding images at batch size 4; retrying at batch size 2"]  # image_scores: its 7 names, its 6 images


def test_image_features_retry_and_keep_the_smaller_batch(mini_rn_random, tmp_path, monkeypatch, warned):
    from clipunlearn.data import load_image_set
    from clipunlearn.evaluation import Evaluator, zeroshot

    for c in ("cat", "dog"):
        for i in range(5):
            pixels = np.random.default_rng(i + 10 * len(c)).integers(0, 256, (12, 12, 3), dtype=np.uint8)
            (tmp_path / "tree" / c).mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(tmp_path / "tree" / c / f"{i}.jpg")
    images = load_image_set(str(tmp_path / "tree"), None, "test")
    clip = copy.deepcopy(mini_rn_random)
    want = Evaluator(clip, batch_size=8, workers=0, progress=False).image_features(images)
    calls: list[int] = []
    monkeypatch.setattr(zeroshot, "run_stages", _over(3, zeroshot.run_stages, calls=calls, arg=1))
    evaluator = Evaluator(clip, batch_size=8, workers=0, progress=False)
    assert torch.allclose(evaluator.image_features(images), want, atol=1e-5)
    assert evaluator.model_batch.size == 2 and len(warned()) == 1
    calls.clear()
    evaluator.image_features(images.subset([1]))  # the next image set starts at the size that fitted
    assert max(calls) == 2 and len(warned()) == 1


def test_generation_retries_with_fewer_images_at_once(mini_rn_random, monkeypatch, warned):
    from clipunlearn.synthetic import GenerationConfig, generate_synthetic

    clip = copy.deepcopy(mini_rn_random)
    names = ["cat", "dog", "car"]

    def make(batch_size: int):
        cfg = GenerationConfig(n_per_class=2, max_steps=3, threshold=0.99, threshold_drop=0.3, threshold_floor=0.6,
                               batch_size=batch_size, seed=1)
        return generate_synthetic(clip, names, [0, 2], "toy", "a photo of a {}.", cfg)

    want = make(2)  # the same run with batches of two from the start
    monkeypatch.setattr(clip, "encode_image", _over(2, clip.encode_image))
    got = make(8)
    assert torch.equal(got.images, want.images) and torch.equal(got.steps, want.steps)
    said = warned()
    assert len(said) == 1 and "generating synthetic images at batch size 4" in said[0]
    assert said[0].endswith("retrying at batch size 2")
    monkeypatch.setattr(clip, "encode_image", _over(0, clip.encode_image))
    with pytest.raises(NotEnoughMemoryError, match="^Out of memory generating synthetic images even one at a time"):
        make(8)


def _loop_out_of_memory(clip, batch_size: int | None, at_epoch: int = 2):
    from clipunlearn.training import Loop, OptimConfig, run_loop

    pool = ["visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.bias"]
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))

    def step(stage, epoch, s):
        if epoch == at_epoch:
            raise _oom()
        return clip.encode_image(x).pow(2).mean(), {}

    loop = Loop(towers={"image": pool}, optim=OptimConfig("adam", 1e-2), max_epochs=3, batch_size=batch_size)
    return run_loop(clip, loop, step)


def test_training_stops_naming_half_the_batch_and_keeps_the_original(mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    before = {k: v.clone() for k, v in clip.model.state_dict().items()}
    with pytest.raises(NotEnoughMemoryError) as e:
        _loop_out_of_memory(clip, 64)
    msg = str(e.value)
    assert msg.startswith("Out of memory in training (epoch 2 at 64 images a step: CUDA out of memory.")
    assert "the original model is kept. Try half the batch: --set batch_size=32" in msg and "\n" not in msg
    assert all(torch.equal(before[k], v) for k, v in clip.model.state_dict().items())
    with pytest.raises(NotEnoughMemoryError, match=r"--set batch_size=N, where it has one\) or half the synthetic"):
        _loop_out_of_memory(clip, None)


def test_a_method_that_runs_out_of_memory_names_its_batch_size(mini_rn_random, make_context, monkeypatch, warned):
    """Amns (16 images a step): its measure of the forget images halves and goes on, its step stops the run."""
    from clipunlearn.methods import get_method

    clip = copy.deepcopy(mini_rn_random)
    method_cls = get_method("amns")
    method = method_cls(method_cls.build_config("default", clip.family))
    monkeypatch.setattr(clip, "encode_image", _over(1, clip.encode_image))
    with pytest.raises(NotEnoughMemoryError, match=r"^Out of memory in training \(epoch 1 at 16 images a step.*"
                                                   r"--set batch_size=8"):
        method.run(make_context(clip, method_cls))
    assert any("encoding images" in m for m in warned())


def test_a_suite_records_the_cell_that_ran_out_of_memory_and_goes_on(tmp_path, data_slice, monkeypatch,
                                                                     mini_rn_random):
    from clipunlearn.benchmark import jobs, load_suite, plan, run_suite
    from conftest import AMNS_ENTRY, LIP_ENTRY, SMALL_SUITE

    ran: list[str] = []

    def execute(spec, out, *args, **kwargs):  # each cell's training runs out of memory
        ran.append(spec.method)
        _loop_out_of_memory(copy.deepcopy(mini_rn_random), 32, at_epoch=1)

    monkeypatch.setattr(jobs, "execute", execute)
    (tmp_path / "small.toml").write_text(SMALL_SUITE.format(methods=LIP_ENTRY + AMNS_ENTRY))
    suite = load_suite(tmp_path / "small.toml")
    out = tmp_path / "out"
    lines: list[str] = []
    run_suite(suite, out, str(data_slice), echo=lines.append)
    p = plan(suite, out)
    assert sorted(ran) == ["amns", "lip"] and len(p.failed) == 2 and not p.done  # the second cell ran after the first failed
    for spec in p.failed:
        error = json.loads((out / "failed" / f"{spec.run_id}.json").read_text())["error"]
        assert error.startswith("Out of memory in training (epoch 1 at 32 images a step") and "\n" not in error
        assert "--set batch_size=16" in error


def test_steady_heap_fixes_glibcs_threshold_on_linux_and_is_a_no_op_elsewhere(monkeypatch):
    import platform
    import sys

    from clipunlearn import memory

    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert memory.steady_heap() is True  # glibc's own starting value: harmless to the test process
    monkeypatch.setattr(memory.sys, "platform", "darwin")
    assert memory.steady_heap() is False
