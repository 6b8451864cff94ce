"""Running a suite into a folder: ``OUT/runs/<run id>/`` per cell, resumable.

A cell is *done* when its run folder holds results.json (run folders are moved into place only when
complete, so a killed suite leaves no half-done cell) and, for a cell a ``show = "audit"`` table
shows, its audit (``RUN/audit/audit.json``, also moved into place whole), *failed* when ``OUT/failed/<run id>.json``
records an error (rerun with ``retry_failed``), and *to do* otherwise. A done cell is also *stale*
when the method config in its results.json is not what its preset, ablation and options build today
(a preset edited since: the run id names the preset, not its contents); ``rerun_stale`` moves its
folder to ``OUT/stale/`` and runs it again. The suite's tables (their
cells and the classes chosen for them) are written to ``OUT/suite.json`` for the report. Image
features are cached in ``OUT/cache/features`` and synthetic sets in ``OUT/cache/synthetic`` (by
content: one set per model, classes and seed, whatever the method), shared by every cell. Oracles
(``[[oracles]]``) are trained before the cells, through the same executor, into ``OUT/cache/oracles``.
"""
from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path

from ..errors import ClipUnlearnError
from ..io import write_json
from ..runs.pipeline import check_save_model
from ..runs.spec import RunSpec
from ..tracking import Tracker, from_run, track
from .classes import ChosenClass, choose_classes, per_class_top1
from .executors import Run, get_executor
from .jobs import AuditJob, ExecutorOptions, Job, OracleJob, audit_done
from .oracles import OracleSpec, oracle_path, oracle_ready
from .suite import Suite, check_suite, only_tables


@dataclass
class Plan:
    done: list[RunSpec] = field(default_factory=list)
    failed: list[RunSpec] = field(default_factory=list)
    todo: list[RunSpec] = field(default_factory=list)
    stale: dict[str, str] = field(default_factory=dict)  # run id of a done cell -> how its config differs
    audited: set[str] = field(default_factory=set)  # run ids of the cells a show = "audit" table shows


def stale_reason(results: dict) -> str | None:
    """How the method config a finished run recorded differs from the one its method, preset, ablation
    and options build today, or None when they agree (or the run recorded none)."""
    from ..methods import get_method, method_names
    from ..methods.base import config_json

    recorded, settings = results.get("method_config"), results.get("settings") or {}
    if recorded is None or "method" not in settings:
        return None
    method = settings["method"]
    if method not in method_names():
        return f"method {method!r} is no longer registered"
    family = (results.get("model") or {}).get("family", "resnet")
    try:
        now = config_json(get_method(method).build_config(settings.get("preset", "default"), family,
                                                          settings.get("ablation"), settings.get("options") or {}))
    except ClipUnlearnError as e:
        return f"its config cannot be built any more ({e})"
    # a field added since, at its default, changes nothing the run did (the default keeps the old behaviour)
    added = {k for k, v in config_json(get_method(method).config_cls()).items() if k not in recorded and now.get(k) == v}
    changed = sorted(k for k in set(now) | set(recorded) if now.get(k) != recorded.get(k) and k not in added)
    if not changed:
        return None
    return ", ".join(f"{k} {recorded.get(k)!r} -> {now.get(k)!r}" for k in changed[:4]) + (
        f" (+{len(changed) - 4} more)" if len(changed) > 4 else "")


def run_dir(out: Path, spec: RunSpec) -> Path:
    return out / "runs" / spec.run_id


def failure_file(out: Path, spec: RunSpec) -> Path:
    return out / "failed" / f"{spec.run_id}.json"


def cell_state(out: Path, run_id: str, audited: bool, retry_failed: bool = False,
               rerun_stale: bool = False) -> tuple[str, str | None]:
    """A cell's state in ``out`` (the module's text): ``"done"``, ``"failed"`` or ``"todo"``, and how
    its config differs from today's when it is stale (else None); ``audited``: a ``show = "audit"``
    table shows it. With ``rerun_stale`` a stale cell is to do, with ``retry_failed`` a failed one."""
    folder = out / "runs" / run_id
    results = folder / "results.json"
    why = stale_reason(json.loads(results.read_text(encoding="utf-8"))) if results.exists() else None
    if why is not None and rerun_stale:
        return "todo", why
    if results.exists() and (not audited or audit_done(folder)):
        return "done", why
    if (out / "failed" / f"{run_id}.json").exists() and not retry_failed:
        return "failed", why
    return "todo", why


