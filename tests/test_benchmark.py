"""Benchmark suites: loading and checking suite files, content-hashed cells, resume, failures, executors."""
from __future__ import annotations

import json
import os
import re
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
from conftest import AMNS_ENTRY as AMNS
from conftest import LIP_ENTRY as LIP
from conftest import SMALL_SUITE as SMALL
from conftest import SUITE_HEADER


def _drawn(path) -> bool:
    """A PNG that decodes to a picture with something drawn on it (more than one colour), not just a file."""
    from PIL import Image

    with Image.open(path) as im:
        im.load()
        colours = im.convert("RGB").getcolors(maxcolors=1 << 16)  # None: more colours than that
        return im.width >= 200 and im.height >= 200 and (colours is None or len(colours) > 1)


def _suite(tmp_path, methods=LIP + AMNS, name="small.toml", text=None):
    path = tmp_path / name
    path.write_text(text if text is not None else SMALL.format(methods=methods))
    return load_suite(path)


def test_shipped_quick_suite_loads_and_expands():
    assert "quick" in shipped_suites()
    suite = load_suite("quick")
    cells = suite.cells()
    base = suite.table("methods")
    assert len(cells) == len(suite.models) * len(base.methods) * len(base.targets) * len(suite.seeds) == 4
    assert [t.name for t in suite.tables] == ["methods", "classes", "retrieval"]  # the short form, shown three ways
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


def test_a_class_a_setting_cannot_serve_fails_before_any_cell(tmp_path, data_slice, monkeypatch):
    """Lip's CuPLGen ablation needs sentences for each forget class (Method.check_classes)."""
    from clipunlearn.synthetic import cupl

    monkeypatch.setattr(cupl, "cupl_file", lambda: None)
    monkeypatch.delenv(cupl.ENV_VAR, raising=False)
    cupl_gen = '[[methods]]\nmethod = "lip"\nablation = "cupl-gen"\n'
    second = '[[targets]]\ndataset = "cifar10"\nclasses = ["automobile"]\n'
    suite = _suite(tmp_path, text=SMALL.format(methods=LIP + cupl_gen).replace('"caltech101"', '"cifar10"')
                   .replace('["leopard"]', '["airplane", "bird"]') + second)
    with pytest.raises(ClipUnlearnError) as e:
        run_suite(suite, tmp_path / "out", str(data_slice), echo=lambda *_: None)
    msg = str(e.value)
    assert "\n" not in msg and str(tmp_path / "small.toml") in msg and "2 cell(s) cannot run, for 2 reason(s)" in msg
    assert "lip@cupl-gen-cifar10-airplane+bird" in msg and "No descriptive sentences for 'airplane', 'bird'" in msg
    assert "lip@cupl-gen-cifar10-automobile" in msg and "No descriptive sentences for 'automobile'" in msg  # every reason named
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


def test_a_cell_run_with_an_older_preset_is_stale_and_reruns_only_when_asked(tmp_path, data_slice):
    """The run id names a preset, not its contents: a done cell whose recorded config is not what the
    preset builds today is reported stale, kept, and run again only with rerun_stale (old folder kept)."""
    out = tmp_path / "out"
    suite = _suite(tmp_path, methods=LIP)
    run_suite(suite, out, str(data_slice), echo=lambda *_: None)
    (spec,) = plan(suite, out).done
    results = out / "runs" / spec.run_id / "results.json"
    assert not plan(suite, out).stale
    r = json.loads(results.read_text())
    lr = r["method_config"]["lr"]
    r["method_config"]["lr"] = lr * 10  # as if the preset's lr had been changed since this cell ran
    results.write_text(json.dumps(r))
    p = plan(suite, out)
    assert p.stale == {spec.run_id: f"lr {lr * 10!r} -> {lr!r}"} and p.done == [spec] and not p.todo
    lines: list[str] = []
    run_suite(suite, out, str(data_slice), echo=lines.append)  # reported, not rerun
    assert any("1 done cells were run with another config" in x and "--rerun-stale" in x for x in lines)
    assert json.loads(results.read_text())["method_config"]["lr"] == lr * 10
    from clipunlearn.benchmark.report import write_report

    assert "**1 of these runs were made with another config of their preset" in write_report(out).read_text()
    lines.clear()
    run_suite(suite, out, str(data_slice), rerun_stale=True, echo=lines.append)
    (kept,) = (out / "stale").iterdir()
    assert kept.name.startswith(spec.run_id) and json.loads((kept / "results.json").read_text())["method_config"]["lr"] == lr * 10
    assert json.loads(results.read_text())["method_config"]["lr"] == lr and not plan(suite, out).stale


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
    assert set(table["method"]) == {"lip [n_draws=2, retain_steps=2]", "amns"} and (table["runs"] == 1).all()
    from clipunlearn.runs import read_results

    lip = read_results(tmp_path / "out" / "runs" / next(s.run_id for s in p.done if s.method == "lip"))
    row = table[table["method"].str.startswith("lip")].iloc[0]
    assert float(row["target AF"]) == pytest.approx(lip.target.after, abs=5e-4)
    assert float(row["Avg. Score"]) == pytest.approx(lip.avg_score, abs=5e-4)
    assert _drawn(tmp_path / "out" / "plots" / "avg_score.png")
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
    assert not list((out / "runs").glob(".*.partial"))  # the killed cell's staging folder went with its rerun


