"""Datasets: the registry of names and templates, and the loaders of the three layouts."""
from .loaders import ENV_DATA_ROOT, ImageSet, load_image_set, resolve_data_root
from .registry import (
    CHANGED_TEMPLATES,
    DEFAULT_TEMPLATE,
    DatasetSpec,
    dataset_names,
    get_dataset_spec,
    paper_datasets,
    register_dataset,
    split_names,
)

__all__ = [
    "CHANGED_TEMPLATES",
    "DEFAULT_TEMPLATE",
    "ENV_DATA_ROOT",
    "DatasetSpec",
    "ImageSet",
    "dataset_names",
    "get_dataset_spec",
    "load_image_set",
    "paper_datasets",
    "register_dataset",
    "resolve_data_root",
    "split_names",
]
