"""The audit's attacks (``audit/attacks.py``) on hand-made cases whose answers are known by construction
(issue 35): which images each attack reads, which model's figure goes where, the best attack chosen, the
seeds handed on, and each refusal's whole message.

A case here is a stand-in holding, per split, the labels and, per model, the features or logits an attack
reads; a model is a stand-in whose image tower is a small linear map. Expected figures are worked out by
hand in the comments (or, for a seeded draw or a ranking, by a loop written out in the test). No real model
is loaded, so each test takes milliseconds; the audits of a trained run are in test_audit.py."""
from __future__ import annotations

import io
import itertools
import json
import math
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.metrics import roc_curve
from torchvision import transforms as T

from clipunlearn.audit import attacks
from clipunlearn.audit.attacks import (
    AUGMENTATIONS,
    SYNONYMS_FILE,
    augmentation,
    augmented_pixels,
    imagenet_templates,
    images,
    is_zoo_run,
    mia,
    oracle,
    probe,
    prompts,
    prototype,
    relearning,
    synonyms,
    weights,
)
from clipunlearn.audit.relearning import Attack
from clipunlearn.data import CHANGED_TEMPLATES
from clipunlearn.errors import ClipUnlearnError, DataError


class Case:
    """What the attacks read of an :class:`AuditCase`, given by hand: per split the labels; per model and
    split the features or logits; the class weights from ``classifier(name, templates)``. Attributes an
    attack reads besides (test and train images, models, relearning settings) are passed as keywords."""

    def __init__(self, labels: dict[str, list[int]], classnames: list[str], targets: list[int], **kw: Any):
        self._labels = {k: np.asarray(v) for k, v in labels.items()}
        self.classnames, self.targets = classnames, targets
        self.features_of: dict[str, dict[str, Any]] = kw.pop("features", {})
        self.logits_of: dict[str, dict[str, Any]] = kw.pop("logits", {})
        self.weights = kw.pop("classifier", None)
        self.models = kw.pop("models", {name: None for name in (self.features_of or self.logits_of)})
        self.seed, self.template = kw.pop("seed", 0), kw.pop("template", "a photo of a {}.")
        self.run = kw.pop("run", SimpleNamespace(model="mini-rn", pretrained="default", weights=None, dataset="hand",
                                                 raw={}))
        self.train = kw.pop("train", True)
        self.needed: list[str] = []
        self.__dict__.update(kw)

    def labels(self, split: str = "test") -> np.ndarray:
        return self._labels[split]

    def is_target(self, split: str = "test") -> np.ndarray:
        return np.isin(self._labels[split], self.targets)

    def features(self, name: str, split: str = "test") -> torch.Tensor:
        return torch.as_tensor(np.asarray(self.features_of[name][split], dtype=np.float32))

    def logits(self, name: str, split: str = "test") -> np.ndarray:
        return np.asarray(self.logits_of[name][split], dtype=np.float64)

    def classifier(self, name: str, templates: tuple[str, ...] | None = None) -> Any:
        return self.weights(name, templates)

    def target_names(self) -> list[str]:
        return [self.classnames[c] for c in self.targets]

    def need_train(self, what: str) -> Any:
        self.needed.append(what)
        return self.train


class Images:
    """A split's images: image ``i`` is ``values[i]`` (any object the model's transform takes)."""

    def __init__(self, values: list[Any]):
        self.values, self.loaded = values, []

    def load(self, i: int) -> Any:
        self.loaded.append(i)
        return self.values[i]


# --- small pieces ---------------------------------------------------------------------------------------------

def test_accuracy_is_the_share_of_images_whose_best_class_is_their_label():
    feats = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.2]])
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # three classes: x, y and −x
    assert attacks._accuracy(feats, w, np.array([0, 0, 2])) == pytest.approx(2 / 3)  # called 0, 1, 2
    assert attacks._accuracy(feats[:1], w, np.array([1])) == 0.0
    assert math.isnan(attacks._accuracy(feats[:0], w, np.array([], dtype=int)))


def test_an_undefined_score_is_written_as_none():
    assert attacks._finite(float("nan")) is None
    assert attacks._finite(0.25) == 0.25 and attacks._finite(0.0) == 0.0


def test_synonyms_are_matched_as_cupl_matches_and_none_is_an_empty_list():
    shipped = json.loads(SYNONYMS_FILE.read_text(encoding="utf-8"))
    assert synonyms("SCOTCH_terrier") == shipped["Scotch terrier"] == ["Scottish terrier", "Scottie",
                                                                         "Aberdeen terrier"]
    assert synonyms("car-side") == shipped["car side"]
    assert synonyms("no such class") == []


def test_the_imagenet_templates_are_open_clips_eighty():
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = imagenet_templates()
    assert len(templates) == 80 and templates[0] == "a bad photo of a {}."
    assert [t.format("dog") for t in templates] == [make("dog") for make in OPENAI_IMAGENET_TEMPLATES]


def test_each_augmentation_has_its_settings():
    crop = augmentation("crop", 7)
    assert type(crop) is T.RandomResizedCrop
    assert (tuple(crop.size), crop.scale, crop.antialias) == ((7, 7), (0.35, 1.0), True)
    flip = augmentation("flip", 7)
    assert type(flip) is T.RandomHorizontalFlip and flip.p == 1.0
    colour = augmentation("colour", 7)
    assert type(colour) is T.ColorJitter
    assert [*colour.brightness, *colour.contrast, *colour.saturation, *colour.hue] == pytest.approx(
        [0.6, 1.4, 0.6, 1.4, 0.6, 1.4, -0.1, 0.1])
    with pytest.raises(ClipUnlearnError) as e:
        augmentation("blur", 7)
    assert str(e.value) == "Unknown augmentation 'blur'. Known: crop, flip, colour, jpeg30."


def _noise(seed: int, size: tuple[int, int] = (16, 16), mode: str = "RGB") -> Image.Image:
    channels = len(mode)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels, mode)


