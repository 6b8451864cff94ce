"""The style setting (CVPR'25 §5.4): image styles by transform, styled image sets, the shipped setting,
and the model's preparation (fine-tuned on the styled images first), cached by content."""
from __future__ import annotations

import copy

import numpy as np
import torch
from PIL import Image

from clipunlearn.data import load_image_set
from clipunlearn.data.styles import STYLES, apply_style
from clipunlearn.data.subgroups import column_images, get_setting


def _photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))


def test_each_style_is_a_deterministic_transform():
    photo = _photo()
    for name in STYLES:
        a, b = apply_style(name, photo), apply_style(name, photo)
        assert a.mode == "RGB" and a.size == photo.size and np.array_equal(np.asarray(a), np.asarray(b))
        assert not np.array_equal(np.asarray(a), np.asarray(photo))
    assert set(np.unique(np.asarray(apply_style("drawing", photo)))) <= {0, 255}  # black and white
    assert len(np.unique(np.asarray(apply_style("poster", photo)))) <= 4  # 2 bits a channel
    sketch = np.asarray(apply_style("sketch", photo))
    assert (sketch[..., 0] == sketch[..., 1]).all()  # grey lines


def test_the_style_setting_and_its_images(data_slice):
    s = get_setting("style-motorbike-sketch")
    assert s.kind == "style" and s.prepare == "fine-tune-styles"
    assert [g.style for g in s.forget] == ["sketch"] and [g.style for g in s.retain] == ["poster", "drawing"]
    assert {g.name for g in (*s.forget, *s.retain)} == {"motorbike"} and s.keep[0].subgroups[0].style is None
    retain = column_images(s.retain, s.vocabulary, str(data_slice), "test", "retain")
    plain = load_image_set("caltech101", str(data_slice), "test")
    n = plain.labels.count(plain.class_index("motorbike"))
    assert retain.styles == ["poster"] * n + ["drawing"] * n
    assert retain.paths[:n] == retain.paths[n:]  # the same photos, in two styles
    first = np.asarray(retain.load(0))
    assert np.array_equal(first, np.asarray(apply_style("poster", Image.open(retain.paths[0]).convert("RGB"))))
    assert retain.subset([retain.labels[0]]).styles == retain.styles
    unstyled = column_images(s.keep[0].subgroups, s.vocabulary, str(data_slice), "test", "photos")
    assert unstyled.styles is None and unstyled.fingerprint() != retain.fingerprint()


def test_the_prepared_model_is_fine_tuned_once_and_cached(mini_rn_random, data_slice, tmp_path):
    from clipunlearn.runs.subgroup import prepare_model

    s = get_setting("style-motorbike-sketch")
    first = copy.deepcopy(mini_rn_random)
    info = prepare_model(first, s, str(data_slice), str(tmp_path))
    assert info["cached"] is False and info["images"] == 4 * 6  # three styles and the photos, 6 train images each
    assert info["anchor_images"] == 3 * 2  # two of each other class of the slice
    assert any(not torch.equal(a, b) for a, b in zip(first.model.state_dict().values(),
                                                     mini_rn_random.model.state_dict().values()))
    second = copy.deepcopy(mini_rn_random)
    again = prepare_model(second, s, str(data_slice), str(tmp_path))
    assert again["cached"] is True and again["key"] == info["key"]
    assert all(torch.equal(a, b) for a, b in zip(first.model.state_dict().values(), second.model.state_dict().values()))
    assert prepare_model(copy.deepcopy(mini_rn_random), get_setting("in-domain-flower"), None, None) is None


def test_a_style_run_starts_from_the_prepared_model(data_slice, tmp_path):
    from clipunlearn.runs import read_results
    from clipunlearn.runs.subgroup import SubgroupSettings, forget_subgroup

    s = SubgroupSettings(model="mini-rn", setting="style-motorbike-sketch", out=str(tmp_path / "run"),
                         data_root=str(data_slice), method="ga", max_epochs=1, progress=False,
                         other_datasets=["cifar10"], cache_dir=str(tmp_path / "cache"), retrieval=False)
    r = forget_subgroup(s)
    assert r["prepared"]["prepare"] == "fine-tune-styles" and r["prepared"]["cached"] is False
    assert list(r["columns"]) == ["target", "retain", "motorbike photos"]
    assert r["columns"]["retain"]["subgroups"] == ["motorbike (poster)", "motorbike (drawing)"]
    assert (tmp_path / "cache" / "prepared" / f"{r['prepared']['key']}.safetensors").is_file()
    assert "prepared for the setting" in (tmp_path / "run" / "report.md").read_text()
    assert read_results(tmp_path / "run").classes == ["motorbike"]
