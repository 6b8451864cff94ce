"""The Lipschitz forgetting loss of WACV'25 Eq. 4-5, all draws in one batch.

For a synthetic image x of class t and a perturbation ε ~ N(0, σ²) in normalised pixel space:

    k = (‖f_img(x) − f_img(x+ε)‖ + ‖f_txt(t) − f_img(x+ε)‖) / ‖ε‖

with raw (not unit-norm) embeddings. f_img(x+ε) is computed without gradient, so the model is
pushed through f_img(x) and f_txt(t). ``scaling="official"`` reproduces the official code's scale
(denominator 2‖ε‖, summed over images and draws, divided by 2N); ``"mean"`` is Eq. 5 as written
(the mean of k over images and draws).

:func:`image_lipschitz_loss` is Foster et al.'s image-tower version on real images, with the CVPR'25
term on the vector of cosine similarities to the class prompts (App. A.1 Eq. 7-8), the gradient
flowing through the perturbed images too (as Foster et al.'s ratio); both share
:func:`encode_perturbed`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..models.factory import Clip

SCALINGS = ("official", "mean")
PERTURBATIONS = ("paper", "official")


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


def lipschitz_loss(clip: Clip, pixels: torch.Tensor, prompts_tokens: torch.Tensor | None, eps: torch.Tensor,
                   scaling: str = "official", chunk: int = 512, perturbation: str = "paper",
                   text_eps: torch.Tensor | None = None) -> torch.Tensor:
    """The loss for images ``pixels`` ([0, 1], B×3×H×W), their class prompts (tokens, B×L) and draws
    ``eps`` (N×B×3×H×W, normalised units). Perturbed images are encoded in chunks without gradient.

    ``perturbation``: ``"paper"`` is Eq. 4 as written (x' = x + ε, denominator ‖ε‖); ``"official"``
    is the official code: x' = x + ε clamped to the [min, max] of the whole normalised batch, and
    the denominator is ‖x − x'‖ of the clamped x'. ``prompts_tokens=None`` drops the text term (the
    image tower alone, as Foster et al.). ``text_eps`` (N×B×L×D, token-embedding units) replaces the
    text term by its own Lipschitz ratio ‖f_txt(t) − f_txt(t + ε_t)‖ / ‖ε_t‖ (ablation
    TextEmbPerturb, App. B.6).
    """
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; use one of {PERTURBATIONS}")
    model = clip.model
    x_norm = clip.normalize(pixels)
    clean = model.encode_image(x_norm)
    perturbed, denom = encode_perturbed(model, x_norm, eps, chunk, perturbation)
    if prompts_tokens is None:
        return reduce_terms((clean.unsqueeze(0) - perturbed).norm(dim=-1) / denom, scaling)
    text = model.encode_text(prompts_tokens)
    if text_eps is None:
        return reduce_terms(lipschitz_terms(clean, text, perturbed, denom), scaling)
    image_k = (clean.unsqueeze(0) - perturbed).norm(dim=-1) / denom
    text_k = (text.unsqueeze(0) - encode_text_perturbed(model, prompts_tokens, text_eps, chunk)).norm(dim=-1)
    return reduce_terms(image_k + text_k / text_eps.flatten(2).norm(dim=-1), scaling)


def encode_perturbed(model: torch.nn.Module, x_norm: torch.Tensor, eps: torch.Tensor, chunk: int = 512,
                     perturbation: str = "paper", grad: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Raw image features of the perturbed images (N×B×D, in chunks) and ‖x − x′‖ (N×B) for images
    ``x_norm`` (normalised pixels, B×3×H×W) and draws ``eps`` (N×B×3×H×W); see :func:`lipschitz_loss`
    for ``perturbation``. The features carry the model's gradient only if ``grad`` (Lip's losses:
    never)."""
    if perturbation not in PERTURBATIONS:
        raise ValueError(f"unknown perturbation {perturbation!r}; use one of {PERTURBATIONS}")
    n, b = eps.shape[:2]
    with torch.no_grad():
        x0 = x_norm.detach().unsqueeze(0)
        shifted = x0 + eps.to(x_norm.device)
        if perturbation == "official":
            shifted = shifted.clamp(float(x0.min()), float(x0.max()))
            denom = (shifted - x0).flatten(2).norm(dim=-1)
        else:
            denom = eps.to(x_norm.device).flatten(2).norm(dim=-1)
        flat = shifted.flatten(0, 1)
    with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
        perturbed = torch.cat([model.encode_image(flat[i:i + chunk]) for i in range(0, len(flat), chunk)])
    return perturbed.view(n, b, -1), denom


def similarity_terms(clean: torch.Tensor, perturbed: torch.Tensor, text: torch.Tensor,
                     eps_norm: torch.Tensor) -> torch.Tensor:
    """‖s(x) − s(x′)‖ / ‖x − x′‖ for every draw and image (N×B), s(·) the vector of cosine
    similarities of an image feature to unit-norm class features ``text`` (C×D): clean B×D, perturbed
    N×B×D, eps_norm N×B (CVPR'25 App. A.1 Eq. 8)."""
    s_clean = F.normalize(clean, dim=-1) @ text.T
    s_perturbed = F.normalize(perturbed, dim=-1) @ text.T
    return (s_clean.unsqueeze(0) - s_perturbed).norm(dim=-1) / eps_norm


def image_lipschitz_loss(clip: Clip, pixels: torch.Tensor, eps: torch.Tensor, text: torch.Tensor | None = None,
                         chunk: int = 512, perturbation: str = "paper",
                         through_copies: bool = True) -> tuple[torch.Tensor, dict[str, float]]:
    """Foster et al.'s Lipschitz loss of the image tower, with CVPR'25's similarity term (App. A.1):
    the mean over draws and images of ‖f_img(x) − f_img(x′)‖ / ‖x − x′‖ (Eq. 7, raw features) plus,
    if unit-norm class features ``text`` (C×D) are given, the same ratio of the cosine-similarity
    vectors (Eq. 8, :func:`similarity_terms`). Returns the loss and the mean of each term.

    ``through_copies``: the gradient of the ratio flows through f_img(x′) as well as f_img(x)
    (Foster et al. minimise the ratio itself); False: the copies are fixed targets, as in Lip."""
    x_norm = clip.normalize(pixels)
    clean = clip.model.encode_image(x_norm)
    perturbed, denom = encode_perturbed(clip.model, x_norm, eps, chunk, perturbation, grad=through_copies)
    embedding = (clean.unsqueeze(0) - perturbed).norm(dim=-1) / denom
    parts = {"lipschitz_embedding": float(embedding.detach().mean())}
    if text is None:
        return embedding.mean(), parts
    similarity = similarity_terms(clean, perturbed, text, denom)
    parts["lipschitz_similarity"] = float(similarity.detach().mean())
    return (embedding + similarity).mean(), parts


@torch.no_grad()
def encode_text_perturbed(model: torch.nn.Module, tokens: torch.Tensor, text_eps: torch.Tensor,
                          chunk: int = 512) -> torch.Tensor:
    """Text features (N×B×D) of ``tokens`` (B×L) with ``text_eps`` (N×B×L×W) added to the token
    embeddings, through the model's own ``encode_text`` (a hook on its token embedding)."""
    n, b = text_eps.shape[:2]
    flat_eps = text_eps.to(tokens.device).flatten(0, 1)
    outputs = []
    for i in range(0, n * b, chunk):
        noise = flat_eps[i:i + chunk]
        rows = torch.arange(i, i + len(noise)) % b
        handle = model.token_embedding.register_forward_hook(lambda _m, _x, out, e=noise: out + e.to(out.dtype))
        try:
            outputs.append(model.encode_text(tokens[rows.to(tokens.device)]))
        finally:
            handle.remove()
    return torch.cat(outputs).view(n, b, -1)
