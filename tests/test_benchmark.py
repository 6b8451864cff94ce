"""Benchmark suites: loading and checking suite files, content-hashed cells, resume, failures, executors."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from clipunlearn.benchmark import (
    check_suite,
    load_suite,
    plan,
    run_suite,
    shipped_suites,
)
from clipunlearn.errors import ClipUnlearnError

SMALL = """
name = "small"
models = ["mini-rn"]
seeds = [0]
other_datasets = ["cifar10"]
n_per_class = 2
max_steps = 2
max_epochs = 1
retrieval = false
template_change = false
{methods}
[[targets]]
dataset = "caltech101"
classes = ["leopard"]
"""
LIP = '[[methods]]\nmethod = "lip"\noptions = { n_draws = 2, retain_steps = 2 }\n'
AMNS = '[[methods]]\nmethod = "amns"\n'


def _suite(tmp_path, methods=LIP + AMNS, name="small.toml", text=None):
    path = tmp_path / name
    path.write_text(text if text is not None else SMALL.format(methods=methods))
    return load_suite(path)


def test_shipped_quick_suite_loads_and_expands():
    assert "quick" in shipped_suites()
    suite = load_suite("quick")
    cells = suite.cells()
    assert len(cells) == len(suite.models) * len(suite.methods) * len(suite.targets) * len(suite.seeds) == 4
    ids = [c.resolved().run_id for c in cells]
    assert len(set(ids)) == 4 and ids == [c.resolved().run_id for c in load_suite("quick").cells()]


def test_run_id_is_content_hashed(tmp_path):
    a = _suite(tmp_path).cells()[0].resolved()
    from dataclasses import replace

    assert replace(a, seed=1).run_id != a.run_id and replace(a, options=(("lr", 1e-3),)).run_id != a.run_id
    assert replace(a, weights_hash="other").run_id != a.run_id  # retrained weights are another cell
    assert a.weights_hash and a.run_id.startswith("lip-caltech101-leopard-s0-")


@pytest.mark.parametrize("bad,message", [
    ('[[methods]]\nmethod = "lipp"\n', "methods[0]: unknown method 'lipp'. Did you mean 'lip'"),
    ('[[methods]]\nmethod = "lip"\nablation = "no-text"\n', "methods[0]: Unknown ablation of lip 'no-text'"),
    ('[[methods]]\nmethod = "lip"\noptions = { lr_ = 1 }\n', "methods[0]: Unknown option of LipConfig 'lr_'"),
    ('[[methods]]\nmethod = "lip"\npreset = "paper"\nseed = 3\n', "methods[0]: unknown field 'seed'"),
])
def test_bad_suite_files_fail_before_any_cell(tmp_path, data_slice, bad, message):
    with pytest.raises(ClipUnlearnError) as e:
        run_suite(_suite(tmp_path, methods=bad), tmp_path / "out", str(data_slice), echo=lambda *_: None)
    assert str(tmp_path / "small.toml") in str(e.value) and message in str(e.value)
    assert not (tmp_path / "out").exists()


def test_bad_suite_fields_targets_and_models(tmp_path, data_slice):
    with pytest.raises(ClipUnlearnError, match=r"unknown field 'seed'. Did you mean 'seeds'"):
        _suite(tmp_path, text=SMALL.format(methods=LIP).replace("seeds = [0]", "seed = [0]"))
    suite = _suite(tmp_path, text=SMALL.format(methods=LIP).replace('["leopard"]', '["leopards"]'))
    with pytest.raises(ClipUnlearnError, match=r"targets\[0\]: Class 'leopards'.*Did you mean 'leopard'"):
        check_suite(suite, str(data_slice))
    suite = _suite(tmp_path, text=SMALL.format(methods=LIP).replace('"mini-rn"', '"mini-rnn"'))
    with pytest.raises(ClipUnlearnError, match=r"models: unknown model 'mini-rnn'. Did you mean 'mini-rn'"):
        check_suite(suite, str(data_slice))
    with pytest.raises(ClipUnlearnError, match="Did you mean 'quick'"):
        load_suite("quik")
    with pytest.raises(ClipUnlearnError, match="not valid TOML"):
        _suite(tmp_path, text="models = [")


@pytest.mark.slow
def test_run_resume_dry_run_failures_and_retry(tmp_path, data_slice):
    out = tmp_path / "out"
    bad = '[[methods]]\nmethod = "lip"\noptions = { keep = "nope", n_draws = 2 }\n'
    suite = _suite(tmp_path, methods=LIP + bad)
    lines: list[str] = []
    run_suite(suite, out, str(data_slice), echo=lines.append)
    p = plan(suite, out)
    assert len(p.done) == 1 and len(p.failed) == 1 and not p.todo
    failure = json.loads(next((out / "failed").iterdir()).read_text())
    assert "Unknown keep criterion 'nope'" in failure["error"]
    done_dir = out / "runs" / p.done[0].run_id
    stamp = (done_dir / "results.json").stat().st_mtime_ns
    r = json.loads((done_dir / "results.json").read_text())
    assert r["settings"]["run_spec"]["run_id"] == p.done[0].run_id
    lines.clear()
    again = run_suite(suite, out, str(data_slice), dry_run=True, echo=lines.append)
    assert "1 done, 1 failed, 0 to run" in lines[0] and len(again.done) == 1
    run_suite(suite, out, str(data_slice), echo=lambda *_: None)  # nothing to do: the done cell is untouched
    assert (done_dir / "results.json").stat().st_mtime_ns == stamp
    retry = run_suite(suite, out, str(data_slice), retry_failed=True, echo=lambda *_: None)
    assert len(retry.todo) == 1 and len(plan(suite, out).failed) == 1  # failed again, recorded again


def test_cells_share_one_synthetic_forget_set_per_model_class_and_seed(tmp_path, data_slice):
    out = tmp_path / "out"
    suite = _suite(tmp_path, methods=LIP + AMNS)
    run_suite(suite, out, str(data_slice), echo=lambda *_: None)
    lip, amns = (json.loads((out / "runs" / s.run_id / "results.json").read_text()) for s in plan(suite, out).done)
    assert lip["data_seen"]["synthetic_forget"]["source"] == "synthetic"  # made by the first cell
    assert amns["data_seen"]["synthetic_forget"]["source"] == "synthetic, shared cache"  # reused by the second
    assert amns["seconds"]["generation"] == 0.0
    cached = [p for p in (out / "cache" / "synthetic").iterdir() if p.suffix == ".safetensors"]
    assert len(cached) == 2  # one forget set, and Lip's synthetic retain set
    from safetensors.torch import load_file

    a, b = (load_file(str(out / "runs" / s.run_id / "synthetic.safetensors")) for s in plan(suite, out).done)
    assert torch.equal(a["images"], b["images"])  # both methods forgot with the same images
    other_seed = _suite(tmp_path, name="seed1.toml", methods=AMNS, text=SMALL.format(methods=AMNS).replace(
        "seeds = [0]", "seeds = [1]"))
    run_suite(other_seed, out, str(data_slice), echo=lambda *_: None)
    assert len(list((out / "cache" / "synthetic").glob("*.safetensors"))) == 3  # another seed, another set


@pytest.mark.slow
def test_process_executor_runs_cells_in_workers(tmp_path, data_slice):
    suite = _suite(tmp_path, methods=LIP + AMNS)
    run_suite(suite, tmp_path / "out", str(data_slice), executor="process", workers=2, echo=lambda *_: None)
    p = plan(suite, tmp_path / "out")
    assert len(p.done) == 2 and not p.failed and not p.todo
    # tables and plots from the run folders alone
    from clipunlearn.cli import main

    assert main(["benchmark", "report", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text()
    assert "## methods" in report and "| lip " in report and "| amns " in report
    import pandas as pd

    table = pd.read_csv(tmp_path / "out" / "tables" / "methods.csv")
    assert set(table["method"]) == {"lip", "amns"} and (table["runs"] == 1).all()
    from clipunlearn.runs import read_results

    lip = read_results(tmp_path / "out" / "runs" / next(s.run_id for s in p.done if s.method == "lip"))
    row = table[table["method"] == "lip"].iloc[0]
    assert float(row["target AF"]) == pytest.approx(lip.target.after, abs=5e-4)
    assert float(row["Avg. Score"]) == pytest.approx(lip.avg_score, abs=5e-4)
    assert (tmp_path / "out" / "plots" / "avg_score.png").stat().st_size > 0
    from clipunlearn.benchmark.report import write_report

    with pytest.raises(ClipUnlearnError, match="is not a folder"):
        write_report(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClipUnlearnError, match="No finished run"):
        write_report(tmp_path / "empty")


@pytest.mark.slow
def test_a_suite_killed_with_sigkill_resumes_without_a_corrupted_cell(tmp_path, data_slice):
    path = tmp_path / "small.toml"
    path.write_text(SMALL.format(methods=LIP + AMNS).replace("n_per_class = 2", "n_per_class = 64")
                    .replace("max_steps = 2", "max_steps = 3000"))  # the first cell runs long enough to be killed
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "clipunlearn.cli", "benchmark", "--suite", str(path), "--out", str(out),
           "--data-root", str(data_slice)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ))
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "runs").glob(".*.partial")) and proc.poll() is None:
        time.sleep(0.2)
    time.sleep(1.0)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    suite = load_suite(path)
    p = plan(suite, out)
    assert not p.done and len(p.todo) == 2  # the killed cell is not mistaken for a finished one
    run_suite(suite, out, str(data_slice), echo=lambda *_: None)  # resume: the same cells, from the start
    assert len(plan(suite, out).done) == 2
    for d in (out / "runs").iterdir():
        if not d.name.startswith("."):
            json.loads((d / "results.json").read_text())  # every visible cell is complete


@pytest.mark.slow
def test_quick_suite_runs_end_to_end_from_the_cli(tmp_path, shared_data, capsys):
    from clipunlearn.cli import main

    out = tmp_path / "quick"
    assert main(["benchmark", "--suite", "quick", "--out", str(out), "--data-root", str(shared_data)]) == 0
    assert "4 cells done, 0 failed" in capsys.readouterr().out
    from clipunlearn.runs import read_results

    results = [read_results(d) for d in (out / "runs").iterdir() if not d.name.startswith(".")]
    assert sorted(r.method for r in results) == ["amns", "amns", "lip", "lip"]
    assert all(r.target.before is not None and r.retrieval and r.template_change for r in results)
    assert main(["benchmark", "--suite", "quick", "--out", str(out), "--data-root", str(shared_data),
                 "--dry-run"]) == 0
    assert "4 done, 0 failed, 0 to run" in capsys.readouterr().out
