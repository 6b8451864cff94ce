"""The dataset registry: names, prompt templates and how torchvision knows each dataset.

A dataset is one ``@register_dataset`` entry; the loaders in :mod:`clipunlearn.data.loaders`
read any registered name from a manifest folder, a class-folder tree or torchvision's layout, and
an unregistered class-folder tree named by its path (``--dataset-dir``).

ImageNet-1k (``imagenet``) is read in its usual layout, ``<root>/imagenet/val/<wnid>/*.JPEG`` (the
test split) and optionally ``train/<wnid>/``, with the 1000 class names and the 80 templates of the
installed open_clip (``open_clip.zero_shot_metadata``: ``IMAGENET_CLASSNAMES``,
``OPENAI_IMAGENET_TEMPLATES``, "a photo of a {}." first, the one a run forgets with). Class ``i`` is
the ``i``-th wnid folder in sorted order: the standard ImageNet class index, the one torchvision's
``ImageFolder`` / ``ImageNet`` give (they sort the wnid folder names) and the one open_clip's name
list follows (``n01440764`` is 0, tench). Each split folder must hold all 1000 wnid folders.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError, unknown

DEFAULT_TEMPLATE = "a photo of a {}."

#: The paper's template-change check (WACV'25 §6.3).
CHANGED_TEMPLATES: tuple[str, ...] = (
    "We can see a {} in this image",
    "This is a representation of {}",
    "There is evidence of a {} in the picture",
)


@dataclass(frozen=True)
class DatasetSpec:
    """What clipunlearn knows about a dataset, independent of where its files are."""

    name: str
    title: str
    templates: tuple[str, ...] = (DEFAULT_TEMPLATE,)
    #: builds the torchvision dataset: fn(root, split, download) -> (dataset, classnames)
    torchvision: Callable[[str, str, bool], tuple[Any, list[str]]] | None = None
    paper: bool = False  # one of the WACV'25 paper's four datasets
    aliases: tuple[str, ...] = field(default=())
    #: the class-folder layout's folder of the test split (ImageNet: ``val``)
    test_folder: str = "test"
    #: class names from the sorted class-folder names and the split folder (None: the folder names, "_" read
    #: as " ", or classes.txt); may raise a DataError naming the fix
    classnames: Callable[[list[str], Path], list[str]] | None = None
    zoo: bool = True  # the mini zoo trains on it (the eight datasets of the shared slices)


_REGISTRY: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    _REGISTRY[spec.name] = spec
    return spec


def dataset_names() -> list[str]:
    return sorted(_REGISTRY)


def get_dataset_spec(name: str) -> DatasetSpec:
    key = name.strip().lower().replace("-", "_")
    for spec in _REGISTRY.values():
        if key == spec.name or key in spec.aliases:
            return spec
    raise unknown("dataset", name, _REGISTRY)


def split_names(value: str | Sequence[str] | None) -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b'], whitespace trimmed, empties dropped."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v and v.strip()]


def paper_datasets() -> list[str]:
    return [n for n, s in _REGISTRY.items() if s.paper]


def zoo_datasets() -> list[str]:
    """The datasets the mini zoo trains on (and the superclass table covers): all but ImageNet."""
    return sorted(n for n, s in _REGISTRY.items() if s.zoo)


# --- torchvision layouts -----------------------------------------------------------------------

def _clean(name: str) -> str:
    return name.replace("_", " ").strip()


def _tv_cifar10(root: str, split: str, download: bool):
    from torchvision.datasets import CIFAR10

    ds = CIFAR10(root, train=(split == "train"), download=download)
    return ds, list(ds.classes)


def _tv_food101(root: str, split: str, download: bool):
    from torchvision.datasets import Food101

    ds = Food101(root, split=split, download=download)
    return ds, [_clean(c) for c in ds.classes]


def _tv_flowers(root: str, split: str, download: bool):
    from torchvision.datasets import Flowers102

    ds = Flowers102(root, split=split, download=download)
    classes = getattr(ds, "classes", None)
    if not classes:
        raise _missing_names("oxford_flowers", "Flowers102")
    return ds, [_clean(c) for c in classes]


def _tv_cars(root: str, split: str, download: bool):
    from torchvision.datasets import StanfordCars

    ds = StanfordCars(root, split=split, download=download)
    return ds, list(ds.classes)


def _tv_caltech(root: str, split: str, download: bool):
    from torchvision.datasets import Caltech101

    ds = Caltech101(root, target_type="category", download=download)
    return ds, [_clean(c).lower() for c in ds.categories]


def _tv_imagenette(root: str, split: str, download: bool):
    from torchvision.datasets import Imagenette

    ds = Imagenette(root, split="val" if split == "test" else "train", download=download)
    return ds, [names[0] for names in ds.classes]


def _missing_names(name: str, tv: str) -> Exception:
    return DataError(
        f"torchvision's {tv} carries no class names in this version. Put a classes.txt (one name a "
        f"line, line i = label i) in the {name} folder, or use the manifest layout."
    )


# --- ImageNet-1k ------------------------------------------------------------------------------

WNID = re.compile(r"n\d{8}")


def _imagenet_templates() -> tuple[str, ...]:
    """The 80 templates open_clip evaluates ImageNet with (OpenAI's), as ``{}`` strings, "a photo of a {}."
    first: a dataset's first template is the one a run forgets with (the ensemble's mean is the same)."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    templates = [t("{}") for t in OPENAI_IMAGENET_TEMPLATES]
    return tuple(dict.fromkeys([DEFAULT_TEMPLATE, *templates])) if DEFAULT_TEMPLATE in templates else tuple(templates)


