"""Descriptive sentences for CuPLGen (synthetic.cupl) and the generator's description mode."""
from __future__ import annotations

import importlib.util
import json

import pytest
import torch

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.synthetic import GenerationConfig, cupl, generate_synthetic
from clipunlearn.synthetic.cupl import (
    ENV_VAR,
    cupl_descriptions,
    describe,
    describe_sources,
)
from clipunlearn.synthetic.generate import _logits

TEMPLATE = "a photo of a {}."
PAPER_FORGET = ["euphonium", "minaret", "platypus", "gazania", "tree mallow", "trumpet creeper", "Pekinese",
                "toy poodle", "Scotch terrier", "2009 Spyker C8 Coupe", "2010 Dodge Ram Pickup 3500 Crew Cab",
                "2011 Ford Ranger SuperCab", "Gal Gadot", "Henry Cavil", "Amanda Crew"]
DEMO = ["motorbike", "stop sign", "airplanes", "leopard", "face", "accordion"]


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)


@pytest.fixture
def no_clip_benchmark(monkeypatch):
    monkeypatch.setattr(cupl, "cupl_file", lambda: None)


def _needs_clip_benchmark():
    if importlib.util.find_spec("clip_benchmark") is None or cupl.cupl_file() is None:
        pytest.skip("clip_benchmark is not installed (pip install --no-deps clip_benchmark)")


# --- sources --------------------------------------------------------------------------------
def test_imagenet_class_from_clip_benchmark():
    _needs_clip_benchmark()
    d = describe(["goldfish", "Toy_Poodle"])
    assert d.sources == {"goldfish": "clip_benchmark", "Toy_Poodle": "clip_benchmark"}
    assert len(d.sentences["goldfish"]) > 10 and all("goldfish" in s.lower() for s in d.sentences["goldfish"][:5])
    # matched through the normalised name, recorded as such; keyed by the name as given
    assert "'Toy Poodle'" in d.origins["Toy_Poodle"] and "clip_benchmark" in d.origins["Toy_Poodle"]


def test_clip_benchmark_is_not_imported():
    _needs_clip_benchmark()
    import sys

    cupl._load_cupl.cache_clear()
    describe(["goldfish"])
    assert "clip_benchmark" not in sys.modules


def test_shipped_fallback(no_clip_benchmark):
    d = describe(["minaret", "MINARET", "Tree-Mallow"])
    assert set(d.sources.values()) == {"shipped"}
    assert d.sentences["minaret"] == d.sentences["MINARET"] == cupl_descriptions(["minaret"])["minaret"]
    assert all("minaret" in s.lower() for s in d.sentences["minaret"])
    assert "tree mallow" in d.origins["Tree-Mallow"]


def test_minaret_not_in_cupl_falls_back_even_when_installed():
    # minaret is no ImageNet class: shipped, whether clip_benchmark is installed or not
    assert describe_sources(["minaret"]) == {"minaret": "clipunlearn shipped descriptions"}


def test_shipped_file_covers_paper_and_demo_classes():
    data = json.loads(cupl.SHIPPED_FILE.read_text(encoding="utf-8"))
    assert set(PAPER_FORGET + DEMO) <= set(data)
    for name, sentences in data.items():
        assert 3 <= len(sentences) <= 5, name
        assert all(isinstance(s, str) and s.strip() and "{}" not in s for s in sentences), name


def test_env_file_takes_precedence(tmp_path, monkeypatch):
    f = tmp_path / "mine.json"
    f.write_text(json.dumps({"Goldfish": ["An orange fish in a bowl."], "zorblax": ["A zorblax is a blue gadget."]}))
    monkeypatch.setenv(ENV_VAR, str(f))
    d = describe(["goldfish", "zorblax", "minaret"])
    assert d.sentences["goldfish"] == ["An orange fish in a bowl."]
    assert d.sentences["zorblax"] == ["A zorblax is a blue gadget."]
    assert d.sources == {"goldfish": "env", "zorblax": "env", "minaret": "shipped"}
    assert str(f) in d.origins["goldfish"]