@pytest.mark.slow
def test_quick_suite_runs_end_to_end_from_the_cli(tmp_path, shared_data, capsys):
    from clipunlearn.cli import main

    out = tmp_path / "quick"
    assert main(["benchmark", "--suite", "quick", "--out", str(out), "--data-root", str(shared_data)]) == 0
    assert "4 cells done, 0 failed" in capsys.readouterr().out
    from clipunlearn.runs import read_results

    results = [read_results(d) for d in (out / "runs").iterdir() if not d.name.startswith(".")]
    assert sorted(r.method for r in results) == ["amns", "amns", "lip", "lip"]
    assert all(r.retrieval and r.template_change for r in results)
    # "before" is the starting model's, measured before the method ran: Lip's and Amns's cells agree
    for cls in {tuple(r.classes) for r in results}:
        befores = {json.dumps([r.target.before, r.other_classes.before, {k: v.before for k, v in r.datasets.items()},
                               r.template_change["before"]]) for r in results if tuple(r.classes) == cls}
        assert len(befores) == 1, cls
    assert main(["benchmark", "--suite", "quick", "--out", str(out), "--data-root", str(shared_data),
                 "--dry-run"]) == 0
    assert "4 done, 0 failed, 0 to run" in capsys.readouterr().out


TABLES = SUITE_HEADER.format(name="tables") + """retrieval = true
template_change = false

[classes]
min_top1 = 0.3
per_dataset = 2
paper = { caltech101 = [{paper}] }

[[tables]]
name = "table1"
title = "per dataset"
methods = [{ method = "lip", options = { n_draws = 2, retain_steps = 2 } }]
datasets = ["caltech101"]

[[tables]]
name = "table4"
cells = "table1"
group_by = ["dataset", "classes", "method"]

[[tables]]
name = "retrieval"
cells = "table1"
show = "retrieval"

[[tables]]
name = "bar"
cells = "table1"
show = "bar"
group_by = ["method"]
bar = { target = 0.2, avg_score = 0.5 }

[[tables]]
name = "together"
show = "forgetting"
group_by = ["dataset", "n_classes"]
methods = [{ method = "lip", options = { n_draws = 2, retain_steps = 2 } }]
datasets = ["caltech101"]
together = [2]

[[tables]]
name = "sensitivity"
show = "errors"
group_by = ["setting"]
methods = [{ method = "lip", options = { n_draws = 2, retain_steps = 2 } }]
targets = [{ dataset = "caltech101", classes = [{first}] }]
vary = { n_per_class = [3], lr = [1e-3] }
"""


def test_class_rule_keeps_known_paper_classes_then_the_best_known():
    from clipunlearn.benchmark.classes import ClassRule, choose_classes

    top1 = {"a": 0.9, "b": 0.2, "c": 0.5, "d": 0.5, "e": 0.1}
    rule = ClassRule(paper={"x": ("b", "a")}, min_top1=0.3)
    chosen = choose_classes(rule, "x", top1, 3)
    assert [(c.name, c.reason) for c in chosen] == [("a", "paper"), ("c", "best-known"), ("d", "best-known")]
    assert [c.name for c in choose_classes(ClassRule(min_top1=0.0, paper={"x": ("b",)}), "x", top1, 2)] == ["b", "a"]
    assert "paper's class, top-1 0.90 on train and test" in chosen[0].describe()


