"""Zero-shot classification (``evaluation/zeroshot.py``) on stand-ins whose every number is known by construction
(issue 35): the classifier's template averaging and normalisation, accuracies and per-class accuracies of
logits written by hand, the logits a chunk at a time, the evaluator's feature cache (which cut is kept, what a
key holds, what runs again after a change), and each refusal's whole message.

The model is a stand-in: its image tower is three tiny stages (``a`` scales the mean pixel, ``b`` shifts it,
``pool`` projects it to 2-D), so every feature is a line of arithmetic, and its text tower looks each prompt
up in a table. No real model is loaded: each test takes milliseconds. The evaluator against a real model and
an independent reference computation is in test_evaluation.py."""
from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision import transforms as T

from clipunlearn.data import ImageSet
from clipunlearn.errors import DataError, NotEnoughMemoryError
from clipunlearn.evaluation import zeroshot
from clipunlearn.evaluation.cache import FeatureCache, FeatureFile
from clipunlearn.evaluation.features import ImageStage, hash_tensors
from clipunlearn.evaluation.zeroshot import (
    LOGIT_SCALE,
    EvalResult,
    Evaluator,
    LogitRows,
    image_scores,
    loader_workers,
    zero_shot_classifier,
)
from clipunlearn.precision import computing

# ----------------------------------------------------------------------------------------------- stand-ins


class _Text:
    """A stand-in clip with a text tower only: prompt ``p``'s embedding is ``table[p]`` (in ``dtype``). Each
    call records the prompts, whether the model was in eval mode and whether autocast was on."""

    def __init__(self, table: dict[str, list[float]], dtype: torch.dtype = torch.float32, fail: bool = False):
        self.model = nn.Linear(1, 1)  # built in training mode
        self.device = torch.device("cpu")
        self.table, self.dtype, self.fail = table, dtype, fail
        self.calls: list[list[str]] = []
        self.modes: list[tuple[bool, bool]] = []

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        self.calls.append(list(prompts))
        self.modes.append((self.model.training, torch.is_autocast_enabled("cpu")))
        if self.fail:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return torch.tensor([self.table[p] for p in prompts], dtype=torch.float64).to(self.dtype)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


class _Tower(nn.Module):
    """Three stages: ``a`` (the mean pixel per channel, normalised, times a), ``b`` (plus b), ``pool`` (a 3→2 map)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(2.0))
        self.b = nn.Parameter(torch.tensor([0.5, -0.5, 0.0]))
        self.pool = nn.Linear(3, 2, bias=False)
        with torch.no_grad():
            self.pool.weight.copy_(torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]]))


class _Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.visual = _Tower()
        self.text_shift = nn.Parameter(torch.zeros(2))  # added to every prompt's embedding


TABLE = {"a photo of a cat.": [1.0, 0.0], "a photo of a dog.": [0.0, 1.0],
         "cat!": [1.0, 1.0], "dog!": [-1.0, 1.0], "owl!": [0.0, -1.0]}


class _Clip:
    """The stand-in model: ``family`` "resnet" (final features and the pool's input cached) or "vit" (final only).
    ``runs`` records each (start, end, rows) of the stages run; ``prompts`` each batch of prompts encoded."""

    def __init__(self, family: str = "resnet"):
        self.model = _Model()
        self.family = family
        self.stages = STAGES
        self.arch, self.image_size, self.mean, self.std = "toy", 1, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
        self.device = torch.device("cpu")
        self.runs: list[tuple[int, int, int]] = []
        self.prompts: list[list[str]] = []
        self.fail_on_images = False
        self.autocast: list[bool] = []  # per stage run, whether autocast was on

    @property
    def family(self) -> str:
        return self.model.family

    @family.setter
    def family(self, value: str) -> None:
        self.model.family = value  # what the patched image_family reads of the model

    def image_transform(self):
        return T.Compose([T.Resize((self.image_size, self.image_size)), T.ToTensor()])

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        self.prompts.append(list(prompts))
        return torch.tensor([TABLE[p] for p in prompts]) + self.model.text_shift


def _stage_a(v: nn.Module, x: torch.Tensor, clip: _Clip) -> torch.Tensor:
    mean, std = torch.tensor(clip.mean), torch.tensor(clip.std)
    return (x.mean((2, 3)) - mean) / std * v.a


STAGES = [ImageStage("a", ("a",), None), ImageStage("b", ("b",), lambda v, x: x + v.b),
          ImageStage("pool", ("pool.",), lambda v, x: v.pool(x))]


def _run_stages(clip: _Clip, x: torch.Tensor, start: int, end: int | None = None) -> torch.Tensor:
    end = len(STAGES) if end is None else end
    clip.runs.append((start, end, len(x)))
    clip.autocast.append(torch.is_autocast_enabled("cpu"))
    if clip.fail_on_images and start == 0 and bool(x.abs().sum() > 0):  # the all-zero probe passes
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")
    for i in range(start, end):
        x = _stage_a(clip.model.visual, x, clip) if i == 0 else STAGES[i].run(clip.model.visual, x)
    return x


@pytest.fixture
def toy(monkeypatch) -> _Clip:
    """The stand-in model, with the evaluator's view of image towers pointed at its three stages."""
    monkeypatch.setattr(zeroshot, "image_family", lambda model: model.family)
    monkeypatch.setattr(zeroshot, "image_stages", lambda c: c.stages)
    monkeypatch.setattr(zeroshot, "run_stages", _run_stages)
    clip = _Clip()
    return clip


#: one-pixel images (RGB 0-255), and the features the stand-in gives them worked out by hand:
#: a = 2 · pixel/255, b = a + (0.5, −0.5, 0), pool = (b0 + b2, b1 + b2)
PIXELS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 0, 0)]
CUT_B = [(2.5, -0.5, 0.0), (0.5, 1.5, 0.0), (0.5, -0.5, 2.0), (2.5, 1.5, 0.0), (0.5, -0.5, 0.0)]
FINAL = [(2.5, -0.5), (0.5, 1.5), (2.5, 1.5), (2.5, 1.5), (0.5, -0.5)]


