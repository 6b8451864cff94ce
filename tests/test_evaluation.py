"""The evaluator against an independent reference computation, and the stage cache."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipunlearn.data import load_image_set
from clipunlearn.errors import DataError
from clipunlearn.evaluation import (
    Evaluator,
    FeatureCache,
    zero_shot_classifier,
)


def reference_logits(clip, images, templates):
    """Plain loops: one image at a time, one prompt at a time."""
    tf = clip.image_transform()
    with torch.no_grad():
        w = []
        for c in images.classnames:
            embs = [F.normalize(clip.encode_text([t.format(c)]), dim=-1)[0] for t in templates]
            w.append(F.normalize(torch.stack(embs).mean(0), dim=0))
        w = torch.stack(w)
        rows = []
        for i in range(len(images)):
            x = tf(images.load(i)).unsqueeze(0)
            f = F.normalize(clip.model.encode_image(clip.normalize(x)), dim=-1)[0]
            rows.append(100 * f @ w.T)
    return torch.stack(rows).numpy()


def test_evaluator_matches_reference(data_slice, mini_rn_random):
    images = load_image_set("caltech101", data_slice, "test")
    templates = ["a photo of a {}.", "a picture of a {}."]
    ev = Evaluator(mini_rn_random, batch_size=5, workers=0, progress=False)
    got = ev.evaluate(images, templates)
    ref = reference_logits(mini_rn_random, images, templates)
    np.testing.assert_allclose(got.logits, ref, rtol=1e-4, atol=1e-3)
    pred = ref.argmax(1)
    labels = np.array(images.labels)
    assert got.top1 == pytest.approx((pred == labels).mean())
    for c, name in enumerate(images.classnames):
        assert got.per_class()[name] == pytest.approx((pred[labels == c] == c).mean())
    assert got.accuracy([1, 2]) == pytest.approx((pred == labels)[np.isin(labels, [1, 2])].mean())
    assert got.accuracy(exclude=[0]) == pytest.approx((pred == labels)[labels != 0].mean())
    js = got.to_json()
    assert js["n"] == len(images) and set(js) == {"top1", "n", "per_class"}


def test_decoding_processes_give_what_decoding_in_place_gives(data_slice, mini_rn_random):
    images = load_image_set("caltech101", data_slice, "test")
    in_place = Evaluator(mini_rn_random, batch_size=5, workers=0, progress=False).evaluate(images)
    beside = Evaluator(mini_rn_random, batch_size=5, workers=2, progress=False).evaluate(images)
    np.testing.assert_allclose(beside.logits, in_place.logits, rtol=1e-5, atol=1e-5)


def test_cache_hits_and_partial_recompute(data_slice, mini_rn_random):
    clip = copy.deepcopy(mini_rn_random)
    images = load_image_set("caltech101", data_slice, "test")
    cache = FeatureCache()
    ev = Evaluator(clip, cache, workers=0, progress=False)
    first = ev.evaluate(images)
    assert cache.misses >= 1 and cache.hits == 0
    again = ev.evaluate(images)
    assert cache.hits == 1
    np.testing.assert_array_equal(first.logits, again.logits)
    with torch.no_grad():  # change only the attention pool, as Lip does on ResNets
        clip.model.visual.attnpool.c_proj.weight.mul_(1.5).add_(0.01)
    partial = ev.evaluate(images)
    full = Evaluator(clip, FeatureCache(), workers=0, progress=False).evaluate(images)
    np.testing.assert_allclose(partial.logits, full.logits, rtol=1e-5, atol=1e-4)
    assert not np.allclose(partial.logits, first.logits)
    pool_calls = []
    hook = clip.model.visual.attnpool.register_forward_hook(lambda *_: pool_calls.append(1))
    again = ev.evaluate(images)  # the pool's new output was kept: it does not run again
    hook.remove()
    assert pool_calls == [] and np.array_equal(again.logits, partial.logits)
    with torch.no_grad():  # a change below the pool must not be served from the cache
        clip.model.visual.layer1[0].conv1.weight.mul_(0.5)
    hits = cache.hits
    ev.evaluate(images)
    assert cache.hits == hits


def test_features_of_a_forgotten_model_stay_in_memory(data_slice, mini_rn_random, tmp_path):
    clip = copy.deepcopy(mini_rn_random)
    images = load_image_set("caltech101", data_slice, "test")
    cache = FeatureCache(tmp_path / "features")
    ev = Evaluator(clip, cache, workers=0, progress=False)
    ev.evaluate(images)
    on_disk = sorted(p.name for p in (tmp_path / "features").iterdir())
    assert len([n for n in on_disk if n.endswith(".npy")]) == 2  # the two cuts of the starting model
    with torch.no_grad():
        clip.model.visual.layer4[0].conv1.weight.mul_(0.5)
    with cache.in_memory_only():
        changed = ev.evaluate(images)
        hits = cache.hits
        assert np.array_equal(ev.evaluate(images).logits, changed.logits) and cache.hits == hits + 1
    assert sorted(p.name for p in (tmp_path / "features").iterdir()) == on_disk  # no file, no lock
    with torch.no_grad():
        clip.model.visual.layer4[0].conv1.weight.mul_(0.5)
    ev.evaluate(images)  # outside the block, a new model's features are written again
    assert len(list((tmp_path / "features").glob("*.npy"))) == 4


def test_cells_side_by_side_compute_shared_features_once(data_slice, mini_rn_random, tmp_path, monkeypatch):
    """Two evaluators on one cache folder (two benchmark cells at once) asking for the same features:
    one computes them while the other waits on the entry's lock, then reads them from disk."""
    import threading
    import time

    images = load_image_set("caltech101", data_slice, "test")
    computed = []
    original = Evaluator._compute_features

    def slow(self, *args):
        computed.append(threading.get_ident())
        # hold the entry's lock until the other evaluator has looked (and missed, once per cut) and so waits
        # on the lock: a fixed sleep let a late second thread find the entry already written on a busy machine
        other = next(c for c in caches if c is not self.cache)
        deadline = time.monotonic() + 60
        while other.misses < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        return original(self, *args)

    monkeypatch.setattr(Evaluator, "_compute_features", slow)
    caches = [FeatureCache(tmp_path / "features") for _ in range(2)]
    out: list = [None, None]

    def run(i: int) -> None:
        out[i] = Evaluator(copy.deepcopy(mini_rn_random), caches[i], workers=0, progress=False).image_features(images)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(computed) == 1  # once, not once per evaluator
    torch.testing.assert_close(out[0], out[1])
    assert sorted(c.hits for c in caches) == [0, 1] and sum(c.misses for c in caches) == 2 * 2  # 2 cuts, first looks


