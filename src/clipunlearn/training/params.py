"""Which parameter tensors train, and how to put them back: the parameter side of the training loop.

A method names the tensors it may change per tower (``{"image": [...], "text": [...]}``). After each
backward pass a *selection rule* decides which of them this step really updates:

* :func:`select_all`: every named tensor with a gradient (fine-tuning);
* :func:`select_top_k`: the top k tensors of each tower by mean absolute gradient (WACV'25 §4.4);
* :func:`apply_mask`: every named tensor, its gradient multiplied by a 0/1 saliency mask (SalUn).

Gradients of unselected tensors are dropped (``None``) so that the optimiser leaves them untouched,
weight decay included.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import torch
from torch import nn

Towers = Mapping[str, Sequence[str]]


def tower_tensors(model: nn.Module, rule: str = "catalogue", image: bool = True, text: bool = True) -> dict[str, list[str]]:
    """``{"image": [...], "text": [...]}``: the tensors each tower may train under the catalogue's
    eligibility ``rule``; a tower switched off gets none."""
    from ..models.catalogue import eligible_names

    return {"image": eligible_names(model, "image", rule) if image else [],
            "text": eligible_names(model, "text", rule) if text else []}


def all_names(towers: Towers) -> list[str]:
    """The tensor names of every tower, in order, without repeats."""
    seen: dict[str, None] = {}
    for names in towers.values():
        seen.update(dict.fromkeys(names))
    return list(seen)


@contextmanager
def trainable(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, nn.Parameter]]:
    """Within the block only ``names`` require gradients and the model is in eval mode (batch-norm
    statistics stay as they are, no dropout); on leaving, every parameter requires gradients again,
    gradients are cleared and the model's train/eval mode is put back."""
    params = dict(model.named_parameters())
    was_training = model.training
    wanted = set(names)
    for n, p in params.items():
        p.requires_grad_(n in wanted)
    model.train(False)
    try:
        yield {n: params[n] for n in names}
    finally:
        for p in params.values():
            p.requires_grad_(True)
            p.grad = None
        model.train(was_training)


@contextmanager
def frozen(model: nn.Module) -> Iterator[None]:
    """No parameter of ``model`` requires gradients within the block (inputs may); restored after."""
    params = list(model.parameters())
    before = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, r in zip(params, before):
            p.requires_grad_(r)


def rank_by_gradient(model: nn.Module, names: Sequence[str]) -> list[tuple[str, float]]:
    """``(name, mean |grad|)`` of the named tensors, highest first; tensors without a gradient score 0.

    Ties keep the given order, so the ranking is deterministic.
    """
    params = dict(model.named_parameters())
    scores = []
    for name in names:
        g = params[name].grad
        scores.append((name, float(g.abs().mean()) if g is not None else 0.0))
    order = sorted(range(len(scores)), key=lambda i: -scores[i][1])
    return [scores[i] for i in order]


def select_all(model: nn.Module, towers: Towers) -> list[str]:
    """Every named tensor that received a gradient."""
    params = dict(model.named_parameters())
    return [n for n in all_names(towers) if params[n].grad is not None]


def select_top_k(model: nn.Module, towers: Towers, k: Mapping[str, int]) -> list[str]:
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


def apply_mask(model: nn.Module, towers: Towers, mask: Mapping[str, torch.Tensor]) -> list[str]:
    """Multiply each named tensor's gradient by its 0/1 ``mask`` (tensors without one keep none of
    their gradient). Returns the names with at least one unmasked element."""
    params = dict(model.named_parameters())
    kept = []
    for name in all_names(towers):
        p = params[name]
        m = mask.get(name)
        if p.grad is None or m is None or not bool(m.any()):
            p.grad = None
            continue
        p.grad.mul_(m.to(p.grad.device, p.grad.dtype))
        kept.append(name)
    return kept


def snapshot(model: nn.Module, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """Copies of the named parameters' values."""
    params = dict(model.named_parameters())
    return {n: params[n].detach().clone() for n in names}


@torch.no_grad()
def restore(model: nn.Module, saved: Mapping[str, torch.Tensor]) -> None:
    """Put back values taken by :func:`snapshot`."""
    params = dict(model.named_parameters())
    for n, t in saved.items():
        params[n].copy_(t)
