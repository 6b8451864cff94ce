"""The mini zoo's training recipe: contrastive training from scratch, on CPU, on the train splits of
all eight datasets, with class prompts as captions.

Recipe (seeded, reproducible on one machine):

* every train image decoded once at the model's input size (short side resized, centre crop, as at
  test time) and kept in memory as uint8; augmentation: reflect-pad 6 px + random crop + flip;
* each batch is drawn from one dataset (datasets in proportion to their size), so in-batch negatives
  are the fine-grained neighbours a zero-shot classifier has to tell apart;
* captions: the class name in a template drawn from a pool of prompts per class and step; a recipe
  with a caption policy of several levels (:class:`HierarchyRecipe`, ``mini-rn-h``) draws one level
  per step: the class name, the class with one of its superclasses ("a photo of a Leonberg, a type
  of dog."), or the superclasses alone ("a photo of a dog."), from ``data/superclasses.toml``;
* loss: CLIP's symmetric cross-entropy over the batch's captions; images of the same class share one
  caption, so there are no false negatives (image->text: one positive; text->image: uniform over the
  images of that class). Under a hierarchical policy a caption is a positive of every image it is
  true of (see :func:`step_captions`);
* AdamW (no decay on gains, biases, embeddings, logit scale), linear warm-up then cosine decay.
"""
from __future__ import annotations

import math
import random
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data import ImageSet, load_image_set, zoo_datasets
from ..errors import ClipUnlearnError
from ..models.factory import Clip, load_clip

TRAIN_TEMPLATES = (
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "a photo of the {}.",
    "a close-up photo of a {}.",
    "a good photo of a {}.",
    "A picture of {}",
    "{}",
)

#: the templates of "class+super" captions: class name, then one of its superclasses
SUPERCLASS_TEMPLATES = (
    "a photo of a {}, a type of {}.",
    "a picture of a {}, a kind of {}.",
    "an image of a {}, which is a {}.",
    "{}, a {}",
)

#: The levels a caption policy draws from, one level for all the captions of a step:
#: "class": the class name in a template drawn from TRAIN_TEMPLATES and its dataset's own (as ever);
#: "class+super": the class with one of its superclasses (SUPERCLASS_TEMPLATES);
#: "super": each superclass of the batch's classes in a TRAIN_TEMPLATES template (a class with none
#: is named by its class name there).
CAPTION_LEVELS = ("class", "class+super", "super")
#: the policy of the shipped mini-rn and mini-vit: class names only
CLASS_CAPTIONS: tuple[tuple[str, float], ...] = (("class", 1.0),)
#: mini-rn-h's policy: half the steps name the class alone, the rest teach the hierarchy
HIERARCHY_CAPTIONS: tuple[tuple[str, float], ...] = (("class", 0.5), ("class+super", 0.3), ("super", 0.2))


@dataclass
class ZooRecipe:
    epochs: int = 16
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.1
    warmup_steps: int = 200
    pad: int = 6
    batching: str = "mixed"  # "mixed": batches across datasets; "per_dataset": one dataset a batch
    seed: int = 0
    threads: int = 2
    #: the caption policy: (level, share of steps) pairs over CAPTION_LEVELS. A class attribute here,
    #: not a field, so that the fields of the shipped recipes, which their checkpoints' settings, their
    #: training records and the benchmark's oracle ids (a hash of ``asdict(recipe)``) hold, are what
    #: they were; :class:`HierarchyRecipe` makes it a field.
    captions: ClassVar[tuple[tuple[str, float], ...]] = CLASS_CAPTIONS


@dataclass
class HierarchyRecipe(ZooRecipe):
    """A zoo recipe whose captions name superclasses too, so that the model answers both "which breed"
    and "is it a dog" (issue 36). ``captions``: (level, share of steps) pairs, drawn once per step with
    the recipe's seeded random state (so a resumed training draws what an uninterrupted one does)."""

    captions: tuple[tuple[str, float], ...] = HIERARCHY_CAPTIONS


RECIPES: dict[str, ZooRecipe] = {
    "mini-rn": ZooRecipe(epochs=14),
    "mini-vit": ZooRecipe(epochs=16, lr=5e-4),
    # mini-rn's architecture and optimiser; 24 epochs (mini-rn: 14), as half the steps name the class
    # alone: about 1 h alone on 2 cores (150-160 s an epoch), 2.8 h at the 415 s an epoch of mini-rn's
    # shared run (docs/zoo-mini-rn-training.json), within issue 36's 3 hours.
    "mini-rn-h": HierarchyRecipe(epochs=24),
}


