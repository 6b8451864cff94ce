"""The official way of each part of a Lip run (the WACV'25 code's way), for the speed benchmarks:
``speed.py`` times one part at a time against ours, ``end_to_end.py`` a whole run.

* generation: one image at a time (batch 1), a failed image lowering the threshold of the next ones;
* forgetting: a forward pass per perturbation draw (the clean image and the prompt encoded again each
  time), gradients for every parameter of the model, the selection masking them afterwards;
* evaluation: every image feature and text classifier recomputed (no feature cache).

Each piece calls the library's own functions for the arithmetic, so the two sides compute the same
things and differ only in how the work is batched and reused.
"""
from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.data import ImageSet
from clipunlearn.errors import ClipUnlearnError
from clipunlearn.evaluation import Evaluator, FeatureCache
from clipunlearn.evaluation.zeroshot import (
    EvalResult,
    image_scores,
    zero_shot_classifier,
)
from clipunlearn.methods.lip import LipConfig
from clipunlearn.models import Clip
from clipunlearn.synthetic import GenerationConfig, SyntheticSet, generate_synthetic
from clipunlearn.training import (
    RetainAnchor,
    draw_perturbations,
    select_top_k,
    tower_tensors,
)
from clipunlearn.training.lipschitz import lipschitz_terms
from clipunlearn.training.params import all_names


def sync(device: str) -> None:
    """Wait for the device's queued work, so that a clock read after it counts that work."""
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def generate_one_at_a_time(clip: Clip, classnames: Sequence[str], targets: Sequence[int], dataset: str,
                           template: str, config: GenerationConfig) -> SyntheticSet:
    """``config.n_per_class`` images of each class in ``targets``, one :func:`generate_synthetic` call
    per image (batch 1); image i is seeded ``config.seed + i`` and starts from the threshold the image
    before it ended at. The zero-shot classifier is built once, not per image."""
    threshold = config.threshold_for(clip.family)
    t0 = time.time()
    classifier = zero_shot_classifier(clip, list(classnames), [template])
    made: list[SyntheticSet] = []
    for t in targets:
        for _ in range(config.n_per_class):
            one = dataclasses.replace(config, n_per_class=1, threshold=threshold, seed=config.seed + len(made))
            made.append(generate_synthetic(clip, classnames, [t], dataset, template, one, classifier=classifier))
            threshold = made[-1].final_threshold
    return SyntheticSet(
        images=torch.cat([s.images for s in made]), targets=torch.cat([s.targets for s in made]),
        probs=torch.cat([s.probs for s in made]), accepted=torch.cat([s.accepted for s in made]),
        steps=torch.cat([s.steps for s in made]), classnames=list(classnames), dataset=dataset, model=clip.arch,
        template=template, config=dataclasses.asdict(config), final_threshold=threshold, seconds=time.time() - t0)


def reference_backward(clip: Clip, pixels: torch.Tensor, tokens: torch.Tensor, eps: torch.Tensor) -> float:
    """Accumulate in ``.grad`` the gradient of the Lipschitz loss (``x + ε``, the official scaling) of
    images ``pixels`` ([0, 1]) with prompts ``tokens`` and draws ``eps`` (N×B×3×H×W), the official way:
    every parameter requires a gradient, and each draw has its own forward and backward pass, the
    clean images and the prompts encoded again. Returns the loss."""
    model = clip.model
    for p in model.parameters():
        p.requires_grad_(True)
    n = eps.shape[0]
    x_norm = clip.normalize(pixels)
    total = 0.0
    for i in range(n):
        clean = model.encode_image(x_norm)
        text = model.encode_text(tokens)
        draw = eps[i].to(pixels.device)
        with torch.no_grad():
            perturbed = model.encode_image(x_norm + draw)
        term = lipschitz_terms(clean, text, perturbed.unsqueeze(0), draw.flatten(1).norm(dim=-1).unsqueeze(0))
        loss = (term / 2).sum() / (2 * n)
        loss.backward()
        total += float(loss.detach())
    return total


def full_evaluation(clip: Clip, images: ImageSet) -> EvalResult:
    """Zero-shot logits of ``images`` with every feature and the classifier computed afresh."""
    return Evaluator(clip, FeatureCache(), progress=False).evaluate(images)


def check_default_loop(cfg: LipConfig) -> None:
    """The official loop below runs Lip's ``default`` preset loop: one stage, every epoch kept, no early
    stop, synthetic forget images from the template, x + ε and the official scaling, the text term on.
    Anything else fails in one line."""
    off = [name for name, ok in (
        ("keep='always'", cfg.keep == "always"), ("one sigma", len(cfg.sigmas) == 1),
        ("goal_acc=None", cfg.goal_acc is None), ("forget_images='synthetic'", cfg.forget_images == "synthetic"),
        ("generation_prompts='template'", cfg.generation_prompts == "template"),
        ("perturbation='paper'", cfg.perturbation == "paper"), ("scaling='official'", cfg.scaling == "official"),
        ("text_term=True", cfg.text_term), ("text_perturbation=False", not cfg.text_perturbation),
        ("select_top_k=True", cfg.select_top_k)) if not ok]
    if off:
        raise ClipUnlearnError(f"The official side runs Lip's default loop only; these options leave it: needs "
                               f"{', '.join(off)}.")


def forget_one_draw_at_a_time(clip: Clip, forget: SyntheticSet, retain: RetainAnchor | None, template: str,
                              cfg: LipConfig, seed: int, epochs: int) -> list[dict[str, float]]:
    """Lip's default loop (:func:`check_default_loop`) on ``forget``, its gradients taken by
    :func:`reference_backward` (plus ``cfg.retain_weight`` times the retain term's, in one pass); the
    synthetic accuracy measured before and after every epoch, as ours does. Returns one row per epoch."""
    check_default_loop(cfg)
    model = clip.model
    towers = tower_tensors(model, cfg.eligibility, cfg.image_tower, cfg.text_tower)
    stage = cfg.stages(len(towers["image"]), len(towers["text"]))[0]
    params = dict(model.named_parameters())
    opt = torch.optim.Adam([params[n] for n in all_names(towers)], lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps,
                           weight_decay=cfg.weight_decay)
    pixels = forget.images.to(clip.device)
    tokens = clip.tokenize([cfg.prompt.format(forget.classnames[t]) for t in forget.targets.tolist()])
    gen = torch.Generator().manual_seed(seed)
    model.eval()

    def measure() -> dict[str, float]:
        acc, prob = image_scores(clip, forget.images, forget.targets, forget.classnames, [template])
        return {"forget_acc": acc, "target_prob": prob}

    rows = [{"epoch": 0, **measure()}]
    for epoch in range(1, epochs + 1):
        eps = draw_perturbations(cfg.n_draws, pixels.shape, stage.values["sigma"], gen)
        for p in model.parameters():
            p.grad = None
        loss = reference_backward(clip, pixels, tokens, eps)
        if retain is not None:
            kl = retain.kl(clip)
            (cfg.retain_weight * kl).backward()
            loss += cfg.retain_weight * float(kl.detach())
        select_top_k(model, towers, stage.k)
        opt.step()
        rows.append({"epoch": epoch, "loss": loss, **measure()})
    for p in model.parameters():
        p.grad = None
    return rows
