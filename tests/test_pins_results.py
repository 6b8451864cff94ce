"""The numbers of a run folder against expectations that do not go through the pipeline (issue 35).

A test-only method, registered for the test alone, makes the image tower "blind": its attention pool's
output projection is zeroed and its bias set to the classifier row of one class, so every image gets
that one feature. The model's answers after forgetting are then known by construction (every image is
called that class), and the answers before come from a second evaluation of the starting model, outside
the pipeline. Before and after differ in every column, so a swapped pair, a "before" measured on the
forgotten model or the wrong pair in the Avg. Score shows.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from clipunlearn.data import load_image_set
from clipunlearn.evaluation import Evaluator, zero_shot_classifier
from clipunlearn.methods import Method
from clipunlearn.methods import base as method_registry
from clipunlearn.models import load_clip
from clipunlearn.runs import ForgetSettings, forget, read_results
from clipunlearn.runs.concept import ConceptSettings, build_request, forget_concept
from clipunlearn.runs.results import parse_results
from clipunlearn.training import Trace

BLIND = "pin-blind"
C_PROJ = ("visual.attnpool.c_proj.weight", "visual.attnpool.c_proj.bias")


@dataclass
class _BlindConfig:
    pass


def _blind_method(row: torch.Tensor) -> type[Method]:
    """A method that maps every image to ``row`` (a unit classifier row): after it, the model calls every
    image of that dataset the row's class, and every image of another dataset one and the same class."""

    class Blind(Method):
        name = BLIND
        title = "test only: every image becomes one class's text embedding"
        config_cls = _BlindConfig
        presets = {"default": {}, "paper": {}}

        def run(self, ctx):
            proj = ctx.clip.model.visual.attnpool.c_proj
            with torch.no_grad():
                proj.weight.zero_()
                proj.bias.copy_(row.to(proj.bias))
            return Trace(steps=[{"epoch": 0, "kept": None}, {"epoch": 1, "kept": True}], stopped_because="blinded",
                         changed_tensors=list(C_PROJ), kept_any_step=True)

    return Blind


def _top1(logits: np.ndarray, labels: np.ndarray, rows: np.ndarray) -> float:
    return float((logits[rows].argmax(1) == labels[rows]).mean())


def _hand_avg_score(target, others):
    """WACV'25 Eq. 10 written out: (AF/BF of the target + Σ max(0, (BF − AF) / BF)) / (N + 1)."""
    (tb, ta) = target
    return (ta / tb + sum(max(0.0, (b - a) / b) for b, a in others)) / (len(others) + 1)


def test_a_class_run_writes_and_reads_each_columns_before_and_after(data_slice, tmp_path, monkeypatch):
    root = str(data_slice)
    caltech, cifar = load_image_set("caltech101", root, "test"), load_image_set("cifar10", root, "test")
    original = load_clip("mini-rn")
    face = caltech.class_index("face")
    row = zero_shot_classifier(original, caltech.classnames, list(caltech.templates))[face]
    monkeypatch.setitem(method_registry._METHODS, BLIND, _blind_method(row))

    # before: the starting model evaluated again here, outside the pipeline
    ev = Evaluator(original, progress=False, workers=0)
    cal, cif = ev.evaluate(caltech), ev.evaluate(cifar)
    y = np.asarray(caltech.labels)
    moto = caltech.class_index("motorbike")
    before = {"target": _top1(cal.logits, y, np.flatnonzero(y == moto)),
              "other": _top1(cal.logits, y, np.flatnonzero(y != moto)),
              "cifar10": _top1(cif.logits, np.asarray(cifar.labels), np.arange(len(cifar)))}
    # after, by construction: every caltech101 image is called "face", every cifar10 image one class
    # (the slice holds 6 images of each class: 6 of the 18 other caltech101 images, 6 of 18 cifar10 images)
    after = {"target": 0.0, "other": 6 / 18, "cifar10": 6 / 18}
    assert all(before[k] != after[k] for k in before), "the fixture must tell before from after in every column"

    out = tmp_path / "run"
    results = forget(ForgetSettings(model="mini-rn", dataset="caltech101", classes=["motorbike"], out=str(out),
                                    data_root=root, other_datasets=["cifar10"], method=BLIND, retrieval=False,
                                    template_change=False, progress=False))
    written = json.loads((out / "results.json").read_text())
    assert written == json.loads(json.dumps(results))
    assert (written["target_before"], written["target_after"]) == pytest.approx((before["target"], after["target"]))
    assert (written["other_classes_before"], written["other_classes_after"]) == pytest.approx(
        (before["other"], after["other"]))
    assert written["datasets"] == {"cifar10": {"before": pytest.approx(before["cifar10"]),
                                               "after": pytest.approx(after["cifar10"])}}
    assert written["per_target"] == {"motorbike": {"before": pytest.approx(before["target"]), "after": 0.0}}
    # the model file is the model the "after" was measured on
    reloaded = Evaluator(load_clip("mini-rn", weights=str(out / "model.safetensors")), progress=False, workers=0)
    assert reloaded.evaluate(cifar).top1 == pytest.approx(after["cifar10"])

    r = read_results(out)
    assert (r.target.before, r.target.after) == pytest.approx((before["target"], after["target"]))
    assert (r.other_classes.before, r.other_classes.after) == pytest.approx((before["other"], after["other"]))
    assert (r.datasets["cifar10"].before, r.datasets["cifar10"].after) == pytest.approx(
        (before["cifar10"], after["cifar10"]))
    assert r.per_target["motorbike"].change == pytest.approx(-before["target"])
    assert [name for name, _ in r.columns] == ["target", "other_classes", "cifar10"]
    # the Avg. Score of exactly these pairs, each (before, after)
    expected = _hand_avg_score((before["target"], after["target"]),
                               [(before["other"], after["other"]), (before["cifar10"], after["cifar10"])])
    assert r.avg_score == pytest.approx(expected) and r.avg_score_excluded == []


