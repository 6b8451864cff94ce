"""clipunlearn merge: the models of several forget runs merged into one (CVPR'25 App. A.2)."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from clipunlearn.cli import main
from clipunlearn.errors import ClipUnlearnError, RunExistsError, WeightsError
from clipunlearn.models import load_clip
from clipunlearn.runs import ForgetSettings, forget
from clipunlearn.runs.merge import merge_runs


def _two_runs(root, data_slice, save_model: str = "full"):
    for name, classes in (("a", ["airplane"]), ("b", ["bird"])):
        forget(ForgetSettings(model="mini-rn", dataset="cifar10", classes=classes, out=str(root / name),
                              data_root=str(data_slice), other_datasets=[], method="amns-retain", max_epochs=1,
                              progress=False, retrieval=False, template_change=False,
                              options={"lr": 1e-3}, save_model=save_model))
    return root / "a", root / "b"


@pytest.fixture(scope="module")
def two_runs(data_slice, tmp_path_factory):
    return _two_runs(tmp_path_factory.mktemp("merge"), data_slice)


@pytest.mark.parametrize("how", ["mean", "sum"])
def test_merge_adds_the_mean_or_the_sum_of_the_runs_changes(two_runs, tmp_path, how):
    out = tmp_path / "merged.safetensors"
    merge_runs(list(two_runs), out, how)
    original = load_clip("mini-rn").model.state_dict()
    a, b = (load_file(str(r / "model.safetensors")) for r in two_runs)
    merged = load_file(str(out))
    changed = [k for k in original if original[k].is_floating_point() and not torch.equal(a[k], original[k])]
    assert changed
    for k in changed:
        delta = (a[k] - original[k]) + (b[k] - original[k])
        expected = original[k] + (delta / 2 if how == "mean" else delta)
        assert torch.allclose(merged[k], expected, atol=1e-6), k
    assert set(merged) == set(original)


def test_merge_refuses_what_cannot_be_merged(two_runs, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    with pytest.raises(ClipUnlearnError, match="at least two"):
        merge_runs([two_runs[0]], out)
    with pytest.raises(ClipUnlearnError, match="not a run folder"):
        merge_runs([two_runs[0], tmp_path], out)
    other = tmp_path / "other"
    shutil.copytree(two_runs[1], other)
    results = json.loads((other / "results.json").read_text())
    results["settings"]["model"] = "mini-vit"
    (other / "results.json").write_text(json.dumps(results))
    with pytest.raises(ClipUnlearnError, match="different models"):
        merge_runs([two_runs[0], other], out)
    out.write_bytes(b"x")
    with pytest.raises(RunExistsError):
        merge_runs(list(two_runs), out)
    assert out.read_bytes() == b"x"  # never overwritten unasked
    assert main(["merge", str(two_runs[0]), str(two_runs[1]), "--out", str(out)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["merge", str(two_runs[0]), str(two_runs[1]), "--out", str(out), "--overwrite"]) == 0
    assert "merged 2 runs" in capsys.readouterr().out


@pytest.fixture(scope="module")
def changed_runs(data_slice, tmp_path_factory):
    """The runs of ``two_runs`` again, saving only the tensors they changed."""
    return _two_runs(tmp_path_factory.mktemp("merge-changed"), data_slice, "changed")


def test_a_run_saves_only_its_changed_tensors_and_loads_whole(two_runs, changed_runs, tmp_path):
    original = load_clip("mini-rn").model.state_dict()
    for full, changed in zip(two_runs, changed_runs):
        whole, part = load_file(str(full / "model.safetensors")), load_file(str(changed / "model.safetensors"))
        assert set(part) == {k for k in whole if not torch.equal(whole[k], original[k])}
        assert 0 < len(part) < len(whole)
        model_file = json.loads((changed / "results.json").read_text())["model_file"]
        assert model_file["holds"] == "changed tensors" and model_file["tensors"] == len(part)
        assert json.loads((full / "results.json").read_text())["model_file"]["holds"] == "all tensors"
        loaded = load_clip("mini-rn", weights=changed / "model.safetensors").model.state_dict()
        assert set(loaded) == set(whole) and all(torch.equal(loaded[k], whole[k]) for k in whole)
    merge_runs(list(two_runs), tmp_path / "full.safetensors")
    merge_runs(list(changed_runs), tmp_path / "changed.safetensors")
    a, b = load_file(str(tmp_path / "full.safetensors")), load_file(str(tmp_path / "changed.safetensors"))
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)


def test_changed_tensors_refuse_a_model_they_were_not_made_on(changed_runs, tmp_path):
    delta = changed_runs[0] / "model.safetensors"
    with pytest.raises(WeightsError, match="other than the one loaded under it.*--pretrained"):
        load_clip("mini-rn", pretrained="none", weights=delta)
    with pytest.raises(WeightsError, match="holds a mini-rn model, not mini-vit"):
        load_clip("mini-vit", weights=delta)
    with pytest.raises(ClipUnlearnError, match="save_model 'some' is not one of full, changed"):
        forget(ForgetSettings(model="mini-rn", dataset="cifar10", classes=["cat"], out=str(tmp_path / "r"),
                              other_datasets=[], save_model="some"))
    assert not (tmp_path / "r").exists()
