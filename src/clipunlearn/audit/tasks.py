"""Subgroup and concept runs as audit cases: what "the class" is for each task (``docs/audit.md``,
"Subgroup and concept runs").

* A **subgroup** run forgot a class of some dataset (one flower species) under its coarse label
  ("flower"). The audit reads the subgroup as a class of its source dataset, exactly as a class run of
  that class is read (its test images among the dataset's classes, the dataset's first template, its
  train split for the attacks that train), so every attack runs unchanged and an oracle is the zoo
  recipe without that class (``--exclude DATASET:SUBGROUP``). :func:`coarse_reading` adds what the
  run itself judges: the share of those test images each model calls by the coarse label.
* A **concept** run forgot names among a vocabulary, checked on the user's photos when given. It has
  no labels and no train split: its test images are the user's photos of the concept (labelled by the
  first concept, as the run labels them for methods), else the synthetic images the run forgot with;
  the user's retain photos join them, labelled by the original model's top-1 among the kept names
  (:func:`label_retain`). The attacks that need a labelled train split are skipped with the reason
  (:data:`CONCEPT_SKIPS`), and there is no oracle.

Every check here runs before any model is loaded, and fails with one line naming the fix.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image

from ..data import ImageSet
from ..errors import ClipUnlearnError, DataError

if TYPE_CHECKING:
    from .case import AuditCase

CLASS, SUBGROUP, CONCEPT = "class", "subgroup", "concept"
SYNTHETIC_FILE = "synthetic.safetensors"

#: why each attack that reads a labelled train split cannot run on a concept run
CONCEPT_SKIPS = {
    "probe": "a concept run has no labelled train split: the probe trains a classifier on images of the concept "
             "and of other names, apart from the images it is tested on",
    "prototype": "a concept run has no labelled train split: each name's prototype is made from train images of it",
    "relearning": "a concept run has no train split: relearning teaches with train images of the concept, of other "
                  "names and of related names, and reads held-out images of it",
    "mia": "a concept run has no train split: membership needs images known to be in the model's training data "
           "(members) and images known not to be",
}
#: why a concept run takes no oracle
CONCEPT_NO_ORACLE = ("a concept is a name, not a class of the data the zoo was trained on, so no recipe can leave "
                     "its images out")


def run_task(raw: dict[str, Any]) -> str:
    """The task of a results.json: ``class`` (no ``task`` field), ``subgroup`` or ``concept``."""
    return raw.get("task") or CLASS


def subgroup_facts(raw: dict[str, Any], run: Path) -> dict[str, Any]:
    """A subgroup run's setting, checked: one source dataset, no style (a style subgroup is not a class of
    a dataset, and its model was fine-tuned on the styles before the run)."""
    setting = raw.get("setting")
    forget = setting.get("forget") if isinstance(setting, dict) else None
    if not forget or not all(isinstance(g, dict) and g.get("dataset") and g.get("name") for g in forget):
        raise ClipUnlearnError(f"{str(run)!r} is a subgroup run whose results.json lacks its 'setting' with the "
                               "forgotten subgroups: it was written by another clipunlearn or edited. Re-run the "
                               "forget command.")
    if setting.get("prepare") or any(g.get("style") for g in forget):
        raise ClipUnlearnError(f"{str(run)!r} is a style subgroup run ({setting.get('name')}): its subgroup is a style "
                               "of a class, not a class of a dataset, and its model was fine-tuned on the styles "
                               "first, so the audit can rebuild neither. Audit an in-domain, cross-domain or custom "
                               "subgroup run.")
    datasets = sorted({g["dataset"] for g in forget})
    if len(datasets) != 1:
        raise ClipUnlearnError(f"{str(run)!r} forgets subgroups of several datasets ({', '.join(datasets)}); the audit "
                               "reads the classes of one. Audit a run that forgets subgroups of one dataset.")
    return {"setting": setting.get("name"), "kind": setting.get("kind"), "dataset": datasets[0],
            "subgroups": [g["name"] for g in forget], "coarse": {g["name"]: g.get("coarse") for g in forget},
            "vocabulary": list(setting.get("vocabulary") or []), "template": setting.get("template")}


def exclude_flags(dataset: str, classes: list[str]) -> str:
    """The ``zoo train --exclude`` flags that leave ``classes`` of ``dataset`` out, quoted for a shell."""
    items = [f"{dataset}:{c}" for c in classes]
    return " ".join(f"--exclude {chr(34) + i + chr(34) if ' ' in i else i}" for i in items)


def concept_facts(raw: dict[str, Any], run: Path) -> dict[str, Any]:
    """A concept run's names and where its images were, checked against results.json."""
    settings = raw.get("settings") or {}
    vocab = raw.get("vocabulary")
    if not raw.get("concepts") or not isinstance(vocab, dict) or not settings.get("vocabulary"):
        raise ClipUnlearnError(f"{str(run)!r} is a concept run whose results.json lacks 'concepts' or 'vocabulary': "
                               "it was written by another clipunlearn or edited. Re-run the forget command.")
    measured = raw.get("measured") or {}
    return {"concepts": list(raw["concepts"]), "vocabulary": settings["vocabulary"], "names": vocab.get("names"),
            "images": settings.get("images"), "retain_images": settings.get("retain_images"),
            "n_images": (measured.get("concept images") or {}).get("n"),
            "n_retain": (measured.get("retain images") or {}).get("n"),
            "synthetic": raw.get("synthetic") is not None,
            "data_seen": sorted(raw.get("data_seen") or {})}


