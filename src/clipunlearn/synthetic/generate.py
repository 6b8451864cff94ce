"""Synthetic forget images from nothing but class names (WACV'25 §4.3, App. I).

Each image starts as standard-normal noise in the model's normalised pixel space and climbs the
target logit of the zero-shot classifier by normalised gradient ascent, with roll jitter, a blur
every few steps and a clamp to valid pixels. The whole set is one batch; each image stops on its
own when the target is the argmax with a softmax probability above the threshold. Everything is
held in one pixel space: [0, 1] pixels, normalised inside the model call.

Threshold rule, batched: images that use up their step budget restart from fresh noise and the
shared threshold drops by ``threshold_drop`` (never below ``threshold_floor``); an image that fails
at the floor keeps its most probable state and is reported as not accepted.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ClipUnlearnError
from ..evaluation.zeroshot import LOGIT_SCALE, zero_shot_classifier
from ..memory import HalvingBatch
from ..models.factory import Clip
from ..precision import forward_pass
from ..training.params import frozen

#: the official step, 25 in normalised-pixel L2 units on a 3x224x224 image, as a per-pixel RMS
OFFICIAL_STEP_RMS = 25.0 / math.sqrt(3 * 224 * 224)
#: seed offset of the generator that draws one description sentence per image
SENTENCE_SEED_OFFSET = 7919


@dataclass
class GenerationConfig:
    n_per_class: int = 64
    threshold: float | None = None  # None: 0.7 for ResNet, 0.9 for ViT image towers
    threshold_drop: float = 0.025
    threshold_floor: float = 0.45
    max_steps: int = 3000
    step_rms: float = OFFICIAL_STEP_RMS  # per-pixel RMS of one step, normalised units
    norm_penalty: float = 1e-3
    jitter_224: int = 16  # max roll in px at 224 px, scaled with the input size
    blur_every: int = 10
    blur_sigma: float = 0.5
    bn_prior: float = 0.0  # weight of the batch-norm statistics prior (ResNet towers), 0 = off
    seed: int = 0
    batch_size: int = 256  # images optimised at once

    def threshold_for(self, family: str) -> float:
        if self.threshold is not None:
            return self.threshold
        return 0.7 if family == "resnet" else 0.9


@dataclass
class SyntheticSet:
    """Synthetic images with what they were made for."""

    images: torch.Tensor  # N×3×H×W in [0, 1]
    targets: torch.Tensor  # N, index into classnames
    probs: torch.Tensor  # N, target probability reached
    accepted: torch.Tensor  # N, bool
    steps: torch.Tensor  # N, steps used by the final attempt
    classnames: list[str]
    dataset: str
    model: str
    template: str
    config: dict = field(default_factory=dict)
    final_threshold: float = 0.0
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def target_names(self) -> list[str]:
        return sorted({self.classnames[t] for t in self.targets.tolist()}, key=self.classnames.index)


def _gaussian_kernel(sigma: float) -> torch.Tensor:
    radius = max(1, int(math.ceil(3 * sigma)))
    xs = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-xs ** 2 / (2 * sigma ** 2))
    return k / k.sum()


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of N×C×H×W, reflect-padded."""
    k = _gaussian_kernel(sigma).to(x)
    c = x.shape[1]
    r = (len(k) - 1) // 2
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


class _BNPrior:
    """Distance of the batch statistics entering each batch-norm layer from its running statistics."""

    def __init__(self, model: nn.Module):
        self.losses: list[torch.Tensor] = []
        self.handles = [m.register_forward_hook(self._hook) for m in model.modules()
                        if isinstance(m, nn.BatchNorm2d)]

    def _hook(self, module: nn.BatchNorm2d, inputs, output) -> None:
        x = inputs[0].float()  # statistics in fp32 also when the forward pass runs in bf16
        mean = x.mean(dim=(0, 2, 3))
        var = x.var(dim=(0, 2, 3), unbiased=False)
        self.losses.append(torch.norm(mean - module.running_mean, 2) + torch.norm(var - module.running_var, 2))

    def pop(self) -> torch.Tensor:
        total = torch.stack(self.losses).sum() if self.losses else torch.zeros(())
        self.losses = []
        return total

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _noise(n: int, clip: Clip, gen: torch.Generator) -> torch.Tensor:
    z = torch.randn(n, 3, clip.image_size, clip.image_size, generator=gen)
    mean = torch.tensor(clip.mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.std).view(1, 3, 1, 1)
    return (mean + std * z).clamp_(0, 1).to(clip.device)


