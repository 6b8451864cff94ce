"""Uproot: forget a class so that it does not come back under relearning (ours, beyond both papers).

Every method we audited only hid the class: a few fine-tuning steps on a few images brought it back
(docs/results/audit). Uproot is zero-shot (the model and the class's name; synthetic images only in its
image-side variants) and aims at the model that never learnt the class, the audit's oracle:

    A CLIP trained without a class never trained the word pieces of its name: their rows of the token
    embedding are still random draws. The text side makes the forgotten name's pieces so again:
        text side ("reset", the default): every word piece that occurs in the forgotten name and in no
            name the model must keep (the dataset's other classes, everyday concepts, ImageNet's 1000
            class names) gets a fresh random row, drawn as an untrained row is (training.names). Nothing
            else changes: every other prompt embeds exactly as before, the image tower is untouched.
        ("train", ablation ``trained-text``): those rows are trained instead, so that the name's prompts
            embed as the original embeds an unknown word (the one of 32 random words that it finds
            least in images of no class, so that the name does not become a hub).
    The image side (ablations ``image-side``, ``image-only``): the whole image tower trains (Adam) on
    synthetic images of the class and of classes to keep:
        scatter:  −log(1 − p(class)) on the forget images, plus the mean pairwise cosine of their
                  features: push the class's images away from it *and apart*, rather than moving them
                  together onto another prompt (Spotter); p under the run's template and (default)
                  under 8 templates of Uproot's own (``SCATTER_TEMPLATES``, none of them a prompt the
                  audit tries), so that the class does not come back when asked for another way
        retain:   KL(original ‖ current) of the zero-shot predictions on the retain images
        attack:   simulate the audit's tuning attack (a few Adam steps toward the class on k forget
                  images), measure the scatter loss after it, and descend its gradient at the attacked
                  weights (first-order, as TAR / meta-unlearning)
        refresh:  before each step the forget images climb 5 more generation steps toward the class under
                  the model as it is then (``synthetic.climb_again``): images made by gradient ascent sit
                  just past a decision boundary, so the first step tips them over and the terms above
                  stop seeing the class while real images still show it; climbed again, they keep showing
                  what the model still sees of it (10 steps; ablation ``no-refresh``: 30 steps without)

The text side's reset erases only the word pieces that are the name's own. When some of the name's pieces
are words the model must keep ("car" in "car side", "mallow" in "tree mallow" beside the class "mallow"),
the default edits the text tower's projection in closed form instead (``shared_pieces="edit"``,
training.text_edit): the name's prompts under the run's template and SCATTER_TEMPLATES move to the
embedding of an unknown word under the same template (the least hub of 32 random words), every kept name
(the reset's list) under the run's template and KEEP_TEMPLATES keeps its own, least squares with a weight
on keeping (10). The kept names alone leave some directions of the prompts with little weight, and the edit
moves most there: names that carry numbers (Stanford Cars' "2012 Acura TL Sedan") lie in them. So 1,000
kept names with a year before them ("1987 canoe", seeded) keep their embeddings too (``edit_dated_names``).
Ablation ``image-fallback`` runs the image side there instead, on the image tower's head only (the
attention pool of a ResNet, the last norm and projection of a ViT): the default before the edit
(2026-12-06). The run's trace and log say which ran.

The audit's held-out attacks (docs/audit.md) are never simulated: only its tuning attacks (Adam on the
image tower, lr 1e-5 / 1e-6, k = 1 or 5 images of the class) are, and on synthetic images; no prompt the
audit tries is among the templates the edit moves (tested). docs/methods.md gives what each variant
measured.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from ..errors import TrainingError
from ..evaluation.zeroshot import image_scores, zero_shot_classifier
from ..models.factory import Clip
from ..synthetic import climb_again
from ..training import (
    GENERAL_VOCABULARY,
    Loop,
    OptimConfig,
    RetainAnchor,
    Stage,
    StopRule,
    Trace,
    nearest_names,
    run_loop,
    tower_tensors,
)
from ..training.adversary import SimulatedRelearning, scatter_loss
from ..training.names import (
    NameEraser,
    generic_images,
    name_pieces,
    only_rows,
    reset_name_tokens,
    unknown_word,
)
from ..training.text_edit import PROJECTION, ProjectionEdit, edit_text_projection
from .base import Method, register_method
from .context import ForgetContext, ImageBatch

#: the image tower's tensors after its trunk (``head_only``)
HEAD = ("visual.attnpool.", "visual.ln_post.", "visual.proj")


log = logging.getLogger("clipunlearn")

TEXT_SIDES = ("off", "reset", "train")
#: what forgets a name some of whose word pieces the model must keep (the reset cannot redraw them)
SHARED_PIECES = ("edit", "image")

#: ways of asking for a class that the image side's scatter term also pushes the class down under
#: (``many_templates``), besides the run's template. Written for Uproot and kept apart from every prompt
#: the audit tries (its three changed templates and open_clip's 80 ImageNet templates: tested), so the
#: audit's prompts attack stays a held-out test.
SCATTER_TEMPLATES = ("a picture of a {}.", "an image showing a {}.", "a snapshot of a {}.", "{}",
                     "a {} in the scene.", "a view of a {}.", "a drawing that shows a {}.", "one {}.")
#: the ways of asking for a kept name that the text projection's edit keeps, besides the run's template
KEEP_TEMPLATES = ("{}", "a picture of a {}.")


def names_to_keep(classnames: list[str], forget: list[str]) -> list[str]:
    """The names whose word pieces the text side must not touch: the request's other classes, everyday
    concepts and ImageNet's 1000 class names (open_clip's list: a broad vocabulary of things a CLIP knows),
    less any name that is a forgotten one."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    gone = {n.lower() for n in forget}
    names = [*classnames, *GENERAL_VOCABULARY, *IMAGENET_CLASSNAMES]
    return list(dict.fromkeys(n for n in names if n.lower() not in gone))


