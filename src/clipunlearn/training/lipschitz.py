"""The Lipschitz forgetting loss of WACV'25 Eq. 4-5 (METHOD.md §1.2), all draws in one batch.

For a synthetic image x of class t and a perturbation ε ~ N(0, σ²) in normalised pixel space:

    k = (‖f_img(x) − f_img(x+ε)‖ + ‖f_txt(t) − f_img(x+ε)‖) / ‖ε‖

with raw (not unit-norm) embeddings. f_img(x+ε) is computed without gradient, so the model is
pushed through f_img(x) and f_txt(t). ``scaling="official"`` reproduces the official code's scale
(denominator 2‖ε‖, summed over images and draws, divided by 2N); ``"mean"`` is Eq. 5 as written
(the mean of k over images and draws).
"""
from __future__ import annotations

import torch

from ..models.factory import Clip

SCALINGS = ("official", "mean")


def draw_perturbations(n_draws: int, shape: torch.Size | tuple[int, ...], sigma: float,
                       gen: torch.Generator) -> torch.Tensor:
    """ε of shape n_draws × shape, standard normal times σ, from ``gen`` (CPU, so seeds repeat)."""
    return torch.randn((n_draws, *shape), generator=gen) * sigma


def lipschitz_terms(clean: torch.Tensor, text: torch.Tensor, perturbed: torch.Tensor,
                    eps_norm: torch.Tensor) -> torch.Tensor:
    """k for every draw and image: clean B×D, text B×D, perturbed N×B×D, eps_norm N×B -> N×B."""
    a = (clean.unsqueeze(0) - perturbed).norm(dim=-1)
    b = (text.unsqueeze(0) - perturbed).norm(dim=-1)
    return (a + b) / eps_norm


def reduce_terms(k: torch.Tensor, scaling: str = "official") -> torch.Tensor:
    """Combine N×B terms into the loss (see the module docstring)."""
    if scaling == "official":
        return (k / 2).sum() / (2 * k.shape[0])
    if scaling == "mean":
        return k.mean()
    raise ValueError(f"unknown scaling {scaling!r}; use one of {SCALINGS}")


def lipschitz_loss(clip: Clip, pixels: torch.Tensor, prompts_tokens: torch.Tensor, eps: torch.Tensor,
                   scaling: str = "official", chunk: int = 512) -> torch.Tensor:
    """The loss for images ``pixels`` ([0, 1], B×3×H×W), their class prompts (tokens, B×L) and draws
    ``eps`` (N×B×3×H×W, normalised units). Perturbed images are encoded in chunks without gradient."""
    model = clip.model
    x_norm = clip.normalize(pixels)
    clean = model.encode_image(x_norm)
    text = model.encode_text(prompts_tokens)
    n, b = eps.shape[:2]
    eps = eps.to(pixels.device)
    with torch.no_grad():
        flat = (x_norm.detach().unsqueeze(0) + eps).flatten(0, 1)
        perturbed = torch.cat([model.encode_image(flat[i:i + chunk]) for i in range(0, len(flat), chunk)])
        perturbed = perturbed.view(n, b, -1)
    eps_norm = eps.flatten(2).norm(dim=-1)
    return reduce_terms(lipschitz_terms(clean, text, perturbed, eps_norm), scaling)