def generate_synthetic(
    clip: Clip,
    classnames: Sequence[str],
    targets: Sequence[int],
    dataset: str,
    template: str,
    config: GenerationConfig | None = None,
    progress: Callable[[dict], None] | None = None,
    descriptions: dict[str, list[str]] | None = None,
    classifier: torch.Tensor | None = None,
) -> SyntheticSet:
    """Make ``config.n_per_class`` images for each class index in ``targets``.

    With ``descriptions`` (class name -> descriptive sentences, e.g. CuPL's), each image climbs the
    similarity to one sentence of its class drawn at random (seeded) instead of the class's template
    prompt; the other classes' rows of the classifier stay the template prompts (WACV'25 §6.2).
    ``classifier``: the :func:`zero_shot_classifier` of ``classnames`` under ``template``, when the
    caller already has it (a caller that generates in several calls); else it is built here.
    """
    config = config or GenerationConfig()
    if not targets:
        raise ClipUnlearnError("No class to generate images for. Pass at least one class name.")
    if config.n_per_class < 1:
        raise ClipUnlearnError(f"n_per_class must be at least 1, got {config.n_per_class}.")
    t0 = time.time()
    gen = torch.Generator().manual_seed(config.seed)
    was_training = clip.model.training
    clip.model.eval()
    try:
        weights = zero_shot_classifier(clip, list(classnames), [template]) if classifier is None else classifier
        labels = torch.tensor([t for t in targets for _ in range(config.n_per_class)], device=clip.device)
        own = None
        if descriptions is not None:
            # a generator of its own, so the draws leave the noise stream alone: under one seed the
            # description run starts from the same pixels as the template run
            pick = torch.Generator().manual_seed(config.seed + SENTENCE_SEED_OFFSET)
            chosen = []
            for t in labels.tolist():
                options = descriptions.get(classnames[t]) or []
                if not options:
                    raise ClipUnlearnError(f"No description of {classnames[t]!r} was given; pass at least one "
                                           "sentence per class, or generate from the template.")
                chosen.append(options[int(torch.randint(len(options), (1,), generator=pick))])
            with torch.no_grad():
                sentences = HalvingBatch(256, "encoding the description sentences")
                with forward_pass(clip.device):
                    own = torch.cat(sentences.chunks(lambda a, b: clip.encode_text(chosen[a:b]).float(), len(chosen)))
                own = F.normalize(own, dim=-1)
        with clip.fast_conv_layout() as fmt, frozen(clip.model):
            out = _ascend(clip, weights, labels, config, gen, progress, fmt, own)
    finally:
        clip.model.train(was_training)
    images, probs, accepted, steps, threshold = out
    return SyntheticSet(images=images.cpu(), targets=labels.cpu(), probs=probs.cpu(), accepted=accepted.cpu(),
                        steps=steps.cpu(), classnames=list(classnames), dataset=dataset, model=clip.arch,
                        template=template, config=asdict(config), final_threshold=threshold,
                        seconds=time.time() - t0)


def _logits(feats: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor,
            own: torch.Tensor | None) -> torch.Tensor:
    """Zero-shot logits; with ``own`` (one unit text embedding per image) it replaces the row of the
    image's own class."""
    logits = LOGIT_SCALE * feats @ weights.T
    if own is None:
        return logits
    mine = LOGIT_SCALE * (feats * own).sum(-1, keepdim=True)
    return logits.scatter(1, labels[:, None], mine)


