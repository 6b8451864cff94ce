"""The empirical diagonal Fisher information of named tensors, its per-layer summary, and the relative
Fisher information of CVPR'25 §4.1 (Eq. 1-2) that ranks the layers worth changing.

    F(θ)          = mean over micro-batches B of (∂ loss(B) / ∂θ)²       (element-wise; batch_size=1:
                    per-sample squared gradients, the exact empirical Fisher of the loss)
    F(layer)      = mean of F(θ) over every element of the layer's tensors
    F_rel(layer)  = F_forget(layer) / (F_retain(layer) + eps)              (Eq. 2)

Finer than layers (:func:`relative_fisher_mask`, beyond the paper): the same ratio per output channel
(the Fisher summed over the rest of a weight's dimensions) or per element, and a 0/1 mask of the given
share of channels or elements with the highest ratio over every tensor together.

A layer is the module a tensor belongs to (:func:`layer_of`): ``visual.layer1.0.conv1`` for
``visual.layer1.0.conv1.weight``. Layers that the forget images' loss depends on and the retain
images' does not score high; the forgetting stage changes those (CVPR'25: "Layers with higher relative
importance are selected for targeted unlearning, with all other layers frozen").
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import TrainingError
from ..precision import forward_pass
from .params import trainable

#: tensor names whose last part is one of these belong to the module before it (``in_proj_*``: the
#: input projection of a MultiheadAttention); any other tensor is a layer of its own
_MODULE_LEAVES = ("weight", "bias", "in_proj_weight", "in_proj_bias")


def layer_of(tensor_name: str) -> str:
    """The layer (module name) a tensor belongs to: ``a.b.weight`` -> ``a.b``, ``attn.in_proj_bias`` ->
    ``attn``; a tensor held directly by a larger module (an embedding, ``visual.proj``) is its own layer."""
    module, _, leaf = tensor_name.rpartition(".")
    return module if module and leaf in _MODULE_LEAVES else tensor_name


def diagonal_fisher(model: nn.Module, tensor_names: Sequence[str],
                    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    images: torch.Tensor, labels: torch.Tensor, batch_size: int = 1) -> dict[str, torch.Tensor]:
    """The empirical diagonal Fisher of each named tensor: the mean over micro-batches of ``batch_size``
    images of the squared gradient of ``loss_fn(images_chunk, labels_chunk)`` (a scalar).

    Only the named tensors require gradients and the model is in eval mode while it runs (batch-norm
    statistics untouched); afterwards every tensor requires gradients again, with ``.grad`` cleared, and
    the mode is put back (as :func:`~clipunlearn.training.params.trainable`). Chunks are moved to
    the device of the first named tensor. Tensors the loss does not reach get zeros.
    """
    if not tensor_names:
        raise TrainingError("No tensor to compute a Fisher information for: the selection of tensors is empty.")
    if len(images) == 0 or len(images) != len(labels):
        raise TrainingError(f"The Fisher information needs images with one label each; got {len(images)} images "
                            f"and {len(labels)} labels.")
    if batch_size < 1:
        raise TrainingError(f"batch_size must be at least 1, got {batch_size}.")
    with trainable(model, tensor_names) as params:
        tensors = list(params.values())
        device = tensors[0].device
        sums = [torch.zeros_like(p) for p in tensors]
        chunks = 0
        for i in range(0, len(images), batch_size):
            with forward_pass(device):  # under the run's precision; the gradients outside it
                loss = loss_fn(images[i:i + batch_size].to(device), labels[i:i + batch_size].to(device)).float()
            if not bool(torch.isfinite(loss.detach())):
                raise TrainingError(f"The loss is {float(loss.detach())} on images {i}..{i + batch_size - 1}; "
                                    "no Fisher information can be computed from it.")
            grads = torch.autograd.grad(loss, tensors, allow_unused=True)
            for total, g in zip(sums, grads):
                if g is not None:
                    total.add_(g.detach().pow(2))
            chunks += 1
        return {name: (total / chunks).contiguous() for name, total in zip(params, sums)}


def layer_fisher(fisher: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``{layer: mean Fisher over every element of its tensors}``, layers in order of first appearance."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name, f in fisher.items():
        layer = layer_of(name)
        sums[layer] = sums.get(layer, 0.0) + float(f.double().sum())
        counts[layer] = counts.get(layer, 0) + f.numel()
    return {layer: sums[layer] / max(1, counts[layer]) for layer in sums}


def relative_fisher(forget: Mapping[str, float], retain: Mapping[str, float], eps: float) -> dict[str, float]:
    """CVPR'25 Eq. 2: ``F_forget(layer) / (F_retain(layer) + eps)`` for each layer of ``forget`` (both
    from :func:`layer_fisher` over the same tensors). High: the forget images depend on the layer and
    the retain images do not."""
    if eps <= 0:
        raise TrainingError(f"eps must be positive (it keeps the ratio finite where the retain Fisher is 0), "
                            f"got {eps}.")
    missing = [layer for layer in forget if layer not in retain]
    if missing or len(retain) != len(forget):
        odd = (missing or sorted(set(retain) - set(forget)))[:3]
        raise TrainingError(f"The forget and retain Fisher informations cover different layers (e.g. {odd}); "
                            "compute both over the same tensors.")
    return {layer: forget[layer] / (retain[layer] + eps) for layer in forget}


def rank_layers(scores: Mapping[str, float], top: int) -> list[str]:
    """The ``top`` layers by score, highest first; ties keep the order of ``scores`` (deterministic)."""
    if top < 0:
        raise TrainingError(f"top must be at least 0, got {top}.")
    bad = [layer for layer, s in scores.items() if math.isnan(s)]
    if bad:
        raise TrainingError(f"The score of layer(s) {bad[:3]} is NaN; the layers cannot be ranked.")
    names = list(scores)
    order = sorted(range(len(names)), key=lambda i: -scores[names[i]])
    return [names[i] for i in order[:top]]


UNITS = ("channel", "element")


def relative_fisher_mask(forget: Mapping[str, torch.Tensor], retain: Mapping[str, torch.Tensor], share: float,
                         unit: str = "channel", eps: float = 1e-3) -> dict[str, torch.Tensor]:
    """0/1 masks (the shapes of the tensors) of the ``share`` of output channels (``unit="channel"``:
    whole rows of dimension 0) or of elements with the highest relative Fisher ``F_forget / (F_retain +
    eps · mean F_retain)``, ranked over every tensor together; ties broken by position (as
    :func:`~clipunlearn.training.saliency.saliency_mask`). ``forget`` and ``retain``: element-wise Fisher
    of the same tensors (:func:`diagonal_fisher`)."""
    from .saliency import saliency_mask

    if unit not in UNITS:
        raise TrainingError(f"Unknown Fisher unit {unit!r}; use one of {UNITS}.")
    if not 0.0 < share <= 1.0:
        raise TrainingError(f"The share of {unit}s that may change must lie in (0, 1], got {share}.")
    if eps <= 0:
        raise TrainingError(f"eps must be positive (it keeps the ratio finite where the retain Fisher is 0), "
                            f"got {eps}.")
    if set(forget) != set(retain) or any(forget[n].shape != retain[n].shape for n in forget):
        raise TrainingError("The forget and retain Fisher informations cover different tensors; compute both over "
                            "the same tensors.")

    def per_unit(f: torch.Tensor) -> torch.Tensor:
        f = f.double()
        return f.reshape(f.shape[0], -1).sum(1) if unit == "channel" and f.dim() > 1 else f

    f_units = {n: per_unit(forget[n]) for n in forget}
    r_units = {n: per_unit(retain[n]) for n in retain}
    mean_r = float(torch.cat([r.flatten() for r in r_units.values()]).mean())
    floor = eps * mean_r + 1e-30
    ratios = {n: f_units[n] / (r_units[n] + floor) for n in forget}
    picked = saliency_mask(ratios, sparsity=1.0 - share)
    masks = {}
    for name, m in picked.items():
        shape = forget[name].shape
        if unit == "channel" and len(shape) > 1:
            m = m.reshape(-1, *([1] * (len(shape) - 1))).expand(shape)
        masks[name] = m.to(forget[name].dtype).contiguous()
    return masks
