"""Selective updates (WACV'25 §4.4): rank tensors by mean absolute gradient, keep the top k per tower."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


def rank_by_gradient(model: nn.Module, names: Sequence[str]) -> list[tuple[str, float]]:
    """``(name, mean |grad|)`` of the named tensors, highest first; tensors without a gradient score 0.

    Ties keep the catalogue order, so the ranking is deterministic.
    """
    params = dict(model.named_parameters())
    scores = []
    for name in names:
        g = params[name].grad
        scores.append((name, float(g.abs().mean()) if g is not None else 0.0))
    order = sorted(range(len(scores)), key=lambda i: -scores[i][1])
    return [scores[i] for i in order]


def select_top_k(model: nn.Module, towers: dict[str, Sequence[str]], k: dict[str, int]) -> list[str]:
    """Keep the gradient of the top ``k[tower]`` tensors of each tower and drop (``None``) all others,
    so that an optimiser skips them entirely. Returns the kept names, by tower then rank."""
    params = dict(model.named_parameters())
    kept: list[str] = []
    for tower, names in towers.items():
        ranked = rank_by_gradient(model, names)
        top = {n for n, s in ranked[: max(0, k.get(tower, 0))] if s > 0}
        for name in names:
            if name not in top:
                params[name].grad = None
        kept += [n for n, _ in ranked if n in top]
    return kept


def snapshot(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


@torch.no_grad()
def restore(model: nn.Module, saved: dict[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for n, t in saved.items():
        params[n].copy_(t)