def _climb(clip: Clip, x: torch.Tensor, waiting: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
           own: torch.Tensor | None, config: GenerationConfig, shift: tuple[int, int], blurred: bool, step: float,
           std: torch.Tensor, threshold: float, prior: _BNPrior | None, fmt: torch.memory_format,
           size: int) -> tuple:
    """One ascent step of the first ``size`` images of ``waiting`` (rows of ``x``, left unchanged):
    (their rows, new pixels, target probabilities, accepted). Nothing outside changes, so a step that
    ran out of memory can run again on fewer images."""
    active = waiting[:size]
    if prior is not None:
        prior.pop()  # what an earlier pass left (a gradient-free acceptance pass, a step that ran out of memory)
    xa = x[active].contiguous(memory_format=fmt).requires_grad_(True)
    dx, dy = shift
    shifted = torch.roll(xa, shifts=(dy, dx), dims=(2, 3))
    with forward_pass(xa.device):  # the tower under the run's precision; logits and the gradient in fp32
        feats = F.normalize(clip.encode_image(shifted).float(), dim=-1)
    y = labels[active]
    own_a = own[active] if own is not None else None
    logits = _logits(feats, weights, y, own_a)
    target_logit = logits.gather(1, y[:, None]).squeeze(1)
    objective = target_logit - config.norm_penalty * clip.normalize(xa).flatten(1).norm(dim=1)
    loss = -objective.sum()
    if prior is not None:
        loss = loss + config.bn_prior * prior.pop() * len(active)
    (grad,) = torch.autograd.grad(loss, xa)
    with torch.no_grad():
        # the step is taken in normalised units: grad w.r.t. normalised pixels is grad·std
        g = -grad * std  # ascent direction, normalised space
        g = g / g.flatten(1).norm(dim=1).clamp_min(1e-12).view(-1, 1, 1, 1)
        xa = xa + step * g * std  # back to [0, 1] pixels
        if blurred:
            xa = blur(xa, config.blur_sigma)
        xa = xa.clamp_(0, 1)
        # acceptance is checked on the updated, unshifted images
        with forward_pass(xa.device):
            feats = F.normalize(clip.encode_image(xa).float(), dim=-1)
        p = F.softmax(_logits(feats, weights, y, own_a), dim=1)
        pa = p.gather(1, y[:, None]).squeeze(1)
        ok = (p.argmax(1) == y) & (pa > threshold)
    return active, xa, pa, ok


def _step_scales(clip: Clip, config: GenerationConfig) -> tuple[int, float, torch.Tensor]:
    """An ascent step's sizes at the model's input size: the largest roll (px), the step's L2 norm in
    normalised units, and the per-channel std that maps it back to [0, 1] pixels."""
    size = clip.image_size
    jitter = max(0, round(config.jitter_224 * size / 224))
    step = config.step_rms * math.sqrt(3 * size * size)
    return jitter, step, torch.tensor(clip.std, device=clip.device).view(1, 3, 1, 1)


def _jitter_and_blur(jitter: int, config: GenerationConfig, done: int,
                     gen: torch.Generator | None) -> tuple[tuple[int, int], bool]:
    """The roll of the next step (drawn from ``gen``) and whether it blurs (every ``blur_every``-th step),
    after ``done`` steps."""
    shift = tuple(torch.randint(-jitter, jitter + 1, (2,), generator=gen).tolist()) if jitter else (0, 0)
    return shift, bool(config.blur_every) and (done + 1) % config.blur_every == 0


