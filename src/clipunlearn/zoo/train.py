"""The mini zoo's training recipe: contrastive training from scratch, on CPU, on the train splits of
all eight datasets, with class prompts as captions.

Recipe (seeded, reproducible on one machine):

* every train image decoded once at the model's input size (short side resized, centre crop, as at
  test time) and kept in memory as uint8; augmentation: reflect-pad 6 px + random crop + flip;
* each batch is drawn from one dataset (datasets in proportion to their size), so in-batch negatives
  are the fine-grained neighbours a zero-shot classifier has to tell apart;
* captions: the class name in a template drawn from a pool of prompts per class and step;
* loss: CLIP's symmetric cross-entropy over the batch's distinct captions; images of the same class
  share one caption, so there are no false negatives (image->text: one positive; text->image:
  uniform over the images of that class);
* AdamW (no decay on gains, biases, embeddings, logit scale), linear warm-up then cosine decay.
"""
from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from ..data import dataset_names, load_image_set
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


RECIPES: dict[str, ZooRecipe] = {
    "mini-rn": ZooRecipe(epochs=14),
    "mini-vit": ZooRecipe(epochs=16, lr=5e-4),
}


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
    """All images of ``split`` of each dataset (default: all registered) as uint8 at the model's input
    size, without the images of the classes named in ``exclude`` (in any dataset)."""
    out = []
    for name in datasets or dataset_names():
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
    torch.manual_seed(recipe.seed)
    random.seed(recipe.seed)
    np.random.seed(recipe.seed)
    torch.set_num_threads(recipe.threads)
    clip = load_clip(name, pretrained="none")
    model = clip.model
    channels_last = clip.family == "resnet"
    if channels_last:
        model.to(memory_format=torch.channels_last)
    t0 = time.time()
    for d in datasets or dataset_names():  # every folder found before any work
        load_image_set(d, data_root, "train")
    settings = _training_settings(name, recipe, list(datasets or dataset_names()), list(exclude))
    state = (_read_checkpoint(checkpoint, settings)  # a checkpoint of other settings is refused before any work
             if checkpoint is not None and checkpoint.exists() and not restart else None)
    train = decode_split(clip, data_root, "train", datasets=datasets, exclude=list(exclude))
    test = decode_split(clip, data_root, "test", datasets=datasets)
    removed = {n: len(load_image_set(n, data_root, "train")) - len(p) for n, _, p, _ in train}
    t_decode = time.time() - t0
    n_train = sum(len(p) for _, _, p, _ in train)
    log(f"decoded {n_train} train and {sum(len(p) for _, _, p, _ in test)} test images of "
        f"{len(train)} datasets in {t_decode:.0f}s")

    gen = torch.Generator().manual_seed(recipe.seed)
    steps_per_epoch = (sum(math.ceil(len(p) / recipe.batch_size) for _, _, p, _ in train)
                       if recipe.batching == "per_dataset" else math.ceil(n_train / recipe.batch_size))
    total_steps = steps_per_epoch * recipe.epochs
    opt = torch.optim.AdamW(_param_groups(model, recipe.weight_decay), lr=recipe.lr, betas=(0.9, 0.98), eps=1e-6)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / recipe.warmup_steps)
                                              * 0.5 * (1 + math.cos(math.pi * min(1.0, s / total_steps))))
    rng = random.Random(recipe.seed)
    offsets = np.cumsum([0] + [len(images.classnames) for _, images, _, _ in train[:-1]]).tolist()
    step, first_epoch, epoch_losses, seconds_before, resumed_at = 0, 0, [], 0.0, []
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["schedule"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        rng.setstate(_as_random_state(state["python_rng"]))
        np.random.set_state(_as_numpy_state(state["numpy_rng"]))
        step, first_epoch = int(state["step"]), int(state["epoch"])
        epoch_losses, seconds_before = list(state["epoch_losses"]), float(state["train_seconds"])
        resumed_at = list(state["resumed_at"]) + [first_epoch]
        log(f"resuming from {checkpoint}: {first_epoch} of {recipe.epochs} epochs done")
    t_train = time.time()
    for epoch in range(first_epoch, recipe.epochs):
        if stop_after is not None and epoch >= stop_after:
            log(f"stopped after epoch {epoch} of {recipe.epochs}; rerun the same command to resume from {checkpoint}")
            return {}
        model.train()
        batches = []
        if recipe.batching == "per_dataset":
            for d, (_, images, pixels, _) in enumerate(train):
                perm = torch.randperm(len(pixels), generator=gen)
                batches += [[(d, perm[i:i + recipe.batch_size])] for i in range(0, len(perm), recipe.batch_size)]
            rng.shuffle(batches)
        else:
            owner = torch.cat([torch.full((len(p),), d) for d, (_, _, p, _) in enumerate(train)])
            row = torch.cat([torch.arange(len(p)) for _, _, p, _ in train])
            perm = torch.randperm(len(owner), generator=gen)
            for i in range(0, len(perm), recipe.batch_size):
                chunk = perm[i:i + recipe.batch_size]
                batches.append([(d, row[chunk[owner[chunk] == d]]) for d in range(len(train))
                                if (owner[chunk] == d).any()])
        losses = []
        for parts in batches:
            xs, ys, prompts = [], [], []
            for d, idx in parts:
                _, images, pixels, labels = train[d]
                xs.append(pixels[idx])
                ys.append(labels[idx] + offsets[d])
            x = _augment(torch.cat(xs), recipe.pad, gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            y = torch.cat(ys)
            classes, target = torch.unique(y, return_inverse=True)
            for c in classes.tolist():
                d = int(np.searchsorted(offsets, c, side="right") - 1)
                images = train[d][1]
                template = rng.choice(TRAIN_TEMPLATES + images.templates)
                prompts.append(template.format(images.classnames[c - offsets[d]]))
            img = F.normalize(clip.encode_image(x), dim=-1)
            txt = F.normalize(clip.encode_text(prompts), dim=-1)
            logits = model.logit_scale.exp().clamp(max=100) * img @ txt.T
            onehot = F.one_hot(target, len(classes)).float()
            loss_i2t = F.cross_entropy(logits, target)
            loss_t2i = -(F.log_softmax(logits.T, dim=-1) * (onehot.T / onehot.sum(0, keepdim=True).T)).sum(-1).mean()
            loss = 0.5 * (loss_i2t + loss_t2i)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            losses.append(loss.item())
        epoch_losses.append(round(float(np.mean(losses)), 4))
        log(f"epoch {epoch + 1}/{recipe.epochs}  loss {np.mean(losses):.3f}  "
            f"scale {model.logit_scale.exp().item():.1f}  {seconds_before + time.time() - t_train:.0f}s")
        if checkpoint is not None and epoch + 1 < recipe.epochs:
            _write_checkpoint(checkpoint, {
                "settings": settings, "model": model.state_dict(), "optimizer": opt.state_dict(),
                "schedule": sched.state_dict(), "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
                "python_rng": rng.getstate(), "numpy_rng": _numpy_state(), "step": step,
                "epoch": epoch + 1, "epoch_losses": epoch_losses,
                "train_seconds": seconds_before + time.time() - t_train, "resumed_at": resumed_at})
    train_seconds = seconds_before + time.time() - t_train
    if channels_last:
        model.to(memory_format=torch.contiguous_format)
    with torch.no_grad():  # the zoo ships fp16 weights: measure exactly what ships
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
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
        "steps": step,
        "epoch_loss": epoch_losses,
        "resumed_at_epochs": resumed_at,
        "decode_seconds": round(t_decode, 1),
        "train_seconds": round(train_seconds, 1),
        "test_top1": top1,
    }
