"""FT: fine-tuning on the retain set (Golatkar et al. 2020; Warnecke et al. 2023), a baseline of
CVPR'25 ("Targeted forgetting of image subgroups in CLIP", §5.1, App. A.1).

Reads like the paper: "FT. We directly fine-tune the image encoder on the retaining dataset. We use
the Adam optimizer ..."; "we use the probability from the zero-shot classification task as a
surrogate for the classification logits. In these approaches, the text prompt is provided by the
superclass names in both the forgetting and retain sets" (§5.1).

    retain images = real train images to keep, labelled by the request's (coarse) class names
    for each of up to 2 epochs, for each shuffled mini-batch:
        minimise CE(100 · cos(f_img(x), f_txt(template of c)) over the request's classes, label)
        one Adam step on every tensor of the image tower (the text tower is fixed)
    measure the retain images' accuracy after each epoch; every epoch is kept

Forgetting comes only from what fine-tuning on the rest overwrites: the forget images are never
seen. Settings (:class:`~clipunlearn.training.finetune.FineTuneConfig`): Adam, up to 2 epochs
(§5.1); the paper's learning rate and batch size are lost from our copy: lr 1e-5 and batches of 64
are our choices. Data, our choice as amns-retain: 10 retain images per class (``retain_per_class``).
``default`` equals ``paper``: no sweep has been run yet.
Measured once on the trained mini-rn (caltech101 "motorbike", seed 0, ``paper``; target / other
caltech101 classes / cifar10 before 0.80 / 0.44 / 0.54): after 0.65 / 0.44 / 0.53 (990 retain images).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..errors import TrainingError
from ..training import Trace
from ..training.finetune import (
    FineTuneConfig,
    accuracy_measure,
    class_features,
    fine_tune_signed,
)
from .base import Method, register_method
from .context import ForgetContext


@dataclass
class FTConfig(FineTuneConfig):
    retain_per_class: int | None = 10  # real train images per class to keep; None: all


@register_method
class FT(Method):
    name = "ft"
    title = "Fine-tune the image tower on real retain images with the zero-shot cross-entropy (CVPR'25 baseline)"
    config_cls = FTConfig
    needs = frozenset({"real_retain"})
    presets = {"paper": {}, "default": {}}

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip, request = self.config, ctx.clip, ctx.request
        retain = ctx.over_request_classes(ctx.real_retain(per_class=cfg.retain_per_class))
        if len(retain) == 0:
            raise TrainingError(f"ft needs retain images; the request ({request.dataset}, forgetting "
                                f"{request.class_names}) has no real retain image. Give it classes to keep.")
        text = class_features(clip, request.classnames, request.template)
        measure = accuracy_measure(clip, {"retain": (retain.images, retain.labels)}, request.classnames,
                                   request.template)
        signs = torch.ones(len(retain), dtype=torch.long)
        return fine_tune_signed(clip, cfg, retain.images, retain.labels.long(), signs, text, ctx.generator(),
                                ctx.epochs(cfg.max_epochs), measure, ctx.knobs.progress)
