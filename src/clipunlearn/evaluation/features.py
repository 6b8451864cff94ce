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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
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


class FeatureCache:
    """Stage outputs by (images, transform, trunk hash); in memory, and on disk if ``folder`` is given
    (except within :meth:`in_memory_only`)."""

    def __init__(self, folder: str | os.PathLike[str] | None = None, max_items: int = 64):
        self.folder = Path(folder).expanduser() if folder else None
        self.max_items = max_items
        self._mem: OrderedDict[str, torch.Tensor] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._writes_disk = True

    @contextmanager
    def in_memory_only(self) -> Iterator[None]:
        """Within the block new entries stay in memory (disk entries are still read): for the features
        of a model no later run starts from, e.g. a forget run's model after forgetting."""
        before, self._writes_disk = self._writes_disk, False
        try:
            yield
        finally:
            self._writes_disk = before

    def get(self, key: str, count_miss: bool = True) -> torch.Tensor | None:
        """The entry of ``key``, or None (counted as a miss unless ``count_miss`` is False: a second
        look at the same entry, after waiting for another process to compute it)."""
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
        self.misses += count_miss
        return None

    def lock(self, key: str):
        """On disk, held while one process computes ``key``: others wait for it, then read it."""
        from contextlib import nullcontext

        from ..io import exclusive

        return nullcontext() if self.folder is None or not self._writes_disk else exclusive(self.folder / f"{key}.lock")

    def put(self, key: str, value: torch.Tensor) -> None:
        value = value.detach().cpu().contiguous()
        self._remember(key, value)
        if self.folder is not None and self._writes_disk:
            from safetensors.torch import save_file

            from ..io import save_with

            self.folder.mkdir(parents=True, exist_ok=True)
            save_with(self.folder / f"{key}.safetensors", lambda tmp: save_file({"features": value}, str(tmp)))

    def _remember(self, key: str, value: torch.Tensor) -> None:
        self._mem[key] = value
        self._mem.move_to_end(key)
        while len(self._mem) > self.max_items:
            self._mem.popitem(last=False)
