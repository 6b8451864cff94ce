"""The image tower in stages (``evaluation/features.py``; issue 35): run in turn from any cut, the stages give
the tower's own features, every tensor of the tower belongs to exactly one stage (so a changed tensor changes
the hash of the stage it feeds and of every cut above it), and the hash reads each kept tensor's name and fp32
value. On the random mini zoo models and small open_clip towers built here: each test well under a second."""
from __future__ import annotations

import copy
import hashlib
from types import SimpleNamespace

import pytest
import torch
from open_clip.transformer import VisionTransformer
from torch import nn

from clipunlearn.evaluation.features import (
    _vit_block,
    hash_tensors,
    image_stages,
    run_stages,
)
from clipunlearn.models import load_clip


@pytest.fixture(scope="module")
def minis():
    torch.manual_seed(0)
    rn, vit = load_clip("mini-rn", pretrained="none"), load_clip("mini-vit", pretrained="none")
    # a ViT tower with an attentional pool (open_clip's CoCa layout), on mini-vit's text side
    pooled = copy.deepcopy(vit)
    pooled.model.visual = VisionTransformer(image_size=vit.image_size, patch_size=32, width=32, layers=2, heads=2,
                                            mlp_ratio=2.0, attentional_pool=True, attn_pooler_queries=4,
                                            attn_pooler_heads=2, output_dim=16).eval()
    return {"mini-rn": rn, "mini-vit": vit, "attentional": pooled}


STAGE_NAMES = {"mini-rn": ["stem", "layer1", "layer2", "layer3", "layer4", "attnpool"],
               "mini-vit": None, "attentional": ["embed", "block0", "block1", "pool"]}


@pytest.mark.parametrize("name", ["mini-rn", "mini-vit", "attentional"])
def test_every_tensor_of_the_image_tower_belongs_to_exactly_one_stage(minis, name):
    clip = minis[name]
    stages = image_stages(clip)
    blocks = len(clip.model.visual.transformer.resblocks) if name != "mini-rn" else 0
    expected = STAGE_NAMES[name] or ["embed", *[f"block{i}" for i in range(blocks)], "pool"]
    assert [st.name for st in stages] == expected
    visual = clip.model.visual
    tensors = [n for n, _ in visual.named_parameters()] + [n for n, _ in visual.named_buffers()]
    assert tensors
    for n in tensors:
        owners = [st.name for st in stages if n.startswith(st.prefixes)]
        assert len(owners) == 1, (n, owners)
    if name == "mini-rn":  # each stem convolution and batch norm in the stem, each layer in its own stage
        stem = {n.split(".")[0] for n in tensors if n.startswith(stages[0].prefixes)}
        assert stem == {"conv1", "bn1", "conv2", "bn2", "conv3", "bn3"}


@pytest.mark.parametrize("name", ["mini-rn", "mini-vit", "attentional"])
def test_the_stages_run_from_any_cut_give_the_towers_own_features(minis, name):
    clip = minis[name]
    x = torch.rand(2, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        own = clip.encode_image(x)  # normalises the pixels, then the whole tower
        n = len(image_stages(clip))
        torch.testing.assert_close(run_stages(clip, x, 0), own, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(run_stages(clip, x, 0, n), own, rtol=1e-5, atol=1e-5)
        for cut in range(1, n):
            h = run_stages(clip, x, 0, cut)
            torch.testing.assert_close(run_stages(clip, h, cut), own, rtol=1e-5, atol=1e-5)
            torch.testing.assert_close(run_stages(clip, run_stages(clip, h, cut, cut + 1), cut + 1) if cut + 1 < n
                                       else run_stages(clip, h, cut, cut + 1), own, rtol=1e-5, atol=1e-5)


def test_a_vit_tower_without_a_projection_ends_with_its_pooled_token(minis):
    clip = copy.deepcopy(minis["mini-vit"])
    clip.model.visual.proj = None
    x = torch.rand(2, 3, clip.image_size, clip.image_size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        got = run_stages(clip, x, 0)
        assert got.shape == (2, clip.model.visual.transformer.width)
        torch.testing.assert_close(got, clip.encode_image(x), rtol=1e-5, atol=1e-5)


def test_a_sequence_first_transformer_block_gets_its_tokens_sequence_first():
    seen = []

    def block(x):
        seen.append(tuple(x.shape))
        return x * 2

    x = torch.arange(24.0).reshape(2, 3, 4)  # batch 2, 3 tokens, width 4
    v = SimpleNamespace(transformer=SimpleNamespace(batch_first=False, resblocks=[None, block]))
    out = _vit_block(v, x, 1)
    assert seen == [(3, 2, 4)] and torch.equal(out, 2 * x)
    v.transformer.batch_first = True
    assert torch.equal(_vit_block(v, x, 1), 2 * x) and seen[-1] == (2, 3, 4)


class _Two(nn.Module):
    def __init__(self, dtype=torch.float32):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([1.0, -2.5], dtype=dtype))
        self.skip = nn.Parameter(torch.tensor([3.0], dtype=dtype))
        self.register_buffer("stat", torch.tensor([0.25], dtype=dtype))


def _by_hand(pairs, h=None) -> str:
    h = h or hashlib.blake2b(digest_size=16)
    for name, values in pairs:
        h.update(name.encode())
        h.update(torch.tensor(values, dtype=torch.float32).numpy().tobytes())
    return h.hexdigest()


def test_the_hash_reads_each_kept_parameter_then_buffer_by_name_and_fp32_value():
    keep = lambda n: n != "skip"
    got = hash_tensors(_Two(), keep)
    assert got == _by_hand([("w", [1.0, -2.5]), ("stat", [0.25])]) and len(got) == 32
    assert hash_tensors(_Two(torch.float16), keep) == got  # the fp32 values, whatever the model's dtype
    assert hash_tensors(_Two(), lambda n: True) == _by_hand([("w", [1.0, -2.5]), ("skip", [3.0]), ("stat", [0.25])])
    assert hash_tensors(_Two(), lambda n: False) == hashlib.blake2b(digest_size=16).hexdigest()


def test_the_hash_goes_on_from_what_a_given_hash_already_holds():
    h = hashlib.blake2b(digest_size=16)
    h.update(b"before")
    expected = hashlib.blake2b(digest_size=16)
    expected.update(b"before")
    assert hash_tensors(_Two(), lambda n: n == "w", h) == _by_hand([("w", [1.0, -2.5])], expected)
