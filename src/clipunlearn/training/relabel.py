"""Amnesiac relabelling (Graves et al., AAAI 2021) for CLIP: random wrong labels, the zero-shot
cross-entropy over class prompts, and seeded shuffled mini-batches. Shared by the ``amns`` and
``amns-retain`` methods.

* :func:`random_other_labels`: each forget image gets a label drawn uniformly from the candidate
  classes other than its own (never the true one);
* :func:`zero_shot_logits`: 100 · cos(f_img(x), t_c) for given unit-norm class features t_c;
* :func:`class_prompt_ce`: cross-entropy of the zero-shot logits 100 · cos(f_img(x), f_txt(prompt of
  class c)) over every class, the text features recomputed so that gradients reach both towers;
* :class:`ShuffledBatches`: a new seeded permutation of the images at the first step of each epoch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..evaluation.zeroshot import LOGIT_SCALE
from ..models.factory import Clip


def random_other_labels(labels: torch.Tensor, candidates: Sequence[int], gen: torch.Generator) -> torch.Tensor:
    """For each label, a class drawn uniformly from ``candidates`` without that label (CPU, ``gen``)."""
    pool = sorted({int(c) for c in candidates})
    out = []
    draws = torch.rand(len(labels), generator=gen).tolist()
    for y, u in zip(labels.tolist(), draws):
        others = [c for c in pool if c != y]
        if not others:
            raise TrainingError(f"Cannot relabel an image of class {y}: no other class to give it "
                                f"(candidates {pool}). The dataset needs at least two classes.")
        out.append(others[min(int(u * len(others)), len(others) - 1)])
    return torch.tensor(out, dtype=torch.long)


def relabel_pool(n_classes: int, forgotten: Sequence[int]) -> list[int]:
    """The classes a forget image may be relabelled to: the dataset's classes that are not forgotten,
    or, if every class is forgotten, all of them (the image's own class is excluded per image)."""
    gone = set(forgotten)
    kept = [c for c in range(n_classes) if c not in gone]
    return kept or list(range(n_classes))


def zero_shot_logits(clip: Clip, pixels: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """``LOGIT_SCALE`` · cos(f_img(x), t_c) (B×C) for images ``pixels`` ([0, 1], B×3×H×W) and unit-norm
    class features ``text`` (C×D)."""
    return LOGIT_SCALE * F.normalize(clip.encode_image(pixels), dim=-1) @ text.T


def class_prompt_ce(clip: Clip, pixels: torch.Tensor, labels: torch.Tensor, prompt_tokens: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy of ``LOGIT_SCALE`` · cos(f_img(x), f_txt(p_c)) against ``labels`` for images
    ``pixels`` ([0, 1], B×3×H×W) and one prompt per class (tokens, C×L)."""
    txt = F.normalize(clip.model.encode_text(prompt_tokens), dim=-1)
    return F.cross_entropy(zero_shot_logits(clip, pixels, txt), labels.to(txt.device))


class ShuffledBatches:
    """Mini-batches of ``n`` items of at most ``batch_size``: ``indices(step)`` draws a new seeded
    permutation at step 0 (the first step of each epoch) and returns that step's slice of it."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator):
        if n < 1:
            raise TrainingError("There is no image to train on.")
        if batch_size < 1:
            raise TrainingError(f"batch_size must be at least 1, got {batch_size}.")
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.order: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return math.ceil(self.n / self.batch_size)

    def indices(self, step: int) -> torch.Tensor:
        if step == 0 or self.order is None:
            self.order = torch.randperm(self.n, generator=self.gen)
        return self.order[step * self.batch_size:(step + 1) * self.batch_size]