def _ascend(clip: Clip, weights: torch.Tensor, labels: torch.Tensor, config: GenerationConfig,
            gen: torch.Generator, progress, fmt: torch.memory_format = torch.contiguous_format,
            own: torch.Tensor | None = None) -> tuple:
    n = len(labels)
    jitter, step, std = _step_scales(clip, config)
    threshold = config.threshold_for(clip.family)
    x = _noise(n, clip, gen)
    best = x.clone()
    best_p = torch.zeros(n, device=clip.device)
    probs = torch.zeros(n, device=clip.device)
    accepted = torch.zeros(n, dtype=torch.bool, device=clip.device)
    given_up = torch.zeros(n, dtype=torch.bool, device=clip.device)
    steps = torch.zeros(n, dtype=torch.long, device=clip.device)
    prior = _BNPrior(clip.model) if config.bn_prior > 0 and clip.family == "resnet" else None
    batch = HalvingBatch(config.batch_size, "generating synthetic images")
    total_steps = 0
    try:
        while True:
            waiting = (~accepted & ~given_up).nonzero().flatten()
            if len(waiting) == 0:
                break
            shift, blurred = _jitter_and_blur(jitter, config, total_steps, gen)
            active, xa, pa, ok = batch.run(partial(_climb, clip, x, waiting, labels, weights, own, config, shift,
                                                   blurred, step, std, threshold, prior, fmt), limit=len(waiting))
            with torch.no_grad():
                steps[active] += 1
                x[active] = xa
                probs[active] = pa
                better = pa > best_p[active]
                best[active[better]] = xa[better]
                best_p[active[better]] = pa[better]
                accepted[active[ok]] = True
                out_of_steps = active[(~ok) & (steps[active] >= config.max_steps)]
                if len(out_of_steps):
                    if threshold - config.threshold_drop >= config.threshold_floor - 1e-9:
                        threshold = round(threshold - config.threshold_drop, 6)
                        x[out_of_steps] = _noise(len(out_of_steps), clip, gen)
                        steps[out_of_steps] = 0
                        best_p[out_of_steps] = 0
                    else:
                        given_up[out_of_steps] = True
                        x[out_of_steps] = best[out_of_steps]
                        probs[out_of_steps] = best_p[out_of_steps]
            total_steps += 1
            if progress is not None and (total_steps % 10 == 0 or not (~accepted & ~given_up).any()):
                progress({"step": total_steps, "accepted": int(accepted.sum()), "total": n,
                          "threshold": threshold, "mean_prob": float(probs.mean())})
    finally:
        if prior is not None:
            prior.close()
    return x.detach(), probs.detach(), accepted, steps, threshold


def climb_again(clip: Clip, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor, steps: int,
                config: GenerationConfig | None = None,
                gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``steps`` more ascent steps of ``images`` ([0, 1] pixels) toward their classes ``labels`` (rows of
    ``weights``) under the model as it is now: what a model still sees of a class that it is being made
    to forget. Each step is a generation step (roll jitter, a blur every ``blur_every``-th step, the
    clamp); nothing is accepted or restarted. Returns the new pixels and their target probabilities;
    the model's parameters receive no gradient."""
    config = config or GenerationConfig()
    if steps < 1:
        raise ClipUnlearnError(f"climb_again needs at least 1 step, got {steps}.")
    jitter, step, std = _step_scales(clip, config)
    x = images.detach().clone()
    everyone = torch.arange(len(x), device=x.device)
    probs = torch.zeros(len(x), device=x.device)
    for i in range(steps):
        shift, blurred = _jitter_and_blur(jitter, config, i, gen)
        _, x, probs, _ = _climb(clip, x, everyone, labels, weights, None, config, shift, blurred, step, std,
                                1.0, None, torch.contiguous_format, len(x))
    return x.detach(), probs.detach()


def generate_with_progress(clip: Clip, classnames: Sequence[str], targets: Sequence[int], dataset: str,
                           template: str, config: GenerationConfig | None = None,
                           progress: bool = True, descriptions: dict[str, list[str]] | None = None) -> SyntheticSet:
    """:func:`generate_synthetic` with a progress bar (accepted images, step, threshold) when ``progress``."""
    if not progress:
        return generate_synthetic(clip, classnames, targets, dataset, template, config, descriptions=descriptions)
    from tqdm.auto import tqdm

    bar = tqdm(desc="generating", unit="img", leave=False)

    def update(info: dict) -> None:
        bar.total = info["total"]
        bar.n = info["accepted"]
        bar.set_postfix(step=info["step"], thr=f"{info['threshold']:.3f}", p=f"{info['mean_prob']:.2f}")
        bar.refresh()

    try:
        return generate_synthetic(clip, classnames, targets, dataset, template, config, update, descriptions)
    finally:
        bar.close()