def test_env_file_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing.json"))
    with pytest.raises(ClipUnlearnError, match="missing.json"):
        describe(["minaret"])
    bad = tmp_path / "bad.json"
    for text, what in [("{not json", "not valid JSON"), ('{"a": "one sentence"}', "non-empty list"),
                       ('{"a": ["a photo of a {}."]}', r"contains '\{\}'"), ("[1, 2]", "not a JSON object")]:
        bad.write_text(text)
        monkeypatch.setenv(ENV_VAR, str(bad))
        with pytest.raises(ClipUnlearnError, match=what) as info:
            describe(["minaret"])
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("installed", [True, False])
def test_unknown_class_error(installed, monkeypatch):
    if installed:
        _needs_clip_benchmark()
    else:
        monkeypatch.setattr(cupl, "cupl_file", lambda: None)
    with pytest.raises(ClipUnlearnError) as info:
        cupl_descriptions(["minaret", "zorblax gadget"])
    msg = str(info.value)
    assert "\n" not in msg and "'zorblax gadget'" in msg and "minaret" not in msg
    assert "clip_benchmark" in msg and "shipped" in msg and "clipunlearn[cupl]" in msg and f"{ENV_VAR}=FILE" in msg
    assert ("not installed" in msg) is (not installed)


# --- the generator's description mode -------------------------------------------------------
def test_own_row_replaces_the_label_column():
    feats = torch.nn.functional.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(1)), dim=-1)
    weights = torch.nn.functional.normalize(torch.randn(2, 4, generator=torch.Generator().manual_seed(2)), dim=-1)
    own = torch.nn.functional.normalize(torch.randn(3, 4, generator=torch.Generator().manual_seed(3)), dim=-1)
    labels = torch.tensor([1, 0, 1])
    expected = 100 * feats @ weights.T
    for i, y in enumerate(labels.tolist()):
        expected[i, y] = 100 * feats[i] @ own[i]
    torch.testing.assert_close(_logits(feats, weights, labels, own), expected)
    torch.testing.assert_close(_logits(feats, weights, labels, None), 100 * feats @ weights.T)


CLASSES = ["cat", "dog", "car"]


def _config(seed=0):
    # a short threshold ladder (0.5 -> 0.45): two restarts, then each image keeps its best state
    return GenerationConfig(n_per_class=2, max_steps=2, seed=seed, threshold=0.5, threshold_floor=0.45)


def _gen(clip, targets=(0, 1), descriptions=None, seed=0):
    cfg = _config(seed)
    return generate_synthetic(clip, CLASSES, list(targets), "toy", TEMPLATE, cfg, descriptions=descriptions)


def test_template_sentences_give_the_template_images(mini_rn_random):
    plain = _gen(mini_rn_random)
    same = _gen(mini_rn_random, descriptions={c: [TEMPLATE.format(c)] for c in CLASSES})
    # a per-image dot product and a matmul row may differ in the last float bit: tolerance 1e-5
    torch.testing.assert_close(same.images, plain.images, rtol=0, atol=1e-5)
    torch.testing.assert_close(same.probs, plain.probs, rtol=0, atol=1e-5)
    assert torch.equal(same.targets, plain.targets) and torch.equal(same.accepted, plain.accepted)
    assert torch.equal(same.steps, plain.steps) and same.final_threshold == plain.final_threshold
    # the same check is sharp: each image climbing the other target's prompt gives other images
    swapped = _gen(mini_rn_random, descriptions={"cat": [TEMPLATE.format("dog")], "dog": [TEMPLATE.format("cat")]})
    assert (swapped.images - plain.images).abs().max() > 1e-2


def test_sentence_draws_leave_the_noise_alone(mini_rn_random, monkeypatch):
    # drawing a sentence per image must not shift the seeded noise: template and description runs
    # under one seed start from the same pixels, so they differ only by what the images climb
    from clipunlearn.synthetic import generate

    starts = []
    real = generate._noise

    def noise(n, clip, gen):
        out = real(n, clip, gen)
        starts.append(out.clone())  # the generator updates its start in place
        return out

    monkeypatch.setattr(generate, "_noise", noise)
    plain = _gen(mini_rn_random, targets=(1,))
    first_plain = starts[0]
    starts.clear()
    many = {"dog": ["a dog.", "a puppy.", "a hound on grass.", "a photo of a dog."]}
    a = _gen(mini_rn_random, targets=(1,), descriptions=many)
    assert torch.equal(starts[0], first_plain)
    b = _gen(mini_rn_random, targets=(1,), descriptions=many)
    assert torch.equal(a.images, b.images)  # the sentence draws repeat under the seed
    assert not torch.equal(a.images, plain.images)


