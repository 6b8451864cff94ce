"""Fisher forgetting (Golatkar et al., CVPR 2020, "Eternal sunshine of the spotless net"), a baseline
of CVPR'25 ("Targeted forgetting of image subgroups in CLIP", §5.1, App. A.1).

Reads like the paper: "Fisher. We compute the Fisher Information Matrix on the forgetting dataset and
perturb the model parameters with noise sampled from a Gaussian distribution, where the variance is
derived from the Fisher Information Matrix"; "the variance scaling factor in Fisher is set to 0.2"
(§5.1). The zero-shot probabilities over the (coarse) class names stand in for the classifier.

    forget images = real train images to forget, labelled by the request's (coarse) class names
    F(θ)  = empirical diagonal Fisher of CE(100 · cos(f_img(x), f_txt(template of c)), label) on the
            forget images, per image (``training/fisher.py``), for every tensor of the image tower
    σ²(θ) = α · F(θ) / max F                   (α = 0.2; σ² ∈ [0, α])
    θ    ← θ + σ(θ) · n,  n ~ N(0, 1)          (seeded; no training)

The formula is our choice, the paper's is not in our copy. Golatkar et al. add noise of covariance
∝ F_r^(−1/2), F_r the Fisher of the data to KEEP (clamped), so that whatever the kept data does not
pin down is scrambled; CVPR'25 computes the Fisher on the FORGET set instead, and we read "variance
derived from" it as: the more the forget images' loss depends on a weight, the more noise it gets.
Normalising by the largest element makes α the variance of the most forget-sensitive weight and
keeps the noise independent of the loss's scale. The Fisher is per image (exact empirical Fisher,
``fisher_batch_size=1``), over every real forget image (``forget_per_class=None``), on the whole
image encoder (as the learned baselines: "We directly fine-tune the image encoder"). The paper finds
this baseline destroys the model (Tab. 1: every column near chance). ``default`` equals ``paper``.
Measured once on the trained mini-rn (caltech101 "motorbike", seed 0, ``paper``; target / other
caltech101 classes / cifar10 before 0.80 / 0.44 / 0.54): after 0.00 / 0.01 / 0.10 (‖Δθ‖/‖θ‖ =
0.067), as in the paper.

The trace has the state before (epoch 0) and after the perturbation (epoch 1): the forget images'
accuracy and label probability, and how large the change is (``noise_rms``: root-mean-square noise
over all perturbed elements; ``relative_change``: ‖Δθ‖ / ‖θ‖ over the image tower).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..training import Trace, tower_tensors
from ..training.finetune import accuracy_measure, class_features
from ..training.fisher import diagonal_fisher
from ..training.relabel import zero_shot_logits
from .base import Method, register_method
from .context import ForgetContext


@dataclass
class FisherConfig:
    scale: float = 0.2  # α: the noise variance of the weight with the largest Fisher (§5.1: 0.2)
    fisher_batch_size: int = 1  # images per squared gradient; 1: the exact empirical Fisher
    forget_per_class: int | None = None  # real train images per forgotten class; None: all
    eligibility: str = "all"  # image-tower tensors: "all" (the whole image encoder), "catalogue" or "official"


def fisher_noise_std(fisher: dict[str, torch.Tensor], scale: float) -> dict[str, torch.Tensor]:
    """σ(θ) = sqrt(scale · F(θ) / max F) for each tensor (zeros if the Fisher is 0 everywhere)."""
    if scale < 0 or not math.isfinite(scale):
        raise TrainingError(f"scale (the noise variance at the largest Fisher) must be a number >= 0, got {scale}.")
    peak = max(float(f.max()) for f in fisher.values())
    if not math.isfinite(peak):
        raise TrainingError("The Fisher information is not finite; no noise can be derived from it.")
    if peak <= 0:
        return {n: torch.zeros_like(f) for n, f in fisher.items()}
    return {n: (scale * f / peak).sqrt() for n, f in fisher.items()}


@register_method
class FisherForgetting(Method):
    name = "fisher"
    title = "Fisher forgetting: Gaussian noise on the image tower scaled by the forget images' Fisher (CVPR'25 baseline)"
    config_cls = FisherConfig
    needs = frozenset({"real_forget"})
    presets = {"paper": {}, "default": {}}

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip, request = self.config, ctx.clip, ctx.request
        t0 = time.time()
        forget = ctx.over_request_classes(ctx.real_forget(per_class=cfg.forget_per_class))
        if len(forget) == 0:
            raise TrainingError(f"fisher needs forget images; the request ({request.dataset}, {request.class_names}) "
                                "has no real forget image. Check the classes and the data root's train split.")
        names = tower_tensors(clip.model, cfg.eligibility, image=True, text=False)["image"]
        text = class_features(clip, request.classnames, request.template)
        measure = accuracy_measure(clip, {"forget": (forget.images, forget.labels)}, request.classnames,
                                   request.template)
        trace = Trace(info={"forget_images": len(forget), "fisher_tensors": len(names)})
        trace.steps.append({"epoch": 0, **measure(), "kept": None})

        def loss_fn(pixels: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(zero_shot_logits(clip, pixels, text), labels)

        with clip.fast_conv_layout():
            fisher = diagonal_fisher(clip.model, names, loss_fn, forget.images, forget.labels.long(),
                                     cfg.fisher_batch_size)
        std = fisher_noise_std(fisher, cfg.scale)
        gen = ctx.generator()
        params = dict(clip.model.named_parameters())
        changed, sq_noise, sq_weight, n_noisy = [], 0.0, 0.0, 0
        with torch.no_grad():
            for name in names:
                p = params[name]
                noise = torch.randn(p.shape, generator=gen).to(p) * std[name].to(p)
                sq_weight += float(p.double().pow(2).sum())
                if bool((std[name] > 0).any()):
                    p.add_(noise)
                    changed.append(name)
                    sq_noise += float(noise.double().pow(2).sum())
                    n_noisy += int((std[name] > 0).sum())
        trace.steps.append({"epoch": 1, **measure(), "kept": bool(changed), "selected": changed,
                            "noise_rms": math.sqrt(sq_noise / max(1, n_noisy)),
                            "relative_change": math.sqrt(sq_noise / max(sq_weight, 1e-30))})
        trace.info.update({"fisher_max": max(float(f.max()) for f in fisher.values()),
                           "fisher_mean": sum(float(f.double().sum()) for f in fisher.values())
                           / max(1, sum(f.numel() for f in fisher.values())),
                           "perturbed_elements": n_noisy})
        trace.changed_tensors, trace.kept_any_step = changed, bool(changed)
        trace.stopped_because = ("one perturbation, no training" if changed
                                 else "no perturbation: the noise scale or the forget images' Fisher is 0")
        trace.seconds = time.time() - t0
        if ctx.knobs.progress is not None:
            ctx.knobs.progress(trace.steps[-1])
        return trace
