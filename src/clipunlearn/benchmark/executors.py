"""Executors map "execute one cell" over a list of cells. Each cell writes its own run folder
atomically, so an executor only has to run cells and report each outcome as it comes.

* ``local``: in this process, one cell at a time;
* ``process``: a pool of worker processes on this machine, torch's threads divided between them.
"""
from __future__ import annotations

import os
import traceback
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass

from ..errors import ClipUnlearnError, unknown
from ..runs.spec import RunSpec, execute


@dataclass(frozen=True)
class Job:
    """One cell to run: where its folder goes and what it reads."""

    spec: RunSpec
    out: str
    data_root: str | None
    cache_dir: str | None
    device: str = "cpu"
    synthetic_cache: str | None = None


@dataclass(frozen=True)
class Outcome:
    spec: RunSpec
    ok: bool
    error: str = ""


def run_job(job: Job) -> Outcome:
    """Execute one cell; an error becomes a failed outcome (the cell's folder is never half-written)."""
    try:
        execute(job.spec, job.out, job.data_root, job.cache_dir, device=job.device, synthetic_cache=job.synthetic_cache)
        return Outcome(job.spec, True)
    except ClipUnlearnError as e:
        return Outcome(job.spec, False, str(e))
    except Exception as e:  # noqa: BLE001 - a failed cell is recorded, the suite goes on
        return Outcome(job.spec, False, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}")


def run_local(jobs: Sequence[Job], workers: int = 1) -> Iterator[Outcome]:
    for job in jobs:
        yield run_job(job)


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def run_process(jobs: Sequence[Job], workers: int = 2) -> Iterator[Outcome]:
    """Cells over ``workers`` processes (spawned: no torch state is shared), each with an equal share
    of the machine's cores as torch threads."""
    import multiprocessing

    workers = max(1, min(workers, len(jobs)))
    threads = max(1, (os.cpu_count() or 1) // workers)
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads,)) as pool:
        pending = {pool.submit(run_job, job): job for job in jobs}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                job = pending.pop(future)
                try:
                    yield future.result()
                except Exception as e:  # noqa: BLE001 - a worker that died: the cell failed
                    yield Outcome(job.spec, False, f"worker died: {type(e).__name__}: {e}")


EXECUTORS: dict[str, Callable[[Sequence[Job], int], Iterator[Outcome]]] = {
    "local": run_local,
    "process": run_process,
}


def get_executor(name: str) -> Callable[[Sequence[Job], int], Iterator[Outcome]]:
    if name not in EXECUTORS:
        raise unknown("executor", name, EXECUTORS)
    return EXECUTORS[name]
