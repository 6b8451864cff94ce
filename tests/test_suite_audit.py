"""Audits as a suite evaluation: ``show = "audit"`` tables, ``[audit]`` and ``[[oracles]]`` trained once and
cached by content, resumed like cells, and reported from the run folders."""
from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest

from clipunlearn.benchmark import check_suite, load_suite, plan, run_suite
from clipunlearn.benchmark.oracles import OracleSpec, oracle_path
from clipunlearn.benchmark.report import audit_figures, write_report
from clipunlearn.errors import ClipUnlearnError
from conftest import SUITE_HEADER

AUDITED = SUITE_HEADER.format(name="audited") + """retrieval = false
template_change = false

[[tables]]
name = "forgetting"
methods = [{ method = "lip", options = { n_draws = 2, retain_steps = 2 } }]
targets = [{ dataset = "caltech101", classes = ["leopard"] }]

[[tables]]
name = "audit"
cells = "forgetting"
show = "audit"
group_by = ["dataset", "method"]

[audit]
attacks = ["prompts", "probe", "mia", "oracle"]
seed = 0

[[oracles]]
model = "mini-rn"
exclude = ["caltech101:leopard"]
epochs = 1
datasets = ["caltech101", "cifar10"]
"""


def _suite(tmp_path, text=AUDITED):
    path = tmp_path / "audited.toml"
    path.write_text(text)
    return load_suite(path)


def test_oracles_are_content_hashed_and_matched_to_cells(tmp_path):
    suite = _suite(tmp_path)
    (oracle,) = suite.oracles
    assert oracle == OracleSpec("mini-rn", ("caltech101:leopard",), 1, ("caltech101", "cifar10"))
    assert oracle.oracle_id.startswith("mini-rn-no-leopard-")
    assert replace(oracle, epochs=2).oracle_id != oracle.oracle_id
    assert replace(oracle, exclude=("caltech101:leopard", "cifar10:cat")).oracle_id != oracle.oracle_id
    (cell,) = [c.resolved() for c in suite.cells()]
    assert suite.oracle_for(cell) == oracle and suite.audited() == {cell.run_id}
    assert suite.oracle_for(replace(cell, classes=("leopard", "motorbike"))) is None  # exactly its classes
    assert suite.oracle_for(replace(cell, model="mini-vit")) is None
    assert load_suite("audit").audited()  # the shipped audit suite audits its cells


@pytest.mark.parametrize("change,message", [
    (('attacks = ["prompts", "probe", "mia", "oracle"]', 'attacks = ["promts"]'),
     "audit.attacks: unknown attack 'promts'"),
    (('seed = 0\n\n[[oracles]]', 'seeds = 0\n\n[[oracles]]'), "audit: unknown field 'seeds'. Did you mean 'seed'"),
    (('exclude = ["caltech101:leopard"]', 'exclude = ["caltech101:leoprd"]'),
     "oracles[0]: Class 'leoprd' is not in caltech101 (4 classes). Did you mean 'leopard'?"),
    (('model = "mini-rn"\nexclude', 'model = "RN50"\nexclude'), "oracles[0]: model: 'RN50' is not a zoo model"),
    (('epochs = 1\ndatasets', 'epoch = 1\ndatasets'), "oracles[0]: unknown field 'epoch'"),
    (('show = "audit"', 'show = "forgetting"'), 'no table has show = "audit"'),
])
def test_bad_audit_settings_fail_before_any_cell(tmp_path, data_slice, change, message):
    with pytest.raises(ClipUnlearnError, match=re.escape(message)):
        check_suite(_suite(tmp_path, AUDITED.replace(*change)), str(data_slice))


