"""Tests of clipunlearn.models: the factory, checkpoints, the tensor catalogue and `clipunlearn layers`.

Everything is offline: models are built with random weights (pretrained="none"), checkpoints are
written to tmp_path, and the one download path is exercised with the network switched off.
"""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import open_clip
import pytest
import torch

from clipunlearn import cli
from clipunlearn.errors import ClipUnlearnError, UnknownNameError, WeightsError
from clipunlearn.models import (
    Clip,
    available_models,
    eligible_names,
    load_clip,
    read_checkpoint,
    tensor_catalogue,
)
from clipunlearn.models.zoo import ZOO_MODELS, register_with_open_clip, weights_path

ATTNPOOL = {f"visual.attnpool.{p}_proj.{w}" for p in "qkvc" for w in ("weight", "bias")}
BLOCK_TENSORS = 12  # ln_1 (2), attn in_proj (2) + out_proj (2), ln_2 (2), mlp c_fc (2) + c_proj (2)


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rn50() -> Clip:
    return load_clip("RN50", pretrained="none")


@pytest.fixture(scope="module")
def vit_b16() -> Clip:
    return load_clip("ViT-B-16", pretrained="none")


@pytest.fixture(scope="module")
def mini_rn() -> Clip:
    torch.manual_seed(0)
    return load_clip("mini-rn", pretrained="none")


@pytest.fixture(autouse=True)
def _keep_root_log_level():
    """cli.main() lowers the root logger's verbosity; keep that from leaking into other tests."""
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def _same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


class Payload:
    """Something that is not a tensor; unpickling it would run `_unpickled`."""

    def __reduce__(self):
        return (_unpickled, ())


UNPICKLED: list[bool] = []


def _unpickled():
    UNPICKLED.append(True)
    return "ran"


# --- building models ---------------------------------------------------------------------------

def test_random_rn50(rn50: Clip) -> None:
    assert rn50.arch == "RN50" and rn50.family == "resnet"
    assert rn50.source == "random" and rn50.image_size == 224
    assert rn50.device == torch.device("cpu")
    assert not rn50.model.training


def test_random_vit_b16(vit_b16: Clip) -> None:
    assert vit_b16.arch == "ViT-B-16" and vit_b16.family == "vit"
    assert vit_b16.source == "random" and vit_b16.image_size == 224


def test_zoo_models_are_registered() -> None:
    register_with_open_clip()
    names = available_models()
    assert names[: len(ZOO_MODELS)] == list(ZOO_MODELS)
    assert {"RN50", "ViT-B-16"} <= set(names)
    assert set(ZOO_MODELS) <= set(open_clip.list_models())