def chooser(suite: Suite, out: Path, data_root: str | None, device: str = "cpu"):
    """The class rule's choice per dataset for a model (top-1 per class measured once per model's
    weights, kept in ``OUT/cache/classes``)."""
    from ..runs.spec import weights_id

    def choose(model: str) -> dict[str, list[ChosenClass]]:
        wid = weights_id(model)
        n = max([suite.classes.per_dataset] + [k for t in suite.tables for k in t.together])
        chosen = {}
        for d in suite.rule_datasets():
            top1, split = per_class_top1(model, "default", wid, d, data_root, out / "cache" / "classes", device)
            chosen[d] = choose_classes(suite.classes, d, top1, n, split)
        return chosen

    return choose


def plan(suite: Suite, out: str | Path, models: list[str] | None = None, retry_failed: bool = False,
         data_root: str | None = None, device: str = "cpu", rerun_stale: bool = False,
         seeds: list[int] | None = None) -> Plan:
    """Which cells are done (and which of them stale), failed and still to run; with ``rerun_stale``
    stale cells are to run; ``seeds``: the cells of these seeds only."""
    out = Path(out)
    p = Plan()
    choose = chooser(suite, out, data_root, device)
    p.audited = audited = suite.audited(models, choose)
    for spec in (s.resolved() for s in suite.cells(models, choose) if seeds is None or s.seed in seeds):
        state, why = cell_state(out, spec.run_id, spec.run_id in audited, retry_failed, rerun_stale)
        if why is not None:
            p.stale[spec.run_id] = why
        {"done": p.done, "failed": p.failed, "todo": p.todo}[state].append(spec)
    return p


def layout(suite: Suite, out: str | Path, models: list[str] | None = None, data_root: str | None = None,
           device: str = "cpu") -> dict:
    """What the report needs beside the run folders: each table's cells (run id and setting) per
    model, and the classes the rule chose with their reasons."""
    out = Path(out)
    choose = chooser(suite, out, data_root, device)
    result: dict = {"suite": suite.name, "source": suite.source, "description": suite.description,
                    "seeds": suite.seeds, "classes": {}, "tables": []}
    picks = {m: (choose(m) if suite.rule_datasets() else {}) for m in models or suite.models}
    for model, chosen in picks.items():
        result["classes"][model] = {d: [{"name": c.name, "top1": c.top1, "reason": c.reason,
                                         "split": c.split, "text": c.describe()} for c in cs] for d, cs in chosen.items()}
    for table in suite.tables:
        cells = [{"model": m, "run_id": c.spec.resolved().run_id, "setting": c.setting, "seed": c.spec.seed}
                 for m, chosen in picks.items() for c in suite.table_cells(table, m, chosen)]
        result["tables"].append({"name": table.name, "title": table.title, "show": table.show,
                                 "group_by": list(table.group_by), "cells": cells, "bar": dict(table.bar),
                                 "goal": dict(table.goal), "claims": [asdict(c) for c in table.claims],
                                 "class_rule": bool(suite.table(table.cells).datasets if table.cells else table.datasets)})
    result["min_top1"] = suite.classes.min_top1
    return result


def merge_layout(path: Path, new: dict) -> dict:
    """``new`` over the layout already in ``path`` (same suite): a suite run on one model, then on
    another into the same folder, reports both."""
    if not path.is_file():
        return new
    old = json.loads(path.read_text(encoding="utf-8"))
    if old.get("suite") != new["suite"]:
        raise ClipUnlearnError(f"{path.parent} holds the runs of suite {old.get('suite')!r}, not {new['suite']!r}. "
                               "Use another --out folder for this suite.")
    models = set(new["classes"]) | {c["model"] for t in new["tables"] for c in t["cells"]}
    merged = dict(new)
    merged["classes"] = {**{m: v for m, v in old.get("classes", {}).items() if m not in models}, **new["classes"]}
    old_tables = {t["name"]: t for t in old.get("tables", [])}
    for t in merged["tables"]:
        kept = [c for c in old_tables.get(t["name"], {}).get("cells", []) if c["model"] not in models]
        t["cells"] = kept + t["cells"]
    return merged


def check_cells(suite: Suite, specs: list[RunSpec]) -> None:
    """Each cell's method, as configured, can serve its classes (``Method.check_classes``): a class
    that a setting cannot serve fails here, before any cell runs, naming how many cells it stops."""
    from ..methods import get_method

    refused: dict[str, list[str]] = {}
    seen: dict[tuple, str | None] = {}
    for spec in specs:
        if spec.subgroup is not None:
            continue
        key = (spec.method, spec.preset, spec.ablation, spec.options, spec.classes)
        if key not in seen:
            method_cls = get_method(spec.method)
            try:
                method_cls(method_cls.build_config(spec.preset, "resnet", spec.ablation, dict(spec.options))
                           ).check_classes(list(spec.classes))
                seen[key] = None
            except ClipUnlearnError as e:
                seen[key] = str(e)
        if seen[key] is not None:
            refused.setdefault(seen[key], []).append(spec.run_id)
    if refused:
        n = sum(len(c) for c in refused.values())
        reasons = " | ".join(f"{len(cells)} cell(s), e.g. {cells[0]}: {why}" for why, cells in refused.items())
        raise ClipUnlearnError(f"{suite.source}: {n} cell(s) cannot run, for {len(refused)} reason(s): {reasons}")