def test_tables_expand_into_cells_with_settings(tmp_path):
    from clipunlearn.benchmark.classes import ChosenClass

    suite = _suite(tmp_path, text=TABLES.replace("{paper}", '"leopard"').replace("{first}", '"leopard"'))
    chosen = {"caltech101": [ChosenClass("leopard", 0.8, "paper"), ChosenClass("face", 0.7, "best-known")]}
    cells = {t.name: suite.table_cells(t, "mini-rn", chosen) for t in suite.tables}
    assert [c.spec.classes for c in cells["table1"]] == [("leopard",), ("face",)]
    assert [c.spec.run_id for c in cells["table4"]] == [c.spec.run_id for c in cells["table1"]]
    assert [c.spec.classes for c in cells["together"]] == [("leopard", "face")]
    sens = cells["sensitivity"]
    assert [c.setting for c in sens] == ["", "n_per_class = 3", "lr = 0.001"]
    assert sens[1].spec.n_per_class == 3 and dict(sens[2].spec.options)["lr"] == 1e-3
    # the sensitivity table's preset cell is table1's leopard cell: a cell shared by tables runs once
    assert len(suite.cells(chosen=lambda m: chosen)) == 2 + 1 + 2
    from clipunlearn.benchmark.suite import only_tables

    some = only_tables(suite, ["sensitivity", "bar"])  # bar shows table1's cells: table1 comes along
    assert [t.name for t in some.tables] == ["table1", "bar", "sensitivity"]
    ids = {s.run_id for s in some.cells(chosen=lambda m: chosen)}
    assert ids == {c.spec.run_id for c in cells["table1"] + cells["sensitivity"]} and len(ids) == 4
    with pytest.raises(ClipUnlearnError, match="--tables: no table named 'sensitivty'.*Did you mean 'sensitivity'"):
        only_tables(suite, ["sensitivty"])


