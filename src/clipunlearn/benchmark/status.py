"""Where a suite's folder stands (``clipunlearn benchmark status DIR``): its cells done, failed, stale
and still to run, and the seconds the finished ones took.

The cells are those of the layout the runner writes before its first cell (``DIR/suite.json``: every
table's cells, for every model run into the folder), each classified by the runner's own rule
(:func:`.runner.cell_state`); the seconds are the run view's (:mod:`clipunlearn.runs.view`): a cell's
run, and its audit where a table audits it. Nothing is loaded but files: no model, no data. Like the
runner, it can look at some tables and some seeds only (``--tables table1,bar --seeds 1,2``).
"""
from __future__ import annotations

import json
import os
import re
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
    methods: dict[str, str] = field(default_factory=dict)  # run id of a done cell -> its method
    # every done cell of the folder, shown or not (run id -> seconds): what the cells left are estimated from
    reference: dict[str, float] = field(default_factory=dict)
    models: list[str] = field(default_factory=list)  # the models the folder's cells are of
    tables: list[str] | None = None  # the tables looked at, where not every one
    seeds: list[int] | None = None  # the seeds looked at, where not every one

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
    return error.strip().splitlines()[0].rstrip() if error.strip() else "?"


def _seconds(out: Path, done: list[str]) -> tuple[dict[str, float], dict[str, str]]:
    """Each done cell's seconds from the run view (its run's and, where audited, its audit's), and its method."""
    if not done:
        return {}, {}
    from ..runs.view import runs_view

    view = runs_view(out)
    total = view["seconds"].fillna(0.0) + view["audit_seconds"].fillna(0.0)
    by_id = dict(zip(view["run_id"], total.astype(float)))
    method = dict(zip(view["run_id"], view["method"]))
    return {rid: by_id[rid] for rid in done if rid in by_id}, {rid: str(method[rid]) for rid in done if rid in by_id}


_SEED_IN_RUN_ID = re.compile(r"-s(\d+)-[0-9a-f]{12}$")  # RunSpec.run_id: ...-s{seed}-{digest}


def _seed(cell: dict) -> int:
    """A layout cell's seed (layouts written before cells carried it: read from the run id)."""
    if "seed" in cell:
        return int(cell["seed"])
    m = _SEED_IN_RUN_ID.search(cell["run_id"])
    if m is None:
        raise ClipUnlearnError(f"cell {cell['run_id']!r} of suite.json names no seed. Run the suite into the folder "
                               "again (--dry-run is enough) to rewrite suite.json, or leave out --seeds.")
    return int(m.group(1))


def _tables(layout: dict, names: list[str] | None) -> list[dict]:
    """The layout's tables, or the named ones (a name the layout lacks is an error naming those it has)."""
    tables = layout.get("tables", [])
    if not names:
        return tables
    known = [t["name"] for t in tables]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ClipUnlearnError(f"--tables: the suite folder has no table {unknown[0]!r}. Pass some of: "
                               f"{', '.join(known)}.")
    return [t for t in tables if t["name"] in names]


def suite_status(folder: str | os.PathLike[str], tables: list[str] | None = None,
                 seeds: list[int] | None = None) -> SuiteStatus:
    """The cells of the suite in ``folder`` by state, and the seconds of the done ones; ``tables`` and
    ``seeds``: the cells of these tables and seeds only."""
    out = Path(folder)
    layout = read_layout(out)
    shown = _tables(layout, tables)
    if seeds is not None:
        known = sorted({*layout.get("seeds", []), *(_seed(c) for t in shown for c in t["cells"])})
        missing = [x for x in seeds if x not in known]
        if missing:
            raise ClipUnlearnError(f"--seeds: the suite folder has no cell of seed {missing[0]} (its seeds: "
                                   f"{', '.join(map(str, known))}).")

    def keep(cell: dict) -> bool:
        return seeds is None or _seed(cell) in seeds

    cells = list(dict.fromkeys(c["run_id"] for t in shown for c in t["cells"] if keep(c)))  # shown twice: one
    audited = {c["run_id"] for t in shown if t.get("show") == "audit" for c in t["cells"]}
    s = SuiteStatus(layout.get("suite", "?"), layout.get("source", ""),
                    models=sorted({c["model"] for t in shown for c in t["cells"] if keep(c)}),
                    tables=list(tables) if tables else None, seeds=list(seeds) if seeds is not None else None)
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
    s.reference, s.methods = _seconds(out, s.done + _done_elsewhere(out, layout, set(cells)))
    s.seconds = {rid: s.reference[rid] for rid in s.done if rid in s.reference}
    return s


def _done_elsewhere(out: Path, layout: dict, shown: set[str]) -> list[str]:
    """The done cells of the layout's tables and seeds that are not among the ``shown`` ones."""
    tables = layout.get("tables", [])
    audited = {c["run_id"] for t in tables if t.get("show") == "audit" for c in t["cells"]}
    others = [rid for rid in dict.fromkeys(c["run_id"] for t in tables for c in t["cells"]) if rid not in shown]
    return [rid for rid in others if cell_state(out, rid, rid in audited)[0] == "done"]


