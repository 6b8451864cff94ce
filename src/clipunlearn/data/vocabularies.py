"""Vocabularies: the names a model must keep while it forgets a concept, and their prompt templates.

* ``imagenet``: the 1000 ImageNet class names and the 80 ImageNet-style templates that open_clip ships;
* ``zoo``: the names the mini zoo was trained on (the classes of each of the zoo's datasets found
  under the data root: the zoo recipe trains on all of them), with the default template;
* a registered dataset's name: its classes and its templates;
* a text file: one name a line (blank lines and ``#`` comments skipped), the default template.

And :func:`image_folder`: a folder of the user's own photos (no labels) as an image set, unreadable
files skipped and counted.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from ..errors import ClipUnlearnError, DataError, suggest
from .loaders import ImageSet, load_image_set
from .registry import DEFAULT_TEMPLATE, dataset_names, get_dataset_spec, zoo_datasets

BUILT_IN = ("imagenet", "zoo")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class Vocabulary:
    name: str
    names: tuple[str, ...]
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    source: str = ""
    forget_template: str = DEFAULT_TEMPLATE  # the one prompt a method forgets with

    def __post_init__(self) -> None:
        if self.forget_template not in self.templates:  # a dataset's own first template, as a class run
            object.__setattr__(self, "forget_template", self.templates[0])


def load_vocabulary(name: str, data_root: str | None = None) -> Vocabulary:
    """The vocabulary ``name`` (see the module docstring); an unknown one fails with the choices."""
    if name == "imagenet":
        from open_clip.zero_shot_metadata import (
            IMAGENET_CLASSNAMES,
            OPENAI_IMAGENET_TEMPLATES,
        )

        templates = tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)
        return Vocabulary("imagenet", tuple(IMAGENET_CLASSNAMES), templates, "open_clip zero_shot_metadata")
    if name == "zoo":
        names: dict[str, None] = {}
        found = []
        for d in zoo_datasets():
            try:
                names.update(dict.fromkeys(load_image_set(d, data_root, "test").classnames))
                found.append(d)
            except DataError:
                continue
        if not names:
            raise DataError("The zoo vocabulary is the class names of the datasets the zoo was trained on, and "
                            "none is under the data root. Pass --data-root, or another --vocabulary.")
        return Vocabulary("zoo", tuple(names), (DEFAULT_TEMPLATE,), "classes of " + ", ".join(found))
    path = Path(name)
    if path.suffix == ".txt" or path.is_file():
        if not path.is_file():
            raise DataError(f"The vocabulary file {name!r} does not exist; write one name a line, or use "
                            f"{', '.join(BUILT_IN)} or a dataset's name.")
        lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
        names = dict.fromkeys(ln for ln in lines if ln and not ln.startswith("#"))
        if not names:
            raise DataError(f"The vocabulary file {name!r} lists no name; write one name a line.")
        return Vocabulary(path.stem, tuple(names), (DEFAULT_TEMPLATE,), str(path))
    try:
        spec = get_dataset_spec(name)
    except ClipUnlearnError:
        choices = [*BUILT_IN, *dataset_names()]
        raise ClipUnlearnError(f"Unknown vocabulary {name!r}.{suggest(name, choices)} Use imagenet, zoo, a dataset "
                               f"({', '.join(dataset_names())}) or a text file of names.") from None
    images = load_image_set(spec.name, data_root, "test")
    return Vocabulary(spec.name, tuple(images.classnames), tuple(spec.templates), f"classes of {spec.name}")


@dataclass
class FolderImages:
    """A folder's readable images, and the files skipped because they could not be read."""

    images: ImageSet
    skipped: list[str] = field(default_factory=list)


def image_folder(folder: str | os.PathLike[str], label: int, classnames: list[str], name: str) -> FolderImages:
    """Every image file under ``folder`` (recursively, sorted) labelled ``label``; files that cannot be
    decoded are skipped and listed, never a crash. A folder that is missing or holds no readable image
    fails with the fix."""
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"The images folder {str(root)!r} does not exist; pass a folder of photos.")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    readable, skipped = [], []
    for p in files:
        try:
            with Image.open(p) as im:
                im.convert("RGB").load()
            readable.append(p)
        except (OSError, ValueError):
            skipped.append(str(p))
    if not readable:
        what = f"{len(skipped)} unreadable image file(s)" if skipped else "no image file"
        raise DataError(f"The images folder {str(root)!r} holds {what} (looked for {', '.join(IMAGE_SUFFIXES)}); "
                        "pass a folder with readable photos.")
    images = ImageSet(name, "user", list(classnames), [label] * len(readable), f"folder:{root}", paths=readable)
    return FolderImages(images, skipped)


__all__ = ["BUILT_IN", "FolderImages", "IMAGE_SUFFIXES", "Vocabulary", "image_folder", "load_vocabulary"]
