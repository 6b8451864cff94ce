"""Lip: zero-shot class unlearning with synthetic samples (Kravets & Namboodiri, WACV 2025).

Reads like the paper (§4.2-4.5, App. H Algorithm 1, App. K; METHOD.md §1.2):

    for each epoch (at most ``max_epochs``):
        draw N perturbations of every synthetic image at the current stage's σ
        loss = Lipschitz loss of the image and text embeddings (Eq. 5)
        rank the eligible tensors by mean |grad|; keep the top k_img / k_txt, drop the rest
        one Adam step (coupled weight decay)
        measure the synthetic set with a classifier rebuilt from the updated model
        if it improved: keep the step, stop if synthetic accuracy <= goal
        else: restore model and optimiser, go to the next stage (larger σ and k); stop when none is left
    if no step was ever kept: the result is the original model

Presets: ``paper`` is the above with the paper's numbers, keeping a step only if synthetic accuracy
strictly fell. ``default`` is what our measurements on the mini zoo showed works (docs/lip.md): the
image tower only, lr 5e-4 without weight decay, a fixed 4 epochs, and a data-free retain term: the
KL divergence between the original and the current model's predictions on synthetic images of the
dataset's *other* classes (made here, from their names only), weighted by ``retain_weight``.
"""
from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..evaluation.zeroshot import LOGIT_SCALE, zero_shot_classifier
from ..models.catalogue import eligible_names
from ..models.factory import Clip
from ..synthetic import SyntheticSet
from ..synthetic.generate import GenerationConfig, generate_synthetic
from ..training import (
    RetainAnchor,
    Stage,
    draw_perturbations,
    lipschitz_loss,
    paper_stages,
    restore,
    select_top_k,
    snapshot,
    vocabulary_to_keep,
)
from .base import ForgetRequest, Method, Trace, register_method

KEEP_CRITERIA = ("accuracy", "target_prob", "always")


@dataclass
class LipConfig:
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    weight_decay: float = 0.2  # coupled (Adam, not AdamW)
    n_draws: int = 25
    scaling: str = "official"
    prompt: str = "A picture of {}"
    keep: str = "accuracy"  # "accuracy": synthetic accuracy must fall; "target_prob": mean target
    # probability must fall; "always": every step is kept (fixed number of epochs)
    goal_acc: float | None = 0.1  # stop once synthetic accuracy <= goal; None: never stop early
    text_tower: bool = True  # False: only the image tower is updated
    retain_weight: float = 0.0  # weight of the retain KL term; 0: off
    retain_classes: int = 48  # other classes given one retain image each (a seeded sample if more)
    retain_vocabulary: bool = True  # also anchor everyday concepts (training.retain.GENERAL_VOCABULARY)
    retain_steps: int = 100  # generation budget per retain image (the most probable state is kept)
    max_epochs: int = 30
    stages: list[Stage] | None = None  # None: the paper's for the model's family
    seed: int = 0
    draw_chunk: int = 512
    preset: str = "paper"

    def to_json(self) -> dict:
        d = asdict(self)
        d["stages"] = [asdict(s) for s in self.stages] if self.stages else None
        return d


