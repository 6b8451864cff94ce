"""What a tracker logs, read from what a run left behind: a run folder (``clipunlearn forget``, a
benchmark cell) or a zoo training record. Read after the run is written, so tracking never changes
what a run does."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..runs.results import read_results
from ..runs.view import find_audit, run_row
from .base import Tracked, metric_name

#: the view's columns that name the run (params); its other numbers are the run's final metrics
PARAM_COLUMNS = ("run_id", "kind", "model", "method", "preset", "ablation", "options", "n_per_class", "dataset",
                 "classes", "n_classes", "seed")
#: settings that say where things went, not what was run
NOT_PARAMS = ("out", "overwrite", "progress", "run_spec", "options")
#: folders of a run that trackers write themselves (never logged back as the run's own files)
TRACKER_FOLDERS = ("mlflow", "tensorboard")
#: MLflow keeps at most this many characters of a param's value (older servers: 500)
PARAM_LIMIT = 500


def _param(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= PARAM_LIMIT else text[: PARAM_LIMIT - 3] + "..."


def _number(value: Any) -> float | None:
    """A finite float from a number (a bool: 1 or 0), else None."""
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def run_params(row: dict[str, Any], raw: dict[str, Any]) -> dict[str, str]:
    """The run's settings: who it is (the view's identifying columns), the settings it ran with and
    each field of the method's config (``config.<field>``)."""
    params = {k: _param(row[k]) for k in PARAM_COLUMNS if row.get(k) is not None}
    for key, value in (raw.get("settings") or {}).items():
        if key not in NOT_PARAMS and key not in params and value is not None:
            params[key] = _param(value)
    for key, value in (raw.get("method_config") or {}).items():
        params[f"config.{key}"] = _param(value)
    if raw.get("clipunlearn"):
        params["clipunlearn"] = str(raw["clipunlearn"])
    return {metric_name(k): v for k, v in params.items()}


def trace_series(steps: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """The per-step trace as metrics by step: every number a step carries (losses, forget accuracy,
    stage, epoch) and its keep-or-revert decision (``kept``: 1 kept, 0 reverted), under ``trace/``
    (``trace/<phase>/`` for the phases of a multi-phase method). The step is the row's place in the
    trace, so phases follow one another."""
    series: dict[str, list[tuple[int, float]]] = {}
    for i, row in enumerate(steps):
        prefix = f"trace/{row['phase']}/" if row.get("phase") else "trace/"
        for key, value in row.items():
            number = _number(value) if key not in ("phase", "selected") else None
            if number is not None:
                series.setdefault(metric_name(prefix + key), []).append((i, number))
        if row.get("selected") is not None:
            series.setdefault(metric_name(prefix + "selected_tensors"), []).append((i, float(len(row["selected"]))))
    return series


def run_files(run: Path) -> list[tuple[Path, str]]:
    """The files a tracker keeps of a run: report.md, log.txt, the audit's report and every plot (PNG),
    each with its folder inside the run ("" for the top). Not results.json: a copy of it in a store
    inside a suite's folder would be one more run to every reader of the folder (``runs_view``); its
    figures are the run's params and metrics."""
    files = [run / n for n in ("report.md", "log.txt", "audit/audit.md")]
    plots = sorted(p for p in run.rglob("*.png")
                   if not any(part.startswith(".") or part in TRACKER_FOLDERS for part in p.relative_to(run).parts))
    found = [p for p in [*files, *plots] if p.is_file()]
    return [(p, "" if p.parent == run else p.parent.relative_to(run).as_posix()) for p in found]


def from_run(run: str | Path, name: str | None = None) -> Tracked:
    """What a tracker logs of a run folder: its settings (params), its trace (metrics by step), its
    figures before and after (final metrics: every number of its row in :func:`runs_view`, the
    audit's where audited), its report (text) and its files (report, log, plots)."""
    run = Path(run)
    r = read_results(run)
    audit_path = find_audit(run, run, r.run_id or run.name)
    audit = None if audit_path is None else json.loads(audit_path.read_text(encoding="utf-8"))
    row = run_row(r, run.resolve().name, audit)  # a run without a RunSpec: its id is its folder's name
    final = {metric_name(k): float(v) for k, v in row.items()
             if k not in PARAM_COLUMNS and not isinstance(v, bool) and _number(v) is not None}
    final["epochs"] = float(r.epochs)
    texts = {"report": (run / "report.md").read_text(encoding="utf-8")} if (run / "report.md").is_file() else {}
    if (run / "audit" / "audit.md").is_file():
        texts["audit"] = (run / "audit" / "audit.md").read_text(encoding="utf-8")
    return Tracked(name or run.name, run_params(row, r.raw), trace_series(r.steps), final, texts, run_files(run))


def from_zoo(record: dict[str, Any], name: str, record_file: Path | None = None) -> Tracked:
    """What a tracker logs of a zoo training (``train_zoo_model``'s record): the recipe and data
    (params), the loss of each epoch (``train/loss`` by epoch) and the test top-1 per dataset, steps
    and seconds (final metrics); the record file itself when given."""
    params = {"model": record["model"], "datasets": _param(record["datasets"]),
              "excluded": _param(record["excluded"]["classes"]), "train_images": str(record["train_images"]),
              **{f"recipe.{k}": _param(v) for k, v in record["recipe"].items()}}
    losses = [(epoch, float(loss)) for epoch, loss in enumerate(record["epoch_loss"], start=1)]
    final = {f"test_top1/{metric_name(k)}": float(v) for k, v in record["test_top1"].items()}
    final.update({"train_steps": float(record["steps"]), "train_seconds": float(record["train_seconds"]),
                  "decode_seconds": float(record["decode_seconds"])})
    files = [(record_file, "")] if record_file is not None and record_file.is_file() else []
    return Tracked(name, {metric_name(k): v for k, v in params.items()}, {"train/loss": losses}, final, {}, files)