def _imagenet_classnames(folders: list[str], split_dir: Path) -> list[str]:
    """open_clip's 1000 names for the 1000 wnid folders of ``split_dir``, by sorted wnid order."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    layout = "ImageNet's layout is imagenet/val/<wnid>/<images> (and optionally train/<wnid>/)"
    odd = [f for f in folders if not WNID.fullmatch(f)]
    if odd:
        raise DataError(f"{str(split_dir)!r} holds folders that are not WordNet ids (n + 8 digits), e.g. "
                        f"{odd[:3]}: {layout}. Move them out.")
    if len(folders) != len(IMAGENET_CLASSNAMES):
        raise DataError(f"{str(split_dir)!r} holds {len(folders)} wnid folders, but ImageNet-1k has "
                        f"{len(IMAGENET_CLASSNAMES)} and its class index is their sorted order: {layout}, one "
                        "folder per class. Add the missing ones.")
    return list(IMAGENET_CLASSNAMES)


register_dataset(DatasetSpec("stanford_dogs", "Stanford Dogs", paper=True, aliases=("stanforddogs", "dogs")))
register_dataset(DatasetSpec("stanford_cars", "Stanford Cars", torchvision=_tv_cars, paper=True,
                             aliases=("stanfordcars", "cars")))
register_dataset(DatasetSpec("caltech101", "Caltech101", torchvision=_tv_caltech, paper=True,
                             aliases=("caltech",)))
register_dataset(DatasetSpec("oxford_flowers", "Oxford Flowers",
                             templates=("a photo of a {}, a type of flower.",), torchvision=_tv_flowers,
                             paper=True, aliases=("oxfordflowers", "flowers", "flowers102")))
register_dataset(DatasetSpec("pins_faces", "Pins Faces", aliases=("pinsfaces", "faces")))
register_dataset(DatasetSpec("cifar10", "CIFAR-10", torchvision=_tv_cifar10))
register_dataset(DatasetSpec("imagenette", "Imagenette", torchvision=_tv_imagenette))
register_dataset(DatasetSpec("food101", "Food-101", torchvision=_tv_food101, aliases=("food",)))
register_dataset(DatasetSpec("imagenet", "ImageNet-1k", templates=_imagenet_templates(), test_folder="val",
                             classnames=_imagenet_classnames, zoo=False,
                             aliases=("imagenet_1k", "imagenet1k", "ilsvrc2012")))


#: the classes the WACV'25 paper forgets (its Table 4), by dataset
PAPER_FORGET_CLASSES: dict[str, tuple[str, ...]] = {
    "stanford_dogs": ("Pekinese", "toy poodle", "Scotch terrier"),
    "stanford_cars": ("2009 Spyker C8 Coupe", "2010 Dodge Ram Pickup 3500 Crew Cab", "2011 Ford Ranger SuperCab"),
    "caltech101": ("euphonium", "minaret", "platypus"),
    "oxford_flowers": ("gazania", "tree mallow", "trumpet creeper"),
    "pins_faces": ("Gal Gadot", "Henry Cavil", "Amanda Crew"),
}