def audit_jobs(suite: Suite, out: Path, specs: list[RunSpec], audited: set[str]) -> dict[str, AuditJob]:
    """How each audited cell among ``specs`` is audited (its oracle, when the suite lists one); a suite
    asking for the oracle attack fails here, before any cell, for a cell without an oracle."""
    jobs = {}
    for spec in specs:
        if spec.run_id not in audited:
            continue
        oracle = suite.oracle_for(spec)
        if oracle is None and suite.audit_attacks and "oracle" in suite.audit_attacks:
            raise ClipUnlearnError(f"{suite.source}: audit.attacks asks for 'oracle', but no [[oracles]] entry leaves "
                                   f"out exactly {', '.join(spec.classes)} of {spec.dataset} for {spec.model}. Add one, "
                                   "or drop 'oracle' from audit.attacks.")
        jobs[spec.run_id] = AuditJob(None if oracle is None else str(oracle_path(out, oracle)), suite.audit_attacks,
                                     suite.audit_seed, suite.audit_relearning, str(out / "cache"))
    return jobs


def _done_line(folder: Path, audited: bool) -> str:
    """One line per finished cell: the target before and after, the Avg. Score and, when audited, how
    many attacks brought the class back."""
    r = json.loads((folder / "results.json").read_text(encoding="utf-8"))
    score = "–" if r.get("avg_score") is None else f"{r['avg_score']:.3f}"
    audit = ""
    if audited:
        from ..audit.verdict import judged

        hit, n = judged(json.loads((folder / "audit" / "audit.json").read_text(encoding="utf-8"))["verdict"])
        audit = f", audit: {hit} of {n} attacks recovered"
    return f"done    {folder.name}: target {r['target_before']:.2f} -> {r['target_after']:.2f}, Avg. Score {score}{audit}"


def _announce(suite: Suite, todo: Suite, p: Plan, tables: list[str] | None, seeds: list[int] | None,
              rerun_stale: bool, echo) -> None:
    """The suite's first line (its cells done, failed and to run), and a word on the stale ones."""
    echo(f"suite {suite.name} ({suite.source}" + (f"; tables {', '.join(t.name for t in todo.tables)}" if tables else "")
         + (f"; seeds {', '.join(map(str, seeds))}" if seeds is not None else "")
         + f"): {len(p.done) + len(p.failed) + len(p.todo)} cells, "
         f"{len(p.done)} done, {len(p.failed)} failed, {len(p.todo)} to run")
    if p.stale and not rerun_stale:
        first = next(iter(p.stale))
        echo(f"{len(p.stale)} done cells were run with another config of their preset than the method builds "
             f"today (e.g. {first}: {p.stale[first]}); their figures are not what the suite measures now. "
             "Pass --rerun-stale to run them again (their folders are kept in OUT/stale/).")


def _set_stale_aside(out: Path, p: Plan, echo) -> None:
    """The folders of the stale cells to run again, kept, never overwritten: moved aside whole."""
    for spec in p.todo:
        if spec.run_id in p.stale:
            aside = out / "stale" / f"{spec.run_id}-{time.strftime('%Y%m%d-%H%M%S')}"
            aside.parent.mkdir(parents=True, exist_ok=True)
            run_dir(out, spec).rename(aside)
            echo(f"stale   {spec.run_id} moved to {aside}")


def _train_oracles(run: Run, options: ExecutorOptions, oracles: list[OracleSpec], out: Path, data_root: str | None,
                   echo) -> None:
    """Train ``oracles`` through the executor; a failure is recorded in ``OUT/failed/``."""
    for outcome in run([OracleJob(o, str(out), data_root) for o in oracles], options):
        oid = outcome.spec.oracle_id
        if outcome.ok:
            (out / "failed" / f"oracle-{oid}.json").unlink(missing_ok=True)
            echo(f"oracle  {oid}: trained ({oracle_path(out, outcome.spec)})")
        else:  # the audits that need it fail in turn, naming the missing file
            write_json(out / "failed" / f"oracle-{oid}.json", {"oracle_id": oid, "spec": outcome.spec.key(),
                                                              "error": outcome.error})
            echo(f"FAILED  oracle {oid}: {outcome.error.splitlines()[0] if outcome.error else '?'}")


