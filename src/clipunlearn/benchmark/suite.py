"""Benchmark suites as data: a TOML file of models × methods × forget targets × seeds, expanded into
cells (RunSpecs). Shipped suites live in ``benchmark/suites/``; a user copies one and edits it.

    name = "quick"
    models = ["mini-rn"]
    seeds = [0]
    other_datasets = ["cifar10"]      # optional: default, the paper's other datasets
    n_per_class = 16                  # synthetic images per class
    max_steps = 300                   # generation steps per image (optional)
    max_epochs = 4                    # cap on every method's epochs (optional)

    [[methods]]
    method = "lip"                    # a registered method
    preset = "default"                # optional
    ablation = "no-text-loss"         # optional
    options = { lr = 1e-4 }           # optional: fields of the method's config

    [[targets]]
    dataset = "caltech101"
    classes = ["motorbike"]           # forgotten together in one run

Every name is checked before any cell runs: a bad one fails with the file, the field and the closest
known name.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import tomllib

from ..errors import ClipUnlearnError, suggest
from ..runs.spec import RunSpec

SUITE_KEYS = {"name", "description", "models", "seeds", "other_datasets", "n_per_class", "max_steps", "max_epochs",
              "retrieval", "template_change", "methods", "targets"}
METHOD_KEYS = {"method", "preset", "ablation", "options"}
TARGET_KEYS = {"dataset", "classes"}


@dataclass(frozen=True)
class MethodEntry:
    method: str
    preset: str = "default"
    ablation: str | None = None
    options: tuple[tuple[str, Any], ...] = ()


@dataclass(frozen=True)
class Target:
    dataset: str
    classes: tuple[str, ...]


@dataclass
class Suite:
    name: str
    source: str
    models: list[str]
    methods: list[MethodEntry]
    targets: list[Target]
    seeds: list[int] = field(default_factory=lambda: [0])
    other_datasets: list[str] | None = None
    n_per_class: int = 64
    max_steps: int | None = None
    max_epochs: int | None = None
    retrieval: bool = True
    template_change: bool = True
    description: str = ""

    def cells(self, models: list[str] | None = None) -> list[RunSpec]:
        """One RunSpec per model × method entry × target × seed, in that order."""
        out = []
        for model in models or self.models:
            for m in self.methods:
                for t in self.targets:
                    for seed in self.seeds:
                        out.append(RunSpec(
                            model=model, method=m.method, dataset=t.dataset, classes=t.classes, preset=m.preset,
                            ablation=m.ablation, options=m.options, seed=seed,
                            other_datasets=None if self.other_datasets is None else tuple(self.other_datasets),
                            n_per_class=self.n_per_class, max_epochs=self.max_epochs, max_steps=self.max_steps,
                            retrieval=self.retrieval, template_change=self.template_change))
        return out


def shipped_suites() -> list[str]:
    folder = resources.files("clipunlearn.benchmark") / "suites"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".toml"))


def _fail(where: str, what: str, name: str | None = None, known: list[str] | None = None) -> ClipUnlearnError:
    hint = suggest(name, known) if name is not None and known else ""
    return ClipUnlearnError(f"{where}: {what}.{hint}")


def _check_keys(where: str, table: dict[str, Any], allowed: set[str]) -> None:
    for key in table:
        if key not in allowed:
            hint = suggest(key, sorted(allowed)) or f" Known fields: {', '.join(sorted(allowed))}."
            raise ClipUnlearnError(f"{where}: unknown field {key!r}.{hint}")


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """A shipped suite by name (``quick``) or a TOML file, checked field by field."""
    text_name = str(name_or_path)
    path = Path(text_name)
    if not path.is_file():
        if text_name in shipped_suites():
            path = Path(str(resources.files("clipunlearn.benchmark") / "suites" / f"{text_name}.toml"))
        else:
            hint = suggest(text_name, shipped_suites())
            raise ClipUnlearnError(f"No suite file {text_name!r} and no shipped suite of that name.{hint} "
                                   f"Shipped: {', '.join(shipped_suites())}; or pass a .toml file.")
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ClipUnlearnError(f"{where}: not valid TOML ({e}). Fix the file.") from None
    _check_keys(where, data, SUITE_KEYS)
    for key in ("models", "methods", "targets"):
        if not data.get(key):
            raise _fail(where, f"field {key!r} is missing or empty")
    methods = []
    for i, m in enumerate(data["methods"]):
        w = f"{where}: methods[{i}]"
        _check_keys(w, m, METHOD_KEYS)
        if "method" not in m:
            raise _fail(w, "has no 'method'")
        methods.append(MethodEntry(m["method"], m.get("preset", "default"), m.get("ablation"),
                                   tuple(sorted((m.get("options") or {}).items()))))
    targets = []
    for i, t in enumerate(data["targets"]):
        w = f"{where}: targets[{i}]"
        _check_keys(w, t, TARGET_KEYS)
        if "dataset" not in t or not t.get("classes"):
            raise _fail(w, "needs 'dataset' and a non-empty 'classes' list")
        targets.append(Target(t["dataset"], tuple(t["classes"])))
    return Suite(name=data.get("name", path.stem), source=where, models=list(data["models"]), methods=methods,
                 targets=targets, seeds=[int(s) for s in data.get("seeds", [0])],
                 other_datasets=data.get("other_datasets"), n_per_class=int(data.get("n_per_class", 64)),
                 max_steps=data.get("max_steps"), max_epochs=data.get("max_epochs"),
                 retrieval=bool(data.get("retrieval", True)), template_change=bool(data.get("template_change", True)),
                 description=data.get("description", ""))


def check_suite(suite: Suite, data_root: str | None, models: list[str] | None = None) -> None:
    """Every method, preset, ablation, option, model, dataset and class name exists: before any cell runs."""
    from ..data import get_dataset_spec, load_image_set
    from ..methods import get_method, method_names
    from ..models import available_models
    from ..models.zoo import ZOO_MODELS

    where = suite.source
    known_models = set(available_models()) | set(ZOO_MODELS)
    for model in models or suite.models:
        if model not in known_models:
            raise _fail(f"{where}: models", f"unknown model {model!r}", model, sorted(known_models))
    for i, m in enumerate(suite.methods):
        w = f"{where}: methods[{i}]"
        if m.method not in method_names():
            raise _fail(w, f"unknown method {m.method!r}", m.method, method_names())
        try:
            get_method(m.method).build_config(m.preset, "resnet", m.ablation, dict(m.options))
        except ClipUnlearnError as e:
            raise ClipUnlearnError(f"{w}: {e}") from None
    for i, t in enumerate(suite.targets):
        w = f"{where}: targets[{i}]"
        try:
            get_dataset_spec(t.dataset)
            images = load_image_set(t.dataset, data_root, "test")
            images.class_indices(list(t.classes))
        except ClipUnlearnError as e:
            raise ClipUnlearnError(f"{w}: {e}") from None
    for name in suite.other_datasets or []:
        try:
            load_image_set(name, data_root, "test")
        except ClipUnlearnError as e:
            raise ClipUnlearnError(f"{where}: other_datasets: {e}") from None