def test_text_classifier_is_reused_until_the_text_tower_changes(mini_rn_random, monkeypatch):
    from clipunlearn.evaluation import zeroshot

    clip = copy.deepcopy(mini_rn_random)
    calls = []
    real = zeroshot.zero_shot_classifier
    monkeypatch.setattr(zeroshot, "zero_shot_classifier", lambda *a, **k: calls.append(1) or real(*a, **k))
    ev = Evaluator(clip, workers=0, progress=False)
    names, templates = ["cat", "dog"], ["a photo of a {}."]
    first = ev.classifier(names, templates)
    with torch.no_grad():  # an image-tower change keeps the text classifier
        clip.model.visual.attnpool.c_proj.weight.mul_(1.5)
    again = ev.classifier(names, templates)
    assert len(calls) == 1
    torch.testing.assert_close(again, first)
    ev.classifier(["cat", "bird"], templates)  # other names: computed
    ev.classifier(names, ["a picture of a {}."])  # other templates: computed
    assert len(calls) == 3
    with torch.no_grad():  # a text-tower change must not be served from the cache
        clip.model.token_embedding.weight.mul_(0.5)
    changed = ev.classifier(names, templates)
    assert len(calls) == 4
    torch.testing.assert_close(changed, real(clip, names, templates))
    assert not torch.allclose(changed, first)


def test_unreadable_images_are_counted(data_slice, mini_rn_random, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(data_slice / "cifar10", root / "cifar10")
    images = load_image_set("cifar10", root, "test")
    for p in images.paths[:2]:
        p.write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match=r"2 of 18 images"):
        Evaluator(mini_rn_random, workers=0, progress=False).evaluate(images)


def test_classifier_needs_placeholder(mini_rn_random):
    with pytest.raises(DataError, match="no '{}'"):
        zero_shot_classifier(mini_rn_random, ["a"], ["a photo"])


class _FixedFeatures:
    """An evaluator stand-in with given unit features per image set and given class weights."""

    def __init__(self, feats, weights):
        self.feats, self.weights = feats, weights

    def image_features(self, images):
        return self.feats[images.name]

    def classifier(self, classnames, templates):
        return self.weights


