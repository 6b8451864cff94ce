"""Unlearning methods, one file each, found by name in a registry.

A new method is one file in this folder with a ``@register_method`` class: every module here is
imported below, and the contract tests (tests/test_methods_contract.py) run each registered method.
"""
import importlib as _importlib
import pkgutil as _pkgutil

from .base import (
    Method,
    apply_options,
    config_json,
    get_method,
    method_names,
    parse_option,
    register_method,
)
from .context import DATA_KINDS, ForgetContext, ForgetRequest, ImageBatch, Knobs

for _module in sorted(m.name for m in _pkgutil.iter_modules(__path__)):
    if _module not in ("base", "context"):
        _importlib.import_module(f"{__name__}.{_module}")  # registers its method

__all__ = ["DATA_KINDS", "ForgetContext", "ForgetRequest", "ImageBatch", "Knobs", "Method", "apply_options",
           "config_json", "get_method", "method_names", "parse_option", "register_method"]
