"""What every tracker shares: the ``--track`` value, what one tracked run holds, the protocol a
backend follows, and the checks made before a run starts (the library is there, the folder is
writable), so that a bad flag fails at once instead of after the run."""
from __future__ import annotations

import importlib
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Protocol

from ..errors import ClipUnlearnError

#: the trackers ``--track`` knows, and what the text after the colon is for each
BACKENDS = {"tensorboard": "a folder for the event files", "mlflow": "a tracking URI or a folder for the store"}
INSTALL = 'pip install -e ".[tracking]"'


@dataclass(frozen=True)
class TrackSpec:
    """A parsed ``--track`` value: the backend and what followed the colon (None: the default place,
    beside the run)."""

    backend: str
    target: str | None = None

    @property
    def flag(self) -> str:
        return self.backend + (f":{self.target}" if self.target else "")


def parse_track(value: str) -> TrackSpec:
    """``tensorboard``, ``tensorboard:DIR``, ``mlflow``, ``mlflow:URI`` or ``mlflow:DIR``, checked."""
    backend, _, target = value.strip().partition(":")
    if backend not in BACKENDS:
        raise ClipUnlearnError(f"--track {value!r}: unknown tracker {backend!r}. Use tensorboard[:DIR] or "
                               "mlflow[:URI] (e.g. --track mlflow, --track mlflow:sqlite:///runs/mlflow.db).")
    return TrackSpec(backend, target.strip() or None)


@dataclass
class Tracked:
    """Everything one tracked run logs, read from a run folder or a training record, so that every
    backend logs the same thing. ``steps``: metric name -> (step, value) points; ``final``: one value
    each; ``texts``: markdown by name (the report); ``files``: (file, folder among the run's
    artifacts, "" for the top)."""

    name: str
    params: dict[str, str] = field(default_factory=dict)
    steps: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)
    texts: dict[str, str] = field(default_factory=dict)
    files: list[tuple[Path, str]] = field(default_factory=list)


class Tracker(Protocol):
    """A backend: logs one :class:`Tracked` run per call, into the experiment it was opened for."""

    @property
    def where(self) -> str:
        """The folder or URI it logs to, for messages."""
        ...

    def log(self, run: Tracked) -> None: ...


def require(package: str, tracker: str) -> ModuleType:
    """Import a package a tracker needs, or fail in one line with the command that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ClipUnlearnError(f"--track {tracker} needs the {package} package, which is not installed: "
                               f"{INSTALL}.") from None


def writable_folder(folder: Path, flag: str) -> Path:
    """``folder``, created if need be, once a file could be written in it; else a one-line error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise ClipUnlearnError(f"--track {flag}: cannot write to {str(folder)!r} ({e.strerror or e}). Name a folder "
                               "you can write to.") from None
    return folder


def has_scheme(target: str) -> bool:
    """Whether ``target`` is a URI (``sqlite:///...``, ``http://...``, ``file:...``) rather than a path."""
    return re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", target) is not None


def metric_name(name: str) -> str:
    """A name every backend takes: letters, digits and ``_ - .`` in parts separated by ``/`` (anything
    else becomes ``_``; "remind (EMA)/acc" -> "remind_EMA/acc")."""
    return "/".join(re.sub(r"[^0-9A-Za-z_\-.]+", "_", part).strip("_") or "_" for part in name.split("/"))