def _brute_precision(query_vecs, query_labels, db_vecs, db_labels, k, skip=None):
    """Precision@k by sorting each query's similarities in plain Python."""
    out = []
    for i, (q, lab) in enumerate(zip(query_vecs, query_labels)):
        sims = [(float(q @ d), j) for j, d in enumerate(db_vecs) if skip is None or j != skip[i]]
        top = [j for _, j in sorted(sims, key=lambda t: -t[0])[:k]]
        out.append(sum(db_labels[j] == lab for j in top) / k)
    return sum(out) / len(out)


def test_retrieval_precision_against_brute_force():
    import torch.nn.functional as F

    from clipunlearn.data import ImageSet
    from clipunlearn.evaluation.forgetting import Targets, retrieval

    gen = torch.Generator().manual_seed(0)
    main = ImageSet("a", "test", ["x", "y", "z"], [0, 0, 0, 1, 1, 2, 2, 2], "mem")
    other = ImageSet("b", "test", ["x", "w"], [0, 0, 1, 1, 1], "mem")
    feats = {"a": F.normalize(torch.randn(8, 4, generator=gen), dim=-1),
             "b": F.normalize(torch.randn(5, 4, generator=gen), dim=-1)}
    weights = F.normalize(torch.randn(3, 4, generator=gen), dim=-1)
    r = retrieval(_FixedFeatures(feats, weights), Targets(main, [0], [other]), ks=(1, 5, 10))
    db = torch.cat([feats["a"], feats["b"]])
    labels = [f"a/{main.classnames[y]}" for y in main.labels] + [f"b/{other.classnames[y]}" for y in other.labels]
    for k in (1, 5, 10):
        # image from text: class "x" of dataset a; "b/x" images are another dataset's class, not relevant
        assert r["ift"]["target"][str(k)] == pytest.approx(_brute_precision(weights[[0]], ["a/x"], db, labels, k))
        assert r["ift"]["other_classes"][str(k)] == pytest.approx(
            _brute_precision(weights[[1, 2]], ["a/y", "a/z"], db, labels, k))
        # image from image: each target image queries the database without itself
        assert r["ifi"]["target"][str(k)] == pytest.approx(
            _brute_precision(db[[0, 1, 2]], labels[:3], db, labels, k, skip=[0, 1, 2]))
        assert r["ifi"]["other_classes"][str(k)] == pytest.approx(
            _brute_precision(db[3:8], labels[3:8], db, labels, k, skip=[3, 4, 5, 6, 7]))
    assert r["database"]["images"] == 13 and r["ifi"]["queries"] == {"target": 3, "other_classes": 5}


def test_error_analysis_leaves_the_target_out_and_pools_by_images_turned_wrong():
    from clipunlearn.data import ImageSet
    from clipunlearn.evaluation.forgetting import Targets, error_analysis
    from clipunlearn.evaluation.zeroshot import EvalResult

    main = ImageSet("a", "test", ["x", "y", "z"], [0, 1, 2], "mem")
    other = ImageSet("b", "test", ["u", "v"], [0, 1], "mem")
    # a: the target image (class x) turns wrong but is not counted; the y image falls one rank
    before_a = np.array([[3.0, 1.0, 0.0], [0.0, 3.0, 1.0], [0.0, 1.0, 3.0]])
    after_a = np.array([[0.0, 3.0, 1.0], [0.0, 1.0, 3.0], [0.0, 1.0, 3.0]])
    # b: the u image falls one rank (two classes: rank 2), the v image stays right
    before_b, after_b = np.array([[2.0, 1.0], [0.0, 2.0]]), np.array([[1.0, 2.0], [0.0, 2.0]])
    r = lambda s, x: EvalResult(s.name, s.classnames, np.asarray(s.labels), x)  # noqa: E731
    out = error_analysis({"a": r(main, before_a), "b": r(other, before_b)},
                         {"a": r(main, after_a), "b": r(other, after_b)}, Targets(main, [0], [other]))
    assert out["other_classes"]["n_turned_wrong"] == 1 and out["b"]["n_turned_wrong"] == 1
    assert out["pooled"]["n_turned_wrong"] == 2 and out["pooled"]["share_rank1"] == 1.0
    gap_a = (3.0 - 1.0) / np.std([0.0, 1.0, 3.0])
    gap_b = (2.0 - 1.0) / np.std([1.0, 2.0])
    assert out["pooled"]["mean_std_logit_gap"] == pytest.approx((gap_a + gap_b) / 2)
    none = error_analysis({"b": r(other, before_b)}, {"b": r(other, before_b)}, Targets(main, [0], []))
    assert none["b"]["share_rank1"] is None and none["pooled"]["share_rank1"] is None


