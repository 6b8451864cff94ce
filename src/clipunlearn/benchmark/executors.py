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

import importlib
import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, fields
from pathlib import Path
from types import ModuleType

from ..errors import ClipUnlearnError, unknown
from ..runs.execution import execute
from ..runs.spec import RunSpec
from .oracles import OracleSpec


@dataclass(frozen=True)
class AuditJob:
    """Audit a cell's run once it is there (``clipunlearn audit``): into ``RUN/audit/``."""

    oracle: str | None = None
    attacks: tuple[str, ...] | None = None  # None: every attack (oracle only with an oracle)
    seed: int = 0
    relearning: str = "held-out"  # the relearning grid (audit.relearning.GRIDS)
    curves: str | None = None  # a folder shared by the suite's audits for the original's and oracles' curves


@dataclass(frozen=True)
class Job:
    """One cell to run: where its folder goes and what it reads; ``audit``: audit it afterwards."""

    spec: RunSpec
    out: str
    data_root: str | None
    cache_dir: str | None
    device: str = "cpu"
    synthetic_cache: str | None = None
    audit: AuditJob | None = None
    save_model: str = "changed"  # the cell's model.safetensors: "changed" tensors only, or "full"

    @property
    def name(self) -> str:
        return f"cell {self.spec.run_id}"


@dataclass(frozen=True)
class OracleJob:
    """Train an oracle of the suite (a zoo model without some classes) into ``OUT/cache/oracles``, on a
    worker like a cell. The zoo recipe trains on the CPU with its own thread count (part of the
    oracle's id: the same threads give the same weights)."""

    spec: OracleSpec
    out: str  # the suite's --out folder
    data_root: str | None

    @property
    def name(self) -> str:
        return f"oracle {self.spec.oracle_id}"


def audit_done(run_dir: str | Path) -> bool:
    return (Path(run_dir) / "audit" / "audit.json").is_file()


@dataclass(frozen=True)
class Outcome:
    spec: RunSpec | OracleSpec
    ok: bool
    error: str = ""


def run_job(job: Job | OracleJob) -> Outcome:
    """Execute one cell (and audit it when asked); an error becomes a failed outcome (the cell's folder
    and its audit folder are each written atomically, so never half-written). A cell whose run is there
    but not its audit is only audited."""
    try:
        if isinstance(job, OracleJob):
            import logging

            from .oracles import train_oracle

            train_oracle(Path(job.out), job.spec, job.data_root, logging.getLogger("clipunlearn").info)
            return Outcome(job.spec, True)
        if not (Path(job.out) / "results.json").is_file():
            execute(job.spec, job.out, job.data_root, job.cache_dir, device=job.device,
                    synthetic_cache=job.synthetic_cache, save_model=job.save_model)
        if job.audit is not None and not audit_done(job.out):
            from ..audit import audit_run

            audit_run(job.out, oracle=job.audit.oracle, attacks=job.audit.attacks, data_root=job.data_root,
                      seed=job.audit.seed, relearning=job.audit.relearning, cache_dir=job.audit.curves)
        return Outcome(job.spec, True)
    except ClipUnlearnError as e:
        return Outcome(job.spec, False, str(e))
    except Exception as e:  # noqa: BLE001 - a failed cell is recorded, the suite goes on
        return Outcome(job.spec, False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")


@dataclass(frozen=True)
class ExecutorOptions:
    """How an executor runs cells. Each field names the executors that read it."""

    workers: int = 2  # process: worker processes
    cpus_per_cell: int | None = None  # process, ray, slurm: torch threads per cell (process: cores // workers; else 1)
    gpus_per_cell: float = 0.0  # ray (0.25: four cells share a GPU), slurm (whole GPUs); > 0 runs cells on cuda
    max_retries: int = 1  # ray, slurm: runs again a cell whose worker or job died (not one that raised)
    ray_address: str | None = None  # ray: join this cluster (else start one on this machine)
    slurm_partition: str | None = None  # slurm
    slurm_time_min: int = 60  # slurm: time limit of each cell's job
    slurm_folder: str | None = None  # slurm: submitit's scripts and logs (run_suite: OUT/slurm)
    slurm_cluster: str = "slurm"  # slurm: submitit's cluster; "local" (processes here) and "debug" (in process) test it

    def __post_init__(self) -> None:
        for name, least in (("workers", 1), ("cpus_per_cell", 1), ("gpus_per_cell", 0), ("max_retries", 0),
                            ("slurm_time_min", 1)):
            value = getattr(self, name)
            if value is not None and value < least:
                raise ClipUnlearnError(f"{name} (--{name.replace('_', '-')}) must be at least {least}, not {value}.")
        if self.slurm_cluster not in ("slurm", "local", "debug"):
            raise ClipUnlearnError(f"Unknown SLURM cluster {self.slurm_cluster!r}: use slurm (or local / debug, "
                                   "to test without SLURM).")


def require(package: str, executor: str) -> ModuleType:
    """Import an optional package an executor needs, or fail with the command that installs it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        raise ClipUnlearnError(f'The {executor} executor needs the {package} package: pip install -e ".[distributed]" '
                               f"(or pip install {package}).") from None


def run_job_with(job: Job | OracleJob, threads: int) -> Outcome:
    """:func:`run_job` in a worker given ``threads`` CPUs (a Ray task, a SLURM job): torch uses as many threads."""
    import torch

    torch.set_num_threads(threads)
    return run_job(job)


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


def run_ray(jobs: Sequence[Job], options: ExecutorOptions) -> Iterator[Outcome]:
    from .ray_executor import run_ray as run

    return run(jobs, options)


def run_slurm(jobs: Sequence[Job], options: ExecutorOptions) -> Iterator[Outcome]:
    from .slurm_executor import run_slurm as run

    return run(jobs, options)


def check_slurm(options: ExecutorOptions) -> None:
    from .slurm_executor import check_slurm as check

    check(options)


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
