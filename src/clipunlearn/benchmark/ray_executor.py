"""The ``ray`` executor: each cell a Ray task with its own CPU and GPU request.

    clipunlearn benchmark --suite FILE --out DIR --executor ray [--ray-address ADDR]
                          [--cpus-per-cell N] [--gpus-per-cell F] [--max-retries N]

Without ``--ray-address`` a Ray cluster of this machine's cores starts for the suite and stops after
it (a Ray already started in this process with ``ray.init`` is used as it is, and left running).
With it, the cells go to that cluster; its workers must have clipunlearn installed and see the
data root and the output folder at the same (absolute) paths, on a shared file system.

Each task asks for ``num_cpus`` = cpus per cell (default 1; torch uses as many threads) and
``num_gpus`` = gpus per cell (0.25: four cells share a GPU; a cell with a GPU runs on cuda). Outcomes
come as tasks finish. A task whose worker died (killed, out of memory, a lost node) runs again, up to
``max_retries`` times, then the cell is recorded as failed; an error inside a cell is recorded at
once, since it would only fail again. Tasks are named ``cell <run id>``, as ``ray list tasks`` and
the workers' process titles show them. Needs ``pip install -e ".[distributed]"``.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any

from ..errors import ClipUnlearnError
from .jobs import ExecutorOptions, Job, Outcome, require, run_job_with


def _connect(ray: Any, options: ExecutorOptions) -> bool:
    """Join or start a Ray cluster; True when this call did (and so must shut it down)."""
    if ray.is_initialized():
        return False
    if options.ray_address:
        ray.init(address=options.ray_address, logging_level=logging.ERROR)
    else:
        ray.init(num_cpus=os.cpu_count() or 1, include_dashboard=False, logging_level=logging.ERROR)
    return True


def _check_fits(resources: dict[str, float], cpus: int, gpus: float) -> None:
    """A cell this machine's cluster can never hold would wait forever: fail at once instead."""
    have_cpus, have_gpus = resources.get("CPU", 0), resources.get("GPU", 0)
    if cpus > have_cpus or gpus > have_gpus:
        raise ClipUnlearnError(f"A cell asks for {cpus} CPUs and {gpus:g} GPUs, but this machine's Ray cluster has "
                               f"{have_cpus:g} CPUs and {have_gpus:g} GPUs: lower --cpus-per-cell / --gpus-per-cell "
                               "(or join a larger cluster with --ray-address).")


def _failure(ray: Any, job: Job, error: Exception, tries: int) -> Outcome:
    last = (str(error).strip().splitlines() or [""])[-1]
    if isinstance(error, ray.exceptions.RayTaskError):  # the task raised outside the cell: e.g. no clipunlearn there
        return Outcome(job.spec, False, f"the Ray task failed: {type(error).__name__}: {last}\n{error}")
    return Outcome(job.spec, False, f"the Ray worker running this cell died ({type(error).__name__}), "
                                    f"{tries} time(s) (--max-retries {tries - 1}): {last}")


def run_ray(jobs: Sequence[Job], options: ExecutorOptions) -> Iterator[Outcome]:
    """Run ``jobs`` as Ray tasks, yielding each outcome as its task finishes."""
    ray = require("ray", "ray")
    started = _connect(ray, options)
    cpus = options.cpus_per_cell or 1
    task = ray.remote(run_job_with)
    pending: dict[Any, Job] = {}
    try:
        if started and not options.ray_address:
            _check_fits(ray.cluster_resources(), cpus, options.gpus_per_cell)
        for job in jobs:
            cell = isinstance(job, Job)  # an oracle job trains by the zoo recipe, on the CPU
            if cell and options.gpus_per_cell > 0:
                job = replace(job, device="cuda")
            ref = task.options(num_cpus=cpus, num_gpus=options.gpus_per_cell if cell else 0,
                               max_retries=options.max_retries, name=job.name).remote(job, cpus)
            pending[ref] = job
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as e:
                    outcome = _failure(ray, job, e, options.max_retries + 1)
                yield outcome
    finally:
        for ref in pending:  # the suite was interrupted: stop what still runs
            ray.cancel(ref, force=True)
        if started:
            ray.shutdown()