def test_cells_side_by_side_make_a_shared_synthetic_set_once(mini_rn_random, tmp_path):
    """Two runs on one synthetic cache asking for the same set at once: one makes it, the other waits
    on the entry's lock and reads it from the cache (its data_seen says "shared cache")."""
    import threading
    import time

    from clipunlearn.runs.data import RunData
    from clipunlearn.synthetic.generate import SyntheticSet

    made = []

    def make() -> SyntheticSet:
        made.append(threading.get_ident())
        time.sleep(0.5)
        return SyntheticSet(images=torch.rand(2, 3, 8, 8), targets=torch.tensor([0, 0]), probs=torch.ones(2),
                            accepted=torch.ones(2, dtype=torch.bool), steps=torch.ones(2, dtype=torch.long),
                            classnames=["a"], dataset="d", model="mini-rn", template="a photo of a {}.")

    out: list = [None, None]

    def run(i: int) -> None:
        data = RunData(mini_rn_random, None, synthetic_cache=str(tmp_path / "synthetic"))
        out[i] = data._generate({"classes": ["a"], "seed": 0}, make)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(made) == 1 and sorted(shared for _, shared in out) == [False, True]
    torch.testing.assert_close(out[0][0].images, out[1][0].images)


# ----------------------------------------------------------------- retrieval on features known by construction


class _ByName(_FixedFeatures):
    """Features per image set, and class weights looked up by the class names asked for (a wrong list, or
    templates other than the dataset's own, fail)."""

    def __init__(self, feats, by_name):
        super().__init__(feats, None)
        self.by_name = by_name

    def classifier(self, classnames, templates):
        from clipunlearn.data.registry import DEFAULT_TEMPLATE

        assert list(templates) == [DEFAULT_TEMPLATE]
        return torch.stack([self.by_name[c] for c in classnames])


def _close(got, expected):
    """Nested dicts equal, floats to 1e-12."""
    if isinstance(expected, dict):
        assert isinstance(got, dict) and set(got) == set(expected), (got, expected)
        for k in expected:
            _close(got[k], expected[k])
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, abs=1e-12)
    else:
        assert got == expected


def _one_hot_sets(main_names, main_labels):
    """Each class of dataset a a one-hot direction (in order), dataset b's one class ("car") the last one."""
    from clipunlearn.data import ImageSet

    eye = torch.eye(len(main_names) + 1)
    main = ImageSet("a", "test", list(main_names), list(main_labels), "mem")
    other = ImageSet("b", "test", ["car"], [0, 0], "mem")
    feats = {"a": eye[list(main_labels)], "b": eye[[-1, -1]]}
    return main, other, _ByName(feats, dict(zip(main_names, eye)))


def test_retrieval_on_one_hot_features_by_hand():
    """Each image is its class's direction: a text query finds its class's 2 images first, an image query the
    other image of its class, then (ties to the lower index) the first images of the database. 8 images: k
    up to 7 = 8 − 1 is kept, 9 dropped."""
    from clipunlearn.evaluation.forgetting import Targets, retrieval

    main, other, ev = _one_hot_sets(["cat", "dog", "fox"], [0, 0, 1, 1, 2, 2])
    r = retrieval(ev, Targets(main, [0], [other]), ks=(1, 2, 7, 9))
    ift = {"1": 1.0, "2": 1.0, "7": 2 / 7}  # both images of the class in the top 2
    ifi = {"1": 1.0, "2": 0.5, "7": 1 / 7}  # the other image, then other classes; itself ranked last
    _close(r, {"ks": [1, 2, 7], "database": {"images": 8, "datasets": ["a", "b"]}, "targets": ["a/cat"],
               "ift": {"target": ift, "other_classes": ift},
               "ifi": {"target": ifi, "other_classes": ifi, "queries": {"target": 2, "other_classes": 4}}})


def test_retrieval_without_other_classes_or_without_target_images():
    from clipunlearn.evaluation.forgetting import Targets, retrieval

    main, other, ev = _one_hot_sets(["cat", "dog"], [0, 0, 1, 1])
    r = retrieval(ev, Targets(main, [0, 1], [other]), ks=(1,))  # every class forgotten
    assert r["ift"]["other_classes"] is None and r["ifi"]["other_classes"] is None
    assert r["ifi"]["queries"] == {"target": 4, "other_classes": 0}
    main, other, ev = _one_hot_sets(["cat", "dog", "owl"], [0, 0, 1, 1])  # owl: a class without test images
    r = retrieval(ev, Targets(main, [2], [other]), ks=(1,))
    assert r["targets"] == ["a/owl"] and r["ift"]["target"] == {"1": 0.0}  # b's car images are not a/owl
    assert r["ifi"]["target"] is None and r["ifi"]["queries"] == {"target": 0, "other_classes": 4}


