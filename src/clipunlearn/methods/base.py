"""What an unlearning method is: a registered class that takes a model, a forget request and the
data it is allowed to see, changes the model in place and returns a trace of what it did."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import unknown
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
