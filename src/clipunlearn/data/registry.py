"""The dataset registry: names, prompt templates and how torchvision knows each dataset.

A dataset is one ``@register_dataset`` entry; the loaders in :mod:`clipunlearn.data.loaders`
read any registered name from a manifest folder, a class-folder tree or torchvision's layout.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import unknown

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
    from ..errors import DataError

    return DataError(
        f"torchvision's {tv} carries no class names in this version. Put a classes.txt (one name a "
        f"line, line i = label i) in the {name} folder, or use the manifest layout."
    )


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


#: the classes the WACV'25 paper forgets (its Table 4), by dataset
PAPER_FORGET_CLASSES: dict[str, tuple[str, ...]] = {
    "stanford_dogs": ("Pekinese", "toy poodle", "Scotch terrier"),
    "stanford_cars": ("2009 Spyker C8 Coupe", "2010 Dodge Ram Pickup 3500 Crew Cab", "2011 Ford Ranger SuperCab"),
    "caltech101": ("euphonium", "minaret", "platypus"),
    "oxford_flowers": ("gazania", "tree mallow", "trumpet creeper"),
    "pins_faces": ("Gal Gadot", "Henry Cavil", "Amanda Crew"),
}