def test_a_dry_run_of_some_tables_lists_their_cells_only(tmp_path, data_slice, capsys):
    suite = _suite(tmp_path, text=TABLES.replace("{paper}", '"leopard"').replace("{first}", '"leopard"'))
    lines: list[str] = []
    p = run_suite(suite, tmp_path / "out", str(data_slice), dry_run=True, tables=["sensitivity"], echo=lines.append)
    assert "tables sensitivity): 3 cells, 0 done, 0 failed, 3 to run" in lines[0] and len(p.todo) == 3
    assert {s.options for s in p.todo} >= {(("lr", 1e-3), ("n_draws", 2), ("retain_steps", 2))}
    lines.clear()
    p = run_suite(suite, tmp_path / "out", str(data_slice), dry_run=True, tables=["sensitivity"], seeds=[0],
                  echo=lines.append)
    assert "seeds 0): 3 cells" in lines[0] and len(p.todo) == 3
    from clipunlearn.cli import main

    for seeds, message in (("0,x", "--seeds '0,x' is not a list of integers"), ("4", "has no seed 4 (its seeds: 0)")):
        assert main(["benchmark", "--suite", str(tmp_path / "small.toml"), "--out", str(tmp_path / "o"), "--data-root",
                     str(data_slice), "--seeds", seeds, "--dry-run"]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.parametrize("change, message", [
    (('show = "errors"', 'show = "eror"'), "unknown view 'eror'"),
    (('group_by = ["setting"]', 'group_by = ["setings"]'), "Did you mean 'setting'"),
    (("lr = [1e-3]", "lrr = [1e-3]"), "'lrr' is neither a cell setting nor an option of lip"),
    (('cells = "table1"\ngroup_by = ["dataset", "classes", "method"]', 'cells = "tabel1"'), "no earlier table"),
    (('paper = { caltech101 = ["leopard"] }', 'paper = { caltech101 = ["leoprd"] }'), "classes.paper.caltech101"),
])
def test_bad_tables_fail_before_any_cell(tmp_path, data_slice, change, message):
    text = TABLES.replace("{paper}", '"leopard"').replace("{first}", '"leopard"').replace(*change)
    with pytest.raises(ClipUnlearnError, match=message.replace("(", r"\(").replace(")", r"\)")):
        suite = _suite(tmp_path, text=text)
        check_suite(suite, str(data_slice))


@pytest.mark.slow
def test_a_suite_of_tables_runs_and_reports_each_table(tmp_path, data_slice):
    from clipunlearn.data import load_image_set
    from clipunlearn.evaluation import Evaluator
    from clipunlearn.models import load_clip

    evaluator = Evaluator(load_clip("mini-rn"), progress=False)  # independent of the suite
    images = load_image_set("caltech101", str(data_slice), "test")
    train, test = (evaluator.evaluate(load_image_set("caltech101", str(data_slice), split)).per_class()
                   for split in ("train", "test"))
    top1 = {c: min(train[c], test[c]) for c in test}  # known on both splits
    paper = min(top1, key=top1.get)  # the worst-known class: used only if it reaches the bar
    suite = _suite(tmp_path, text=TABLES.replace("{paper}", f'"{paper}"').replace("{first}", f'"{images.classnames[0]}"'))
    out = tmp_path / "out"
    run_suite(suite, out, str(data_slice), echo=lambda *_: None)
    layout = json.loads((out / "suite.json").read_text())
    chosen = layout["classes"]["mini-rn"]["caltech101"]
    expected = ([paper] if top1[paper] >= 0.3 else []) + sorted(
        (c for c in top1 if not (c == paper and top1[paper] >= 0.3)), key=lambda c: (-top1[c], c))
    assert [c["name"] for c in chosen] == expected[:2]
    assert all(c["top1"] == pytest.approx(top1[c["name"]]) for c in chosen)
    from clipunlearn.benchmark.report import write_report

    report = write_report(out, tmp_path / "page").read_text()
    import pandas as pd

    t1 = pd.read_csv(tmp_path / "page" / "tables" / "table1.csv")
    assert list(t1["runs"]) == [2] and "±" in str(t1.loc[0, "target AF"])  # two classes averaged
    assert len(pd.read_csv(tmp_path / "page" / "tables" / "table4.csv")) == 2
    sens = pd.read_csv(tmp_path / "page" / "tables" / "sensitivity.csv")
    assert sorted(sens["setting"]) == ["lr = 0.001", "n_per_class = 3", "preset"]
    assert "fell 1 rank" in sens.columns or "turned wrong" in sens.columns
    together = pd.read_csv(tmp_path / "page" / "tables" / "together.csv")
    assert list(together["n_classes"]) == [2]
    assert chosen[0]["text"] in report and "P@" in (tmp_path / "page" / "tables" / "retrieval.md").read_text()
    n_cells = len(plan(suite, out, data_root=str(data_slice)).done)
    assert f"({n_cells} of {n_cells} cells finished)" in report
    layout["tables"].append({"name": "later", "title": "a table not run yet", "show": "forgetting",
                             "group_by": ["method"], "cells": [{"model": "mini-rn", "run_id": "x", "setting": ""}]})
    (out / "suite.json").write_text(json.dumps(layout))
    report = write_report(out, tmp_path / "page2").read_text()
    assert "- later (a table not run yet): 0 of 1 cells finished" in report
    assert f"({n_cells} of {n_cells + 1} cells finished; rerunning that command runs the rest" in report
    assert _drawn(tmp_path / "page" / "plots" / "precision_at_k.png")
    assert _drawn(tmp_path / "page" / "plots" / "bar_tradeoff.png")  # the bar table's trade-off
    assert "(plots/bar_tradeoff.png)" in report
    from clipunlearn.runs import read_results

    runs = [read_results(out / "runs" / c["run_id"]) for c in layout["tables"][0]["cells"]]
    ratio = sum(r.target.after / r.target.before for r in runs) / len(runs)
    score = sum(r.avg_score for r in runs) / len(runs)
    bar = pd.read_csv(tmp_path / "page" / "tables" / "bar.csv")
    assert float(str(bar.loc[0, "target AF/BF"]).split(" ")[0]) == pytest.approx(ratio, abs=5e-4)
    kept = sum(r.other_classes.after / r.other_classes.before for r in runs) / len(runs)
    worst = sum(min(ba.after / ba.before for ba in r.datasets.values()) for r in runs) / len(runs)
    meets = ratio <= 0.2 and kept >= 0.9 and worst >= 0.95 and score <= 0.5  # 0.9 and 0.95: the defaults
    verdict = bar.loc[0, "verdict"]
    assert (verdict == "meets the bar") == meets
    if ratio > 0.2:
        assert "target AF/BF" in verdict and "needs <= 0.2" in verdict
    _records_rebuild_the_page_and_resume_the_suite(suite, out, tmp_path, data_slice)


def _records_rebuild_the_page_and_resume_the_suite(suite, out, tmp_path, data_slice):
    import shutil

    from clipunlearn.benchmark.report import write_report

    page = tmp_path / "kept"
    with pytest.raises(ClipUnlearnError, match="--records needs --to"):
        write_report(out, records=True)
    assert "[`records/`](records/)" in write_report(out, page, records=True).read_text()
    ids = sorted(d.name for d in (out / "runs").iterdir())
    assert sorted(d.name for d in (page / "records" / "runs").iterdir()) == ids
    assert not list((page / "records").rglob("*.safetensors"))  # no model files
    for rid in ids:  # the same results, with no folder of this machine in them
        kept = json.loads((page / "records" / "runs" / rid / "results.json").read_text())
        made = json.loads((out / "runs" / rid / "results.json").read_text())
        assert kept["settings"]["out"] == f"runs/{rid}" and made["settings"]["out"] == str(out / "runs" / rid)
        assert kept["feature_cache"]["folder"] == made["settings"]["cache_dir"].replace(str(out) + "/", "")
        assert kept["target_after"] == made["target_after"] and kept["datasets"] == made["datasets"]
    for f in (page / "records").rglob("*.json"):
        assert str(tmp_path) not in f.read_text(), f
    before = {f.name: f.read_text() for f in (page / "tables").iterdir()}
    rebuilt = write_report(page / "records", page).read_text()  # from the records alone
    assert {f.name: f.read_text() for f in (page / "tables").iterdir()} == before
    assert "--out DIR` (DIR: a copy of `records/`)" in rebuilt
    # the suite resumes from the records on a fresh folder: nothing left to run
    moved = tmp_path / "elsewhere"
    shutil.copytree(page / "records", moved)
    p = plan(suite, moved, data_root=str(data_slice))
    assert len(p.done) == len(ids) and not p.todo and not p.failed
    # a run the folder lacks is not dropped from the records
    shutil.rmtree(moved / "runs" / ids[0])
    with pytest.raises(ClipUnlearnError, match=f"holds 1 run.*lacks.*{ids[0]}.*copy them into"):
        write_report(moved, page, records=True)
    assert (page / "records" / "runs" / ids[0] / "results.json").is_file()


def test_the_shipped_wacv_suite_names_every_table_of_the_paper(shared_data):
    from clipunlearn.benchmark.classes import ChosenClass

    suite = load_suite("wacv")
    check_suite(suite, str(shared_data))  # every method, option, dataset and paper class exists
    names = [t.name for t in suite.tables]
    assert {"table1", "table4", "retrieval", "template-change", "table21", "table16", "table14", "table23",
            "ablations", "sensitivity"} <= set(names)
    assert suite.seeds == [0, 1, 2] and suite.classes.paper["caltech101"] == ("euphonium", "minaret", "platypus")
    fake = {d: [ChosenClass(f"{d}-{i}", 0.9, "best-known") for i in range(5)] for d in suite.rule_datasets()}
    cells = {t.name: suite.table_cells(t, "mini-rn", fake) for t in suite.tables}
    assert len(cells["table1"]) == 7 * 4 * 3 * 3 and len(cells["table21"]) == 7 * 3 * 3
    assert sorted({c.spec.classes.__len__() for c in cells["table16"]}) == [2, 3, 5]
    assert {dict(c.spec.options).get("forget_images") for c in cells["table23"]} == {None, "real"}
    assert {c.spec.ablation for c in cells["ablations"]} == {None, "all-params-vary", "one-iter", "no-text-loss",
                                                             "cupl-gen", "text-emb-perturb"}
    order = suite.cells(chosen=lambda model: fake)
    seeds = [spec.seed for spec in order]
    assert seeds == sorted(seeds)  # seed by seed: a suite stopped early has every table, with fewer seeds
    first = {spec.run_id for spec in order[: seeds.count(0)]}
    assert all(any(c.spec.run_id in first for c in cells[t.name]) for t in suite.tables)


def test_a_subgroup_goal_is_checked_per_setting_against_every_other_method(tmp_path):
    import pandas as pd

    from clipunlearn.benchmark.report import goal_lines

    rows = [("in-domain-car", "ours", 0, 80.0), ("in-domain-car", "ours", 1, 90.0), ("in-domain-car", "ga", 0, 84.0),
            ("in-domain-flower", "ours", 0, 93.0), ("in-domain-flower", "ga", 0, 95.0),
            ("style", "ours", 0, 90.0), ("style", "ga", 0, 70.0), ("other", "ga", 0, 70.0),
            ("unknown", "ours", 0, None), ("unknown", "ga", 0, None),  # target BF 0: the Score is undefined
            ("winter", "ours", 0, 90.0), ("winter", "ga", 0, 70.0)]  # a setting after the undefined one
    unmoved = {("style", "ours"), ("in-domain-car", "ga")}  # only ours counts: style warns, in-domain-car does not
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "mini-rn", "dataset": d, "method": m, "seed": s, "Score": v,
                        "target BF": 0.5, "target AF": 0.5 if (d, m) in unmoved else 0.1}
                       for i, (d, m, s, v) in enumerate(rows)])
    table = {"group_by": ["dataset", "method"], "goal": {"method": "ours", "score": 85.0},
             "cells": [{"model": "mini-rn", "run_id": f"r{i}", "setting": "", "seed": r[2]} for i, r in enumerate(rows)]}
    lines = goal_lines(df, table)
    assert "- mini-rn, in-domain-car: ours 85.0, best other ga 84.0: meets the goal" in lines  # mean of two seeds
    assert "- mini-rn, in-domain-flower: ours 93.0, best other ga 95.0: misses (below ga)" in lines
    assert ("- mini-rn, style: ours 90.0, best other ga 70.0: meets the goal; but its target did not fall "
            "(0.50 -> 0.50): the Score of a model that forgot nothing") in lines  # a target that did not move
    assert "- mini-rn, other: ours not run yet" in lines
    assert ("- mini-rn, unknown: ours: Score undefined (the model did not recognise the forgotten subgroup before "
            "forgetting, target BF 0: there is nothing to forget)") in lines
    assert "- mini-rn, winter: ours 90.0, best other ga 70.0: meets the goal" in lines
    text = SUITE_HEADER.format(name="g") + """
[[tables]]
name = "sub"
show = "subgroup"
methods = [{ method = "ga" }, { method = "ft" }]
subgroups = ["in-domain-flower"]
goal = { method = "ga", score = 85 }
"""
    assert _suite(tmp_path, text=text).tables[0].goal == (("method", "ga"), ("score", 85.0))
    for change, message in ((('method = "ga", score', 'method = "gaa", score'), "goal.method: 'gaa' is not a method"),
                            (("goal = { method = \"ga\", score = 85 }", "goal = { method = \"ga\" }"), "needs method, score"),
                            (('show = "subgroup"', 'show = "forgetting"'), 'a goal is for show = "subgroup"'),
                            (('method = "ga", score', 'method = "ga", preset = "paper", score'),
                             "ga has no row of preset 'paper' in table 'sub' (its presets there: default)"),
                            (('method = "ga", score', 'method = "ga", presets = "x", score'), "presets")):
        with pytest.raises(ClipUnlearnError, match=re.escape(message)):
            _suite(tmp_path, text=text.replace(*change))
    with_preset = text.replace('method = "ga", score', 'method = "ga", preset = "default", score')
    assert dict(_suite(tmp_path, text=with_preset).tables[0].goal) == {"method": "ga", "preset": "default", "score": 85.0}


