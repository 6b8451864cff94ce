"""Descriptive sentences of classes for the CuPLGen ablation (WACV'25 §6.2).

CuPLGen makes the synthetic forget images climb the similarity to descriptive sentences of the
class ("A goldfish is a small, bright orange fish ...") instead of the template prompt
("a photo of a goldfish."). :func:`cupl_descriptions` gives those sentences for a list of class names,
from the first of these sources that knows the class:

1. the JSON file named by the environment variable ``CLIPUNLEARN_DESCRIPTIONS`` (the user's own
   sentences; it takes precedence over everything else);
2. the CuPL descriptions of the ImageNet-1k classes that the ``clip_benchmark`` package ships as
   package data (``clip_benchmark/datasets/cupl_prompts.json``). The file is located through
   ``importlib.util.find_spec`` and read as JSON: clip_benchmark is never imported (its ``__init__``
   pulls heavy dependencies), so ``pip install --no-deps clip_benchmark`` is enough;
3. a short set of plain visual descriptions shipped with clipunlearn (``descriptions.json`` next to
   this module), written for the WACV paper's forget classes and the classes used in demos and tests.

A JSON file of sources 1 and 3 maps a class name to a list of sentences: ``{"class": ["...", ...]}``.
Class names match case-insensitively, with runs of spaces, underscores and hyphens counted as one
space ("Toy_Poodle" finds "toy poodle"); there is no fuzzier matching. A class that a dataset names
differently from ImageNet (stanford_dogs' "Leonberg", "Pekinese", "African hunting dog") is looked up
under its ImageNet name too, from the shipped table ``aliases.json`` (dataset name -> ImageNet name, all
40 stanford_dogs classes whose names differ), after its own name in each source.
The returned mapping is keyed by the class names as given, which is what
:func:`..generate.generate_synthetic` looks up.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import ClipUnlearnError

#: environment variable naming a JSON file of the user's own descriptions (takes precedence)
ENV_VAR = "CLIPUNLEARN_DESCRIPTIONS"
#: the descriptions shipped with clipunlearn
SHIPPED_FILE = Path(__file__).with_name("descriptions.json")
#: class names of the datasets that ImageNet (and so CuPL) writes differently: {dataset name: ImageNet name}
ALIASES_FILE = Path(__file__).with_name("aliases.json")
#: the key of clip_benchmark's CuPL file that holds the ImageNet-1k class descriptions
CUPL_KEY = "imagenet1k"

SOURCE_ENV = "env"
SOURCE_CUPL = "clip_benchmark"
SOURCE_SHIPPED = "shipped"


@dataclass(frozen=True)
class Descriptions:
    """Descriptive sentences of some classes and where each class's sentences came from."""

    sentences: dict[str, list[str]]  # class name as given -> sentences
    sources: dict[str, str]  # class name as given -> SOURCE_ENV, SOURCE_CUPL or SOURCE_SHIPPED
    origins: dict[str, str]  # class name as given -> readable origin (file, package version, matched key)


def normalise(name: str) -> str:
    """The form class names are matched in: case-folded, spaces/underscores/hyphens as one space."""
    return re.sub(r"[\s_\-]+", " ", name.casefold()).strip()


def cupl_file() -> Path | None:
    """clip_benchmark's ``cupl_prompts.json``, found without importing clip_benchmark; None when the
    package (or the file in it) is not there."""
    try:
        spec = importlib.util.find_spec("clip_benchmark")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / "datasets" / "cupl_prompts.json"
        if path.is_file():
            return path
    return None


def _cupl_version() -> str:
    try:
        from importlib.metadata import version

        return version("clip_benchmark")
    except Exception:  # noqa: BLE001 - the version is only for the record
        return "?"


def _check_mapping(data: object, where: str) -> dict[str, list[str]]:
    """``data`` as {class name: [sentences]}, or a one-line error naming ``where`` and the fix."""
    fix = 'it must map each class name to a list of sentences, e.g. {"goldfish": ["A goldfish is ..."]}'
    if not isinstance(data, dict):
        raise ClipUnlearnError(f"The descriptions in {where} are not a JSON object; {fix}.")
    out: dict[str, list[str]] = {}
    for name, sentences in data.items():
        if (not isinstance(sentences, list) or not sentences
                or not all(isinstance(s, str) and s.strip() for s in sentences)):
            raise ClipUnlearnError(f"The descriptions of {name!r} in {where} are not a non-empty list of "
                                   f"non-empty sentences; {fix}.")
        if any("{}" in s for s in sentences):
            raise ClipUnlearnError(f"A description of {name!r} in {where} contains '{{}}'; write whole "
                                   "sentences that name the class instead of a template.")
        out[str(name)] = [s.strip() for s in sentences]
    return out


