"""The zoo recipe's end-of-epoch checkpoint: a training stopped and resumed gives the weights of an
uninterrupted one; a checkpoint of other settings is refused."""
from __future__ import annotations

import json

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