class _Broken:
    def convert(self, mode):
        raise OSError("truncated file")


def _images(pixels=PIXELS, labels=(0, 1, 1, 0, 1), name: str = "toy", broken: tuple[int, ...] = ()) -> ImageSet:
    items = [(_Broken() if i in broken else Image.new("RGB", (1, 1), p), y)
             for i, (p, y) in enumerate(zip(pixels, labels))]
    return ImageSet(name, "test", ["cat", "dog"], list(labels), f"mem:{name}", tv_dataset=items)


def _evaluator(clip, cache=None, **kw) -> Evaluator:
    return Evaluator(clip, cache if cache is not None else FeatureCache(), **{"batch_size": 2, "workers": 0,
                                                                               "progress": False, **kw})


# ----------------------------------------------------------------------------------------------- the classifier


def test_each_class_weight_is_the_renormalised_sum_of_its_normalised_prompt_embeddings():
    table = {"a cat": [3.0, 4.0, 0.0], "the cat": [0.0, 0.0, 2.0],  # units (.6, .8, 0) and (0, 0, 1)
             "a dog": [0.0, 5.0, 0.0], "the dog": [0.0, -1.0, 0.0]}  # units cancel: (0, 1, 0) + (0, −1, 0)
    clip = _Text(table)
    w = zero_shot_classifier(clip, ["cat", "dog"], ["a {}", "the {}"])
    assert w.dtype == torch.float32 and w.shape == (2, 3)
    # (.6, .8, 1) / √2; the mean of the raw embeddings, (3, 4, 2) / √29, would be another direction
    np.testing.assert_allclose(w[0].numpy(), np.array([0.6, 0.8, 1.0]) / math.sqrt(2), atol=1e-7)
    assert torch.all(w[1] == 0)  # a zero sum stays zero (F.normalize's eps), not nan
    assert clip.calls == [["a cat", "a dog"], ["the cat", "the dog"]]  # template by template, classes in order


def test_the_classifier_is_float32_whatever_the_text_tower_returns():
    clip = _Text({"y": [0.0, 2.0], "x": [-3.0, 0.0]}, dtype=torch.float16)
    w = zero_shot_classifier(clip, ["y", "x"], ["{}"])
    assert w.dtype == torch.float32
    assert w.tolist() == [[0.0, 1.0], [-1.0, 0.0]]


def test_the_text_tower_runs_in_eval_mode_and_under_the_active_precision():
    clip = _Text({"y": [0.0, 2.0]})
    zero_shot_classifier(clip, ["y"], ["{}"])
    assert clip.modes == [(False, False)]
    clip.model.train()
    with computing("bf16", "cpu"):
        zero_shot_classifier(clip, ["y"], ["{}"])
    assert clip.modes[-1] == (False, True)


def test_prompts_go_to_the_text_tower_256_at_a_time_unless_told_otherwise():
    names = [f"c{i}" for i in range(300)]
    clip = _Text({n: [1.0, float(i)] for i, n in enumerate(names)})
    w = zero_shot_classifier(clip, names, ["{}"])
    assert [len(c) for c in clip.calls] == [256, 44] and [c for b in clip.calls for c in b] == names
    np.testing.assert_allclose(w[299].numpy(), _unit([1.0, 299.0]), rtol=1e-6)
    clip.calls.clear()
    zero_shot_classifier(clip, names[:5], ["{}"], batch_size=2)
    assert [len(c) for c in clip.calls] == [2, 2, 1]


