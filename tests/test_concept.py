"""Concept requests (``clipunlearn forget --concept NAME``): vocabularies, the user's photo folders, and
the run measured on the user's photos exactly as the dataset route measures the same images."""
from __future__ import annotations

import logging
import shutil

import pytest

from clipunlearn.cli import main
from clipunlearn.data import load_image_set
from clipunlearn.data.vocabularies import image_folder, load_vocabulary
from clipunlearn.errors import ClipUnlearnError, DataError
from clipunlearn.evaluation import Evaluator
from clipunlearn.models import load_clip
from clipunlearn.runs import ForgetSettings, forget, read_results
from clipunlearn.runs.concept import ConceptSettings, build_request, forget_concept

LIP_SMALL = {"n_draws": 2, "retain_steps": 2}


def test_vocabularies(data_slice, tmp_path):
    imagenet = load_vocabulary("imagenet")
    assert len(imagenet.names) == 1000 and len(imagenet.templates) == 80
    assert imagenet.forget_template == "a photo of a {}."
    zoo = load_vocabulary("zoo", str(data_slice))  # the slice holds 4 caltech101 and 3 cifar10 classes
    assert set(zoo.names) == {*load_image_set("caltech101", str(data_slice), "test").classnames,
                              *load_image_set("cifar10", str(data_slice), "test").classnames}
    names = tmp_path / "names.txt"
    names.write_text("# people to keep\nAda Lovelace\n\nAlan Turing\nAda Lovelace\n")
    assert load_vocabulary(str(names)).names == ("Ada Lovelace", "Alan Turing")
    with pytest.raises(ClipUnlearnError, match="Did you mean 'imagenet'"):
        load_vocabulary("imagnet")
    with pytest.raises(DataError, match="does not exist"):
        load_vocabulary(str(tmp_path / "missing.txt"))


def test_image_folder_skips_and_counts_unreadable_files(data_slice, tmp_path):
    photos = load_image_set("caltech101", str(data_slice), "test").paths[:2]
    for i, p in enumerate(photos):
        shutil.copy(p, tmp_path / f"p{i}.jpg")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    (tmp_path / "notes.txt").write_text("ignored")
    found = image_folder(tmp_path, 3, ["a", "b", "c", "d"], "mine")
    assert len(found.images) == 2 and found.images.labels == [3, 3] and len(found.skipped) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no image file"):
        image_folder(empty, 0, ["a"], "x")
    only_broken = tmp_path / "broken"
    only_broken.mkdir()
    (only_broken / "x.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="1 unreadable image file"):
        image_folder(only_broken, 0, ["a"], "x")


def test_a_concept_in_the_vocabulary_is_forgotten_where_it_stands(data_slice, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="clipunlearn")
    logger = logging.getLogger("clipunlearn")  # the CLI may have stopped it propagating to the root
    logger.addHandler(caplog.handler)
    try:
        r = build_request(ConceptSettings("mini-rn", ["motorbike", "Mickey Mouse"], str(tmp_path / "r"),
                                          vocabulary="caltech101", data_root=str(data_slice)))
    finally:
        logger.removeHandler(caplog.handler)
    names = load_image_set("caltech101", str(data_slice), "test").classnames
    assert r.classnames == [*names, "Mickey Mouse"] and r.concepts == [names.index("motorbike"), len(names)]
    assert r.in_vocabulary == ["motorbike"] and "forgotten where it stands" in caplog.text


def test_bad_concept_requests_fail_before_any_compute(data_slice, tmp_path, capsys):
    out = str(tmp_path / "run")
    base = ["forget", "--model", "mini-rn", "--data-root", str(data_slice), "--out", out]
    assert main([*base, "--concept", "x", "--vocabulary", "zoo", "--method", "amns-retain"]) == 2
    assert "pass --images DIR" in capsys.readouterr().err
    assert main([*base, "--concept", "x", "--vocabulary", "nope"]) == 2
    assert "Unknown vocabulary 'nope'" in capsys.readouterr().err
    assert main([*base, "--images", str(tmp_path)]) == 2
    assert "add --concept" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def motorbike_folder(data_slice, tmp_path_factory):
    """The slice's caltech101 motorbike test images as a plain folder (no labels)."""
    images = load_image_set("caltech101", str(data_slice), "test")
    folder = tmp_path_factory.mktemp("my-photos")
    for i, p in enumerate(p for p, y in zip(images.paths, images.labels) if y == images.class_index("motorbike")):
        shutil.copy(p, folder / f"{i:03d}.jpg")
    return folder


@pytest.mark.slow
def test_the_concept_route_measures_what_the_dataset_route_measures(data_slice, motorbike_folder, tmp_path):
    common = dict(method="lip", n_per_class=2, max_epochs=1, generation_max_steps=2, progress=False,
                  options=LIP_SMALL)
    # with the dataset's own vocabulary the request is the dataset route's: identical before and after
    mine = forget_concept(ConceptSettings("mini-rn", ["motorbike"], str(tmp_path / "concept"), vocabulary="caltech101",
                                          images=str(motorbike_folder), data_root=str(data_slice), **common))
    theirs = forget(ForgetSettings(model="mini-rn", dataset="caltech101", classes=["motorbike"],
                                   out=str(tmp_path / "dataset"), data_root=str(data_slice), other_datasets=[],
                                   retrieval=False, template_change=False, **common))
    assert mine["target_before"] == theirs["target_before"] and mine["target_after"] == theirs["target_after"]
    assert mine["measured"]["concept images"]["n"] == 6 and mine["measured"]["concept images"]["skipped"] == 0
    # with the zoo vocabulary: the same images measured independently, with the original and the run's model
    zoo = forget_concept(ConceptSettings("mini-rn", ["motorbike"], str(tmp_path / "zoo"), vocabulary="zoo",
                                         images=str(motorbike_folder), data_root=str(data_slice), **common))
    vocab = load_vocabulary("zoo", str(data_slice))
    images = load_image_set("caltech101", str(data_slice), "test")
    images = images.subset([images.class_index("motorbike")])
    images.labels = [list(vocab.names).index("motorbike")] * len(images)
    images.classnames = list(vocab.names)
    for when, weights in (("before", None), ("after", str(tmp_path / "zoo" / "model.safetensors"))):
        top1 = Evaluator(load_clip("mini-rn", weights=weights), progress=False).evaluate(images, vocab.templates).top1
        assert zoo[f"target_{when}"] == pytest.approx(top1), when
    r = read_results(tmp_path / "zoo")
    assert r.raw["task"] == "concept" and r.raw["vocabulary"]["name"] == "zoo"
    report = (tmp_path / "zoo" / "report.md").read_text()
    assert "share of your photos called" in report and "Only synthetic" not in report


def test_without_photos_the_report_says_only_synthetic_images_were_checked(data_slice, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["forget", "--model", "mini-rn", "--concept", "Mickey Mouse", "--vocabulary", "caltech101",
                 "--data-root", str(data_slice), "--out", str(out), "-n", "2", "--max-steps", "2", "--max-epochs", "1",
                 "--set", "n_draws=2", "--set", "retain_steps=2", "--quiet"])
    assert code == 0
    printed = capsys.readouterr().out
    assert printed.startswith("Only synthetic images of the concept were checked")
    lines = (out / "report.md").read_text().splitlines()
    assert lines[2].startswith("**Only synthetic images of the concept were checked**")
    assert "synthetic images of the concept called by it" in "\n".join(lines)
