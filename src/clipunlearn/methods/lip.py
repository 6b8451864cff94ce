"""Lip: zero-shot class unlearning with synthetic samples (Kravets & Namboodiri, WACV 2025).

Reads like the paper (§4.2-4.5, App. H Algorithm 1, App. K):

    forget images = synthetic images of the class, made from its name (§4.3)
    stages: σ and the number of tensors per tower k grow together (§4.5)
    for each epoch:
        draw N perturbations ε ~ N(0, σ²) of every forget image
        loss = Lipschitz loss: (‖f_img(x) − f_img(x+ε)‖ + ‖f_txt(t) − f_img(x+ε)‖) / ‖ε‖ (Eq. 4-5)
        keep the gradient of the top k_img / k_txt tensors by mean |grad| (§4.4); one Adam step
        measure the forget images with a classifier rebuilt from the updated model
        if their accuracy fell: keep the step, stop once it is <= the goal
        else: revert it and go to the next stage; stop when none is left
    if no step was ever kept: the result is the original model

Presets: ``paper`` is the above with the paper's numbers and the official code's choices (its
perturbation clamp and, for ViT, its tensor eligibility and k schedule; docs/methods.md).
``default`` is what our measurements on the mini zoo showed works (docs/lip.md): the image tower
only, lr 5e-4 without weight decay, a fixed 4 epochs, and a data-free retain term: the KL divergence
between the original and the current model's predictions on synthetic images of classes to keep
(the dataset's other classes and everyday concepts, made from their names), weighted by
``retain_weight``.

Ablations (paper §6, App. B): ``all-params-vary`` (every tensor trains, no selection),
``one-iter`` (a single epoch), ``no-text-loss`` (image term only, image tower only: ULip on
synthetic images), ``cupl-gen`` (forget images made from descriptive CuPL prompts),
``text-emb-perturb`` (the text term perturbs the prompt's token embeddings instead of comparing
with the perturbed image).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..evaluation.zeroshot import image_scores
from ..training import (
    KeepRule,
    Loop,
    OptimConfig,
    RetainAnchor,
    Stage,
    StopRule,
    Trace,
    draw_perturbations,
    lipschitz_loss,
    make_stages,
    run_loop,
    tower_tensors,
)
from .base import Method, register_method
from .context import ForgetContext, ImageBatch

#: the paper's schedule (§4.5, App. K)
SIGMAS = (0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
RESNET_K_IMAGE = (5, 7, 10, 13, 15, 20, 25)
RESNET_K_TEXT = (5, 7, 12, 18, 25, 30, 35)
#: the official code's ViT schedule: 25 + [0, 2, 5, 8, 10, 15, 20], both towers
OFFICIAL_VIT_K = tuple(25 + d for d in (0, 2, 5, 8, 10, 15, 20))
#: how an epoch is judged: accuracy of the forget images must fall, their mean target probability
#: must fall, or every epoch is kept
KEEP_CRITERIA = {"accuracy": KeepRule("forget_acc", start=1.0), "target_prob": KeepRule("target_prob"),
                 "always": KeepRule()}


@dataclass
class LipConfig:
    lr: float = 5e-5
    betas: tuple[float, float] = (0.9, 0.98)
    adam_eps: float = 1e-6
    weight_decay: float = 0.2  # coupled (Adam, not AdamW)
    n_draws: int = 25  # N perturbations per image and epoch
    scaling: str = "official"  # "official": Σ k / 2 / 2N; "mean": Eq. 5 as written
    perturbation: str = "paper"  # "paper": x+ε, denominator ‖ε‖; "official": clamped to the batch's range
    prompt: str = "A picture of {}"
    keep: str = "accuracy"  # see KEEP_CRITERIA
    goal_acc: float | None = 0.1  # stop once forget accuracy <= goal; None: never early
    image_tower: bool = True
    text_tower: bool = True
    text_term: bool = True  # False: the loss has the image term only
    text_perturbation: bool = False  # True: the text term perturbs token embeddings (TextEmbPerturb)
    eligibility: str = "catalogue"  # which tensors may change: "catalogue", "official" or "all"
    select_top_k: bool = True  # False: every eligible tensor trains (no selection)
    sigmas: tuple[float, ...] = SIGMAS
    k_image: tuple[int, ...] = RESNET_K_IMAGE
    k_text: tuple[int, ...] = RESNET_K_TEXT
    forget_images: str = "synthetic"  # "synthetic" or "real" (ULip)
    generation_prompts: str = "template"  # "template" or "cupl" (descriptive prompts, CuPLGen)
    retain_weight: float = 0.0  # weight of the data-free retain KL term; 0: off
    retain_classes: int = 48  # other classes given one retain image each (a seeded sample if more)
    retain_vocabulary: bool = True  # also anchor everyday concepts (training.retain.GENERAL_VOCABULARY)
    retain_steps: int = 100  # generation budget per retain image (the most probable state is kept)
    max_epochs: int = 30
    draw_chunk: int = 512

    def stages(self, n_image: int, n_text: int) -> list[Stage]:
        return make_stages({"image": self.k_image, "text": self.k_text}, {"image": n_image, "text": n_text},
                           sigma=self.sigmas)


@register_method
class Lip(Method):
    name = "lip"
    title = "Lipschitz forgetting of both towers on synthetic images, selective layers (WACV'25)"
    config_cls = LipConfig
    needs = frozenset({"synthetic_forget", "synthetic_retain"})
    presets = {
        "paper": {"perturbation": "official",
                  "vit": {"eligibility": "official", "k_image": OFFICIAL_VIT_K, "k_text": OFFICIAL_VIT_K}},
        "default": {"lr": 5e-4, "weight_decay": 0.0, "keep": "always", "goal_acc": None, "max_epochs": 4,
                    "text_tower": False, "retain_weight": 3.0, "sigmas": (0.1,), "k_text": (0,),
                    "resnet": {"k_image": (10_000,)}, "vit": {"k_image": (25,)}},
    }
    ablations = {
        "all-params-vary": {"eligibility": "all", "select_top_k": False},
        "one-iter": {"max_epochs": 1},
        "no-text-loss": {"text_term": False, "text_tower": False},
        "cupl-gen": {"generation_prompts": "cupl"},
        "text-emb-perturb": {"text_perturbation": True},
    }

    @property
    def data_kinds(self) -> frozenset[str]:
        """Forgetting with real images (``forget_images = "real"``, the verification of App. I) sees the
        class's real train images instead of synthetic ones: no longer zero-shot."""
        if self.config.forget_images == "real":
            return (self.needs - {"synthetic_forget"}) | {"real_forget"}
        return self.needs

    def check_classes(self, classnames: Sequence[str]) -> None:
        """CuPLGen (``generation_prompts = "cupl"``) needs descriptive sentences of every forget class."""
        if self.config.generation_prompts == "cupl" and self.config.forget_images != "real":
            from ..synthetic.cupl import describe

            describe(classnames)

    def forget_images(self, ctx: ForgetContext) -> ImageBatch:
        if self.config.forget_images == "real":
            return ctx.real_forget()
        return ctx.synthetic_forget(prompts=self.config.generation_prompts)

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip = self.config, ctx.clip
        if cfg.keep not in KEEP_CRITERIA:
            from ..errors import TrainingError

            raise TrainingError(f"Unknown keep criterion {cfg.keep!r}; use one of {sorted(KEEP_CRITERIA)}.")
        forget = self.forget_images(ctx)
        trace = Trace()
        retain = None
        if cfg.retain_weight > 0:
            kept = ctx.synthetic_retain(max_classes=cfg.retain_classes, vocabulary=cfg.retain_vocabulary,
                                        steps=cfg.retain_steps)
            retain = RetainAnchor(clip, kept.images, kept.classnames, ctx.request.template)
            trace.info["retain_images"] = len(kept)
        towers = tower_tensors(clip.model, cfg.eligibility, cfg.image_tower, cfg.text_tower)
        pixels = forget.images.to(clip.device)
        prompts = [cfg.prompt.format(forget.classnames[t]) for t in forget.labels.tolist()]
        tokens = clip.tokenize(prompts) if cfg.text_term else None
        gen = ctx.generator()

        def step(stage: Stage, epoch: int, _: int):
            eps = draw_perturbations(cfg.n_draws, pixels.shape, stage.values["sigma"], gen)
            text_eps = None
            if cfg.text_perturbation and tokens is not None:
                width = clip.model.token_embedding.embedding_dim
                text_eps = draw_perturbations(cfg.n_draws, (*tokens.shape, width), stage.values["sigma"], gen)
            loss = lipschitz_loss(clip, pixels, tokens, eps, cfg.scaling, cfg.draw_chunk, cfg.perturbation, text_eps)
            metrics = {"lipschitz": float(loss.detach())}
            if retain is not None:
                kl = retain.kl(clip)
                metrics["retain_kl"] = float(kl.detach())
                loss = loss + cfg.retain_weight * kl
            return loss, metrics

        def measure() -> dict[str, float]:
            acc, prob = image_scores(clip, forget.images, forget.labels, forget.classnames, [ctx.request.template])
            return {"forget_acc": acc, "target_prob": prob}

        loop = Loop(towers=towers, optim=OptimConfig("adam", cfg.lr, cfg.betas, cfg.adam_eps, cfg.weight_decay),
                    max_epochs=ctx.epochs(cfg.max_epochs),
                    stages=cfg.stages(len(towers["image"]), len(towers["text"])),
                    selection="top_k" if cfg.select_top_k else "all",
                    keep=KEEP_CRITERIA[cfg.keep], stop=StopRule("forget_acc", cfg.goal_acc))
        return run_loop(clip, loop, step, measure, ctx.knobs.progress, trace)
