"""Subgroup forgetting requests (CVPR'25 §3, §5): forget one subgroup of a coarse class (a flower
species under "flower", CIFAR-10's airplanes), known to the model only by the coarse label, while the
class's other subgroups, other classes and other datasets keep working.

A :class:`SubgroupSetting` names, all as classes of registered datasets:

* ``vocabulary``: the labels the zero-shot classifier chooses among (the prompts: coarse labels);
* ``forget``: the subgroup(s) to forget, each with its coarse label;
* ``retain``: the subgroups to keep that the request hands over (their train images are the
  retain set; their test images a column of the table);
* ``keep``: further columns that are only measured: other superclasses' subgroups (classified
  among the vocabulary), or the same concept in another dataset (``coarse = None``: classified
  among that dataset's own class names, as CVPR'25 Table 2 checks ImageNet's airplanes);
* ``other_datasets``: measured zero-shot over their own classes.

The shipped settings (in-domain superclasses, cross-domain classes) are data in ``subgroups.toml``;
:func:`custom_setting` builds one from the CLI's ``--forget-subgroup`` / ``--retain-subgroups`` /
``--coarse-label``. :func:`check_setting` refuses names that are not in the data and overlapping
forget and retain sets before any compute.
"""
from __future__ import annotations

import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import DataError, unknown
from .loaders import ImageSet, load_image_set
from .registry import DEFAULT_TEMPLATE

KINDS = ("in-domain", "cross-domain", "style", "custom")
#: the datasets a subgroup run measures when the setting names none (those of the request left out)
DEFAULT_OTHER_DATASETS = ("caltech101", "cifar10", "food101", "imagenette")


@dataclass(frozen=True)
class Subgroup:
    """Class ``name`` of ``dataset``; ``coarse``: its label in the setting's vocabulary, or None when
    it is classified among its own dataset's class names."""

    dataset: str
    name: str
    coarse: str | None = None
    style: str | None = None  # the class's images in this style (data.styles), for the style setting

    @property
    def label(self) -> str:
        """How the subgroup is named in tables: its class, or the class's style."""
        return f"{self.name} ({self.style})" if self.style else self.name

    def describe(self) -> str:
        return f"{self.dataset}:{self.label}" + (f" ({self.coarse})" if self.coarse else "")


@dataclass(frozen=True)
class Column:
    """A measured group of test images: ``role`` "forget" or "keep"."""

    name: str
    role: str
    subgroups: tuple[Subgroup, ...]


@dataclass(frozen=True)
class SubgroupSetting:
    name: str
    kind: str
    vocabulary: tuple[str, ...]
    forget: tuple[Subgroup, ...]
    retain: tuple[Subgroup, ...]
    keep: tuple[Column, ...] = ()
    other_datasets: tuple[str, ...] | None = None  # None: DEFAULT_OTHER_DATASETS less the setting's own
    template: str = DEFAULT_TEMPLATE
    why: str = ""
    prepare: str | None = None  # "fine-tune-styles": the model first learns the styled images (CVPR'25 §5.4)

    @property
    def coarse_labels(self) -> list[str]:
        """The forgotten subgroups' coarse labels, in vocabulary order, each once."""
        wanted = {g.coarse for g in self.forget}
        return [c for c in self.vocabulary if c in wanted]

    @property
    def datasets(self) -> list[str]:
        """The datasets the request's subgroups come from."""
        return sorted({g.dataset for g in (*self.forget, *self.retain)})

    def columns(self) -> list[Column]:
        """The table's subgroup columns: target, retain, then the measured-only ones."""
        return [Column("target", "forget", self.forget), Column("retain", "keep", self.retain), *self.keep]

    def measured_datasets(self) -> list[str]:
        mine = set(self.datasets)
        names = DEFAULT_OTHER_DATASETS if self.other_datasets is None else self.other_datasets
        return [d for d in names if d not in mine]

    def to_json(self) -> dict[str, Any]:
        def groups(gs: Sequence[Subgroup]) -> list[dict[str, Any]]:
            return [{"dataset": g.dataset, "name": g.name, "coarse": g.coarse, **({"style": g.style} if g.style else {})}
                    for g in gs]

        return {"name": self.name, "kind": self.kind, "vocabulary": list(self.vocabulary), "template": self.template,
                "forget": groups(self.forget), "retain": groups(self.retain),
                "keep": [{"name": c.name, "subgroups": groups(c.subgroups)} for c in self.keep],
                "other_datasets": self.measured_datasets(), "why": self.why, "prepare": self.prepare}