@dataclass
class UprootConfig:
    lr: float = 1e-4
    max_epochs: int = 30  # one step per epoch, on every forget image
    eligibility: str = "all"  # the image tower's tensors that train: "all", "catalogue" or "official"
    head_only: bool = True  # only the tensors after the trunk (ResNet: attention pool; ViT: ln_post, proj)
    spread: float = 1.0  # weight of the mean pairwise cosine of the forget images' features
    many_templates: bool = False  # the scatter term under SCATTER_TEMPLATES too, not only the run's template
    retain_weight: float = 3.0
    retain_classes: int = 48  # other classes given one synthetic retain image each (seeded sample if more)
    retain_vocabulary: bool = True  # also anchor everyday concepts (training.retain.GENERAL_VOCABULARY)
    retain_steps: int = 100  # generation budget per retain image
    #: also anchor the kept names (everyday concepts, ImageNet's class names) that the original embeds
    #: closest to the forgotten name (training.nearest_names), one synthetic image each: what forgetting
    #: "car side" would take along (minivan, convertible, ...); 0: off
    retain_neighbours: int = 0
    attack_steps: int = 3  # simulated relearning steps per step; 0: no simulated attack
    attack_lr: float = 1e-5  # the audit's tuning attack: Adam on the image tower at 1e-5
    attack_images: int = 5  # k images of the class the simulated attacker has (the tuning attacks' k)
    attack_weight: float = 1.0
    #: before each step, climb the forget images this many generation steps toward the class under the
    #: model as it is then (synthetic.climb_again), so the scatter term keeps aiming at whatever the model
    #: still sees of the class rather than at images that stopped showing it after the first step; 0: off
    refresh_steps: int = 0
    #: with refresh: stop once the climbed images' class probability (before a step) is at most this,
    #: i.e. once ``refresh_steps`` of climbing no longer find the class; None: run max_epochs
    stop_refreshed_at: float | None = None
    image_tower: bool = True  # False: only the text side changes (the scatter and attack terms are off)
    #: the text side: "reset" redraws the word pieces only the forgotten names use, as untrained rows
    #: (training.names); "train" trains the name's prompts toward an unknown word's embedding
    #: (``text_tensors``, ``text_weight``, ``text_keep_weight``); "off" leaves the text tower as it was
    text_side: str = "off"
    #: with the reset, where some of the names' word pieces are words the model must keep: "edit" the text
    #: projection in closed form (the names' prompts -> an unknown word's embedding, every kept name's
    #: prompts where they were; training.text_edit), or run the "image" side
    shared_pieces: str = "image"  # the presets: "edit"
    edit_keep_weight: float = 10.0  # the edit's weight of keeping the kept names against moving the forgotten
    edit_ridge: float = 1e-3  # the edit's pull toward the original projection (times the data terms' scale)
    #: the edit also keeps this many kept names with a year before them, under the run's template (names
    #: that carry numbers: product names); 0: off (the presets: 1000)
    edit_dated_names: int = 0
    text_tensors: str = "token_embedding"  # "train": which text tensors, the word pieces' rows or "all"
    text_weight: float = 1.0  # weight of the text term: the name's prompt embedding -> an unknown word's
    text_keep_weight: float = 10.0  # weight of keeping every other name's prompt embedding where it was
    generic_weight: float = 0.0  # KL(original ‖ current) on smooth random images of no class (no hub); 0: off
    generic_images: int = 64
    least_hub: bool = True  # "train": of 32 random words, aim at the one the original finds least in generic images


