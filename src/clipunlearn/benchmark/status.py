"""Where a suite's folder stands (``clipunlearn benchmark status DIR``): its cells done, failed, stale
and still to run, and the seconds the finished ones took.

The cells are those of the layout the runner writes before its first cell (``DIR/suite.json``: every
table's cells, for every model run into the folder), each classified by the runner's own rule
(:func:`.runner.cell_state`); the seconds are the run view's (:mod:`clipunlearn.runs.view`): a cell's
run, and its audit where a table audits it. Nothing is loaded but files: no model, no data.
"""
from __future__ import annotations

import json
import os
import shlex
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ClipUnlearnError
from .runner import cell_state


@dataclass
class SuiteStatus:
    """A suite folder's cells by state (run ids in layout order) and each done cell's seconds."""

    suite: str
    source: str
    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # run id -> the first line of its error
    todo: list[str] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)  # run id of a done cell -> how its config differs
    seconds: dict[str, float] = field(default_factory=dict)  # run id of a done cell -> its run's + audit's
    models: list[str] = field(default_factory=list)  # the models the folder's cells are of

    @property
    def cells(self) -> int:
        return len(self.done) + len(self.failed) + len(self.todo)

    @property
    def total_seconds(self) -> float:
        return sum(self.seconds.values())


def read_layout(out: Path) -> dict:
    """``out/suite.json``, with a one-line error for a folder that is not a suite's."""
    if not out.is_dir():
        raise ClipUnlearnError(f"{str(out)!r} is not a folder. Pass the --out folder of clipunlearn benchmark.")
    path = out / "suite.json"
    if not path.is_file():
        raise ClipUnlearnError(f"{str(out)!r} holds no suite.json: it is not the --out folder of clipunlearn "
                               "benchmark (a suite writes it before its first cell). For any folder of runs: "
                               f"clipunlearn query {out} \"SELECT * FROM runs\".")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ClipUnlearnError(f"{str(path)!r} cannot be read as JSON ({e}). Rerun the suite into the folder to "
                               "write it again.") from None


def _first_error_line(out: Path, run_id: str) -> str:
    try:
        error = json.loads((out / "failed" / f"{run_id}.json").read_text(encoding="utf-8")).get("error") or "?"
    except (OSError, json.JSONDecodeError):
        return "(its failure record cannot be read)"
    return error.strip().splitlines()[0] if error.strip() else "?"


def _seconds(out: Path, done: list[str]) -> dict[str, float]:
    """Each done cell's seconds from the run view (its run's and, where audited, its audit's)."""
    if not done:
        return {}
    from ..runs.view import runs_view

    view = runs_view(out)
    total = view["seconds"].fillna(0.0) + view["audit_seconds"].fillna(0.0)
    by_id = dict(zip(view["run_id"], total.astype(float)))
    return {rid: by_id[rid] for rid in done if rid in by_id}


def suite_status(folder: str | os.PathLike[str]) -> SuiteStatus:
    """The cells of the suite in ``folder`` by state, and the seconds of the done ones."""
    out = Path(folder)
    layout = read_layout(out)
    tables = layout.get("tables", [])
    cells = list(dict.fromkeys(c["run_id"] for t in tables for c in t["cells"]))  # a cell shown twice is one
    audited = {c["run_id"] for t in tables if t.get("show") == "audit" for c in t["cells"]}
    s = SuiteStatus(layout.get("suite", "?"), layout.get("source", ""),
                    models=sorted({c["model"] for t in tables for c in t["cells"]}))
    for rid in cells:
        state, why = cell_state(out, rid, rid in audited)
        if state == "done":
            s.done.append(rid)
            if why is not None:
                s.stale[rid] = why
        elif state == "failed":
            s.failed[rid] = _first_error_line(out, rid)
        else:
            s.todo.append(rid)
    s.seconds = _seconds(out, s.done)
    return s


def _duration(seconds: float) -> str:
    """``3h 05m``, ``4m 10s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def status_lines(s: SuiteStatus, folder: str, cells: bool = False, shown: int = 5) -> list[str]:
    """What ``clipunlearn benchmark status`` prints: the counts, the seconds, the failed and stale cells
    (the first ``shown`` of each; every cell with ``cells``) and the command that runs the rest."""
    lines = [f"suite {s.suite}: {s.cells} cells, {len(s.done)} done ({len(s.stale)} of them stale), "
             f"{len(s.failed)} failed, {len(s.todo)} still to run"]
    if s.seconds:
        per = sorted(s.seconds.values())
        slowest = max(s.seconds, key=s.seconds.__getitem__)
        lines.append(f"the {len(per)} finished cells took {_duration(s.total_seconds)} ({s.total_seconds:.0f}s); "
                     f"per cell: mean {s.total_seconds / len(per):.0f}s, median {statistics.median(per):.0f}s, "
                     f"max {per[-1]:.0f}s ({slowest})")
    groups: dict[str, list[tuple[str, str]]] = {
        "done": [(rid, f"{s.seconds[rid]:.0f}s" if rid in s.seconds else "") for rid in s.done] if cells else [],
        "failed": list(s.failed.items()), "to run": [(rid, "") for rid in s.todo] if cells else [],
        "stale": list(s.stale.items())}
    for label, listed in groups.items():
        keep = listed if cells else listed[:shown]
        lines += [f"  {label:<7} {rid}" + (f": {why}" if why else "") for rid, why in keep]
        if len(listed) > len(keep):
            lines.append(f"  ... and {len(listed) - len(keep)} more {label} (--cells lists every cell)")
    if s.failed or s.todo or s.stale:
        flags = (" --retry-failed" if s.failed else "") + (" --rerun-stale" if s.stale else "")
        models = f" --model {','.join(s.models)}" if s.models else ""
        lines.append(f"to run the rest: clipunlearn benchmark --suite {shlex.quote(_suite_arg(s))}{models} "
                     f"--out {shlex.quote(folder)}{flags}")
    return lines


def _suite_arg(s: SuiteStatus) -> str:
    """The shipped suite's name, or the suite file the folder was run from."""
    from importlib import resources

    shipped = Path(str(resources.files("clipunlearn.benchmark") / "suites" / f"{s.suite}.toml"))
    return s.suite if shipped.is_file() and Path(s.source).name == shipped.name else s.source or s.suite


__all__ = ["SuiteStatus", "read_layout", "status_lines", "suite_status"]