# --- the shipped settings --------------------------------------------------------------------------
def _settings_file() -> Path:
    return Path(str(resources.files("clipunlearn.data") / "subgroups.toml"))


@lru_cache(maxsize=1)
def _shipped() -> dict[str, SubgroupSetting]:
    raw = tomllib.loads(_settings_file().read_text(encoding="utf-8"))
    vocabularies: dict[str, list[str]] = raw.get("vocabularies", {})
    template = raw.get("template", DEFAULT_TEMPLATE)
    out: dict[str, SubgroupSetting] = {}
    supers = raw.get("superclasses", [])
    for sc in supers:
        vocab = tuple(vocabularies[sc["vocabulary"]])
        groups = [Subgroup(sc["dataset"], n, sc["name"]) for n in sc["subgroups"]]
        others = tuple(Subgroup(o["dataset"], n, o["name"]) for o in supers if o is not sc for n in o["subgroups"])
        name = f"in-domain-{sc['name']}"
        out[name] = SubgroupSetting(name, "in-domain", vocab, (groups[0],), tuple(groups[1:]),
                                    (Column("other superclasses", "keep", others),), template=template,
                                    why=sc.get("why", ""))
    for cd in raw.get("cross_domain", []):
        classnames = _dataset_classes(cd["dataset"], cd.get("classnames"))
        forget = Subgroup(cd["dataset"], cd["forget"], cd["forget"])
        retain = tuple(Subgroup(cd["dataset"], c, c) for c in classnames if c != cd["forget"])
        keep = tuple(Column(f"{s['class']} in {s['dataset']}", "keep", (Subgroup(s["dataset"], s["class"], None),))
                     for s in cd.get("same_concept", []))
        name = f"cross-domain-{cd['forget'].replace(' ', '-')}"
        out[name] = SubgroupSetting(name, "cross-domain", tuple(classnames), (forget,), retain, keep,
                                    template=template, why=cd.get("why", ""))
    for st in raw.get("style", []):
        vocab = tuple(vocabularies[st["vocabulary"]])
        styled = {s: Subgroup(st["dataset"], st["class"], st["coarse"], s) for s in st["styles"]}
        name = f"style-{st['class'].replace(' ', '-')}-{st['forget']}"
        out[name] = SubgroupSetting(name, "style", vocab, (styled[st["forget"]],),
                                    tuple(g for s, g in styled.items() if s != st["forget"]),
                                    (Column(f"{st['class']} photos", "keep", (Subgroup(st["dataset"], st["class"],
                                                                                        st["coarse"]),)),),
                                    template=template, why=st.get("why", ""), prepare=st.get("prepare"))
    return out


def _dataset_classes(dataset: str, listed: list[str] | None) -> list[str]:
    if listed is None:
        raise DataError(f"subgroups.toml: the cross-domain setting on {dataset} must list its classnames.")
    return list(listed)


def coarse_vocabulary() -> list[str]:
    """The coarse labels the shipped in-domain settings classify among (``[vocabularies] coarse``)."""
    return list(tomllib.loads(_settings_file().read_text(encoding="utf-8"))["vocabularies"]["coarse"])


def setting_names() -> list[str]:
    return sorted(_shipped())


def get_setting(name: str) -> SubgroupSetting:
    settings = _shipped()
    if name not in settings:
        raise unknown("subgroup setting", name, settings)
    return settings[name]


def custom_setting(dataset: str, forget: Sequence[str], retain: Sequence[str], coarse_label: str,
                   vocabulary: Sequence[str] | None = None) -> SubgroupSetting:
    """A request from the CLI: forget ``forget`` (classes of ``dataset``) known as ``coarse_label``,
    keep ``retain`` (same coarse label); the classifier chooses among ``vocabulary`` (default: the
    in-domain coarse labels, with ``coarse_label`` added if missing)."""
    if vocabulary is None:
        vocabulary = coarse_vocabulary()
    vocab = list(dict.fromkeys(vocabulary))
    if coarse_label not in vocab:
        vocab.append(coarse_label)
    name = f"custom-{dataset}-" + "+".join(f.replace(" ", "_") for f in forget)[:40]
    return SubgroupSetting(name, "custom", tuple(vocab), tuple(Subgroup(dataset, f, coarse_label) for f in forget),
                           tuple(Subgroup(dataset, r, coarse_label) for r in retain))


