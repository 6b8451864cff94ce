"""What an executor runs: a job (a cell of a suite, or an oracle it trains), its outcome, one job run
in a worker (:func:`run_job`, :func:`run_job_with`), and the options every executor is called with.
The executors (:mod:`.executors`, :mod:`.ray_executor`, :mod:`.slurm_executor`) all stand on this
module, which imports none of them."""
from __future__ import annotations

import importlib
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from ..errors import ClipUnlearnError
from ..runs.execution import execute
from ..runs.spec import RunSpec
from .oracles import OracleSpec, train_oracle


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
            train_oracle(Path(job.out), job.spec, job.data_root, logging.getLogger("clipunlearn").info)
            return Outcome(job.spec, True)
        if not (Path(job.out) / "results.json").is_file():
            execute(job.spec, job.out, job.data_root, job.cache_dir, device=job.device,
                    synthetic_cache=job.synthetic_cache, save_model=job.save_model)
        if job.audit is not None and not audit_done(job.out):
            from ..audit import audit_run

            audit_run(job.out, oracle=job.audit.oracle, attacks=job.audit.attacks, data_root=job.data_root,
                      seed=job.audit.seed, relearning=job.audit.relearning, cache_dir=job.audit.curves,
                      precision=job.spec.precision)
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


__all__ = ["AuditJob", "ExecutorOptions", "Job", "OracleJob", "Outcome", "audit_done", "require", "run_job",
           "run_job_with"]
