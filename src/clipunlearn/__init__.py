"""clipunlearn: make a CLIP model forget a class, a named concept or a subgroup without its training
data, and prove it."""
from __future__ import annotations

import logging as _logging

from .version import __version__ as __version__

_logging.getLogger("clipunlearn").addHandler(_logging.NullHandler())

from .api import evaluate, generate, resolve_device
from .data import load_image_set
from .errors import ClipUnlearnError
from .evaluation import Evaluator, FeatureCache
from .methods import get_method, method_names
from .models import Clip, load_clip, tensor_catalogue
from .models.zoo import register_with_open_clip as _register
from .runs import (
    ConceptSettings,
    ForgetSettings,
    SubgroupSettings,
    forget,
    forget_concept,
    forget_subgroup,
    merge_runs,
)
from .synthetic import (
    GenerationConfig,
    generate_synthetic,
    load_synthetic,
    save_synthetic,
)

_register()  # zoo architectures become open_clip model names on import

__all__ = ["Clip", "ClipUnlearnError", "ConceptSettings", "Evaluator", "FeatureCache", "ForgetSettings",
           "GenerationConfig", "SubgroupSettings", "evaluate", "forget", "forget_concept", "forget_subgroup",
           "generate", "merge_runs", "generate_synthetic", "get_method", "load_clip", "load_image_set",
           "load_synthetic", "method_names", "resolve_device", "save_synthetic", "tensor_catalogue"]