def test_retrieval_samples_200_other_queries_by_default():
    from clipunlearn.evaluation.forgetting import Targets, retrieval

    main, other, ev = _one_hot_sets(["cat", "dog"], [0] + [1] * 201)
    r = retrieval(ev, Targets(main, [0], [other]), ks=(1,))
    assert r["ifi"]["queries"] == {"target": 1, "other_classes": 200} and r["ifi"]["other_classes"] == {"1": 1.0}


def test_retrieval_other_queries_are_a_sample_seeded_by_its_own_generator():
    """Six other-class images: fox alone (precision@2 0), dog twice (1/2: then a cat image), owl three times
    (1). The queries drawn are the first 3 of torch.randperm(6) under the seed, whatever the global RNG."""
    from clipunlearn.evaluation.forgetting import Targets, retrieval

    names, labels = ["cat", "fox", "dog", "owl"], [0, 0, 1, 2, 2, 3, 3, 3]
    main, other, ev = _one_hot_sets(names, labels)
    per_row = {1: 0.0, 2: 0.5, 3: 1.0}
    other_rows = [2, 3, 4, 5, 6, 7]
    for seed in (0, 1, 2):
        picks = torch.randperm(6, generator=torch.Generator().manual_seed(seed))[:3].tolist()
        expected = sum(per_row[labels[other_rows[i]]] for i in picks) / 3
        for global_seed in (11, 12):
            kwargs = {} if seed == 0 else {"seed": seed}  # seed 0 is the default
            with torch.random.fork_rng():  # the global RNG is put back after
                torch.manual_seed(global_seed)
                r = retrieval(ev, Targets(main, [0], [other]), ks=(2,), max_other_queries=3, **kwargs)
            assert r["ifi"]["other_classes"]["2"] == pytest.approx(expected, abs=1e-12)
            assert r["ifi"]["queries"]["other_classes"] == 3


def test_error_analysis_goes_on_past_a_set_without_kept_images():
    """Every image of dataset a is of the forgotten class: a is skipped, b (after it) is still analysed."""
    from clipunlearn.data import ImageSet
    from clipunlearn.evaluation.forgetting import Targets, error_analysis
    from clipunlearn.evaluation.zeroshot import EvalResult

    main = ImageSet("a", "test", ["x", "y"], [0, 0], "mem")
    other = ImageSet("b", "test", ["u", "v"], [0, 1], "mem")
    before_a, before_b, after_b = np.array([[2.0, 1.0]] * 2), np.array([[2.0, 1.0], [0.0, 2.0]]), np.array(
        [[1.0, 2.0], [0.0, 2.0]])

    def r(s, x):
        return EvalResult(s.name, s.classnames, np.asarray(s.labels), x)

    out = error_analysis({"a": r(main, before_a), "b": r(other, before_b)},
                         {"a": r(main, before_a), "b": r(other, after_b)}, Targets(main, [0], [other]))
    assert "other_classes" not in out
    assert out["b"] == {"n_turned_wrong": 1, "share_rank1": 1.0, "share_rank_le2": 1.0,
                        "mean_std_logit_gap": 2.0}  # (2 − 1) / std([1, 2]) = 1 / 0.5
    assert out["pooled"] == out["b"]


# ----------------------------------------------------------------- accuracies, Avg. Score and template change by hand


class _Predicts:
    """An evaluator whose model predicts given classes: ``predictions[(dataset, template)]`` (template None:
    the dataset's own); it records each evaluation asked for."""

    def __init__(self, predictions):
        self.predictions, self.calls = predictions, []

    def evaluate(self, images, templates=None):
        from clipunlearn.evaluation.zeroshot import EvalResult

        key = (images.name, None if templates is None else tuple(templates))
        self.calls.append(key)
        pred = self.predictions.get(key, self.predictions.get((images.name, "any")))
        logits = np.eye(len(images.classnames))[pred]
        return EvalResult(images.name, images.classnames, np.asarray(images.labels), logits)


def _sets():
    from clipunlearn.data import ImageSet

    return (ImageSet("a", "test", ["x", "y", "z"], [0, 0, 1, 1, 2, 2], "mem"),
            ImageSet("b", "test", ["u", "v"], [0, 1], "mem"))


