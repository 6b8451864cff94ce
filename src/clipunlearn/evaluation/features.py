"""Image features in stages, and a cache that reuses the part of the image tower that did not change.

The image tower is cut into stages (ResNet: stem, layer1-4, attention pool; ViT: embeddings, each
block, pooling + projection). A stage's output depends only on the parameters of the stages before
it, so after a method has changed, say, only the attention pool, the cached output of layer4 is
still exact and only the pool has to run again. Cache entries are keyed by the images, the pixel
transform and a hash of every parameter and buffer up to the cut: a changed tensor below the cut
can never be served from a stale entry.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models.catalogue import image_family
from ..models.factory import Clip


@dataclass(frozen=True)
class Stage:
    name: str
    prefixes: tuple[str, ...]  # parameter/buffer name prefixes (under model.visual) of this stage
    run: Callable[[nn.Module, torch.Tensor], torch.Tensor]


def _resnet_stages(visual: nn.Module) -> list[Stage]:
    stem = ("conv1.", "bn1.", "conv2.", "bn2.", "conv3.", "bn3.")
    stages = [Stage("stem", stem, lambda v, x: v.stem(x))]
    for i in range(1, 5):
        stages.append(Stage(f"layer{i}", (f"layer{i}.",), lambda v, x, i=i: getattr(v, f"layer{i}")(x)))
    stages.append(Stage("attnpool", ("attnpool.",), lambda v, x: v.attnpool(x)))
    return stages


def _vit_block(v: nn.Module, x: torch.Tensor, i: int) -> torch.Tensor:
    block = v.transformer.resblocks[i]
    if not v.transformer.batch_first:
        return block(x.transpose(0, 1)).transpose(0, 1)
    return block(x)


def _vit_pool(v: nn.Module, x: torch.Tensor) -> torch.Tensor:
    pooled, _ = v._pool(x)
    return pooled @ v.proj if v.proj is not None else pooled


def _vit_stages(visual: nn.Module) -> list[Stage]:
    embed = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.", "patch_dropout.")
    stages = [Stage("embed", embed, lambda v, x: v._embeds(x))]
    for i in range(len(visual.transformer.resblocks)):
        stages.append(Stage(f"block{i}", (f"transformer.resblocks.{i}.",), lambda v, x, i=i: _vit_block(v, x, i)))
    stages.append(Stage("pool", ("ln_post.", "proj", "attn_pool"), _vit_pool))
    return stages


def image_stages(clip: Clip) -> list[Stage]:
    return _resnet_stages(clip.model.visual) if image_family(clip.model) == "resnet" else _vit_stages(clip.model.visual)


def first_changed_stage(clip: Clip, changed: Iterable[str] | None) -> int:
    """Index of the first stage holding a changed tensor (``model``-level names); all stages if None."""
    stages = image_stages(clip)
    if changed is None:
        return 0
    cut = len(stages)
    for name in changed:
        if not name.startswith("visual."):
            continue
        local = name[len("visual."):]
        for i, st in enumerate(stages):
            if any(local.startswith(p) for p in st.prefixes):
                cut = min(cut, i)
                break
        else:
            return 0  # a tensor no stage claims: recompute everything
    return cut


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


def trunk_hash(clip: Clip, cut: int) -> str:
    """Hash of every parameter and buffer of stages ``[0, cut)``, with the pixel statistics."""
    stages = image_stages(clip)
    prefixes = tuple(p for st in stages[:cut] for p in st.prefixes)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((clip.arch, clip.image_size, clip.mean, clip.std, cut)).encode())
    visual = clip.model.visual
    for name, t in list(visual.named_parameters()) + list(visual.named_buffers()):
        if name.startswith(prefixes):
            h.update(name.encode())
            h.update(t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


class FeatureCache:
    """Stage outputs by (images, transform, trunk hash); in memory, and on disk if ``folder`` is given."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, max_items: int = 64):
        self.folder = Path(folder).expanduser() if folder else None
        self.max_items = max_items
        self._mem: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> torch.Tensor | None:
        if key in self._mem:
            self._mem.move_to_end(key)
            self.hits += 1
            return self._mem[key]
        if self.folder is not None and (self.folder / f"{key}.safetensors").exists():
            from safetensors.torch import load_file

            value = load_file(str(self.folder / f"{key}.safetensors"))["features"]
            self._remember(key, value)
            self.hits += 1
            return value
        self.misses += 1
        return None

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().cpu().contiguous()
        self._remember(key, value)
        if self.folder is not None:
            from safetensors.torch import save_file

            from ..io import save_with

            self.folder.mkdir(parents=True, exist_ok=True)
            save_with(self.folder / f"{key}.safetensors", lambda tmp: save_file({"features": value}, str(tmp)))

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._mem[key] = value
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_items:
            self._mem.popitem(last=False)
