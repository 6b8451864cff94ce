"""Which classes a suite forgets on a given model: the paper's forget classes where the model knows
them, else the dataset's best-known classes.

The papers forget classes a full-size CLIP recognises well. A small or retrained model may not know
them at all (forgetting a class the model never recognised measures nothing), so a suite's
``[classes]`` table names the paper's classes per dataset and a bar (default 0.3) on how well the
model knows a class: the lower of its zero-shot top-1 on the class's train and on its test images.
The paper's classes at or above the bar are kept, in the paper's order, and the rest are filled with
the dataset's best-known classes by the same measure. Both splits, because each alone misleads: the
mini zoo was trained on the train splits (a class can be memorised there and unknown on test: 2011
Ford Ranger SuperCab, 0.43 on train and 0.07 on test for mini-rn), and picking the best of many
classes on the test split alone flatters their accuracy before forgetting. A dataset without a
train split is measured on its test split, and the record says so. Every choice is recorded with
its reason, accuracy and splits, and each table's caption says which classes were used.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..io import write_json


@dataclass(frozen=True)
class ClassRule:
    """``paper``: the paper's forget classes per dataset; ``min_top1``: the bar a paper class must
    reach on the model to be used; ``per_dataset``: classes forgotten one at a time per dataset."""

    paper: dict[str, tuple[str, ...]] = field(default_factory=dict)
    min_top1: float = 0.3
    per_dataset: int = 3


@dataclass(frozen=True)
class ChosenClass:
    name: str
    top1: float
    reason: str  # "paper" or "best-known"
    split: str = "train and test"  # where top1 was measured (the lower of the splits)

    def describe(self) -> str:
        why = "paper's class" if self.reason == "paper" else "best-known"
        return f"{self.name} ({why}, top-1 {self.top1:.2f} on {self.split})"


def per_class_top1(model: str, pretrained: str | None, weights_hash: str, dataset: str, data_root: str | None,
                   cache_dir: str | os.PathLike[str], device: str = "cpu") -> tuple[dict[str, float], str]:
    """How well the model knows each class of ``dataset``: the lower of its zero-shot top-1 on the
    class's train and test images (test alone if there is no train split), and which splits were
    measured; remembered in ``cache_dir`` per model weights, so a resumed suite does not evaluate
    again."""
    path = Path(cache_dir) / f"{model}-{weights_hash}-{dataset}.json"
    if path.is_file():
        found = json.loads(path.read_text(encoding="utf-8"))
        return found["top1"], found["split"]
    from ..data import load_image_set
    from ..errors import DataError
    from ..evaluation import Evaluator, FeatureCache
    from ..models import load_clip

    clip = load_clip(model, pretrained, None, device)
    evaluator = Evaluator(clip, FeatureCache(Path(cache_dir).parent / "features"), progress=False)
    per_split = {}
    for split in ("train", "test"):
        try:
            images = load_image_set(dataset, data_root, split)
        except DataError:
            if split == "test":
                raise
            continue
        per_split[split] = evaluator.evaluate(images).per_class()
    top1 = {c: min(acc.get(c, 0.0) for acc in per_split.values()) for c in per_split["test"]}
    split = " and ".join(per_split)
    write_json(path, {"split": split, "top1": top1, "per_split": per_split})
    return top1, split


def choose_classes(rule: ClassRule, dataset: str, top1: dict[str, float], n: int,
                   split: str = "train and test") -> list[ChosenClass]:
    """Up to ``n`` classes of ``dataset``: its paper classes known at ``rule.min_top1`` or better, in
    the paper's order, then the best-known other classes (highest top-1 first, ties by name)."""
    chosen = [ChosenClass(c, top1[c], "paper", split) for c in rule.paper.get(dataset, ())
              if c in top1 and top1[c] >= rule.min_top1]
    taken = {c.name for c in chosen}
    rest = sorted((c for c in top1 if c not in taken), key=lambda c: (-top1[c], c))
    chosen += [ChosenClass(c, top1[c], "best-known", split) for c in rest[: max(0, n - len(chosen))]]
    return chosen[:n]
