"""The L2 embedding regularisation loss of the Emb baseline (WACV'25 §5.1, Eq. 7-9).

For a synthetic image x of class t and a perturbation ε ~ N(0, σ²) in normalised pixel space:

    M = E_ε[ ‖f_img(x) − f_img(x+ε)‖₂ + ‖f_txt(t) − f_img(x+ε)‖₂ ] + α · ‖f_img(x) + f_txt(t)‖₂

with raw (not unit-norm) embeddings, as the Lipschitz loss (``training.lipschitz``) but without the
division by ‖ε‖ and with the α term added. f_img(x+ε) is computed without gradient, so the model is
pushed through f_img(x) and f_txt(t). The expectation is the mean over images and draws; the α
term does not depend on ε and is the mean over images.
"""
from __future__ import annotations

import torch

from ..models.factory import Clip
from .lipschitz import PERTURBATIONS


def embedding_terms(clean: torch.Tensor, text: torch.Tensor, perturbed: torch.Tensor,
                    alpha: float = 1.0) -> torch.Tensor:
    """M from features: clean B×D, text B×D, perturbed N×B×D (N draws) -> a scalar."""
    a = (clean.unsqueeze(0) - perturbed).norm(dim=-1)
    b = (text.unsqueeze(0) - perturbed).norm(dim=-1)
    return (a + b).mean() + alpha * (clean + text).norm(dim=-1).mean()


@torch.no_grad()
def perturbed_image_features(clip: Clip, x_norm: torch.Tensor, eps: torch.Tensor, perturbation: str = "paper",
                             chunk: int = 512) -> torch.Tensor:
    """Raw image features (N×B×D) of normalised images ``x_norm`` (B×3×H×W) plus draws ``eps``
    (N×B×3×H×W), in chunks, without gradient. ``perturbation="official"`` clamps x + ε to the
    [min, max] of the whole normalised batch, as the official Lip code does."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; use one of {PERTURBATIONS}")
    n, b = eps.shape[:2]
    x0 = x_norm.detach().unsqueeze(0)
    shifted = x0 + eps.to(x_norm.device, x_norm.dtype)
    if perturbation == "official":
        shifted = shifted.clamp(float(x0.min()), float(x0.max()))
    flat = shifted.flatten(0, 1)
    feats = torch.cat([clip.model.encode_image(flat[i:i + chunk]) for i in range(0, len(flat), chunk)])
    return feats.view(n, b, -1)


def embedding_loss(clip: Clip, pixels: torch.Tensor, prompt_tokens: torch.Tensor, eps: torch.Tensor,
                   alpha: float = 1.0, perturbation: str = "paper", chunk: int = 512) -> torch.Tensor:
    """M for images ``pixels`` ([0, 1], B×3×H×W), their class prompts (tokens, B×L) and draws
    ``eps`` (N×B×3×H×W, normalised units)."""
    x_norm = clip.normalize(pixels)
    perturbed = perturbed_image_features(clip, x_norm, eps, perturbation, chunk)
    clean = clip.model.encode_image(x_norm)
    text = clip.model.encode_text(prompt_tokens)
    return embedding_terms(clean, text, perturbed, alpha)
