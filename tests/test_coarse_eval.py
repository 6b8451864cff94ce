"""Coarse zero-shot accuracy (evaluation.coarse, `clipunlearn eval --coarse`), against a plain loop."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from clipunlearn.cli import main
from clipunlearn.data import load_image_set
from clipunlearn.data.subgroups import coarse_vocabulary
from clipunlearn.errors import DataError
from clipunlearn.evaluation import Evaluator
from clipunlearn.evaluation.coarse import carried_label, coarse_accuracy, coarse_request

# the data slice: caltech101 face, leopard, motorbike, accordion; cifar10 airplane, automobile, bird
VOCAB = ["airplane", "car", "bird", "person", "motorbike", "dog"]
EXPECTED = {"airplane": ["cifar10:airplane"], "car": ["cifar10:automobile"], "bird": ["cifar10:bird"],
            "person": ["caltech101:face"], "motorbike": ["caltech101:motorbike"]}


def test_a_class_carries_a_label_by_superclass_or_by_name():
    vocab = coarse_vocabulary()
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
    ("dgo,person", "Unknown coarse label 'dgo'"),  # a typo, with a suggestion
    ("bird,fish", "No class of caltech101 carries any"),  # known labels, none of them in the dataset
    ("person,face,car", "'face' of caltech101 carries 2"),  # caltech101's face is a person, and is named face
])
def test_eval_coarse_refuses_what_cannot_be_asked(data_slice, tmp_path, capsys, labels, message):
    args = ["eval", "--model", "mini-rn", "--pretrained", "none", "--datasets", "caltech101", "--data-root",
            str(data_slice), "--workers", "0", "--quiet", "--coarse", labels]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    if labels.startswith("dgo"):
        assert "Did you mean 'dog'" in err


def test_a_zoo_card_holds_what_eval_measures(data_slice, tmp_path, capsys):
    """`zoo card` on given weights: its figures are `eval --coarse`'s on the same weights, and the card names the
    weights' hash; the card is never overwritten unasked."""
    from clipunlearn.io import file_hash
    from clipunlearn.models import load_clip
    from clipunlearn.models.zoo import weights_path

    torch.manual_seed(0)
    random_weights = tmp_path / "random.safetensors"
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in load_clip("mini-rn", "none").model.state_dict().items()},
              str(random_weights))
    for weights in (str(random_weights),):  # not the shipped ones: a card that measured those would differ
        card_file, eval_file = tmp_path / f"{Path(weights).stem}.card.json", tmp_path / f"{Path(weights).stem}.eval.json"
        common = ["--data-root", str(data_slice), "--workers", "0", "--quiet"]
        assert main(["zoo", "card", "mini-rn", "--weights-file", weights, "--datasets", "caltech101,cifar10",
                     "--out", str(card_file), *common]) == 0
        assert main(["eval", "--model", "mini-rn", "--pretrained", weights, "--datasets", "caltech101,cifar10",
                     "--coarse", "--json", str(eval_file), *common]) == 0
        card, measured = json.loads(card_file.read_text()), json.loads(eval_file.read_text())
        assert card["weights"] == file_hash(weights) != file_hash(weights_path("mini-rn"))
        assert card["model"] == "mini-rn"
        assert card["fine"] == {d: {"top1": pytest.approx(measured[d]["top1"]), "n": measured[d]["n"]}
                                for d in ("caltech101", "cifar10")}
        assert card["coarse"]["mean"] == pytest.approx(measured["coarse"]["mean"])
        assert {k: v["top1"] for k, v in card["coarse"]["labels"].items()} == pytest.approx(
            {k: v["top1"] for k, v in measured["coarse"]["labels"].items()})
    printed = capsys.readouterr().out
    assert "coarse top-1 among 14 labels" in printed
    assert main(["zoo", "card", "mini-rn", "--datasets", "cifar10", "--out", str(card_file), *common]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["zoo", "card", "mini-rn", "--weights-file", str(tmp_path / "nope.safetensors"), *common]) == 2
    assert "No weights file" in capsys.readouterr().err


def test_every_shipped_card_names_the_shipped_weights():
    """A card measured on older weights is caught: each zoo model ships a card whose hash is its weights', over
    the eight datasets the zoo trains on, and `clipunlearn models` prints it."""
    from clipunlearn.data import zoo_datasets
    from clipunlearn.io import file_hash
    from clipunlearn.models.zoo import ZOO_MODELS, read_card, weights_path

    for name in ZOO_MODELS:
        card = read_card(name)
        assert card is not None, f"no card ships with {name}: clipunlearn zoo card {name} --data-root DATA"
        assert card["model"] == name and card["weights"] == file_hash(weights_path(name)), name
        assert list(card["fine"]) == zoo_datasets()
        assert card["fine_mean"] == pytest.approx(np.mean([v["top1"] for v in card["fine"].values()]))
        assert card["coarse"]["vocabulary"] == coarse_vocabulary()
        assert card["coarse"]["mean"] == pytest.approx(np.mean([v["top1"] for v in card["coarse"]["labels"].values()]))


def test_models_lists_the_zoo_with_its_cards(capsys):
    from clipunlearn.models.zoo import ZOO_MODELS, read_card

    assert main(["models"]) == 0
    lines = capsys.readouterr().out.splitlines()
    for name in ZOO_MODELS:
        line = next(x for x in lines if x.split()[0] == name)
        assert f"coarse {read_card(name)['coarse']['mean']:.3f}" in line
        assert main(["models", "--card", name]) == 0
        assert f"{read_card(name)['fine']['caltech101']['top1']:.3f}" in capsys.readouterr().out
    assert main(["models", "--card", "mini-rx"]) == 2
    assert "mini-rn" in capsys.readouterr().err
