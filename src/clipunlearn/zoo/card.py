"""A zoo model's card: what it is and how well it does, measured by ``clipunlearn zoo card NAME``.

The card holds the zero-shot top-1 of the weights on the test split of each dataset the zoo trains on
(each dataset's default template, as ``clipunlearn eval``) and the coarse top-1 per superclass among
the subgroup settings' coarse labels (``clipunlearn eval --coarse``), with the hash of the weights it
measured. A card ships beside its weights (``models/zoo/<name>.card.json``); ``clipunlearn models``
prints it, and the tests check that each shipped card names the shipped weights' hash, so a card of
older weights is caught.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..data import load_image_set, zoo_datasets
from ..evaluation import Evaluator
from ..evaluation.coarse import coarse_accuracy, coarse_request
from ..io import file_hash
from ..models.factory import Clip

#: what each zoo model is, in a line (its config and recipe: docs/zoo.md)
DESCRIPTIONS: dict[str, str] = {
    "mini-rn": "ModifiedResNet (attention pool) 64 px + 4-block text tower, trained here on class-name captions",
    "mini-vit": "ViT (patch 8, 6 blocks) 64 px + 4-block text tower, trained here on class-name captions",
    "mini-rn-h": "mini-rn's architecture trained on captions at three levels (class, class with its superclass, "
                 "superclass alone): knows 'dog' and 'food' besides breeds and dishes",
}


def make_card(name: str, clip: Clip, weights_file: str | Path, evaluator: Evaluator, data_root: str | None,
              datasets: list[str] | None = None) -> dict[str, Any]:
    """Measure ``clip`` (the weights in ``weights_file``) for the card of zoo model ``name``."""
    names = datasets or zoo_datasets()
    request = coarse_request(names, data_root, "test")  # checked before the long part
    fine = {}
    for dataset in names:
        result = evaluator.evaluate(load_image_set(dataset, data_root, "test"))
        fine[dataset] = {"top1": result.top1, "n": result.n}
    coarse = coarse_accuracy(evaluator, request)
    return {
        "model": name,
        "architecture": clip.arch,
        "description": DESCRIPTIONS.get(name, ""),
        "weights": file_hash(str(weights_file)),
        "split": "test",
        "fine": fine,
        "fine_mean": sum(x["top1"] for x in fine.values()) / len(fine),
        "coarse": {"vocabulary": list(coarse.vocabulary), "template": coarse.template, "mean": coarse.mean,
                   "labels": {x.label: {"top1": x.top1, "n": x.n, "classes": len(x.classes)} for x in coarse.labels},
                   "without_images": coarse.without_images},
        "made_by": f"clipunlearn zoo card {name} --data-root DATA",
    }


def card_lines(card: dict[str, Any]) -> list[str]:
    """The card as a person reads it (``clipunlearn models --card NAME``)."""
    lines = [f"{card['model']}: {card['description']}" if card["description"] else card["model"],
             f"weights {card['weights']} ({card['architecture']}); made by `{card['made_by']}`",
             f"zero-shot top-1, {card['split']} split, each dataset's default template (clipunlearn eval):"]
    width = max(len(d) for d in card["fine"])
    lines += [f"  {d:<{width}}  {v['top1']:.3f}  ({v['n']} images)" for d, v in card["fine"].items()]
    lines.append(f"  {'mean':<{width}}  {card['fine_mean']:.3f}")
    coarse = card["coarse"]
    lines.append(f"coarse top-1 among {len(coarse['vocabulary'])} labels, {coarse['template']!r} "
                 "(clipunlearn eval --coarse):")
    width = max(len(label) for label in coarse["labels"])
    lines += [f"  {label:<{width}}  {v['top1']:.3f}  ({v['n']} images of {v['classes']} classes)"
              for label, v in coarse["labels"].items()]
    lines.append(f"  {'mean':<{width}}  {coarse['mean']:.3f}")
    return lines


def card_summary(card: dict[str, Any]) -> str:
    """One line: fine and coarse means."""
    return (f"top-1 mean {card['fine_mean']:.3f} over {len(card['fine'])} datasets, coarse {card['coarse']['mean']:.3f} "
            f"over {len(card['coarse']['labels'])} labels")


__all__ = ["DESCRIPTIONS", "card_lines", "card_summary", "make_card"]
