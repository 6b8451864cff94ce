"""What an unlearning method is: a registered class that takes a context (model, forget request, knobs
and the data it declared), changes the model in place and returns a trace of what it did."""
from __future__ import annotations

import copy
import dataclasses
import json
from collections.abc import Sequence
from typing import Any, ClassVar

from ..errors import ClipUnlearnError, unknown
from ..training.loop import Trace
from .context import ForgetContext

FAMILIES = ("resnet", "vit")


class Method:
    """Base class of the unlearning methods. A subclass (one file under ``methods/``, decorated with
    ``@register_method``) sets:

    * ``name``: the registry name; ``title``: one line for ``clipunlearn methods``;
    * ``config_cls``: a dataclass of its settings;
    * ``needs``: the data kinds it may see (``context.DATA_KINDS``); the run hands it nothing else;
    * ``presets``: ``{name: {field: value, ..., "resnet": {...}, "vit": {...}}}``, overrides of the
      config's defaults, the ``resnet`` / ``vit`` entries for one image-tower family only;
    * ``ablations``: ``{name: {field: value}}``, switches applied over the preset;

    and implements ``run(ctx) -> Trace``, changing ``ctx.clip`` in place.
    """

    name: ClassVar[str]
    title: ClassVar[str] = ""
    config_cls: ClassVar[type]
    needs: ClassVar[frozenset[str]] = frozenset()
    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}
    ablations: ClassVar[dict[str, dict[str, Any]]] = {}
    #: the image-tower families the method runs on as configured by its presets; on another family
    #: its run raises a ClipUnlearnError that names the setting to change (the contract tests check it)
    families: ClassVar[tuple[str, ...]] = FAMILIES

    def __init__(self, config: Any | None = None):
        self.config = config if config is not None else self.config_cls()

    @classmethod
    def build_config(cls, preset: str = "default", family: str = "resnet", ablation: str | None = None,
                     options: dict[str, Any] | None = None) -> Any:
        """The config of ``preset`` for an image-tower ``family``, with an ``ablation`` switched on and
        the user's ``options`` (checked names and types) over it."""
        if preset not in cls.presets:
            raise unknown(f"preset of {cls.name}", preset, cls.presets)
        if ablation is not None and ablation not in cls.ablations:
            if not cls.ablations:
                raise ClipUnlearnError(f"Method {cls.name} has no ablations; drop --ablation {ablation}.")
            raise unknown(f"ablation of {cls.name}", ablation, cls.ablations)
        values = {k: v for k, v in cls.presets[preset].items() if k not in FAMILIES}
        values.update(cls.presets[preset].get(family, {}))
        if ablation is not None:
            values.update(cls.ablations[ablation])
        config = dataclasses.replace(cls.config_cls(), **copy.deepcopy(values))
        return apply_options(config, options or {})

    @classmethod
    def describe(cls) -> dict[str, Any]:
        """What ``clipunlearn methods --json`` prints for this method."""
        return {"name": cls.name, "title": cls.title, "needs": sorted(cls.needs), "zero_shot": cls.zero_shot(),
                "presets": sorted(cls.presets), "ablations": sorted(cls.ablations), "families": list(cls.families)}

    @classmethod
    def zero_shot(cls, kinds: frozenset[str] | None = None) -> str:
        """The paper's classes: "ZS" (no real image), "semi ZS" (real forget images), "not ZS"; of
        ``kinds`` (a configured method's :attr:`data_kinds`) or the class's ``needs``."""
        kinds = cls.needs if kinds is None else kinds
        if "real_retain" in kinds:
            return "not ZS"
        return "semi ZS" if "real_forget" in kinds else "ZS"

    @property
    def data_kinds(self) -> frozenset[str]:
        """The data kinds this configured method may see: ``needs``, unless a setting of its config
        changes them (a method that can forget with real images instead of synthetic ones)."""
        return self.needs

    def check_classes(self, classnames: Sequence[str]) -> None:
        """Refuse, before any work, forget classes this configured method cannot serve (a one-line
        :class:`ClipUnlearnError` naming them and the fix), e.g. a setting that needs something per
        class that is missing. Called by ``forget`` before the model loads, and by suites for every
        cell before the first one runs. By default every class is served."""

    def run(self, ctx: ForgetContext) -> Trace:
        raise NotImplementedError


def config_json(config: Any) -> dict[str, Any]:
    """A method config as JSON-ready data (tuples as lists, nested dataclasses as dicts)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=str))


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


def _number_tuple(key: str, value: Any, kind: str, current: Any) -> tuple:
    """A list of numbers (``--set sigmas=[0.1,0.3]``) for a ``tuple[int|float, ...]`` field."""
    items = value if isinstance(value, (list, tuple)) else None
    ok = items is not None and len(items) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and (kind == "float" or isinstance(v, int))
        for v in items)
    if not ok:
        raise ClipUnlearnError(f"Option {key}={value!r} needs a non-empty list of {kind}s, "
                               f"e.g. {key}={json.dumps(list(current))}.")
    return tuple(float(v) if kind == "float" else int(v) for v in items)


def apply_options(config: Any, options: dict[str, Any]) -> Any:
    """Set fields of a method's config dataclass from ``options`` (e.g. from ``--set lr=1e-4``),
    checking each name and the value's type against the field's annotation."""
    fields = {f.name: f for f in dataclasses.fields(config)}
    for key, value in options.items():
        if key not in fields:
            raise unknown(f"option of {type(config).__name__}", key, fields)
        hint = str(fields[key].type)
        if hint.startswith("tuple[") and hint.endswith(", ...]") and hint[6:-6] in ("int", "float"):
            setattr(config, key, _number_tuple(key, value, hint[6:-6], getattr(config, key)))
            continue
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

