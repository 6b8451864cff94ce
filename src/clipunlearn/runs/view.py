"""One flat view of run folders: a row per run, a column per figure (``clipunlearn query`` and every
other renderer read runs through it; no renderer re-derives a figure the view holds).

:func:`runs_view` finds every run folder (a folder holding ``results.json``) under a folder: a suite's
``--out`` folder, a report's ``records/`` folder, a folder of runs or one run folder. Hidden folders
(a run being written), ``stale/`` (runs moved aside by ``--rerun-stale``) and ``cache/`` are left out.
Each run is read by the typed reader (:func:`.results.read_results`), its audit from
``RUN/audit/audit.json`` (or from a report's copy, ``DIR/audits/<run id>/audit.json``).

Columns (a missing figure is null; every column below is always there, in this order):

- ``run_id``: the run's id (a benchmark cell's folder name; the folder's name when none was recorded)
- ``path``: the run folder relative to DIR (``.`` when DIR is the run)
- ``kind``: ``class``, ``subgroup`` or ``concept``
- ``model``: the architecture (mini-rn, RN50, ...)
- ``method``, ``preset``, ``ablation`` (null when none), ``options`` (``key=value, ...`` set over the
  preset; null when none)
- ``n_per_class``: synthetic forget images made per class (a suite may vary it, as the wacv suite's
  sensitivity table does); null where the run made none (real forget images, or a method that uses none)
- ``dataset``: the dataset (a subgroup run: its setting; a concept run: ``concept (<vocabulary>)``)
- ``classes``: the forgotten classes, joined by ``, ``; ``n_classes``: how many
- ``seed``
- ``precision``: the precision the run computed at (``fp32``, ``tf32`` or ``bf16``; null for a run
  written before results.json recorded it)
- ``target_before``, ``target_after``: accuracy on the forgotten classes (a concept run: the share of
  the user's photos called by the name)
- ``other_classes_before``, ``other_classes_after``: the dataset's other classes (a subgroup run: the
  retained subgroups; a concept run: the retain photos' agreement with the original)
- ``other_<dataset>_before``, ``other_<dataset>_after``: one pair per other dataset measured by any run
  (a subgroup run's measured-only columns too), the name in lower case with ``_`` for other characters
- ``avg_score``: WACV'25's Avg. Score (lower is better)
- ``score``: CVPR'25's ratio Score of a subgroup run (higher is better)
- ``synthetic_before``, ``synthetic_after``: accuracy on the synthetic forget images
- retrieval, where measured: ``ift_p<k>_before/after`` and ``ifi_p<k>_before/after`` (precision@k of
  the forgotten classes, image from text and image from image; a class run); ``forget_at<k>_by_label``
  and ``forget_at<k>_by_name`` ``_before/after`` (a subgroup run: share of the top k that are forgotten
  images, queried by the coarse label and by the subgroup's name, mean over the forgotten subgroups)
- ``seconds``: the run's seconds (generation, forgetting and evaluation); ``forget_seconds``: the
  method's alone
- ``audited``: whether an audit.json was found; where one was:
- ``audit_recovered``: how many attacks brought the class back
- ``audit_r``, ``audit_r_floor``: the relearning score R (the oracle at 0, the original at 1) and R
  against an accuracy-0 floor
- ``audit_weight_distance``: L2 distance of the changed tensors from the original, relative to their norm
- ``audit_prompts``, ``audit_images``, ``audit_probe``, ``audit_prototype``, ``audit_relearning``,
  ``audit_mia``, ``audit_weights``, ``audit_oracle_class``, ``audit_oracle_rest``: each attack's verdict
  as audit.json words it (``recovered``, ``did not recover``, ``no evidence``, ``undefined``, ...); an
  attack not among these gets an ``audit_<attack>`` column after them
- ``audit_seconds``: the audit's wall-clock seconds
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ClipUnlearnError
from .results import BeforeAfter, RunResults, read_results


@dataclass(frozen=True)
class Column:
    """A fixed column of the view: its name, its pandas dtype (nullable) and what it holds."""

    name: str
    dtype: str
    doc: str


def ident(name: str) -> str:
    """``name`` as part of a column name: lower case, ``_`` for every run of other characters."""
    return re.sub("[^0-9a-z]+", "_", name.lower()).strip("_")


_S, _I, _F, _B = "string", "Int64", "Float64", "boolean"

#: the identifying columns and the target's, before the per-dataset pairs
HEAD = (
    Column("run_id", _S, "the run's id"), Column("path", _S, "the run folder relative to DIR"),
    Column("kind", _S, "class, subgroup or concept"), Column("model", _S, "the architecture"),
    Column("method", _S, "the method"), Column("preset", _S, "its preset"),
    Column("ablation", _S, "its ablation, null when none"), Column("options", _S, "options set over the preset"),
    Column("n_per_class", _I, "synthetic forget images made per class, null where none were made"),
    Column("dataset", _S, "the dataset (a subgroup run: its setting)"), Column("classes", _S, "forgotten classes"),
    Column("n_classes", _I, "how many"), Column("seed", _I, "the seed"),
    Column("precision", _S, "the precision it computed at: fp32, tf32 or bf16 (null: written before it was recorded)"),
    Column("target_before", _F, "target accuracy before"), Column("target_after", _F, "target accuracy after"),
    Column("other_classes_before", _F, "other classes before"),
    Column("other_classes_after", _F, "other classes after"),
)
#: after the per-dataset pairs, before the retrieval columns
SCORES = (
    Column("avg_score", _F, "WACV'25 Avg. Score, lower is better"),
    Column("score", _F, "CVPR'25 ratio Score of a subgroup run, higher is better"),
    Column("synthetic_before", _F, "synthetic forget images before"),
    Column("synthetic_after", _F, "synthetic forget images after"),
)
#: the attacks whose verdict lines have a column of their own (audit.json's names, in its order)
AUDIT_ATTACKS = ("prompts", "images", "probe", "prototype", "relearning", "mia", "weights", "oracle (class)",
                 "oracle (rest)")
#: after the retrieval columns
TAIL = (
    Column("seconds", _F, "the run's seconds"), Column("forget_seconds", _F, "the method's seconds"),
    Column("audited", _B, "an audit.json was found"),
    Column("audit_recovered", _I, "attacks that brought the class back"),
    Column("audit_r", _F, "relearning score R"), Column("audit_r_floor", _F, "R against an accuracy-0 floor"),
    Column("audit_weight_distance", _F, "relative L2 distance of the changed tensors"),
    *(Column(f"audit_{ident(a)}", _S, f"the {a} verdict") for a in AUDIT_ATTACKS),
    Column("audit_seconds", _F, "the audit's wall-clock seconds"),
)
COLUMNS: tuple[Column, ...] = (*HEAD, *SCORES, *TAIL)
#: folders that hold no current run
SKIPPED = ("stale", "cache")


def find_runs(folder: Path) -> list[Path]:
    """The run folders under ``folder`` (itself, when it is one), sorted; a run folder's own
    subfolders, hidden folders and :data:`SKIPPED` folders are not searched."""
    if (folder / "results.json").is_file():
        return [folder]
    found = []
    for here, dirs, files in os.walk(folder):
        if "results.json" in files and Path(here) != folder:
            found.append(Path(here))
            dirs.clear()
            continue
        dirs[:] = [d for d in dirs if not d.startswith(".") and d not in SKIPPED]
    return sorted(found)


def _pair(row: dict[str, Any], name: str, ba: BeforeAfter) -> None:
    row[f"{name}_before"], row[f"{name}_after"] = ba.before, ba.after


def _retrieval(r: RunResults) -> dict[str, float | None]:
    """Precision@k of a class run's targets (IFT, IFI); a subgroup run's forget@k by label and by name."""
    rt, row = r.retrieval, {}
    if not rt:
        return row
    if r.kind == "subgroup":
        coarse = {g.get("coarse") for g in (r.raw.get("setting") or {}).get("forget", [])}
        for when in ("before", "after"):
            by: dict[str, list[float]] = {}
            for query, values in rt[when].items():
                for key, v in values.items():
                    if key.startswith("forget@"):
                        name = f"forget_at{key[7:]}_by_{'label' if query in coarse else 'name'}_{when}"
                        by.setdefault(name, []).append(v)
            row.update({name: sum(vs) / len(vs) for name, vs in by.items()})
        return row
    for when in ("before", "after"):
        for task in ("ift", "ifi"):
            for k, v in ((rt.get(when) or {}).get(task, {}).get("target") or {}).items():
                row[f"{task}_p{k}_{when}"] = v
    return row


def find_audit(run: Path, root: Path, run_id: str) -> Path | None:
    """The run's audit.json, or a report's copy of it under ``root/audits/<run id>/``."""
    for path in (run / "audit" / "audit.json", root / "audits" / run_id / "audit.json"):
        if path.is_file():
            return path
    return None


def audit_row(audit: dict[str, Any]) -> dict[str, Any]:
    """The audit columns of one audit.json (older audits lack R and the weight distance: null)."""
    results = audit.get("results") or {}
    score = (results.get("relearning") or {}).get("score") or {}
    lines = audit.get("verdict") or []
    row: dict[str, Any] = {
        "audited": True, "audit_recovered": sum(v["verdict"] == "recovered" for v in lines),
        "audit_r": score.get("R"), "audit_r_floor": score.get("R_floor"),
        "audit_weight_distance": (results.get("weights") or {}).get("relative_l2"),
        "audit_seconds": sum(float(s.get("wall", 0.0)) for s in (audit.get("seconds") or {}).values()),
    }
    row.update({f"audit_{ident(v['attack'])}": v["verdict"] for v in lines})
    return row


def run_row(r: RunResults, path: str, audit: dict[str, Any] | None) -> dict[str, Any]:
    """One row of the view: a run's results (and its audit, when it has one)."""
    options = (r.raw.get("settings") or {}).get("options") or {}
    row: dict[str, Any] = {
        "run_id": r.run_id or Path(path).name, "path": path, "kind": r.kind, "model": r.model.get("arch"),
        "method": r.method, "preset": r.preset, "ablation": r.ablation,
        "options": ", ".join(f"{k}={v}" for k, v in sorted(options.items())) or None,
        "n_per_class": (r.raw.get("generation_config") or {}).get("n_per_class"),
        "dataset": r.dataset, "classes": ", ".join(r.classes), "n_classes": len(r.classes), "seed": r.seed,
        "precision": r.raw.get("precision")}
    _pair(row, "target", r.target)
    _pair(row, "other_classes", r.other_classes)
    for name, ba in r.datasets.items():
        _pair(row, f"other_{ident(name)}", ba)
    row.update({"avg_score": r.avg_score, "score": r.ratio_score})
    _pair(row, "synthetic", r.synthetic_acc)
    row.update(_retrieval(r))
    row["seconds"] = sum(r.seconds.values()) if r.seconds else None
    row["forget_seconds"] = r.seconds.get("forgetting")
    row.update(audit_row(audit) if audit is not None else {"audited": False})
    return row