@register_method
class Lip(Method):
    name = "lip"
    config_cls = LipConfig
    needs_synthetic = True
    summary = "Lipschitz forgetting of both towers on synthetic images, selective layers (WACV'25)"

    @classmethod
    def preset(cls, name: str, family: str) -> LipConfig:
        if name == "paper":
            return LipConfig(preset="paper")
        if name == "default":
            return LipConfig(preset="default", lr=5e-4, weight_decay=0.0, keep="always", goal_acc=None,
                             max_epochs=4, text_tower=False, retain_weight=3.0,
                             stages=[Stage(0, 0.1, 10_000 if family == "resnet" else 25, 0)])
        raise TrainingError(f"Unknown preset {name!r} for lip. Use 'paper' or 'default'.")

    def run(self, clip: Clip, request: ForgetRequest, synthetic: SyntheticSet | None,
            progress: Callable[[dict], None] | None = None) -> Trace:
        with clip.fast_conv_layout():
            return self._run(clip, request, synthetic, progress)

    def _run(self, clip: Clip, request: ForgetRequest, synthetic: SyntheticSet | None,
             progress: Callable[[dict], None] | None) -> Trace:
        if synthetic is None:
            raise TrainingError("lip needs a synthetic forget set.")
        cfg = self.config
        if cfg.keep not in KEEP_CRITERIA:
            raise TrainingError(f"Unknown keep criterion {cfg.keep!r}; use one of {KEEP_CRITERIA}.")
        t0 = time.time()
        model = clip.model
        towers = {"image": eligible_names(model, "image"),
                  "text": eligible_names(model, "text") if cfg.text_tower else []}
        names = towers["image"] + towers["text"]
        n_img, n_txt = len(towers["image"]), len(towers["text"])
        stages = [Stage(st.index, st.sigma, min(st.k_img, n_img), min(st.k_txt, n_txt))
                  for st in (cfg.stages or paper_stages(clip.family, n_img, n_txt))]
        retain = self.make_retain(clip, request) if cfg.retain_weight > 0 else None
        params = dict(model.named_parameters())
        for n, p in params.items():
            p.requires_grad_(n in names)
        opt = torch.optim.Adam([params[n] for n in names], lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                               weight_decay=cfg.weight_decay)
        original = snapshot(model, names)
        gen = torch.Generator().manual_seed(cfg.seed)
        device = clip.device
        pixels = synthetic.images.to(device)
        tokens = clip.tokenize([cfg.prompt.format(synthetic.classnames[t]) for t in synthetic.targets.tolist()])

        acc0, prob0 = self.synthetic_scores(clip, synthetic, request.template)
        best = 1.0 if cfg.keep == "accuracy" else prob0
        trace = Trace()
        trace.steps.append({"epoch": 0, "synthetic_acc": acc0, "target_prob": prob0, "kept": None})
        if retain is not None:
            trace.steps[0].update(retain_images=len(retain.images), retain_seconds=round(self.retain_seconds, 2))
        stage_i = 0
        model.train(False)  # batch-norm statistics stay as they are; no dropout
        try:
            for epoch in range(1, cfg.max_epochs + 1):
                stage = stages[stage_i]
                saved, saved_opt = snapshot(model, names), copy.deepcopy(opt.state_dict())
                eps = draw_perturbations(cfg.n_draws, pixels.shape, stage.sigma, gen)
                loss = lipschitz_loss(clip, pixels, tokens, eps, cfg.scaling, cfg.draw_chunk)
                retain_kl = retain.kl(clip) if retain is not None else None
                total = loss + cfg.retain_weight * retain_kl if retain_kl is not None else loss
                if not math.isfinite(total.item()):
                    restore(model, original)
                    raise TrainingError(
                        f"The Lipschitz loss became {total.item()} at epoch {epoch}, stage {stage.index} "
                        f"(σ={stage.sigma}); the original model is kept. Lower the learning rate or σ."
                    )
                opt.zero_grad(set_to_none=True)
                total.backward()
                selected = select_top_k(model, towers, {"image": stage.k_img, "text": stage.k_txt})
                opt.step()
                acc, prob = self.synthetic_scores(clip, synthetic, request.template)
                score = acc if cfg.keep == "accuracy" else prob
                kept = cfg.keep == "always" or score < best
                row = {"epoch": epoch, "stage": stage.index, "sigma": stage.sigma, "k_img": stage.k_img,
                       "k_txt": stage.k_txt, "loss": loss.item(),
                       "retain_kl": None if retain_kl is None else retain_kl.item(), "synthetic_acc": acc, "target_prob": prob,
                       "kept": kept, "selected": selected}
                trace.steps.append(row)
                trace.epochs = epoch
                trace.stage_reached = stage.index
                if progress is not None:
                    progress(row)
                if kept:
                    best = score
                    trace.kept_any_step = True
                    trace.changed_tensors = sorted(set(trace.changed_tensors) | set(selected))
                    if cfg.goal_acc is not None and acc <= cfg.goal_acc:
                        trace.stopped_because = f"synthetic accuracy {acc:.3f} <= {cfg.goal_acc}"
                        break
                else:
                    restore(model, saved)
                    opt.load_state_dict(saved_opt)
                    stage_i += 1
                    if stage_i == len(stages):
                        trace.stopped_because = "stages exhausted"
                        break
            else:
                trace.stopped_because = f"reached max_epochs ({cfg.max_epochs})"
            if not trace.kept_any_step:
                restore(model, original)
                trace.changed_tensors = []
        finally:
            for p in params.values():
                p.requires_grad_(True)
                p.grad = None
            model.eval()
        trace.seconds = time.time() - t0
        return trace

    def make_retain(self, clip: Clip, request: ForgetRequest) -> RetainAnchor | None:
        """One synthetic image for each of up to ``retain_classes`` of the dataset's other classes (a
        seeded sample) and, with ``retain_vocabulary``, for each everyday concept that does not overlap
        a forgotten class. Made like the forget images but with a short budget and no threshold
        lowering: each keeps its most probable state. None when there is nothing to keep."""
        cfg = self.config
        others = [i for i in range(len(request.classnames)) if i not in set(request.classes)]
        if len(others) > cfg.retain_classes:
            order = torch.randperm(len(others), generator=torch.Generator().manual_seed(cfg.seed + 1))
            others = sorted(others[i] for i in order[: max(0, cfg.retain_classes)].tolist())
        names = list(request.classnames)
        if cfg.retain_vocabulary:
            extra = vocabulary_to_keep(names, request.class_names)
            others += list(range(len(names), len(names) + len(extra)))
            names += extra
        if not others:
            return None
        gcfg = GenerationConfig(n_per_class=1, max_steps=cfg.retain_steps, threshold_floor=1.0, seed=cfg.seed + 1)
        t0 = time.time()
        images = generate_synthetic(clip, names, others, request.dataset, request.template, gcfg).images
        self.retain_seconds = time.time() - t0
        return RetainAnchor(clip, images, names, request.template)

    @staticmethod
    @torch.no_grad()
    def synthetic_scores(clip: Clip, synthetic: SyntheticSet, template: str) -> tuple[float, float]:
        """Accuracy and mean target probability of the synthetic set under the current model."""
        weights = zero_shot_classifier(clip, synthetic.classnames, [template])
        feats = clip.encode_image(synthetic.images.to(clip.device), normalize=True)
        p = F.softmax(LOGIT_SCALE * feats @ weights.T, dim=1)
        t = synthetic.targets.to(clip.device)
        return float((p.argmax(1) == t).float().mean()), float(p.gather(1, t[:, None]).mean())