def refuse_oracle(task: str, oracle: object, attacks: object) -> None:
    """A concept run is audited without an oracle: refuse ``--oracle`` and the ``oracle`` attack."""
    if task != CONCEPT:
        return
    if oracle is not None:
        raise ClipUnlearnError(f"A concept run is audited without an oracle ({CONCEPT_NO_ORACLE}). Drop --oracle.")
    names = attacks.split(",") if isinstance(attacks, str) else list(attacks or [])
    if "oracle" in (str(a).strip() for a in names):
        raise ClipUnlearnError(f"A concept run is audited without an oracle ({CONCEPT_NO_ORACLE}). Leave 'oracle' out "
                               "of --attacks.")


class _Images:
    """Images in memory (PIL) or on disk (paths), read as :class:`ImageSet` reads a torchvision dataset:
    item i -> (image, label); the labels live in the image set."""

    def __init__(self, items: list[Image.Image | Path]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[Image.Image, int]:
        item = self.items[i]
        if isinstance(item, Path):
            with Image.open(item) as im:
                return im.convert("RGB"), -1
        return item, -1


@dataclass
class ConceptImages:
    """A concept run's test images: the concept's (photos or synthetic) first, then the retain photos
    (``retain_rows``), whose labels :func:`label_retain` sets once the original model is loaded."""

    test: ImageSet
    targets: list[int]
    templates: tuple[str, ...]
    retain_rows: list[int]
    about: dict[str, Any] = field(default_factory=dict)


def _folder(path: str, label: int, classnames: list[str], what: str, flag: str) -> list[Path]:
    from ..data.vocabularies import image_folder

    try:
        return list(image_folder(path, label, classnames, what).images.paths or [])
    except DataError as e:
        raise DataError(f"The concept run's {what} ({flag} {path}) cannot be read: {e} Restore the folder, or audit "
                        "from the folder the run was started in.") from None


def _synthetic(run: Path, classnames: list[str]) -> tuple[list[Image.Image], list[int], str]:
    """The synthetic images the run forgot with (``synthetic.safetensors`` beside it), as PIL images
    (quantised to 8 bits) labelled by their class's index in ``classnames``."""
    from torchvision.transforms.functional import to_pil_image

    from ..io import file_hash
    from ..synthetic import load_synthetic

    path = run / SYNTHETIC_FILE
    if not path.is_file():
        raise ClipUnlearnError(f"The concept run {str(run)!r} forgot with synthetic images but {SYNTHETIC_FILE} is "
                               "missing: the audit reads its images there. Restore it, or re-run the forget command.")
    s = load_synthetic(path)
    names = [s.classnames[t] for t in s.targets.tolist()]
    unknown = sorted(set(names) - set(classnames))
    if unknown:
        raise ClipUnlearnError(f"{str(path)!r} holds images of {unknown}, not names of the run. Restore the run's own "
                               "synthetic set, or re-run the forget command.")
    images = [to_pil_image(x.clamp(0, 1)) for x in s.images]
    return images, [classnames.index(n) for n in names], f"synthetic:{file_hash(path)}"


def concept_images(info_run: Path, facts: dict[str, Any], root: str | None) -> ConceptImages:
    """The concept run's names (the vocabulary's, then the concepts not in it) and test images: the
    user's photos of the concept, else the synthetic images the run forgot with, then the retain
    photos. The vocabulary must still have the run's number of names."""
    from ..data.vocabularies import load_vocabulary

    vocab = load_vocabulary(facts["vocabulary"], root)
    if facts["names"] is not None and len(vocab.names) != facts["names"]:
        raise ClipUnlearnError(f"The vocabulary {facts['vocabulary']!r} has {len(vocab.names)} names, the run's had "
                               f"{facts['names']}: it changed since the run. Restore it, or re-run the forget command.")
    classnames = list(vocab.names) + [c for c in facts["concepts"] if c not in vocab.names]
    targets = [classnames.index(c) for c in facts["concepts"]]
    templates = (vocab.forget_template, *(t for t in vocab.templates if t != vocab.forget_template))
    retain = (_folder(facts["retain_images"], 0, classnames, "retain photos", "--retain-images")
              if facts["retain_images"] else [])
    about: dict[str, Any] = {"vocabulary": vocab.name, "names": len(classnames), "template": vocab.forget_template,
                             "retain_images": len(retain)}
    items: list[Image.Image | Path]
    if facts["images"]:
        photos = _folder(facts["images"], targets[0], classnames, "photos of the concept", "--images")
        items, labels, source = [*photos, *retain], [targets[0]] * len(photos), f"folder:{facts['images']}"
        about.update(images="photos", n_images=len(photos), seen_by_method="real_forget" in facts["data_seen"])
    elif facts["synthetic"]:
        synthetic, labels, source = _synthetic(info_run, classnames)
        items = [*synthetic, *retain]
        about.update(images="synthetic", n_images=len(synthetic), seen_by_method=True)
    else:
        items, labels, source = list(retain), [], "none"
        about.update(images=None, n_images=0, seen_by_method=False)
    if facts["n_images"] is not None and facts["images"] and facts["n_images"] != about["n_images"]:
        about["n_images_at_run"] = facts["n_images"]  # the folder changed since the run
    n = len(labels)
    labels += [-1] * len(retain)  # set by label_retain, from the original model
    if not items:
        test = ImageSet("concept", "user", classnames, [], source, paths=[])
    elif all(isinstance(i, Path) for i in items):
        test = ImageSet("concept", "user", classnames, labels, source, paths=[Path(i) for i in items])
    else:
        test = ImageSet("concept", "user", classnames, labels, source, tv_dataset=_Images(items))
    return ConceptImages(test, targets, tuple(templates), list(range(n, n + len(retain))), about)


def concept_skips(about: dict[str, Any]) -> dict[str, str]:
    """The attacks a concept run cannot take, with the reason: those that need a train split, and the
    image attacks when the run left no image of the concept (no photos, no synthetic images)."""
    skips = dict(CONCEPT_SKIPS)
    if not about["n_images"]:
        why = ("the run left no image of the concept: no --images photos, and its method used no synthetic images "
               "(re-run with --images DIR to audit on photos)")
        skips.update(prompts=why, images=why)
    return skips


def label_retain(case: AuditCase, rows: list[int]) -> None:
    """Label the retain photos ``rows`` of the test split by the original model's top-1 among the kept
    names (the run's template), as the run labels them for methods: a kept photo's right answer is what
    the original called it."""
    if not rows:
        return
    kept = np.asarray([c for c in range(len(case.classnames)) if c not in set(case.targets)])
    logits = case.logits("original")[rows]
    for r, c in zip(rows, kept[logits[:, kept].argmax(1)].tolist()):
        case.test.labels[r] = int(c)


def coarse_reading(case: AuditCase) -> dict[str, Any]:
    """What the subgroup run itself judges: the share of the subgroup's test images that each model calls
    by its coarse label among the setting's vocabulary (the setting's template), beside the run's own
    figures (results.json's target before and after)."""
    from ..evaluation import zero_shot_classifier

    facts = case.run.facts
    vocab, template = facts["vocabulary"], facts["template"]
    rows = np.flatnonzero(case.is_target("test"))
    names = [case.classnames[c] for c in case.labels("test")[rows]]
    right = np.asarray([vocab.index(facts["coarse"][n]) for n in names])
    accuracy = {}
    for name, clip in case.models.items():
        w = zero_shot_classifier(clip, vocab, [template]).float().cpu()
        pred = (case.features(name)[rows] @ w.T).argmax(1).numpy()
        accuracy[name] = float((pred == right).mean()) if len(rows) else None
    raw = case.run.raw
    return {"coarse_labels": sorted(set(facts["coarse"].values())), "vocabulary": vocab, "template": template,
            "accuracy": accuracy, "n_images": int(len(rows)),
            "run": {"before": raw.get("target_before"), "after": raw.get("target_after")}}


def also_named_in(dataset: str, classes: list[str], root: str | None) -> dict[str, list[str]]:
    """The other datasets under ``root`` with a class of the same name as one of ``classes``: the zoo's
    ``--exclude`` leaves those out of an oracle too."""
    from ..data import load_image_set, zoo_datasets

    out: dict[str, list[str]] = {}
    for name in zoo_datasets():
        if name == dataset:
            continue
        try:
            names = set(load_image_set(name, root, "train").classnames)
        except (DataError, ClipUnlearnError):
            continue
        hits = [c for c in classes if c in names]
        if hits:
            out[name] = hits
    return out


__all__ = ["CLASS", "CONCEPT", "CONCEPT_NO_ORACLE", "CONCEPT_SKIPS", "ConceptImages", "SUBGROUP", "also_named_in",
           "coarse_reading", "concept_facts", "concept_images", "concept_skips", "exclude_flags", "label_retain",
           "refuse_oracle", "run_task", "subgroup_facts"]