def test_out_of_memory_even_one_prompt_at_a_time_names_the_classifier():
    clip = _Text({"y": [0.0, 2.0]}, fail=True)
    with pytest.raises(NotEnoughMemoryError) as e:
        zero_shot_classifier(clip, ["y", "y"], ["{}"], batch_size=2)
    assert str(e.value) == (
        "Out of memory encoding the prompts of a zero-shot classifier even one at a time (CUDA out of memory. "
        "Tried to allocate 2.00 GiB). Free memory (other processes on the device), use a smaller model, or run on "
        "a device with more memory (--device).")
    assert [len(c) for c in clip.calls] == [2, 1]


def test_a_classifier_needs_a_template_and_each_template_a_placeholder():
    with pytest.raises(DataError) as e:
        zero_shot_classifier(_Text({}), ["cat"], [])
    assert str(e.value) == "No prompt template given. Pass at least one template containing '{}'."
    with pytest.raises(DataError) as e:
        zero_shot_classifier(_Text({}), ["cat"], ["a {}", "a photo"])  # the second one
    assert str(e.value) == "Template 'a photo' has no '{}' where the class name goes."


# ----------------------------------------------------------------------------------------------- image_scores


class _Scorer(_Text):
    """A stand-in whose image tower reads each image's first pixel row as its features; records batch sizes."""

    def __init__(self, table):
        super().__init__(table)
        self.image_batches: list[int] = []

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.image_batches.append(len(pixels))
        return pixels[:, 0, 0, :]


