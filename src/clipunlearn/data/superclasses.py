"""Superclasses: the coarse labels of every class of the registered datasets (a Leonberg is a dog, a
2012 Toyota Camry Sedan a sedan and a car, a tench a fish), shipped as data in ``superclasses.toml``.

CLIP learnt from captions at every level ("a dog", "a Leonberg"); a stand-in trained on class names
alone knows no "dog". The zoo recipes whose captions name superclasses read this table
(:mod:`clipunlearn.zoo.train`), and so can anything that classifies or groups by coarse label.

The file declares a vocabulary of labels, each with its parent labels (``dog`` -> ``mammal`` ->
``animal``), and lists every class of each dataset with its most specific labels; a class carries
those and all their ancestors. The file is checked when read: a label it does not declare, a parent
cycle or a class listed twice is refused, naming the line to fix.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ..errors import DataError, UnknownNameError, suggest


@dataclass(frozen=True)
class SuperclassTable:
    """A parsed superclass file: ``parents`` maps each declared label to its parent labels (file order);
    ``classes`` maps each dataset to its classes, each with the labels the file lists for it."""

    parents: dict[str, tuple[str, ...]]
    classes: dict[str, dict[str, tuple[str, ...]]]
    source: str = "superclasses.toml"

    @property
    def labels(self) -> tuple[str, ...]:
        """The declared vocabulary, in file order."""
        return tuple(self.parents)

    def ancestors(self, label: str) -> tuple[str, ...]:
        """``label``'s parents, their parents, ... (nearest first, each once)."""
        out: list[str] = []
        todo = list(self.parents[label])
        while todo:
            parent = todo.pop(0)
            if parent not in out:
                out.append(parent)
                todo += self.parents[parent]
        return tuple(out)

    def dataset_table(self, dataset: str) -> tuple[str, dict[str, tuple[str, ...]]]:
        """The dataset's name as the file spells it and its classes; a registered alias (``dogs``) is
        accepted. Unknown: a one-line error naming the fix."""
        if dataset in self.classes:
            return dataset, self.classes[dataset]
        from .registry import get_dataset_spec

        try:
            name = get_dataset_spec(dataset).name
        except UnknownNameError:
            name = dataset
        if name in self.classes:
            return name, self.classes[name]
        raise UnknownNameError(
            f"{self.source} has no superclasses of dataset {dataset!r}.{suggest(dataset, self.classes)} "
            f"It has {', '.join(sorted(self.classes))}; add a [dataset.{name}] table listing each class "
            "with its labels.")

    def superclasses(self, dataset: str, classname: str) -> tuple[str, ...]:
        """The labels of class ``classname`` of ``dataset``: those listed, then their ancestors (nearest
        first), each once; ``()`` for a class with none."""
        name, table = self.dataset_table(dataset)
        if classname not in table:
            raise UnknownNameError(
                f"Class {classname!r} of {name} is not in {self.source}.{suggest(classname, table)} Add the line "
                f"\"{classname}\" = [labels] to its [dataset.{name}] table ([] if no label fits).")
        out = list(table[classname])
        for label in table[classname]:
            out += [a for a in self.ancestors(label) if a not in out]
        return tuple(out)

    def coarse_labels(self, dataset: str) -> dict[str, tuple[str, ...]]:
        """Each label some class of ``dataset`` carries (vocabulary order) -> those classes (file order)."""
        name, table = self.dataset_table(dataset)
        carried = {c: set(self.superclasses(name, c)) for c in table}
        out = {label: tuple(c for c in table if label in carried[c]) for label in self.labels}
        return {label: classes for label, classes in out.items() if classes}


def parse_table(text: str, source: str = "superclasses.toml") -> SuperclassTable:
    """Read and check the text of a superclass file (the layout of the shipped one)."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DataError(f"{source} is not valid TOML ({exc}); fix the line it names.") from None
    unknown_keys = sorted(set(raw) - {"labels", "dataset"})
    if unknown_keys:
        raise DataError(f"{source}: unknown table(s) {unknown_keys}; the file has [labels] and [dataset.NAME] tables.")
    parents: dict[str, tuple[str, ...]] = {}
    for label, ups in raw.get("labels", {}).items():
        parents[label] = tuple(_label_list(ups, f"{source}: [labels] {label!r}"))
    for label, ups in parents.items():
        for up in ups:
            if up not in parents:
                raise DataError(f"{source}: the label {label!r} has the parent {up!r}, which [labels] does not "
                                f"declare.{suggest(up, parents)} Declare it or fix the name.")
    _refuse_cycles(parents, source)
    classes: dict[str, dict[str, tuple[str, ...]]] = {}
    for dataset, table in raw.get("dataset", {}).items():
        if not isinstance(table, dict):
            raise DataError(f"{source}: [dataset.{dataset}] must be a table of class = [labels].")
        classes[dataset] = {}
        for classname, labels in table.items():
            where = f"{source}: [dataset.{dataset}] {classname!r}"
            listed = _label_list(labels, where)
            for label in listed:
                if label not in parents:
                    raise DataError(f"{where} has the label {label!r}, which [labels] does not declare."
                                    f"{suggest(label, parents)} Declare it or fix the name.")
            classes[dataset][classname] = tuple(listed)
    return SuperclassTable(parents, classes, source)


def _label_list(value, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise DataError(f"{where} must be a list of label names, e.g. [\"dog\"] (or [] for none), not {value!r}.")
    if len(set(value)) != len(value):
        raise DataError(f"{where} names a label twice ({value}); name each once.")
    return list(value)


def _refuse_cycles(parents: dict[str, tuple[str, ...]], source: str) -> None:
    done: set[str] = set()

    def visit(label: str, path: tuple[str, ...]) -> None:
        if label in path:
            cycle = " -> ".join((*path[path.index(label):], label))
            raise DataError(f"{source}: the labels' parents form a cycle ({cycle}); a label cannot be its own "
                            "ancestor.")
        if label not in done:
            for up in parents[label]:
                visit(up, (*path, label))
            done.add(label)

    for label in parents:
        visit(label, ())


def table_path() -> Path:
    """The shipped file."""
    return Path(str(resources.files("clipunlearn.data") / "superclasses.toml"))


@lru_cache(maxsize=1)
def shipped_table() -> SuperclassTable:
    path = table_path()
    return parse_table(path.read_text(encoding="utf-8"), str(path))


def superclasses(dataset: str, classname: str) -> tuple[str, ...]:
    """The coarse labels of class ``classname`` of ``dataset`` (most specific first, then their ancestors):
    ``superclasses("stanford_dogs", "Leonberg") == ("dog", "mammal", "animal")``."""
    return shipped_table().superclasses(dataset, classname)


def coarse_labels(dataset: str) -> dict[str, tuple[str, ...]]:
    """Each coarse label the classes of ``dataset`` carry -> the classes carrying it:
    ``coarse_labels("stanford_cars")["sedan"]`` lists the 46 sedans."""
    return shipped_table().coarse_labels(dataset)


def label_vocabulary() -> tuple[str, ...]:
    """Every label the shipped file declares, in file order."""
    return shipped_table().labels


__all__ = ["SuperclassTable", "coarse_labels", "label_vocabulary", "parse_table", "shipped_table", "superclasses",
           "table_path"]