@register_method
class Uproot(Method):
    name = "uproot"
    title = "Scatter the class's image features, trained against simulated relearning (ours)"
    config_cls = UprootConfig
    needs = frozenset({"synthetic_forget", "synthetic_retain"})
    #: "default": what measured best on mini-rn (docs/methods.md): the text side's reset, and where some of
    #: the name's word pieces are kept words, the text projection's edit (the image side's settings, refresh
    #: 5 over 10 steps, serve its ablations). There is no paper: "paper" is the same, for suites that ask
    #: every method for it.
    presets = {"default": {"image_tower": False, "text_side": "reset", "shared_pieces": "edit", "many_templates": True,
                           "edit_dated_names": 1000, "refresh_steps": 5, "max_epochs": 10},
               "paper": {"image_tower": False, "text_side": "reset", "shared_pieces": "edit", "many_templates": True,
                         "edit_dated_names": 1000, "refresh_steps": 5, "max_epochs": 10}}
    ablations = {
        "trained-text": {"text_side": "train", "lr": 2e-3, "generic_weight": 3.0},  # trained, not redrawn
        "image-side": {"image_tower": True},  # the reset plus the image side, whatever the name's pieces
        "run-template": {"many_templates": False},  # the scatter term under the run's template only
        "image-only": {"image_tower": True, "text_side": "off"},  # the image side alone
        "image-only-no-attack": {"image_tower": True, "text_side": "off", "attack_steps": 0},
        "whole-image-tower": {"image_tower": True, "text_side": "off", "head_only": False},
        "no-refresh": {"refresh_steps": 0, "max_epochs": 30},  # the image side on the images as generated (before 2026-12-06)
        # the edit keeps the kept names only (before 2026-12-06's second change)
        "no-dated-names": {"edit_dated_names": 0},
        "image-fallback": {"shared_pieces": "image"},  # shared word pieces: the image side, not the edit (the default before the edit, 2026-12-06)
    }

    def check_classes(self, classnames: Sequence[str]) -> None:
        """A bad setting is refused before the model loads (the forget pipeline and suites call this first)."""
        _check(self.config)

    def run(self, ctx: ForgetContext) -> Trace:
        cfg, clip = self.config, ctx.clip
        _check(cfg)
        trace = Trace()
        gone = list(ctx.request.class_names)  # the names to forget
        forget = ctx.synthetic_forget()

        def measure() -> dict[str, float]:
            acc, prob = image_scores(clip, forget.images, forget.labels, forget.classnames, [ctx.request.template])
            return {"forget_acc": acc, "target_prob": prob}

        image_side = cfg.image_tower
        if cfg.text_side == "reset":
            image_side = _reset_text(ctx, cfg, gone, trace, measure, image_side)
            if not image_side:
                return trace
        return _train(ctx, cfg, gone, forget, trace, measure, image_side)


