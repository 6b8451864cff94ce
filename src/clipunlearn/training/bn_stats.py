"""Batch-norm statistics alignment (forget-remind-restore, CVPR'25 §4.2, Eq. 4; as in SRe²L, Yin et
al., NeurIPS 2023): nudge the retain images so that the features they produce inside the image tower
have the statistics its batch-norm layers stored during pre-training.

    for each BatchNorm2d layer l of the image tower, on the features x_l entering it (a batch):
        μ_l  = per-channel mean of x_l,   σ²_l = per-channel (biased) variance of x_l
    L(x) = Σ_l ‖μ_l − running_mean_l‖₂ + ‖σ²_l − running_var_l‖₂

:func:`bn_statistics_loss` computes L for a batch of images (gradients reach the images);
:func:`align_to_bn_statistics` optimises an additive perturbation δ of the images by Adam on L with
the model frozen in eval mode, keeping x + δ valid pixels ([0, 1]). The statistics are batch
statistics, so the result depends on how the images are batched (``batch_size``).

A ViT image tower has no batch-norm layer and so no stored statistics: both functions refuse it.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from ..errors import TrainingError
from ..models.factory import Clip
from ..precision import forward_pass
from .params import frozen


def batch_norm_layers(clip: Clip) -> dict[str, nn.BatchNorm2d]:
    """The image tower's BatchNorm2d layers by name; a clear error if it has none."""
    layers = {n: m for n, m in clip.model.visual.named_modules() if isinstance(m, nn.BatchNorm2d)}
    if not layers:
        raise TrainingError(
            f"The image tower of {clip.arch} has no batch-norm layer, so there are no stored statistics to "
            "align to; use a ResNet CLIP (e.g. RN50, mini-rn) or skip the alignment of the retain images."
        )
    return layers


@contextmanager
def _distances(layers: dict[str, nn.BatchNorm2d]) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block a forward pass puts, for each layer, ‖μ − running_mean‖₂ + ‖σ² − running_var‖₂
    of the layer's input (per-channel batch mean μ, biased variance σ²) into the yielded dict."""
    terms: dict[str, torch.Tensor] = {}

    def hook_of(name: str, layer: nn.BatchNorm2d):
        def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            var, mean = torch.var_mean(inputs[0].float(), dim=(0, 2, 3), correction=0)
            terms[name] = (torch.linalg.vector_norm(mean - layer.running_mean)
                           + torch.linalg.vector_norm(var - layer.running_var))
        return hook

    handles = [layer.register_forward_pre_hook(hook_of(n, layer)) for n, layer in layers.items()]
    try:
        yield terms
    finally:
        for h in handles:
            h.remove()


def bn_statistics_terms(clip: Clip, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """{BatchNorm2d layer name in the image tower: ‖μ − running_mean‖₂ + ‖σ² − running_var‖₂}, μ and σ²
    the per-channel batch mean and biased variance of the layer's input for ``images`` ([0, 1],
    N×3×H×W); gradients reach the images. The forward pass runs in eval mode (the stored statistics
    normalise and stay unchanged); the model's mode is put back after."""
    layers = batch_norm_layers(clip)
    model = clip.model
    was_training = model.training
    model.eval()
    try:
        with _distances(layers) as terms:
            clip.encode_image(images)
    finally:
        model.train(was_training)
    return {n: terms[n] for n in layers}


def bn_statistics_loss(clip: Clip, images: torch.Tensor) -> torch.Tensor:
    """L of Eq. 4: the sum of :func:`bn_statistics_terms` over the image tower's BatchNorm2d layers."""
    return torch.stack(list(bn_statistics_terms(clip, images).values())).sum()


def align_to_bn_statistics(clip: Clip, images: torch.Tensor, steps: int, lr: float = 0.05,
                           batch_size: int = 64) -> tuple[torch.Tensor, dict[str, float]]:
    """``images`` ([0, 1], N×3×H×W) plus a perturbation δ optimised by Adam (``steps`` steps, ``lr`` in
    pixel units) to lower :func:`bn_statistics_loss`, batch by batch of ``batch_size``; δ starts at 0
    and x + δ is clamped to [0, 1] after every step. The model is frozen and in eval mode throughout.

    Returns the aligned images (detached, on the images' device) and ``{"bn_loss_before": ...,
    "bn_loss_after": ...}``, each the mean of the batches' losses weighted by their sizes.
    """
    batch_norm_layers(clip)  # fails early for a tower without batch norm
    if steps < 0:
        raise TrainingError(f"steps must be at least 0, got {steps}.")
    if batch_size < 1:
        raise TrainingError(f"batch_size must be at least 1, got {batch_size}.")
    n = len(images)
    if n == 0:
        return images.detach().clone(), {"bn_loss_before": 0.0, "bn_loss_after": 0.0}
    device = clip.device
    out, before, after = [], 0.0, 0.0
    with frozen(clip.model), clip.fast_conv_layout(), torch.enable_grad():
        for i in range(0, n, batch_size):
            x = images[i:i + batch_size].detach().to(device)
            delta = torch.zeros_like(x, requires_grad=True)
            opt = torch.optim.Adam([delta], lr=lr)
            with torch.no_grad(), forward_pass(device):
                before += float(bn_statistics_loss(clip, x)) * len(x)
            for _ in range(steps):
                with forward_pass(device):  # under the run's precision; backward and step outside it
                    loss = bn_statistics_loss(clip, x + delta).float()
                if not bool(torch.isfinite(loss.detach())):
                    raise TrainingError(f"The batch-norm statistics loss became {float(loss.detach())}; lower lr.")
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                with torch.no_grad():
                    delta.copy_((x + delta).clamp(0, 1) - x)
            with torch.no_grad(), forward_pass(device):
                aligned = (x + delta).clamp(0, 1)
                after += float(bn_statistics_loss(clip, aligned)) * len(x)
            out.append(aligned.detach().to(images.device))
    return torch.cat(out), {"bn_loss_before": before / n, "bn_loss_after": after / n}
