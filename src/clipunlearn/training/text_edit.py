"""A closed-form edit of the text tower's projection: some prompts move to given embeddings, the rest stay.

The text tower ends in one linear map, the projection ``P`` (width × embedding) from the pooled token
feature ``x`` of a prompt to its embedding ``x P``. Moving a set of prompts (features ``X_m``) to target
embeddings ``T`` while every kept prompt (features ``X_k``) keeps its embedding is a least-squares
problem with a closed-form answer, as in closed-form concept editing of text-conditioned models:

    P' = argmin  ‖X_m P' − T‖² / n_m  +  w · ‖X_k P' − X_k P‖² / n_k  +  r · ‖P' − P‖²
       = (X_mᵀX_m / n_m + w · X_kᵀX_k / n_k + r I)⁻¹ (X_mᵀT / n_m + w · X_kᵀX_k P / n_k + r P)

``w`` (``keep_weight``) weighs a kept prompt's change against a moved prompt's miss, each term a mean over
its prompts; ``r`` (``ridge``) is a multiple of the mean diagonal of the two data terms, so it does not
depend on the features' scale. Nothing is trained: one solve of a width × width system.
"""
from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError
from ..models.factory import Clip

#: the name of the tensor :func:`edit_text_projection` changes
PROJECTION = "text_projection"


def _projection(clip: Clip) -> nn.Parameter:
    proj = getattr(clip.model, PROJECTION, None)
    if not isinstance(proj, nn.Parameter) or proj.dim() != 2:
        raise TrainingError(f"The text tower of {clip.arch} has no projection matrix ({PROJECTION}) to edit "
                            "(a text tower from Hugging Face, or none); use a text side that trains "
                            "(text_side='train') or the image side instead.")
    return proj


@contextmanager
def _without_projection(clip: Clip) -> Iterator[None]:
    """The model's ``encode_text`` returns the pooled feature before the projection while inside."""
    model = clip.model
    proj = _projection(clip)
    model.text_projection = None
    try:
        yield
    finally:
        model.text_projection = proj


def pooled_text(clip: Clip, prompts: Sequence[str], batch: int = 256) -> torch.Tensor:
    """The text tower's pooled feature of each prompt, before its projection (n × width)."""
    with torch.no_grad(), _without_projection(clip):
        return torch.cat([clip.model.encode_text(clip.tokenize(list(prompts[i:i + batch]))).float()
                          for i in range(0, len(prompts), batch)])


@dataclass(frozen=True)
class ProjectionEdit:
    """What :func:`edit_text_projection` did: the moved prompts' mean cosine to their targets before and
    after, the kept prompts' mean cosine to their own embeddings before the edit (after it), and the
    relative change of the projection (Frobenius norm of the change over the original's)."""

    moved_cos_before: float
    moved_cos_after: float
    kept_cos_after: float
    relative_change: float


def edit_text_projection(clip: Clip, moved: Sequence[str], targets: torch.Tensor, kept: Sequence[str],
                         keep_weight: float, ridge: float = 1e-3) -> ProjectionEdit:
    """Replace the text projection by the least-squares answer above (in place): prompts ``moved`` embed
    as close as they can to ``targets`` (one row each), prompts ``kept`` as close as they can to where
    they embedded before."""
    if len(moved) == 0 or len(moved) != len(targets):
        raise TrainingError(f"edit_text_projection needs one target per moved prompt, got {len(moved)} prompts "
                            f"and {len(targets)} targets.")
    if keep_weight < 0 or ridge <= 0:
        raise TrainingError(f"edit_text_projection needs keep_weight >= 0 and ridge > 0, got {keep_weight} and {ridge}.")
    with torch.no_grad():
        proj = _projection(clip)
        p = proj.detach().double().cpu()
        xm = pooled_text(clip, moved).double().cpu()
        t = targets.detach().double().cpu()
        a = xm.T @ xm / len(xm)
        b = xm.T @ t / len(xm)
        xk = pooled_text(clip, kept).double().cpu() if len(kept) else None
        if xk is not None:
            gram = xk.T @ xk / len(xk)
            a = a + keep_weight * gram
            b = b + keep_weight * gram @ p
        r = ridge * float(torch.diagonal(a).mean())
        new = torch.linalg.solve(a + r * torch.eye(len(a), dtype=a.dtype), b + r * p)
        cos_before = float(F.cosine_similarity(xm @ p, t, dim=-1).mean())
        cos_after = float(F.cosine_similarity(xm @ new, t, dim=-1).mean())
        kept_cos = float(F.cosine_similarity(xk @ new, xk @ p, dim=-1).mean()) if xk is not None else 1.0
        proj.copy_(new.to(proj))
        return ProjectionEdit(cos_before, cos_after, kept_cos, float((new - p).norm() / p.norm()))


__all__ = ["PROJECTION", "ProjectionEdit", "edit_text_projection", "pooled_text"]
