"""Evaluation in bounded memory: features streamed to files read by rows, logits a chunk at a time,
the disk checked before any work; each against the plain in-memory computation."""
from __future__ import annotations

import copy
import os
from collections import namedtuple

import numpy as np
import pytest
import torch

from clipunlearn.data import load_image_set
from clipunlearn.errors import NotEnoughDiskError
from clipunlearn.evaluation import Evaluator, FeatureCache, FeatureFile
from clipunlearn.evaluation.cache import FeatureWriter, feature_chunks
from clipunlearn.evaluation.forgetting import Targets, error_analysis
from clipunlearn.evaluation.zeroshot import EvalResult, LogitRows


def test_a_feature_file_gives_back_the_rows_written_in_batches(tmp_path):
    values = torch.randn(23, 4, 3)
    w = FeatureWriter(23, (4, 3), tmp_path / "e.npy")
    for start in range(0, 23, 5):
        w.write(values[start:start + 5])
    assert not (tmp_path / "e.npy").exists()  # published only when complete
    f = w.finish()
    assert isinstance(f, FeatureFile) and f.shape == (23, 4, 3) and len(f) == 23
    assert torch.equal(f.load(), values) and torch.equal(f.rows(7, 11), values[7:11])
    assert torch.equal(torch.from_numpy(np.load(tmp_path / "e.npy")), values)  # a plain .npy file
    assert [s for s, _ in feature_chunks(f, 10)] == [0, 10, 20]
    assert torch.equal(torch.cat([c for _, c in feature_chunks(f, 10)]), values)
    assert f.rows(20, 99).shape == (3, 4, 3) and f.rows(5, 5).shape == (0, 4, 3)


def test_an_aborted_or_short_entry_leaves_nothing(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    with pytest.raises(RuntimeError, match="boom"), cache.writer("k", 10, (2,)) as w:
        w.write(torch.ones(4, 2))
        raise RuntimeError("boom")
    assert list((tmp_path / "c").iterdir()) == [] and cache.get("k") is None
    with pytest.raises(ValueError, match="4 of 10 rows"), cache.writer("k", 10, (2,)) as w:
        w.write(torch.ones(4, 2))
    with pytest.raises(ValueError, match="do not fit"):
        FeatureWriter(3, (2,), None).write(torch.ones(4, 2))


def test_entries_written_before_npy_are_still_read(tmp_path):
    from safetensors.torch import save_file

    (tmp_path / "c").mkdir()
    save_file({"features": torch.arange(6.0).reshape(3, 2)}, str(tmp_path / "c" / "old.safetensors"))
    got = FeatureCache(tmp_path / "c").get("old")
    assert torch.equal(got, torch.arange(6.0).reshape(3, 2))


def test_large_entries_of_a_model_not_kept_go_to_scratch_and_leave_with_it(tmp_path):
    cache = FeatureCache(tmp_path / "c", spill_bytes=100, max_items=1)
    small, big = torch.randn(2, 3), torch.randn(50, 3)  # 24 and 600 bytes
    with cache.in_memory_only():
        assert isinstance(cache.put("small", small), torch.Tensor)
        held = cache.put("big", big)
    assert isinstance(held, FeatureFile) and held.path.parent != tmp_path / "c"
    assert not (tmp_path / "c").exists() or list((tmp_path / "c").iterdir()) == []
    scratch = held.path.parent
    cache.put("other", torch.zeros(1, 3))  # max_items=1: "big" is dropped and its file removed...
    assert not held.path.exists()
    assert torch.equal(held.load(), big)  # ...while whoever holds it still reads it
    del cache
    import gc

    gc.collect()
    assert not scratch.exists()


def test_memory_entries_are_dropped_by_size(tmp_path):
    cache = FeatureCache(memory_bytes=1000, spill_bytes=10**6)
    cache.put("a", torch.zeros(100, 2))  # 800 bytes
    cache.put("b", torch.zeros(100, 2))
    assert cache.get("a") is None and cache.get("b") is not None


def test_the_disk_is_checked_before_any_work(data_slice, mini_rn_random, tmp_path, monkeypatch):
    import shutil

    images = load_image_set("caltech101", data_slice, "test")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12 - 1000, 1000))
    ev = Evaluator(mini_rn_random, FeatureCache(tmp_path / "c"), workers=0, progress=False)
    loads = []
    monkeypatch.setattr(type(images), "load", lambda self, i: loads.append(i))
    with pytest.raises(NotEnoughDiskError, match=r"need .* GiB in .*c, but its disk has 0\.0 GiB free\. .*--cache-dir"):
        ev.evaluate(images)
    assert loads == [] and list((tmp_path / "c").glob("*.npy")) == []


