"""Emb: L2 embedding regularisation on synthetic images (baseline of WACV'25 §5.1, Eq. 7-9).

Reads like the paper: "Similarly to [Lip] we perturb the inputs with a Gaussian noise but this time,
instead of Lipschitz regularization we utilize L2 regularization":

    forget images = synthetic images of the class, made from its name (zero-shot, as Lip)
    stages: σ and the number of tensors per tower k grow together (Lip's schedule, §4.5)
    for each epoch:
        draw N perturbations ε ~ N(0, σ²) of every forget image (normalised pixel space)
        loss M = mean over images and draws of ‖f_img(x) − f_img(x+ε)‖ + ‖f_txt(t) − f_img(x+ε)‖
                 + α · mean over images of ‖f_img(x) + f_txt(t)‖          (raw embeddings, Eq. 7-9)
        keep the gradient of the top k_img / k_txt tensors by mean |grad|; one Adam step
        measure the forget images with a classifier rebuilt from the updated model
        if their accuracy fell: keep the step, stop once it is <= the goal
        else: revert it and go to the next stage; stop when none is left
    if no step was ever kept: the result is the original model

f_img(x+ε) is computed without gradient, as in Lip (``training.embedding``).

Presets: ``paper`` is everything Lip's ``paper`` preset uses (optimiser Adam lr 5e-5, betas
(0.9, 0.98), eps 1e-6, coupled weight decay 0.2; N = 25 draws; the σ / k stage schedule and, for
ViT, the official code's eligibility and k schedule; the official perturbation clamp; prompt
"A picture of {}"; keep an epoch only if forget accuracy falls, stop at accuracy <= 0.1 or after 30
epochs), with Lip's loss replaced by M. The paper does not give α: we take α = 1.0.
``default``: α = 0.1, chosen by the sweep in docs/results/sweeps/emb-mini-rn.md (minaret and motorbike on
mini-rn, lowest mean Avg. Score, 0.187 against 0.197 at α = 1): on mini-rn neither forgets much
(AF/BF 0.90 and 0.97): the stop rule on synthetic accuracy ends the run early (the synthetic-to-real
gap of docs/lip.md).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import TrainingError
from ..evaluation.zeroshot import image_scores
from ..training import (
    Loop,
    OptimConfig,
    Stage,
    StopRule,
    Trace,
    draw_perturbations,
    make_stages,
    run_loop,
    tower_tensors,
)
from ..training.embedding import embedding_loss
from .base import Method, register_method
from .context import ForgetContext
from .lip import KEEP_CRITERIA, OFFICIAL_VIT_K, RESNET_K_IMAGE, RESNET_K_TEXT, SIGMAS


@dataclass
class EmbConfig:
    alpha: float = 1.0  # weight of ‖f_img(x) + f_txt(t)‖; not given in the paper
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    weight_decay: float = 0.2  # coupled (Adam, not AdamW)
    n_draws: int = 25  # N perturbations per image and epoch
    perturbation: str = "paper"  # "paper": x+ε; "official": clamped to the batch's range (Lip's official code)
    prompt: str = "A picture of {}"
    keep: str = "accuracy"  # see lip.KEEP_CRITERIA
    goal_acc: float | None = 0.1  # stop once forget accuracy <= goal; None: never early
    image_tower: bool = True
    text_tower: bool = True
    eligibility: str = "catalogue"  # which tensors may change: "catalogue", "official" or "all"
    select_top_k: bool = True  # False: every eligible tensor trains (no selection)
    sigmas: tuple[float, ...] = SIGMAS
    k_image: tuple[int, ...] = RESNET_K_IMAGE
    k_text: tuple[int, ...] = RESNET_K_TEXT
    max_epochs: int = 30
    draw_chunk: int = 512

    def stages(self, n_image: int, n_text: int) -> list[Stage]:
        return make_stages({"image": self.k_image, "text": self.k_text}, {"image": n_image, "text": n_text},
                           sigma=self.sigmas)


_PAPER = {"perturbation": "official",
          "vit": {"eligibility": "official", "k_image": OFFICIAL_VIT_K, "k_text": OFFICIAL_VIT_K}}


@register_method
class Emb(Method):
    name = "emb"
    title = "L2 embedding regularisation of both towers on synthetic images, selective layers (WACV'25 baseline)"
    config_cls = EmbConfig
    needs = frozenset({"synthetic_forget"})
    presets = {"paper": _PAPER, "default": {**_PAPER, "alpha": 0.1}}

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip = self.config, ctx.clip
        if cfg.keep not in KEEP_CRITERIA:
            raise TrainingError(f"Unknown keep criterion {cfg.keep!r}; use one of {sorted(KEEP_CRITERIA)}.")
        forget = ctx.synthetic_forget()
        towers = tower_tensors(clip.model, cfg.eligibility, cfg.image_tower, cfg.text_tower)
        pixels = forget.images.to(clip.device)
        tokens = clip.tokenize([cfg.prompt.format(forget.classnames[t]) for t in forget.labels.tolist()])
        gen = ctx.generator()

        def step(stage: Stage, epoch: int, _: int):
            eps = draw_perturbations(cfg.n_draws, pixels.shape, stage.values["sigma"], gen)
            loss = embedding_loss(clip, pixels, tokens, eps, cfg.alpha, cfg.perturbation, cfg.draw_chunk)
            return loss, {"embedding": float(loss.detach())}

        def measure() -> dict[str, float]:
            acc, prob = image_scores(clip, forget.images, forget.labels, forget.classnames, [ctx.request.template])
            return {"forget_acc": acc, "target_prob": prob}

        loop = Loop(towers=towers, optim=OptimConfig("adam", cfg.lr, cfg.betas, cfg.adam_eps, cfg.weight_decay),
                    max_epochs=ctx.epochs(cfg.max_epochs),
                    stages=cfg.stages(len(towers["image"]), len(towers["text"])),
                    selection="top_k" if cfg.select_top_k else "all",
                    keep=KEEP_CRITERIA[cfg.keep], stop=StopRule("forget_acc", cfg.goal_acc))
        return run_loop(clip, loop, step, measure, ctx.knobs.progress)
