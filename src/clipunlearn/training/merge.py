"""Weight averaging (forget-remind-restore, CVPR'25 §4.2-4.3 and App. A.2): an exponential moving
average of the weights while reminding, a soup of the result with the original model, and the merge
of several single-class forget models into one.

    EMA (Eq. 5):     θ_ema ← β · θ_ema + (1 − β) · θ           θ_ema starts at the model's values
    soup (Eq. 6):    θ_α = α · θ_original + (1 − α) · θ_tuned   α: the ORIGINAL model's share, so a
                     larger α restores more, and too large an α brings the forgotten subgroup back
                     (paper Table 5: α = 0.9); :func:`choose_soup` picks α on a calibration score
    merge (A.2):     θ = θ_0 + mean_i (θ_i − θ_0)   or   θ_0 + Σ_i (θ_i − θ_0)

State dicts are mappings of names to tensors (e.g. ``{k: v.detach().clone() for k, v in
model.state_dict().items()}``). Only floating tensors are averaged; the others (e.g. batch norm's
``num_batches_tracked``) are taken from the tuned model (soup) or the original one (merge).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn

from ..errors import TrainingError
from ..models.factory import Clip

State = Mapping[str, torch.Tensor]
MERGES = ("mean", "sum")


class EMA:
    """An exponential moving average of named parameters (Eq. 5), started at the model's values.

    ``names``: the parameters to average (default: every parameter of ``model``). Call
    :meth:`update` after each optimiser step and :meth:`copy_to` to put the averages into a model.
    """

    def __init__(self, model: nn.Module, beta: float, names: Sequence[str] | None = None):
        if not 0 <= beta <= 1:
            raise TrainingError(f"The EMA decay beta must be in [0, 1], got {beta}.")
        params = dict(model.named_parameters())
        names = list(params) if names is None else list(names)
        unknown = [n for n in names if n not in params]
        if unknown:
            raise TrainingError(f"The EMA names {len(unknown)} tensors the model does not have (e.g. {unknown[:3]}).")
        self.beta = beta
        self.values = {n: params[n].detach().clone() for n in names}

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """θ_ema ← β · θ_ema + (1 − β) · θ for every averaged tensor, θ the model's current value."""
        params = dict(model.named_parameters())
        for n, avg in self.values.items():
            avg.mul_(self.beta).add_(params[n].detach().to(avg.dtype), alpha=1 - self.beta)

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Write the averages into ``model``'s parameters."""
        params = dict(model.named_parameters())
        for n, avg in self.values.items():
            params[n].copy_(avg)


def _check_same_keys(first: State, other: State, names: tuple[str, str]) -> None:
    """A one-line error if ``other`` has other keys or shapes than ``first``; ``names``: what they are."""
    a, b = names
    only_first = [k for k in first if k not in other]
    only_other = [k for k in other if k not in first]
    if only_first or only_other:
        raise TrainingError(
            f"The {a} and {b} state dicts do not match: {len(only_first)} tensors only in the {a} "
            f"(e.g. {only_first[:3]}), {len(only_other)} only in the {b} (e.g. {only_other[:3]}); "
            "pass state dicts of one architecture with the same tensors."
        )
    shaped = [k for k in first if first[k].shape != other[k].shape]
    if shaped:
        k = shaped[0]
        raise TrainingError(f"The {a} and {b} state dicts do not match: {len(shaped)} tensors of another shape "
                            f"(e.g. {k}: {tuple(first[k].shape)} and {tuple(other[k].shape)}).")


def soup(original_state: State, tuned_state: State, alpha: float) -> dict[str, torch.Tensor]:
    """α · original + (1 − α) · tuned for every floating tensor, the tuned tensor for the others.

    ``alpha`` is the share of the ORIGINAL model, in [0, 1]: 0 gives the tuned model, 1 the original;
    a larger α restores more of what the tuning changed, the forgetting included.
    """
    if not 0 <= alpha <= 1:
        raise TrainingError(f"The soup coefficient alpha must be in [0, 1], got {alpha}.")
    _check_same_keys(original_state, tuned_state, ("original", "tuned"))
    out = {}
    for k, tuned in tuned_state.items():
        original = original_state[k].to(tuned.device, tuned.dtype)
        if tuned.is_floating_point() and not torch.equal(original, tuned):
            out[k] = alpha * original + (1 - alpha) * tuned
        else:  # a tensor the tuning left alone stays bit for bit (α·w + (1 − α)·w rounds off w in floats)
            out[k] = tuned.clone()
    return out


def choose_soup(clip: Clip, original_state: State, tuned_state: State, alphas: Sequence[float],
                score_fn: Callable[[], float]) -> tuple[float, dict[float, float]]:
    """Load the soup of each α in turn into ``clip.model``, score it by ``score_fn()`` (higher is
    better, e.g. zero-shot accuracy on a calibration set), and leave the best soup loaded. The state
    dicts may hold only some of the model's tensors (e.g. the changed ones); the others stay as they are.

    Returns (best α, {α: score}); among equal scores the smaller α wins, which keeps more of the
    forgetting.
    """
    if not alphas:
        raise TrainingError("choose_soup needs at least one coefficient alpha to try.")
    unknown = [k for k in tuned_state if k not in clip.model.state_dict()]
    if unknown:
        raise TrainingError(f"{len(unknown)} tensors of the state dicts are not in the {clip.arch} model "
                            f"(e.g. {unknown[:3]}); pass state dicts of this model.")
    scores: dict[float, float] = {}
    for alpha in alphas:
        clip.model.load_state_dict(soup(original_state, tuned_state, alpha), strict=False)
        score = float(score_fn())
        if not math.isfinite(score):
            raise TrainingError(f"The soup score of alpha={alpha} is {score}; score_fn must return a finite number.")
        scores[float(alpha)] = score
    best = max(sorted(scores), key=lambda a: scores[a])  # max keeps the first of equal scores: the smallest α
    clip.model.load_state_dict(soup(original_state, tuned_state, best), strict=False)
    return best, scores


def merge_models(original_state: State, states: Sequence[State], how: str = "mean") -> dict[str, torch.Tensor]:
    """θ_0 + mean (``how="mean"``) or sum (``"sum"``) of the task vectors θ_i − θ_0 of ``states``, for
    every floating tensor; the other tensors are the original's (App. A.2: models that each forget one
    class merged into one that forgets all of them)."""
    if how not in MERGES:
        raise TrainingError(f"Unknown merge {how!r}; use one of {MERGES}.")
    if not states:
        raise TrainingError("merge_models needs at least one model to merge.")
    for i, state in enumerate(states):
        _check_same_keys(original_state, state, ("original", f"merged model {i}'s"))
    out = {}
    for k, base in original_state.items():
        if not base.is_floating_point():
            out[k] = base.clone()
            continue
        total = torch.zeros_like(base)
        for state in states:
            total += state[k].to(base.device, base.dtype) - base
        out[k] = base + (total / len(states) if how == "mean" else total)
    return out