def check_captions(captions: tuple[tuple[str, float], ...]) -> None:
    """A policy names known levels, each once, with positive shares that add up to 1."""
    levels = [level for level, _ in captions]
    unknown = [level for level in levels if level not in CAPTION_LEVELS]
    if not captions or unknown or len(set(levels)) != len(levels):
        raise ClipUnlearnError(f"The caption policy {list(captions)} must name each of {list(CAPTION_LEVELS)} at "
                               f"most once{f' (unknown: {unknown})' if unknown else ''}; fix the recipe's captions.")
    shares = [share for _, share in captions]
    if any(not share > 0 for share in shares) or abs(sum(shares) - 1) > 1e-6:
        raise ClipUnlearnError(f"The caption policy {list(captions)} needs positive shares adding up to 1, not "
                               f"{shares}; fix the recipe's captions.")


def uses_superclasses(captions: tuple[tuple[str, float], ...]) -> bool:
    """Whether a policy draws captions that name superclasses (and so reads data/superclasses.toml)."""
    return any(level != "class" for level, _ in captions)


def draw_level(captions: tuple[tuple[str, float], ...], rng: random.Random) -> str:
    """The caption level of one step, drawn with the policy's shares. A one-level policy draws nothing:
    the random state then moves exactly as in the trainings of the shipped models."""
    if len(captions) == 1:
        return captions[0][0]
    levels, shares = zip(*captions)
    return rng.choices(levels, weights=shares)[0]


@dataclass(frozen=True)
class TrainClass:
    """What the captions of one class of the training data are made from: its name, the templates of its
    class captions (the generic ones and its dataset's), its superclasses, and the concepts a caption
    may name and be true of its images (its name and its superclasses, lower case)."""

    name: str
    templates: tuple[str, ...]
    supers: tuple[str, ...] = ()

    @property
    def concepts(self) -> frozenset[str]:
        return frozenset(x.lower() for x in (self.name, *self.supers))


def step_captions(level: str, classes: list[TrainClass], rng: random.Random,
                  hierarchy: bool) -> tuple[list[str], torch.Tensor]:
    """The captions of one step at ``level`` for the batch's ``classes`` (in order), and which caption is
    true of which class: a bool (classes x captions) matrix.

    Without ``hierarchy`` (class-only policies: the shipped models) each class has its own caption and
    only its own: the identity, even where two datasets' classes share a name (as they were trained).

    With it, a "super" step makes one caption a concept (one "a photo of a dog." for all the dogs of the
    batch), and a caption is a positive of every image it is true of, by class name or by superclass.
    In-batch InfoNCE with one caption a class would make the identical "a photo of a dog." of two
    breeds negatives of each other's images, and with one positive an image it would make "mammal"
    and "animal" negatives of a dog: either pushes images away from true captions at the very level
    the step teaches. With the mask an image's target is spread evenly over its true captions, and no
    true caption is a negative. The mask (rather than one image per superclass a step) keeps every
    image of the batch, and stays correct where levels meet: a class without superclass is named by
    its name at a "super" step, and at a "class" step CIFAR-10's "a photo of a dog." is true of the
    breeds too. The level is drawn per step, so a class step keeps all the fine-grained negatives of
    its batch (Leonberg against Newfoundland) that zero-shot classification needs.
    """
    if level == "super":
        named = list(dict.fromkeys(x for c in classes for x in (c.supers or (c.name,))))
        prompts = [rng.choice(TRAIN_TEMPLATES).format(x) for x in named]
    else:
        named, prompts = [c.name for c in classes], []
        for c in classes:
            if level == "class+super" and c.supers:
                prompts.append(rng.choice(SUPERCLASS_TEMPLATES).format(c.name, rng.choice(c.supers)))
            else:
                prompts.append(rng.choice(c.templates).format(c.name))
    if not hierarchy:
        return prompts, torch.eye(len(classes), dtype=torch.bool)
    return prompts, torch.tensor([[x.lower() in c.concepts for x in named] for c in classes], dtype=torch.bool)