def _read_json(path: Path, what: str) -> object:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise ClipUnlearnError(f"Cannot read the {what} {path} ({e.strerror or e}). "
                               f"Fix the path or unset {ENV_VAR}.") from None
    except json.JSONDecodeError as e:
        raise ClipUnlearnError(f"The {what} {path} is not valid JSON (line {e.lineno}: {e.msg}). "
                               "Fix the file.") from None


def _index(mapping: dict[str, list[str]]) -> dict[str, tuple[str, list[str]]]:
    """normalised name -> (name as in the file, sentences); an exact name wins over a look-alike."""
    index: dict[str, tuple[str, list[str]]] = {}
    for name, sentences in mapping.items():
        index.setdefault(normalise(name), (name, sentences))
    return index


@functools.lru_cache(maxsize=4)
def _load_cupl(path: str) -> dict[str, tuple[str, list[str]]]:
    data = _read_json(Path(path), "clip_benchmark CuPL file")
    if not isinstance(data, dict) or CUPL_KEY not in data:
        raise ClipUnlearnError(f"clip_benchmark's CuPL file {path} has no {CUPL_KEY!r} entry. "
                               "Reinstall clip_benchmark>=1.6 (pip install --no-deps 'clip_benchmark>=1.6').")
    return _index(_check_mapping(data[CUPL_KEY], f"{path} [{CUPL_KEY!r}]"))


@functools.lru_cache(maxsize=1)
def _load_shipped() -> dict[str, tuple[str, list[str]]]:
    return _index(_check_mapping(_read_json(SHIPPED_FILE, "shipped descriptions file"), str(SHIPPED_FILE)))


@functools.lru_cache(maxsize=1)
def _aliases() -> dict[str, str]:
    """normalised dataset class name -> normalised ImageNet name."""
    data = _read_json(ALIASES_FILE, "shipped class-name aliases file")
    return {normalise(k): normalise(v) for k, v in data.items()}


def _load_env(path: str) -> dict[str, tuple[str, list[str]]]:
    # read on every call: the user may be editing it
    return _index(_check_mapping(_read_json(Path(path), f"descriptions file ({ENV_VAR})"), f"{path} ({ENV_VAR})"))


def describe(classnames: Sequence[str]) -> Descriptions:
    """Descriptive sentences for each of ``classnames`` with their source; a class no source knows
    is a one-line :class:`ClipUnlearnError` that names it, the sources and the fix."""
    classnames = list(classnames)
    if not classnames:
        raise ClipUnlearnError("No class to describe. Pass at least one class name.")
    sources: list[tuple[str, str, dict[str, tuple[str, list[str]]]]] = []
    env_path = os.environ.get(ENV_VAR, "").strip()
    if env_path:
        sources.append((SOURCE_ENV, f"{ENV_VAR}={env_path}", _load_env(env_path)))
    cupl = cupl_file()
    if cupl is not None:
        sources.append((SOURCE_CUPL, f"clip_benchmark {_cupl_version()} CuPL {CUPL_KEY}", _load_cupl(str(cupl))))
    sources.append((SOURCE_SHIPPED, "clipunlearn shipped descriptions", _load_shipped()))

    sentences: dict[str, list[str]] = {}
    kinds: dict[str, str] = {}
    origins: dict[str, str] = {}
    missing: list[str] = []
    for name in classnames:
        key = normalise(name)
        keys = [key, _aliases()[key]] if key in _aliases() else [key]
        hit = next(((kind, origin, index[key]) for kind, origin, index in sources for key in keys if key in index), None)
        if hit is None:
            missing.append(name)
            continue
        kind, origin, (found, lines) = hit
        sentences[name] = list(lines)
        kinds[name] = kind
        origins[name] = origin if found == name else f"{origin} (as {found!r})"
    if missing:
        consulted = [f"{ENV_VAR} file {env_path}" if env_path else f"no {ENV_VAR} file set",
                     f"clip_benchmark's CuPL {CUPL_KEY} descriptions" if cupl is not None
                     else "clip_benchmark's CuPL descriptions (not installed)",
                     "clipunlearn's shipped descriptions"]
        raise ClipUnlearnError(
            f"No descriptive sentences for {', '.join(map(repr, missing))} in {'; '.join(consulted)}. "
            "Install clipunlearn[cupl] (or: pip install --no-deps clip_benchmark) if the class is an ImageNet "
            f"class, or write {{\"class name\": [\"sentence\", ...]}} to a JSON file and set {ENV_VAR}=FILE.")
    return Descriptions(sentences, kinds, origins)


def cupl_descriptions(classnames: Sequence[str]) -> dict[str, list[str]]:
    """Class name (as given) -> descriptive sentences, for ``generate_synthetic(descriptions=...)``."""
    return describe(classnames).sentences


def describe_sources(classnames: Sequence[str]) -> dict[str, str]:
    """Class name (as given) -> where its sentences come from (origin and, if the name matched a
    differently written one, that name), for a run's record."""
    return describe(classnames).origins
