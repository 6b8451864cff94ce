"""`clipunlearn benchmark status`: each line it prints, built from a status made by hand (the counts from
a suite folder are tested in test_query.py), its durations, and its errors in full."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from clipunlearn.benchmark import status as status_module
from clipunlearn.benchmark.status import SuiteStatus, read_layout, status_lines, suite_status
from clipunlearn.errors import ClipUnlearnError


@pytest.mark.parametrize("seconds, shown", [
    (0, "0s"), (59.4, "59s"), (59.6, "1m 00s"), (60, "1m 00s"), (61, "1m 01s"), (3599, "59m 59s"),
    (3600, "1h 00m"), (3661, "1h 01m"), (7140, "1h 59m"), (7325, "2h 02m"), (36000, "10h 00m")])
def test_a_duration_reads_in_hours_minutes_or_seconds(seconds, shown):
    assert status_module._duration(seconds) == shown


def _status(**kw) -> SuiteStatus:
    s = SuiteStatus("mine", "/suites/mine.toml", models=["mini-rn", "mini-vit"])
    for k, v in kw.items():
        setattr(s, k, v)
    return s


def test_the_lines_name_what_is_left_and_the_command_that_runs_it():
    s = _status(done=["d1", "d2"], seconds={"d1": 30.0}, todo=[f"t{i}" for i in range(7)],
                failed={f"f{i}": f"boom {i}" for i in range(7)}, tables=["t1", "bar"], seeds=[1, 2])
    lines = status_lines(s, "runs/x")
    assert lines[0] == ("suite mine (tables t1, bar; seeds 1, 2): 16 cells, 2 done (0 of them stale), 7 failed, "
                        "7 still to run")
    assert lines[1] == "the 1 finished cells took 30s (30s); per cell: mean 30s, median 30s, max 30s (d1)"
    assert lines[2] == ("the 14 cells left should take about 7m 00s of cell time (14 by the mean of all finished "
                        "cells); divided among the workers that run them")
    assert lines[3:9] == [f"  failed  f{i}: boom {i}" for i in range(5)] + [
        "  ... and 2 more failed (--cells lists every cell)"]
    assert lines[9] == ("to run the rest: clipunlearn benchmark --suite /suites/mine.toml --model mini-rn,mini-vit "
                        "--out runs/x --retry-failed --tables t1,bar --seeds 1,2")
    assert len(lines) == 10
    every = status_lines(s, "runs/x", cells=True)
    assert every[3:5] == ["  done    d1: 30s", "  done    d2"]  # d2's run has no seconds
    assert every[5:12] == [f"  failed  f{i}: boom {i}" for i in range(7)]
    assert every[12:19] == [f"  to run  t{i}" for i in range(7)]


def _rid(stem: str, seed: int) -> str:
    return f"{stem}-s{seed}-{seed:012x}"


def test_the_cells_left_are_estimated_by_the_same_cell_then_its_method_then_every_cell():
    """Each way of estimating, checked against the sums written out by hand; a method whose name
    starts another's (lip, lip-foster) is told apart by the longest name."""
    seconds = {_rid("lip-caltech101-minaret", 0): 10.0, _rid("lip-caltech101-minaret", 1): 20.0,
               _rid("lip-caltech101-euphonium", 0): 40.0, _rid("lip-foster-caltech101-minaret", 0): 100.0,
               _rid("forget-remind-restore@no-anchor-in-domain-car-car", 0): 300.0}
    methods = {rid: rid.split("-caltech101")[0].split("-in-domain")[0].split("@")[0] for rid in seconds}
    assert methods[_rid("lip-foster-caltech101-minaret", 0)] == "lip-foster"
    todo = [_rid("lip-caltech101-minaret", 2),  # same cell: mean(10, 20) = 15
            _rid("lip-caltech101-platypus", 0),  # same method: lip's cells 10, 20, 40 -> 70 / 3
            _rid("lip-foster-caltech101-euphonium", 1),  # same method, lip-foster (not lip): 100
            _rid("forget-remind-restore@short-forgetting-in-domain-car-car", 0),  # same method (an ablation): 300
            _rid("emb-caltech101-minaret", 0)]  # no finished cell of emb: the mean of all, 470 / 5 = 94
    s = _status(done=list(seconds), seconds=seconds, methods=methods, todo=todo[:4], failed={todo[4]: "boom"})
    rest = status_module.estimate_rest(s)
    assert rest is not None
    assert rest.seconds == pytest.approx(15 + 70 / 3 + 100 + 300 + 94)
    assert rest.by == {"same cell at another seed": 1, "same method": 3, "mean of all finished cells": 1}
    line = status_lines(s, "x")[2]
    assert line == ("the 5 cells left should take about 8m 52s of cell time (1 by the same cell at another seed, "
                    "3 by the same method, 1 by the mean of all finished cells); divided among the workers that run them")
    assert status_module.estimate_rest(_status(todo=["t"])) is None  # nothing finished: no estimate
    assert status_module.estimate_rest(_status(done=["d"], seconds={"d": 5.0})) is None  # nothing left