def contrastive_loss(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """CLIP's symmetric cross-entropy with (images x captions) ``positive`` weights (1 where the caption
    is true of the image): image->text, the target spread evenly over the image's true captions;
    text->image, over the images a caption is true of. With one positive per image (class captions) the
    image->text term is the plain cross-entropy, computed as such: the shipped models' loss, bit for bit."""
    if bool((positive.sum(1) == 1).all()):
        loss_i2t = F.cross_entropy(logits, positive.argmax(1))
    else:
        loss_i2t = -(F.log_softmax(logits, dim=-1) * (positive / positive.sum(1, keepdim=True))).sum(-1).mean()
    loss_t2i = -(F.log_softmax(logits.T, dim=-1) * (positive.T / positive.sum(0, keepdim=True).T)).sum(-1).mean()
    return 0.5 * (loss_i2t + loss_t2i)


class _Decode(Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x = self.transform(self.images.load(i))
        return (x * 255).round().to(torch.uint8)


def excluded_classes(items: list[str], data_root) -> list[str]:
    """``DATASET:CLASS`` items (``clipunlearn zoo train --exclude``) checked against the data: the class
    names to leave out of training, in every dataset where the name appears (an oracle that never saw
    the class)."""
    names = []
    for item in items:
        dataset, sep, name = item.partition(":")
        if not sep or not name.strip():
            raise ClipUnlearnError(f"--exclude {item!r} is not DATASET:CLASS, e.g. --exclude caltech101:minaret.")
        load_image_set(dataset.strip(), data_root, "train").class_index(name.strip())  # a miss suggests names
        names.append(name.strip())
    return list(dict.fromkeys(names))


def decode_split(clip: Clip, data_root, split: str, workers: int = 2, datasets=None, exclude: list[str] = ()):
    """All images of ``split`` of each dataset (default: the zoo's, :func:`zoo_datasets`) as uint8 at the model's input
    size, without the images of the classes named in ``exclude`` (in any dataset)."""
    out = []
    for name in datasets or zoo_datasets():
        images = load_image_set(name, data_root, split)
        gone = [i for i, c in enumerate(images.classnames) if c in set(exclude)]
        if gone:
            images = images.subset(exclude=gone)
        loader = DataLoader(_Decode(images, clip.image_transform()), batch_size=256, num_workers=workers)
        pixels = torch.cat(list(loader))
        out.append((name, images, pixels, torch.tensor(images.labels)))
    return out


def _augment(batch: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    x = batch.float().div_(255)
    n, _, h, w = x.shape
    x = F.pad(x, (pad, pad, pad, pad), mode="reflect")
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty(n, 3, h, w)
    for i in range(n):
        crop = x[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def _param_groups(model: torch.nn.Module, weight_decay: float):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.ndim < 2 or "embedding" in name or "logit_scale" in name or name.endswith("class_embedding"):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@torch.no_grad()
def zero_shot_top1(clip: Clip, splits, batch_size: int = 512) -> dict[str, float]:
    """Top-1 per dataset with each dataset's default template (the evaluator's protocol)."""
    clip.model.eval()
    result = {}
    for name, images, pixels, labels in splits:
        prompts = [images.templates[0].format(c) for c in images.classnames]
        text = F.normalize(torch.cat([clip.encode_text(prompts[i:i + 256]) for i in range(0, len(prompts), 256)]), dim=-1)
        correct = 0
        for i in range(0, len(pixels), batch_size):
            f = clip.encode_image(pixels[i:i + batch_size].float() / 255, normalize=True)
            correct += (f @ text.T).argmax(-1).eq(labels[i:i + batch_size]).sum().item()
        result[name] = correct / len(pixels)
    return result


def checkpoint_path(out: Path) -> Path:
    """Where the training of the weights file ``out`` keeps its end-of-epoch checkpoint."""
    return out.with_name(out.name + ".checkpoint")


def _training_settings(name: str, recipe: ZooRecipe, datasets: list[str], exclude: list[str]) -> dict:
    return {"model": name, "recipe": asdict(recipe), "datasets": datasets, "excluded": sorted(exclude)}


def _read_checkpoint(path: Path, settings: dict) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a foreign or damaged file: say which, do not guess
        raise ClipUnlearnError(f"The training checkpoint {str(path)!r} cannot be read ({type(exc).__name__}); "
                               "delete it or pass --restart to start the training over.") from exc
    if state.get("settings") != settings:
        theirs = state.get("settings") or {}
        diff = sorted(k for k in set(theirs) | set(settings) if theirs.get(k) != settings.get(k))
        if "recipe" in diff:
            mine, old = settings["recipe"], theirs.get("recipe") or {}
            diff = [f"{k} {old.get(k)!r} -> {mine[k]!r}" for k in mine if old.get(k) != mine[k]] + \
                   [d for d in diff if d != "recipe"]
        raise ClipUnlearnError(f"The training checkpoint {str(path)!r} belongs to a training with other settings "
                               f"({', '.join(diff)}); rerun with its settings to resume it, or pass --restart to "
                               "start over (the checkpoint is then replaced).")
    return state


def _write_checkpoint(path: Path, state: dict) -> None:
    from ..io import save_with

    save_with(path, lambda tmp: torch.save(state, tmp))


def _as_random_state(state) -> tuple:
    """Python's random state as ``random.setstate`` takes it (the checkpoint may hold lists)."""
    version, internal, gauss = state
    return int(version), tuple(int(v) for v in internal), gauss


def _numpy_state() -> tuple:
    """numpy's global random state in plain types (a checkpoint is read with ``weights_only``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return str(kind), torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)


def _as_numpy_state(state) -> tuple:
    kind, keys, pos, has_gauss, cached = state
    return str(kind), np.asarray(keys).astype(np.uint32), int(pos), int(has_gauss), float(cached)


#: decode_split's value: each dataset's (name, images, pixels as uint8, labels)
Decoded = list[tuple[str, ImageSet, torch.Tensor, torch.Tensor]]


def _seeded_model(name: str, recipe: ZooRecipe) -> Clip:
    """Zoo model ``name``'s architecture at random initialisation, every random generator seeded by the recipe."""
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    clip = load_clip(name, pretrained="none")
    if clip.family == "resnet":
        clip.model.to(memory_format=torch.channels_last)
    return clip


def _check_datasets(datasets: list[str] | None, data_root, hierarchy: bool) -> None:
    """Every folder found, and every class's superclasses, before any work."""
    for d in datasets or zoo_datasets():
        classnames = load_image_set(d, data_root, "train").classnames
        if hierarchy:
            from ..data.superclasses import superclasses

            for c in classnames:
                superclasses(d, c)


@dataclass
class _Training:
    """A training under way: the model, its optimiser and schedule, the random states of its batches
    and captions, and what it has done so far (all of which a checkpoint holds)."""

    clip: Clip
    recipe: ZooRecipe
    train: Decoded
    hierarchy: bool
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    gen: torch.Generator  # augmentation and the order of the images
    rng: random.Random  # caption levels and templates, the order of per-dataset batches
    offsets: list[int]  # each dataset's first label in the labels of all datasets
    classes: list[TrainClass]
    step: int = 0
    first_epoch: int = 0
    epoch_losses: list[float] = field(default_factory=list)
    seconds_before: float = 0.0  # training seconds of the sessions before this one
    resumed_at: list[int] = field(default_factory=list)
    level_steps: Counter[str] = field(default_factory=Counter)

    @property
    def channels_last(self) -> bool:
        return self.clip.family == "resnet"


def _start_training(clip: Clip, recipe: ZooRecipe, train: Decoded, hierarchy: bool) -> _Training:
    """AdamW (no decay on gains, biases, embeddings, logit scale), linear warm-up then cosine decay."""
    gen = torch.Generator().manual_seed(recipe.seed)
    n_train = sum(len(p) for _, _, p, _ in train)
    steps_per_epoch = (sum(math.ceil(len(p) / recipe.batch_size) for _, _, p, _ in train)
                       if recipe.batching == "per_dataset" else math.ceil(n_train / recipe.batch_size))
    total_steps = steps_per_epoch * recipe.epochs
    opt = torch.optim.AdamW(_param_groups(clip.model, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / recipe.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps))))
    rng = random.Random(recipe.seed)
    offsets = np.cumsum([0] + [len(images.classnames) for _, images, _, _ in train[:-1]]).tolist()
    return _Training(clip, recipe, train, hierarchy, opt, sched, gen, rng, offsets, _train_classes(train, hierarchy))


def _resume(t: _Training, state: dict) -> None:
    """Put the training where the checkpoint ``state`` left it."""
    t.clip.model.load_state_dict(state["model"])
    t.opt.load_state_dict(state["optimizer"])
    t.sched.load_state_dict(state["schedule"])
    t.gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    t.rng.setstate(_as_random_state(state["python_rng"]))
    np.random.set_state(_as_numpy_state(state["numpy_rng"]))
    t.step, t.first_epoch = int(state["step"]), int(state["epoch"])
    t.epoch_losses, t.seconds_before = list(state["epoch_losses"]), float(state["train_seconds"])
    t.resumed_at = list(state["resumed_at"]) + [t.first_epoch]
    t.level_steps.update(state.get("caption_steps", {}))


def _checkpoint_state(t: _Training, settings: dict, epochs_done: int, train_seconds: float) -> dict:
    """Everything the training needs to go on after ``epochs_done`` epochs (:func:`_resume`)."""
    return {
        "settings": settings, "model": t.clip.model.state_dict(), "optimizer": t.opt.state_dict(),
        "schedule": t.sched.state_dict(), "generator": t.gen.get_state(), "torch_rng": torch.get_rng_state(),
        "python_rng": t.rng.getstate(), "numpy_rng": _numpy_state(), "step": t.step,
        "epoch": epochs_done, "epoch_losses": t.epoch_losses,
        "train_seconds": train_seconds, "resumed_at": t.resumed_at,
        "caption_steps": dict(t.level_steps)}


def _epoch_batches(t: _Training) -> list[list[tuple[int, torch.Tensor]]]:
    """One epoch's batches, each a list of (dataset, rows): one dataset a batch (``per_dataset``), or
    batches across datasets (``mixed``)."""
    recipe, train, gen = t.recipe, t.train, t.gen
    batches = []
    if recipe.batching == "per_dataset":
        for d, (_, _, pixels, _) in enumerate(train):
            perm = torch.randperm(len(pixels), generator=gen)
            batches += [[(d, perm[i:i + recipe.batch_size])] for i in range(0, len(perm), recipe.batch_size)]
        t.rng.shuffle(batches)
    else:
        owner = torch.cat([torch.full((len(p),), d) for d, (_, _, p, _) in enumerate(train)])
        row = torch.cat([torch.arange(len(p)) for _, _, p, _ in train])
        perm = torch.randperm(len(owner), generator=gen)
        for i in range(0, len(perm), recipe.batch_size):
            chunk = perm[i:i + recipe.batch_size]
            batches.append([(d, row[chunk[owner[chunk] == d]]) for d in range(len(train))
                            if (owner[chunk] == d).any()])
    return batches


def _train_step(t: _Training, parts: list[tuple[int, torch.Tensor]]) -> float:
    """One optimiser step on the batch ``parts``, with captions drawn at one level; its loss."""
    clip, recipe, model = t.clip, t.recipe, t.clip.model
    xs, ys = [], []
    for d, idx in parts:
        _, images, pixels, labels = t.train[d]
        xs.append(pixels[idx])
        ys.append(labels[idx] + t.offsets[d])
    x = _augment(torch.cat(xs), recipe.pad, t.gen)
    if t.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.cat(ys)
    classes, target = torch.unique(y, return_inverse=True)
    level = draw_level(recipe.captions, t.rng)
    t.level_steps[level] += 1
    prompts, truth = step_captions(level, [t.classes[c] for c in classes.tolist()], t.rng, t.hierarchy)
    img = F.normalize(clip.encode_image(x), dim=-1)
    txt = F.normalize(clip.encode_text(prompts), dim=-1)
    logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
    loss = contrastive_loss(logits, truth[target].float())
    t.opt.zero_grad(set_to_none=True)
    loss.backward()
    t.opt.step()
    t.sched.step()
    t.step += 1
    return loss.item()


def _as_shipped(clip: Clip) -> None:
    """The weights as the zoo ships them (fp16, in the usual memory format): measure exactly what ships."""
    model = clip.model
    if clip.family == "resnet":
        model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())


def _train_epochs(t: _Training, checkpoint: Path | None, settings: dict, stop_after: int | None, log) -> bool:
    """The epochs still to do, each one's mean loss logged and kept, the checkpoint rewritten after
    every epoch but the last; False when ``stop_after`` stopped the training first."""
    recipe, clip, t_train = t.recipe, t.clip, time.time()
    for epoch in range(t.first_epoch, recipe.epochs):
        if stop_after is not None and epoch >= stop_after:
            log(f"stopped after epoch {epoch} of {recipe.epochs}; rerun the same command to resume from {checkpoint}")
            return False
        clip.model.train()
        losses = [_train_step(t, parts) for parts in _epoch_batches(t)]
        t.epoch_losses.append(round(float(np.mean(losses)), 4))
        log(f"epoch {epoch + 1}/{recipe.epochs}  loss {np.mean(losses):.3f}  "
            f"scale {clip.model.logit_scale.exp().item():.1f}  {t.seconds_before + time.time() - t_train:.0f}s")
        if checkpoint is not None and epoch + 1 < recipe.epochs:
            _write_checkpoint(checkpoint, _checkpoint_state(t, settings, epoch + 1,
                                                            t.seconds_before + time.time() - t_train))
    return True


def train_zoo_model(name: str, data_root, out: Path | None = None, recipe: ZooRecipe | None = None,
                    log=print, datasets: list[str] | None = None, exclude: list[str] = (),
                    checkpoint: Path | None = None, restart: bool = False, stop_after: int | None = None) -> dict:
    """Train zoo model ``name`` from scratch; write its weights to ``out``; return the training record.
    ``exclude``: class names whose train images are all left out (the test splits stay whole, so the
    record shows how the model does on what it never saw).

    ``checkpoint``: a file rewritten (atomically) after every epoch with everything the training needs
    to go on: the model, optimiser, schedule and random states. If it exists when the training starts,
    the training resumes from it, and ends with the weights an uninterrupted training gives; a checkpoint
    of other settings is refused unless ``restart``. It is deleted once ``out`` is written.
    ``stop_after``: stop (keeping the checkpoint) after this many epochs in all, e.g. to split a long
    training across sessions; returns ``{}`` then.
    """
    recipe = recipe or RECIPES[name]
    check_captions(recipe.captions)
    hierarchy = uses_superclasses(recipe.captions)
    clip = _seeded_model(name, recipe)
    t0 = time.time()
    _check_datasets(datasets, data_root, hierarchy)
    settings = _training_settings(name, recipe, list(datasets or zoo_datasets()), list(exclude))
    state = (_read_checkpoint(checkpoint, settings)  # a checkpoint of other settings is refused before any work
             if checkpoint is not None and checkpoint.exists() and not restart else None)
    train = decode_split(clip, data_root, "train", datasets=datasets, exclude=list(exclude))
    test = decode_split(clip, data_root, "test", datasets=datasets)
    removed = {n: len(load_image_set(n, data_root, "train")) - len(p) for n, _, p, _ in train}
    t_decode = time.time() - t0
    n_train = sum(len(p) for _, _, p, _ in train)
    log(f"decoded {n_train} train and {sum(len(p) for _, _, p, _ in test)} test images of "
        f"{len(train)} datasets in {t_decode:.0f}s")

    t = _start_training(clip, recipe, train, hierarchy)
    if state is not None:
        _resume(t, state)
        log(f"resuming from {checkpoint}: {t.first_epoch} of {recipe.epochs} epochs done")
    t_train = time.time()
    if not _train_epochs(t, checkpoint, settings, stop_after, log):
        return {}
    train_seconds = t.seconds_before + time.time() - t_train
    _as_shipped(clip)
    top1 = zero_shot_top1(clip, test)
    log("test top-1: " + ", ".join(f"{k} {v:.3f}" for k, v in top1.items()))
    if out is not None:
        clip.save(out, dtype=torch.float16)
    if checkpoint is not None and checkpoint.exists():
        checkpoint.unlink()
    return {
        "model": name,
        "recipe": asdict(recipe),
        "train_images": n_train,
        "datasets": [n for n, *_ in train],
        "excluded": {"classes": list(exclude), "train_images_removed": {k: v for k, v in removed.items() if v}},
        "steps": t.step,
        "epoch_loss": t.epoch_losses,
        "resumed_at_epochs": t.resumed_at,
        "decode_seconds": round(t_decode, 1),
        "train_seconds": round(train_seconds, 1),
        "test_top1": top1,
        **({"caption_steps": {level: t.level_steps[level] for level, _ in recipe.captions}} if hierarchy else {}),
    }


def _train_classes(train, hierarchy: bool) -> list[TrainClass]:
    """Every class of the decoded ``train`` splits, in label order across datasets (the offsets of the
    training loop), with the templates and superclasses its captions are made from."""
    from ..data.superclasses import superclasses

    return [TrainClass(c, TRAIN_TEMPLATES + images.templates, superclasses(name, c) if hierarchy else ())
            for name, images, _, _ in train for c in images.classnames]