def _jpeg_by_hand(im: Image.Image, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    im.convert("RGB").save(buf, "JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))


def test_jpeg30_is_a_quality_30_round_trip_to_rgb():
    im = _noise(0, mode="RGBA")
    out = augmentation("jpeg30", 16)(im)
    assert out.mode == "RGB" and out.size == (16, 16)
    assert np.array_equal(np.asarray(out), _jpeg_by_hand(im, 30))
    assert not np.array_equal(np.asarray(out), _jpeg_by_hand(im, 31))  # the quality shows on noise


def test_augmented_pixels_are_seeded_once_per_call_and_leave_the_global_generator_alone():
    photos = [_noise(i, (12, 10)) for i in range(3)]
    to_pixels = T.ToTensor()
    case = Case({"test": [0, 0, 1]}, ["a", "b"], [0], test=Images(photos),
                models={"original": SimpleNamespace(image_transform=lambda: to_pixels, image_size=8)})
    rows = np.array([2, 0])
    state = torch.get_rng_state()
    crop = augmented_pixels(case, rows, "crop", 3)
    assert torch.equal(torch.get_rng_state(), state)
    with torch.random.fork_rng(devices=[]):  # by hand: one seed, then the rows in order
        torch.manual_seed(3)
        by_hand = T.RandomResizedCrop(8, scale=(0.35, 1.0), antialias=True)
        expected = torch.stack([to_pixels(by_hand(photos[2])), to_pixels(by_hand(photos[0]))])
    assert crop.shape == (2, 3, 8, 8) and torch.equal(crop, expected)
    assert not torch.equal(crop, augmented_pixels(case, rows, "crop", 4))
    assert torch.equal(augmented_pixels(case, rows, None, 3), torch.stack([to_pixels(photos[2]), to_pixels(photos[0])]))
    assert torch.equal(augmented_pixels(case, rows, "flip", 3),
                       torch.stack([to_pixels(photos[2]).flip(-1), to_pixels(photos[0]).flip(-1)]))


def test_pixels_are_loaded_from_the_split_asked_for_through_the_originals_transform():
    case = Case({"test": [0]}, ["a"], [0], test=Images([torch.tensor(1.0), torch.tensor(2.0), torch.tensor(3.0)]),
                train=Images([torch.tensor(10.0), torch.tensor(20.0)]),
                models={"original": SimpleNamespace(image_transform=lambda: (lambda x: 2 * x)),
                        "forgotten": SimpleNamespace(image_transform=lambda: (lambda x: -x))})
    assert attacks._load_pixels(case, "test", [2, 0]).tolist() == [6.0, 2.0] and case.needed == []
    assert attacks._load_pixels(case, "train", [1]).tolist() == [40.0]
    assert case.needed == ["relearning attack"]


def test_cupl_descriptions_come_with_their_source_and_a_class_none_describes_has_none(tmp_path, monkeypatch):
    from clipunlearn.synthetic.cupl import ENV_VAR, SOURCE_ENV

    path = tmp_path / "descriptions.json"
    path.write_text(json.dumps({"zorblax": ["A zorblax is blue.", "A zorblax hums."]}))
    monkeypatch.setenv(ENV_VAR, str(path))
    assert attacks._cupl("Zorblax") == (["A zorblax is blue.", "A zorblax hums."], SOURCE_ENV)
    assert attacks._cupl("a class no one describes") == ([], "")


# --- prompts -----------------------------------------------------------------------------------------------------

#: the test features, (a, 1, 0, 0): class 0 (motorbike) is called itself when gain · a > 1 (the gain of its class
#: weight, the other rows being unit), class 1 (zorb) when gain · a < 1; class 3's images are not read
PROMPT_FEATS = [[4, 1, 0, 0], [3, 1, 0, 0], [2, 1, 0, 0], [0.5, 1, 0, 0], [0.25, 1, 0, 0], [3, 1, 0, 0],
                [0, 0, 0, 1], [0, 0, 0, 1]]
PROMPT_LABELS = [0, 0, 0, 0, 1, 1, 3, 3]
TPL1, TPL2, TPL3 = CHANGED_TEMPLATES
#: the gain of class 0's weight per model and prompt family. Over the six target images (ratios a: 4, 3, 2,
#: 0.5 of class 0 and 0.25, 3 of class 1): gain 1 → 3 + 1 right (4/6), 0.4 → 2 + 1 (3/6), 0.3 → 1 + 2 (3/6),
#: 0.2 → 0 + 2 (2/6)
FAMILY_GAINS = {"original": {"run": 1.0, "imagenet": 1.0, TPL1: 1.0, TPL2: 0.4, TPL3: 0.2},
                "forgotten": {"run": 0.2, "imagenet": 0.3, TPL1: 0.2, TPL2: 0.2, TPL3: 0.4},
                "oracle": {"run": 0.2, "imagenet": 0.2, TPL1: 0.2, TPL2: 0.2, TPL3: 0.2}}
#: the gain of the class-0 row made from a synonym's or the descriptions' prompts. Over class 0's four images
#: alone (ratios 4, 3, 2, 0.5): gain 1 → 3/4, 0.4 → 2/4, 0.3 → 1/4, 0.2 → 0, 3 → 4/4
SENTENCES = ["a motorbike has two wheels.", "a motorbike has an engine.", "a motorbike has handlebars."]
ROW_GAINS = {("a photo of a motorcycle.",): {"original": 1.0, "forgotten": 0.4, "oracle": 0.2},
             ("a photo of a dirt bike: off-road.",): {"original": 1.0, "forgotten": 0.3, "oracle": 0.2},
             tuple(SENTENCES): {"original": 1.0, "forgotten": 3.0, "oracle": 0.3}}


def _gain_weights(gain: float) -> torch.Tensor:
    w = torch.eye(4)
    w[0, 0] = gain
    return w


def _prompt_case(monkeypatch, family_gains=FAMILY_GAINS, row_gains=ROW_GAINS) -> Case:
    def classifier(name, templates):
        key = ("run" if templates is None else "imagenet" if tuple(templates) == imagenet_templates()
               else templates[0] if len(templates) == 1 else None)
        return _gain_weights(family_gains[name][key])

    shipped = {"motorbike": ["motorcycle", "dirt bike: off-road"], "car side": ["automobile"]}  # a colon, too
    monkeypatch.setattr(attacks, "synonyms", lambda name: shipped.get(name, []))
    monkeypatch.setattr(attacks, "_cupl", lambda name: (SENTENCES, "shipped") if name == "motorbike" else ([], ""))
    monkeypatch.setattr(attacks, "_prompt_row",
                        lambda clip, prompts: torch.tensor([row_gains[tuple(prompts)][clip.name], 0.0, 0.0, 0.0]))
    models = {name: SimpleNamespace(name=name) for name in ("original", "forgotten", "oracle")}
    # car side, a target without test images (a concept run's second concept), comes first: it is passed over
    return Case({"test": PROMPT_LABELS}, ["motorbike", "zorb", "car side", "tree"], [2, 0, 1], models=models,
                features={name: {"test": PROMPT_FEATS} for name in models}, classifier=classifier)


def test_each_prompt_family_is_scored_per_model_and_the_best_is_the_forgotten_models(monkeypatch):
    r = prompts(_prompt_case(monkeypatch))

    def acc(original: float, forgotten: float, oracle: float) -> dict[str, Any]:
        return {"original": pytest.approx(original), "forgotten": pytest.approx(forgotten),
                "oracle": pytest.approx(oracle)}

    cupl = {"family": "cupl", "prompt": "3 descriptions (shipped)", "class": "motorbike",
            "accuracy": acc(0.75, 1.0, 0.25)}
    assert r["families"] == [
        {"family": "run template", "prompt": "a photo of a {}.", "class": None, "accuracy": acc(4 / 6, 2 / 6, 2 / 6)},
        {"family": "imagenet-80", "prompt": "80 ImageNet templates (ensemble)", "class": None,
         "accuracy": acc(4 / 6, 3 / 6, 2 / 6)},
        {"family": "other template", "prompt": TPL1, "class": None, "accuracy": acc(4 / 6, 2 / 6, 2 / 6)},
        {"family": "other template", "prompt": TPL2, "class": None, "accuracy": acc(3 / 6, 2 / 6, 2 / 6)},
        {"family": "other template", "prompt": TPL3, "class": None, "accuracy": acc(2 / 6, 3 / 6, 2 / 6)},
        {"family": "synonym", "prompt": "a photo of a motorcycle.", "class": "motorbike",
         "accuracy": acc(0.75, 0.5, 0)},
        {"family": "synonym", "prompt": "a photo of a dirt bike: off-road.", "class": "motorbike",
         "accuracy": acc(0.75, 0.25, 0)},
        cupl]
    assert r["best_after"] == cupl and r["before"] == pytest.approx(4 / 6)
    assert r["classes"] == ["car side", "motorbike", "zorb"] and r["synonyms_missing"] == ["zorb"]


def test_the_run_template_is_no_attack_even_where_the_forgotten_model_does_best_under_it(monkeypatch):
    # the forgotten model: 4/6 under the run template, 2/6 under every other template, 0 under the class's prompts
    family_gains = {**FAMILY_GAINS, "forgotten": dict.fromkeys(FAMILY_GAINS["forgotten"], 0.2) | {"run": 1.0}}
    row_gains = {k: {**v, "forgotten": 0.2} for k, v in ROW_GAINS.items()}
    r = prompts(_prompt_case(monkeypatch, family_gains, row_gains))
    assert r["families"][0]["accuracy"]["forgotten"] == pytest.approx(4 / 6)
    # the best of the attacks: four tie at 2/6, and the first of them is named
    best = r["best_after"]
    assert best["family"] == "imagenet-80" and best["accuracy"]["forgotten"] == pytest.approx(2 / 6)


# --- images --------------------------------------------------------------------------------------------------------

@dataclass
class _GainTower:
    """A model whose image feature of pixels (r, 1, 0) is (gain · r, 1, 0): with unit class weights it calls
    them class 0 when gain · r > 1, else class 1."""

    gain: float
    device = torch.device("cpu")
    model = torch.nn.Identity()

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return pixels * torch.tensor([self.gain, 1.0, 1.0])


#: each augmentation's pixels of the class's test images, as their ratios r; the accuracies by hand (gains 1,
#: 0.25, 0.125: original, forgotten, oracle) are in IMAGE_ACCURACY
RATIOS = {"clean": [3, 3, 3, 3], "crop": [5, 3, 3, 0.5], "flip": [6, 6, 2, 2], "colour": [6, 5, 5, 0.5],
          "jpeg30": [12, 12, 12, 2]}
IMAGE_ACCURACY = {"clean": (1.0, 0.0, 0.0), "crop": (0.75, 0.25, 0.0), "flip": (1.0, 0.5, 0.0),
                  "colour": (0.75, 0.75, 0.0), "jpeg30": (1.0, 0.75, 0.75)}
GAINS = {"original": 1.0, "forgotten": 0.25, "oracle": 0.125}


def _precision_by_hand(feats: np.ndarray, labels: list[int], rows: list[int], k: int) -> float:
    """Mean over the queries of the share of their class among the k images nearest (dot product), itself left out."""
    shares = []
    for q in rows:
        ranked = sorted((j for j in range(len(labels)) if j != q), key=lambda j: -float(feats[q] @ feats[j]))
        shares.append(sum(labels[j] == labels[q] for j in ranked[:k]) / k)
    return float(np.mean(shares))


def _image_case(monkeypatch, labels: list[int], seed: int = 5, targets: tuple[int, ...] = (0,)
                ) -> tuple[Case, list[tuple[Any, ...]]]:
    asked: list[tuple[Any, ...]] = []

    def pixels(of, rows, name, seed):
        assert of is case
        asked.append((rows.tolist(), name, seed))
        ratios = RATIOS[name or "clean"]
        return torch.tensor([[ratios[i % len(ratios)], 1.0, 0.0] for i in range(len(rows))])

    monkeypatch.setattr(attacks, "augmented_pixels", pixels)
    rng = np.random.default_rng(0)
    features = {name: {"test": F.normalize(torch.as_tensor(rng.normal(size=(len(labels), 3))), dim=-1).numpy()}
                for name in GAINS}
    case = Case({"test": labels}, ["a", "b", "c"], list(targets), seed=seed, features=features,
                models={name: _GainTower(g) for name, g in GAINS.items()},
                classifier=lambda name, templates: {m: torch.eye(3) for m in GAINS}[name])
    return case, asked


def test_each_augmentation_is_scored_per_model_and_retrieval_reads_the_clean_features(monkeypatch):
    labels = [0] * 4 + [1] * 6 + [2] * 6
    case, asked = _image_case(monkeypatch, labels)
    r = images(case)
    assert asked == [([0, 1, 2, 3], None, 5)] + [([0, 1, 2, 3], a, 5) for a in AUGMENTATIONS]
    assert r["accuracy"] == {a: dict(zip(GAINS, acc)) for a, acc in IMAGE_ACCURACY.items()}
    assert r["before"] == 1.0 and r["n_images"] == 4 and r["seed"] == 5 and r["augmentations"] == list(AUGMENTATIONS)
    # the forgotten model's best: colour and jpeg30 tie at 0.75, and the first in AUGMENTATIONS is named
    assert r["best_after"] == {"augmentation": "colour", "accuracy": dict(zip(GAINS, IMAGE_ACCURACY["colour"]))}
    # 16 images: the 10 nearest of each of the class's 4 images, among the 15 others; chance 3 of 15
    assert r["retrieval"] == {"k": 10, "chance": pytest.approx(3 / 15), "precision": {
        name: pytest.approx(_precision_by_hand(case.features_of[name]["test"], labels, [0, 1, 2, 3], 10))
        for name in GAINS}}


def test_retrieval_among_fewer_than_eleven_images_reads_all_but_the_query_and_none_among_the_class_alone(
        monkeypatch):
    case, _ = _image_case(monkeypatch, [0, 0, 1, 1, 2])
    r = images(case)
    # k = 4: every other image is retrieved, one of them of the class
    assert r["retrieval"] == {"k": 4, "chance": 0.25, "precision": dict.fromkeys(GAINS, 0.25)}
    case, _ = _image_case(monkeypatch, [0, 0])
    r = images(case)
    assert r["retrieval"] is None and r["n_images"] == 2


def test_retrieval_chance_is_the_mean_share_of_each_querys_own_class_among_the_other_images(monkeypatch):
    """Two forgotten classes, 3 and 2 of 10 images: a random ranking gives a query of the first 2 images of its
    class among the 9 others, one of the second 1: chance (3 · 2/9 + 2 · 1/9) / 5 = 8/45, not 4/9 (the
    share of the forgotten classes' images, which a query of one class does not count as its own)."""
    labels = [0, 0, 0, 1, 1, 2, 2, 2, 2, 2]
    case, _ = _image_case(monkeypatch, labels, targets=(0, 1))
    r = images(case)
    assert r["retrieval"]["chance"] == pytest.approx(8 / 45)
    # k = 9: every other image is retrieved, so each model's precision is that chance exactly
    assert r["retrieval"]["k"] == 9 and r["retrieval"]["precision"] == pytest.approx(dict.fromkeys(GAINS, 8 / 45))


# --- probe, prototype --------------------------------------------------------------------------------------------

def test_the_probe_learns_on_each_models_train_features_and_is_scored_on_its_test_features(monkeypatch):
    handed: list[tuple[Any, ...]] = []

    def probe_auc(train_x, train_y, test_x, test_y, seed):
        handed.append((train_x[0, 0], train_y.tolist(), test_x[0, 0], test_y.tolist(), seed))
        return float(test_x[0, 0]) / 10

    monkeypatch.setattr(attacks, "probe_auc", probe_auc)
    features = {"original": {"train": np.full((5, 2), 1.0), "test": np.full((3, 2), 2.0)},
                "forgotten": {"train": np.full((5, 2), 3.0), "test": np.full((3, 2), 4.0)}}
    case = Case({"train": [0, 1, 0, 2, 1], "test": [1, 0, 2]}, ["a", "b", "c"], [0], features=features, seed=3)
    r = probe(case)
    assert handed == [(1.0, [True, False, True, False, False], 2.0, [False, True, False], 3),
                      (3.0, [True, False, True, False, False], 4.0, [False, True, False], 3)]
    assert r == {"auc": {"original": pytest.approx(0.2), "forgotten": pytest.approx(0.4)}, "n_train": 5, "n_test": 3,
                 "n_train_target": 2}
    assert case.needed == ["linear probe"]  # the message of a missing train split names the attack


#: the prototype case: class 0's train images are the zero vector but for one at (1, 0); classes 2 and 5 at
#: (0, 1) and (−1, 0). A prototype of class 0 that holds that one image points along x, one without it is 0.
#: Test images: class 0's at (1, 0.2), class 2's at (0, 1) and one at (1, 0.1), class 5's at (−1, 0).
#: With the image in it, class 0's images are called class 0 (1 of 1) and the odd class-2 image too (others 2/3);
#: without it they are called class 2 (0 of 1) and every other image is right (others 1).
PROTO_TRAIN_LABELS = [0] * 10 + [2] * 5 + [5] * 5
PROTO_TEST_LABELS = [0, 0, 0, 2, 2, 5]
PROTO_TEST = [[1, 0.2], [1, 0.2], [1, 0.2], [0, 1], [1, 0.1], [-1, 0]]
TRUE_IMAGE, PROTO_SEED = 5, 8


def _proto_train(true_image: bool) -> list[list[float]]:
    zeros = [[0.0, 0.0]] * 10
    if true_image:
        zeros[TRUE_IMAGE] = [1.0, 0.0]
    return zeros + [[0.0, 1.0]] * 5 + [[-1.0, 0.0]] * 5


class _Reads:
    """Train features that record the rows each read takes."""

    def __init__(self, features: torch.Tensor, name: str, reads: list[tuple[str, list[int]]]):
        self.features, self.name, self.reads = features, name, reads

    def __getitem__(self, rows: Any) -> torch.Tensor:
        self.reads.append((self.name, [int(r) for r in rows]))
        return self.features[rows]


class _ReadingCase(Case):
    def features(self, name: str, split: str = "test") -> Any:
        got = super().features(name, split)
        return _Reads(got, name, self.reads) if split == "train" else got


def test_prototypes_are_the_first_k_images_of_each_classs_seeded_draw():
    # the draw: default_rng(seed + 1), one permutation per class in class order; with seed 8 the one image of
    # class 0 is drawn among the first five, not first
    gen = np.random.default_rng(PROTO_SEED + 1)
    draw = {c: gen.permutation(np.flatnonzero(np.asarray(PROTO_TRAIN_LABELS) == c)).tolist() for c in (0, 2, 5)}
    assert 1 <= draw[0].index(TRUE_IMAGE) < 5
    features = {"original": {"train": _proto_train(True), "test": PROTO_TEST},
                "forgotten": {"train": _proto_train(False), "test": PROTO_TEST}}
    case = _ReadingCase({"train": PROTO_TRAIN_LABELS, "test": PROTO_TEST_LABELS}, list("abcdef"), [0],
                        features=features, seed=PROTO_SEED, reads=[])
    r = prototype(case)
    assert case.reads == [(m, draw[c][:k]) for k in (1, 5, 10) for m in ("original", "forgotten") for c in (0, 2, 5)]
    assert r == {"ks": [1, 5, 10], "n_images": 3,
                 "accuracy": {"1": {"original": 0.0, "forgotten": 0.0}, "5": {"original": 1.0, "forgotten": 0.0},
                              "10": {"original": 1.0, "forgotten": 0.0}},
                 "others_accuracy": {"1": {"original": 1.0, "forgotten": 1.0},
                                     "5": {"original": pytest.approx(2 / 3), "forgotten": 1.0},
                                     "10": {"original": pytest.approx(2 / 3), "forgotten": 1.0}}}
    assert case.needed == ["prototype attack"]


def test_prototypes_with_no_other_test_image_have_no_others_accuracy():
    features = {"original": {"train": _proto_train(True), "test": PROTO_TEST[:3]}}
    case = Case({"train": PROTO_TRAIN_LABELS, "test": [0, 0, 0]}, list("abcdef"), [0], features=features)
    r = prototype(case)
    assert r["others_accuracy"] == {k: {"original": None} for k in ("1", "5", "10")}
    assert r["accuracy"]["10"] == {"original": 1.0}


# --- relearning ------------------------------------------------------------------------------------------------------

GRID = (Attack.parse("forget-k1 adam tower lr=0.0001"), Attack.parse("related sgd lora lr=0.0001"))
#: each model's curve per attack (readings at steps 0, 1, 2); areas: original 0.9 + 0.8 = 1.7, forgotten
#: 0.55 + 0.375 = 0.925, oracle 0.5 + 0.3 = 0.8
CURVES = {"original": ([0.8, 0.9, 1.0], [0.8, 0.8, 0.8]), "forgotten": ([0.2, 0.6, 0.8], [0.3, 0.4, 0.4]),
          "oracle": ([0.4, 0.5, 0.6], [0.3, 0.3, 0.3])}
ROWS = {"forget-k1": [1], "forget-k5": [1, 0], "forget-k10": [1, 0], "retain": [2, 4], "related": [4, 5, 2]}


class _Curves:
    """The curve cache: ``stored`` by key; what was asked and put is recorded."""

    def __init__(self, stored: dict[str, list[float]]):
        self.stored, self.asked, self.put_, self.locked = stored, [], [], []

    def key(self, mhash: str, case_key: str, attack: Attack, steps: tuple[int, ...], seed: int) -> str:
        return f"{mhash}|{case_key}|{attack.name}|{steps}|{seed}"

    def get(self, key: str) -> list[float] | None:
        self.asked.append(key)
        return self.stored.get(key)

    def put(self, key: str, curve: list[float], what: str) -> None:
        self.put_.append((key, curve, what))

    def lock(self, key: str):
        from contextlib import nullcontext

        self.locked.append(key)
        return nullcontext()


def _relearning_case(monkeypatch, grid, curves, stored=None) -> tuple[Case, list[tuple[Any, ...]]]:
    import clipunlearn.audit.relearning as rl

    computed: list[tuple[Any, ...]] = []

    def relearn_curve(clip, attack, data, test_px, test_y, text, steps, seed, prompts):
        assert data.labels.dtype == torch.long  # from int32 labels
        assert prompts == ["a photo of a a.", "a photo of a b.", "a photo of a c.", "a photo of a d."]  # text attacks'
        computed.append((clip.name, attack.name, data.rows, data.labels.tolist(), data.pixels.tolist(),
                         test_px.tolist(), test_y.tolist(), text, steps, seed))
        return list(curves[clip.name][GRID.index(attack)])

    monkeypatch.setattr(rl, "relearn_curve", relearn_curve)
    def of_the_case(answer: Any):
        return lambda of: answer if of is case else pytest.fail("handed another case")

    monkeypatch.setattr(rl, "draw_rows", of_the_case(ROWS))
    monkeypatch.setattr(rl, "related_classes", of_the_case([2, 1]))
    monkeypatch.setattr(rl, "model_hash", lambda clip: case.hashed.append(clip.name) or f"hash of {clip.name}")
    monkeypatch.setattr(rl, "case_key", of_the_case("case"))
    clock = itertools.count()  # each computed curve takes a third of a CPU second: 0 → 1/3, 1 → 4/3, ...
    monkeypatch.setattr(attacks, "time", SimpleNamespace(process_time=lambda: (lambda n: n // 2 + (n % 2) / 3)(
        next(clock))))
    models = {name: SimpleNamespace(name=name, image_transform=lambda: (lambda x: 2 * x)) for name in curves}
    case = Case({"train": [0, 0, 1, 1, 2, 2], "test": [0, 1, 0, 3]}, ["a", "b", "c", "d"], [0], models=models,
                test=Images([torch.tensor(v) for v in (1.0, 2.0, 3.0, 4.0)]),
                train=Images([torch.tensor(v) for v in (10.0, 20.0, 30.0, 40.0, 50.0, 60.0)]), seed=3,
                relearn_grid=grid, relearn_steps=(2, 1), curve_cache=_Curves(stored or {}),
                classifier=lambda name, t: f"class weights of {name}", hashed=[])
    case._labels["train"] = case._labels["train"].astype(np.int32)
    return case, computed


def test_relearning_runs_each_attack_on_each_model_and_reads_the_cache_for_all_but_the_forgotten(monkeypatch):
    first = "hash of original|case|forget-k1 adam tower lr=0.0001|(2, 1)|3"
    case, computed = _relearning_case(monkeypatch, GRID, CURVES, {first: list(CURVES["original"][0])})
    r = relearning(case)
    k1, related = GRID[0].name, GRID[1].name
    # the train images of each kind and the class's test images (rows 0 and 2), through the original's transform
    one = (k1, [1], [0], [40.0], [2.0, 6.0], [0, 0])
    near = (related, [4, 5, 2], [2, 2, 1], [100.0, 120.0, 60.0], [2.0, 6.0], [0, 0])
    assert computed == [  # the original's first curve came from the cache
        ("original", *near, "class weights of original", (2, 1), 3),
        ("forgotten", *one, "class weights of forgotten", (2, 1), 3),
        ("forgotten", *near, "class weights of forgotten", (2, 1), 3),
        ("oracle", *one, "class weights of oracle", (2, 1), 3), ("oracle", *near, "class weights of oracle", (2, 1), 3)]
    cache = case.curve_cache
    # a miss is asked again under the key's lock (another cell may have written it meanwhile): the original's
    # first curve is a hit (asked once), its second and the oracle's two are misses (asked twice each)
    assert [key.split("|")[0] for key in cache.asked] == ["hash of original"] * 3 + ["hash of oracle"] * 4
    assert cache.locked == [key for key, _, _ in cache.put_]
    assert cache.put_ == [(f"hash of original|case|{related}|(2, 1)|3", list(CURVES["original"][1]), related),
                          (f"hash of oracle|case|{k1}|(2, 1)|3", list(CURVES["oracle"][0]), k1),
                          (f"hash of oracle|case|{related}|(2, 1)|3", list(CURVES["oracle"][1]), related)]
    assert r["curves"] == {m: {k1: list(c[0]), related: list(c[1])} for m, c in CURVES.items()}
    assert r["computed"] == {"original": 1, "forgotten": 2, "oracle": 2}
    assert r["cpu_seconds"] == {"original": 0.33, "forgotten": 0.67, "oracle": 0.67}
    # R = (0.925 − 0.8) / (1.7 − 0.8); against the accuracy-0 floor 0.925 / 1.7
    assert r["score"] == {"R": pytest.approx(0.125 / 0.9), "R_floor": pytest.approx(0.925 / 1.7), "with_oracle": True}
    assert (r["attacks"], r["steps"], r["before"]) == ([k1, related], [0, 1, 2], 0.8)
    assert r["images_used"] == {"forget-k1": 1, "related": 3} and r["related_classes"] == ["c", "b"]
    assert case.needed == ["relearning attack"] * 2  # the train images of each kind
    assert case.hashed == ["original", "oracle"]  # the forgotten model is new each run: never looked up


def test_relearning_without_an_oracle_scores_against_the_floor_and_without_related_data_names_no_class(monkeypatch):
    import clipunlearn.audit.relearning as rl

    curves = {m: CURVES[m] for m in ("original", "forgotten")}
    case, computed = _relearning_case(monkeypatch, GRID[:1], curves)
    monkeypatch.setattr(rl, "related_classes", lambda case: pytest.fail("the related classes were looked up"))
    r = relearning(case)
    assert r["score"] == {"R": None, "R_floor": pytest.approx(0.55 / 0.9), "with_oracle": False}
    assert r["related_classes"] == [] and r["images_used"] == {"forget-k1": 1}
    assert r["computed"] == {"original": 1, "forgotten": 1}


def test_relearning_score_is_none_when_the_oracle_relearns_as_the_original(monkeypatch):
    curves = {**CURVES, "oracle": CURVES["original"]}
    case, _ = _relearning_case(monkeypatch, GRID, curves)
    assert relearning(case)["score"] == {"R": None, "R_floor": pytest.approx(0.925 / 1.7), "with_oracle": True}


# --- weights --------------------------------------------------------------------------------------------------------

class _Net(torch.nn.Module):
    """The class weights (``text``: class 0 along x, class 1 along y), a text-side scalar, an integer buffer and
    an image tower of two bias-free 2×2 linear layers."""

    def __init__(self, first: list[list[float]], second: list[list[float]], bias: float, steps: int):
        super().__init__()
        self.text = torch.nn.Parameter(torch.eye(2))
        self.logit_bias = torch.nn.Parameter(torch.tensor([bias]))
        self.register_buffer("steps", torch.tensor(steps))
        self.visual = torch.nn.Sequential(torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(2, 2, bias=False))
        with torch.no_grad():
            self.visual[0].weight.copy_(torch.tensor(first))
            self.visual[1].weight.copy_(torch.tensor(second))


@dataclass
class _Tower:
    """A Clip as the weight-space attack uses one."""

    model: torch.nn.Module
    device = torch.device("cpu")

    def image_transform(self):
        return lambda x: x

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.visual(pixels)


I2, FLIP_Y = [[1.0, 0.0], [0.0, 1.0]], [[1.0, 0.0], [0.0, -1.0]]


def _weights_case(monkeypatch, forgotten: _Net, labels: list[int], pixels: list[list[float]]) -> tuple[Case, list]:
    import clipunlearn.evaluation

    asked: list[tuple[Any, ...]] = []

    def classifier(clip, classnames, templates):
        asked.append((classnames, templates))
        return F.normalize(clip.model.text.detach(), dim=-1)

    monkeypatch.setattr(clipunlearn.evaluation, "zero_shot_classifier", classifier)
    models = {"original": _Tower(_Net(I2, I2, 2.0, 0)), "forgotten": _Tower(forgotten)}
    case = Case({"test": labels}, ["a", "b"], [0], models=models, seed=2, template="a {}.",
                test=Images([torch.tensor(p) for p in pixels]))
    case._labels["test"] = case._labels["test"].astype(np.int32)
    return case, asked


def _softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def test_the_path_from_the_original_to_the_forgotten_weights_has_the_losses_worked_out_by_hand(monkeypatch):
    """Forgetting took the first layer from I to −I, the second from I to diag(1, −1), and the text-side scalar
    from 2 to 5: the tower maps x to (1 − 2α) · diag(1, 1 − 2α) x at α along the line. Class 0's images, (1, 0),
    go from (1, 0) to (−1, 0) through 0 at α = 1/2; the others, (0, 1), stay at (0, 1) but pass through 0 there
    too (logits 0: loss ln 2, a barrier)."""
    case, asked = _weights_case(monkeypatch, _Net([[-1.0, 0.0], [0.0, -1.0]], FLIP_Y, 5.0, 5), [0, 1, 1, 0],
                                [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]])
    r = weights(case)
    assert r["touched"] == 3 and r["touched_tensors"] == ["logit_bias", "visual.0.weight", "visual.1.weight"]
    # squared distances: 9 (the scalar), 8 (I to −I), 4 (one entry 1 to −1); the original's norm² 4 + 2 + 2
    assert r["l2"] == pytest.approx(math.sqrt(21)) and r["relative_l2"] == pytest.approx(math.sqrt(21 / 8))
    assert r["l2_per_tower"] == {"text": pytest.approx(3.0), "image": pytest.approx(math.sqrt(12))}
    right, wrong, even = _softplus(-100), _softplus(100), math.log(2)  # logit 100 · cos for the class, or 0
    path = r["path"]
    assert path["alphas"] == [0.0, 0.25, 0.5, 0.75, 1.0] and path["n_others"] == 2
    assert path["loss_target"] == pytest.approx([right, right, even, wrong, wrong])
    assert path["loss_others"] == pytest.approx([right, right, even, right, right])
    assert path["acc_target"] == [1.0, 1.0, 1.0, 0.0, 0.0]  # at α = 1/2 the tie goes to the first class: class 0
    assert path["acc_others"] == [1.0, 1.0, 0.0, 1.0, 1.0]
    assert r["barrier_others"] == pytest.approx(even)  # the others' ends are both ~0
    assert asked == [(["a", "b"], ["a {}."])] * 5 and case.needed == []


def _turned(phi: float, alpha: float) -> tuple[float, float]:
    """The direction of (cos φ, sin φ) (φ in degrees) under (1 − α) I + α R, R the −90° rotation: a rotation
    by −θ, tan θ = α / (1 − α), and a scaling that unit features drop."""
    angle = math.radians(phi) - math.atan2(alpha, 1 - alpha)
    return math.cos(angle), math.sin(angle)


def test_the_barrier_is_the_largest_rise_of_the_others_loss_above_the_straight_line_between_its_ends(monkeypatch):
    """The tower's first layer turns from I to the −90° rotation; the other image, at 46° (class 1, along y),
    turns toward class 0 (along x): its loss rises, faster than linearly, from ~0.08."""
    case, _ = _weights_case(monkeypatch, _Net([[0.0, 1.0], [-1.0, 0.0]], I2, 2.0, 0), [0, 1],
                            [[1.0, 0.0], [math.cos(math.radians(46)), math.sin(math.radians(46))]])
    r = weights(case)
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    loss = [_softplus(100 * (x - y)) for x, y in (_turned(46, a) for a in alphas)]  # label 1: logits 100 (x, y)
    assert r["path"]["loss_others"] == pytest.approx(loss, rel=1e-4)
    assert r["path"]["acc_others"] == [1.0, 0.0, 0.0, 0.0, 0.0]  # past 45° after the first step
    assert r["path"]["loss_target"] == pytest.approx([_softplus(-100 * (x - y)) for x, y in
                                                      (_turned(0, a) for a in alphas)], abs=1e-6)
    line = [loss[0] + (loss[-1] - loss[0]) * a for a in alphas]
    assert r["barrier_others"] == pytest.approx(max(e - l for e, l in zip(loss, line)), rel=1e-4)
    assert 0 < loss[0] < loss[1] and r["barrier_others"] > 1


def test_an_unchanged_model_has_no_distance_no_path_and_no_barrier(monkeypatch):
    case, asked = _weights_case(monkeypatch, _Net(I2, I2, 2.0, 5), [0, 1], [[1.0, 0.0], [0.0, 1.0]])
    r = weights(case)
    assert r == {"touched": 0, "touched_tensors": [], "l2": 0.0, "relative_l2": 0.0, "l2_per_tower": {},
                 "path": {"alphas": [0.0, 0.25, 0.5, 0.75, 1.0], "loss_target": [], "loss_others": [],
                          "acc_target": [], "acc_others": [], "n_others": 1},
                 "barrier_others": 0.0}
    assert asked == []
    case, _ = _weights_case(monkeypatch, _Net(I2, I2, 2.0, 5), [0, 0], [[1.0, 0.0], [1.0, 0.0]])
    assert weights(case)["barrier_others"] is None  # no other image: no barrier to read


def test_a_changed_model_without_other_images_has_a_path_on_the_class_alone(monkeypatch):
    case, _ = _weights_case(monkeypatch, _Net(I2, FLIP_Y, 2.0, 0), [0], [[1.0, 0.0]])
    r = weights(case)
    assert r["barrier_others"] is None and r["path"]["loss_others"] == [] and len(r["path"]["loss_target"]) == 5


def test_the_paths_other_images_are_a_seeded_sample_of_300(monkeypatch):
    """302 other images, all right at α = 0 but two at (1, 0) (called class 0: loss 100): the seeded sample
    leaves out two images; one wrong image is in it, one is not, so the mean loss at α = 0 is 100 / 300."""
    others = np.arange(1, 303)
    kept = set(np.random.default_rng(2).choice(others, 300, replace=False).tolist())  # the draw, by hand
    left_out = sorted(set(others.tolist()) - kept)
    bad = {left_out[0], min(kept)}
    pixels = [[1.0, 0.0]] + [[1.0, 0.0] if i in bad else [0.0, 1.0] for i in others]
    case, _ = _weights_case(monkeypatch, _Net(I2, FLIP_Y, 2.0, 0), [0] + [1] * 302, pixels)
    r = weights(case)
    assert r["path"]["n_others"] == 300 and case.test.loaded == [0, *sorted(kept)]  # the class's image, then the draw
    assert r["path"]["loss_others"][0] == pytest.approx((_softplus(100) + 299 * _softplus(-100)) / 300)
    assert r["path"]["acc_others"][0] == pytest.approx(299 / 300)


def test_at_most_fifty_changed_tensors_are_named(monkeypatch):
    import clipunlearn.evaluation

    monkeypatch.setattr(clipunlearn.evaluation, "zero_shot_classifier", lambda clip, names, templates: torch.eye(1))

    class Many(torch.nn.Module):
        def __init__(self, value: float):
            super().__init__()
            self.p = torch.nn.ParameterList([torch.nn.Parameter(torch.tensor([value])) for _ in range(51)])

    case = Case({"test": []}, ["a"], [0], models={"original": _Tower(Many(0.1)), "forgotten": _Tower(Many(1.0))})
    r = weights(case)
    assert r["touched"] == 51 and r["touched_tensors"] == [f"p.{i}" for i in range(50)]
    # 51 changes of 0.9 from an original of norm² 51 · 0.01 (below 1): relative √(51 · 0.81 / 0.51) = 9
    assert r["l2"] == pytest.approx(math.sqrt(51 * 0.81)) and r["relative_l2"] == pytest.approx(9.0)
    assert r["l2_per_tower"] == {"text": pytest.approx(math.sqrt(51 * 0.81))}


# --- membership, oracle ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model, pretrained, weights_file, zoo", [
    ("mini-rn", "default", None, True), ("mini-rn", "zoo", None, True), ("mini-rn", None, None, True),
    ("mini-rn", "none", None, False), ("mini-rn", "openai", None, False),
    ("mini-rn", "default", "w.safetensors", False), ("RN50", "default", None, False)])
