"""The zoo recipe's end-of-epoch checkpoint: a training stopped and resumed gives the weights of an
uninterrupted one; a checkpoint of other settings is refused."""
from __future__ import annotations

import json
from collections import Counter

import pytest
import torch
from safetensors.torch import load_file

from clipunlearn.cli import main
from clipunlearn.errors import ClipUnlearnError
from clipunlearn.zoo.train import ZooRecipe, checkpoint_path, train_zoo_model

RECIPE = ZooRecipe(epochs=3, batch_size=16, warmup_steps=2)
DATASETS = ["caltech101", "cifar10"]


def _train(data_slice, out, recipe=RECIPE, **kw):
    return train_zoo_model("mini-rn", str(data_slice), out, recipe, log=lambda *_: None, datasets=DATASETS,
                           checkpoint=checkpoint_path(out), **kw)


def test_stopped_and_resumed_training_gives_the_uninterrupted_weights(data_slice, tmp_path):
    whole = tmp_path / "whole.safetensors"
    record = _train(data_slice, whole)
    assert record["resumed_at_epochs"] == [] and len(record["epoch_loss"]) == 3
    assert not checkpoint_path(whole).exists()

    parts = tmp_path / "parts.safetensors"
    assert _train(data_slice, parts, stop_after=1) == {}
    assert checkpoint_path(parts).exists() and not parts.exists()
    assert _train(data_slice, parts, stop_after=2) == {}
    resumed = _train(data_slice, parts)
    assert resumed["resumed_at_epochs"] == [1, 2]
    assert resumed["steps"] == record["steps"] == 3 * 3  # 42 images in batches of 16
    assert resumed["epoch_loss"] == record["epoch_loss"]
    assert not checkpoint_path(parts).exists()
    a, b = load_file(str(whole)), load_file(str(parts))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test_top1"] == record["test_top1"]


def test_a_checkpoint_of_other_settings_is_refused_unless_restart(data_slice, tmp_path, monkeypatch):
    from clipunlearn.zoo import train

    out = tmp_path / "m.safetensors"
    assert _train(data_slice, out, stop_after=1) == {}
    other = ZooRecipe(epochs=4, batch_size=16, warmup_steps=2)
    with monkeypatch.context() as m:  # refused before any image is decoded
        m.setattr(train, "decode_split", lambda *a, **k: pytest.fail("decoded before refusing"))
        with pytest.raises(ClipUnlearnError, match=r"epochs 3 -> 4.*--restart"):
            _train(data_slice, out, recipe=other, stop_after=1)
    assert checkpoint_path(out).exists()  # refused: nothing lost
    assert _train(data_slice, out, recipe=other, restart=True, stop_after=1) == {}  # replaced: now a 4-epoch one
    with pytest.raises(ClipUnlearnError, match=r"epochs 4 -> 3"):
        _train(data_slice, out, stop_after=1)

    checkpoint_path(out).write_bytes(b"not a checkpoint")
    with pytest.raises(ClipUnlearnError, match="cannot be read.*--restart"):
        _train(data_slice, out)


