"""Unlearning methods, one file each, found by name in a registry.

A new method is one file here with a ``@register_method`` class, imported below.
"""
from . import lip  # noqa: F401  (registers)
from .base import (
    ForgetRequest,
    Method,
    Trace,
    apply_options,
    get_method,
    method_names,
    parse_option,
    register_method,
)

__all__ = ["ForgetRequest", "Method", "Trace", "apply_options", "get_method", "method_names", "parse_option",
           "register_method"]