def test_a_zoo_run_is_a_zoo_model_with_its_shipped_weights(model, pretrained, weights_file, zoo):
    run = SimpleNamespace(model=model, pretrained=pretrained, weights=weights_file)
    assert is_zoo_run(Case({"test": []}, [], [], run=run)) is zoo


def test_membership_is_not_tested_on_a_model_whose_training_data_is_unknown():
    run = SimpleNamespace(model="mini-rn", pretrained="openai", weights=None)
    assert mia(Case({"test": []}, [], [], run=run)) == {
        "skipped": "mini-rn (openai) is not a zoo model with its shipped weights: its training data is unknown, so "
                   "membership cannot be tested."}


def test_membership_hands_each_models_loss_confidence_and_entropy_to_the_classifier_and_draws_its_roc(monkeypatch):
    import clipunlearn.audit.scores as scores

    margins = {"original": ([3.0, 1.0, 2.0], [0.5, -1.0, 0.0]), "forgotten": ([0.0, 2.5, -0.5], [1.5, 0.25, 3.5])}
    logits = {m: {"train": [[a, 0.0] for a in tr] + [[9.0, 0.0]], "test": [[a, 0.0] for a in te] + [[9.0, 0.0]]}
              for m, (tr, te) in margins.items()}
    case = Case({"train": [0, 0, 0, 1], "test": [0, 0, 0, 1]}, ["a", "b"], [0], logits=logits, seed=4)
    handed, intervals = [], []
    monkeypatch.setattr(attacks, "classifier_auc", lambda member, feats, seed: handed.append((member, feats, seed))
                        or 0.625)
    real = scores.threshold_auc_intervals
    monkeypatch.setattr(scores, "threshold_auc_intervals", lambda member, losses, reference, seed: intervals.append(
        (member.tolist(), reference, seed)) or real(member, losses, reference, seed=seed))
    r = mia(case)
    member = [1, 1, 1, 0, 0, 0]  # the class's 3 train images, then its 3 test images
    assert (r["n_members"], r["n_non_members"]) == (3, 3)
    for (m, (tr, te)), (got_member, feats, seed) in zip(margins.items(), handed):
        p = 1 / (1 + np.exp(-np.array(tr + te)))  # two classes: the class's probability is sigmoid(margin)
        loss, entropy = -np.log(p), -(p * np.log(p) + (1 - p) * np.log(1 - p))
        assert got_member.tolist() == member and seed == 4
        assert feats == pytest.approx(np.stack([loss, p, entropy], 1))
        fpr, tpr, _ = roc_curve(member, -loss)
        assert r["roc"][m] == {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
        assert r["mean_loss"][m] == pytest.approx({"members": loss[:3].mean(), "non_members": loss[3:].mean()})
    assert r["classifier_auc"] == {"original": 0.625, "forgotten": 0.625}
    # the original: members' losses (margins 3, 1, 2) all below the non-members' (0.5, −1, 0): AUC 1; the
    # forgotten: of members 0, 2.5, −0.5 against 1.5, 0.25, 3.5 only 2.5 has the larger margin, twice: 2 of 9
    assert r["threshold_auc"] == {"original": 1.0, "forgotten": pytest.approx(2 / 9)}
    assert intervals == [(member, None, 4)] and "minus_oracle" not in r
    assert set(r["threshold_auc_interval"]) == {"original", "forgotten"}
    assert r["bootstrap"] == {"resamples": 2000, "level": 0.95, "seed": 4}


def test_the_oracle_attack_needs_an_oracle_and_says_how_to_train_one():
    with pytest.raises(ClipUnlearnError) as e:
        oracle(Case({"test": [0]}, ["a"], [0], logits={"original": {}, "forgotten": {}}))
    assert str(e.value) == ("The oracle attack needs an oracle model. Pass --oracle FILE (train one with `clipunlearn "
                            "zoo train mini-rn --exclude DATASET:CLASS`).")


def _called(predicted: list[int], classes: int = 4) -> list[list[float]]:
    """Logits ln 3 for the predicted class and 0 for the others: probability 1/2 there, 1/6 elsewhere. Two rows
    with different predictions are KL ln 3 / 3 apart (1/2 · ln 3 + 1/6 · ln 1/3); the same prediction, 0."""
    return [[math.log(3) if c == k else 0.0 for c in range(classes)] for k in predicted]


def test_the_oracle_attack_compares_each_class_and_the_outputs_with_the_oracles():
    predicted = {"original": [0, 0, 2, 3, 3], "forgotten": [2, 2, 2, 3, 0], "oracle": [2, 0, 2, 3, 3]}
    case = Case({"test": [0, 0, 2, 3, 3]}, ["a", "b", "c", "d"], [0],
                logits={m: {"test": _called(p)} for m, p in predicted.items()})
    r = oracle(case)
    assert r["per_class"] == {  # b has no test image
        "a": {"original": 1.0, "forgotten": 0.0, "oracle": 0.5, "gap": -0.5, "target": True},
        "c": {"original": 1.0, "forgotten": 1.0, "oracle": 1.0, "gap": 0.0, "target": False},
        "d": {"original": 1.0, "forgotten": 0.5, "oracle": 1.0, "gap": -0.5, "target": False}}
    assert r["mean_abs_gap"] == pytest.approx(1 / 3)
    apart = math.log(3) / 3
    # forgotten vs oracle: rows 1 (of the class) and 4 differ; original vs oracle: row 0 (of the class)
    assert r["kl_to_oracle"] == {
        "forgotten": {"all": pytest.approx(2 / 5 * apart), "target": pytest.approx(apart / 2),
                      "others": pytest.approx(apart / 3)},
        "original": {"all": pytest.approx(apart / 5), "target": pytest.approx(apart / 2), "others": pytest.approx(0.0)}}
    assert r["per_dataset"] == {} and r["logit_scale"] == 100.0


@pytest.mark.parametrize("labels, empty", [([0, 0], "others"), ([1, 1], "target")])
def test_the_oracle_kl_of_a_side_without_images_is_none(labels, empty):
    case = Case({"test": labels}, ["a", "b"], [0], logits={m: {"test": _called([0, 1], 2)}
                                                           for m in ("original", "forgotten", "oracle")})
    kl = oracle(case)["kl_to_oracle"]
    assert kl["forgotten"][empty] is None and kl["original"][empty] is None
    assert kl["forgotten"]["all"] == pytest.approx(0.0)


def test_the_oracle_is_measured_on_each_other_dataset_the_run_measured(monkeypatch):
    import clipunlearn.data

    loaded = []

    def load_image_set(name, root, split):
        loaded.append((name, root, split))
        if name == "food101":
            raise DataError("No folder for food101. Add it.")
        return SimpleNamespace(name=name)

    top1 = {"cifar10": 0.55, "/data/folder": 0.25}
    evaluated = []
    monkeypatch.setattr(clipunlearn.data, "load_image_set", load_image_set)
    run = SimpleNamespace(model="mini-rn", raw={"datasets": {
        "cifar10": {"before": 0.6, "after": 0.5}, "dogs and cats": {"before": 0.9, "after": 0.8},
        "food101": {"before": 0.4, "after": 0.3}, "/data/folder": {"before": 0.7, "after": None}}})
    case = Case({"test": [0]}, ["a"], [0], run=run, data_root="/root", evaluator=lambda name: evaluated.append(name)
                or SimpleNamespace(evaluate=lambda images: SimpleNamespace(top1=top1[images.name])))
    assert attacks._oracle_datasets(case) == {
        "cifar10": {"original": 0.6, "forgotten": 0.5, "oracle": 0.55, "gap": pytest.approx(-0.05)},
        "dogs and cats": {"skipped": "a column of the subgroup setting, not a dataset"},
        "food101": {"skipped": "No folder for food101. Add it."},
        "/data/folder": {"original": 0.7, "forgotten": None, "oracle": 0.25, "gap": None}}
    assert loaded == [(n, "/root", "test") for n in ("cifar10", "food101", "/data/folder")]
    assert evaluated == ["oracle", "oracle"]
    case.run = SimpleNamespace(raw={})
    assert attacks._oracle_datasets(case) == {}


class _Batches:
    """A text and an image tower that record the size of each batch they encode: prompt i embeds as
    (i + 1) along x plus 1 along y; image rows embed as their own first two pixels' values."""

    device = torch.device("cpu")

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.model = torch.nn.Linear(1, 1)

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        self.sizes.append(len(prompts))
        return torch.tensor([[float(p.split()[-1]) + 1.0, 1.0] for p in prompts], dtype=torch.float64)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.sizes.append(len(pixels))
        return pixels.flatten(1)[:, :2] * 3.0


def test_a_prompt_row_is_the_renormalised_mean_of_unit_prompts_read_256_at_a_time():
    clip = _Batches()
    prompts = [f"a photo of {i}" for i in range(300)]
    row = attacks._prompt_row(clip, prompts)
    assert clip.sizes == [256, 44] and row.dtype == torch.float32
    units = [(i + 1.0, 1.0) for i in range(300)]
    units = [(x / (x * x + 1.0) ** 0.5, y / (x * x + 1.0) ** 0.5) for x, y in units]
    mean = (sum(u[0] for u in units) / 300, sum(u[1] for u in units) / 300)
    norm = (mean[0] ** 2 + mean[1] ** 2) ** 0.5
    assert row.tolist() == pytest.approx([mean[0] / norm, mean[1] / norm], rel=1e-6)


def test_images_are_encoded_128_at_a_time_into_unit_rows():
    clip = _Batches()
    pixels = torch.zeros(300, 1, 1, 2)
    pixels[:, 0, 0, 0], pixels[:, 0, 0, 1] = 3.0, 4.0
    feats = attacks._encode(clip, pixels)
    assert clip.sizes == [128, 128, 44]
    assert feats.shape == (300, 2) and feats[0].tolist() == pytest.approx([0.6, 0.8])


class _Autocast(_Batches):
    """Records whether bf16 autocast on the CPU is on while it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.autocast: list[bool] = []

    def encode_text(self, prompts: list[str]) -> torch.Tensor:
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return super().encode_text(prompts)

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        self.autocast.append(torch.is_autocast_enabled("cpu"))
        return super().encode_image(pixels)


def test_prompt_rows_and_image_features_are_computed_under_the_active_precision_on_the_models_device():
    from clipunlearn.precision import Precision, computing

    clip = _Autocast()
    with computing(Precision.BF16, "cpu"):
        attacks._prompt_row(clip, ["a photo of 1"])
        attacks._encode(clip, torch.ones(2, 1, 1, 2))
    attacks._prompt_row(clip, ["a photo of 1"])
    assert clip.autocast == [True, True, False]


def test_cells_audited_side_by_side_compute_a_shared_curve_once(tmp_path):
    """Two cells audited at once (a worker pool) ask for the original's curve of the same key: the second
    waits on the key's lock and reads what the first wrote, instead of computing it again."""
    import threading
    import time

    from clipunlearn.audit.relearning import CurveCache

    cache = CurveCache(tmp_path / "curves")
    calls: list[int] = []

    def compute() -> list[float]:
        calls.append(1)
        time.sleep(0.3)  # long enough for the other thread to reach the lock
        return [0.9, 0.5, 0.7]

    got: list[list[float]] = []
    threads = [threading.Thread(target=lambda: got.append(attacks._cached_curve(cache, "k", "sgd", compute)))
               for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and got == [[0.9, 0.5, 0.7]] * 2
    assert attacks._cached_curve(cache, "k", "sgd", compute) == [0.9, 0.5, 0.7] and len(calls) == 1
    assert json.loads((tmp_path / "curves" / "k.json").read_text())["attack"] == "sgd"


def test_without_a_cache_folder_each_curve_is_computed():
    from clipunlearn.audit.relearning import CurveCache

    calls: list[int] = []

    def compute() -> list[float]:
        calls.append(1)
        return [float(len(calls))]

    cache = CurveCache(None)
    assert attacks._cached_curve(cache, "k", "sgd", compute) == [1.0]
    assert attacks._cached_curve(cache, "k", "sgd", compute) == [2.0]