def _check(cfg: UprootConfig) -> None:
    """One-line errors for settings Uproot cannot run with, each naming the knob and the fix."""
    if cfg.text_side not in TEXT_SIDES:
        raise TrainingError(f"Unknown text_side {cfg.text_side!r}; use one of {', '.join(TEXT_SIDES)}.")
    if cfg.shared_pieces not in SHARED_PIECES:
        raise TrainingError(f"Unknown shared_pieces {cfg.shared_pieces!r}; use one of {', '.join(SHARED_PIECES)}.")
    if cfg.edit_keep_weight < 0 or cfg.edit_ridge <= 0:
        raise TrainingError(f"uproot's edit_keep_weight must be 0 or more and edit_ridge more than 0, got "
                            f"{cfg.edit_keep_weight} and {cfg.edit_ridge}.")
    for knob in ("refresh_steps", "retain_neighbours", "edit_dated_names"):
        if getattr(cfg, knob) < 0:
            raise TrainingError(f"uproot's {knob} must be 0 (off) or more, got {getattr(cfg, knob)}.")
    if cfg.stop_refreshed_at is not None and cfg.refresh_steps == 0:
        raise TrainingError("uproot's stop_refreshed_at reads the climbed images' probability, which refresh_steps "
                            "0 leaves unmeasured: set refresh_steps to 1 or more, or leave stop_refreshed_at unset.")


def _reset_text(ctx: ForgetContext, cfg: UprootConfig, gone: list[str], trace: Trace,
                measure: Callable[[], dict[str, float]], image_side: bool) -> bool:
    """The text side's reset: redraw the word pieces only the forgotten names use; where some of their
    pieces are words the model must keep, the text projection's edit (``shared_pieces="edit"``) or the
    image side (``"image"``) forgets what those pieces still say. Whether the image side runs (asked for,
    or chosen for shared pieces); when it does not, the run ends here and ``trace`` is complete."""
    clip = ctx.clip
    t0, start = time.time(), measure()
    keep = names_to_keep(ctx.request.classnames, gone)
    ids = reset_name_tokens(clip, gone, keep, ctx.generator(2))
    trace.info["reset_tokens"] = ids
    if ids:
        trace.changed_tensors, trace.kept_any_step = ["token_embedding.weight"], True
    shared = sorted(set(name_pieces(clip, gone, [])) - set(ids))
    edited = None
    if shared and not image_side:  # what the name still says through kept words
        why = (f"{len(shared)} of the {len(shared) + len(ids)} word pieces of {gone} are used by names the model "
               "must keep: the text side cannot erase them")
        if cfg.shared_pieces == "edit":
            edited = _edit_text(ctx, cfg, gone, keep, trace)
            key, said = "shared_pieces", f"{why}; the text projection was edited (closed form) instead"
        else:
            image_side = True
            key, said = "image_side", f"{why}; the image side forgets what they still say"
        trace.info[key] = said
        log.warning("uproot: %s", said)
    if not image_side:
        trace.steps = [{"epoch": 0, **start, "kept": None},
                       {"epoch": 1, "reset_tokens": len(ids), **_edit_figures(edited), **measure(), "kept": True}]
        trace.stopped_because = (f"the {len(ids)} word pieces only the forgotten names use were redrawn"
                                 + ("; the text projection was edited for the pieces other names use" if edited else ""))
        trace.seconds += time.time() - t0
    return image_side


#: the years :func:`dated_names` puts before a name
YEARS = (1950, 2024)


def dated_names(names: Sequence[str], count: int, gen: torch.Generator) -> list[str]:
    """``count`` names drawn with replacement from ``names``, each with a year before it ("1987 canoe"),
    seeded by ``gen``: the way product names carry numbers, which the names alone leave unweighted."""
    if count == 0:
        return []
    if not names:
        raise TrainingError("dated_names needs at least one name to date; pass the kept names.")
    picks = torch.randint(len(names), (count,), generator=gen).tolist()
    years = torch.randint(YEARS[0], YEARS[1] + 1, (count,), generator=gen).tolist()
    return [f"{y} {names[i]}" for y, i in zip(years, picks)]


def _edit_figures(edited: ProjectionEdit | None) -> dict[str, float]:
    """The edit's figures for the trace's step: the moved prompts' cosine to their targets, the kept ones' to themselves."""
    return {"moved_cos": edited.moved_cos_after, "kept_cos": edited.kept_cos_after} if edited else {}