def test_mini_rn_encodes(mini_rn: Clip) -> None:
    assert mini_rn.family == "resnet" and mini_rn.image_size == 64
    with torch.no_grad():
        image = mini_rn.encode_image(torch.rand(2, 3, 64, 64), normalize=True)
        text = mini_rn.encode_text(["a photo of a face.", "a photo of a leopard."], normalize=True)
    assert image.shape == text.shape == (2, 256)
    assert torch.allclose(image.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(text.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_image_transform_gives_unit_range(mini_rn: Clip) -> None:
    from PIL import Image

    pixels = mini_rn.image_transform()(Image.new("RGB", (100, 80), (255, 0, 128)))
    assert pixels.shape == (3, 64, 64)
    assert 0.0 <= float(pixels.min()) and float(pixels.max()) <= 1.0


# --- the tensor catalogue ----------------------------------------------------------------------

def test_rn50_catalogue(rn50: Clip) -> None:
    rows = tensor_catalogue(rn50.model)
    assert [r.name for r in rows] == [n for n, _ in rn50.model.named_parameters()]
    image = eligible_names(rn50.model, "image")
    assert len(image) == 8
    assert set(image) == ATTNPOOL
    by_name = {r.name: r for r in rows}
    assert not by_name["visual.attnpool.positional_embedding"].eligible
    assert not by_name["visual.conv1.weight"].eligible
    assert all(not r.eligible for r in rows if r.name.startswith("visual.layer"))


def test_text_tower_catalogue(rn50: Clip, vit_b16: Clip) -> None:
    for clip in (rn50, vit_b16):
        text = eligible_names(clip.model, "text")
        assert len(text) == 12 * BLOCK_TENSORS == 144
        assert all(n.startswith("transformer.resblocks.") for n in text)
        by_name = {r.name: r for r in tensor_catalogue(clip.model)}
        for name in ("token_embedding.weight", "positional_embedding", "ln_final.weight", "ln_final.bias",
                     "text_projection", "logit_scale"):
            assert name in by_name, name
            assert not by_name[name].eligible, name
        assert by_name["logit_scale"].tower == "shared"


def test_vit_b16_catalogue(vit_b16: Clip) -> None:
    image = set(eligible_names(vit_b16.model, "image"))
    blocks = {n for n, _ in vit_b16.model.named_parameters() if n.startswith("visual.transformer.resblocks.")}
    assert len(blocks) == 12 * BLOCK_TENSORS
    assert image == blocks | {"visual.ln_pre.weight", "visual.ln_pre.bias"}
    assert len(image) == 146
    by_name = {r.name: r for r in tensor_catalogue(vit_b16.model)}
    for name in ("visual.proj", "visual.conv1.weight", "visual.class_embedding", "visual.positional_embedding",
                 "visual.ln_post.weight", "visual.ln_post.bias"):
        assert name in by_name, name
        assert not by_name[name].eligible, name


def test_catalogue_rows(rn50: Clip) -> None:
    rows = tensor_catalogue(rn50.model)
    params = dict(rn50.model.named_parameters())
    for r in rows:
        assert r.shape == tuple(params[r.name].shape) and r.numel == params[r.name].numel()
        assert r.tower in ("image", "text", "shared") and r.reason
    d = rows[0].as_dict()
    assert isinstance(d["shape"], list) and set(d) == {"name", "tower", "shape", "numel", "eligible", "reason"}
    assert eligible_names(rn50.model) == [r.name for r in rows if r.eligible]


def test_batch_norm_statistics_are_not_catalogued(rn50: Clip) -> None:
    assert any("running_mean" in k for k in rn50.model.state_dict())  # they exist, as buffers
    names = [r.name for r in tensor_catalogue(rn50.model)]
    assert not any("running_mean" in n or "running_var" in n or "num_batches_tracked" in n for n in names)


def test_unknown_image_tower_is_refused(mini_rn: Clip) -> None:
    class Odd(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.visual = torch.nn.Linear(2, 2)

    with pytest.raises(ClipUnlearnError, match="Linear"):
        tensor_catalogue(Odd())


# --- checkpoints -------------------------------------------------------------------------------

def test_save_and_load_round_trip(mini_rn: Clip, tmp_path: Path) -> None:
    path = tmp_path / "out" / "model.safetensors"
    mini_rn.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]  # no temporary left behind
    _, meta = read_checkpoint(path)
    assert meta["clipunlearn_arch"] == "mini-rn"

    loaded = load_clip("mini-rn", pretrained="none", weights=path)
    _same_state(mini_rn.model.state_dict(), loaded.model.state_dict())
    assert loaded.source == f"random+{path}"
    assert loaded.quick_gelu is False

    also = load_clip("mini-rn", pretrained=str(path))
    _same_state(mini_rn.model.state_dict(), also.model.state_dict())


def test_saved_checkpoint_loads_in_open_clip(mini_rn: Clip, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    mini_rn.save(path)
    register_with_open_clip()
    net = open_clip.create_model("mini-rn", pretrained=str(path))
    _same_state(mini_rn.model.state_dict(), net.state_dict())


def test_torch_state_dict_loads(mini_rn: Clip, tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(mini_rn.model.state_dict(), path)
    loaded = load_clip("mini-rn", pretrained=str(path))
    _same_state(mini_rn.model.state_dict(), loaded.model.state_dict())
    assert loaded.source == str(path)


def test_wrapped_state_dict_loads(mini_rn: Clip, tmp_path: Path) -> None:
    path = tmp_path / "wrapped.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in mini_rn.model.state_dict().items()}}, path)
    loaded = load_clip("mini-rn", pretrained=str(path))
    _same_state(mini_rn.model.state_dict(), loaded.model.state_dict())


def test_checkpoint_of_another_architecture_names_it(mini_rn: Clip, tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    mini_rn.save(path)
    with pytest.raises(WeightsError, match="mini-rn") as info:
        load_clip("mini-vit", pretrained="none", weights=path)
    assert "--model mini-rn" in str(info.value)
    with pytest.raises(WeightsError, match="holds a mini-rn model, not mini-vit"):
        load_clip("mini-vit", pretrained=str(path))


def test_plain_state_dict_of_another_architecture(mini_rn: Clip, tmp_path: Path) -> None:
    path = tmp_path / "state.pt"
    torch.save(mini_rn.model.state_dict(), path)
    with pytest.raises(WeightsError, match="does not match the mini-vit architecture"):
        load_clip("mini-vit", pretrained="none", weights=path)


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"visual.proj": torch.zeros(2), "payload": Payload()}, path)
    UNPICKLED.clear()
    with pytest.raises(WeightsError, match="Could not read"):
        read_checkpoint(path)
    with pytest.raises(WeightsError):
        load_clip("mini-rn", pretrained=str(path))
    assert UNPICKLED == []  # the payload never ran


def test_non_state_dict_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "list.pt"
    torch.save([torch.zeros(2)], path)
    with pytest.raises(WeightsError, match="not a state dict"):
        read_checkpoint(path)
    path = tmp_path / "mixed.pt"
    torch.save({"a": torch.zeros(2), "b": 3}, path)
    with pytest.raises(WeightsError, match="not a state dict"):
        read_checkpoint(path)


@pytest.mark.parametrize("name", ["corrupt.pt", "corrupt.safetensors", "corrupt.bin"])
def test_corrupt_file_is_refused(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(WeightsError, match="Could not read"):
        read_checkpoint(path)
    with pytest.raises(WeightsError):
        load_clip("mini-rn", pretrained="none", weights=path)


def test_missing_weights_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="does not exist"):
        load_clip("mini-rn", pretrained="none", weights=tmp_path / "nope.safetensors")


def test_missing_zoo_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from clipunlearn.models import factory

    monkeypatch.setattr(factory, "weights_path", lambda name: tmp_path / f"{name}.safetensors")
    with pytest.raises(WeightsError, match="zoo weights of mini-rn"):
        load_clip("mini-rn")  # default: the shipped weights


SHIPPED = [n for n in ZOO_MODELS if weights_path(n).exists()]


def test_mini_rn_weights_ship() -> None:
    assert "mini-rn" in SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_zoo_weights_load_offline_by_name(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    path = weights_path(name)
    assert path.stat().st_size <= 25 * 1024 * 1024
    clip = load_clip(name)
    assert clip.source == "zoo"
    state = clip.model.state_dict()
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point())


# --- names, tags and being offline -------------------------------------------------------------

def test_openai_weights_offline_say_where_to_put_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("CLIPUNLEARN_WEIGHTS", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.cache/clip/RN50.pt of the machine's
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    start = time.monotonic()
    with pytest.raises(WeightsError) as info:
        load_clip("RN50", pretrained="openai")
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "RN50.pt" in message and str(tmp_path) in message
    assert "offline" in message and "CLIPUNLEARN_WEIGHTS" in message


def test_unknown_model_suggests_close_name() -> None:
    with pytest.raises(UnknownNameError, match="'RN50'") as info:
        load_clip("RN-50", pretrained="none")
    assert "Unknown model 'RN-50'" in str(info.value) and "Did you mean" in str(info.value)
    with pytest.raises(UnknownNameError, match="'mini-rn'"):
        load_clip("mini_rn", pretrained="none")


def test_bad_pretrained_tag_lists_tags() -> None:
    with pytest.raises(WeightsError, match="not-a-tag") as info:
        load_clip("RN50", pretrained="not-a-tag")
    message = str(info.value)
    assert all(tag in message for tag in open_clip.list_pretrained_tags_by_model("RN50"))
    assert "'openai'" in message


# --- the command line --------------------------------------------------------------------------

def test_cli_layers_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["layers", "--model", "RN50", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == "RN50" and out["family"] == "resnet"
    eligible_image = [t["name"] for t in out["tensors"] if t["eligible"] and t["tower"] == "image"]
    assert sorted(eligible_image) == sorted(ATTNPOOL)
    assert sum(t["eligible"] and t["tower"] == "text" for t in out["tensors"]) == 144


def test_cli_layers_unknown_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["layers", "--model", "RN-50", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("clipunlearn: error: Unknown model 'RN-50'")


def test_torchscript_archive_loads_like_openai_checkpoints(tmp_path: Path) -> None:
    """OpenAI ships TorchScript archives; they are read with torch.jit.load, never unpickled."""
    clip = load_clip("mini-rn", pretrained="none")
    model = clip.model.eval()
    traced = torch.jit.trace(model, (torch.rand(1, 3, 64, 64), clip.tokenize(["a photo"])), check_trace=False)
    path = tmp_path / "openai-style.pt"
    traced.save(str(path))
    loaded = load_clip("mini-rn", pretrained=str(path))
    assert loaded.quick_gelu  # OpenAI's models use QuickGELU
    own = clip.model.state_dict()
    assert all(torch.equal(own[k], v) for k, v in loaded.model.state_dict().items())


def test_fast_conv_layout_is_nested_and_restored(mini_rn: Clip) -> None:
    x = torch.rand(3, 3, mini_rn.image_size, mini_rn.image_size)
    with torch.no_grad():
        before = mini_rn.encode_image(x)
    conv = mini_rn.model.visual.conv1.weight
    with mini_rn.fast_conv_layout() as fmt:
        assert fmt == torch.channels_last and conv.is_contiguous(memory_format=torch.channels_last)
        with mini_rn.fast_conv_layout():  # an inner block (generation inside forgetting) keeps it
            pass
        assert conv.is_contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            inside = mini_rn.encode_image(x.contiguous(memory_format=fmt))
    assert conv.is_contiguous() and mini_rn._layout_depth == 0
    torch.testing.assert_close(inside, before, rtol=1e-4, atol=1e-5)
    with pytest.raises(RuntimeError), mini_rn.fast_conv_layout():  # restored on an error too
        raise RuntimeError("boom")
    assert conv.is_contiguous()


def test_fast_conv_layout_leaves_vit_alone(vit_b16: Clip) -> None:
    with vit_b16.fast_conv_layout() as fmt:
        assert fmt == torch.contiguous_format
        assert vit_b16.model.visual.conv1.weight.is_contiguous()


def test_loading_zoo_weights_does_not_claim_random_init(caplog, monkeypatch) -> None:
    # the CLI (run by other tests in this process) stops clipunlearn's logger propagating to the root
    monkeypatch.setattr(logging.getLogger("clipunlearn"), "propagate", True)
    with caplog.at_level(logging.INFO):
        load_clip("mini-rn")
    assert not any("initialized randomly" in r.getMessage() for r in caplog.records)
    with caplog.at_level(logging.INFO):
        load_clip("mini-rn", pretrained="none")
    assert any("random initialisation" in r.getMessage() for r in caplog.records)
