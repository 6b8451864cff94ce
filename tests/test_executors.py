"""The ray and slurm executors (a local Ray cluster, submitit's local executor), workers killed in the
middle of a suite, executor options, and the errors when Ray or submitit is missing."""
from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from clipunlearn.benchmark import (
    ExecutorOptions,
    get_executor,
    load_suite,
    plan,
    run_suite,
)
from clipunlearn.errors import ClipUnlearnError
from conftest import AMNS_ENTRY as AMNS
from conftest import LIP_ENTRY as LIP
from conftest import SMALL_SUITE as SMALL


def _suite(tmp_path: Path, methods: str = LIP + AMNS):
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(methods=methods))
    return load_suite(path)


def _all_done(suite, out: Path, n: int) -> None:
    p = plan(suite, out)
    assert len(p.done) == n and not p.failed and not p.todo
    for spec in p.done:
        assert json.loads((out / "runs" / spec.run_id / "results.json").read_text())["settings"]["run_spec"]["run_id"] \
            == spec.run_id


class KillOnce:
    """SIGKILLs, once, the first process whose command line matches, ``after_s`` after it appears:
    a worker dying in the middle of a cell, from outside, as the OOM killer or a preemption would."""

    def __init__(self, match: Callable[[str], bool], after_s: float = 1.0, timeout_s: float = 1800.0):
        self.match, self.after_s, self.timeout_s = match, after_s, timeout_s
        self.killed: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        deadline = time.time() + self.timeout_s
        while not self._stop.is_set() and time.time() < deadline:
            for pid in (int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid()):
                try:
                    cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
                except OSError:
                    continue
                if self.match(cmdline):
                    time.sleep(self.after_s)
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:  # it ended on its own meanwhile: wait for the next match
                        continue
                    self.killed.append(pid)
                    return
            time.sleep(0.1)

    def __enter__(self) -> KillOnce:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_missing_ray_or_submitit_fails_before_any_cell_with_the_install_command(tmp_path, data_slice, monkeypatch,
                                                                                 capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.setitem(sys.modules, "submitit", None)
    for name, package in (("ray", "ray"), ("slurm", "submitit")):
        with pytest.raises(ClipUnlearnError) as e:
            run_suite(_suite(tmp_path), tmp_path / "out", str(data_slice), executor=name, echo=lambda *_: None)
        assert str(e.value) == (f'The {name} executor needs the {package} package: pip install -e ".[distributed]" '
                                f"(or pip install {package}).")
    assert not (tmp_path / "out" / "runs").exists()
    from clipunlearn.cli import main

    assert main(["benchmark", "--suite", str(tmp_path / "small.toml"), "--out", str(tmp_path / "out"),
                 "--data-root", str(data_slice), "--executor", "ray", "--gpus-per-cell", "0.25"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "clipunlearn: error: The ray executor needs the ray package" in err


def test_executor_options_are_checked_before_any_cell():
    with pytest.raises(ClipUnlearnError, match=r"The local executor does not read gpus_per_cell \(--gpus-per-cell\); "
                                               r"it is for the ray and slurm executors"):
        get_executor("local", ExecutorOptions(gpus_per_cell=1))
    with pytest.raises(ClipUnlearnError, match=r"process executor does not read ray_address.*for the ray executor\."):
        get_executor("process", ExecutorOptions(ray_address="auto"))
    with pytest.raises(ClipUnlearnError, match=r"max_retries \(--max-retries\) must be at least 0, not -1"):
        ExecutorOptions(max_retries=-1)
    with pytest.raises(ClipUnlearnError, match="Unknown executor 'rey'. Did you mean 'ray'"):
        get_executor("rey")
    from clipunlearn.benchmark.ray_executor import _check_fits

    with pytest.raises(ClipUnlearnError, match=r"A cell asks for 1 CPUs and 0.25 GPUs, but this machine's Ray cluster "
                                               r"has 2 CPUs and 0 GPUs: lower --cpus-per-cell / --gpus-per-cell"):
        _check_fits({"CPU": 2.0}, 1, 0.25)  # would wait forever for a GPU
    pytest.importorskip("submitit")
    with pytest.raises(ClipUnlearnError, match=r"SLURM gives whole GPUs, not 0.5"):
        get_executor("slurm", ExecutorOptions(gpus_per_cell=0.5, slurm_cluster="local"))
    if shutil.which("sbatch") is None:
        with pytest.raises(ClipUnlearnError, match="submits with sbatch, which is not on this machine's PATH"):
            get_executor("slurm", ExecutorOptions())


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time
def test_ray_executor_runs_a_suite_and_reruns_the_cell_of_a_killed_worker(tmp_path, data_slice):
    ray = pytest.importorskip("ray")
    suite, out = _suite(tmp_path), tmp_path / "out"
    lip = next(s for s in plan(suite, out).todo if s.method == "lip")
    assert not ray.is_initialized()
    with KillOnce(lambda cmd: cmd.startswith(f"ray::cell {lip.run_id}")) as killer:
        run_suite(suite, out, str(data_slice), executor="ray", echo=lambda *_: None,
                  options=ExecutorOptions(max_retries=1))
    assert killer.killed, "the lip cell's worker was never seen running"
    _all_done(suite, out, 2)  # the killed cell ran again, in another worker
    assert not ray.is_initialized()  # the cluster the executor started is shut down


@pytest.mark.slow
@pytest.mark.xdist_group("ray")  # one local Ray cluster at a time
def test_ray_executor_records_a_cell_whose_worker_died_past_its_retries(tmp_path, data_slice):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        suite, out = _suite(tmp_path, methods=LIP), tmp_path / "out"
        with KillOnce(lambda cmd: cmd.startswith("ray::cell lip-"), after_s=0.5) as killer:
            run_suite(suite, out, str(data_slice), executor="ray", echo=lambda *_: None,
                      options=ExecutorOptions(max_retries=0))
        assert killer.killed
        p = plan(suite, out)
        assert len(p.failed) == 1 and not p.done
        error = json.loads((out / "failed" / f"{p.failed[0].run_id}.json").read_text())["error"]
        assert "the Ray worker running this cell died" in error and "1 time(s) (--max-retries 0)" in error
        assert ray.is_initialized()  # a Ray this process started itself is left running
    finally:
        ray.shutdown()


@pytest.mark.slow
def test_slurm_executor_runs_a_job_array_with_submitits_local_executor(tmp_path, data_slice):
    pytest.importorskip("submitit")
    suite, out = _suite(tmp_path), tmp_path / "out"
    folder = tmp_path / "submitit"
    with KillOnce(lambda cmd: "submitit.core._submit" in cmd and str(folder) in cmd, after_s=2.0) as killer:
        run_suite(suite, out, str(data_slice), executor="slurm", echo=lambda *_: None,
                  options=ExecutorOptions(slurm_cluster="local", slurm_folder=str(folder), max_retries=1))
    assert killer.killed, "no submitit job was seen running"
    _all_done(suite, out, 2)  # the killed job was submitted again
    assert len(list(folder.glob("*_submitted.pkl"))) == 3 and len(list(folder.glob("*_result.pkl"))) == 2


@pytest.mark.slow
def test_slurm_executor_debug_cluster_runs_the_cells_in_this_process(tmp_path, data_slice):
    pytest.importorskip("submitit")
    suite, out = _suite(tmp_path, methods=AMNS), tmp_path / "out"
    run_suite(suite, out, str(data_slice), executor="slurm", echo=lambda *_: None,
              options=ExecutorOptions(slurm_cluster="debug"))
    _all_done(suite, out, 1)
    assert (out / "slurm").is_dir()  # submitit's folder defaults to OUT/slurm


def test_a_process_worker_ends_when_the_suites_process_is_gone():
    """``process`` workers are the forkserver's children: each watches the suite's process and ends
    with it (SIGTERM or SIGKILL of the suite), instead of running its cells on as an orphan."""
    import subprocess

    parent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    worker = subprocess.Popen([sys.executable, "-c", "import time; from clipunlearn.benchmark.executors import "
                               f"watch_parent; watch_parent({parent.pid}, interval=0.05); time.sleep(120)"])
    try:
        time.sleep(0.5)
        assert worker.poll() is None  # the suite's process is alive: the worker runs on
        parent.kill()
        parent.wait()
        assert worker.wait(timeout=60) == 1
    finally:
        for p in (parent, worker):
            if p.poll() is None:
                p.kill()
