"""Uproot: forget a class so that it does not come back under relearning (ours, beyond both papers).

Every method we audited only hid the class: a few fine-tuning steps on a few images brought it back
(docs/results/audit). Uproot is zero-shot like Lip (the model, the class's name and synthetic images
made from names; no real image) and is built to survive the audit's relearning attacks:

    forget images = synthetic images of the class; retain images = synthetic images of classes to keep
    class weights = the text tower's prompts of the forgotten and the kept classes (the text tower is
                    left as it was, so every other class keeps its prompt embedding)
    for each step (the whole image tower trains, Adam):
        scatter:  −log(1 − p(class)) on the forget images, plus the mean pairwise cosine of their
                  features: push the class's images away from it *and apart*, rather than moving them
                  together onto another prompt, which a few steps of fine-tuning undo (Spotter)
        retain:   KL(original ‖ current) of the zero-shot predictions on the retain images
        attack:   simulate the tuning attack of the audit (a few Adam steps toward the class on k of the
                  forget images), measure the scatter loss after it, and descend its gradient at the
                  attacked weights (first-order, as TAR / meta-unlearning), so that the class stays down
                  after an attacker's steps too

The audit's held-out attacks (docs/audit.md) are never simulated: only its tuning attacks (Adam on the
image tower, lr 1e-5 / 1e-6, k = 1 or 5 images of the class) are, and on synthetic images.

Ablations switch each part off: ``no-spread`` (only push away), ``no-attack`` (no simulated
relearning), ``no-retain`` (no retain term), ``head-only`` (only the image tower's tensors after its
trunk, where Lip acts on a ResNet: the attention pool; ViT: the last norm and the projection).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..evaluation.zeroshot import image_scores, zero_shot_classifier
from ..training import Loop, OptimConfig, RetainAnchor, Stage, Trace, run_loop, tower_tensors
from ..training.adversary import NameEraser, SimulatedRelearning, scatter_loss
from .base import Method, register_method
from .context import ForgetContext


#: the image tower's tensors after its trunk (``head_only``)
HEAD = ("visual.attnpool.", "visual.ln_post.", "visual.proj")


@dataclass
class UprootConfig:
    lr: float = 1e-4
    max_epochs: int = 30  # one step per epoch, on every forget image
    eligibility: str = "all"  # the image tower's tensors that train: "all", "catalogue" or "official"
    head_only: bool = False  # only the tensors after the trunk (ResNet: attention pool; ViT: ln_post, proj)
    spread: float = 1.0  # weight of the mean pairwise cosine of the forget images' features
    retain_weight: float = 3.0
    retain_classes: int = 48  # other classes given one synthetic retain image each (seeded sample if more)
    retain_vocabulary: bool = True  # also anchor everyday concepts (training.retain.GENERAL_VOCABULARY)
    retain_steps: int = 100  # generation budget per retain image
    attack_steps: int = 3  # simulated relearning steps per step; 0: no simulated attack
    attack_lr: float = 1e-5  # the audit's tuning attack: Adam on the image tower at 1e-5
    attack_images: int = 5  # k images of the class the simulated attacker has (the tuning attacks' k)
    attack_weight: float = 1.0
    image_tower: bool = True  # False: only the text side changes (the scatter and attack terms are off)
    text_tower: bool = False  # the text side trains to move the class's name away (``text_weight``)
    text_tensors: str = "token_embedding"  # which text tensors: "token_embedding" (the words' rows) or "all"
    text_weight: float = 1.0  # weight of the text term: the name's prompt embedding -> an unknown word's
    text_keep_weight: float = 10.0  # weight of keeping every other name's prompt embedding where it was


@register_method
class Uproot(Method):
    name = "uproot"
    title = "Scatter the class's image features, trained against simulated relearning (ours)"
    config_cls = UprootConfig
    needs = frozenset({"synthetic_forget", "synthetic_retain"})
    presets = {"default": {}, "paper": {}}  # no paper: "paper" is the default, for suites that ask for it
    ablations = {
        "no-spread": {"spread": 0.0},
        "no-attack": {"attack_steps": 0},
        "no-retain": {"retain_weight": 0.0},
        "head-only": {"head_only": True},
    }

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip = self.config, ctx.clip
        forget = ctx.synthetic_forget()
        trace = Trace()
        classnames = list(forget.classnames)
        retain = None
        if cfg.retain_weight > 0:
            kept = ctx.synthetic_retain(max_classes=cfg.retain_classes, vocabulary=cfg.retain_vocabulary,
                                        steps=cfg.retain_steps)
            classnames += [c for c in kept.classnames if c not in classnames]
            # the forgotten names are among the anchor's classes: a name moved on the text side must not
            # start to attract the images of other classes (the original gave them almost no probability)
            retain = RetainAnchor(clip, kept.images, classnames, ctx.request.template)
            trace.info["retain_images"] = len(kept)
        with torch.no_grad():  # the class weights the image terms aim at: the original's, fixed
            text = zero_shot_classifier(clip, classnames, [ctx.request.template]).to(clip.device)
        towers = tower_tensors(clip.model, cfg.eligibility, image=cfg.image_tower, text=cfg.text_tower)
        if cfg.head_only:
            towers["image"] = [n for n in towers["image"] if n.startswith(HEAD)]
        if cfg.text_tensors == "token_embedding":
            towers["text"] = [n for n in towers["text"] if n == "token_embedding.weight"]
        rename = (NameEraser(clip, list(forget.classnames), [c for c in classnames if c not in forget.classnames],
                             ctx.request.template, ctx.generator(1))
                  if cfg.text_tower else None)
        if rename is not None:
            trace.info["unknown_words"] = rename.words
        pixels = forget.images.to(clip.device)
        labels = forget.labels.to(clip.device)
        attack = (SimulatedRelearning(cfg.attack_steps, cfg.attack_lr, cfg.attack_images)
                  if cfg.attack_steps > 0 else None)
        gen = ctx.generator()

        def forget_term() -> tuple[torch.Tensor, dict[str, float]]:
            return scatter_loss(clip, pixels, labels, text, cfg.spread)

        def step(stage: Stage, epoch: int, _: int):
            metrics: dict[str, float] = {}
            loss = torch.zeros((), device=clip.device)
            if cfg.image_tower:
                if attack is not None:
                    term, m = attack.surrogate(clip, pixels, labels, text, lambda: forget_term()[0], gen)
                    metrics.update(m)
                    loss = loss + cfg.attack_weight * term
                scatter, m = forget_term()
                metrics.update(m)
                loss = loss + scatter
            if rename is not None:
                moved, kept_names = rename.losses(clip)
                metrics.update(name_moved=float(moved.detach()), names_kept=float(kept_names.detach()))
                loss = loss + cfg.text_weight * moved + cfg.text_keep_weight * kept_names
            if retain is not None:
                kl = retain.kl(clip)
                metrics["retain_kl"] = float(kl.detach())
                loss = loss + cfg.retain_weight * kl
            return loss, metrics

        def measure() -> dict[str, float]:
            acc, prob = image_scores(clip, forget.images, forget.labels, forget.classnames, [ctx.request.template])
            return {"forget_acc": acc, "target_prob": prob}

        loop = Loop(towers=towers, optim=OptimConfig("adam", cfg.lr, (0.9, 0.999), 1e-8, 0.0),
                    max_epochs=ctx.epochs(cfg.max_epochs))
        return run_loop(clip, loop, step, measure, ctx.knobs.progress, trace)
