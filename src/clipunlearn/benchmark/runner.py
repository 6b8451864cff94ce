"""Running a suite into a folder: ``OUT/runs/<run id>/`` per cell, resumable.

A cell is *done* when its run folder holds results.json (run folders are moved into place only when
complete, so a killed suite leaves no half-done cell), *failed* when ``OUT/failed/<run id>.json``
records an error (rerun with ``retry_failed``), and *to do* otherwise. Image features are cached in
``OUT/cache/features`` and synthetic sets in ``OUT/cache/synthetic`` (by content: one set per model,
classes and seed, whatever the method), shared by every cell.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..io import write_json
from ..runs.spec import RunSpec
from .executors import ExecutorOptions, Job, get_executor
from .suite import Suite, check_suite


@dataclass
class Plan:
    done: list[RunSpec] = field(default_factory=list)
    failed: list[RunSpec] = field(default_factory=list)
    todo: list[RunSpec] = field(default_factory=list)


def run_dir(out: Path, spec: RunSpec) -> Path:
    return out / "runs" / spec.run_id


def failure_file(out: Path, spec: RunSpec) -> Path:
    return out / "failed" / f"{spec.run_id}.json"


def plan(suite: Suite, out: str | Path, models: list[str] | None = None, retry_failed: bool = False) -> Plan:
    """Which cells are done, failed and still to run."""
    out = Path(out)
    p = Plan()
    for spec in (s.resolved() for s in suite.cells(models)):
        if (run_dir(out, spec) / "results.json").exists():
            p.done.append(spec)
        elif failure_file(out, spec).exists() and not retry_failed:
            p.failed.append(spec)
        else:
            p.todo.append(spec)
    return p


def run_suite(suite: Suite, out: str | Path, data_root: str | None, models: list[str] | None = None,
              executor: str = "local", workers: int = 2, retry_failed: bool = False, dry_run: bool = False,
              device: str = "cpu", echo=print, options: ExecutorOptions | None = None) -> Plan:
    """Run every cell still to do; returns the plan as it stood before running. ``options`` tell the
    executor how (``workers`` alone is a shorthand for ``ExecutorOptions(workers=...)``)."""
    check_suite(suite, data_root, models)
    options = options or ExecutorOptions(workers=workers)
    run = get_executor(executor, options)
    out = Path(out)
    options = replace(options, slurm_folder=options.slurm_folder or str(out / "slurm"))
    p = plan(suite, out, models, retry_failed)
    echo(f"suite {suite.name} ({suite.source}): {len(p.done) + len(p.failed) + len(p.todo)} cells, "
         f"{len(p.done)} done, {len(p.failed)} failed, {len(p.todo)} to run")
    if dry_run:
        for label, specs in (("done", p.done), ("failed", p.failed), ("to run", p.todo)):
            for spec in specs:
                echo(f"  {label:<7} {spec.run_id}")
        return p
    if not p.todo:
        return p
    from tqdm.auto import tqdm

    cache, synthetic = str(out / "cache" / "features"), str(out / "cache" / "synthetic")
    jobs = [Job(spec, str(run_dir(out, spec)), data_root, cache, device, synthetic) for spec in p.todo]
    t0 = time.time()
    with tqdm(total=len(jobs), desc=f"suite {suite.name}", unit="cell", file=sys.stderr) as bar:
        for outcome in run(jobs, options):
            bar.update(1)
            spec = outcome.spec
            if outcome.ok:
                failure_file(out, spec).unlink(missing_ok=True)
                r = json.loads((run_dir(out, spec) / "results.json").read_text(encoding="utf-8"))
                score = "–" if r.get("avg_score") is None else f"{r['avg_score']:.3f}"
                bar.write(f"done    {spec.run_id}: target {r['target_before']:.2f} -> {r['target_after']:.2f}, "
                          f"Avg. Score {score}")
            else:
                write_json(failure_file(out, spec), {"run_id": spec.run_id, "spec": spec.key(), "error": outcome.error})
                bar.write(f"FAILED  {spec.run_id}: {outcome.error.splitlines()[0] if outcome.error else '?'}")
    echo(f"ran {len(jobs)} cells in {time.time() - t0:.0f}s with the {executor} executor")
    return p