def test_a_bar_verdict_names_the_other_datasets_that_limit_it():
    import pandas as pd

    from clipunlearn.benchmark.report import suite_table

    # two cells of one setting: dogs kept 0.8 and 0.9 (mean 0.85), flowers 1.0 and 0.9 (0.95); worst per cell 0.8, 0.9
    ratios = [{"dogs": 0.8, "flowers": 1.0}, {"dogs": 0.9, "flowers": 0.9}]
    rows = [{"run_id": f"r{i}", "model": "m", "method": "lip", "target AF/BF": 0.1, "other classes AF/BF": 0.95,
             "other datasets AF/BF (worst)": min(r.values()), "Avg. Score": 0.05,
             **{f"AF/BF of {k}": v for k, v in r.items()}} for i, r in enumerate(ratios)]
    table = {"group_by": ["method"], "show": "bar",
             "bar": {"target": 0.2, "other_classes": 0.9, "other_datasets": 0.95, "avg_score": 0.1},
             "cells": [{"model": "m", "run_id": f"r{i}", "setting": ""} for i in range(2)]}
    verdict = suite_table(pd.DataFrame(rows), table).loc[0, "verdict"]
    assert verdict == "misses: other datasets AF/BF (worst) 0.850 (needs >= 0.95; dogs 0.850; flowers 0.950)"
    table["bar"]["other_datasets"] = 0.8
    assert suite_table(pd.DataFrame(rows), table).loc[0, "verdict"] == "meets the bar"


