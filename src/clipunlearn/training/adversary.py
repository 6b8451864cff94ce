"""Losses for forgetting that should survive relearning: scattering a class's image features, and a
first-order simulation of a relearning attack to train against.

* :func:`scatter_loss`: for images of a class to forget, push each image's probability of its class
  down with a bounded loss, −log(1 − p(class)), and spread the images' features apart (their mean
  pairwise cosine), so that they form no cluster a few steps of fine-tuning could map back onto the
  class, instead of moving them together onto another prompt.
* :class:`SimulatedRelearning`: a few Adam steps of the relearning attack (the zero-shot cross-entropy
  toward the class, on the images to forget) taken on the trainable tensors in place; the forget loss
  is then measured *after* the attack, its gradient at the attacked weights is kept, and the weights
  are put back. Added to the method's loss as ⟨θ, g⟩ (its gradient is g), it moves the weights so that
  the class stays down after the attack: the first-order meta-learning rule (as first-order MAML,
  and the tamper-resistance training of TAR / meta-unlearning), at the cost of ``steps`` + 1 extra
  forward and backward passes per step.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..evaluation.zeroshot import LOGIT_SCALE
from ..models.factory import Clip
from ..precision import outside_autocast


def scatter_loss(clip: Clip, pixels: torch.Tensor, labels: torch.Tensor, text: torch.Tensor,
                 spread: float = 1.0) -> tuple[torch.Tensor, dict[str, float]]:
    """mean_i −log(1 − p_i(y_i)) + ``spread`` · mean_{i≠j} cos(f_i, f_j) for images ``pixels`` of the
    classes ``labels`` (rows of ``text``) to forget; returns the loss and its two parts. ``text`` may
    hold several prompt templates' class weights (T×C×D): p is then taken under each template and the
    first term averaged over them, so the class goes down whichever way it is asked for."""
    weights = text if text.dim() == 3 else text.unsqueeze(0)
    feats = clip.encode_image(pixels, normalize=True)
    probs = F.softmax(LOGIT_SCALE * torch.einsum("bd,tcd->tbc", feats, weights.to(feats)), dim=2)
    index = labels.view(1, -1, 1).to(probs.device).expand(len(weights), -1, 1)
    p = probs.gather(2, index).squeeze(2)
    away = -torch.log1p(-p.clamp(max=1 - 1e-6)).mean()
    n = len(feats)
    if n > 1:
        sim = feats @ feats.T
        cluster = (sim.sum() - sim.diagonal().sum()) / (n * (n - 1))
    else:
        cluster = feats.new_zeros(())
    return away + spread * cluster, {"forget_prob": float(p.mean().detach()), "cluster": float(cluster.detach())}


class SimulatedRelearning:
    """The relearning attack simulated on the trainable tensors of ``clip`` (see the module docstring)."""

    def __init__(self, steps: int, lr: float, images: int):
        if steps < 1:
            raise TrainingError(f"A simulated relearning attack needs at least 1 step, got {steps}.")
        if not lr > 0:
            raise TrainingError(f"The simulated attack's learning rate must be positive, got {lr}.")
        if images < 1:
            raise TrainingError(f"The simulated attack needs at least 1 image, got {images}.")
        self.steps, self.lr, self.images = steps, lr, images

    def surrogate(self, clip: Clip, pixels: torch.Tensor, labels: torch.Tensor, text: torch.Tensor,
                  after: Callable[[], torch.Tensor], gen: torch.Generator) -> tuple[torch.Tensor, dict[str, float]]:
        """Attack with ``self.images`` of ``pixels`` (a seeded draw), measure ``after()`` (the loss the
        method wants low after the attack), put the weights back and return a term whose value is 0 and
        whose gradient is the post-attack gradient with the post-attack loss and the class's probability."""
        params = [p for p in clip.model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError("The simulated relearning attack found no trainable tensor.")
        saved = [p.detach().clone() for p in params]
        idx = torch.randperm(len(pixels), generator=gen)[:self.images]
        x, y = pixels[idx], labels[idx].to(pixels.device)
        inner = torch.optim.Adam(params, lr=self.lr)
        for _ in range(self.steps):
            feats = clip.encode_image(x, normalize=True)
            loss = F.cross_entropy(LOGIT_SCALE * feats @ text.T.to(feats), y).float()
            with outside_autocast(x.device):  # the attack's own step, like the loop's, outside autocast
                inner.zero_grad(set_to_none=True)
                loss.backward()
                inner.step()
        post = after().float()
        with outside_autocast(x.device):
            grads = torch.autograd.grad(post, params, allow_unused=True)
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)
                p.grad = None
        # (θ − θ.detach()) · g is 0 in value (the loop's logged loss stays the method's own) and g in gradient
        term = sum(((p - p.detach()) * g.detach()).sum() for p, g in zip(params, grads) if g is not None)
        return term, {"after_attack": float(post.detach())}


__all__ = ["SimulatedRelearning", "scatter_loss"]