@pytest.mark.filterwarnings("error")  # softmax over an implicit dimension warns
def test_image_scores_are_the_accuracy_and_the_mean_probability_of_each_images_label():
    clip = _Scorer({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    feats = torch.tensor([[2.0, 0.0], [1.0, 1.01], [0.0, 3.0], [1.0, 0.99]])  # cat, dog, dog, cat
    images = feats[:, None, None, :].expand(4, 3, 1, 2).contiguous()
    labels = torch.tensor([0, 0, 1, 1])  # right, wrong, right, wrong
    acc, prob = image_scores(clip, images, labels, ["cat", "dog"], ["{}"])
    cos = np.array([_unit(f) for f in feats.numpy()])  # against the unit class weights e0, e1
    logits = 100.0 * cos
    p = np.exp(logits - logits.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    assert acc == 0.5
    assert prob == pytest.approx(np.mean(p[[0, 1, 2, 3], [0, 0, 1, 1]]), rel=1e-5)
    assert clip.image_batches == [4]
    image_scores(clip, images, labels, ["cat", "dog"], ["{}"], batch_size=3)
    assert clip.image_batches[1:] == [3, 1]


def test_image_scores_encode_256_images_at_a_time_by_default_in_eval_mode():
    clip = _Scorer({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    images = torch.zeros(300, 3, 1, 2)
    images[:, :, :, 0] = 1.0
    acc, prob = image_scores(clip, images, torch.zeros(300, dtype=torch.long), ["cat", "dog"], ["{}"])
    assert clip.image_batches == [256, 44] and acc == 1.0
    assert prob == pytest.approx(1 / (1 + math.exp(-100.0)))
    assert not clip.model.training


def test_image_scores_take_half_precision_features_and_run_the_tower_under_the_active_precision():
    class Half(_Scorer):
        def encode_image(self, pixels):
            self.modes.append((self.model.training, torch.is_autocast_enabled("cpu")))
            return pixels[:, 0, 0, :].half()

    clip = Half({"cat": [1.0, 0.0], "dog": [0.0, 1.0]})
    images = torch.tensor([[0.0, 1.0], [1.0, 0.0]])[:, None, None, :].expand(2, 3, 1, 2).contiguous()
    assert image_scores(clip, images, torch.tensor([1, 1]), ["cat", "dog"], ["{}"])[0] == 0.5
    with computing("bf16", "cpu"):
        image_scores(clip, images, torch.tensor([1, 1]), ["cat", "dog"], ["{}"])
    assert clip.modes[-1] == (False, True)


def test_out_of_memory_even_one_image_at_a_time_names_the_images():
    class Failing(_Scorer):
        def encode_image(self, pixels):
            raise RuntimeError("CUDA out of memory.")

    with pytest.raises(NotEnoughMemoryError, match=r"^Out of memory encoding images even one at a time \(CUDA"):
        image_scores(Failing({"cat": [1.0]}), torch.zeros(2, 3, 1, 1), torch.zeros(2, dtype=torch.long), ["cat"],
                     ["{}"], batch_size=1)


# ----------------------------------------------------------------------------------------------- logits and accuracies


def test_logit_rows_are_100_times_the_cosine_of_each_row_with_each_class_weight():
    feats = torch.tensor([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0]], dtype=torch.float16)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    rows = LogitRows(feats, w, chunk_values=6)  # 6 // 3 classes: 2 rows a chunk
    assert rows.chunk_rows == 2 and len(rows) == 3
    chunks = list(rows.chunks())
    assert [s for s, _ in chunks] == [0, 2] and [len(c) for _, c in chunks] == [2, 1]
    expected = np.array([[60.0, 80.0, -60.0], [0.0, -100.0, 0.0], [100 / math.sqrt(2), 100 / math.sqrt(2),
                                                                     -100 / math.sqrt(2)]])
    np.testing.assert_allclose(np.concatenate([c for _, c in chunks]), expected, rtol=1e-5)
    assert chunks[0][1].dtype == np.float32
    np.testing.assert_allclose(rows.rows(np.array([2, 0])), expected[[2, 0]], rtol=1e-5)
    assert rows.rows([]).shape == (0, 3)
    assert LOGIT_SCALE == 100.0


def test_a_chunk_holds_about_four_million_logits_and_at_least_one_row():
    w = torch.eye(3)
    assert LogitRows(torch.zeros(1, 3), w).chunk_rows == 4194304 // 3  # 2**22 logits
    assert LogitRows(torch.zeros(1, 3), w, chunk_values=2).chunk_rows == 1  # fewer values than classes
    assert LogitRows(torch.zeros(1, 3), torch.zeros(0, 3), chunk_values=5).chunk_rows == 5  # no class: 5 // 1


def test_logit_rows_read_a_feature_file_row_by_row(tmp_path):
    feats = torch.tensor([[3.0, 4.0], [0.0, -2.0], [1.0, 1.0], [0.0, 5.0]])
    on_disk = FeatureCache(tmp_path).put("k", feats)
    assert isinstance(on_disk, FeatureFile)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    rows = LogitRows(on_disk, w, chunk_values=3)  # 3 // 2: 1 row a chunk
    assert [s for s, _ in rows.chunks()] == [0, 1, 2, 3]
    np.testing.assert_allclose(rows.rows(np.array([1, 3])), [[0.0, -100.0], [0.0, 100.0]], atol=1e-5)
    assert rows.rows(np.array([], dtype=np.int64)).shape == (0, 2)
    assert rows.rows([]).shape == (0, 2)


def _result(logits, labels, classnames=("a", "b", "c"), chunk_values=None) -> EvalResult:
    logits = np.asarray(logits, dtype=np.float32)
    if chunk_values is None:
        return EvalResult("d", list(classnames), np.asarray(labels), logits)
    # rows whose logits are 100 · cosine with one-hot weights: features equal to the wanted logits / 100,
    # each row a unit vector
    feats = torch.from_numpy(logits / 100.0)
    return EvalResult("d", list(classnames), np.asarray(labels),
                      LogitRows(feats, torch.eye(len(classnames)), chunk_values=chunk_values))


#: five images: predicted a, b, b, c, a; labels a, b, c, c, c: right, right, wrong, right, wrong
LOGITS = [[0.6, 0.8, 0.0], [0.0, 1.0, 0.0], [0.0, 0.8, 0.6], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
LABELS = [0, 1, 2, 2, 2]


@pytest.mark.parametrize("chunk_values", [None, 3, 7])  # all at once; a row a chunk; 2 rows a chunk
def test_accuracies_count_the_images_whose_highest_logit_is_their_label(chunk_values):
    r = _result([[100 * v for v in row] for row in LOGITS], LABELS, chunk_values=chunk_values)
    assert r.n == 5
    assert r.predictions.tolist() == [1, 1, 1, 2, 0]  # 0.6 < 0.8: the first image is called b
    assert r.predictions.dtype == np.int64
    assert r.correct.tolist() == [False, True, False, True, False]
    assert r.top1 == 2 / 5
    assert r.per_class() == {"a": 0.0, "b": 1.0, "c": 1 / 3}
    assert r.accuracy() == 2 / 5
    assert r.accuracy([2]) == 1 / 3 and r.accuracy([0, 1]) == 1 / 2
    assert r.accuracy(exclude=[0]) == 2 / 4 and r.accuracy([1, 2], exclude=[2]) == 1.0
    assert math.isnan(r.accuracy(exclude=[0, 1, 2])) and math.isnan(r.accuracy([7]))
    assert r.to_json() == {"top1": 2 / 5, "n": 5, "per_class": {"a": 0.0, "b": 1.0, "c": 1 / 3}}
    np.testing.assert_allclose(r.logits, 100 * np.array(LOGITS, dtype=np.float32), rtol=1e-5)
    np.testing.assert_allclose(r.logits_of(np.array([4, 1])), 100 * np.array(LOGITS)[[4, 1]], rtol=1e-5)
    np.testing.assert_allclose(r.logits_of([3]), 100 * np.array(LOGITS)[[3]], rtol=1e-5)


def test_a_class_without_images_has_no_per_class_accuracy_and_an_empty_set_no_top1():
    r = _result([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], [0, 0])
    assert r.per_class() == {"a": 0.5}
    empty = _result(np.zeros((0, 3)), np.zeros(0, dtype=np.int64), chunk_values=3)
    assert empty.n == 0 and math.isnan(empty.top1)
    assert empty.logits.shape == (0, 3) and empty.logits.dtype == np.float32
    assert empty.to_json()["per_class"] == {} and empty.to_json()["n"] == 0
    held = _result(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    assert held.logits_of(np.zeros(0)).shape == (0, 3)


def test_logits_held_as_an_array_are_that_array():
    arr = np.array([[1.0, 2.0]], dtype=np.float32)
    r = EvalResult("d", ["a", "b"], np.array([1]), arr)
    assert r.logits is arr and r.predictions.tolist() == [1]


# ----------------------------------------------------------------------------------------------- the evaluator


def test_loaders_use_two_decoding_processes_unless_torch_has_one_thread(monkeypatch, toy):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert loader_workers() == 2 and Evaluator(toy).workers == 2
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert loader_workers() == 0 and Evaluator(toy).workers == 0
    assert Evaluator(toy, workers=3).workers == 3


def test_the_evaluators_defaults(toy):
    ev = Evaluator(toy)
    assert ev.batch_size == 128 and ev.model_batch.size == 128 and ev.max_cut_bytes == 4 * 2**30
    assert ev.progress is True and isinstance(ev.cache, FeatureCache)
    assert ev.model_batch.what == "computing image features"
    cache = FeatureCache()
    assert Evaluator(toy, cache).cache is cache


def test_evaluate_gives_100_times_the_cosine_of_each_images_features_with_each_class_weight(toy):
    images = _images()
    r = _evaluator(toy).evaluate(images)
    assert (r.dataset, r.classnames, r.labels.tolist()) == ("toy", ["cat", "dog"], [0, 1, 1, 0, 1])
    assert isinstance(r.logit_rows, LogitRows)
    expected = 100.0 * np.array([_unit(f) for f in FINAL])  # the class weights are e0 (cat) and e1 (dog)
    np.testing.assert_allclose(r.logits, expected, rtol=1e-5)
    assert r.correct.tolist() == [True, True, False, True, False] and r.top1 == 3 / 5
    # the set's own class names and template, in its order
    assert toy.prompts == [["a photo of a cat.", "a photo of a dog."]]


def test_evaluate_reads_given_class_names_and_templates_over_the_sets_own(toy):
    ev = _evaluator(toy)
    r = ev.evaluate(_images(), templates=["{}!"], classnames=["owl", "dog", "cat"])
    assert toy.prompts == [["owl!", "dog!", "cat!"]] and r.classnames == ["owl", "dog", "cat"]
    w = np.array([_unit(TABLE[f"{c}!"]) for c in ("owl", "dog", "cat")])
    np.testing.assert_allclose(r.logits, 100.0 * np.array([_unit(f) for f in FINAL]) @ w.T, rtol=1e-5, atol=1e-4)
    ev.evaluate(_images(), templates=("{}!",))  # templates alone: the set's class names
    assert toy.prompts[-1] == ["cat!", "dog!"]


def test_image_features_are_the_unit_final_features_in_order(toy, tmp_path):
    for cache in (FeatureCache(), FeatureCache(tmp_path)):
        got = _evaluator(toy, cache).image_features(_images())
        assert got.dtype == torch.float32
        np.testing.assert_allclose(got.numpy(), [_unit(f) for f in FINAL], rtol=1e-6)


def test_a_first_evaluation_computes_both_cuts_in_one_pass_looking_once_per_cut(toy):
    cache = FeatureCache()
    ev = _evaluator(toy, cache)
    found = ev.features(_images())
    np.testing.assert_allclose(found.numpy(), FINAL, rtol=1e-6)  # not normalised
    # the probe (one blank image through the stages up to each cut), then each batch of 2 images
    assert toy.runs == [(0, 2, 1), (2, 3, 1)] + [(0, 2, 2), (2, 3, 2)] * 2 + [(0, 2, 1), (2, 3, 1)]
    assert (cache.misses, cache.hits) == (2, 0)
    final, cut = list(cache._mem.values())  # the final entry is finished first
    assert final is found
    np.testing.assert_allclose(cut.numpy(), CUT_B, rtol=1e-6)  # the pool's input
    toy.runs.clear()
    again = ev.features(_images())
    assert toy.runs == [] and again is found and (cache.misses, cache.hits) == (2, 1)


def test_a_changed_pool_runs_alone_over_the_kept_cut_and_its_output_is_kept(toy, tmp_path):
    for cache in (FeatureCache(), FeatureCache(tmp_path / "disk")):
        clip = _Clip()
        toy.__dict__.update(clip.__dict__)
        ev = _evaluator(toy, cache, batch_size=3)
        ev.features(_images())
        with torch.no_grad():
            toy.model.visual.pool.weight.mul_(2.0)
        toy.runs.clear()
        found = ev.features(_images())
        np.testing.assert_allclose(
            found.load() if isinstance(found, FeatureFile) else found.numpy(), 2 * np.array(FINAL), rtol=1e-6)
        assert toy.runs == [(2, 3, 3), (2, 3, 2)]  # the pool alone, a model batch at a time
        assert (cache.misses, cache.hits) == (3, 1)  # the final missed, the pool's input found
        toy.runs.clear()
        assert ev.features(_images()) is found and toy.runs == []  # kept: read back, nothing runs


def test_a_change_below_the_pool_reads_nothing_back(toy):
    cache = FeatureCache()
    ev = _evaluator(toy, cache)
    ev.features(_images())
    with torch.no_grad():
        toy.model.visual.b.add_(1.0)
    toy.runs.clear()
    found = ev.features(_images())
    assert cache.hits == 0 and (0, 2, 2) in toy.runs
    np.testing.assert_allclose(found.numpy(), np.array(FINAL) + [2.0, 2.0], rtol=1e-6)  # b + 1: both +1, +1


def test_a_tower_of_another_family_keeps_only_its_final_features(toy):
    toy.family = "vit"
    cache = FeatureCache()
    ev = _evaluator(toy, cache)
    ev.features(_images())
    assert toy.runs[:1] == [(0, 3, 1)] and len(cache._mem) == 1 and cache.misses == 1
    with torch.no_grad():
        toy.model.visual.pool.weight.mul_(2.0)
    toy.runs.clear()
    ev.features(_images())
    assert toy.runs[:1] == [(0, 3, 1)]  # all of it again


@pytest.mark.parametrize("change", ["arch", "image_size", "mean", "std", "labels", "bf16", "stem"])
def test_features_are_read_back_only_for_the_same_images_transform_tower_and_precision(toy, change):
    cache = FeatureCache()
    _evaluator(toy, cache).features(_images())
    images = _images()
    if change == "labels":
        images = _images(labels=(0, 1, 1, 0, 0))
    elif change == "stem":
        with torch.no_grad():
            toy.model.visual.a.mul_(-1)
    elif change != "bf16":
        setattr(toy, change, {"arch": "toy2", "image_size": 2, "mean": (0.0, 0.0, 0.1),
                              "std": (1.0, 1.0, 2.0)}[change])
    toy.runs.clear()
    if change == "bf16":
        with computing("bf16", "cpu"):
            _evaluator(toy, cache).features(images)
    else:
        _evaluator(toy, cache).features(images)
    assert cache.hits == 0 and toy.runs[0] == (0, 2, 1)


def test_a_feature_key_is_the_hash_of_what_the_features_depend_on_with_nothing_added_for_fp32(toy, tmp_path):
    """The keys are file names on users' disks: entries written before precisions existed (fp32) stay found."""
    images = _images()
    hashes = [hash_tensors(toy.model.visual, lambda n, p=p: n.startswith(p)) for p in ("a", "b", "pool.")]

    def key(cut: int, *extra: str) -> str:
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((images.fingerprint(), "toy", 1, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), cut, hashes[:cut])
                      + extra).encode())
        return h.hexdigest()

    cache = FeatureCache(tmp_path)
    found = _evaluator(toy, cache).features(images)
    assert found.path.stem == key(3) and {p.stem for p in tmp_path.glob("*.npy")} == {key(3), key(2)}
    with computing("fp32", "cpu"):
        _evaluator(toy, cache).features(images)
    assert cache.hits == 1
    with computing("bf16", "cpu"):
        _evaluator(toy, cache).features(images)
    assert {p.stem for p in tmp_path.glob("*.npy")} == {key(3), key(2), key(3, "bf16"), key(2, "bf16")}


def test_an_earlier_cut_is_kept_only_while_it_takes_at_most_max_cut_bytes(toy):
    size = 4 * 5 * 3  # float32 × 5 images × the pool's input (3)
    for limit, kept in ((size, 2), (size - 1, 1)):
        cache = FeatureCache()
        toy.runs.clear()
        _evaluator(toy, cache, max_cut_bytes=limit).features(_images())
        assert len(cache._mem) == kept
        assert toy.runs[2:4] == ([(0, 2, 2), (2, 3, 2)] if kept == 2 else [(0, 3, 2), (0, 3, 2)])


def test_room_is_checked_before_any_work_for_each_entry_written(toy, monkeypatch):
    cache = FeatureCache()
    asked = []
    monkeypatch.setattr(cache, "check_room", lambda sizes, what: asked.append((list(sizes), what, len(toy.runs))))
    ev = _evaluator(toy, cache)
    ev.features(_images())
    assert asked == [([4 * 5 * 3, 4 * 5 * 2], "toy (test)", 2)]  # after the probe, before any image
    ev.model_batch.size = 1  # the pool alone below: its first batch is one image
    with torch.no_grad():
        toy.model.visual.pool.weight.mul_(2.0)
    runs = len(toy.runs)
    ev.features(_images())
    assert asked[1] == ([4 * 5 * 2], "toy (test)", runs + 1)  # after the first batch told the shape


def test_features_another_process_computed_while_this_one_waited_on_the_lock_are_read_not_computed(toy, monkeypatch):
    done = FeatureCache()
    _evaluator(toy, done).features(_images())  # what the other process wrote
    cache = FeatureCache()
    real = cache.lock

    def lock(key):
        for k, v in done._mem.items():  # written while this one waited
            cache._mem[k] = v
        return real(key)

    monkeypatch.setattr(cache, "lock", lock)
    toy.runs.clear()
    found = _evaluator(toy, cache).features(_images())
    np.testing.assert_allclose(found.numpy(), FINAL, rtol=1e-6)
    assert toy.runs == [] and (cache.misses, cache.hits) == (2, 1)  # the second look is not counted as a miss


def test_the_final_entrys_key_is_locked_while_it_is_computed(toy, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path)
    locked = []
    real = cache.lock
    monkeypatch.setattr(cache, "lock", lambda key: locked.append(key) or real(key))
    found = _evaluator(toy, cache).features(_images())
    assert isinstance(found, FeatureFile) and locked == [found.path.stem]
    assert len(list(tmp_path.glob("*.npy"))) == 2


def test_images_are_decoded_in_batches_of_batch_size_with_the_workers_and_collate_given(toy, monkeypatch):
    made = []
    real = zeroshot.DataLoader

    def loader(dataset, **kw):
        made.append(kw)
        return real(dataset, **kw)

    monkeypatch.setattr(zeroshot, "DataLoader", loader)
    _evaluator(toy, batch_size=4).features(_images())
    assert made == [{"batch_size": 4, "num_workers": 0, "collate_fn": zeroshot._collate}]
    assert toy.runs[2:] == [(0, 2, 4), (2, 3, 4), (0, 2, 1), (2, 3, 1)]


def test_the_model_takes_fewer_images_at_once_when_its_batch_halved(toy):
    ev = _evaluator(toy, batch_size=4)
    ev.model_batch.size = 3
    ev.features(_images())
    assert toy.runs[2:] == [(0, 2, 3), (2, 3, 3), (0, 2, 1), (2, 3, 1), (0, 2, 1), (2, 3, 1)]


def test_out_of_memory_even_one_image_at_a_time_names_the_image_features(toy):
    toy.fail_on_images = True
    with pytest.raises(NotEnoughMemoryError, match=r"^Out of memory computing image features even one at a time "
                                                    r"\(DefaultCPUAllocator: can't allocate memory\)\."):
        _evaluator(toy, batch_size=1).features(_images())


def test_unreadable_images_are_counted_named_and_nothing_of_the_entries_is_kept(toy):
    cache = FeatureCache()
    images = _images(broken=(1, 2, 3, 4))
    with pytest.raises(DataError) as e:
        _evaluator(toy, cache, batch_size=2).features(images)
    assert str(e.value) == (
        "4 of 5 images of toy (test) could not be read, e.g. mem:toy[1], mem:toy[2], mem:toy[3]. Replace or "
        "remove them (and their manifest rows); no image is skipped silently.")
    assert cache._mem == {}
    assert toy.runs == [(0, 2, 1), (2, 3, 1)]  # the probe: no image after the first unreadable one is computed


def test_an_image_in_a_later_batch_is_named_by_its_place_in_the_set(toy):
    with pytest.raises(DataError, match=r"^1 of 5 images of toy \(test\) could not be read, e\.g\. mem:toy\[4\]\. "):
        _evaluator(toy, batch_size=2).features(_images(broken=(4,)))  # the third batch's first image
    assert toy.runs[2:] == [(0, 2, 2), (2, 3, 2)] * 2  # the first two batches


def test_an_unreadable_image_is_a_blank_flagged_item_and_a_batch_of_them_is_none():
    pixels = zeroshot._Pixels(_images(broken=(0,)), T.ToTensor())
    assert len(pixels) == 5
    x, ok = pixels[0]
    assert ok is False and x.shape == (3, 1, 1) and x.sum() == 0
    x, ok = pixels[1]
    assert ok is True and x.flatten().tolist() == [0.0, 1.0, 0.0]
    batch, flags = zeroshot._collate([pixels[0], pixels[1], pixels[0]])
    assert batch.shape == (1, 3, 1, 1) and flags.tolist() == [False, True, False]
    batch, flags = zeroshot._collate([pixels[0]])
    assert batch is None and flags.tolist() == [False]


def test_a_progress_bar_names_the_set_unless_progress_is_off(toy, capsys):
    _evaluator(toy, progress=True).features(_images())
    err = capsys.readouterr().err
    assert "toy test:" in err and "batch/s" in err
    _evaluator(toy, FeatureCache(), progress=False).features(_images())
    assert capsys.readouterr().err == ""


def test_the_progress_bar_counts_batches_and_is_cleared_when_done(toy, monkeypatch):
    bars = []

    def bar(iterable, **kw):
        bars.append(kw)
        return iterable

    monkeypatch.setattr(zeroshot, "tqdm", bar)
    _evaluator(toy).features(_images())
    assert bars == [{"desc": "toy test", "disable": True, "unit": "batch", "leave": False}]


def test_every_stage_runs_under_the_active_precision(toy):
    ev = _evaluator(toy)
    with computing("bf16", "cpu"):
        ev.features(_images())
        with torch.no_grad():
            toy.model.visual.pool.weight.mul_(2.0)
        toy.autocast.clear()
        ev.features(_images())  # the pool alone
    assert toy.autocast == [True, True, True]
    toy.autocast.clear()
    _evaluator(toy).features(_images())
    assert set(toy.autocast) == {False}


def test_the_tower_runs_in_eval_mode(toy):
    toy.model.train()
    _evaluator(toy).features(_images())
    assert not toy.model.training


# ----------------------------------------------------------------------------------------------- the kept classifiers


@pytest.fixture
def counted(monkeypatch):
    """The classifiers the evaluator computes (not those it reads back), by class names and templates."""
    made: list[tuple[list[str], list[str]]] = []
    real = zeroshot.zero_shot_classifier

    def count(clip, classnames, templates, *a, **kw):
        made.append((list(classnames), list(templates)))
        return real(clip, classnames, templates, *a, **kw)

    monkeypatch.setattr(zeroshot, "zero_shot_classifier", count)
    return made


def test_a_classifier_is_reused_until_its_text_tower_names_or_templates_change(toy, counted):
    ev = _evaluator(toy)
    first = ev.classifier(["cat", "dog"], ["{}!"])
    np.testing.assert_allclose(first.numpy(), [_unit([1, 1]), _unit([-1, 1])], rtol=1e-6)
    assert not first.requires_grad  # the text tower's parameters do, but no graph is kept
    with torch.no_grad():  # the image tower: the same classifier
        toy.model.visual.pool.weight.mul_(2.0)
    again = ev.classifier(("cat", "dog"), ("{}!",))
    assert torch.equal(again, first) and len(counted) == 1
    ev.classifier(["dog", "cat"], ["{}!"])
    ev.classifier(["cat", "dog"], ["a photo of a {}."])
    assert len(counted) == 3
    with torch.no_grad():
        toy.model.text_shift.add_(torch.tensor([0.0, 1.0]))
    changed = ev.classifier(["cat", "dog"], ["{}!"])
    assert len(counted) == 4
    np.testing.assert_allclose(changed.numpy(), [_unit([1, 2]), _unit([-1, 2])], rtol=1e-6)
    toy.arch = "toy2"
    ev.classifier(["cat", "dog"], ["{}!"])
    assert len(counted) == 5
    with computing("bf16", "cpu"):
        ev.classifier(["cat", "dog"], ["{}!"])
    assert len(counted) == 6
    assert ev.classifier(["cat", "dog"], ["{}!"]).device == toy.device and len(counted) == 6


def test_the_32_classifiers_used_last_are_kept(toy, counted, monkeypatch):
    monkeypatch.setattr(toy, "encode_text", lambda prompts: torch.ones(len(prompts), 2))
    ev = _evaluator(toy)
    names = [[f"c{i}"] for i in range(33)]
    for n in names[:32]:
        ev.classifier(n, ["{}"])
    ev.classifier(names[0], ["{}"])  # used again: now the last one used
    assert len(counted) == 32
    ev.classifier(names[32], ["{}"])  # the 33rd: the least recently used (c1) goes
    ev.classifier(names[0], ["{}"])
    assert len(counted) == 33
    ev.classifier(names[1], ["{}"])
    assert len(counted) == 34 and counted[-1] == (["c1"], ["{}"])


def test_a_kept_classifier_is_a_detached_copy(toy):
    ev = _evaluator(toy)
    ev.classifier(["cat"], ["{}!"])
    (kept,) = ev._classifiers.values()
    assert kept.device == torch.device("cpu") and not kept.requires_grad
