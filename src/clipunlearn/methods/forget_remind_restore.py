"""Forget, remind, restore: targeted forgetting of an image subgroup in CLIP (CVPR'25 §4).

The request: real images of the subgroup to forget, real images of similar subgroups to keep, and the
coarse label both are known by (``ctx.request``: the vocabulary of coarse labels and the forgotten
label). Only the image tower changes (the classifier's prompts are the coarse labels).

1. Forgetting (§4.1). Relative Fisher information (Eq. 2): for every Conv2d / Linear weight of the
   image tower, the empirical Fisher on forget images over that on retain images; the ``top_layers``
   highest ratios are the layers the forget set needs and the retain set
   does not. LoRA adapters on those layers only, everything else frozen, fine-tuned on the forget
   images with their coarse label (Eq. 3): Eq. 3 is lost in our copy of the paper, so we minimise
   the cosine similarity between each forget image and its coarse label's prompt (bounded, unlike
   the gradient ascent of the GA baseline), stopping once the forget images are no longer called by
   their coarse label. The adapters are merged into the weights afterwards. The Fisher is that of
   the same quantity, each image's cosine similarity to its label's prompt (our choice: the
   zero-shot cross-entropy's gradient vanishes on images the model is sure of, which the forget
   images are, so its Fisher ranks layers by the sets' confidence rather than by what they use).
2. Reminding (§4.2). The retain images are first aligned to the statistics the image tower stored
   in its batch-norm layers (Eq. 4: a perturbation of the images that makes their per-layer batch
   mean and variance match the running ones, a distillation from the model itself), then the same
   layers are fine-tuned on them with their labels for ``remind_steps`` steps, the weights kept as an
   exponential moving average (Eq. 5, decay ``ema_beta``). Only a model with batch norm in its image
   tower (RN50, RN101, mini-rn) has the statistics; on a ViT the run stops with an error unless
   ``remind_alignment = false`` (our documented alternative: remind on the raw retain images).
3. Restoring (§4.3). A soup α·original + (1 − α)·result (Eq. 6), α chosen on a calibration set: the
   retain images held out of reminding (``calibration_share``) and the forget images, scored by the
   paper's ratio Score of the two (1 − AF/BF on forget, min(1, AF/BF) on calibration; a set the
   original model never got right is left out, as in the Score); ties go to the smaller α, which
   keeps more forgetting. ``soup_alpha`` fixes α instead (Table 5).

Beyond the paper, ``fisher_unit`` = ``channel`` or ``element`` ranks output channels or single weights
instead of layers by the same ratio: the ``fisher_share`` of them with the highest ratio, over every
candidate weight together, are the only ones forgetting and reminding change (a gradient mask, no
LoRA), so that a layer both sets use can still give up what only the forget set needs. ``forget_keep``
adds the retain images' cross-entropy to each forgetting step, so that the siblings are kept while the
subgroup goes rather than repaired afterwards by reminding; ``forget_anchor`` keeps the image features of
the retain images and of synthetic images of other classes at the original model's in those steps (with
``anchor_concept``, of synthetic images of the forgotten coarse label too);
``remind_negatives`` adds the forget images as negatives of their coarse label to each reminding step;
``soup_calibration`` "wide" also scores α on synthetic images of classes to keep; ``forget_views`` and
``remind_views`` train on random views (crop, flip) of the images instead of the same pixels. The preset
``anchored`` combines the anchor and the negatives with reminding on the raw retain images, and its
ablations take each part back (docs/methods.md).

Settings where the paper is silent (LoRA rank, learning rates, steps, α grid) are ours: see
docs/methods.md and the sweep in benchmarks/subgroup_sweep.py.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..evaluation.zeroshot import image_scores
from ..models.factory import Clip
from ..training import (
    KeepRule,
    Loop,
    OptimConfig,
    Stage,
    StopRule,
    Trace,
    run_loop,
    tower_tensors,
)
from ..training.bn_stats import align_to_bn_statistics, batch_norm_layers
from ..training.finetune import class_features
from ..training.fisher import (
    UNITS,
    diagonal_fisher,
    layer_fisher,
    layer_of,
    rank_layers,
    relative_fisher,
    relative_fisher_mask,
)
from ..training.lora import LoraSpec, lora_targets
from ..training.merge import EMA, choose_soup
from ..training.relabel import ShuffledBatches, zero_shot_logits
from ..training.views import Views, random_views
from .base import Method, register_method
from .context import ForgetContext, ImageBatch


@dataclass
class ForgetRemindRestoreConfig:
    # 1. forgetting
    fisher_images: int = 32  # forget and retain images each for the Fisher information (per-sample gradients)
    relative_fisher: bool = True  # False: plain Fisher of the forget images ranks the layers (ablation)
    fisher_eps: float = 1e-3  # added to the retain Fisher, as a share of its mean over layers
    top_layers: int = 3
    # "layer": LoRA on the top_layers (the paper); "channel" / "element": the fisher_share of output
    # channels / elements of highest relative Fisher among the candidates train directly, gradient-masked
    fisher_unit: str = "layer"
    fisher_share: float = 0.01
    skip_first: float = 0.0  # share of the tower's layers (in forward order) never chosen: 0.5 = later half only
    lora: bool = True  # False: fine-tune the chosen layers' weights themselves (ablation)
    lora_rank: int = 4
    lora_alpha: float = 8.0
    forget_lr: float = 1e-3
    forget_epochs: int = 10
    forget_stop: float = 0.0  # stop once at most this share of forget images is called by its coarse label
    # beyond the paper: weight of the reminding retain images' cross-entropy (their coarse label) in each
    # forgetting step, so that forgetting separates the subgroup from its siblings (0: the paper's forgetting)
    forget_keep: float = 0.0
    # beyond the paper: weight of 1 − cos(feature, the original model's feature) on the reminding retain
    # images and synthetic images of classes to keep, in each forgetting step, so that the rest of the
    # image space stays where it was (0: none)
    forget_anchor: float = 0.0
    # beyond the paper: synthetic images of the forgotten coarse label itself, made from the original model's
    # prompt of it, join the anchor, so that the concept stays where the subgroup's real images are not (the
    # other domain of a cross-domain setting, the siblings of an in-domain one); needs forget_anchor > 0
    anchor_concept: bool = False
    # beyond the paper: each forgetting step sees a random view (crop, flip) of its forget images rather than
    # the same pixels, so that forgetting holds on the subgroup's other images, not only on these
    forget_views: bool = False
    batch_size: int = 32
    # 2. reminding
    remind_steps: int = 20  # Table 4; 0 skips reminding (ablation)
    remind_alignment: bool = True  # align the retain images to the batch-norm statistics first (Eq. 4)
    align_steps: int = 50
    align_lr: float = 0.01
    remind_lr: float = 1e-4
    ema_beta: float = 0.9
    calibration_share: float = 0.25  # retain images held out of reminding, for choosing α
    # beyond the paper: weight of −log(1 − p(coarse label | forget image)) in each reminding step, so that
    # the siblings come back without the forgotten subgroup (0: the paper's reminding)
    remind_negatives: float = 0.0
    remind_views: bool = False  # beyond the paper: random views of the retain (and negative) images in reminding
    # 3. restoring
    restore: bool = True  # False: no soup (ablation)
    soup_alphas: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    soup_alpha: float | None = None  # a fixed α instead of the calibrated one (Table 5)
    # "request": α scored on the forget and held-out retain images (the paper); "wide": also on synthetic
    # images of the other coarse labels and of everyday concepts, each classified among their names
    soup_calibration: str = "request"
    retain_per_subgroup: int | None = 50  # retain train images per subgroup (None: all)
    forget_per_subgroup: int | None = 50


@register_method
class ForgetRemindRestore(Method):
    name = "forget-remind-restore"
    title = "Subgroup forgetting (CVPR'25): relative-Fisher layers + LoRA, BN-aligned reminding with EMA, model soup"
    config_cls = ForgetRemindRestoreConfig
    needs = frozenset({"real_forget", "real_retain"})
    # paper: every Conv2d / Linear layer of the image tower may be chosen (§4.1); default: only its last
    # quarter (on mini-rn layer4 and the attention pool): earlier layers, which every image passes,
    # were chosen by the relative Fisher and forgetting there took other datasets down (docs/methods.md)
    # anchored (beyond the paper; measured on mini-rn-h, docs/methods.md): the rest of the image space held
    # at the original's while forgetting runs up to 40 epochs, reminding on the raw retain images (their
    # batch-norm alignment took them away from their label) with the forgotten subgroup as negatives
    presets = {"default": {"skip_first": 0.75}, "paper": {},
               "anchored": {"skip_first": 0.75, "forget_epochs": 40, "forget_anchor": 10.0, "remind_negatives": 1.0,
                            "remind_alignment": False}}
    families = ("resnet",)  # reminding needs batch norm; a ViT runs with --set remind_alignment=false
    ablations = {
        "no-relative-fisher": {"relative_fisher": False},
        "no-lora": {"lora": False},
        "no-remind": {"remind_steps": 0},
        "no-restore": {"restore": False},
        # the anchored preset's parts, each taken back on its own (run on top of preset "anchored")
        "no-anchor": {"forget_anchor": 0.0},
        "no-negatives": {"remind_negatives": 0.0},
        "aligned-reminding": {"remind_alignment": True},
        "short-forgetting": {"forget_epochs": 10},
    }

    @property
    def data_kinds(self) -> frozenset[str]:
        """The wide soup calibration and the forgetting's anchor also see synthetic images of classes to keep
        (made from their names); ``anchor_concept``, synthetic images of the forgotten coarse label."""
        kinds = self.needs | {"synthetic_retain"} if _keeps_synthetic(self.config) else self.needs
        return kinds | {"synthetic_forget"} if self.config.anchor_concept else kinds

    def check_classes(self, classnames: Sequence[str]) -> None:
        """A bad setting is refused before the model loads (the forget pipeline and suites call this first)."""
        _check(self.config)

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip = self.config, ctx.clip
        _check(cfg)
        if cfg.remind_steps > 0 and cfg.remind_alignment:
            try:
                batch_norm_layers(clip)
            except TrainingError:
                raise TrainingError(
                    f"forget-remind-restore reminds the model with its batch-norm statistics, and the image tower "
                    f"of {clip.arch} has none. Use a ResNet CLIP (RN50, RN101, mini-rn), or --set "
                    "remind_alignment=false to remind on the raw retain images (not the paper's method).") from None
        forget = ctx.real_forget(per_class=cfg.forget_per_subgroup)
        retain = ctx.real_retain(per_class=cfg.retain_per_subgroup)
        if len(forget) == 0 or len(retain) == 0:
            raise TrainingError("forget-remind-restore needs forget and retain images; the request has "
                                f"{len(forget)} and {len(retain)}.")
        text = class_features(clip, ctx.request.classnames, ctx.request.template)
        original = {k: v.detach().clone() for k, v in clip.model.state_dict().items()}
        trace = Trace(info={"forget_images": len(forget), "retain_images": len(retain)})
        keep = None  # made now, from the original model: what the anchor and the wide soup calibration keep
        if _keeps_synthetic(cfg):
            keep = ctx.synthetic_retain()
            trace.info["keep_synthetic"] = len(keep)
        concept = ctx.synthetic_forget() if cfg.anchor_concept else None  # the coarse label, from the original
        if concept is not None:
            trace.info["anchor_concept"] = len(concept)
        run = _Run(ctx, cfg, forget, retain, text, trace, keep, concept)

        n_cal, calibration, reminded = _hold_out(run)  # the calibration images are seen by no training step
        chosen, mask, forgot_because = _forget(run, reminded)
        remind_because = _remind(run, chosen, mask, reminded)
        restore_because = _restore(run, original, calibration, n_cal)

        trace.changed_tensors = [n for n in original if not torch.equal(original[n], clip.model.state_dict()[n])]
        trace.kept_any_step = bool(trace.changed_tensors)
        trace.stopped_because = f"forget: {forgot_because}; remind: {remind_because}; restore: {restore_because}"
        return trace


def _keeps_synthetic(cfg: ForgetRemindRestoreConfig) -> bool:
    """Whether the run uses synthetic images of classes to keep: the forgetting's anchor, or the wide soup
    calibration where α is calibrated."""
    return cfg.forget_anchor > 0 or (cfg.soup_calibration == "wide" and cfg.restore and cfg.soup_alpha is None)


def _check(cfg: ForgetRemindRestoreConfig) -> None:
    """One-line errors for settings the method cannot run with, each naming the knob and the fix."""
    if cfg.fisher_unit not in ("layer", *UNITS):
        raise TrainingError(f"Unknown fisher_unit {cfg.fisher_unit!r}; use one of layer, {', '.join(UNITS)}.")
    if cfg.fisher_unit != "layer" and not 0.0 < cfg.fisher_share <= 1.0:
        raise TrainingError(f"forget-remind-restore's fisher_share is the share of {cfg.fisher_unit}s that may change: "
                            f"it must lie in (0, 1], got {cfg.fisher_share}.")
    if cfg.soup_calibration not in CALIBRATIONS:
        raise TrainingError(f"Unknown soup_calibration {cfg.soup_calibration!r}; use one of {', '.join(CALIBRATIONS)}.")
    if cfg.anchor_concept and cfg.forget_anchor <= 0:
        raise TrainingError("forget-remind-restore's anchor_concept adds images to the forgetting's anchor: set "
                            "forget_anchor > 0 too (e.g. --preset anchored).")
    for knob in ("forget_keep", "forget_anchor", "remind_negatives"):
        if getattr(cfg, knob) < 0:
            raise TrainingError(f"forget-remind-restore's {knob} is a loss weight: it must be >= 0, got "
                                f"{getattr(cfg, knob)}.")


#: the random views of forget_views and remind_views: half to all of the image area, flipped half the time
VIEWS = Views(scale=(0.5, 1.0), flip=0.5)

#: how the soup's α is scored: on the request's images, or on synthetic images of classes to keep too
CALIBRATIONS = ("request", "wide")


@dataclass
class _Run:
    """What the three phases share: the request's forget and retain images, the prompts of the coarse
    labels, and the trace they add to."""

    ctx: ForgetContext
    cfg: ForgetRemindRestoreConfig
    forget: ImageBatch
    retain: ImageBatch
    text: torch.Tensor  # the coarse labels' prompt features (class_features)
    trace: Trace
    keep: ImageBatch | None = None  # synthetic images of classes to keep (the anchor, the "wide" soup calibration)
    concept: ImageBatch | None = None  # synthetic images of the forgotten coarse label (anchor_concept)

    @property
    def clip(self) -> Clip:
        return self.ctx.clip

    def accuracy(self, images: torch.Tensor, labels: torch.Tensor) -> float:
        """The share of ``images`` the model calls by their coarse label ``labels``."""
        return image_scores(self.clip, images, labels, self.ctx.request.classnames, [self.ctx.request.template])[0]

    def forget_acc(self) -> dict[str, float]:
        acc, prob = image_scores(self.clip, self.forget.images, self.forget.labels, self.ctx.request.classnames,
                                 [self.ctx.request.template])
        return {"forget_acc": acc, "target_prob": prob}


# --- 1. forgetting: relative Fisher ranks the layers, LoRA on the top ones --------------------------------
def _choose(run: _Run) -> tuple[list[str], dict[str, torch.Tensor] | None]:
    """The weights forgetting and reminding change, and their 0/1 mask: the ``top_layers`` image-tower
    layers of highest relative Fisher information (Eq. 2) and no mask; with ``fisher_unit`` channel or
    element, every candidate weight and the mask of its ``fisher_share`` of channels or elements."""
    cfg, clip, forget, retain, text = run.cfg, run.clip, run.forget, run.retain, run.text
    t0 = time.time()
    candidates = lora_targets(clip.model, tower_tensors(clip.model, "all", image=True, text=False)["image"])
    candidates = [n for n in candidates if n.endswith(".weight")]
    candidates = candidates[int(cfg.skip_first * len(candidates)):]

    def similarity(images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        feats = F.normalize(clip.encode_image(images), dim=-1)
        return (feats * text[labels.to(text.device)]).sum(-1).mean()

    n = cfg.fisher_images
    element_f = diagonal_fisher(clip.model, candidates, similarity, forget.images[:n], forget.labels[:n])
    element_r = {k: torch.zeros_like(v) for k, v in element_f.items()}  # no relative Fisher: the forget's alone
    if cfg.relative_fisher:
        pick = torch.randperm(len(retain), generator=run.ctx.generator(21))[:n]
        element_r = diagonal_fisher(clip.model, candidates, similarity, retain.images[pick], retain.labels[pick])
    if cfg.fisher_unit != "layer":
        mask = relative_fisher_mask(element_f, element_r, cfg.fisher_share, cfg.fisher_unit, cfg.fisher_eps)
        run.trace.info.update({"fisher_unit": cfg.fisher_unit, "fisher_seconds": round(time.time() - t0, 2),
                               "masked_layers": sorted({layer_of(k) for k, m in mask.items() if bool(m.any())})})
        return candidates, mask
    fisher_f = layer_fisher(element_f)
    if cfg.relative_fisher:
        fisher_r = layer_fisher(element_r)
        eps = cfg.fisher_eps * (sum(fisher_r.values()) / max(1, len(fisher_r))) + 1e-30
        scores = relative_fisher(fisher_f, fisher_r, eps)
    else:
        scores = fisher_f
    layers = rank_layers(scores, cfg.top_layers)
    run.trace.info.update({"layers": layers, "layer_scores": {k: scores[k] for k in layers},
                           "fisher_seconds": round(time.time() - t0, 2)})
    return [n for n in candidates if layer_of(n) in set(layers)], None


def _forget(run: _Run, reminded: torch.Tensor) -> tuple[list[str], dict[str, torch.Tensor] | None, str]:
    """Fine-tune the chosen layers (LoRA) or masked weights away from each forget image's coarse-label
    prompt (Eq. 3), until the forget images are no longer called by it; with ``forget_keep``, the
    ``reminded`` retain images' cross-entropy is kept low in the same steps, with ``forget_anchor`` their
    and the synthetic kept classes' features near the original's. The chosen weights, their mask, and
    why it stopped."""
    cfg, clip, ctx, text = run.cfg, run.clip, run.ctx, run.text
    chosen, mask = _choose(run)
    f_imgs, f_labels = run.forget.images, run.forget.labels
    coarse_text = text[f_labels.to(text.device)]  # each forget image's coarse-label prompt
    batches = ShuffledBatches(len(f_imgs), cfg.batch_size, ctx.generator(22))
    r_imgs, r_labels = run.retain.images[reminded], run.retain.labels[reminded]
    r_batches = ShuffledBatches(len(r_imgs), cfg.batch_size, ctx.generator(26))
    anchor = _Anchor(run, r_imgs) if cfg.forget_anchor > 0 else None
    views_gen = ctx.generator(28)

    def forget_step(stage: Stage, epoch: int, s: int):
        idx = batches.indices(s)
        batch = random_views(f_imgs[idx], VIEWS, views_gen) if cfg.forget_views else f_imgs[idx]
        feats = F.normalize(clip.encode_image(batch.to(clip.device)), dim=-1)
        sim = (feats * coarse_text[idx]).sum(-1).mean()
        loss, parts = sim, {"similarity": float(sim.detach())}
        if cfg.forget_keep > 0:  # the siblings kept under their coarse label meanwhile
            rdx = r_batches.indices(s % r_batches.steps)
            ce = F.cross_entropy(zero_shot_logits(clip, r_imgs[rdx].to(clip.device), text),
                                 r_labels[rdx].to(text.device))
            loss, parts["keep_ce"] = loss + cfg.forget_keep * ce, float(ce.detach())
        if anchor is not None:  # the rest of the image space kept where the original model had it
            drift = anchor.drift(s)
            loss, parts["anchor_drift"] = loss + cfg.forget_anchor * drift, float(drift.detach())
        return loss, parts

    lora = LoraSpec(cfg.lora_rank, cfg.lora_alpha, seed=ctx.knobs.seed) if cfg.lora and mask is None else None
    loop = Loop(towers={"image": chosen}, optim=OptimConfig("adam", cfg.forget_lr, (0.9, 0.999), 1e-8),
                max_epochs=ctx.epochs(cfg.forget_epochs), steps_per_epoch=batches.steps,
                selection="all" if mask is None else "mask", mask=mask, keep=KeepRule(),
                stop=StopRule("forget_acc", cfg.forget_stop), phase="forget", lora=lora, batch_size=cfg.batch_size)
    run_loop(clip, loop, forget_step, run.forget_acc, ctx.knobs.progress, run.trace)
    kept = [f"retain images kept at weight {cfg.forget_keep}"] if cfg.forget_keep > 0 else []
    if anchor is not None:
        concept = " with the coarse label's synthetic images" if run.concept is not None else ""
        kept.append(f"features anchored at weight {cfg.forget_anchor}{concept}")
    return chosen, mask, run.trace.stopped_because + (f" ({'; '.join(kept)})" if kept else "")


class _Anchor:
    """Images whose features forgetting keeps near the original model's: the given retain images, the
    run's synthetic images of classes to keep and, with ``anchor_concept``, of the forgotten coarse label.
    ``drift(step)`` is the mean 1 − cos(feature, original feature) over a batch of them; the original
    features are taken when the anchor is made."""

    def __init__(self, run: _Run, retain_images: torch.Tensor):
        parts = [retain_images] + [b.images for b in (run.keep, run.concept) if b is not None]
        self.clip, self.images = run.clip, torch.cat([p.to(retain_images.device) for p in parts])
        self.batches = ShuffledBatches(len(self.images), run.cfg.batch_size, run.ctx.generator(27))
        with torch.no_grad():
            self.original = torch.cat([F.normalize(self.clip.encode_image(self.images[i:i + 64].to(self.clip.device)),
                                                   dim=-1) for i in range(0, len(self.images), 64)])

    def drift(self, step: int) -> torch.Tensor:
        idx = self.batches.indices(step % self.batches.steps)
        feats = F.normalize(self.clip.encode_image(self.images[idx].to(self.clip.device)), dim=-1)
        return (1.0 - (feats * self.original[idx.to(self.original.device)]).sum(-1)).mean()


# --- 2. reminding: BN-aligned retain images, fine-tuning with an EMA of the weights -------------------------
def _hold_out(run: _Run) -> tuple[int, torch.Tensor, torch.Tensor]:
    """The retain images held out of reminding to choose α on (``calibration_share`` of them when α is
    calibrated): their count and indices, and the indices of the others."""
    cfg, retain = run.cfg, run.retain
    order = torch.randperm(len(retain), generator=run.ctx.generator(23))
    n_cal = int(round(cfg.calibration_share * len(retain))) if cfg.restore and cfg.soup_alpha is None else 0
    if n_cal >= len(retain):
        raise TrainingError(f"calibration_share {cfg.calibration_share} leaves no retain image to remind with; "
                            "lower it.")
    return n_cal, order[:n_cal], order[n_cal:]


def _remind(run: _Run, chosen: list[str], mask: dict[str, torch.Tensor] | None, reminded: torch.Tensor) -> str:
    """Fine-tune the ``chosen`` weights (where ``mask`` allows) on the ``reminded`` retain images (aligned
    to the batch-norm statistics, Eq. 4) for ``remind_steps`` steps, keeping an EMA of the weights (Eq. 5);
    what was done."""
    cfg, clip, ctx, retain, text, trace = run.cfg, run.clip, run.ctx, run.retain, run.text, run.trace
    if cfg.remind_steps <= 0:
        return "skipped (remind_steps 0)"
    r_imgs, r_labels = retain.images[reminded], retain.labels[reminded]
    if cfg.remind_alignment:
        r_imgs, bn = align_to_bn_statistics(clip, r_imgs, cfg.align_steps, cfg.align_lr)
        trace.info.update({k: round(v, 4) for k, v in bn.items()})
    ema = EMA(clip.model, cfg.ema_beta, chosen)
    r_batches = ShuffledBatches(len(r_imgs), cfg.batch_size, ctx.generator(24))
    f_batches = ShuffledBatches(len(run.forget), cfg.batch_size, ctx.generator(25))
    views_gen = ctx.generator(29)

    def view(images: torch.Tensor) -> torch.Tensor:
        return random_views(images, VIEWS, views_gen) if cfg.remind_views else images

    def remind_step(stage: Stage, epoch: int, s: int):
        idx = r_batches.indices(s % r_batches.steps)
        ce = F.cross_entropy(zero_shot_logits(clip, view(r_imgs[idx]).to(clip.device), text),
                             r_labels[idx].to(text.device))
        if cfg.remind_negatives <= 0:
            return ce, {"ce": float(ce.detach())}
        fdx = f_batches.indices(s % f_batches.steps)  # the forgotten subgroup as negatives of its coarse label
        p = zero_shot_logits(clip, view(run.forget.images[fdx]).to(clip.device), text).softmax(-1)
        p_label = p.gather(1, run.forget.labels[fdx].to(p.device)[:, None]).squeeze(1)
        negatives = -torch.log1p(-p_label.clamp(max=1 - 1e-6)).mean()
        loss = ce + cfg.remind_negatives * negatives
        return loss, {"ce": float(ce.detach()), "negatives": float(negatives.detach())}

    loop = Loop(towers={"image": chosen}, optim=OptimConfig("adam", cfg.remind_lr, (0.9, 0.999), 1e-8),
                max_epochs=1, steps_per_epoch=cfg.remind_steps, selection="all" if mask is None else "mask",
                mask=mask, keep=KeepRule(), stop=StopRule(), phase="remind", after_step=lambda: ema.update(clip.model),
                batch_size=cfg.batch_size)
    run_loop(clip, loop, remind_step, None, ctx.knobs.progress, trace)
    ema.copy_to(clip.model)
    trace.steps.append({"epoch": trace.steps[-1]["epoch"], "phase": "remind (EMA)",
                        "retain_acc": run.accuracy(r_imgs, r_labels), **run.forget_acc(), "kept": True})
    negatives = f", forgotten subgroup as negatives (weight {cfg.remind_negatives})" if cfg.remind_negatives > 0 else ""
    return f"{cfg.remind_steps} steps, EMA β={cfg.ema_beta}{negatives}"


# --- 3. restoring: a soup with the original model, α on the calibration set ---------------------------------
def _soup_score(run: _Run, original: dict[str, torch.Tensor], calibration: torch.Tensor) -> Callable[[], float]:
    """The paper's ratio Score of the forget and calibration images (1 - AF/BF, min(1, AF/BF)), BF
    measured on the ``original`` weights; a set the original never got right is left out. With
    ``soup_calibration`` "wide", synthetic images of classes to keep (the other coarse labels and
    everyday concepts, classified among their own names) are a third column, kept as min(1, AF/BF)."""
    f_imgs, f_labels = run.forget.images, run.forget.labels
    columns: list[tuple[str, Callable[[], float], bool]] = [  # (name, accuracy now, forgotten?)
        ("forget", lambda: run.accuracy(f_imgs, f_labels), True),
        ("calibration", lambda: run.accuracy(run.retain.images[calibration], run.retain.labels[calibration]), False)]
    keep = run.keep
    if keep is not None:
        template = [run.ctx.request.template]
        columns.append(("synthetic kept classes",
                        lambda: image_scores(run.clip, keep.images, keep.labels, keep.classnames, template)[0], False))
    with _original(run.clip, original):
        before = {name: acc() for name, acc, _ in columns}
    run.trace.info["soup_left_out"] = [n for n, b in before.items() if b <= 0]  # never recognised: no ratio

    def score_fn() -> float:
        terms = []
        for name, acc, forgotten in columns:
            if before[name] > 0:
                ratio = acc() / before[name]
                terms.append(min(1.0, max(0.0, 1.0 - ratio)) if forgotten else min(1.0, ratio))
        return sum(terms) / len(terms) if terms else 0.0

    return score_fn


def _restore(run: _Run, original: dict[str, torch.Tensor], calibration: torch.Tensor, n_cal: int) -> str:
    """The soup α·original + (1 - α)·result of best Score on the ``calibration`` images (Eq. 6), or of
    the fixed ``soup_alpha``; what was done."""
    cfg, clip, trace = run.cfg, run.clip, run.trace
    if not cfg.restore:
        return "skipped"
    tuned = {k: v.detach().clone() for k, v in clip.model.state_dict().items()}
    if cfg.soup_alpha is not None:
        alphas, score_fn = [float(cfg.soup_alpha)], (lambda: 0.0)
    else:
        alphas, score_fn = list(cfg.soup_alphas), _soup_score(run, original, calibration)
    best, scores = choose_soup(clip, original, tuned, alphas, score_fn)
    trace.info.update({"soup_alpha": best, "soup_scores": {str(a): round(s, 4) for a, s in scores.items()},
                       "calibration_images": int(n_cal)})
    trace.steps.append({"epoch": trace.steps[-1]["epoch"], "phase": "restore", "alpha": best,
                        **run.forget_acc(), "kept": True})
    return f"soup α={best}"


@contextmanager
def _original(clip: Clip, original: dict[str, torch.Tensor]) -> Iterator[None]:
    """Within the block the model holds the ``original`` weights; its current ones are put back after."""
    saved = {k: v.detach().clone() for k, v in clip.model.state_dict().items()}
    clip.model.load_state_dict(original)
    try:
        yield
    finally:
        clip.model.load_state_dict(saved)
