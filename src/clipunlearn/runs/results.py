"""results.json: its schema version and the one typed reader that the report, the benchmark and the
tests use (runs are data: everything shown about a run is rebuilt from this file)."""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ClipUnlearnError

#: 1: the first release (no ``schema_version`` field); 2: ``data_seen``, ``retrieval``,
#: ``template_change``, ``ablation`` and ``trace_info`` added, steps are generic
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class BeforeAfter:
    before: float | None
    after: float | None

    @property
    def change(self) -> float | None:
        return None if self.before is None or self.after is None else self.after - self.before


@dataclass
class RunResults:
    """The fields of results.json that tools read, typed; ``raw`` holds the whole file."""

    schema_version: int
    method: str
    preset: str
    ablation: str | None
    model: dict[str, Any]
    dataset: str
    classes: list[str]
    target: BeforeAfter
    per_target: dict[str, BeforeAfter]
    other_classes: BeforeAfter
    datasets: dict[str, BeforeAfter]
    avg_score: float | None
    avg_score_excluded: list[str]
    synthetic_acc: BeforeAfter
    data_seen: dict[str, dict[str, Any]]
    steps: list[dict[str, Any]]
    stopped_because: str
    kept_any_step: bool
    changed_tensors: list[str]
    epochs: int
    seconds: dict[str, float]
    retrieval: dict[str, Any] | None
    template_change: dict[str, Any] | None
    error_analysis: dict[str, Any] | None
    raw: dict[str, Any] = field(repr=False)

    @property
    def columns(self) -> list[tuple[str, BeforeAfter]]:
        """The measured columns in table order: target, other classes, each other dataset."""
        return [("target", self.target), ("other_classes", self.other_classes), *self.datasets.items()]

    @property
    def kind(self) -> str:
        """What was forgotten: ``class``, ``subgroup`` or ``concept`` (results.json's ``task``)."""
        return str(self.raw.get("task") or "class")

    @property
    def run_id(self) -> str:
        """The RunSpec's id (a benchmark cell's folder name); "" for a run that recorded none."""
        return str(((self.raw.get("settings") or {}).get("run_spec") or {}).get("run_id") or "")

    @property
    def seed(self) -> int:
        return int((self.raw.get("settings") or {}).get("seed") or 0)

    @property
    def ratio_score(self) -> float | None:
        """CVPR'25's ratio Score of a subgroup run (higher is better); None for other runs."""
        return self.raw.get("ratio_score")


def _ba(d: dict[str, Any] | None) -> BeforeAfter:
    d = d or {}
    return BeforeAfter(d.get("before"), d.get("after"))


def parse_results(r: dict[str, Any], where: str = "results.json") -> RunResults:
    """Typed view of a results.json dict (schema 1 or 2)."""
    version = int(r.get("schema_version", 1))
    if version > SCHEMA_VERSION:
        raise ClipUnlearnError(f"{where} has schema version {version}, newer than this clipunlearn reads "
                               f"({SCHEMA_VERSION}). Upgrade clipunlearn.")
    try:
        return RunResults(
            schema_version=version,
            method=r["method"],
            preset=r.get("preset", ""),
            ablation=r.get("ablation"),
            model=r["model"],
            dataset=r["dataset"],
            classes=list(r["classes"]),
            target=BeforeAfter(r["target_before"], r["target_after"]),
            per_target={c: _ba(v) for c, v in r.get("per_target", {}).items()},
            other_classes=BeforeAfter(r["other_classes_before"], r["other_classes_after"]),
            datasets={k: _ba(v) for k, v in r.get("datasets", {}).items()},
            avg_score=r.get("avg_score"),
            avg_score_excluded=list(r.get("avg_score_excluded", [])),
            synthetic_acc=BeforeAfter(r.get("synthetic_acc_before"), r.get("synthetic_acc_after")),
            data_seen=r.get("data_seen", {}),
            steps=list(r.get("steps", [])),
            stopped_because=r.get("stopped_because", ""),
            kept_any_step=bool(r.get("kept_any_step", False)),
            changed_tensors=list(r.get("changed_tensors", [])),
            epochs=int(r.get("epochs", 0)),
            seconds=dict(r.get("seconds", {})),
            retrieval=r.get("retrieval"),
            template_change=r.get("template_change"),
            error_analysis=r.get("error_analysis"),
            raw=r,
        )
    except KeyError as e:
        raise ClipUnlearnError(f"{where} lacks the field {e.args[0]!r}: it was not written by clipunlearn forget, "
                               "or was edited. Re-run the forget command.") from None


def read_results(run: str | os.PathLike[str]) -> RunResults:
    """Read ``run``/results.json (or the file itself) with clear errors for what is not a run."""
    given = Path(run)
    path = given / "results.json" if given.is_dir() else given
    if not path.is_file():
        where = given if given.is_dir() or not given.exists() else given.parent
        raise ClipUnlearnError(f"{str(where)!r} is not a run folder (no results.json). Pass a folder "
                               "written by `clipunlearn forget`.")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ClipUnlearnError(f"{str(path)!r} cannot be read as JSON ({e}). Re-run the forget command.") from None
    return parse_results(data, str(path))