def _folder(images, classes: list[str], dest):
    dest.mkdir()
    keep = {images.class_index(c) for c in classes}
    for i, (p, y) in enumerate(zip(images.paths, images.labels)):
        if y in keep:
            shutil.copy(p, dest / f"{i:03d}.jpg")
    return dest


def test_a_concept_run_measures_before_on_the_starting_model(data_slice, tmp_path, monkeypatch):
    """The concept route: "before" is the starting model's, "after" the blind model's (known by construction),
    and the run's score is of exactly those pairs."""
    root = str(data_slice)
    caltech = load_image_set("caltech101", root, "test")
    photos = _folder(caltech, ["motorbike"], tmp_path / "photos")
    keep = _folder(caltech, ["face", "leopard"], tmp_path / "keep")
    settings = dict(vocabulary="caltech101", images=str(photos), retain_images=str(keep), data_root=root,
                    other_datasets=["cifar10"], method=BLIND, progress=False)
    request = build_request(ConceptSettings("mini-rn", ["motorbike"], str(tmp_path / "unused"), **settings))
    original = load_clip("mini-rn")
    templates = list(request.vocabulary.templates)
    face = request.classnames.index("face")
    row = zero_shot_classifier(original, request.classnames, templates)[face]
    monkeypatch.setitem(method_registry._METHODS, BLIND, _blind_method(row))

    ev = Evaluator(original, progress=False, workers=0)
    concept = request.classnames.index("motorbike")
    called = float((ev.evaluate(request.images.images, templates).logits.argmax(1) == concept).mean())
    retain_top1 = ev.evaluate(request.retain.images, templates).logits.argmax(1)
    cifar_before = ev.evaluate(load_image_set("cifar10", root, "test")).top1
    # after: every photo is called "face": none by the concept, the retain photos agree where they were "face"
    agreement = float((retain_top1 == face).mean())
    assert called > 0 and 0 < agreement < 1 and cifar_before != 1 / 3

    results = forget_concept(ConceptSettings("mini-rn", ["motorbike"], str(tmp_path / "run"), **settings))
    assert (results["target_before"], results["target_after"]) == pytest.approx((called, 0.0))
    assert (results["other_classes_before"], results["other_classes_after"]) == pytest.approx((1.0, agreement))
    assert (results["datasets"]["cifar10"]["before"], results["datasets"]["cifar10"]["after"]) == pytest.approx(
        (cifar_before, 1 / 3))
    r = read_results(tmp_path / "run")
    assert (r.target.before, r.target.after) == pytest.approx((called, 0.0))
    assert r.avg_score == pytest.approx(_hand_avg_score((called, 0.0), [(cifar_before, 1 / 3), (1.0, agreement)]))


def _raw(version: int | None) -> dict:
    """A results.json with every before different from its after (and from every other figure)."""
    r = {"method": "lip", "preset": "paper", "ablation": None, "model": {"arch": "mini-rn"}, "dataset": "caltech101",
         "classes": ["motorbike", "leopard"], "target_before": 0.91, "target_after": 0.12,
         "per_target": {"motorbike": {"before": 0.93, "after": 0.14}, "leopard": {"before": 0.89, "after": 0.10}},
         "other_classes_before": 0.81, "other_classes_after": 0.72,
         "datasets": {"cifar10": {"before": 0.61, "after": 0.53}, "food101": {"before": 0.44, "after": 0.47}},
         "avg_score": 0.173, "avg_score_excluded": ["stanford_cars"], "synthetic_acc_before": 0.97,
         "synthetic_acc_after": 0.05, "epochs": 3}
    if version is not None:
        r["schema_version"] = version
    return r


@pytest.mark.parametrize("version", [None, 2])
def test_the_reader_keeps_each_before_and_after_where_it_was_written(version):
    r = parse_results(_raw(version))
    assert r.schema_version == (version or 1)
    assert (r.target.before, r.target.after) == (0.91, 0.12)
    assert {c: (v.before, v.after) for c, v in r.per_target.items()} == {"motorbike": (0.93, 0.14),
                                                                         "leopard": (0.89, 0.10)}
    assert (r.other_classes.before, r.other_classes.after) == (0.81, 0.72)
    assert {d: (v.before, v.after) for d, v in r.datasets.items()} == {"cifar10": (0.61, 0.53), "food101": (0.44, 0.47)}
    assert (r.synthetic_acc.before, r.synthetic_acc.after) == (0.97, 0.05)
    assert r.avg_score == 0.173 and r.avg_score_excluded == ["stanford_cars"] and r.epochs == 3
    assert r.other_classes.change == pytest.approx(0.72 - 0.81) and r.datasets["food101"].change == pytest.approx(0.03)
    assert [(n, ba.before) for n, ba in r.columns] == [("target", 0.91), ("other_classes", 0.81), ("cifar10", 0.61),
                                                       ("food101", 0.44)]