def test_end_to_end_cupl_images_differ_from_template(mini_rn_random, no_clip_benchmark):
    names = ["minaret", "motorbike", "face"]
    descriptions = cupl_descriptions(names[:2])
    cfg = _config()
    plain = generate_synthetic(mini_rn_random, names, [0, 1], "caltech101", TEMPLATE, cfg)
    described = generate_synthetic(mini_rn_random, names, [0, 1], "caltech101", TEMPLATE, cfg,
                                   descriptions=descriptions)
    assert described.images.shape == plain.images.shape == (4, 3, mini_rn_random.image_size, mini_rn_random.image_size)
    assert torch.equal(described.targets, plain.targets)
    assert (described.images - plain.images).abs().max() > 1e-2
    again = generate_synthetic(mini_rn_random, names, [0, 1], "caltech101", TEMPLATE, cfg, descriptions=descriptions)
    assert torch.equal(again.images, described.images)


# --- aliases: dataset names that ImageNet writes differently ----------------------------------
def test_every_alias_names_a_stanford_dogs_class_and_a_cupl_class(shared_data):
    """Checked against the two independent sources: the dataset's own class list and CuPL's file."""
    _needs_clip_benchmark()
    from clipunlearn.data import load_image_set

    aliases = json.loads(cupl.ALIASES_FILE.read_text(encoding="utf-8"))
    dogs = set(load_image_set("stanford_dogs", str(shared_data), "test").classnames)
    cupl_names = {cupl.normalise(k) for k in json.loads(cupl.cupl_file().read_text(encoding="utf-8"))[cupl.CUPL_KEY]}
    assert set(aliases) <= dogs
    assert all(cupl.normalise(v) in cupl_names for v in aliases.values())
    # with the aliases every stanford_dogs class has CuPL sentences
    d = describe(sorted(dogs))
    assert set(d.sources.values()) == {"clip_benchmark"} and len(d.sentences) == len(dogs) == 120


def test_alias_is_looked_up_after_the_own_name(tmp_path, monkeypatch):
    _needs_clip_benchmark()
    d = describe(["Leonberg", "African hunting dog"])
    assert d.sources == {"Leonberg": "clip_benchmark", "African hunting dog": "clip_benchmark"}
    assert "'Leonberger'" in d.origins["Leonberg"] and "'African wild dog'" in d.origins["African hunting dog"]
    assert all("Leonberger" in s for s in d.sentences["Leonberg"][:5])
    f = tmp_path / "mine.json"  # the user's own sentences under the dataset's name still come first
    f.write_text(json.dumps({"Leonberg": ["A Leonberg is a big dog."]}))
    monkeypatch.setenv(ENV_VAR, str(f))
    assert describe(["Leonberg"]).sentences["Leonberg"] == ["A Leonberg is a big dog."]


def test_cupl_gen_refuses_a_class_without_sentences_before_any_work(data_slice, tmp_path, monkeypatch):
    """Lip's check_classes: forget() fails before loading the model; nothing is written."""
    from clipunlearn.methods import get_method
    from clipunlearn.runs import ForgetSettings, forget

    monkeypatch.setattr(cupl, "cupl_file", lambda: None)
    lip = get_method("lip")
    lip(lip.build_config(ablation="cupl-gen")).check_classes(["motorbike"])
    lip(lip.build_config()).check_classes(["zorblax gadget"])  # template prompts need no sentences
    import clipunlearn.runs.pipeline as pipeline

    monkeypatch.setattr(pipeline, "load_clip", lambda *a, **k: pytest.fail("the model was loaded"))
    out = tmp_path / "run"
    with pytest.raises(ClipUnlearnError, match=r"No descriptive sentences for 'airplane'"):
        forget(ForgetSettings(model="mini-rn", dataset="cifar10", classes=["airplane"], out=str(out),
                              data_root=str(data_slice), other_datasets=[], ablation="cupl-gen"))
    assert not out.exists()