CLAIMS = SUITE_HEADER.format(name="claims") + """
[[tables]]
name = "t1"
methods = [{ method = "lip" }, { method = "amns" }, { method = "emb" }]
targets = [{ dataset = "caltech101", classes = ["leopard"] }]

[[tables]]
name = "bar"
cells = "t1"
show = "bar"
group_by = ["method"]
claims = [{ says = "lip scores best", method = "lip", column = "avg_score", than = ["amns", "emb"], higher = false }]
"""


def test_claims_are_checked_on_the_cells_all_their_methods_finished(tmp_path):
    import pandas as pd

    from clipunlearn.benchmark.report import claim_lines

    # (method, dataset, classes, seed, Avg. Score, target AF/BF); emb has no seed-2 cell, so seed 2 is left out
    cells = [("lip", "d", "x", 0, 0.10, 0.2), ("lip", "d", "x", 1, 0.30, 0.4), ("lip", "d", "x", 2, 0.90, 0.0),
             ("amns", "d", "x", 0, 0.20, 0.1), ("amns", "d", "x", 1, 0.40, 0.3), ("amns", "d", "x", 2, 0.00, 0.0),
             ("emb", "d", "x", 0, 0.25, 0.9), ("emb", "d", "x", 1, 0.25, 0.7)]
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "m", "method": m, "dataset": d, "classes": c, "seed": s,
                        "Avg. Score": a, "target AF/BF": t} for i, (m, d, c, s, a, t) in enumerate(cells)])
    table = {"cells": [{"model": "m", "run_id": f"r{i}", "setting": ""} for i in range(len(cells))], "claims": [
        {"says": "lip scores best", "method": "lip", "column": "avg_score", "than": ["amns", "emb"], "higher": False},
        {"says": "emb keeps most", "method": "emb", "column": "target", "than": ["lip"], "higher": True},
        {"says": "amns beats emb", "method": "amns", "column": "avg_score", "than": ["emb"], "higher": False},
        {"says": "salun", "method": "salun", "column": "target", "than": ["lip"], "higher": True}]}
    lines = claim_lines(df, table)
    # over seeds 0 and 1: lip 0.20, amns 0.30, emb 0.25 (with seed 2, lip's mean would be 0.433 and the claim fail)
    assert "- m: lip scores best: holds (Avg. Score: lip 0.200; amns 0.300; emb 0.250; 2 cells each)" in lines
    assert "- m: emb keeps most: holds (target AF/BF: emb 0.800; lip 0.300; 2 cells each)" in lines
    assert "- m: amns beats emb: does not hold (Avg. Score: amns 0.300; emb 0.250; 2 cells each)" in lines
    assert "- m: salun: not run yet (salun has no cell finished beside the others)" in lines
    claims = _suite(tmp_path, text=CLAIMS).table("bar").claims
    assert [(c.method, c.column, c.than, c.higher) for c in claims] == [("lip", "avg_score", ("amns", "emb"), False)]