def _edit_text(ctx: ForgetContext, cfg: UprootConfig, gone: list[str], keep: list[str], trace: Trace) -> ProjectionEdit:
    """The closed-form edit of the text projection (training.text_edit): the forgotten names' prompts
    under the run's template and ``SCATTER_TEMPLATES`` embed as the model embeds an unknown word under the
    same template (the one of 32 random words it finds least in images of no class: no hub), and every
    kept name under the run's template and ``KEEP_TEMPLATES`` keeps its embedding, and so do
    ``edit_dated_names`` kept names with a year before them (:func:`dated_names`)."""
    clip, template = ctx.clip, ctx.request.template
    moved_templates = tuple(dict.fromkeys((template, *SCATTER_TEMPLATES)))
    kept_templates = tuple(dict.fromkeys((template, *KEEP_TEMPLATES)))
    gen = ctx.generator(4)
    with torch.no_grad():
        noise = clip.encode_image(generic_images(cfg.generic_images, clip.image_size, gen).to(clip.device),
                                  normalize=True)
        words = {n: unknown_word(clip, n, template, gen, noise, 32) for n in gone}
        moved = [t.format(n) for n in gone for t in moved_templates]
        now = clip.encode_text(moved).float()
        targets = F.normalize(clip.encode_text([t.format(words[n]) for n in gone for t in moved_templates]).float(),
                              dim=-1) * now.norm(dim=-1, keepdim=True)
    kept = [t.format(n) for n in keep for t in kept_templates]
    kept += [template.format(n) for n in dated_names(keep, cfg.edit_dated_names, ctx.generator(5))]
    edit = edit_text_projection(clip, moved, targets, kept, cfg.edit_keep_weight, cfg.edit_ridge)
    trace.info["text_edit"] = {**asdict(edit), "unknown_words": words, "moved_prompts": len(moved),
                               "kept_prompts": len(kept)}
    trace.changed_tensors = [*trace.changed_tensors, PROJECTION]
    trace.kept_any_step = True
    return edit


@dataclass
class _Terms:
    """The terms of the trained sides' loss, each None where the config leaves it out."""

    pixels: torch.Tensor  # the synthetic forget images, on the model's device
    labels: torch.Tensor
    text: torch.Tensor  # the class weights under the run's template
    asked: torch.Tensor  # the same, and under SCATTER_TEMPLATES too where ``many_templates``
    attack: SimulatedRelearning | None
    rename: NameEraser | None  # the text side's "train"
    generic: RetainAnchor | None  # no hub: keep the predictions on random images of no class
    retain: RetainAnchor | None
    gen: torch.Generator  # the simulated attacker's draws


def _loss(clip: Clip, cfg: UprootConfig, terms: _Terms, image_side: bool) -> tuple[torch.Tensor, dict[str, float]]:
    """One step's loss: scatter (after a simulated relearning attack), the name moved, no hub, retain."""
    metrics: dict[str, float] = {}
    loss = torch.zeros((), device=clip.device)

    def forget_term() -> tuple[torch.Tensor, dict[str, float]]:
        return scatter_loss(clip, terms.pixels, terms.labels, terms.asked, cfg.spread)

    if image_side:
        if terms.attack is not None:
            term, m = terms.attack.surrogate(clip, terms.pixels, terms.labels, terms.text,
                                             lambda: forget_term()[0], terms.gen)
            metrics.update(m)
            loss = loss + cfg.attack_weight * term
        scatter, m = forget_term()
        metrics.update(m)
        loss = loss + scatter
    if terms.rename is not None:
        moved, kept_names = terms.rename.losses(clip)
        metrics.update(name_moved=float(moved.detach()), names_kept=float(kept_names.detach()))
        loss = loss + cfg.text_weight * moved + cfg.text_keep_weight * kept_names
    if terms.generic is not None:
        hub = terms.generic.kl(clip)
        metrics["generic_kl"] = float(hub.detach())
        loss = loss + cfg.generic_weight * hub
    if terms.retain is not None:
        kl = terms.retain.kl(clip)
        metrics["retain_kl"] = float(kl.detach())
        loss = loss + cfg.retain_weight * kl
    return loss, metrics


def _retain_anchor(ctx: ForgetContext, cfg: UprootConfig, classnames: list[str],
                   trace: Trace) -> RetainAnchor | None:
    """KL to the original's predictions on synthetic images of classes to keep (their names join ``classnames``)."""
    if cfg.retain_weight <= 0:
        return None
    gone = list(ctx.request.class_names)
    own = set(ctx.request.classnames)
    near = nearest_names(ctx.clip, gone, [n for n in names_to_keep(ctx.request.classnames, gone) if n not in own],
                         ctx.request.template, cfg.retain_neighbours)
    if near:
        trace.info["retain_neighbours"] = near
    kept = ctx.synthetic_retain(max_classes=cfg.retain_classes, vocabulary=cfg.retain_vocabulary,
                                steps=cfg.retain_steps, **({"extra": tuple(near)} if near else {}))
    classnames += [c for c in kept.classnames if c not in classnames]
    # the forgotten names are among the anchor's classes: a name moved on the text side must not
    # start to attract the images of other classes (the original gave them almost no probability)
    retain = RetainAnchor(ctx.clip, kept.images, classnames, ctx.request.template)
    trace.info["retain_images"] = len(kept)
    return retain


