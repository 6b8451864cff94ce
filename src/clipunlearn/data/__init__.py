"""Datasets: the registry of names and templates, and the loaders of the three layouts and of any
class-folder tree."""
from .loaders import (
    ENV_DATA_ROOT,
    ImageSet,
    folder_dataset,
    is_folder_dataset,
    load_image_set,
    resolve_data_root,
)
from .registry import (
    CHANGED_TEMPLATES,
    DEFAULT_TEMPLATE,
    DatasetSpec,
    dataset_names,
    get_dataset_spec,
    paper_datasets,
    register_dataset,
    split_names,
    zoo_datasets,
)

__all__ = [
    "CHANGED_TEMPLATES",
    "DEFAULT_TEMPLATE",
    "ENV_DATA_ROOT",
    "DatasetSpec",
    "ImageSet",
    "dataset_names",
    "folder_dataset",
    "get_dataset_spec",
    "is_folder_dataset",
    "load_image_set",
    "paper_datasets",
    "register_dataset",
    "resolve_data_root",
    "split_names",
    "zoo_datasets",
]