def test_rows_with_the_same_figures_in_every_common_cell_are_named():
    import pandas as pd

    from clipunlearn.benchmark.report import identical_lines

    # (method, seed, target AF, Avg. Score): "b" repeats "a" on both seeds; "c" differs on seed 1; "d" has one cell
    cells = [("a", 0, 0.1, 0.2), ("a", 1, 0.3, 0.4), ("b", 0, 0.1, 0.2), ("b", 1, 0.3, 0.4),
             ("c", 0, 0.1, 0.2), ("c", 1, 0.3, 0.41), ("d", 0, 0.1, 0.2)]
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "m", "method": m, "dataset": "x", "classes": "k", "seed": s,
                        "target BF": 0.9, "target AF": t, "Avg. Score": a} for i, (m, s, t, a) in enumerate(cells)])
    # the cells as the runner lays them out (with their seeds, which the runs' own figures also give)
    table = {"cells": [{"model": "m", "run_id": f"r{i}", "setting": "", "seed": c[1]} for i, c in enumerate(cells)]}
    lines = identical_lines(df, table)
    assert [line for line in lines if line.startswith("- ")] == [
        "- m: `b` gives exactly the figures of `a` in all 2 cells both finished: on this model the setting that "
        "tells them apart changed nothing."]
    df.loc[df["method"] == "b", "Avg. Score"] += 1e-4  # any figure that differs tells the rows apart
    assert identical_lines(df, table) == []