def _run_cells(run: Run, options: ExecutorOptions, jobs: list[Job], name: str, out: Path,
               audits: dict[str, AuditJob], trackers: Sequence[Tracker]) -> int:
    """Run ``jobs`` through the executor, a line per cell as it finishes (a failure recorded in
    ``OUT/failed/``), each finished cell logged to ``trackers``; how many were logged."""
    from tqdm.auto import tqdm

    logged = 0
    with tqdm(total=len(jobs), desc=f"suite {name}", unit="cell", file=sys.stderr) as bar:
        for outcome in run(jobs, options):
            bar.update(1)
            spec = outcome.spec
            if outcome.ok:
                failure_file(out, spec).unlink(missing_ok=True)
                bar.write(_done_line(run_dir(out, spec), spec.run_id in audits))
                logged += bool(track(trackers, partial(from_run, run_dir(out, spec)), bar.write))
            else:
                write_json(failure_file(out, spec), {"run_id": spec.run_id, "spec": spec.key(), "error": outcome.error})
                bar.write(f"FAILED  {spec.run_id}: {outcome.error.splitlines()[0] if outcome.error else '?'}")
    return logged


def run_suite(suite: Suite, out: str | Path, data_root: str | None, models: list[str] | None = None,
              executor: str = "local", workers: int = 2, retry_failed: bool = False, dry_run: bool = False,
              device: str = "cpu", echo=print, options: ExecutorOptions | None = None,
              rerun_stale: bool = False, tables: list[str] | None = None, seeds: list[int] | None = None,
              save_model: str = "changed", trackers: Sequence[Tracker] = ()) -> Plan:
    """Run every cell still to do (of the named ``tables`` only, when given: the report still lays out
    every table; and of the given ``seeds`` only); returns the plan as it stood before running. Each
    cell's model.safetensors holds the tensors it changed (``save_model="changed"``, loaded on the
    suite's model by load_clip, the audit and merges) or every tensor (``"full"``).
    ``options`` tell the executor how (``workers`` alone is a shorthand for ``ExecutorOptions(workers=...)``).
    Each cell that finishes is logged to ``trackers`` from its run folder, in this process, whatever the
    executor (:mod:`clipunlearn.tracking`; a failure to log is a warning line)."""
    check_suite(suite, data_root, models)
    check_save_model(save_model)
    options = options or ExecutorOptions(workers=workers)
    run = get_executor(executor, options)
    out = Path(out)
    options = replace(options, slurm_folder=options.slurm_folder or str(out / "slurm"))
    todo = only_tables(suite, tables) if tables else suite
    p = plan(todo, out, models, retry_failed, data_root, device, rerun_stale, seeds)
    check_cells(suite, p.todo)
    _announce(suite, todo, p, tables, seeds, rerun_stale, echo)
    if dry_run:
        for label, specs in (("done", p.done), ("failed", p.failed), ("to run", p.todo)):
            for spec in specs:
                echo(f"  {label:<7} {spec.run_id}" + (" (stale)" if spec.run_id in p.stale else ""))
        return p
    write_json(out / "suite.json", merge_layout(out / "suite.json", layout(suite, out, models, data_root, device)))
    if not p.todo:
        return p
    audits = audit_jobs(todo, out, p.todo, p.audited)
    _set_stale_aside(out, p, echo)
    oracles = [o for o in dict.fromkeys(suite.oracle_for(s) for s in p.todo if s.run_id in audits)
               if o is not None and not oracle_ready(out, o)]
    if oracles:  # trained first, through the executor (a cluster's workers, not its login node)
        echo(f"training {len(oracles)} oracle(s) first with the {executor} executor: "
             + ", ".join(o.oracle_id for o in oracles))
        _train_oracles(run, options, oracles, out, data_root, echo)
    cache, synthetic = str(out / "cache" / "features"), str(out / "cache" / "synthetic")
    jobs = [Job(spec, str(run_dir(out, spec)), data_root, cache, device, synthetic, audits.get(spec.run_id), save_model)
            for spec in p.todo]
    t0 = time.time()
    logged = _run_cells(run, options, jobs, suite.name, out, audits, trackers)
    echo(f"ran {len(jobs)} cells in {time.time() - t0:.0f}s with the {executor} executor")
    if trackers:
        echo(f"logged {logged} cells to {', '.join(t.where for t in trackers)} (experiment {suite.name})")
    return p
