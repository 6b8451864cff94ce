"""The flat view of run folders, `clipunlearn query` over it, and `clipunlearn benchmark status`.

The fixture runs are small hand-written results.json files whose before and after differ in every
column (and from every other column), so a column read from the wrong field is caught."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from clipunlearn.cli import main
from clipunlearn.runs.view import COLUMNS, runs_view

DOGS_QUESTION = ("SELECT method, round(avg(other_stanford_dogs_after / other_stanford_dogs_before), 3) AS dogs_kept "
                 "FROM runs WHERE target_after < 0.2 AND other_stanford_dogs_before > 0 "
                 "GROUP BY method ORDER BY dogs_kept DESC")


def _results(run_id: str, method: str, target_after: float, dogs_after: float | None, seed: int = 0,
             dataset: str = "caltech101", **extra) -> dict:
    datasets = {"cifar10": {"before": 0.71, "after": 0.66}}
    if dogs_after is not None:
        datasets["stanford_dogs"] = {"before": 0.4, "after": dogs_after}
    return {
        "schema_version": 2, "model": {"arch": "mini-rn", "source": "zoo", "family": "resnet"}, "method": method,
        "preset": "default", "ablation": None, "dataset": dataset, "classes": ["minaret"],
        "target_before": 0.9, "target_after": target_after,
        "other_classes_before": 0.61, "other_classes_after": 0.57, "datasets": datasets, "avg_score": 0.123,
        "synthetic_acc_before": 1.0, "synthetic_acc_after": 0.25,
        "retrieval": {"before": {"ift": {"target": {"1": 0.95, "5": 0.85, "10": 0.75}},
                                 "ifi": {"target": {"1": 0.55, "5": 0.45, "10": 0.35}}},
                      "after": {"ift": {"target": {"1": 0.05, "5": 0.15, "10": 0.25}},
                                "ifi": {"target": {"1": 0.52, "5": 0.42, "10": 0.32}}}},
        "seconds": {"generation": 10.0, "forgetting": 20.0, "evaluation": 30.0},
        "settings": {"seed": seed, "method": method, "preset": "default", "options": {},
                     "run_spec": {"run_id": run_id}},
        **extra,
    }


def _subgroup() -> dict:
    r = _results("frr-flower-s1", "forget-remind-restore", 0.2, None, seed=1, dataset="in-domain-flower",
                 task="subgroup", ratio_score=87.5, avg_score=None)
    r["classes"] = ["rose"]
    r["setting"] = {"name": "in-domain-flower", "forget": [{"name": "rose", "coarse": "flower"}]}
    r["retrieval"] = {"before": {"flower": {"forget@10": 0.6, "label@10": 0.9}, "rose": {"forget@10": 0.8}},
                      "after": {"flower": {"forget@10": 0.1, "label@10": 0.9}, "rose": {"forget@10": 0.3}}}
    return r


AUDIT = {
    "results": {"relearning": {"score": {"R": 0.25, "R_floor": 0.375}}, "weights": {"relative_l2": 0.0125}},
    "verdict": [{"attack": "prompts", "verdict": "did not recover"}, {"attack": "images", "verdict": "recovered"},
                {"attack": "relearning", "verdict": "did not recover"}, {"attack": "mia", "verdict": "no evidence"},
                {"attack": "weights", "verdict": "moved"},
                {"attack": "oracle (class)", "verdict": "moved toward the oracle"},
                {"attack": "oracle (rest)", "verdict": "drifted from the oracle"}],
    "seconds": {"features": {"cpu": 20.0, "wall": 10.0}, "prompts": {"cpu": 9.0, "wall": 5.0}},
}


def _write(folder: Path, results: dict, audit: dict | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "results.json").write_text(json.dumps(results))
    if audit is not None:
        (folder / "audit").mkdir()
        (folder / "audit" / "audit.json").write_text(json.dumps(audit))


@pytest.fixture
def suite_dir(tmp_path) -> Path:
    """A suite folder: class runs of three methods (and one on stanford_dogs itself), a subgroup run,
    an audited run; a stale copy, a run being written and a cache that the view must leave out."""
    out = tmp_path / "suite"
    runs = out / "runs"
    _write(runs / "lip-a", _results("lip-a", "lip", 0.1, 0.38, precision="fp32",
                                    generation_config={"n_per_class": 16, "seed": 0}), AUDIT)
    _write(runs / "lip-b", _results("lip-b", "lip", 0.15, 0.36, seed=1))
    _write(runs / "amns-a", _results("amns-a", "amns", 0.05, 0.2))
    _write(runs / "emb-a", _results("emb-a", "emb", 0.5, 0.4))  # keeps every dog, but forgets too little
    _write(runs / "emb-dogs", _results("emb-dogs", "emb", 0.1, None, dataset="stanford_dogs"))
    _write(runs / "frr-flower-s1", _subgroup())
    _write(out / "stale" / "lip-a-20250101", _results("lip-a", "lip", 0.9, 0.0))
    _write(runs / ".lip-c.partial", _results("lip-c", "lip", 0.0, 0.0))
    _write(out / "cache" / "x", _results("x", "lip", 0.0, 0.0))
    return out


def test_the_view_has_a_row_per_run_and_each_figure_in_its_column(suite_dir):
    df = runs_view(suite_dir)
    assert list(df.path) == ["runs/amns-a", "runs/emb-a", "runs/emb-dogs", "runs/frr-flower-s1", "runs/lip-a",
                             "runs/lip-b"]
    fixed = [c.name for c in COLUMNS]
    assert [c for c in df.columns if c in fixed] == fixed  # every documented column, in order
    assert list(df.columns[18:22]) == ["other_cifar10_before", "other_cifar10_after", "other_stanford_dogs_before",
                                       "other_stanford_dogs_after"]
    row = df.set_index("run_id").loc["lip-a"]
    expected = {
        "path": "runs/lip-a", "kind": "class", "model": "mini-rn", "method": "lip", "preset": "default",
        "dataset": "caltech101", "classes": "minaret", "n_classes": 1, "seed": 0, "precision": "fp32",
        "n_per_class": 16, "target_before": 0.9, "target_after": 0.1, "other_classes_before": 0.61, "other_classes_after": 0.57,
        "other_cifar10_before": 0.71, "other_cifar10_after": 0.66, "other_stanford_dogs_before": 0.4,
        "other_stanford_dogs_after": 0.38, "avg_score": 0.123, "synthetic_before": 1.0, "synthetic_after": 0.25,
        "ift_p1_before": 0.95, "ift_p5_before": 0.85, "ift_p10_before": 0.75, "ift_p1_after": 0.05,
        "ift_p5_after": 0.15, "ift_p10_after": 0.25, "ifi_p1_before": 0.55, "ifi_p10_after": 0.32,
        "seconds": 60.0, "forget_seconds": 20.0, "audited": True, "audit_recovered": 1, "audit_r": 0.25,
        "audit_r_floor": 0.375, "audit_weight_distance": 0.0125, "audit_prompts": "did not recover",
        "audit_images": "recovered", "audit_relearning": "did not recover", "audit_mia": "no evidence",
        "audit_weights": "moved", "audit_oracle_class": "moved toward the oracle",
        "audit_oracle_rest": "drifted from the oracle", "audit_seconds": 15.0}
    assert {k: row[k] for k in expected} == pytest.approx(expected)
    assert row[["ablation", "options", "score", "audit_probe", "audit_prototype"]].isna().all()
    assert list(df.columns).index("ifi_p5_before") < list(df.columns).index("ifi_p10_before")  # natural order
    sub = df.set_index("run_id").loc["frr-flower-s1"]
    assert (sub.kind, sub.dataset, sub.classes, sub.seed) == ("subgroup", "in-domain-flower", "rose", 1)
    assert pd.isna(sub.precision)  # written before results.json recorded it
    assert sub.score == 87.5
    assert (sub.forget_at10_by_label_before, sub.forget_at10_by_label_after) == (0.6, 0.1)
    assert (sub.forget_at10_by_name_before, sub.forget_at10_by_name_after) == (0.8, 0.3)
    assert sub.isna()[["avg_score", "other_stanford_dogs_before", "ift_p1_before", "audit_r", "n_per_class"]].all()
    assert not sub.audited
    dogs = df.set_index("run_id").loc["emb-dogs"]
    assert dogs.dataset == "stanford_dogs" and dogs.isna()["other_stanford_dogs_after"]


def test_the_view_reads_one_run_folder_and_a_reports_audit_copy(suite_dir, tmp_path):
    one = runs_view(suite_dir / "runs" / "lip-b")
    assert list(one.path) == ["."] and list(one.run_id) == ["lip-b"] and not one.audited[0]
    page = tmp_path / "page"  # a report: records/runs/<id>/results.json, audits/<id>/audit.json
    _write(page / "records" / "runs" / "lip-b", _results("lip-b", "lip", 0.15, 0.36))
    (page / "audits" / "lip-b").mkdir(parents=True)
    (page / "audits" / "lip-b" / "audit.json").write_text(json.dumps(AUDIT))
    df = runs_view(page)
    assert list(df.path) == ["records/runs/lip-b"] and df.audited[0] and df.audit_r[0] == 0.25


def test_query_answers_which_method_keeps_stanford_dogs_best_below_a_target_of_0_2(suite_dir, capsys):
    pytest.importorskip("duckdb")
    assert main(["query", str(suite_dir), DOGS_QUESTION]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [["method", "dogs_kept"], ["lip", "0.925"], ["amns", "0.5"],
                                                ["(2", "rows)"]]


def test_query_writes_csv_and_parquet_that_read_back(suite_dir, tmp_path, capsys):
    duckdb = pytest.importorskip("duckdb")
    import pandas as pd

    sql = "SELECT run_id, seed, audit_r, target_after FROM runs ORDER BY run_id"
    for name in ("answer.csv", "answer.parquet"):
        path = tmp_path / name
        assert main(["query", str(suite_dir), sql, "--to", str(path)]) == 0
        back = duckdb.sql(f"SELECT * FROM '{path}'").df()
        assert list(back.columns) == ["run_id", "seed", "audit_r", "target_after"]
        assert list(back.run_id) == ["amns-a", "emb-a", "emb-dogs", "frr-flower-s1", "lip-a", "lip-b"]
        assert list(back.target_after) == pytest.approx([0.05, 0.5, 0.1, 0.2, 0.1, 0.15])
        assert back.audit_r.isna().sum() == 5 and back.audit_r[4] == 0.25
        stamp = path.read_bytes()
        assert main(["query", str(suite_dir), "SELECT 1 AS x", "--to", str(path)]) == 2  # never overwritten ...
        assert "exists already" in capsys.readouterr().err and path.read_bytes() == stamp
        assert main(["query", str(suite_dir), "SELECT 1 AS x", "--to", str(path), "--force"]) == 0  # ... unless asked
        assert duckdb.sql(f"SELECT * FROM '{path}'").fetchall() == [(1,)]
    assert pd.read_csv(tmp_path / "answer.csv").x.tolist() == [1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answer.csv", "answer.parquet", "suite"]  # no temp file


@pytest.mark.parametrize("case, message", [
    ("missing", "does not exist. Pass a folder of run folders"),
    ("empty", "No run folder (a folder holding results.json) under"),
    ("sql", 'Referenced column "no_such_column" not found'),
    ("suffix", "unknown output suffix '.xlsx'; write a .parquet or a .csv file"),
])
def test_query_bad_inputs_get_one_line_errors(suite_dir, tmp_path, capsys, case, message):
    pytest.importorskip("duckdb")
    folder, sql, extra = str(suite_dir), "SELECT * FROM runs", []
    if case == "missing":
        folder = str(tmp_path / "nowhere")
    elif case == "empty":
        folder = str(tmp_path / "empty")
        (tmp_path / "empty" / "x").mkdir(parents=True)
    elif case == "sql":
        sql = "SELECT no_such_column FROM runs"
    else:
        extra = ["--to", str(tmp_path / "answer.xlsx")]
    assert main(["query", folder, sql, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    if case == "sql":
        assert "table 'runs'" in err and '"SELECT * FROM runs LIMIT 5"' in err and "DESCRIBE runs" in err


def test_query_without_duckdb_names_the_extra(suite_dir, capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "duckdb", None)  # import duckdb raises ImportError
    assert main(["query", str(suite_dir), "SELECT 1"]) == 2
    assert 'pip install -e ".[query]"' in capsys.readouterr().err


def test_every_column_is_documented():
    import clipunlearn.runs.view as view

    docs = (Path(__file__).resolve().parents[1] / "docs" / "benchmark.md").read_text(encoding="utf-8")
    section = docs[docs.index("## Query every run"):]
    for c in COLUMNS:
        assert f"``{c.name}``" in view.__doc__ and f"`{c.name}`" in section, c.name


def test_benchmark_status_counts_the_cells_of_a_suite_folder(suite_dir, capsys):
    out = suite_dir
    stale = _results("lip-b", "lip", 0.15, 0.36, method_config={"lr": 123.0})
    (out / "runs" / "lip-b" / "results.json").write_text(json.dumps(stale))
    (out / "failed").mkdir()
    (out / "failed" / "ulip-a.json").write_text(json.dumps({"run_id": "ulip-a", "error": "no images\ntraceback"}))
    cells = lambda *ids: [{"model": "mini-rn", "run_id": i, "setting": ""} for i in ids]  # noqa: E731
    layout = {"suite": "mine", "source": str(out / "mine.toml"), "tables": [
        {"name": "t1", "show": "forgetting", "cells": cells("lip-a", "lip-b", "amns-a", "ulip-a", "salun-a")},
        {"name": "t2", "show": "audit", "cells": cells("lip-a", "amns-a")}]}  # amns-a: run, but not audited yet
    (out / "suite.json").write_text(json.dumps(layout))
    assert main(["benchmark", "status", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "suite mine: 5 cells, 2 done (1 of them stale), 1 failed, 2 still to run"
    assert lines[1] == "the 2 finished cells took 2m 15s (135s); per cell: mean 68s, median 68s, max 75s (lip-a)"
    # amns-a (run, not yet audited), salun-a and the failed ulip-a: no finished cell of their methods
    assert lines[2] == ("the 3 cells left should take about 3m 22s of cell time (3 by the mean of all finished "
                        "cells); divided among the workers that run them")
    assert lines[3] == "  failed  ulip-a: no images"
    assert re.fullmatch(r"  stale   lip-b: \w+ .* -> .*more\)", lines[4])  # how its config differs
    assert lines[-1] == (f"to run the rest: clipunlearn benchmark --suite {out / 'mine.toml'} --model mini-rn "
                         f"--out {out} --retry-failed --rerun-stale")
    assert main(["benchmark", "status", str(out), "--cells"]) == 0
    listed = [line.split()[:2] for line in capsys.readouterr().out.splitlines() if line.startswith("  ")]
    assert listed == [["done", "lip-a:"], ["done", "lip-b:"], ["failed", "ulip-a:"], ["to", "run"], ["to", "run"],
                      ["stale", "lip-b:"]]


def test_benchmark_status_of_some_tables_and_seeds(suite_dir, capsys):
    out = suite_dir  # lip-a, lip-b, amns-a done (seed 0 in their settings; the layout's seeds below)
    cell = lambda rid, seed=None: {"model": "mini-rn", "run_id": rid, "setting": "",  # noqa: E731
                                   **({} if seed is None else {"seed": seed})}
    layout = {"suite": "mine", "source": str(out / "mine.toml"), "seeds": [0, 1], "tables": [
        {"name": "t1", "show": "forgetting", "cells": [cell("lip-a", 0), cell("lip-b", 1), cell("ulip-a", 1)]},
        {"name": "t2", "show": "forgetting", "cells": [cell("amns-a", 0), cell("salun-a", 0)]},
        # a layout written before cells named their seed: read from the run id
        {"name": "t3", "show": "forgetting", "cells": [cell("emmn-x-y-s1-0123456789ab")]}]}
    (out / "suite.json").write_text(json.dumps(layout))
    status = lambda *a: (main(["benchmark", "status", str(out), *a]), capsys.readouterr())  # noqa: E731
    code, printed = status("--tables", "t2")
    assert code == 0 and printed.out.splitlines()[0] == ("suite mine (tables t2): 2 cells, 1 done (0 of them stale), "
                                                          "0 failed, 1 still to run")
    assert printed.out.splitlines()[-1].endswith(f"--out {out} --tables t2")
    code, printed = status("--seeds", "1", "--tables", "t1,t3")
    assert code == 0 and printed.out.splitlines()[0] == ("suite mine (tables t1, t3; seeds 1): 3 cells, 1 done "
                                                          "(0 of them stale), 0 failed, 2 still to run")
    assert printed.out.splitlines()[-1].endswith("--tables t1,t3 --seeds 1")
    # ulip-a and emmn-x-y, of no finished method, by the mean of every finished cell of the folder, shown or
    # not: lip-b 60 s, lip-a 60 + its audit's 15 s, amns-a 60 s -> 2 x 65 s (lip-b alone would give 2 x 60 s)
    assert printed.out.splitlines()[2] == ("the 2 cells left should take about 2m 10s of cell time (2 by the mean "
                                           "of all finished cells); divided among the workers that run them")
    code, printed = status("--seeds", "0")
    assert code == 0 and printed.out.splitlines()[0].startswith("suite mine (seeds 0): 3 cells, 2 done")
    # bad inputs: one line naming the problem and what to pass
    for args, says in [(["--tables", "t9"], "no table 't9'. Pass some of: t1, t2, t3."),
                       (["--seeds", "4"], "no cell of seed 4 (its seeds: 0, 1)"),
                       (["--seeds", "one"], "--seeds 'one' is not a list of integers")]:
        code, printed = status(*args)
        assert code == 2 and says in printed.err and len(printed.err.strip().splitlines()) == 1, args


def test_a_suite_layout_names_each_cells_seed(tmp_path):
    from clipunlearn.benchmark import load_suite
    from clipunlearn.benchmark.runner import layout

    suite = load_suite("quick")
    cells = [c for t in layout(suite, tmp_path)["tables"] for c in t["cells"]]
    assert cells and all(c["run_id"].endswith(f"-s{c['seed']}-" + c["run_id"][-12:]) for c in cells)


def test_benchmark_status_of_a_folder_that_is_no_suite(suite_dir, tmp_path, capsys):
    assert main(["benchmark", "status", str(suite_dir)]) == 2  # runs, but no suite.json
    assert "holds no suite.json" in capsys.readouterr().err
    assert main(["benchmark", "status", str(tmp_path / "nowhere")]) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_a_finished_benchmark_ends_with_the_command_that_writes_its_report(tmp_path, capsys, monkeypatch):
    import clipunlearn.benchmark as benchmark
    from clipunlearn.benchmark.runner import Plan

    monkeypatch.setattr(benchmark, "run_suite", lambda *a, **k: Plan())
    monkeypatch.setattr(benchmark, "plan", lambda *a, **k: Plan(done=["a cell"]))
    out = tmp_path / "my runs"
    assert main(["benchmark", "--suite", "quick", "--out", str(out)]) == 0
    last = capsys.readouterr().out.splitlines()[-1]
    assert last == f"write its report with: clipunlearn benchmark report '{out}' --to '{out / 'report'}'"
