"""Fine-tuning CLIP's image tower on labelled images with the zero-shot cross-entropy, each image's
loss signed: the CVPR'25 baselines (§5.1, App. A.1) built from the one loop.

    logits = 100 · cos(f_img(x), t_c) over the request's class prompts t_c (fixed: the text tower
             does not train, so the class features are computed once)
    loss   = mean over the mini-batch of s_i · CE(logits_i, y_i)
             s_i = +1: learn the image (FT on retain images), −1: unlearn it (GA on forget images)

"we use the probability from the zero-shot classification task as a surrogate for the classification
logits ... the text prompt is provided by the superclass names" and "the Adam optimizer with a small
learning rate for up to 2 epochs" (CVPR'25 §5.1); "We directly fine-tune the image encoder" (App. A.1).
:class:`FineTuneConfig` holds those shared settings; :func:`image_tower_loop` is the loop over
shuffled mini-batches that every such baseline runs (``lip-foster`` with its own loss).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..evaluation.zeroshot import image_scores
from ..models.factory import Clip
from .loop import (
    KeepRule,
    Loop,
    MeasureFn,
    OptimConfig,
    Stage,
    StopRule,
    Trace,
    run_loop,
)
from .params import tower_tensors
from .relabel import ShuffledBatches, zero_shot_logits


@dataclass
class FineTuneConfig:
    """The CVPR'25 baselines' shared settings. The paper's learning rate is lost from our copy ("a small
    learning rate"): 1e-5 is our choice, as amns's "small learning rate"; Adam with torch's defaults
    (the paper names only Adam); up to 2 epochs (§5.1); the batch size is lost too: 64, as amns-retain."""

    lr: float = 1e-5
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    max_epochs: int = 2
    batch_size: int = 64
    eligibility: str = "all"  # image-tower tensors: "all" (the whole image encoder), "catalogue" or "official"


@torch.no_grad()
def class_features(clip: Clip, classnames: list[str], template: str) -> torch.Tensor:
    """Unit-norm text features (C×D) of ``template`` filled with each class name."""
    return F.normalize(clip.model.encode_text(clip.tokenize([template.format(c) for c in classnames])), dim=-1)


def signed_prompt_ce(clip: Clip, pixels: torch.Tensor, labels: torch.Tensor, signs: torch.Tensor,
                     text: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean_i s_i · CE_i, the unsigned CE_i) for images ``pixels`` ([0, 1], B×3×H×W), their labels
    and signs (±1) and unit-norm class features ``text`` (C×D)."""
    logits = zero_shot_logits(clip, pixels, text)
    ce = F.cross_entropy(logits, labels.to(logits.device), reduction="none")
    return (signs.to(ce) * ce).mean(), ce.detach()


def image_tower_loop(clip: Clip, cfg: FineTuneConfig, n_images: int, gen: torch.Generator, max_epochs: int,
                     stop: StopRule | None = None) -> tuple[Loop, ShuffledBatches]:
    """The loop of a CVPR'25 baseline: every tensor of the image tower that ``cfg.eligibility`` allows,
    Adam, shuffled mini-batches of ``n_images`` (seeded by ``gen``), every epoch kept."""
    towers = tower_tensors(clip.model, cfg.eligibility, image=True, text=False)
    batches = ShuffledBatches(n_images, cfg.batch_size, gen)
    loop = Loop(towers=towers, optim=OptimConfig("adam", cfg.lr, cfg.betas, cfg.adam_eps, cfg.weight_decay),
                max_epochs=max_epochs, steps_per_epoch=batches.steps, selection="all", keep=KeepRule(),
                stop=stop or StopRule(), batch_size=cfg.batch_size)
    return loop, batches


def fine_tune_signed(clip: Clip, cfg: FineTuneConfig, images: torch.Tensor, labels: torch.Tensor,
                     signs: torch.Tensor, text: torch.Tensor, gen: torch.Generator, max_epochs: int,
                     measure: MeasureFn | None = None, progress: Callable[[dict], None] | None = None,
                     stop: StopRule | None = None) -> Trace:
    """Fine-tune the image tower on ``images`` with :func:`signed_prompt_ce` (see the module
    docstring); each epoch reports the mean unsigned CE of its mini-batches (``ce``)."""
    if not len(images) == len(labels) == len(signs):
        raise TrainingError(f"Got {len(images)} images, {len(labels)} labels and {len(signs)} signs; one each.")
    if not bool(((signs == 1) | (signs == -1)).all()):
        raise TrainingError("Each image's sign must be +1 (learn it) or -1 (unlearn it).")
    loop, batches = image_tower_loop(clip, cfg, len(images), gen, max_epochs, stop)

    def step(stage: Stage, epoch: int, s: int):
        idx = batches.indices(s)
        loss, ce = signed_prompt_ce(clip, images[idx].to(clip.device), labels[idx], signs[idx], text)
        return loss, {"ce": float(ce.mean())}

    trace = run_loop(clip, loop, step, measure, progress)
    trace.info.update({"train_images": len(images), "unlearned_images": int((signs == -1).sum()),
                       "steps_per_epoch": batches.steps})
    return trace


def accuracy_measure(clip: Clip, sets: Mapping[str, tuple[torch.Tensor, torch.Tensor]], classnames: list[str],
                     template: str) -> MeasureFn:
    """A measure for the loop: for each named set of (images, labels), ``{name}_acc``, the zero-shot
    accuracy over ``classnames`` with a classifier rebuilt from the model as it is; for the set named
    ``forget`` also ``target_prob``, the mean probability of each image's label."""
    def measure() -> dict[str, float]:
        out = {}
        for name, (images, labels) in sets.items():
            acc, prob = image_scores(clip, images, labels, classnames, [template])
            out[f"{name}_acc"] = acc
            if name == "forget":
                out["target_prob"] = prob
        return out

    return measure
