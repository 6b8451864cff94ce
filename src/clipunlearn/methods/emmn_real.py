"""EMMN as CVPR'25 runs it ("Targeted forgetting of image subgroups in CLIP", §5.1, App. A.1): the
error maximisation-minimisation of Chundawat et al. on REAL forget and retain images, jointly.

Reads like the paper: "EMMN. We jointly optimize on the forgetting dataset and the retaining dataset.
Specifically, we maximize the loss function value on the forgetting dataset and minimize the loss
function value on the retaining dataset ... We use the Adam optimizer".

    forget images = real train images to forget, labelled by the request's (coarse) class names
    retain images = real train images to keep, labelled the same way
    for each of up to 2 epochs, for each shuffled mini-batch of forget and retain images together:
        minimise mean_i s_i · CE(100 · cos(f_img(x_i), f_txt(template of c)), label_i),
        s_i = −1 for a forget image (its loss is maximised), +1 for a retain image
        one Adam step on every tensor of the image tower (the text tower is fixed)
    measure the forget and retain images' accuracies after each epoch; every epoch is kept

Why not a setting of ``emmn``: that method (WACV'25's zero-shot EMMN, after UNSIR) learns noise
images, MINIMISES the loss of error-maximising noise labelled as the forgotten class (impair) and
then repairs on error-minimising noise, both towers; this one learns no noise, maximises the loss of
real forget images in the same single phase as it minimises the loss of real retain images, image
tower only. A switch would leave most of either config unused and split ``run`` in two; what the
two share, the fine-tuning loop, is shared anyway (``training/``).

Settings (:class:`~clipunlearn.training.finetune.FineTuneConfig`): Adam, up to 2 epochs (§5.1); the
paper's learning rate is lost from our copy: 1e-5 is our choice, batches of 64 too. Our choices where
the paper is silent: forget and retain images are shuffled together, so each side weighs in
proportion to its count (as EMMN's impair phase mixes its two noises); data as amns-retain (every
forget image, 10 retain images per class). ``default`` equals ``paper``: no sweep has been run yet.
Measured once on the trained mini-rn (caltech101 "motorbike", seed 0, ``paper``; target / other
caltech101 classes / cifar10 before 0.80 / 0.44 / 0.54): after 0.60 / 0.44 / 0.53.
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
class EMMNRealConfig(FineTuneConfig):
    forget_per_class: int | None = None  # real train images per forgotten class; None: all
    retain_per_class: int | None = 10  # real train images per class to keep; None: all


@register_method
class EMMNReal(Method):
    name = "emmn-real"
    title = "EMMN on real images (CVPR'25 baseline): maximise the forget images' loss, minimise the retain images'"
    config_cls = EMMNRealConfig
    needs = frozenset({"real_forget", "real_retain"})
    presets = {"paper": {}, "default": {}}

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip, request = self.config, ctx.clip, ctx.request
        forget = ctx.over_request_classes(ctx.real_forget(per_class=cfg.forget_per_class))
        retain = ctx.over_request_classes(ctx.real_retain(per_class=cfg.retain_per_class))
        for kind, batch in (("forget", forget), ("retain", retain)):
            if len(batch) == 0:
                raise TrainingError(f"emmn-real needs {kind} images; the request ({request.dataset}, forgetting "
                                    f"{request.class_names}) has no real {kind} image.")
        text = class_features(clip, request.classnames, request.template)
        measure = accuracy_measure(clip, {"forget": (forget.images, forget.labels),
                                          "retain": (retain.images, retain.labels)},
                                   request.classnames, request.template)
        images = torch.cat([forget.images, retain.images])
        labels = torch.cat([forget.labels, retain.labels]).long()
        signs = torch.cat([-torch.ones(len(forget), dtype=torch.long), torch.ones(len(retain), dtype=torch.long)])
        return fine_tune_signed(clip, cfg, images, labels, signs, text, ctx.generator(),
                                ctx.epochs(cfg.max_epochs), measure, ctx.knobs.progress)
