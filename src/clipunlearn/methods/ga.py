"""GA: gradient ascent on the forget set (Thudi et al. 2022), a baseline of CVPR'25 ("Targeted
forgetting of image subgroups in CLIP", §5.1, App. A.1).

Reads like the paper: "GA. We perform the gradient ascent on the forgetting dataset ... We use the
Adam optimizer"; the zero-shot probabilities over the (coarse) class names stand in for the
classification logits (§5.1).

    forget images = real train images to forget, labelled by the request's (coarse) class names
    for each of up to 2 epochs, for each shuffled mini-batch:
        maximise CE(100 · cos(f_img(x), f_txt(template of c)) over the request's classes, label),
        i.e. minimise −CE; one Adam step on every tensor of the image tower (the text tower is fixed)
    measure the forget images' accuracy and label probability after each epoch; every epoch is kept
    stop early once the forget accuracy is at most ``goal_acc`` (None: never)

Divergence: the logits are 100 × a cosine, so the CE of an image cannot exceed ~200 + log C and the
loss stays finite; Adam bounds each step by the learning rate. If the loss still became NaN or
infinite, the loop restores the original model and says so. ``goal_acc`` is the guard against
ascending further than needed: it stops after the first epoch that has forgotten enough.

Settings (:class:`~clipunlearn.training.finetune.FineTuneConfig`): Adam, up to 2 epochs (§5.1);
the paper's learning rate is lost from our copy: 1e-5 is our choice, batches of 64 too. Every real
forget image (``forget_per_class=None``). ``default`` equals ``paper``: no sweep has been run yet.
Measured once on the trained mini-rn (caltech101 "motorbike", seed 0, ``paper``; target / other
caltech101 classes / cifar10 before 0.80 / 0.44 / 0.54): after 0.70 / 0.43 / 0.53 (60 forget images: 2 steps in all).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import TrainingError
from ..training import StopRule, Trace
from ..training.finetune import (
    FineTuneConfig,
    accuracy_measure,
    class_features,
    fine_tune_signed,
)
from .base import Method, register_method
from .context import ForgetContext


@dataclass
class GAConfig(FineTuneConfig):
    forget_per_class: int | None = None  # real train images per forgotten class; None: all
    goal_acc: float | None = None  # stop after an epoch whose forget accuracy is <= this; None: never early


@register_method
class GA(Method):
    name = "ga"
    title = "Gradient ascent on real forget images: maximise their zero-shot cross-entropy (CVPR'25 baseline)"
    config_cls = GAConfig
    needs = frozenset({"real_forget"})
    presets = {"paper": {}, "default": {}}

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip, request = self.config, ctx.clip, ctx.request
        forget = ctx.over_request_classes(ctx.real_forget(per_class=cfg.forget_per_class))
        if len(forget) == 0:
            raise TrainingError(f"ga needs forget images; the request ({request.dataset}, {request.class_names}) "
                                "has no real forget image. Check the classes and the data root's train split.")
        text = class_features(clip, request.classnames, request.template)
        measure = accuracy_measure(clip, {"forget": (forget.images, forget.labels)}, request.classnames,
                                   request.template)
        signs = -torch.ones(len(forget), dtype=torch.long)
        return fine_tune_signed(clip, cfg, forget.images, forget.labels.long(), signs, text, ctx.generator(),
                                ctx.epochs(cfg.max_epochs), measure, ctx.knobs.progress,
                                StopRule("forget_acc", cfg.goal_acc))