def test_streamed_evaluation_gives_the_in_memory_answer(data_slice, mini_rn_random, tmp_path):
    """Everything in files (spill at 1 byte, logits 3 rows at a time) against the plain evaluation."""
    images = load_image_set("caltech101", data_slice, "test")
    plain = Evaluator(mini_rn_random, FeatureCache(), workers=0, progress=False).evaluate(images)
    cache = FeatureCache(spill_bytes=1)
    ev = Evaluator(mini_rn_random, cache, batch_size=4, workers=0, progress=False)
    streamed = ev.evaluate(images)
    assert isinstance(streamed.logit_rows, LogitRows) and isinstance(streamed.logit_rows.features, FeatureFile)
    streamed.logit_rows.chunk_rows = 3
    np.testing.assert_allclose(streamed.logits, plain.logits, rtol=1e-5, atol=1e-4)
    assert np.array_equal(streamed.predictions, plain.logits.argmax(1))
    assert streamed.top1 == plain.top1 and streamed.per_class() == plain.per_class()
    rows = np.array([1, 4, 9])
    np.testing.assert_allclose(streamed.logits_of(rows), plain.logits[rows], rtol=1e-5, atol=1e-4)
    assert torch.allclose(ev.image_features(images), Evaluator(mini_rn_random, workers=0, progress=False)
                          .image_features(images), atol=1e-5)


def test_a_cut_larger_than_its_budget_is_not_kept(data_slice, mini_rn_random, tmp_path):
    clip = copy.deepcopy(mini_rn_random)
    images = load_image_set("caltech101", data_slice, "test")
    cache = FeatureCache(tmp_path / "c")
    Evaluator(clip, cache, workers=0, progress=False, max_cut_bytes=1).evaluate(images)
    kept = [np.load(p, mmap_mode="r").shape for p in (tmp_path / "c").glob("*.npy")]
    assert kept == [(len(images), clip.model.visual.output_dim)]  # the final features only, no pool input


def test_pool_rerun_from_a_cached_cut_streams_into_a_file(data_slice, mini_rn_random, tmp_path):
    clip = copy.deepcopy(mini_rn_random)
    images = load_image_set("caltech101", data_slice, "test")
    cache = FeatureCache(tmp_path / "c")
    ev = Evaluator(clip, cache, batch_size=4, workers=0, progress=False)
    ev.evaluate(images)
    with torch.no_grad():
        clip.model.visual.attnpool.c_proj.weight.mul_(1.5)
    partial = ev.evaluate(images)
    full = Evaluator(clip, FeatureCache(), workers=0, progress=False).evaluate(images)
    np.testing.assert_allclose(partial.logits, full.logits, rtol=1e-5, atol=1e-4)
    assert len(list((tmp_path / "c").glob("*.npy"))) == 3 and not list((tmp_path / "c").glob(".*.tmp"))


def test_error_analysis_over_chunked_logits_matches_the_full_matrices():
    """Only the turned-wrong images' rows are read; the answer is the one over full logits."""
    from clipunlearn.data import ImageSet
    from clipunlearn.metrics.sensitivity import sensitivity_analysis

    rng = np.random.default_rng(0)
    n, c = 40, 5
    labels = rng.integers(0, c, n)
    s = ImageSet("a", "test", [f"k{i}" for i in range(c)], labels.tolist(), "mem")
    weights = torch.nn.functional.normalize(torch.randn(c, 8), dim=-1)
    fb = torch.randn(n, 8) + 2 * weights[torch.from_numpy(labels)]
    fa = fb + 1.5 * torch.randn(n, 8)
    before = EvalResult("a", s.classnames, labels, LogitRows(fb, weights, chunk_values=7 * c))
    after = EvalResult("a", s.classnames, labels, LogitRows(fa, weights, chunk_values=7 * c))
    out = error_analysis({"a": before}, {"a": after}, Targets(s, [0], []))
    keep = labels != 0
    ref = sensitivity_analysis(before.logits[keep], after.logits[keep], labels[keep])
    assert ref["n_turned_wrong"] > 3
    assert out["other_classes"] == pytest.approx(ref)


def test_a_killed_writers_partial_file_is_removed_by_the_next_writer(tmp_path, dead_pid, sleeper):
    dead = dead_pid
    (tmp_path / "c").mkdir()
    orphan = tmp_path / "c" / f".k.npy.{dead}.tmp"
    orphan.write_bytes(b"half")
    alive = tmp_path / "c" / f".k.npy.{sleeper.pid}.tmp"  # a live writer's file stays
    alive.write_bytes(b"busy")
    cache = FeatureCache(tmp_path / "c")
    cache.put("k", torch.ones(3, 2))
    assert not orphan.exists() and alive.exists() and (tmp_path / "c" / "k.npy").is_file()


def test_a_run_folder_killed_while_staged_is_removed_by_the_next_run_of_it(tmp_path, dead_pid, sleeper):
    """staged_dir names its temporary folder by its process: one left by a process that died (SIGKILL)
    goes when the same folder is staged again; a live process's, and another folder's, stay."""
    from clipunlearn.io import staged_dir

    dead = dead_pid
    orphan = tmp_path / f".run.{dead}.abc123.partial"
    busy = tmp_path / f".run.{sleeper.pid}.def456.partial"
    other = tmp_path / f".run2.{dead}.ghi789.partial"
    for d in (orphan, busy, other):
        d.mkdir()
    with staged_dir(tmp_path / "run") as staging:
        assert staging.name.startswith(f".run.{os.getpid()}.") and staging.name.endswith(".partial")
        (staging / "results.json").write_text("{}")
    assert not orphan.exists() and busy.exists() and other.exists()
    assert (tmp_path / "run" / "results.json").is_file()