def test_the_oracle_attack_without_an_oracle_for_a_cell_fails_before_any_cell(tmp_path, data_slice):
    text = AUDITED.replace('exclude = ["caltech101:leopard"]', 'exclude = ["caltech101:motorbike"]')
    out = tmp_path / "out"
    with pytest.raises(ClipUnlearnError, match="no \\[\\[oracles\\]\\] entry leaves out exactly leopard"):
        run_suite(_suite(tmp_path, text), out, str(data_slice), echo=lambda *_: None)
    assert not (out / "runs").exists()


def test_an_audit_table_over_subgroup_cells_is_refused(tmp_path):
    text = SUITE_HEADER.format(name="s") + """
[[tables]]
name = "sub"
methods = [{ method = "ga" }]
subgroups = ["in-domain-flower"]

[[tables]]
name = "audit"
cells = "sub"
show = "audit"
"""
    with pytest.raises(ClipUnlearnError, match="audit reads class runs only"):
        _suite(tmp_path, text)


@pytest.mark.slow
def test_a_suite_trains_its_oracle_once_audits_its_cells_and_reports_them(tmp_path, data_slice):
    suite = _suite(tmp_path)
    out = tmp_path / "out"
    lines: list[str] = []
    from clipunlearn.benchmark import ExecutorOptions

    # the oracle trains in a worker of the process executor, like a cell (not in the suite's own process)
    run_suite(suite, out, str(data_slice), executor="process", options=ExecutorOptions(workers=2, cpus_per_cell=1),
              echo=lines.append)
    (oracle,) = suite.oracles
    weights = oracle_path(out, oracle)
    record = json.loads(weights.with_suffix(".json").read_text())
    assert record["excluded"]["train_images_removed"] == {"caltech101": 6}  # every leopard of the slice
    assert record["oracle_id"] == oracle.oracle_id
    assert any(line.startswith(f"oracle  {oracle.oracle_id}: trained") for line in lines), lines
    (cell,) = [c.resolved() for c in suite.cells()]
    run = out / "runs" / cell.run_id
    audit = json.loads((run / "audit" / "audit.json").read_text())
    # the oracle is named relative to the audit folder (a page that copies the audit names no machine's folder)
    assert (run / "audit" / audit["oracle"]).resolve() == weights.resolve()
    assert audit["models"] == ["original", "forgotten", "oracle"] and not Path(audit["run"]["folder"]).is_absolute()
    assert audit["attacks"] == ["prompts", "probe", "mia", "oracle"]
    assert [p.run_id for p in plan(suite, out, data_root=str(data_slice)).done] == [cell.run_id]
    from clipunlearn.data import load_image_set
    from clipunlearn.evaluation import Evaluator
    from clipunlearn.models import load_clip

    cifar = audit["results"]["oracle"]["per_dataset"]["cifar10"]  # the oracle on the run's other dataset
    results = json.loads((run / "results.json").read_text())
    # a suite's cell keeps only the tensors it changed; the audit puts them back on the model to measure it
    assert results["model_file"]["holds"] == "changed tensors"
    assert (cifar["original"], cifar["forgotten"]) == (results["datasets"]["cifar10"]["before"],
                                                       results["datasets"]["cifar10"]["after"])
    independent = Evaluator(load_clip("mini-rn", "none", weights), progress=False).evaluate(
        load_image_set("cifar10", str(data_slice), "test")).top1
    assert cifar["oracle"] == pytest.approx(independent) and cifar["gap"] == pytest.approx(cifar["forgotten"] - independent)

    # an audit lost (or killed before it moved into place): the cell is to do, and only its audit reruns
    stamp, trained = (run / "results.json").stat().st_mtime_ns, weights.stat().st_mtime_ns
    import shutil

    shutil.rmtree(run / "audit")
    assert [p.run_id for p in plan(suite, out, data_root=str(data_slice)).todo] == [cell.run_id]
    run_suite(suite, out, str(data_slice), echo=lambda *_: None)
    assert (run / "audit" / "audit.json").is_file() and (run / "results.json").stat().st_mtime_ns == stamp
    assert weights.stat().st_mtime_ns == trained  # the cached oracle is not trained again
    again = json.loads((run / "audit" / "audit.json").read_text())
    assert again["results"]["probe"] == audit["results"]["probe"]  # seeded: the same figures

    report = write_report(out, tmp_path / "page").read_text()
    table = pd.read_csv(tmp_path / "page" / "tables" / "audit.csv")
    figures = audit_figures(again)
    for model in ("original", "forgotten", "oracle"):
        assert float(table.loc[0, f"audit probe AUC ({model})"]) == pytest.approx(
            again["results"]["probe"]["auc"][model], abs=5e-4)
    assert float(table.loc[0, "audit MIA AUC (oracle)"]) == pytest.approx(figures["audit MIA AUC (oracle)"], abs=5e-4)
    recovered = sum(v["verdict"] == "recovered" for v in again["verdict"])
    assert str(table.loc[0, "audit attacks recovered"]) == str(recovered)
    copied = tmp_path / "page" / "audits" / cell.run_id
    assert (copied / "audit.md").read_text() == (run / "audit" / "audit.md").read_text()
    assert f"[{cell.run_id}](audits/{cell.run_id}/audit.md)" in report


