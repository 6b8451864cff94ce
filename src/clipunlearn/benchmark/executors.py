"""Executors map "execute one cell" over a list of cells. Each cell writes its own run folder
atomically, so an executor only has to run cells and report each outcome as it comes.

* ``local``: in this process, one cell at a time;
* ``process``: a pool of worker processes on this machine, torch's threads divided between them;
* ``ray``: each cell a Ray task with its CPU / GPU request, on a local or existing Ray cluster
  (``ray_executor.py``);
* ``slurm``: the cells as a SLURM job array through submitit (``slurm_executor.py``).

Every executor is called as ``run(jobs, options)`` with one :class:`ExecutorOptions`; an executor
reads only some of its fields, and setting one it does not read is an error, not a silent no-op.
Ray and submitit are optional: ``pip install -e ".[distributed]"``.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, fields

from ..errors import ClipUnlearnError, unknown
from .jobs import ExecutorOptions, Job, Outcome, require, run_job
from .ray_executor import run_ray
from .slurm_executor import check_slurm, run_slurm


def run_local(jobs: Sequence[Job], options: ExecutorOptions) -> Iterator[Outcome]:
    for job in jobs:
        yield run_job(job)


def watch_parent(pid: int, interval: float = 1.0) -> None:
    """End this process (as SIGKILL would) once process ``pid`` is gone, checked every ``interval``
    seconds in a daemon thread. A pool's workers are children of the forkserver, not of the suite's
    process: without this, a suite stopped by SIGTERM or SIGKILL left its workers running their cells
    (and the queued ones) on every core, racing the resumed suite for the same run folders. A cell
    cut short leaves nothing half-written: run folders appear atomically."""
    import threading
    import time

    def watch() -> None:
        while True:
            time.sleep(interval)
            try:
                os.kill(pid, 0)
            except (ProcessLookupError, PermissionError):  # gone (PermissionError: its pid now another user's)
                os._exit(1)

    threading.Thread(target=watch, name="clipunlearn-watch-parent", daemon=True).start()


def _init_worker(threads: int, start_method: str, parent: int) -> None:
    """A worker runs cells as its parent would: ``threads`` torch threads, and the parent's start
    method for the processes a cell starts (a DataLoader's decoding workers). Left alone, a worker
    started by spawn or forkserver starts those the same way, each importing torch and clipunlearn
    again, for every evaluation: that made a cell 5-10 times slower in a worker than in the parent.
    It ends when the suite's process ``parent`` does (:func:`watch_parent`)."""
    import multiprocessing

    import torch

    torch.set_num_threads(threads)
    multiprocessing.set_start_method(start_method, force=True)
    watch_parent(parent)


def run_process(jobs: Sequence[Job], options: ExecutorOptions) -> Iterator[Outcome]:
    """Cells over ``options.workers`` processes, each with ``cpus_per_cell`` torch threads (default: an
    equal share of the machine's cores). Workers are forked from a server process that imported
    clipunlearn once (``forkserver``; ``spawn`` where there is none): each starts in milliseconds
    instead of importing torch again, and none inherits this process's torch state (its threads)."""
    import multiprocessing

    workers = max(1, min(options.workers, len(jobs)))
    threads = options.cpus_per_cell or max(1, (os.cpu_count() or 1) // workers)
    init = (threads, multiprocessing.get_start_method(), os.getpid())
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["clipunlearn.runs.pipeline", "clipunlearn.benchmark.executors"])
    else:
        ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=init) as pool:
        pending = {pool.submit(run_job, job): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    yield future.result()
                except Exception as e:  # noqa: BLE001 - a worker that died: the cell failed
                    yield Outcome(job.spec, False, f"worker died: {type(e).__name__}: {e}")


Run = Callable[[Sequence[Job], ExecutorOptions], Iterator[Outcome]]


@dataclass(frozen=True)
class Executor:
    run: Run
    reads: tuple[str, ...] = ()  # the ExecutorOptions fields it reads; the others must keep their defaults
    package: str | None = None  # the optional package it needs
    check: Callable[[ExecutorOptions], None] | None = None  # raises on options it cannot honour


EXECUTORS: dict[str, Executor] = {
    "local": Executor(run_local),
    "process": Executor(run_process, ("workers", "cpus_per_cell")),
    "ray": Executor(run_ray, ("cpus_per_cell", "gpus_per_cell", "max_retries", "ray_address"), "ray"),
    "slurm": Executor(run_slurm, ("cpus_per_cell", "gpus_per_cell", "max_retries", "slurm_partition",
                                  "slurm_time_min", "slurm_folder", "slurm_cluster"), "submitit", check_slurm),
}


def get_executor(name: str, options: ExecutorOptions | None = None) -> Run:
    """The executor called ``name``; fails before any cell when its package is missing, or ``options``
    set a field it does not read or ask for what it cannot do."""
    if name not in EXECUTORS:
        raise unknown("executor", name, EXECUTORS)
    executor = EXECUTORS[name]
    if executor.package:
        require(executor.package, name)
    for f in fields(ExecutorOptions):
        if options is not None and f.name not in executor.reads and getattr(options, f.name) != f.default:
            users = [n for n, e in EXECUTORS.items() if f.name in e.reads]
            raise ClipUnlearnError(f"The {name} executor does not read {f.name} (--{f.name.replace('_', '-')}); "
                                   f"it is for the {' and '.join(users)} executor{'s' if len(users) > 1 else ''}.")
    if options is not None and executor.check is not None:
        executor.check(options)
    return executor.run
