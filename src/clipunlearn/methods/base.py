"""What an unlearning method is: a registered class that takes a model, a forget request and the
data it is allowed to see, changes the model in place and returns a trace of what it did."""
from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import ClipUnlearnError, unknown
from ..models.factory import Clip
from ..synthetic import SyntheticSet


@dataclass
class ForgetRequest:
    """Forget ``classes`` (indices into ``classnames``) of ``dataset``."""

    dataset: str
    classnames: list[str]
    classes: list[int]
    template: str

    @property
    def class_names(self) -> list[str]:
        return [self.classnames[c] for c in self.classes]


@dataclass
class Trace:
    """What a method did, step by step; written into results.json."""

    epochs: int = 0
    stage_reached: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    stopped_because: str = ""
    changed_tensors: list[str] = field(default_factory=list)
    kept_any_step: bool = False
    seconds: float = 0.0


class Method:
    """Base class: subclasses set ``name``, ``config_cls``, ``needs_synthetic`` and implement ``run``."""

    name: ClassVar[str]
    config_cls: ClassVar[type]
    needs_synthetic: ClassVar[bool] = True
    summary: ClassVar[str] = ""

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.config_cls()

    @classmethod
    def preset(cls, name: str, family: str) -> Any:
        """The configuration of a named preset for an image-tower family."""
        raise NotImplementedError

    def run(self, clip: Clip, request: ForgetRequest, synthetic: SyntheticSet | None,
            progress: Callable[[dict], None] | None = None) -> Trace:
        raise NotImplementedError


_METHODS: dict[str, type[Method]] = {}


def register_method(cls: type[Method]) -> type[Method]:
    if cls.name in _METHODS:
        raise ValueError(f"method {cls.name!r} is registered twice")
    _METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in _METHODS:
        raise unknown("method", name, _METHODS)
    return _METHODS[name]


def method_names() -> list[str]:
    return sorted(_METHODS)


def parse_option(text: str) -> tuple[str, Any]:
    """``"key=value"`` -> (key, value); the value is read as JSON (``3``, ``0.5``, ``true``, ``null``)
    and as a plain string when it is not JSON."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ClipUnlearnError(f"Option {text!r} is not KEY=VALUE, e.g. --set max_epochs=6.")
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key.strip(), value


def apply_options(config: Any, options: dict[str, Any]) -> Any:
    """Set fields of a method's config dataclass from ``options`` (e.g. from ``--set lr=1e-4``),
    checking each name and the value's type against the field's annotation."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for key, value in options.items():
        if key not in fields:
            raise unknown(f"option of {type(config).__name__}", key, fields)
        hint = str(fields[key].type)
        if any(t in hint for t in ("list", "tuple", "dict")):
            raise ClipUnlearnError(f"Option {key} ({hint}) cannot be set from the command line; build the "
                                   f"config in Python instead, e.g. {type(config).__name__}(..., {key}=...).")
        ok = ((value is None and "None" in hint)
              or (isinstance(value, bool) and "bool" in hint)
              or (isinstance(value, int) and not isinstance(value, bool) and ("int" in hint or "float" in hint))
              or (isinstance(value, float) and "float" in hint)
              or (isinstance(value, str) and "str" in hint))
        if not ok:
            raise ClipUnlearnError(f"Option {key}={value!r} does not fit the field's type ({hint}); "
                                   f"pass e.g. {key}={json.dumps(getattr(config, key))}.")
        if isinstance(value, int) and not isinstance(value, bool) and "float" in hint and "int" not in hint:
            value = float(value)
        setattr(config, key, value)
    return config

