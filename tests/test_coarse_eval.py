"""Coarse zero-shot accuracy (evaluation.coarse, `clipunlearn eval --coarse`), against a plain loop."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipunlearn.cli import main
from clipunlearn.data import load_image_set
from clipunlearn.errors import DataError
from clipunlearn.evaluation import Evaluator
from clipunlearn.evaluation.coarse import carried_label, coarse_accuracy, coarse_request, default_vocabulary

# the data slice: caltech101 face, leopard, motorbike, accordion; cifar10 airplane, automobile, bird
VOCAB = ["airplane", "car", "bird", "person", "motorbike", "dog"]
EXPECTED = {"airplane": ["cifar10:airplane"], "car": ["cifar10:automobile"], "bird": ["cifar10:bird"],
            "person": ["caltech101:face"], "motorbike": ["caltech101:motorbike"]}


def test_a_class_carries_a_label_by_superclass_or_by_name():
    vocab = default_vocabulary()
    assert carried_label("stanford_dogs", "Leonberg", vocab) == "dog"  # dog -> mammal -> animal
    assert carried_label("stanford_cars", "2012 Toyota Camry Sedan", vocab) == "car"  # sedan -> car
    assert carried_label("cifar10", "cat", vocab) == "cat"  # a "feline" in the table, "cat" by name
    assert carried_label("caltech101", "accordion", vocab) is None
    assert carried_label("my_folder", "Dog", ["dog", "cat"]) == "dog"  # outside the table: by name only
    with pytest.raises(DataError, match="Leonberg.*two right answers"):
        carried_label("stanford_dogs", "Leonberg", ["dog", "mammal", "car"])


def reference(clip, data_root, vocab):
    """One image at a time: its class's label by hand (EXPECTED), the argmax over the vocabulary's prompts."""
    tf = clip.image_transform()
    with torch.no_grad():
        w = F.normalize(torch.cat([clip.encode_text([f"a photo of a {x}."]) for x in vocab]), dim=-1)
        out = {}
        for label, classes in EXPECTED.items():
            right = []
            for item in classes:
                dataset, classname = item.split(":")
                images = load_image_set(dataset, data_root, "test")
                for i in (j for j, y in enumerate(images.labels) if images.classnames[y] == classname):
                    x = tf(images.load(i)).unsqueeze(0)
                    f = F.normalize(clip.model.encode_image(clip.normalize(x)), dim=-1)[0]
                    right.append(int((f @ w.T).argmax()) == vocab.index(label))
            out[label] = (float(np.mean(right)), len(right))
    return out


def test_coarse_accuracy_matches_a_plain_loop(data_slice, mini_rn_random):
    request = coarse_request(["caltech101", "cifar10"], str(data_slice), "test", VOCAB)
    got = coarse_accuracy(Evaluator(mini_rn_random, batch_size=5, workers=0, progress=False), request)
    assert {x.label: list(x.classes) for x in got.labels} == EXPECTED
    assert got.without_images == ["dog"]
    ref = reference(mini_rn_random, str(data_slice), VOCAB)
    assert {x.label: (pytest.approx(x.top1), x.n) for x in got.labels} == ref
    assert got.mean == pytest.approx(np.mean([top1 for top1, _ in ref.values()]))
    assert len({round(t, 6) for t, _ in ref.values()}) > 1  # the labels differ, so a swap would show


def test_eval_coarse_from_the_cli(data_slice, tmp_path, capsys):
    out = tmp_path / "eval.json"
    args = ["eval", "--model", "mini-rn", "--pretrained", "none", "--datasets", "caltech101,cifar10",
            "--data-root", str(data_slice), "--workers", "0", "--quiet"]
    assert main([*args, "--coarse", ",".join(VOCAB), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == {"caltech101", "cifar10", "coarse"}
    coarse = data["coarse"]
    assert coarse["vocabulary"] == VOCAB and coarse["without_images"] == ["dog"]
    assert {k: v["classes"] for k, v in coarse["labels"].items()} == EXPECTED
    for label, v in coarse["labels"].items():
        line = next(x for x in printed.splitlines() if x.startswith(label + " "))
        assert f"{v['top1']:.3f}" in line.split() and str(v["n"]) in line.split()
    assert f"{coarse['mean']:.3f}" in next(x for x in printed.splitlines() if x.startswith("mean"))


@pytest.mark.parametrize("labels, message", [
    ("dog", "at least two labels"),
    ("unicorn,dragon", "No class of caltech101 carries any"),
    ("person,face,car", "'face' of caltech101 carries 2"),  # caltech101's face is a person, and is named face
])
def test_eval_coarse_refuses_what_cannot_be_asked(data_slice, tmp_path, capsys, labels, message):
    args = ["eval", "--model", "mini-rn", "--pretrained", "none", "--datasets", "caltech101", "--data-root",
            str(data_slice), "--workers", "0", "--quiet", "--coarse", labels]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
