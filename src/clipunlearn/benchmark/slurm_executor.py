"""The ``slurm`` executor: the cells as a SLURM job array, submitted with submitit.

    clipunlearn benchmark --suite FILE --out DIR --executor slurm [--slurm-partition P]
                          [--slurm-time-min 60] [--slurm-folder DIR] [--cpus-per-cell N]
                          [--gpus-per-cell N] [--max-retries N]

Run it on a login node: each cell is one task of a job array (``sbatch --array``) asking for
``cpus_per_task`` = cpus per cell (torch uses as many threads), ``gpus_per_node`` = gpus per cell
(whole GPUs; a cell with a GPU runs on cuda) and the time limit; submitit keeps its scripts, pickles
and logs in ``--slurm-folder`` (default ``OUT/slurm``). This process waits, and records each outcome
as its job finishes; a job that died without an outcome (killed, timed out, a lost node) is submitted
again, up to ``max_retries`` times, then the cell is recorded as failed. The nodes must see the data
root and the output folder at the same paths, and run the same Python environment.

``ExecutorOptions.slurm_cluster`` ("local": one process per cell on this machine, "debug": in this
process) runs the same code without SLURM, as the tests do. Needs ``pip install -e ".[distributed]"``.
"""
from __future__ import annotations

import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ..errors import ClipUnlearnError
from .jobs import ExecutorOptions, Job, Outcome, require, run_job_with

#: seconds between looks at the jobs' states (submitit rate-limits its own sacct calls too)
POLL_S = {"slurm": 15.0, "local": 0.5, "debug": 0.0}


def check_slurm(options: ExecutorOptions) -> None:
    """What SLURM cannot do, found before any cell is submitted."""
    if options.slurm_cluster == "slurm" and shutil.which("sbatch") is None:
        raise ClipUnlearnError("The slurm executor submits with sbatch, which is not on this machine's PATH: "
                               "run it on a SLURM login node (or use --executor process or ray here).")
    if options.gpus_per_cell != int(options.gpus_per_cell):
        raise ClipUnlearnError(f"SLURM gives whole GPUs, not {options.gpus_per_cell}: use --gpus-per-cell 1 (or the "
                               "ray executor to share a GPU between cells).")


def _executor(submitit: Any, options: ExecutorOptions, cpus: int, cells: bool = True) -> Any:
    check_slurm(options)
    if options.slurm_folder is None:
        raise ClipUnlearnError("The slurm executor needs a folder for submitit's files: --slurm-folder DIR.")
    executor = submitit.AutoExecutor(folder=options.slurm_folder, cluster=options.slurm_cluster)
    executor.update_parameters(name="clipunlearn-cell" if cells else "clipunlearn-oracle",
                               timeout_min=options.slurm_time_min, cpus_per_task=cpus,
                               gpus_per_node=int(options.gpus_per_cell) if cells else 0,  # oracles train on CPU
                               slurm_partition=options.slurm_partition)
    return executor


def _outcome(submitted: Any) -> Outcome | Exception:
    """The cell's outcome, or the error of a job that ended without one (run_job itself never raises)."""
    try:
        return submitted.result()
    except Exception as e:  # noqa: BLE001 - killed, timed out, node failure: the job is retried or recorded
        return e


def run_slurm(jobs: Sequence[Job], options: ExecutorOptions) -> Iterator[Outcome]:
    """Submit ``jobs`` (cells, or the suite's oracles) as one job array; yield each outcome as its job finishes."""
    submitit = require("submitit", "slurm")
    cpus = options.cpus_per_cell or 1
    cells = any(isinstance(job, Job) for job in jobs)
    executor = _executor(submitit, options, cpus, cells)
    if options.gpus_per_cell > 0:
        jobs = [replace(job, device="cuda") if isinstance(job, Job) else job for job in jobs]
    submitted = executor.map_array(run_job_with, list(jobs), [cpus] * len(jobs))
    pending: dict[Any, tuple[Job, int]] = {s: (job, 1) for s, job in zip(submitted, jobs)}
    try:
        while pending:
            finished = [s for s in pending if s.done()]
            for s in finished:
                job, tries = pending.pop(s)
                outcome = _outcome(s)
                if isinstance(outcome, Outcome):
                    yield outcome
                elif tries <= options.max_retries:
                    pending[executor.submit(run_job_with, job, cpus)] = (job, tries + 1)
                else:
                    last = (str(outcome).strip().splitlines() or [""])[0]
                    yield Outcome(job.spec, False, f"the SLURM job {s.job_id} running this cell ended without a "
                                                   f"result, {tries} time(s) (--max-retries {tries - 1}; logs in "
                                                   f"{options.slurm_folder}): {type(outcome).__name__}: {last}")
            if pending and not finished:
                time.sleep(POLL_S[options.slurm_cluster])
    finally:
        for s in pending:  # the suite was interrupted: cancel what is queued or running
            s.cancel(check=False)