def test_cli_resumes_from_the_checkpoint_beside_out(data_slice, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    recipe = ZooRecipe(epochs=2, batch_size=256, warmup_steps=200)  # the CLI's recipe with --epochs 2
    assert train_zoo_model("mini-rn", str(data_slice), out, recipe, log=lambda *_: None, datasets=DATASETS,
                           checkpoint=checkpoint_path(out), stop_after=1) == {}
    args = ["zoo", "train", "mini-rn", "--data-root", str(data_slice), "--datasets", ",".join(DATASETS),
            "--out", str(out)]
    capsys.readouterr()
    assert main([*args, "--epochs", "3"]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]  # the CLI's one-line error
    assert line.startswith("clipunlearn: ") and "epochs 2 -> 3" in line and "--restart" in line
    assert main([*args, "--epochs", "2"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert json.loads(out.with_suffix(".json").read_text())["resumed_at_epochs"] == [1]
    assert not checkpoint_path(out).exists()


# --- caption policies (issue 36): the shipped recipes unchanged; mini-rn-h's captions at three levels ----
def test_the_shipped_recipes_keep_their_settings():
    """mini-rn's and mini-vit's recipes serialise as their committed records say: their checkpoints, their
    retraining and the oracle ids (a hash of asdict(recipe)) are untouched by the caption policy."""
    from dataclasses import asdict
    from pathlib import Path

    from clipunlearn.zoo.train import CLASS_CAPTIONS, RECIPES, _training_settings

    docs = Path(__file__).resolve().parents[1] / "docs"
    for name in ("mini-rn", "mini-vit"):
        recorded = json.loads((docs / f"zoo-{name}-training.json").read_text())["recipe"]
        assert asdict(RECIPES[name]) == recorded
        assert RECIPES[name].captions == CLASS_CAPTIONS
        assert set(_training_settings(name, RECIPES[name], DATASETS, [])) == {"model", "recipe", "datasets", "excluded"}
    hierarchical = asdict(RECIPES["mini-rn-h"])
    assert hierarchical["captions"] == (("class", 0.5), ("class+super", 0.3), ("super", 0.2))
    assert {k: v for k, v in hierarchical.items() if k not in ("captions", "epochs")} == \
        {k: v for k, v in asdict(RECIPES["mini-rn"]).items() if k != "epochs"}


def test_class_captions_and_loss_are_drawn_as_the_shipped_models_were():
    """The class-only policy makes the captions the old loop made, from the same random state, and the
    same loss and gradient: the shipped weights depend on it."""
    import random

    import torch.nn.functional as F

    from clipunlearn.zoo.train import (
        CLASS_CAPTIONS,
        TRAIN_TEMPLATES,
        TrainClass,
        contrastive_loss,
        draw_level,
        step_captions,
    )

    own = ("a photo of a {}, a type of flower.",)
    names = ["rose", "tree mallow", "rose", "gazania"]  # a name twice: two classes, two captions, as ever
    old, new = random.Random(3), random.Random(3)
    expected = [old.choice(TRAIN_TEMPLATES + own).format(n) for n in names]  # the loop before issue 36
    level = draw_level(CLASS_CAPTIONS, new)
    prompts, truth = step_captions(level, [TrainClass(n, TRAIN_TEMPLATES + own) for n in names], new, hierarchy=False)
    assert level == "class" and prompts == expected and new.getstate() == old.getstate()
    assert torch.equal(truth, torch.eye(4, dtype=torch.bool))

    target = torch.tensor([0, 1, 1, 2, 3, 0])
    logits = torch.randn(6, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    onehot = F.one_hot(target, 4).float()
    loss_i2t = F.cross_entropy(logits, target)  # the loop before issue 36
    loss_t2i = -(F.log_softmax(logits.T, dim=-1) * (onehot.T / onehot.sum(0, keepdim=True).T)).sum(-1).mean()
    before = 0.5 * (loss_i2t + loss_t2i)
    (grad_before,) = torch.autograd.grad(before, logits)
    now = contrastive_loss(logits, truth[target].float())
    (grad_now,) = torch.autograd.grad(now, logits)
    assert torch.equal(now, before) and torch.equal(grad_now, grad_before)


def test_the_policy_draws_levels_with_their_shares():
    import random

    from clipunlearn.zoo.train import CLASS_CAPTIONS, HIERARCHY_CAPTIONS, draw_level

    draws = [draw_level(HIERARCHY_CAPTIONS, random.Random(0)) for _ in range(3)]
    assert len(set(draws)) == 1  # seeded
    rng = random.Random(0)
    counts = Counter(draw_level(HIERARCHY_CAPTIONS, rng) for _ in range(20000))
    for level, share in HIERARCHY_CAPTIONS:
        assert abs(counts[level] / 20000 - share) < 0.015, (level, counts)
    rng, state = random.Random(0), random.Random(0).getstate()
    assert draw_level(CLASS_CAPTIONS, rng) == "class" and rng.getstate() == state  # one level: no draw


def test_step_captions_mark_every_true_caption_as_a_positive():
    import random

    from clipunlearn.data.superclasses import superclasses
    from clipunlearn.zoo.train import TRAIN_TEMPLATES, TrainClass, step_captions

    batch = [("stanford_dogs", "Leonberg"), ("stanford_dogs", "Newfoundland"), ("cifar10", "dog"),
             ("stanford_cars", "2012 Toyota Camry Sedan"), ("caltech101", "yin yang")]
    classes = [TrainClass(c, TRAIN_TEMPLATES, superclasses(d, c)) for d, c in batch]

    prompts, truth = step_captions("super", classes, random.Random(0), hierarchy=True)
    named = ["dog", "mammal", "animal", "sedan", "car", "vehicle", "yin yang"]  # one caption a concept
    assert len(prompts) == len(named) and all(n in p for n, p in zip(named, prompts))
    assert truth.tolist() == [[1, 1, 1, 0, 0, 0, 0]] * 3 + [[0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 0, 0, 0, 1]]

    prompts, truth = step_captions("class", classes, random.Random(0), hierarchy=True)
    assert truth[:, 2].tolist() == [True, True, True, False, False]  # "a photo of a dog." is true of the breeds
    assert truth[0].tolist() == [True, False, True, False, False]  # a Leonberg is no Newfoundland

    prompts, truth = step_captions("class+super", classes, random.Random(0), hierarchy=True)
    assert prompts[0].startswith(("a photo of a Leonberg, a type of ", "a picture of a Leonberg, a kind of ",
                                  "an image of a Leonberg, which is a ", "Leonberg, a "))
    assert any(s in prompts[0] for s in ("dog", "mammal", "animal")) and "yin yang" in prompts[4]


def test_identical_captions_are_not_negatives():
    """Two dog images and two captions "a photo of a dog." (equal embeddings): every caption true of every
    image, the loss gives no gradient; read as one caption per image (the class-only loss), it would
    push each image away from the other's identical caption."""
    from clipunlearn.zoo.train import contrastive_loss

    logits = torch.zeros(2, 2, requires_grad=True)
    (masked,) = torch.autograd.grad(contrastive_loss(logits, torch.ones(2, 2)), logits)
    (naive,) = torch.autograd.grad(contrastive_loss(logits, torch.eye(2)), logits)
    assert torch.equal(masked, torch.zeros(2, 2)) and naive.abs().sum() > 0


@pytest.mark.parametrize("captions, pattern", [
    ((("class", 0.5), ("supper", 0.5)), r"unknown: \['supper'\]"),
    ((("class", 0.5), ("class", 0.5)), r"at most once"),
    ((("class", 0.7), ("super", 0.2)), r"adding up to 1"),
    ((("class", 1.2), ("super", -0.2)), r"positive shares"),
])
def test_a_bad_caption_policy_is_refused_before_any_work(captions, pattern, tmp_path):
    from clipunlearn.zoo.train import HierarchyRecipe

    with pytest.raises(ClipUnlearnError, match=pattern):
        train_zoo_model("mini-rn-h", str(tmp_path), None, HierarchyRecipe(captions=captions), log=lambda *_: None)


def test_the_hierarchy_recipe_trains_at_every_level_and_resumes(data_slice, tmp_path):
    from clipunlearn.zoo.train import HierarchyRecipe

    recipe = HierarchyRecipe(epochs=2, batch_size=16, warmup_steps=2)
    whole = tmp_path / "whole.safetensors"
    record = train_zoo_model("mini-rn-h", str(data_slice), whole, recipe, log=lambda *_: None, datasets=DATASETS,
                             checkpoint=checkpoint_path(whole))
    assert record["steps"] == 6 and sum(record["caption_steps"].values()) == 6
    assert all(record["caption_steps"][level] for level in ("class", "class+super", "super")), record["caption_steps"]
    parts = tmp_path / "parts.safetensors"
    assert train_zoo_model("mini-rn-h", str(data_slice), parts, recipe, log=lambda *_: None, datasets=DATASETS,
                           checkpoint=checkpoint_path(parts), stop_after=1) == {}
    resumed = train_zoo_model("mini-rn-h", str(data_slice), parts, recipe, log=lambda *_: None, datasets=DATASETS,
                              checkpoint=checkpoint_path(parts))
    assert resumed["resumed_at_epochs"] == [1] and resumed["caption_steps"] == record["caption_steps"]
    assert resumed["epoch_loss"] == record["epoch_loss"]
    a, b = load_file(str(whole)), load_file(str(parts))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_cli_trains_the_hierarchy_recipe(data_slice, tmp_path, capsys):
    from safetensors import safe_open

    out = tmp_path / "h.safetensors"
    assert main(["zoo", "train", "mini-rn-h", "--data-root", str(data_slice), "--datasets", ",".join(DATASETS),
                 "--out", str(out), "--epochs", "1"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["model"] == "mini-rn-h" and record["recipe"]["captions"][0] == ["class", 0.5]
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["clipunlearn_arch"] == "mini-rn-h"
    capsys.readouterr()
    assert main(["zoo", "train", "mini-rn-hh", "--data-root", str(data_slice), "--out", str(tmp_path / "x")]) == 2
    assert "Did you mean 'mini-rn-h'" in capsys.readouterr().err