def test_accuracies_by_hand():
    from clipunlearn.evaluation.forgetting import Targets, accuracies, evaluate_all

    a, b = _sets()
    ev = _Predicts({("a", None): [0, 1, 1, 1, 2, 0], ("b", None): [0, 0]})
    # a: x right once of 2, y twice of 2, z once of 2; b: u right, v wrong
    assert accuracies(ev, Targets(a, [0], [b])) == {"target": 0.5, "per_target": {"x": 0.5}, "other_classes": 0.75,
                                                    "datasets": {"b": 0.5}}
    assert accuracies(ev, Targets(a, [0, 2], [b])) == {"target": 0.5, "per_target": {"x": 0.5, "z": 0.5},
                                                       "other_classes": 1.0, "datasets": {"b": 0.5}}
    assert accuracies(ev, Targets(a, [1], [])) == {"target": 1.0, "per_target": {"y": 1.0}, "other_classes": 0.5,
                                                   "datasets": {}}
    ev.calls.clear()
    results = evaluate_all(ev, Targets(a, [0], [b]), ["t {}"])
    assert list(results) == ["a", "b"] and ev.calls == [("a", ("t {}",)), ("b", ("t {}",))]
    ev.calls.clear()
    ev2 = _Predicts({("a", None): [0, 0, 1, 1, 2, 2], ("b", None): [0, 1]})
    given = evaluate_all(ev2, Targets(a, [0], [b]))
    assert accuracies(ev, Targets(a, [0], [b]), results=given) == {
        "target": 1.0, "per_target": {"x": 1.0}, "other_classes": 1.0, "datasets": {"b": 1.0}}
    assert ev.calls == []  # the results given are read, nothing evaluated again


def test_template_change_is_the_mean_over_the_templates_by_hand():
    from clipunlearn.data import CHANGED_TEMPLATES
    from clipunlearn.evaluation.forgetting import Targets, template_change

    a, b = _sets()
    ev = _Predicts({("a", ("t1 {}",)): [0, 0, 1, 1, 2, 2], ("b", ("t1 {}",)): [0, 1],  # every image right
                    ("a", ("t2 {}",)): [0, 1, 0, 1, 0, 1], ("b", ("t2 {}",)): [1, 1]})
    # t2: x right once of 2, y once of 2, z never; b: v only
    out = template_change(ev, Targets(a, [0], [b]), ["t1 {}", "t2 {}"])
    assert out == {"templates": ["t1 {}", "t2 {}"], "target": 0.75, "per_target": {"x": 0.75},
                   "other_classes": 0.625, "datasets": {"b": 0.75}}
    assert ev.calls == [("a", ("t1 {}",)), ("b", ("t1 {}",)), ("a", ("t2 {}",)), ("b", ("t2 {}",))]
    one = template_change(ev, Targets(a, [0], [b]), ["t2 {}"])  # a single template: its accuracies
    assert one == {"templates": ["t2 {}"], "target": 0.5, "per_target": {"x": 0.5}, "other_classes": 0.25,
                   "datasets": {"b": 0.5}}
    ev = _Predicts({("a", "any"): [0, 0, 1, 1, 2, 2], ("b", "any"): [0, 1]})
    assert template_change(ev, Targets(a, [0], [b]))["templates"] == list(CHANGED_TEMPLATES)
    assert [t for _, (t,) in ev.calls] == [t for t in CHANGED_TEMPLATES for _ in range(2)]


def test_the_run_score_leaves_out_columns_never_recognised():
    from clipunlearn.evaluation.forgetting import score

    before = {"target": 0.8, "other_classes": 0.6, "datasets": {"b": 0.5, "c": 0.0}}
    after = {"target": 0.2, "other_classes": 0.3, "datasets": {"b": 0.6, "c": 0.1}}
    # (0.2/0.8 + (0.6 − 0.3)/0.6 + max(0, (0.5 − 0.6)/0.5)) / 3, c (before 0) left out
    got, excluded = score(before, after)
    assert got == pytest.approx((0.25 + 0.5 + 0.0) / 3, abs=1e-12) and excluded == ["c"]
    assert score({**before, "target": 0.0}, after) == (None, ["target", "c"])
    got, excluded = score({**before, "other_classes": 0.0, "datasets": {"b": 0.5}}, after)
    assert got == pytest.approx((0.25 + 0.0) / 2, abs=1e-12) and excluded == ["other_classes"]
