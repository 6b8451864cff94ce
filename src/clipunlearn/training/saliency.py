"""Weight saliency (SalUn, Fan et al., ICLR 2024, Eq. 6): which elements of the trainable tensors the
forget loss depends on most, as a 0/1 mask that the training loop multiplies into every gradient.

    g = ∇_θ ℓ_f(θ; D_f)              the forget loss's gradient at the original weights, summed over
                                     the forget images (:func:`loss_gradients`)
    m = 1[|g| ≥ γ]                   γ: the threshold that keeps the top ``1 − sparsity`` fraction of
                                     |g| over ALL the given tensors together (:func:`saliency_mask`)

SalUn's default sparsity is 0.5: half of the elements may change, the other half keep their values.
Exactly ``k = round((1 − sparsity) · n)`` of the ``n`` elements are ones; elements tied at the
threshold are taken in order (tensors in the given order, elements in flattened order), so the mask
is deterministic.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import nn

from ..errors import TrainingError
from ..precision import forward_pass
from .params import trainable


def loss_gradients(model: nn.Module, names: Sequence[str], losses: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The gradient of the sum of ``losses`` w.r.t. each named tensor (zeros where a tensor gets none).

    ``losses`` may be a generator: each loss is back-propagated as soon as it is made, so that
    chunked forward passes over many images never hold more than one graph. The model's own
    gradients, ``requires_grad`` flags and train/eval mode are as before afterwards (eval mode within).
    """
    if not names:
        raise TrainingError("No tensor to compute a saliency over: the selection of tensors is empty.")
    with trainable(model, names) as params:
        for p in params.values():
            p.grad = None
        device = next(iter(params.values())).device
        pending = iter(losses)
        while True:
            with forward_pass(device):  # each loss is made under the run's precision, back-propagated outside it
                loss = next(pending, None)
            if loss is None:
                break
            loss = loss.float()
            if not bool(torch.isfinite(loss.detach()).all()):
                raise TrainingError(f"The forget loss is {float(loss.detach())}; no saliency can be computed from it.")
            loss.backward()
        return {n: (p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p.detach()))
                for n, p in params.items()}


def saliency_mask(grads: Mapping[str, torch.Tensor], sparsity: float = 0.5) -> dict[str, torch.Tensor]:
    """0/1 masks (same shapes and dtypes as ``grads``): 1 for the ``round((1 − sparsity) · n)``
    elements of largest |gradient| over all tensors together, ties broken by position."""
    if not 0.0 <= sparsity <= 1.0:
        raise TrainingError(f"sparsity must lie in [0, 1] (the fraction of elements that stay fixed), got {sparsity}.")
    if not grads:
        raise TrainingError("No gradient given: the saliency mask needs at least one tensor.")
    names = list(grads)
    flat = torch.cat([grads[n].detach().abs().flatten().float() for n in names])
    if not bool(torch.isfinite(flat).all()):
        raise TrainingError("The forget loss's gradient is not finite; no saliency mask can be made from it.")
    n = flat.numel()
    k = round((1.0 - sparsity) * n)
    if k <= 0:
        keep = torch.zeros(n, dtype=torch.bool, device=flat.device)
    elif k >= n:
        keep = torch.ones(n, dtype=torch.bool, device=flat.device)
    else:
        threshold = torch.kthvalue(flat, n - k + 1).values
        keep = flat > threshold
        missing = k - int(keep.sum())
        if missing > 0:  # ties at the threshold: the first ones in order
            ties = torch.nonzero(flat == threshold).flatten()[:missing]
            keep[ties] = True
    masks, start = {}, 0
    for name in names:
        g = grads[name]
        masks[name] = keep[start:start + g.numel()].view(g.shape).to(g.dtype)
        start += g.numel()
    return masks


def mask_fraction(masks: Mapping[str, torch.Tensor]) -> float:
    """The fraction of ones over all elements of ``masks``."""
    total = sum(m.numel() for m in masks.values())
    return float(sum(float(m.sum()) for m in masks.values()) / total) if total else math.nan