@pytest.mark.slow
def test_a_failed_oracle_is_recorded_and_its_audits_fail_naming_it(tmp_path, data_slice, monkeypatch):
    import clipunlearn.zoo as zoo

    def broken(*args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(zoo, "train_zoo_model", broken)
    suite = _suite(tmp_path)
    out = tmp_path / "out"
    lines: list[str] = []
    run_suite(suite, out, str(data_slice), echo=lines.append)
    (oracle,) = suite.oracles
    failure = json.loads((out / "failed" / f"oracle-{oracle.oracle_id}.json").read_text())
    assert "out of memory (simulated)" in failure["error"] and any(x.startswith("FAILED  oracle") for x in lines)
    p = plan(suite, out, data_root=str(data_slice))
    (cell,) = p.failed  # the run is there, its audit is not: failed, naming the oracle file it lacks
    assert (out / "runs" / cell.run_id / "results.json").is_file()
    assert "does not exist" in json.loads((out / "failed" / f"{cell.run_id}.json").read_text())["error"]
    assert not oracle_path(out, oracle).exists()


def test_audit_figures_hold_r_and_one_recovered_column_per_judged_attack():
    from clipunlearn.benchmark.report import audit_figures

    audit = {"models": ["original", "forgotten", "oracle"], "thresholds": {"prototype_k": 5},
             "results": {"relearning": {"attacks": ["a", "b"], "score": {"R": 0.25, "R_floor": 0.6, "with_oracle": True}},
                         "weights": {"relative_l2": 0.01, "barrier_others": 0.0},
                         "prototype": {"accuracy": {"5": {"original": 0.8, "forgotten": 0.7, "oracle": 0.5}}}},
             "verdict": [{"attack": "prompts", "verdict": "recovered"}, {"attack": "images", "verdict": "did not recover"},
                         {"attack": "mia", "verdict": "no evidence"}, {"attack": "probe", "verdict": "undefined"},
                         {"attack": "weights", "verdict": "moved"}]}
    row = audit_figures(audit)
    assert row["audit R"] == 0.25 and row["audit R (floor 0)"] == 0.6 and row["audit relearning attacks"] == 2
    assert row["audit prototype k=5 (forgotten)"] == 0.7 and row["audit weight distance (relative)"] == 0.01
    assert (row["audit prompts recovered"], row["audit images recovered"], row["audit mia recovered"]) == (1.0, 0.0, 0.0)
    assert "audit probe recovered" not in row and "audit weights recovered" not in row  # not judged
    assert (row["audit attacks recovered"], row["audit attacks"]) == (1, 3)


def _depth_table(rows: list[dict]) -> tuple[pd.DataFrame, dict]:
    df = pd.DataFrame(rows)
    table = {"name": "depth", "show": "depth", "group_by": ["method"], "goal": {"method": "uproot", "r": 0.3, "kept": 0.95},
             "cells": [{"model": "mini-rn", "run_id": r["run_id"], "setting": ""} for r in rows]}
    return df.assign(model="mini-rn"), table


def _depth_row(run_id: str, method: str, r: float, prompts: float, dogs: float, cars: float, avg: float,
               seed: int = 0) -> dict:
    return {"run_id": run_id, "method": method, "dataset": "caltech101", "classes": "minaret", "seed": seed,
            "audit R": r, "audit prompts recovered": prompts, "audit images recovered": 0.0,
            "audit mia recovered": 0.0, "AF/BF of stanford_dogs": dogs, "AF/BF of stanford_cars": cars,
            "Avg. Score": avg}


def test_the_depth_goal_names_each_part_met_or_missed_with_its_figure():
    from clipunlearn.benchmark.report import depth_goal_lines

    df, table = _depth_table([_depth_row("u0", "uproot", 0.1, 0.0, 0.97, 0.90, 0.04, seed=0),
                              _depth_row("u1", "uproot", 0.3, 1.0, 0.95, 1.00, 0.06, seed=1),
                              _depth_row("l0", "lip", 0.4, 0.0, 0.99, 0.99, 0.10, seed=0),
                              _depth_row("l1", "lip", 0.2, 0.0, 0.99, 0.99, 0.08, seed=1),
                              _depth_row("a0", "amns", 0.35, 0.0, 0.99, 0.99, 0.12, seed=0)])
    lines = depth_goal_lines(df, table)
    line = next(x for x in lines if x.startswith("- mini-rn"))
    # R 0.2 <= 0.3; prompts in 1 of 2 cells (missed); dogs 0.96 and cars 0.95 kept; against lip on both
    # seeds (Avg. 0.05 vs 0.09, R 0.2 vs 0.3) and amns on seed 0 only (Avg. 0.04 vs 0.12, R 0.1 vs 0.35)
    assert "uproot (2 cells) misses 1 of 7 parts" in line
    assert "R 0.200 ≤ 0.3" in line and "prompts recovered in 1 of 2 cells (missed)" in line
    assert "images recovered in 0 of 2 cells" in line and "mia recovered in 0 of 2 cells" in line
    assert "worst other dataset stanford_cars keeps 0.950" in line
    assert ("Avg. Score no worse than each of 2 other methods on the cells both finished "
            "(closest: lip (ours 0.050, theirs 0.090, 2 cells))") in line
    assert ("R below each of 2 other methods on the cells both finished "
            "(closest: lip (ours 0.200, theirs 0.300, 2 cells))") in line
    df.loc[df["run_id"] == "u1", ["audit prompts recovered", "AF/BF of stanford_cars", "audit R"]] = [0.0, 0.9, 0.6]
    line = next(x for x in depth_goal_lines(df, table) if x.startswith("- mini-rn"))
    # R 0.35 > 0.3 by 0.05; against lip R 0.35 vs 0.30 (not below), against amns (seed 0) 0.1 vs 0.35 (below);
    # cars 0.90 < 0.95 by 0.05
    assert "misses 3 of 7 parts" in line and "R 0.350 > 0.3 by 0.050 (missed)" in line
    assert "stanford_cars keeps 0.900 (< 0.95 by 0.050) (missed)" in line
    assert "R not below lip (ours 0.350, theirs 0.300, 2 cells) on the cells both finished (missed)" in line
    df.loc[df["run_id"] == "l1", "audit R"] = float("nan")  # lip's seed 1 not audited yet: seed 0 alone
    line = next(x for x in depth_goal_lines(df, table) if x.startswith("- mini-rn"))
    assert "R below each of 2 other methods on the cells both finished (closest: amns (ours 0.100, theirs 0.350, 1 cell))" in line
    df = df[df["method"] != "uproot"]
    assert "- mini-rn: uproot not run yet" in depth_goal_lines(df, table)


def test_relearning_curves_average_the_attacks_then_the_cells_and_band_the_original_and_oracle():
    from types import SimpleNamespace

    from clipunlearn.benchmark.report import relearning_curves
    from clipunlearn.benchmark.view import Cell

    def cell(rid: str, method: str, forgotten: tuple, original: tuple, oracle: tuple) -> Cell:
        results = SimpleNamespace(method=method, preset="default", ablation=None, raw={}, dataset="caltech101",
                                  classes=["minaret"])
        curves = {"original": {"a": original[0], "b": original[1]}, "forgotten": {"a": forgotten[0], "b": forgotten[1]},
                  "oracle": {"a": oracle[0], "b": oracle[1]}}
        audit = {"results": {"relearning": {"attacks": ["a", "b"], "steps": [0, 5], "curves": curves}}}
        return Cell(rid, Path(rid), results, None, audit)

    cells = {"u0": cell("u0", "uproot", ([0.0, 0.2], [0.0, 0.4]), ([0.8, 0.9], [0.8, 1.0]), ([0.0, 0.1], [0.0, 0.3])),
             "u1": cell("u1", "uproot", ([0.0, 0.0], [0.2, 0.2]), ([0.6, 0.7], [0.6, 0.7]), ([0.0, 0.0], [0.0, 0.0])),
             "x9": cell("x9", "lip", ([0.5, 0.5], [0.5, 0.5]), ([0.9, 0.9], [0.9, 0.9]), ([0.0, 0.0], [0.0, 0.0]))}
    layout = {"tables": [{"show": "depth", "cells": [{"run_id": "u0"}, {"run_id": "u1"}, {"run_id": "gone"}]}]}
    lines = relearning_curves(layout, cells)  # x9 is in no depth table: left out
    (panel,) = lines.panels
    assert panel.ks == (0, 5) and "mean over 2 attacks" in panel.title
    (series,) = panel.series
    # per cell the mean over attacks: u0 (0, 0.3), u1 (0.1, 0.1); then over cells
    assert series.label == "uproot (2 cells)" and series.values == pytest.approx((0.05, 0.2))
    original, oracle = panel.bands  # u0 (0.8, 0.95), u1 (0.6, 0.7); oracle u0 (0, 0.2), u1 (0, 0)
    assert original.label == "original" and original.low == pytest.approx((0.6, 0.7))
    assert original.high == pytest.approx((0.8, 0.95))
    assert oracle.label == "oracle" and oracle.low == pytest.approx((0.0, 0.0)) and oracle.high == pytest.approx((0.0, 0.2))
    assert relearning_curves({"tables": [{"show": "audit", "cells": [{"run_id": "u0"}]}]}, cells) is None


@pytest.mark.parametrize("goal, message", [
    ('goal = { method = "uproot", r = 0.3 }', "needs kept, method, r"),
    ('goal = { method = "uproot", r = 0.3, kept = 0.95, score = 1 }', "unknown"),
])
def test_a_depth_goal_needs_method_r_and_kept(tmp_path, goal, message):
    text = AUDITED.replace('group_by = ["dataset", "method"]\n', 'group_by = ["dataset", "method"]\n' + goal + "\n")
    with pytest.raises(ClipUnlearnError, match="a goal is for show"):
        _suite(tmp_path, text)  # the audit table cannot take one
    text = text.replace('show = "audit"', 'show = "depth"')
    with pytest.raises(ClipUnlearnError, match=message):
        _suite(tmp_path, text)
    ok = AUDITED.replace('show = "audit"\ngroup_by = ["dataset", "method"]\n',
                         'show = "depth"\ngroup_by = ["method"]\ngoal = { method = "lip", r = 0.3, kept = 0.95 }\n')
    table = _suite(tmp_path, ok).tables[1]
    assert table.show == "depth" and dict(table.goal) == {"method": "lip", "r": 0.3, "kept": 0.95}