@pytest.mark.parametrize("change, message", [
    (('column = "avg_score"', 'column = "avg_scor"'), "unknown column 'avg_scor'"),
    (('than = ["amns", "emb"]', 'than = ["amns", "salun"]'), "'salun' is not a method of its cells (table 't1')"),
    (('than = ["amns", "emb"]', 'than = ["lip"]'), "needs a non-empty list of other methods"),
    ((', higher = false', ''), "field 'higher' is missing"),
    (('higher = false', 'higher = "no"'), "must be true or false"),
    (('show = "bar"', 'show = "forgetting"'), 'claims compare the columns of show = "bar"'),
    (('says = "lip scores best"', 'said = "lip scores best"'), "said"),
])
def test_bad_claims_fail_when_the_suite_loads(tmp_path, change, message):
    with pytest.raises(ClipUnlearnError, match=re.escape(message)):
        _suite(tmp_path, text=CLAIMS.replace(*change))


def test_a_config_field_added_since_a_run_is_stale_only_when_the_preset_sets_it_off_its_default():
    """A run recorded before a config field existed did what the field's default does: it is not stale
    for that field; it is when today's preset gives the field another value than its default."""
    from clipunlearn.benchmark.runner import stale_reason
    from clipunlearn.methods import get_method
    from clipunlearn.methods.base import config_json

    lip = get_method("lip")
    now = config_json(lip.build_config("default", "resnet", None, {}))
    default = config_json(lip.config_cls())
    same = next(k for k in now if now[k] == default[k])
    off = next(k for k in now if now[k] != default[k])  # a field the preset sets
    settings = {"method": "lip", "preset": "default"}
    recorded = {k: v for k, v in now.items() if k != same}
    assert stale_reason({"method_config": recorded, "settings": settings, "model": {"family": "resnet"}}) is None
    recorded = {k: v for k, v in now.items() if k != off}
    assert stale_reason({"method_config": recorded, "settings": settings,
                         "model": {"family": "resnet"}}) == f"{off} None -> {now[off]!r}"


def test_records_keep_paths_relative_to_the_suite_folder_and_only_names_outside_it(tmp_path):
    from clipunlearn.benchmark.report import portable

    root = tmp_path / "suite"
    tree = {"out": str(root / "runs" / "a"), "root": str(root), "list": [str(tmp_path / "x" / "audit.toml"), "a/b"],
            "text": "lr 1e-4 / 2", "n": 3, "none": None, "lines": "/first\n/second"}
    assert portable(tree, root) == {"out": "runs/a", "root": ".", "list": ["audit.toml", "a/b"],
                                    "text": "lr 1e-4 / 2", "n": 3, "none": None, "lines": "/first\n/second"}
    assert portable(str(tmp_path / "suite2" / "f"), root) == "f"  # a sibling whose name starts alike is outside


def test_a_command_on_a_page_names_no_folder_of_the_machine(tmp_path):
    from clipunlearn.benchmark.report import shown_command

    words = ["python", "benchmarks/x.py", "--out", "/elsewhere/bench/m", "--data-root=/data/x", str(tmp_path / "a b.md"),
             "--page", "docs/p.md", "--cache-dir", str(tmp_path / "c"), "/elsewhere/f", "--n", "3"]
    assert shown_command(words, tmp_path) == ("python benchmarks/x.py --out OUT --data-root=DATA_ROOT 'a b.md' "
                                              "--page docs/p.md --cache-dir c PATH --n 3")
    assert shown_command(["x", "--out", str(tmp_path)], tmp_path) == "x --out ."
    # the first word has no option before it (not the last word's); a value holding "=" is split at the first one;
    # a bare path holding "=" is no option; an option written --name=value names none of the words after it
    assert shown_command(["/usr/bin/python", "-m", "x", "--verbose"], tmp_path) == "PATH -m x --verbose"
    assert shown_command(["x", "--data=/elsewhere/a=b", "/elsewhere/k=v"], tmp_path) == "x --data=DATA PATH"
    assert shown_command(["x", "--data-root=/d", "/elsewhere/f"], tmp_path) == "x --data-root=DATA_ROOT PATH"
    assert shown_command(["x", "--Xdir", "/elsewhere/f"], tmp_path) == "x --Xdir XDIR"  # only dashes stripped
