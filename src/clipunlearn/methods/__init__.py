"""Unlearning methods, one file each, found by name in a registry.

A new method is one file here with a ``@register_method`` class, imported below; the contract tests
(tests/test_methods_contract.py) then run it like every other registered method.
"""
from . import lip  # noqa: F401  (registers)
from .base import Method, apply_options, config_json, get_method, method_names, parse_option, register_method
from .context import DATA_KINDS, ForgetContext, ForgetRequest, ImageBatch, Knobs

__all__ = ["DATA_KINDS", "ForgetContext", "ForgetRequest", "ImageBatch", "Knobs", "Method", "apply_options",
           "config_json", "get_method", "method_names", "parse_option", "register_method"]