def _sort_key(name: str) -> tuple[Any, ...]:
    """Natural order (p5 before p10), ``_before`` before ``_after``."""
    stem, when = re.subn("_(before|after)$", "", name)[0], name.endswith("_after")
    return (*(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", stem)), when)


def _order(rows: list[dict[str, Any]]) -> list[str]:
    """Fixed columns in order, each group of per-run columns (other datasets, retrieval, other
    attacks) sorted in its place."""
    fixed = {c.name for c in COLUMNS}
    extra = sorted({k for row in rows for k in row} - fixed, key=_sort_key)
    others = [k for k in extra if k.startswith("other_")]
    audits = [k for k in extra if k.startswith("audit_")]
    retrieval = [k for k in extra if k not in others and k not in audits]
    return [*(c.name for c in HEAD), *others, *(c.name for c in SCORES), *retrieval,
            *(c.name for c in TAIL), *audits]


def runs_view(folder: str | os.PathLike[str]) -> pd.DataFrame:
    """Every run folder under ``folder`` as one row (columns: the module's text), sorted by path."""
    root = Path(folder)
    if not root.is_dir():
        raise ClipUnlearnError(f"{str(root)!r} {'is not a folder' if root.exists() else 'does not exist'}. Pass a "
                               "folder of run folders: the --out folder of clipunlearn benchmark or forget, or a "
                               "report's records/ folder.")
    rows = []
    for run in find_runs(root):
        r = read_results(run)
        audit_path = find_audit(run, root, r.run_id or run.name)
        audit = None if audit_path is None else json.loads(audit_path.read_text(encoding="utf-8"))
        rows.append(run_row(r, Path(os.path.relpath(run, root)).as_posix(), audit))
    if not rows:
        raise ClipUnlearnError(f"No run folder (a folder holding results.json) under {str(root)!r}. Pass the --out "
                               "folder of clipunlearn benchmark or forget, or a report's records/ folder.")
    dtypes = {c.name: c.dtype for c in COLUMNS}
    df = pd.DataFrame(rows, columns=_order(rows))
    return df.astype({k: dtypes.get(k, _F if not k.startswith("audit_") else _S) for k in df.columns})


__all__ = ["AUDIT_ATTACKS", "COLUMNS", "Column", "audit_row", "find_audit", "find_runs", "ident", "run_row",
           "runs_view"]
