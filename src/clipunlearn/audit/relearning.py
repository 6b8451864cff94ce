"""The relearning grid: many small fine-tuning attacks that try to bring a forgotten class back.

An attack (:class:`Attack`) fine-tunes a copy of a model's image tower with the zero-shot cross-entropy
over the dataset's classes (the text tower and so the classifier stay fixed) and reads the forgotten
class's test accuracy at step 0 and after each of :data:`STEPS`; a ``text`` attack trains the text
tower instead (the image features fixed, the classifier recomputed at every step). Its axes
(``docs/audit.md``):

* data: ``forget-k1`` / ``forget-k5`` / ``forget-k10``: k train images of each forgotten class (the
  same seeded draw for every model); ``retain``: train images of the *other* classes only, never one
  of the class (a class that comes back from these was never removed); ``related``: train images of
  the :data:`RELATED_CLASSES` classes nearest to the forgotten class(es) (by the original model's
  class weights with the run's template: the same classes for every model);
* optimiser: ``adam`` (torch's defaults) or ``sgd`` (momentum 0.9);
* what trains: ``tower`` (every tensor of the image tower) or ``lora`` (rank-4 LoRA adapters on every
  Conv2d / Linear weight of the image tower, through ``training.lora``); ``text`` (every tensor of the
  text tower, the image tower frozen: the side a method that edits the text tower changed);
* learning rate: 1e-6, 1e-5, 1e-4.

:data:`GRID` is every combination on the image tower (60 attacks); :data:`TEXT_GRID` the 30 on the text
tower, added after the split below was fixed and in neither of its sets (``--relearning text``, a
deeper look). :data:`TUNING` are the attacks a forgetting method may
train against; :data:`HELD_OUT` the ones the verdict and the relearning score R read, never trained
against; both were fixed before any method was tuned on them (``docs/audit.md``, "The attack grid"),
and no attack moves between them. The original's and the oracle's curves depend only on those models
and the data: :class:`CurveCache` keeps them on disk by content, so each is computed once per class.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ClipUnlearnError
from ..evaluation import LOGIT_SCALE, hash_tensors
from ..io import write_json
from ..models import Clip
from ..precision import cache_tag, forward_pass
from ..version import __version__

if TYPE_CHECKING:
    from ..training.lora import LoraSpec
    from .case import AuditCase

DATA_KINDS = ("forget-k1", "forget-k5", "forget-k10", "retain", "related")
OPTIMIZERS = ("adam", "sgd")
PARAMS = ("tower", "lora", "text")
LRS = (1e-6, 1e-5, 1e-4)
#: the step counts at which a curve is read (step 0, before any step, is read too)
STEPS = (5, 25, 100)
#: images per optimiser step; a data set larger than this is seen in seeded shuffled mini-batches
BATCH = 16
#: ``retain``: at most this many train images of each other class make the pool the batches come from
RETAIN_PER_CLASS = 5
#: ``related``: how many nearest classes, and train images of each
RELATED_CLASSES = 3
RELATED_PER_CLASS = 5
SGD_MOMENTUM = 0.9


@dataclass(frozen=True, order=True)
class Attack:
    """One point of the grid."""

    data: str
    optimizer: str
    params: str
    lr: float

    def __post_init__(self) -> None:
        for value, known, what in ((self.data, DATA_KINDS, "data"), (self.optimizer, OPTIMIZERS, "optimizer"),
                                   (self.params, PARAMS, "params")):
            if value not in known:
                raise ClipUnlearnError(f"Unknown relearning {what} {value!r}. Known: {', '.join(known)}.")
        if not self.lr > 0:
            raise ClipUnlearnError(f"A relearning learning rate must be positive, got {self.lr}.")

    @property
    def name(self) -> str:
        return f"{self.data} {self.optimizer} {self.params} lr={self.lr:g}"

    @classmethod
    def parse(cls, name: str) -> Attack:
        """The inverse of :attr:`name` ("forget-k5 adam tower lr=1e-05")."""
        parts = name.split()
        if len(parts) != 4 or not parts[3].startswith("lr="):
            raise ClipUnlearnError(f"{name!r} is not a relearning attack; write it as 'DATA OPTIMIZER PARAMS lr=LR', "
                                   "e.g. 'forget-k5 adam tower lr=1e-05'.")
        try:
            lr = float(parts[3][3:])
        except ValueError:
            raise ClipUnlearnError(f"{name!r}: the learning rate {parts[3][3:]!r} is not a number.") from None
        return cls(parts[0], parts[1], parts[2], lr)

    @property
    def k(self) -> int | None:
        """Images per forgotten class for the ``forget-kK`` data, else None."""
        return int(self.data.removeprefix("forget-k")) if self.data.startswith("forget-k") else None


GRID: tuple[Attack, ...] = tuple(Attack(d, o, p, lr) for d in DATA_KINDS for o in OPTIMIZERS for p in ("tower", "lora")
                                 for lr in LRS)
#: the text tower's attacks: every kind of data, both optimisers, every rate (not in GRID, TUNING or HELD_OUT)
TEXT_GRID: tuple[Attack, ...] = tuple(Attack(d, o, "text", lr) for d in DATA_KINDS for o in OPTIMIZERS for lr in LRS)


#: the attacks a forgetting method may simulate and train against: the classic relearning attack (Adam
#: on the image tower, k = 1 or 5 images of the class) at the two lower rates. Fixed before any method
#: was tuned; no attack ever moves between this set and :data:`HELD_OUT`.
TUNING: tuple[Attack, ...] = tuple(Attack(d, "adam", "tower", lr) for d in ("forget-k1", "forget-k5")
                                   for lr in (1e-6, 1e-5))
#: the attacks whose points the verdict and R read, never trained against: on every kind of data, Adam on
#: the tower at 1e-5 and 1e-4, Adam on LoRA adapters at 1e-4 and SGD on the tower at 1e-4 (the strongest
#: setting of each optimiser and of LoRA, and Adam one rate lower), less the tuning attacks. The other
#: points of :data:`GRID` are for a deeper look (``--relearning full``). Fixed before any method was tuned.
HELD_OUT: tuple[Attack, ...] = tuple(
    a for d in DATA_KINDS for a in (Attack(d, "adam", "tower", 1e-5), Attack(d, "adam", "tower", 1e-4),
                                    Attack(d, "adam", "lora", 1e-4), Attack(d, "sgd", "tower", 1e-4))
    if a not in TUNING)
#: named sets of attacks (``clipunlearn audit --relearning NAME``)
GRIDS: dict[str, tuple[Attack, ...]] = {"held-out": HELD_OUT, "tuning": TUNING, "full": GRID, "text": TEXT_GRID}


def resolve_grid(grid: str | Iterable[str | Attack]) -> tuple[Attack, ...]:
    """A grid by name (:data:`GRIDS`) or as attacks / attack names; no duplicates, grid order kept."""
    if isinstance(grid, str):
        if grid not in GRIDS:
            raise ClipUnlearnError(f"Unknown relearning grid {grid!r}. Known: {', '.join(GRIDS)}.")
        return GRIDS[grid]
    attacks = tuple(a if isinstance(a, Attack) else Attack.parse(a) for a in grid)
    if not attacks:
        raise ClipUnlearnError("The relearning grid is empty. Name a grid (held-out, tuning, full, text) or some attacks.")
    return tuple(dict.fromkeys(attacks))


@dataclass
class RelearnData:
    """The train images of one data kind: pixels, labels and the rows of the train split they came from."""

    pixels: torch.Tensor
    labels: torch.Tensor
    rows: list[int]


def draw_rows(case: AuditCase) -> dict[str, list[int]]:
    """The train rows of every data kind: seeded, the same for every model of the case."""
    labels = case.labels("train")
    gen = np.random.default_rng(case.seed)
    order = {int(c): gen.permutation(np.flatnonzero(labels == c)).tolist() for c in np.unique(labels)}
    targets = [int(c) for c in case.targets]
    missing = [case.classnames[c] for c in targets if not order.get(c)]
    if missing:
        raise ClipUnlearnError(f"The train split of {case.run.dataset} has no image of {missing}: nothing to relearn "
                               "from. Leave relearning out with --attacks.")
    rows: dict[str, list[int]] = {}
    for kind in DATA_KINDS:
        if kind.startswith("forget-k"):
            k = int(kind.removeprefix("forget-k"))
            rows[kind] = [r for c in targets for r in order[c][:k]]
    rows["retain"] = [r for c in sorted(order) if c not in targets for r in order[c][:RETAIN_PER_CLASS]]
    rows["related"] = [r for c in related_classes(case) for r in order.get(c, [])[:RELATED_PER_CLASS]]
    return rows


def related_classes(case: AuditCase) -> list[int]:
    """The :data:`RELATED_CLASSES` other classes whose class weights (original model, run's template) are
    nearest by cosine to any forgotten class's."""
    w = case.classifier("original")
    sim = (w[case.targets] @ w.T).max(0).values.clone()
    sim[case.targets] = -float("inf")
    n = min(RELATED_CLASSES, len(case.classnames) - len(case.targets))
    return [int(c) for c in torch.topk(sim, n).indices.tolist()]


def relearn_curve(clip: Clip, attack: Attack, data: RelearnData, test_px: torch.Tensor, test_y: np.ndarray,
                  text: torch.Tensor, steps: Sequence[int] = STEPS, seed: int = 0,
                  prompts: Sequence[str] = ()) -> list[float]:
    """The forgotten class's test accuracy at step 0 and after each of ``steps`` steps of ``attack`` on a
    copy of ``clip`` (``clip`` is left as it was); ``text``: the fixed unit-norm class weights (C×D);
    ``prompts``: one per class (the run's template), the classifier a ``text`` attack trains through.

    An image-tower attack trains the tower (or LoRA adapters on it) against the fixed ``text``; a
    ``text`` attack computes the image features once (the image tower does not train) and recomputes
    the class weights from ``prompts`` through the training text tower at every step. Either way the
    loss is the zero-shot cross-entropy (100 · cosine) of the data's labels."""
    from ..training.finetune import signed_prompt_ce
    from ..training.lora import LoraSpec, lora_targets
    from ..training.params import tower_tensors

    if len(data.pixels) == 0:
        raise ClipUnlearnError(f"The relearning data {attack.data!r} holds no image. Use a dataset with more classes "
                               "or leave the attack out.")
    if attack.params == "text" and len(prompts) == 0:
        raise ClipUnlearnError(f"The text attack {attack.name!r} needs one prompt per class to train the classifier "
                               "through.")
    tuned = dataclasses.replace(clip, model=copy.deepcopy(clip.model))
    if attack.params == "text":
        feats, test_feats = _image_features(tuned, data.pixels), _image_features(tuned, test_px)

        def weights() -> torch.Tensor:
            with forward_pass(tuned.device):
                return F.normalize(tuned.encode_text(list(prompts)).float(), dim=-1)

        def loss(idx: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(LOGIT_SCALE * feats[idx] @ weights().T, data.labels[idx].to(tuned.device))

        def accuracy() -> float:
            with torch.no_grad():
                return float(((test_feats @ weights().T).argmax(1).cpu().numpy() == test_y).mean())

        towers = {"text": tower_tensors(tuned.model, "all", image=False, text=True)["text"]}
        return _curve(tuned, attack, towers, len(data.pixels), steps, seed, loss, accuracy)
    text = text.to(clip.device)
    names = tower_tensors(tuned.model, "all", image=True, text=False)["image"]

    def image_loss(idx: torch.Tensor) -> torch.Tensor:
        return signed_prompt_ce(tuned, data.pixels[idx].to(clip.device), data.labels[idx], torch.ones(len(idx)),
                                text)[0]

    return _curve(tuned, attack, {"image": lora_targets(tuned.model, names) if attack.params == "lora" else names},
                  len(data.pixels), steps, seed, image_loss, lambda: _target_accuracy(tuned, test_px, test_y, text),
                  LoraSpec(seed=seed) if attack.params == "lora" else None)


def _curve(tuned: Clip, attack: Attack, towers: dict[str, list[str]], n_images: int, steps: Sequence[int], seed: int,
           loss: Callable[[torch.Tensor], torch.Tensor], accuracy: Callable[[], float],
           lora: LoraSpec | None = None) -> list[float]:
    """Train ``towers`` of ``tuned`` with ``attack``'s optimiser on ``loss`` of seeded shuffled batches of
    the ``n_images`` images (one step an epoch), reading ``accuracy`` before the first step and after
    each of ``steps``."""
    from ..training.loop import Loop, OptimConfig, run_loop
    from ..training.relabel import ShuffledBatches

    betas = (SGD_MOMENTUM, 0.999) if attack.optimizer == "sgd" else (0.9, 0.999)
    reads = sorted(set(int(s) for s in steps))
    batches = ShuffledBatches(n_images, BATCH, torch.Generator().manual_seed(seed))
    curve: list[float] = []
    done = {"steps": 0}

    def measure() -> dict[str, float]:
        if done["steps"] == 0 or done["steps"] in reads:
            curve.append(accuracy())
        done["steps"] += 1
        return {}

    def step(stage, epoch: int, s: int):
        value = loss(batches.indices((epoch - 1) % batches.steps))
        return value, {"ce": float(value.detach())}

    loop = Loop(towers=towers, optim=OptimConfig(attack.optimizer, attack.lr, betas, 1e-8), max_epochs=reads[-1],
                steps_per_epoch=1, lora=lora)
    run_loop(tuned, loop, step, measure)
    return curve


@torch.no_grad()
def _image_features(clip: Clip, pixels: torch.Tensor) -> torch.Tensor:
    clip.model.eval()
    with forward_pass(clip.device):
        feats = torch.cat([clip.encode_image(pixels[i:i + 128].to(clip.device)).float()
                           for i in range(0, len(pixels), 128)])
    return F.normalize(feats, dim=-1)


@torch.no_grad()
def _target_accuracy(clip: Clip, pixels: torch.Tensor, labels: np.ndarray, text: torch.Tensor) -> float:
    feats = _image_features(clip, pixels)
    return float(((feats @ text.T.float()).argmax(1).cpu().numpy() == labels).mean())


class CurveCache:
    """Relearning curves on disk, one JSON file per (model content, data, attack settings): the original's
    and the oracle's curves of a class are computed once, whichever run of it is audited."""

    def __init__(self, folder: str | os.PathLike[str] | None):
        self.folder = Path(folder).expanduser() if folder else None
        self.hits = 0

    def key(self, model_hash: str, case_key: str, attack: Attack, steps: Sequence[int], seed: int) -> str:
        fields = {"model": model_hash, "case": case_key, "attack": attack.name, "steps": list(steps),
                  "seed": seed, "batch": BATCH, "retain": RETAIN_PER_CLASS, "related": RELATED_CLASSES,
                  "related_per_class": RELATED_PER_CLASS, "momentum": SGD_MOMENTUM, "version": __version__}
        tag = cache_tag()  # curves computed at another precision than fp32 are kept apart (fp32 keys as before)
        if tag is not None:
            fields["precision"] = tag
        raw = json.dumps(fields, sort_keys=True)
        return hashlib.blake2b(raw.encode(), digest_size=12).hexdigest()

    def get(self, key: str) -> list[float] | None:
        if self.folder is None:
            return None
        path = self.folder / f"{key}.json"
        if not path.is_file():
            return None
        self.hits += 1
        return [float(x) for x in json.loads(path.read_text(encoding="utf-8"))["curve"]]

    def put(self, key: str, curve: list[float], what: str) -> None:
        if self.folder is not None:
            write_json(self.folder / f"{key}.json", {"curve": curve, "attack": what})

    def lock(self, key: str) -> AbstractContextManager[None]:
        """Held while one process computes the curve of ``key``: cells audited side by side (a worker
        pool, Ray tasks) compute the original's and the oracle's curves once; the others wait, then read."""
        from ..io import exclusive

        return nullcontext() if self.folder is None else exclusive(self.folder / f"{key}.lock")


def case_key(case: AuditCase) -> str:
    """What every curve of the case depends on besides the model and the attack: the dataset's images
    and classes, the forgotten classes and the run's template."""
    parts = [case.run.dataset, case.test.fingerprint(), case.need_train("relearning attack").fingerprint(),
             json.dumps(case.classnames), json.dumps(sorted(case.targets)), case.template]
    return hashlib.blake2b("|".join(parts).encode(), digest_size=12).hexdigest()


def model_hash(clip: Clip) -> str:
    return hash_tensors(clip.model, lambda name: True)


__all__ = ["Attack", "BATCH", "DATA_KINDS", "GRID", "GRIDS", "TEXT_GRID", "HELD_OUT", "LRS", "OPTIMIZERS", "PARAMS",
           "RELATED_CLASSES", "RETAIN_PER_CLASS", "STEPS", "TUNING", "CurveCache", "RelearnData", "case_key",
           "draw_rows", "model_hash", "related_classes", "relearn_curve", "resolve_grid"]