def test_a_folder_with_nothing_left_prints_no_command_and_a_shipped_suite_is_named():
    assert status_lines(_status(done=["d"]), "x") == ["suite mine: 1 cells, 1 done (0 of them stale), 0 failed, "
                                                      "0 still to run"]
    shipped = _status(todo=["t"], models=[])
    shipped.suite, shipped.source = "quick", "/anywhere/quick.toml"
    assert status_lines(shipped, "my runs")[-1] == "to run the rest: clipunlearn benchmark --suite quick --out 'my runs'"
    shipped.source = "/anywhere/other.toml"  # a file of the same suite name that is not the shipped one
    assert status_lines(shipped, "x")[-1] == "to run the rest: clipunlearn benchmark --suite /anywhere/other.toml --out x"
    stale = _status(done=["d"], stale={"d": "lr 1 -> 2"}, seeds=[0])
    assert status_lines(stale, "x")[1:] == ["  stale   d: lr 1 -> 2", "to run the rest: clipunlearn benchmark --suite "
                                            "/suites/mine.toml --model mini-rn,mini-vit --out x --rerun-stale --seeds 0"]


def test_a_layout_without_a_name_source_tables_or_seeds_still_answers(tmp_path):
    (tmp_path / "suite.json").write_text(json.dumps({}))
    s = suite_status(tmp_path)
    assert (s.suite, s.source, s.cells, s.models) == ("?", "", 0, [])
    cell = {"model": "m", "run_id": "lip-x-y-s0-0123456789ab", "setting": ""}
    (tmp_path / "suite.json").write_text(json.dumps({"suite": "mine", "seeds": [0, 2], "tables": [
        {"name": "t", "show": "forgetting", "cells": [cell]}]}))
    assert suite_status(tmp_path, seeds=[2]).cells == 0  # a seed of the suite with no cell in the folder yet
    assert suite_status(tmp_path).todo == ["lip-x-y-s0-0123456789ab"]
    assert status_lines(suite_status(tmp_path), "x")[-1] == "to run the rest: clipunlearn benchmark --suite mine " \
                                                            "--model m --out x"
    (tmp_path / "suite.json").write_text(json.dumps({"tables": [{"name": "t", "show": "forgetting", "cells": [cell]}]}))
    assert suite_status(tmp_path, seeds=[0]).todo == ["lip-x-y-s0-0123456789ab"]  # no seeds listed: the cells' own


