"""Coarse zero-shot accuracy: does the model know "dog", "food", "car" as well as the breeds, dishes and
models under them (issue 36)?

Each test image of a class that carries a coarse label is classified among the coarse labels alone
("a photo of a dog.", "a photo of a flower.", ...), and counts as right when the label it gets is its own.
A class carries label L when ``data/superclasses.toml`` gives it L (or L is an ancestor of its labels),
or when its name is L (CIFAR-10's "cat", "horse" and "ship" are labels of the subgroup settings'
vocabulary without being superclasses of anything). Per label: the top-1 over every image of every
class carrying it, in the datasets asked for; and the mean over the labels that have images.

The default labels are the subgroup settings' coarse vocabulary (``data/subgroups.toml``): the labels
the subgroup forgetting runs classify among, so the figure says how well a model knows the
superclasses those runs rely on. A class that carries two labels of the vocabulary (none does in the
shipped one) would make a question with two right answers: refused, naming the class.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..data import load_image_set
from ..data.registry import DEFAULT_TEMPLATE
from ..data.subgroups import Subgroup, coarse_vocabulary
from ..data.superclasses import shipped_table
from ..errors import DataError, UnknownNameError, suggest
from .zeroshot import Evaluator


def carried_label(dataset: str, classname: str, vocabulary: Sequence[str]) -> str | None:
    """The one label of ``vocabulary`` that class ``classname`` of ``dataset`` carries (by superclass or by
    name; a dataset or class outside superclasses.toml by name only), or None. Two: a DataError naming the
    class."""
    table = shipped_table()
    labels = {classname.lower()}
    try:
        name, classes = table.dataset_table(dataset)
    except UnknownNameError:
        classes = {}
    if classname in classes:
        labels |= {x.lower() for x in table.superclasses(name, classname)}
    found = [label for label in vocabulary if label.lower() in labels]
    if len(found) > 1:
        raise DataError(f"Class {classname!r} of {dataset} carries {len(found)} of the coarse labels ({found}), so "
                        "a coarse question about it has two right answers; leave all but one of them out of the "
                        "labels.")
    return found[0] if found else None


@dataclass(frozen=True)
class CoarseRequest:
    """What a coarse evaluation classifies: ``vocabulary``, and for each label the classes carrying it."""

    vocabulary: tuple[str, ...]
    members: dict[str, tuple[Subgroup, ...]]
    data_root: str | None
    split: str


def coarse_request(datasets: Sequence[str], data_root: str | None, split: str = "test",
                   vocabulary: Sequence[str] | None = None) -> CoarseRequest:
    """The classes of ``datasets`` under each label of ``vocabulary`` (default: the settings' :func:`coarse_vocabulary`),
    checked before any model is loaded: fewer than two labels, or no class under any label, is a
    DataError naming the fix."""
    vocab = list(dict.fromkeys(vocabulary if vocabulary is not None else coarse_vocabulary()))
    if len(vocab) < 2:
        raise DataError(f"Coarse accuracy needs at least two labels to choose among, not {vocab}; pass more, e.g. "
                        "--coarse dog,flower,car.")
    members: dict[str, list[Subgroup]] = {label: [] for label in vocab}
    sets = [load_image_set(dataset, data_root, split) for dataset in datasets]
    # a label asked for must be one a class can carry: a superclass, a class name, or a default label
    known = {x.lower(): x for x in (*shipped_table().labels, *coarse_vocabulary())}
    known |= {c.lower(): c for s in sets for c in s.classnames}
    typos = [label for label in vocab if label.lower() not in known]
    if typos:
        raise DataError(f"Unknown coarse label {typos[0]!r}: neither a label of superclasses.toml nor a class of "
                        f"{', '.join(datasets)}.{suggest(typos[0], known.values())} Fix the name in --coarse.")
    for images in sets:
        for classname in images.classnames:
            label = carried_label(images.name, classname, vocab)
            if label is not None:
                members[label].append(Subgroup(images.name, classname, label))
    if not any(members.values()):
        raise DataError(f"No class of {', '.join(datasets)} carries any of the coarse labels {vocab} "
                        "(data/superclasses.toml, or a class of that name); name datasets with such classes, or "
                        "other labels.")
    return CoarseRequest(tuple(vocab), {k: tuple(v) for k, v in members.items()}, data_root, split)


@dataclass(frozen=True)
class CoarseLabel:
    """One label's result: top-1 over ``n`` images from ``classes`` (``dataset:class``)."""

    label: str
    top1: float
    n: int
    classes: tuple[str, ...]

    def to_json(self) -> dict:
        return {"top1": self.top1, "n": self.n, "classes": list(self.classes)}


@dataclass(frozen=True)
class CoarseResult:
    vocabulary: tuple[str, ...]
    template: str
    split: str
    labels: tuple[CoarseLabel, ...]  # those with images, in vocabulary order

    @property
    def mean(self) -> float:
        """Mean top-1 over the labels that have images."""
        return sum(x.top1 for x in self.labels) / len(self.labels)

    @property
    def without_images(self) -> list[str]:
        found = {x.label for x in self.labels}
        return [label for label in self.vocabulary if label not in found]

    def to_json(self) -> dict:
        return {"vocabulary": list(self.vocabulary), "template": self.template, "split": self.split,
                "mean": self.mean, "labels": {x.label: x.to_json() for x in self.labels},
                "without_images": self.without_images}


def coarse_accuracy(evaluator: Evaluator, request: CoarseRequest, template: str = DEFAULT_TEMPLATE
                    ) -> CoarseResult:
    """Top-1 of each label of the request among its vocabulary over the images whose class carries it.
    The image features are each dataset's own (the evaluator's cache entries of a fine evaluation of
    the same model are reused); only the classifier is the coarse labels'."""
    weights = evaluator.classifier(list(request.vocabulary), [template])
    right: dict[str, list[torch.Tensor]] = {label: [] for label in request.vocabulary}
    by_dataset: dict[str, list[Subgroup]] = {}
    for groups in request.members.values():
        for g in groups:
            by_dataset.setdefault(g.dataset, []).append(g)
    for dataset, groups in by_dataset.items():
        images = load_image_set(dataset, request.data_root, request.split)
        feats = evaluator.image_features(images).to(weights.device)
        labels = torch.as_tensor(images.labels)
        for g in groups:
            rows = labels == images.class_index(g.name)
            predicted = (feats[rows] @ weights.T).argmax(1).cpu()
            right[str(g.coarse)].append(predicted == request.vocabulary.index(str(g.coarse)))
    out = []
    for label, groups in request.members.items():
        hits = torch.cat(right[label]) if right[label] else torch.zeros(0, dtype=torch.bool)
        if hits.numel():  # a label whose classes have no image in this split counts as without images
            out.append(CoarseLabel(label, float(hits.float().mean()), int(hits.numel()),
                                   tuple(f"{g.dataset}:{g.name}" for g in groups)))
    return CoarseResult(request.vocabulary, template, request.split, tuple(out))


__all__ = ["CoarseLabel", "CoarseRequest", "CoarseResult", "carried_label", "coarse_accuracy", "coarse_request"]
