"""Oracles as cells of a suite: a zoo model trained by its recipe without some classes (the model a
forget run should look like), for the audit's side-by-side comparison.

    [[oracles]]
    model = "mini-rn"                      # a zoo model (its recipe trains it)
    exclude = ["caltech101:minaret"]       # DATASET:CLASS, every image of the name left out
    epochs = 14                            # optional: the recipe's
    threads = 1                            # optional: the recipe's (2); 1 to train beside other work
    datasets = ["caltech101", "cifar10"]   # optional: the recipe trains on every registered dataset

An oracle is trained once, before the cells and through the suite's executor (an :class:`OracleJob`
of ``jobs.py``), and cached by content in
``OUT/cache/oracles/<id>.safetensors`` with its training record beside it (``<id>.json``, written
last: an oracle is there when its record is). Its id hashes the model, the recipe (epochs, seed,
threads, ...), the classes left out, the datasets and the package version. A cell's audit uses the
oracle of its model that leaves out exactly its classes, when the suite lists one.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from ..errors import ClipUnlearnError
from ..io import write_json
from ..version import __version__
from .fields import fail, table_entries

ORACLE_KEYS = {"model", "exclude", "epochs", "datasets", "threads"}


@dataclass(frozen=True)
class OracleSpec:
    model: str
    exclude: tuple[str, ...]  # DATASET:CLASS items
    epochs: int | None = None
    datasets: tuple[str, ...] | None = None
    threads: int | None = None

    @property
    def class_names(self) -> frozenset[str]:
        return frozenset(item.partition(":")[2].strip() for item in self.exclude)

    def recipe(self):
        from ..zoo import RECIPES

        recipe = RECIPES[self.model]
        if self.epochs is not None:
            recipe = replace(recipe, epochs=self.epochs)
        return recipe if self.threads is None else replace(recipe, threads=self.threads)

    def key(self) -> dict:
        return {"model": self.model, "recipe": asdict(self.recipe()), "exclude": sorted(self.exclude),
                "datasets": None if self.datasets is None else sorted(self.datasets), "version": __version__}

    @property
    def oracle_id(self) -> str:
        digest = hashlib.blake2b(json.dumps(self.key(), sort_keys=True).encode(), digest_size=6).hexdigest()
        slug = "+".join(sorted(n.replace(" ", "_").replace("/", "_") for n in self.class_names))[:40]
        return f"{self.model}-no-{slug}-{digest}"

    def matches(self, model: str, dataset: str, classes: tuple[str, ...]) -> bool:
        """The oracle of a cell: same model, and it left out exactly the cell's classes (named in its dataset)."""
        datasets = {item.partition(":")[0].strip() for item in self.exclude}
        return self.model == model and dataset in datasets and self.class_names == frozenset(classes)


def parse_oracles(where: str, entries) -> tuple[OracleSpec, ...]:
    out = []
    for w, o in table_entries(where, entries, ORACLE_KEYS, '{ model = "mini-rn", exclude = ["caltech101:minaret"] }'):
        if not o.get("model") or not o.get("exclude"):
            raise fail(w, "needs 'model' and a non-empty 'exclude' list of DATASET:CLASS")
        epochs = o.get("epochs")
        if epochs is not None and int(epochs) < 1:
            raise fail(f"{w}: epochs", f"must be at least 1, not {epochs}")
        threads = o.get("threads")
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise fail(f"{w}: threads", f"must be a whole number of at least 1, not {threads!r}")
        out.append(OracleSpec(o["model"], tuple(o["exclude"]), None if epochs is None else int(epochs),
                              tuple(o["datasets"]) if o.get("datasets") else None, threads))
    return tuple(out)


def check_oracles(where: str, oracles: tuple[OracleSpec, ...], data_root: str | None) -> None:
    """Each oracle names a zoo model (only the zoo has a recipe here) and classes of its datasets."""
    from ..models.zoo import ZOO_MODELS
    from ..zoo.train import excluded_classes

    for i, o in enumerate(oracles):
        w = f"{where}: oracles[{i}]"
        if o.model not in ZOO_MODELS:
            raise fail(f"{w}: model", f"{o.model!r} is not a zoo model; oracles are trained by the zoo recipe "
                                      f"({', '.join(ZOO_MODELS)}). Train your own and audit with "
                                      "`clipunlearn audit RUN --oracle FILE`", o.model, list(ZOO_MODELS))
        try:
            excluded_classes(list(o.exclude), data_root)
            if o.datasets:
                from ..data import load_image_set

                for d in o.datasets:
                    load_image_set(d, data_root, "train")
        except ClipUnlearnError as e:
            raise ClipUnlearnError(f"{w}: {e}") from None


def oracle_path(out: Path, spec: OracleSpec) -> Path:
    return out / "cache" / "oracles" / f"{spec.oracle_id}.safetensors"


def oracle_ready(out: Path, spec: OracleSpec) -> bool:
    path = oracle_path(out, spec)
    return path.is_file() and path.with_suffix(".json").is_file()


def train_oracle(out: Path, spec: OracleSpec, data_root: str | None, echo=print) -> Path:
    """Train ``spec`` into the cache unless it is there; returns its weights file."""
    from ..zoo import train_zoo_model
    from ..zoo.train import checkpoint_path, excluded_classes

    path = oracle_path(out, spec)
    if oracle_ready(out, spec):
        return path
    recipe = spec.recipe()
    echo(f"oracle {spec.oracle_id}: training {spec.model} without {', '.join(spec.exclude)} "
         f"({recipe.epochs} epochs of the zoo recipe)")
    record = train_zoo_model(spec.model, data_root, path, recipe, log=echo,
                             datasets=list(spec.datasets) if spec.datasets else None,
                             exclude=excluded_classes(list(spec.exclude), data_root),
                             checkpoint=checkpoint_path(path))  # a killed suite resumes its last epoch
    write_json(path.with_suffix(".json"), {"oracle_id": spec.oracle_id, "spec": spec.key(), **record})
    return path


__all__ = ["OracleSpec", "check_oracles", "oracle_path", "oracle_ready", "parse_oracles", "train_oracle"]