def test_a_failed_cells_line_is_its_errors_first_line_or_says_why_there_is_none(tmp_path):
    failed = tmp_path / "failed"
    failed.mkdir()
    (failed / "a.json").write_text(json.dumps({"error": "\n  first line \nsecond"}))
    (failed / "b.json").write_text(json.dumps({"error": "  \n"}))
    (failed / "c.json").write_text(json.dumps({"run_id": "c"}))
    (failed / "d.json").write_text("{not json")
    assert status_module._first_error_line(tmp_path, "a") == "first line"
    assert status_module._first_error_line(tmp_path, "b") == "?"
    assert status_module._first_error_line(tmp_path, "c") == "?"
    assert status_module._first_error_line(tmp_path, "d") == "(its failure record cannot be read)"
    assert status_module._first_error_line(tmp_path, "missing") == "(its failure record cannot be read)"


def test_each_error_names_the_problem_and_what_to_do_in_full(tmp_path):
    def message(call) -> str:
        with pytest.raises(ClipUnlearnError) as e:
            call()
        return str(e.value)

    nowhere, runs = tmp_path / "nowhere", tmp_path / "runs"
    runs.mkdir()
    assert message(lambda: read_layout(nowhere)) == (
        f"{str(nowhere)!r} is not a folder. Pass the --out folder of clipunlearn benchmark.")
    assert message(lambda: read_layout(runs)) == (
        f"{str(runs)!r} holds no suite.json: it is not the --out folder of clipunlearn benchmark (a suite writes it "
        f"before its first cell). For any folder of runs: clipunlearn query {runs} \"SELECT * FROM runs\".")
    (runs / "suite.json").write_text("{half")
    assert message(lambda: read_layout(runs)).startswith(
        f"{str(runs / 'suite.json')!r} cannot be read as JSON (Expecting property name")
    assert message(lambda: read_layout(runs)).endswith("). Rerun the suite into the folder to write it again.")
    no_seed = {"model": "m", "run_id": "hand-made", "setting": ""}
    assert message(lambda: status_module._seed(no_seed)) == (
        "cell 'hand-made' of suite.json names no seed. Run the suite into the folder again (--dry-run is enough) to "
        "rewrite suite.json, or leave out --seeds.")
    assert status_module._seed({"run_id": "hand-made", "seed": "3"}) == 3
    assert status_module._seed({"run_id": "lip-caltech101-a-s12-0123456789ab"}) == 12


def test_a_done_cells_seconds_are_its_runs_and_its_audits(tmp_path, monkeypatch):
    import pandas as pd

    import clipunlearn.runs.view as view

    monkeypatch.setattr(view, "runs_view", lambda out: pd.DataFrame(
        {"run_id": ["a", "b", "c"], "seconds": [10.0, None, 5.0], "audit_seconds": [2.5, 4.0, None],
         "method": ["lip", "emb", "lip"]}))
    seconds, methods = status_module._seconds(Path(tmp_path), ["a", "b", "c", "gone"])
    assert seconds == {"a": 12.5, "b": 4.0, "c": 5.0} and methods == {"a": "lip", "b": "emb", "c": "lip"}
    assert all(type(v) is float for v in status_module._seconds(Path(tmp_path), ["a", "b"])[0].values())
    assert status_module._seconds(Path(tmp_path), []) == ({}, {})


def test_the_cells_done_elsewhere_are_the_hidden_ones_judged_with_every_tables_audit(monkeypatch, tmp_path):
    """The reference for the estimate: the layout's cells that --tables / --seeds hide, in layout order,
    each judged done as the runner does, audited where any table of the layout audits it."""
    asked: list[tuple[str, bool]] = []

    def state(out, rid, audited):
        asked.append((rid, audited))
        return ("done" if rid != "pending" else "todo"), None

    monkeypatch.setattr(status_module, "cell_state", state)
    layout = {"tables": [{"name": "t1", "show": "forgetting", "cells": [{"run_id": r} for r in ("a", "b", "pending")]},
                         {"name": "t2", "show": "audit", "cells": [{"run_id": "b"}, {"run_id": "c"}]}]}
    assert status_module._done_elsewhere(tmp_path, layout, {"a"}) == ["b", "c"]
    assert asked == [("b", True), ("pending", False), ("c", True)]