def _stem(run_id: str) -> str:
    """A run id without its seed and digest: the same cell at every seed."""
    m = _SEED_IN_RUN_ID.search(run_id)
    return run_id[:m.start()] if m else run_id


#: the ways a cell left is estimated, best first
BY = ("same cell at another seed", "same method", "mean of all finished cells")


@dataclass(frozen=True)
class Estimate:
    """The seconds the cells still to run should take, from the finished cells' seconds: a cell by the
    mean of the same cell at its other seeds, else of its method's finished cells, else of every one."""

    seconds: float
    by: dict[str, int]  # how many cells were estimated each way (the keys of BY)


def estimate_rest(s: SuiteStatus) -> Estimate | None:
    """The estimate of the cells to run and the failed ones from every finished cell of the folder, shown
    or not (``reference``; by hand: ``seconds``); None when nothing is left or nothing finished."""
    rest = s.todo + list(s.failed)
    finished = s.reference or s.seconds
    if not rest or not finished:
        return None
    stems: dict[str, list[float]] = {}
    methods: dict[str, list[float]] = {}
    for rid, sec in finished.items():
        stems.setdefault(_stem(rid), []).append(sec)
        if rid in s.methods:
            methods.setdefault(s.methods[rid], []).append(sec)
    overall = statistics.mean(finished.values())
    total, by = 0.0, dict.fromkeys(BY, 0)
    for rid in rest:
        stem = _stem(rid)
        # the method is the longest finished method's name the run id starts with (names hold dashes)
        method = max((m for m in methods if rid.startswith(m + "-") or rid.startswith(m + "@")),
                     key=len, default=None)
        if stem in stems:
            total, way = total + statistics.mean(stems[stem]), BY[0]
        elif method is not None:
            total, way = total + statistics.mean(methods[method]), BY[1]
        else:
            total, way = total + overall, BY[2]
        by[way] += 1
    return Estimate(total, {k: v for k, v in by.items() if v})


def _duration(seconds: float) -> str:
    """``3h 05m``, ``4m 10s`` or ``12s``."""
    s = round(seconds)
    if s >= 3600:
        return f"{s // 3600}h {s % 3600 // 60:02d}m"
    return f"{s // 60}m {s % 60:02d}s" if s >= 60 else f"{s}s"


def status_lines(s: SuiteStatus, folder: str, cells: bool = False, shown: int = 5) -> list[str]:
    """What ``clipunlearn benchmark status`` prints: the counts, the seconds, the failed and stale cells
    (the first ``shown`` of each; every cell with ``cells``) and the command that runs the rest."""
    only = "; ".join(([f"tables {', '.join(s.tables)}"] if s.tables else [])
                     + ([f"seeds {', '.join(map(str, s.seeds))}"] if s.seeds is not None else []))
    lines = [f"suite {s.suite}" + (f" ({only})" if only else "") + f": {s.cells} cells, {len(s.done)} done "
             f"({len(s.stale)} of them stale), {len(s.failed)} failed, {len(s.todo)} still to run"]
    if s.seconds:
        per = sorted(s.seconds.values())
        slowest = max(s.seconds, key=s.seconds.__getitem__)
        lines.append(f"the {len(per)} finished cells took {_duration(s.total_seconds)} ({s.total_seconds:.0f}s); "
                     f"per cell: mean {s.total_seconds / len(per):.0f}s, median {statistics.median(per):.0f}s, "
                     f"max {per[-1]:.0f}s ({slowest})")
    rest = estimate_rest(s)
    if rest is not None:
        ways = ", ".join(f"{n} by the {way}" for way, n in rest.by.items())
        lines.append(f"the {len(s.todo) + len(s.failed)} cells left should take about {_duration(rest.seconds)} of "
                     f"cell time ({ways}); divided among the workers that run them")
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
        flags += (f" --tables {','.join(s.tables)}" if s.tables else "") + (
            f" --seeds {','.join(map(str, s.seeds))}" if s.seeds is not None else "")
        lines.append(f"to run the rest: clipunlearn benchmark --suite {shlex.quote(_suite_arg(s))}{models} "
                     f"--out {shlex.quote(folder)}{flags}")
    return lines


def _suite_arg(s: SuiteStatus) -> str:
    """The shipped suite's name, or the suite file the folder was run from."""
    from importlib import resources

    shipped = Path(str(resources.files("clipunlearn.benchmark") / "suites" / f"{s.suite}.toml"))
    return s.suite if shipped.is_file() and Path(s.source).name == shipped.name else s.source or s.suite


__all__ = ["Estimate", "SuiteStatus", "estimate_rest", "read_layout", "status_lines", "suite_status"]
