"""Image features in stages, and a cache that reuses the part of the image tower that did not change.

The image tower is cut into stages (ResNet: stem, layer1-4, attention pool; ViT: embeddings, each
block, pooling + projection). A stage's output depends only on the parameters of the stages before
it, so after a method has changed, say, only the attention pool, the cached output of layer4 is
still exact and only the pool has to run again. Cache entries (:mod:`.cache`) are keyed by the
images, the pixel transform and a hash of every parameter and buffer up to the cut: a changed tensor
below the cut can never be served from a stale entry.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ..models.catalogue import image_family
from ..models.factory import Clip


@dataclass(frozen=True)
class ImageStage:
    name: str
    prefixes: tuple[str, ...]  # parameter/buffer name prefixes (under model.visual) of this stage
    run: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _resnet_stages(visual: nn.Module) -> list[ImageStage]:
    stem = ("conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3.")
    stages = [ImageStage("stem", stem, lambda v, x: v.stem(x))]
    for i in range(1, 5):
        stages.append(ImageStage(f"layer{i}", (f"layer{i}.",), lambda v, x, i=i: getattr(v, f"layer{i}")(x)))
    stages.append(ImageStage("attnpool", ("attnpool.",), lambda v, x: v.attnpool(x)))
    return stages


def _vit_block(v: nn.Module, x: torch.Tensor, i: int) -> torch.Tensor:
    block = v.transformer.resblocks[i]
    if not v.transformer.batch_first:
        return block(x.transpose(0, 1)).transpose(0, 1)
    return block(x)


def _vit_pool(v: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled, _ = v._pool(x)
    return pooled @ v.proj if v.proj is not None else pooled


def _vit_stages(visual: nn.Module) -> list[ImageStage]:
    embed = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "patch_dropout.")
    stages = [ImageStage("embed", embed, lambda v, x: v._embeds(x))]
    for i in range(len(visual.transformer.resblocks)):
        stages.append(ImageStage(f"block{i}", (f"transformer.resblocks.{i}.",), lambda v, x, i=i: _vit_block(v, x, i)))
    stages.append(ImageStage("pool", ("ln_post.", "proj", "attn_pool"), _vit_pool))
    return stages


def image_stages(clip: Clip) -> list[ImageStage]:
    return _resnet_stages(clip.model.visual) if image_family(clip.model) == "resnet" else _vit_stages(clip.model.visual)


def run_stages(clip: Clip, x: torch.Tensor, start: int, end: int | None = None) -> torch.Tensor:
    """Run stages ``start`` up to ``end`` (exclusive); stage 0 takes [0, 1] pixels."""
    stages = image_stages(clip)
    end = len(stages) if end is None else end
    if start == 0:
        x = clip.normalize(x)
    visual = clip.model.visual
    for st in stages[start:end]:
        x = st.run(visual, x)
    return x


def hash_tensors(module: nn.Module, keep: Callable[[str], bool], h: Any = None) -> str:
    """Hash of the names and fp32 values of ``module``'s parameters and buffers whose name ``keep``
    accepts (fed into ``h`` after what it already holds, if given)."""
    h = h or hashlib.blake2b(digest_size=16)
    for name, t in list(module.named_parameters()) + list(module.named_buffers()):
        if keep(name):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()