def _towers(clip: Clip, cfg: UprootConfig, image_side: bool) -> dict[str, list[str]]:
    """The tensors that train: the image tower's (its head only, by default) and the text side's."""
    towers = tower_tensors(clip.model, cfg.eligibility, image=image_side, text=cfg.text_side == "train")
    if cfg.head_only:
        towers["image"] = [n for n in towers["image"] if n.startswith(HEAD)]
    if cfg.text_tensors == "token_embedding":
        towers["text"] = [n for n in towers["text"] if n == "token_embedding.weight"]
    return towers


def _train(ctx: ForgetContext, cfg: UprootConfig, gone: list[str], forget: ImageBatch, trace: Trace,
           measure: Callable[[], dict[str, float]], image_side: bool) -> Trace:
    """The trained sides: the image side's scatter, against simulated relearning, and the text side's
    "train" (the name's prompts toward an unknown word's embedding), with the retain and no-hub terms."""
    clip = ctx.clip
    classnames = list(forget.classnames)  # the dataset's classes: the forget images' labels index them
    retain = _retain_anchor(ctx, cfg, classnames, trace)
    with torch.no_grad():  # the class weights the image terms aim at: fixed
        text = zero_shot_classifier(clip, classnames, [ctx.request.template]).to(clip.device)
        asked = (torch.stack([text, *(zero_shot_classifier(clip, classnames, [t]).to(clip.device)
                                      for t in SCATTER_TEMPLATES)]) if cfg.many_templates else text)
    towers = _towers(clip, cfg, image_side)
    needs_noise = cfg.generic_weight > 0 or (cfg.text_side == "train" and cfg.least_hub)
    noise = (generic_images(cfg.generic_images, clip.image_size, ctx.generator(3)).to(clip.device)
             if needs_noise else None)
    rename = (NameEraser(clip, gone, [c for c in classnames if c not in gone],
                         ctx.request.template, ctx.generator(1), noise if cfg.least_hub else None)
              if cfg.text_side == "train" else None)
    if rename is not None:
        trace.info["unknown_words"] = rename.words
    generic = RetainAnchor(clip, noise, classnames, ctx.request.template) if cfg.generic_weight > 0 else None
    attack = (SimulatedRelearning(cfg.attack_steps, cfg.attack_lr, cfg.attack_images)
              if cfg.attack_steps > 0 else None)
    terms = _Terms(forget.images.to(clip.device), forget.labels.to(clip.device), text, asked, attack, rename,
                   generic, retain, ctx.generator())

    def step(stage: Stage, epoch: int, _: int):
        refreshed: dict[str, float] = {}
        if image_side and cfg.refresh_steps > 0:
            terms.pixels, prob = climb_again(clip, terms.pixels, terms.labels, text, cfg.refresh_steps,
                                             gen=terms.gen)
            refreshed["refreshed_prob"] = float(prob.mean())
        loss, metrics = _loss(clip, cfg, terms, image_side)
        return loss, {**refreshed, **metrics}

    stop = (StopRule("refreshed_prob", cfg.stop_refreshed_at)
            if cfg.stop_refreshed_at is not None and image_side and cfg.refresh_steps > 0 else StopRule())
    loop = Loop(towers=towers, optim=OptimConfig("adam", cfg.lr, (0.9, 0.999), 1e-8, 0.0),
                max_epochs=ctx.epochs(cfg.max_epochs), stop=stop)
    hook = None
    if "token_embedding.weight" in towers["text"]:  # only the forgotten names' own word pieces move
        rows = name_pieces(clip, gone, names_to_keep(ctx.request.classnames, gone))
        trace.info["trained_tokens"] = rows
        hook = only_rows(clip.model.token_embedding.weight, rows)
    try:
        return run_loop(clip, loop, step, measure, ctx.knobs.progress, trace)
    finally:
        if hook is not None:
            hook.remove()