# --- checks and images -----------------------------------------------------------------------------
def check_setting(setting: SubgroupSetting, data_root: str | None) -> None:
    """Fail before any compute on: no forget or no retain subgroup, a subgroup named twice or in both
    sets, a class that is not in its dataset, a coarse label outside the vocabulary."""
    if not setting.forget:
        raise DataError(f"Setting {setting.name} forgets no subgroup; name one with --forget-subgroup.")
    if not setting.retain:
        raise DataError(f"Setting {setting.name} has an empty retain set; name the subgroups to keep with "
                        "--retain-subgroups (the method needs their images to remind the model).")
    overlap = {(g.dataset, g.label) for g in setting.forget} & {(g.dataset, g.label) for g in setting.retain}
    if overlap:
        names = ", ".join(sorted(n for _, n in overlap))
        raise DataError(f"{names} is both forgotten and retained; drop it from --retain-subgroups.")
    for col in setting.columns():
        seen: set[tuple[str, str]] = set()
        for g in col.subgroups:
            if (g.dataset, g.label) in seen:
                raise DataError(f"Subgroup {g.describe()} is named twice in {col.name}; name each once.")
            seen.add((g.dataset, g.label))
            if g.style is not None:
                from .styles import STYLES

                if g.style not in STYLES:
                    raise DataError(f"Unknown style {g.style!r} of {g.describe()}; the styles are {sorted(STYLES)}.")
            if g.coarse is not None and g.coarse not in setting.vocabulary:
                raise DataError(f"The coarse label {g.coarse!r} of {g.describe()} is not in the vocabulary "
                                f"{list(setting.vocabulary)}; add it.")
            load_image_set(g.dataset, data_root, "test").class_index(g.name)  # a miss suggests names


def column_images(subgroups: Sequence[Subgroup], vocabulary: Sequence[str], data_root: str | None, split: str,
                  name: str) -> ImageSet:
    """The images of ``subgroups`` (one split) as one set labelled over ``vocabulary`` (by coarse label),
    or, for subgroups classified in their own dataset (``coarse`` None), over that dataset's classes."""
    own = [g for g in subgroups if g.coarse is None]
    if own:
        if len({g.dataset for g in own}) != 1 or len(own) != len(subgroups):
            raise DataError(f"Column {name!r} mixes subgroups classified in their own dataset with others; "
                            "give it one dataset's classes only, or coarse labels for all.")
        images = load_image_set(own[0].dataset, data_root, split)
        return images.subset(images.class_indices([g.name for g in own]))
    paths: list[Path] = []
    labels: list[int] = []
    styles: list[str | None] = []
    sources = []
    for g in subgroups:
        images = load_image_set(g.dataset, data_root, split)
        part = images.subset([images.class_index(g.name)])
        if part.paths is None:
            raise DataError(f"{g.dataset} is read through torchvision; subgroup columns need image files "
                            "(a manifest or class folders). Convert the dataset to one of those layouts.")
        paths += part.paths
        labels += [list(vocabulary).index(str(g.coarse))] * len(part)
        styles += [g.style] * len(part)
        sources.append(f"{g.dataset}:{g.label}")
    return ImageSet(name, split, list(vocabulary), labels, "+".join(sources), paths=paths,
                    styles=styles if any(styles) else None)


@dataclass
class SubgroupTrain:
    """The train images a method may be handed: forget and retain subgroups, labelled over the vocabulary."""

    forget: ImageSet
    retain: ImageSet
    counts: dict[str, int] = field(default_factory=dict)


def train_images(setting: SubgroupSetting, data_root: str | None) -> SubgroupTrain:
    forget = column_images(setting.forget, setting.vocabulary, data_root, "train", "forget")
    retain = column_images(setting.retain, setting.vocabulary, data_root, "train", "retain")
    return SubgroupTrain(forget, retain, {"forget": len(forget), "retain": len(retain)})


__all__ = ["Column", "DEFAULT_OTHER_DATASETS", "KINDS", "Subgroup", "SubgroupSetting", "SubgroupTrain",
           "check_setting", "column_images", "custom_setting", "get_setting", "setting_names", "train_images"]
