"""Unit tests of the benchmark report (``benchmark/report.py``) on small hand-built inputs (issue 35: pin
every number and every word a user reads on a results page): each figure, rounding, sign, order, the
goal and claim wording, the missing cells shown as such, and what the plots are given to draw.
Expected values are computed by hand in the comments. No suite is run, no model loaded, no HTML built."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from clipunlearn.benchmark import report
from clipunlearn.benchmark.report import (
    audit_figures,
    claim_lines,
    columns_for,
    depth_goal_lines,
    frame,
    generic_tables,
    goal_lines,
    identical_lines,
    suite_table,
)
from clipunlearn.benchmark.view import Band, BarGroup, Bars, Cell, Lines, Mean, Panel, Point, Series
from clipunlearn.errors import ClipUnlearnError
from clipunlearn.runs.results import parse_results


def _raw(rid: str, *, method: str = "lip", preset: str = "default", ablation: str | None = None,
         options: dict[str, Any] | None = None, arch: str = "mini-rn", dataset: str = "caltech101",
         classes: tuple[str, ...] = ("leopard",), seed: int = 0, target: tuple[float, float] = (0.8, 0.2),
         other: tuple[float, float] = (0.5, 0.25), datasets: dict[str, tuple[float, float]] | None = None,
         avg: float | None = 0.125, **extra: Any) -> dict[str, Any]:
    """A results.json dict of one cell (before, after of the target, the other classes and each dataset)."""
    return {"method": method, "preset": preset, "ablation": ablation, "model": {"arch": arch}, "dataset": dataset,
            "classes": list(classes), "target_before": target[0], "target_after": target[1],
            "other_classes_before": other[0], "other_classes_after": other[1],
            "datasets": {k: {"before": b, "after": a} for k, (b, a) in (datasets or {}).items()}, "avg_score": avg,
            "settings": {"seed": seed, "options": options or {}, "run_spec": {"run_id": rid}}, **extra}


def _run(rid: str, **kw: Any):
    return parse_results(_raw(rid, **kw))


def _cells(ids, model: str = "mini-rn", setting: str = "") -> list[dict[str, str]]:
    return [{"model": model, "run_id": rid, "setting": setting} for rid in ids]


# --- one row per run: frame, _label, _run_id, _ratios, _subgroup_retrieval -----------------------------------

def test_a_rows_label_names_the_preset_ablation_and_options_sorted_by_name():
    assert report._label(_run("a")) == "lip"  # the default preset, no ablation, no options: the method alone
    r = _run("a", preset="strong", ablation="no_retain", options={"lr": 0.001, "epochs": 2})
    assert report._label(r) == "lip (strong) +no_retain [epochs=2, lr=0.001]"
    assert report._label(_run("a", options={"b": "x"})) == "lip [b=x]"
    assert report._label(_run("a", ablation="solo")) == "lip +solo"
    no_settings = {k: v for k, v in _raw("a").items() if k != "settings"}
    assert report._label(parse_results(no_settings)) == "lip"


def test_a_runs_id_is_its_run_spec_s_or_empty():
    assert report._run_id(_run("lip-x-s0")) == "lip-x-s0"
    assert report._run_id(parse_results({k: v for k, v in _raw("a").items() if k != "settings"})) == ""
    assert report._run_id(parse_results({**_raw("a"), "settings": {"seed": 1}})) == ""
    assert report._run_id(parse_results({**_raw("a"), "settings": None})) == ""


def test_frame_holds_every_figure_of_a_class_run_under_its_column_in_order():
    raw = _raw("r1", classes=("leopard", "minaret"), seed=3, target=(0.8, 0.2), other=(0.5, 0.25),
               datasets={"dogs": (0.5, 0.375), "cars": (0.25, 0.25)}, avg=0.125, zero_shot="ZS",
               retrieval={w: {"ift": {"target": {"1": 1.0 - d, "10": 0.5 - d}}, "ifi": {"target": {"5": 0.75 - d}}}
                          for w, d in (("before", 0.0), ("after", 0.25))},
               error_analysis={"pooled": {"n_turned_wrong": 12, "share_rank1": 0.5, "share_rank_le2": 0.75,
                                          "mean_std_logit_gap": 0.3}, "dogs": {"n_turned_wrong": 99}},
               synthetic_acc_before=0.9, synthetic_acc_after=0.125,
               template_change={"before": {"target": 0.7, "other_classes": 0.6},
                                "after": {"target": 0.1, "other_classes": 0.55}, "avg_score": 0.2})
    df = frame([parse_results(raw)])
    assert list(df.columns) == [
        "run_id", "model", "method", "kind", "dataset", "classes", "n_classes", "seed", "target BF", "target AF",
        "other classes BF", "other classes AF", "dogs BF", "dogs AF", "cars BF", "cars AF", "Avg. Score",
        "target AF/BF", "other classes AF/BF", "other datasets AF/BF (worst)", "AF/BF of dogs", "AF/BF of cars",
        "IFT P@1 BF", "IFT P@10 BF", "IFT P@1 AF", "IFT P@10 AF", "IFI P@5 BF", "IFI P@5 AF",
        "turned wrong", "fell 1 rank", "fell ≤ 2 ranks", "std. logit gap", "synthetic BF", "synthetic AF",
        "|synthetic AF - target AF|", "changed templates: target BF", "changed templates: target AF",
        "changed templates: other classes BF", "changed templates: other classes AF", "changed templates: Avg. Score"]
    row = df.iloc[0].to_dict()
    assert {k: row[k] for k in ("run_id", "model", "method", "kind", "dataset", "classes", "n_classes", "seed")} == {
        "run_id": "r1", "model": "mini-rn", "method": "lip", "kind": "ZS", "dataset": "caltech101",
        "classes": "leopard, minaret", "n_classes": 2, "seed": 3}
    assert (row["target BF"], row["target AF"], row["other classes BF"], row["other classes AF"]) == (0.8, 0.2, 0.5, 0.25)
    assert (row["dogs BF"], row["dogs AF"], row["cars BF"], row["cars AF"], row["Avg. Score"]) == (
        0.5, 0.375, 0.25, 0.25, 0.125)
    # after/before: target 0.2/0.8, other classes 0.25/0.5, dogs 0.375/0.5 = 0.75 (the worst), cars 1
    assert row["target AF/BF"] == pytest.approx(0.25) and row["other classes AF/BF"] == 0.5
    assert (row["other datasets AF/BF (worst)"], row["AF/BF of dogs"], row["AF/BF of cars"]) == (0.75, 0.75, 1.0)
    assert [row[c] for c in ("IFT P@1 BF", "IFT P@10 BF", "IFT P@1 AF", "IFT P@10 AF", "IFI P@5 BF", "IFI P@5 AF")] \
        == [1.0, 0.5, 0.75, 0.25, 0.75, 0.5]
    assert [row[c] for c in ("turned wrong", "fell 1 rank", "fell ≤ 2 ranks", "std. logit gap")] == [12, 0.5, 0.75, 0.3]
    assert (row["synthetic BF"], row["synthetic AF"]) == (0.9, 0.125)
    assert row["|synthetic AF - target AF|"] == pytest.approx(0.075)  # |0.125 - 0.2|, not the signed -0.075
    assert [row[c] for c in df.columns if c.startswith("changed templates")] == [0.7, 0.1, 0.6, 0.55, 0.2]


def test_frame_of_a_bare_run_leaves_out_what_it_did_not_measure():
    raw = {k: v for k, v in _raw("r", datasets={}).items() if k != "settings"}
    df = frame([parse_results(raw)])
    assert list(df.columns) == [
        "run_id", "model", "method", "kind", "dataset", "classes", "n_classes", "seed", "target BF", "target AF",
        "other classes BF", "other classes AF", "Avg. Score", "target AF/BF", "other classes AF/BF",
        "other datasets AF/BF (worst)", "synthetic BF", "synthetic AF"]
    row = df.iloc[0]
    assert (row["run_id"], row["kind"], row["seed"]) == ("", "", 0)
    assert row["other datasets AF/BF (worst)"] is None and row["synthetic AF"] is None
    # a synthetic accuracy but no target after: no difference column
    partial = frame([parse_results({**raw, "synthetic_acc_before": 0.5, "synthetic_acc_after": 0.25,
                                    "target_after": None})])
    assert "|synthetic AF - target AF|" not in partial.columns


def test_after_over_before_is_none_without_a_before_or_an_after():
    r = _run("a", target=(0.0, 0.1), other=(0.5, None), datasets={"dogs": (0.0, 0.2), "cars": (0.5, 0.25)})
    assert report._ratios(r) == {"target AF/BF": None, "other classes AF/BF": None,
                                 "other datasets AF/BF (worst)": 0.5, "AF/BF of dogs": None, "AF/BF of cars": 0.5}
    none = _run("a", datasets={"dogs": (None, 0.2)})
    assert report._ratios(none)["other datasets AF/BF (worst)"] is None


def _subgroup_raw(rid: str = "s", **kw: Any) -> dict[str, Any]:
    return _raw(rid, task="subgroup", ratio_score=87.5, setting={"forget": [
        {"name": "rose", "coarse": "flower"}, {"name": "tulip", "coarse": None}]},
        retrieval={"before": {"flower": {"forget@5": 0.25, "forget@10": 0.5, "label@10": 0.9}, "rose": {"forget@10": 0.75}},
                   "after": {"flower": {"forget@5": 0.0, "forget@10": 0.125, "label@10": 0.9}, "rose": {"forget@10": 0.25}}},
        **kw)


def test_a_subgroup_run_keeps_retain_its_score_and_forget_at_the_largest_k():
    df = frame([parse_results(_subgroup_raw())])
    row = df.iloc[0]
    assert (row["retain BF"], row["retain AF"], row["Score"]) == (0.5, 0.25, 87.5)
    assert "other classes BF" not in df.columns and "IFT P@1 BF" not in df.columns
    forget = [c for c in df.columns if c.startswith("forget@")]
    # k = 10 (the largest, compared as numbers: "5" > "10" as text); "flower" is a coarse label, "rose" a name
    assert forget == ["forget@10 by coarse label BF", "forget@10 by coarse label AF",
                      "forget@10 by subgroup name BF", "forget@10 by subgroup name AF"]
    assert [row[c] for c in forget] == [0.5, 0.125, 0.75, 0.25]
    assert report._subgroup_retrieval(parse_results({**_subgroup_raw(), "retrieval": None})) == {}


# --- which columns each view shows ---------------------------------------------------------------------------

_ALL = ["run_id", "target BF", "target AF", "other classes BF", "other classes AF", "dogs BF", "dogs AF",
        "Avg. Score", "target AF/BF", "IFT P@1 BF", "IFT P@1 AF", "IFI P@5 AF", "turned wrong", "fell 1 rank",
        "std. logit gap", "synthetic BF", "synthetic AF", "changed templates: target BF",
        "changed templates: Avg. Score", "audit R", "audit prompts recovered", "audit images recovered",
        "other datasets AF/BF (worst)", "retain BF", "retain AF", "forget@10 by coarse label BF",
        "forget@10 by coarse label AF", "Score", "other classes AF/BF"]


@pytest.mark.parametrize("show, expected", [
    ("forgetting", ["target BF", "target AF", "other classes BF", "other classes AF", "dogs BF", "dogs AF",
                    "retain BF", "retain AF", "forget@10 by coarse label BF", "forget@10 by coarse label AF",
                    "Avg. Score"]),
    ("retrieval", ["IFT P@1 BF", "IFT P@1 AF", "IFI P@5 AF"]),
    ("errors", ["turned wrong", "fell 1 rank", "std. logit gap"]),
    ("verification", ["target BF", "target AF", "synthetic BF", "synthetic AF", "Avg. Score"]),
    ("template", ["changed templates: target BF", "changed templates: Avg. Score"]),
    ("bar", ["target AF/BF", "other classes AF/BF", "other datasets AF/BF (worst)", "Avg. Score"]),
    ("audit", ["audit R", "audit prompts recovered", "audit images recovered"]),
    ("depth", ["audit R", "audit prompts recovered", "audit images recovered", "target AF", "other classes AF/BF",
               "other datasets AF/BF (worst)", "Avg. Score"]),
    ("subgroup", ["target BF", "target AF", "dogs BF", "dogs AF", "retain BF", "retain AF",
                  "forget@10 by coarse label BF", "forget@10 by coarse label AF", "Score"]),
])
def test_each_view_shows_its_columns_in_order(show, expected):
    assert columns_for(show, pd.DataFrame(columns=_ALL)) == expected


def test_views_of_listed_columns_show_only_those_measured():
    df = pd.DataFrame(columns=["target BF", "fell ≤ 2 ranks", "audit mia recovered", "Avg. Score"])
    assert columns_for("errors", df) == ["fell ≤ 2 ranks"]
    assert columns_for("verification", df) == ["target BF", "Avg. Score"]
    assert columns_for("depth", df) == ["audit mia recovered", "Avg. Score"]
    with pytest.raises(ClipUnlearnError, match=r"^Unknown table view 'bars'\.$"):
        columns_for("bars", df)


# --- the audit's figures -------------------------------------------------------------------------------------

def _audit(**results: Any) -> dict[str, Any]:
    verdict = results.pop("verdict", [])
    return {"models": ["original", "forgotten", "oracle"], "thresholds": results.pop("thresholds", {}),
            "results": results, "verdict": verdict}


def test_audit_figures_name_each_attack_s_figure_per_model():
    audit = _audit(
        thresholds={"prototype_k": 3},
        prompts={"before": 0.9, "best_after": {"accuracy": {"original": 0.8, "forgotten": 0.25}}},
        images={"best_after": {"accuracy": {"original": 0.7, "forgotten": 0.125, "oracle": 0.1}}},
        probe={"auc": {"original": 0.99, "forgotten": 0.75, "oracle": 0.5}},
        prototype={"accuracy": {"3": {"original": 0.6, "forgotten": 0.2}, "5": {"original": 0.0}}},
        relearning={"attacks": ["a", "b", "c"], "score": {"R": 0.25, "R_floor": 0.5}},
        weights={"relative_l2": 0.01, "barrier_others": 0.02},
        mia={"threshold_auc": {"original": 0.6, "forgotten": 0.55, "oracle": 0.52},
             "minus_oracle": {"forgotten": {"interval": [-0.03, 0.07]}, "original": {"interval": [0.02, 0.1]}}},
        oracle={"kl_to_oracle": {"original": {"target": 2.0, "others": 0.5},
                                 "forgotten": {"target": 0.25, "others": 0.125}}},
        verdict=[{"attack": "prompts", "verdict": "recovered"}, {"attack": "images", "verdict": "did not recover"},
                 {"attack": "mia", "verdict": "no evidence"}, {"attack": "probe", "verdict": "undefined"}])
    assert audit_figures(audit) == {
        "audit run template (original)": 0.9,
        "audit best other prompt (original)": 0.8, "audit best other prompt (forgotten)": 0.25,
        "audit best other prompt (oracle)": None,
        "audit best augmentation (original)": 0.7, "audit best augmentation (forgotten)": 0.125,
        "audit best augmentation (oracle)": 0.1,
        "audit probe AUC (original)": 0.99, "audit probe AUC (forgotten)": 0.75, "audit probe AUC (oracle)": 0.5,
        "audit prototype k=3 (original)": 0.6, "audit prototype k=3 (forgotten)": 0.2,
        "audit prototype k=3 (oracle)": None,
        "audit R": 0.25, "audit R (floor 0)": 0.5, "audit relearning attacks": 3,
        "audit weight distance (relative)": 0.01, "audit loss barrier": 0.02,
        "audit MIA AUC (original)": 0.6, "audit MIA AUC (forgotten)": 0.55, "audit MIA AUC (oracle)": 0.52,
        "audit MIA AUC − oracle's, interval low (forgotten)": -0.03,
        "audit MIA AUC − oracle's, interval low (original)": 0.02,
        "audit KL to oracle, class's images (original)": 2.0, "audit KL to oracle, class's images (forgotten)": 0.25,
        "audit KL to oracle, other images (original)": 0.5, "audit KL to oracle, other images (forgotten)": 0.125,
        "audit attacks recovered": 1, "audit attacks": 3,
        "audit prompts recovered": 1.0, "audit images recovered": 0.0, "audit mia recovered": 0.0}


def test_audit_figures_leave_out_skipped_attacks_and_read_defaults():
    audit = _audit(
        prompts={"before": 0.9, "best_after": None},
        images={"skipped": "no augmentations"}, probe={"skipped": "x", "auc": {"original": 1.0}},
        prototype={"accuracy": {"5": {"original": 0.5, "forgotten": 0.25, "oracle": 0.0}}},
        relearning={}, mia={"skipped": "no split"},
        verdict=[{"attack": "prompts", "verdict": "did not recover"}])
    assert audit_figures(audit) == {
        "audit run template (original)": 0.9, "audit best other prompt (original)": None,
        "audit best other prompt (forgotten)": None, "audit best other prompt (oracle)": None,
        "audit prototype k=5 (original)": 0.5, "audit prototype k=5 (forgotten)": 0.25,
        "audit prototype k=5 (oracle)": 0.0,  # k: 5 when the thresholds do not say
        "audit R": None, "audit R (floor 0)": None, "audit relearning attacks": 0,
        "audit attacks recovered": 0, "audit attacks": 1, "audit prompts recovered": 0.0}
    no_thresholds = {k: v for k, v in _audit(prototype={"accuracy": {"5": {"forgotten": 0.5}}}).items() if k != "thresholds"}
    assert audit_figures(no_thresholds)["audit prototype k=5 (forgotten)"] == 0.5
    # a membership attack without an oracle: its AUCs, no interval against the oracle's
    row = audit_figures(_audit(mia={"threshold_auc": {"original": 0.5}}, prototype={"accuracy": {}}))
    assert row == {"audit MIA AUC (original)": 0.5, "audit MIA AUC (forgotten)": None, "audit MIA AUC (oracle)": None,
                   "audit prototype k=5 (original)": None, "audit prototype k=5 (forgotten)": None,
                   "audit prototype k=5 (oracle)": None, "audit attacks recovered": 0, "audit attacks": 0}


# --- tables: mean ± std per row ------------------------------------------------------------------------------

def test_a_tables_cells_are_mean_and_population_std_formatted_per_column():
    # lip: Score 80 and 90 -> 85.0 ± 5.0; turned wrong 3 and 4 -> 3.5 ± 0.5; target AF 0.25 and 0.75 -> 0.500 ± 0.250
    # amns (one run): no std; its target AF missing -> "–"; "n/a" read as missing
    df = pd.DataFrame([
        {"model": "m", "method": "lip", "Score": 80.0, "turned wrong": 3, "target AF": 0.25, "dogs AF": None},
        {"model": "m", "method": "lip", "Score": 90.0, "turned wrong": 4, "target AF": 0.75, "dogs AF": None},
        {"model": "m", "method": "amns", "Score": 70.0, "turned wrong": 1, "target AF": "n/a", "dogs AF": None}])
    out = report._mean_std(df, ["model", "method"], ["target AF", "Score", "turned wrong", "dogs AF", "absent"])
    assert list(out.columns) == ["model", "method", "target AF", "Score", "turned wrong", "runs"]
    assert out.to_dict("records") == [
        {"model": "m", "method": "amns", "target AF": "–", "Score": "70.0", "turned wrong": "1.0", "runs": 1},
        {"model": "m", "method": "lip", "target AF": "0.500 ± 0.250", "Score": "85.0 ± 5.0",
         "turned wrong": "3.5 ± 0.5", "runs": 2}]


def test_rows_are_sorted_by_their_keys_and_a_missing_key_is_a_row_of_its_own():
    df = pd.DataFrame([{"model": "m", "kind": k, "x": v} for k, v in (("ZS", 0.5), (None, 0.25), ("FS", 0.125))])
    out = report._mean_std(df, ["model", "kind"], ["x"])
    assert list(out["kind"].fillna("none")) == ["FS", "ZS", "none"]
    assert list(out["x"]) == ["0.125", "0.500", "0.250"]


def test_a_folder_without_a_layout_gets_tables_per_method_per_class_and_retrieval():
    a = _run("a", classes=("leopard",), target=(0.5, 0.25), avg=0.25, zero_shot="ZS")
    b = _run("b", classes=("minaret",), target=(0.5, 0.125), avg=0.5, zero_shot="ZS")
    c = _run("c", classes=("leopard",), method="amns", target=(0.5, 0.5), avg=0.0, zero_shot="ZS")
    tables = generic_tables(frame([a, b, c]))
    assert list(tables) == ["methods", "classes"]  # no retrieval measured: no retrieval table
    assert tables["methods"].to_dict("records") == [
        {"model": "mini-rn", "dataset": "caltech101", "method": "amns", "kind": "ZS", "target BF": "0.500",
         "target AF": "0.500", "other classes BF": "0.500", "other classes AF": "0.250", "Avg. Score": "0.000",
         "runs": 1},
        {"model": "mini-rn", "dataset": "caltech101", "method": "lip", "kind": "ZS", "target BF": "0.500 ± 0.000",
         "target AF": "0.188 ± 0.062", "other classes BF": "0.500 ± 0.000", "other classes AF": "0.250 ± 0.000",
         "Avg. Score": "0.375 ± 0.125", "runs": 2}]
    assert [(r["classes"], r["method"], r["target AF"], r["runs"]) for r in tables["classes"].to_dict("records")] == [
        ("leopard", "amns", "0.500", 1), ("leopard", "lip", "0.250", 1), ("minaret", "lip", "0.125", 1)]
    retrieval = {"before": {"ift": {"target": {"1": 1.0}}, "ifi": {"target": {}}},
                 "after": {"ift": {"target": {"1": 0.5}}, "ifi": {"target": {}}}}
    tables = generic_tables(frame([_run("a", retrieval=retrieval)]))
    assert list(tables) == ["methods", "classes", "retrieval"]
    assert tables["retrieval"].to_dict("records") == [
        {"model": "mini-rn", "dataset": "caltech101", "method": "lip", "IFT P@1 BF": "1.000", "IFT P@1 AF": "0.500",
         "runs": 1}]


def test_a_tables_rows_take_the_layout_s_model_and_name_the_preset_setting():
    df = pd.DataFrame([{"run_id": "a", "model": "RN50-arch", "x": 1.0}, {"run_id": "b", "model": "RN50-arch", "x": 2.0},
                       {"run_id": "c", "model": "RN50-arch", "x": 3.0}])
    table = {"cells": [{"model": "RN50", "run_id": "a", "setting": ""},
                       {"model": "RN50", "run_id": "b", "setting": "lr = 1"},
                       {"model": "RN50", "run_id": "z", "setting": ""}]}
    rows = report._table_rows(df, table)
    assert rows[["run_id", "model", "setting", "x"]].to_dict("records") == [
        {"run_id": "a", "model": "RN50", "setting": "preset", "x": 1.0},
        {"run_id": "b", "model": "RN50", "setting": "lr = 1", "x": 2.0}]
    empty = report._table_rows(df, {"cells": []})
    assert empty.empty and {"model", "run_id", "setting"} <= set(empty.columns)
    assert suite_table(df, {"cells": [], "group_by": ["method"], "show": "forgetting"}) is None


# --- the bar's verdict ----------------------------------------------------------------------------------------

def _bar_rows(values: list[tuple[str, float | None, float, float, float, dict[str, float]]]) -> pd.DataFrame:
    """(method, target AF/BF, other classes AF/BF, worst, Avg. Score, each dataset's AF/BF) per cell."""
    return pd.DataFrame([{"run_id": f"r{i}", "model": "x", "method": m, "target AF/BF": t, "other classes AF/BF": o,
                          "other datasets AF/BF (worst)": w, "Avg. Score": s, **{f"AF/BF of {k}": v for k, v in d.items()}}
                         for i, (m, t, o, w, s, d) in enumerate(values)])


BAR = {"target": 0.25, "other_classes": 0.5, "other_datasets": 0.75, "avg_score": 0.5}


def test_a_bar_verdict_names_each_threshold_missed_with_the_row_s_mean():
    df = _bar_rows([("b-lip", 0.25, 0.5, 0.75, 0.5, {"dogs": 0.75, "cars": 1.0}),  # every mean on its threshold
                    ("a-amns", 0.5, 0.25, 0.5, 0.75, {"dogs": 0.5, "cars": 0.875}),  # every one missed
                    ("c-emb", None, 0.5, 0.75, 0.5, {"dogs": 0.875, "cars": 0.75})])  # no target ratio
    table = {"group_by": ["method"], "show": "bar", "bar": BAR, "cells": _cells(df["run_id"], "m")}
    shown = suite_table(df, table)
    assert list(shown["method"]) == ["a-amns", "b-lip", "c-emb"]
    assert list(shown["verdict"]) == [
        "misses: target AF/BF 0.500 (needs <= 0.25); other classes AF/BF 0.250 (needs >= 0.5); "
        "other datasets AF/BF (worst) 0.500 (needs >= 0.75; dogs 0.500; cars 0.875); Avg. Score 0.750 (needs <= 0.5)",
        "meets the bar",
        "misses: target AF/BF – (needs <= 0.25)"]
    assert list(shown["target AF/BF"]) == ["0.500", "0.250", "–"]
    assert list(shown["runs"]) == [1, 1, 1]
    assert suite_table(df, {**table, "bar": {}})["verdict"].tolist() == ["meets the bar"] * 3


def test_a_bar_verdict_is_given_to_each_row_even_one_with_a_missing_key():
    df = _bar_rows([("lip", 0.5, 0.5, 0.75, 0.5, {"dogs": 0.75}), ("lip", 0.125, 0.5, 0.75, 0.5, {"dogs": 0.75})])
    df["kind"] = ["ZS", None]
    verdicts = report._verdicts(report._table_rows(df, {"cells": _cells(df["run_id"])}), ["model", "kind", "method"],
                                {"target": 0.25})
    assert verdicts == ["misses: target AF/BF 0.500 (needs <= 0.25)", "meets the bar"]


# --- a subgroup table's goal ----------------------------------------------------------------------------------

def _scores(rows: list[tuple[str, str, int, float | None]]) -> tuple[pd.DataFrame, dict[str, Any]]:
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "arch", "dataset": d, "method": m, "seed": s, "Score": v}
                       for i, (d, m, s, v) in enumerate(rows)])
    return df, {"group_by": ["dataset", "method"], "goal": {"method": "ours", "score": 85},
                "cells": _cells(df["run_id"], "mini")}


def test_a_subgroup_goal_line_per_setting_says_met_or_each_reason_missed():
    df, table = _scores([("b-flower", "ours", 0, 80.0), ("b-flower", "ga", 0, 70.0), ("b-flower", "ft", 0, 75.0),
                         ("a-car", "ours", 0, 90.0), ("a-car", "ga", 0, 90.0),
                         ("c-dog", "ours", 0, 84.0), ("c-dog", "ga", 0, 86.25), ("c-dog", "ft", 0, 99.0),
                         ("d-cat", "ours", 0, 85.0), ("d-cat", "ours", 1, 86.0),
                         ("e-bird", "ga", 0, 70.0)])
    assert goal_lines(df, table) == [
        "Goal: ours's Score at least 85 and above every other method's (means over seeds):", "",
        "- mini, a-car: ours 90.0, best other ga 90.0: misses (below ga)",  # a tie is not above
        "- mini, b-flower: ours 80.0, best other ft 75.0: misses (Score 80.0 < 85)",
        "- mini, c-dog: ours 84.0, best other ft 99.0: misses (Score 84.0 < 85; below ft)",
        "- mini, d-cat: ours 85.5, no other method yet: meets the goal",  # 85 is enough
        "- mini, e-bird: ours not run yet", ""]


def test_a_subgroup_goal_of_a_preset_is_judged_against_the_other_methods_only():
    """goal.preset: the row of that preset is the goal's; the method's other rows (its default, other options)
    are not "other methods"."""
    df, table = _scores([("a", "ours", 0, 95.0), ("a", "ours (deep)", 0, 88.0), ("a", "ours [x=1]", 0, 99.0),
                         ("a", "ga", 0, 80.0), ("b", "ours (deep)", 0, 84.0), ("b", "ours", 0, 70.0),
                         ("b", "ourselves", 0, 90.0)])
    lines = goal_lines(df, {**table, "goal": {"method": "ours", "preset": "deep", "score": 85}})
    assert lines[0] == "Goal: ours (deep)'s Score at least 85 and above every other method's (means over seeds):"
    assert lines[2:4] == ["- mini, a: ours (deep) 88.0, best other ga 80.0: meets the goal",
                          "- mini, b: ours (deep) 84.0, best other ourselves 90.0: misses (Score 84.0 < 85; below "
                          "ourselves)"]
    default = goal_lines(df, {**table, "goal": {"method": "ours", "preset": "default", "score": 85}})
    assert default[2] == "- mini, a: ours 95.0, best other ga 80.0: meets the goal"


def test_a_subgroup_goal_has_no_lines_without_a_goal_cells_or_scores():
    df, table = _scores([("a", "ours", 0, 90.0)])
    assert goal_lines(df, {**table, "goal": {}}) == []
    assert goal_lines(df, {**table, "cells": []}) == []
    assert goal_lines(df.drop(columns=["Score"]), table) == []
    unnamed, of_unnamed = _scores([("a", "ours", 0, 90.0), (None, "ours", 0, 80.0)])  # no setting name: its own row
    assert goal_lines(unnamed, of_unnamed)[2:4] == ["- mini, a: ours 90.0, no other method yet: meets the goal",
                                               "- mini, nan: ours 80.0, no other method yet: misses (Score 80.0 < 85)"]
    one_key = goal_lines(df, {**table, "group_by": ["method"]})
    assert one_key[2] == "- mini: ours 90.0, no other method yet: meets the goal"



def test_a_goal_line_warns_of_an_unmoved_target_only_where_both_figures_are_there():
    from clipunlearn.benchmark.report import _unmoved

    def ours(before: list[float | None], after: list[float | None]) -> pd.DataFrame:
        return pd.DataFrame({"method": "ours", "Score": 90.0, "target BF": before, "target AF": after})

    warning = "; but its target did not fall (0.50 -> 0.50): the Score of a model that forgot nothing"
    assert _unmoved(ours([0.5], [0.5])) == warning
    assert _unmoved(ours([0.4, 0.6], [0.6, 0.4])) == warning  # means over seeds
    assert _unmoved(ours([0.5], [0.6])).startswith("; but its target did not fall (0.50 -> 0.60)")
    assert _unmoved(ours([0.5], [0.49])) == ""
    assert _unmoved(ours([None], [0.5])) == "" and _unmoved(ours([0.5], [None])) == ""  # a figure missing: no claim
    assert _unmoved(ours([0.5], [0.5]).drop(columns=["target AF"])) == ""

# --- a depth table's goal ------------------------------------------------------------------------------------

def _depth(rows: list[tuple[str, str, int, float | None, float, float | None, float, float, float]]
           ) -> tuple[pd.DataFrame, dict[str, Any]]:
    """(model, method, seed, R, prompts recovered, mia recovered, dogs kept, cars kept, Avg. Score) per cell."""
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "arch", "method": m, "dataset": "d", "classes": "c", "seed": s,
                        "audit R": r, "audit prompts recovered": p, "audit images recovered": None,
                        "audit mia recovered": mia, "AF/BF of dogs": dogs, "AF/BF of cars": cars, "Avg. Score": avg}
                       for i, (_, m, s, r, p, mia, dogs, cars, avg) in enumerate(rows)])
    cells = [{"model": model, "run_id": f"r{i}", "setting": ""} for i, (model, *_) in enumerate(rows)]
    return df, {"show": "depth", "group_by": ["method"], "goal": {"method": "uproot", "r": 0.25, "kept": 0.75},
                "cells": cells}


DEPTH_HEADER = ("Goal: uproot, means over its cells, held-out attacks: R ≤ 0.25; prompts, images and membership bring "
                "the class back in no cell; every other dataset keeps ≥ 0.75 of its accuracy; Avg. Score no worse than "
                "any other method's and R below every other method's, each on the cells both finished.")


def test_the_depth_goal_line_per_model_names_each_part_with_its_figure_and_boundaries_meet():
    df, table = _depth([
        # b-model: R 0.25 (on the bar); mia in 1 of 2 cells; cars keeps 0.75 (on the bar); Avg. Score tied with
        # lip (no worse), above amns' on seed 0 (worse); R tied with amns and lip (not below)
        ("b-model", "uproot", 0, 0.25, 0.0, 0.0, 0.75, 1.0, 0.25), ("b-model", "uproot", 1, 0.25, 0.0, 1.0, 1.0, 0.5, 0.5),
        ("b-model", "lip", 0, 0.25, 0.0, 0.0, 1.0, 1.0, 0.25), ("b-model", "lip", 1, 0.25, 0.0, 0.0, 1.0, 1.0, 0.5),
        ("b-model", "amns", 0, 0.25, 0.0, 0.0, 1.0, 1.0, 0.125),
        # a-model: every part met; closest Avg. Score zeta (0.125 away), R ga and zeta tied (0.25 away): the first
        ("a-model", "zeta", 0, 0.25, 0.0, 0.0, 1.0, 1.0, 0.375), ("a-model", "ga", 0, 0.25, 0.0, 0.0, 1.0, 1.0, 0.5),
        ("a-model", "uproot", 0, 0.0, 0.0, 0.0, 1.0, 0.75, 0.25),
        # c-model: R 0.5 over by 0.25, prompts in its one cell, dogs keeps 0.5 (under by 0.25), no mia figure
        ("c-model", "uproot", 0, 0.5, 1.0, None, 0.5, 1.0, 0.25),
        ("0-model", "lip", 0, 0.1, 0.0, 0.0, 1.0, 1.0, 0.25)])
    assert depth_goal_lines(df, table) == [
        DEPTH_HEADER, "", "- 0-model: uproot not run yet",
        "- a-model: uproot (1 cells) meets the goal: R 0.000 ≤ 0.25; prompts recovered in 0 of 1 cells; mia recovered "
        "in 0 of 1 cells; worst other dataset cars keeps 0.750; Avg. Score no worse than each of 2 other methods on "
        "the cells both finished (closest: zeta (ours 0.250, theirs 0.375, 1 cell)); R below each of 2 other methods "
        "on the cells both finished (closest: ga (ours 0.000, theirs 0.250, 1 cell))",
        "- b-model: uproot (2 cells) misses 3 of 6 parts: R 0.250 ≤ 0.25; prompts recovered in 0 of 2 cells; mia "
        "recovered in 1 of 2 cells (missed); worst other dataset cars keeps 0.750; Avg. Score worse than amns (ours "
        "0.250, theirs 0.125, 1 cell) on the cells both finished (missed); R not below amns (ours 0.250, theirs 0.250, "
        "1 cell), lip (ours 0.250, theirs 0.250, 2 cells) on the cells both finished (missed)",
        "- c-model: uproot (1 cells) misses 3 of 3 parts: R 0.500 > 0.25 by 0.250 (missed); prompts recovered in 1 of "
        "1 cells (missed); worst other dataset dogs keeps 0.500 (< 0.75 by 0.250) (missed)", ""]


def test_the_depth_goal_has_no_lines_without_a_goal_cells_or_r_and_skips_absent_attacks():
    df, table = _depth([("m", "uproot", 0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.25)])
    assert depth_goal_lines(df, {**table, "goal": {}}) == []
    assert depth_goal_lines(df, {**table, "cells": []}) == []
    assert depth_goal_lines(df.drop(columns=["audit R"]), table) == []
    bare = df.drop(columns=["audit prompts recovered", "audit images recovered", "audit mia recovered",
                            "AF/BF of dogs", "AF/BF of cars"])
    assert depth_goal_lines(bare, table)[2] == "- m: uproot (1 cells) meets the goal: R 0.000 ≤ 0.25"


def test_paired_means_compare_on_the_cells_both_finished_with_the_figure():
    df = pd.DataFrame([{"method": m, "dataset": "d", "classes": c, "seed": s, "R": r} for m, c, s, r in (
        ("ours", "x", 0, 0.125), ("ours", "x", 1, 0.25), ("ours", "x", 2, None),
        ("lip", "x", 0, 0.5), ("lip", "x", 1, None), ("lip", "x", 2, 0.75), ("lip", "y", 0, 0.0),
        ("amns", "x", 5, 0.5))])
    ours = df[df["method"] == "ours"]
    assert report._paired_means(ours, df, ["amns", "lip"], "R") == [("lip", 1, 0.125, 0.5)]
    both = df.assign(R=df["R"].fillna(1.0))
    assert report._paired_means(both[both["method"] == "ours"], both, ["lip"], "R") == [
        ("lip", 3, pytest.approx((0.125 + 0.25 + 1.0) / 3), pytest.approx((0.5 + 1.0 + 0.75) / 3))]


def test_a_goal_part_against_others_names_each_one_it_loses_to_or_the_closest():
    paired = [("a", 2, 0.5, 0.75), ("b", 1, 0.5, 0.625), ("c", 3, 0.5, 0.5)]
    below = (lambda x, y: x < y, ("below", "not below"))
    assert report._against_others("R", paired[:2], *below) == (
        True, "R below each of 2 other methods on the cells both finished (closest: b (ours 0.500, theirs 0.625, 1 cell))")
    assert report._against_others("R", paired, *below) == (
        False, "R not below c (ours 0.500, theirs 0.500, 3 cells) on the cells both finished")


# --- a bar table's claims ------------------------------------------------------------------------------------

def test_claims_per_model_hold_only_strictly_and_name_what_is_not_run_yet():
    # (model, method, seed, Avg. Score, target AF/BF); lip's two seed-0 runs of one cell are averaged (0.25)
    cells = [("z", "lip", 0, 0.125, 0.5), ("z", "lip", 0, 0.375, 0.5), ("z", "amns", 0, 0.25, 0.5),
             ("z", "emb", 0, 0.5, 0.25), ("z", "lip", 1, 0.25, 0.5), ("z", "amns", 1, 0.25, 0.5),
             ("z", "emb", 1, 0.5, 0.25), ("y", "lip", 0, 0.0, 1.0), ("y", "amns", 1, 0.5, 0.0)]
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "arch", "method": m, "dataset": "d", "classes": "c", "seed": s,
                        "Avg. Score": a, "target AF/BF": t} for i, (_, m, s, a, t) in enumerate(cells)])
    table = {"cells": [{"model": mo, "run_id": f"r{i}", "setting": ""} for i, (mo, *_) in enumerate(cells)],
             "claims": [
                 {"says": "nobody", "method": "salun", "column": "target", "than": ["ft", "lip"], "higher": True},
                 {"says": "lip beats amns", "method": "lip", "column": "avg_score", "than": ["amns"], "higher": False},
                 {"says": "lip beats emb", "method": "lip", "column": "avg_score", "than": ["emb"], "higher": False},
                 {"says": "lip keeps more", "method": "lip", "column": "target", "than": ["amns", "emb"],
                  "higher": True},
                 {"says": "lip keeps more than emb", "method": "lip", "column": "target", "than": ["emb"],
                  "higher": True}]}
    assert claim_lines(df, table) == [
        "Claims, each over the cells that all its methods finished (means; AF/BF = after/before):", "",
        "- y: nobody: not run yet (salun, ft has no cell finished beside the others)",
        "- y: lip beats amns: not run yet",  # both ran, but no cell in common
        "- y: lip beats emb: not run yet (emb has no cell finished beside the others)",
        "- y: lip keeps more: not run yet (emb has no cell finished beside the others)",
        "- y: lip keeps more than emb: not run yet (emb has no cell finished beside the others)",
        "- z: nobody: not run yet (salun, ft has no cell finished beside the others)",
        "- z: lip beats amns: does not hold (Avg. Score: lip 0.250; amns 0.250; 2 cells each)",  # a tie
        "- z: lip beats emb: holds (Avg. Score: lip 0.250; emb 0.500; 2 cells each)",
        "- z: lip keeps more: does not hold (target AF/BF: lip 0.500; amns 0.500; emb 0.250; 2 cells each)",
        "- z: lip keeps more than emb: holds (target AF/BF: lip 0.500; emb 0.250; 2 cells each)", ""]
    assert claim_lines(df, {**table, "claims": []}) == []
    assert claim_lines(df, {**table, "cells": []}) == []


# --- rows with identical figures -----------------------------------------------------------------------------

def test_identical_rows_are_named_per_model_on_their_after_figures_only():
    # b repeats a's figures after (target AF, dogs AF missing in both, Avg. Score) in two cells; their BF differ
    cells = [("z", "b", 0, 0.5, 0.25, 0.125), ("z", "b", 1, 0.5, 0.5, 0.25),
             ("z", "a", 0, 0.75, 0.25, 0.125), ("z", "a", 1, 0.75, 0.5, 0.25),
             ("y", "b", 0, 0.5, 0.25, 0.125), ("y", "b", 1, 0.5, 0.5, 0.25),
             ("y", "a", 0, 0.5, 0.25, 0.125), ("y", "a", 1, 0.5, 0.5, 0.25)]
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "arch", "method": m, "dataset": "d", "classes": "c", "seed": s,
                        "target BF": bf, "target AF": af, "dogs AF": None, "Avg. Score": avg}
                       for i, (_, m, s, bf, af, avg) in enumerate(cells)])
    table = {"cells": [{"model": mo, "run_id": f"r{i}", "setting": ""} for i, (mo, *_) in enumerate(cells)]}
    said = ("gives exactly the figures of `a` in all 2 cells both finished: on this model the setting that tells them "
            "apart changed nothing.")
    assert identical_lines(df, table) == ["Identical rows:", "", f"- y: `b` {said}", f"- z: `b` {said}", ""]
    changed = df.copy()
    changed.loc[7, "target AF"] = 0.375  # y's a differs after in one cell: only z's rows are identical
    assert identical_lines(changed, table) == ["Identical rows:", "", f"- z: `b` {said}", ""]


def test_identical_rows_need_two_methods_and_two_common_cells_run_once_each():
    rows = [("a", 0, 0.25), ("a", 1, 0.5), ("b", 0, 0.25), ("b", 1, 0.5), ("b", 1, 0.5)]  # b's seed 1 twice
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "m", "method": m, "dataset": "d", "classes": "c", "seed": s,
                        "target AF": v, "Avg. Score": v / 2} for i, (m, s, v) in enumerate(rows)])
    table = {"cells": _cells(df["run_id"])}
    assert identical_lines(df, table) == []  # the twice-run cell is left out: one common cell is not enough
    assert identical_lines(df.iloc[:4], table) == [
        "Identical rows:", "", "- mini-rn: `b` gives exactly the figures of `a` in all 2 cells both finished: on this "
        "model the setting that tells them apart changed nothing.", ""]
    assert identical_lines(df[df["method"] == "a"], table) == []
    assert identical_lines(df, {"cells": []}) == []


# --- a table's caption ---------------------------------------------------------------------------------------

def test_a_caption_counts_the_finished_cells_and_names_the_classes_by_the_rule_s_text():
    df = pd.DataFrame([{"run_id": "a", "dataset": "dogs", "classes": "shiba, pug, collie, akita"},
                       {"run_id": "b", "dataset": "dogs", "classes": "husky"},
                       {"run_id": "c", "dataset": "cars", "classes": "van"},
                       {"run_id": "d", "dataset": "dogs", "classes": "pug"},
                       {"run_id": "x", "dataset": "dogs", "classes": "beagle"}])
    layout = {"seeds": [0, 1], "min_top1": 0.25, "classes": {"B": {"dogs": [
        {"name": "husky", "text": "husky (paper)"}, {"name": "collie", "text": "collie (best known)"},
        {"name": "pug", "text": "pug (paper)"}]}}}
    table = {"class_rule": True, "cells": [{"model": "B", "run_id": "a"}, {"model": "B", "run_id": "b"},
                                           {"model": "A", "run_id": "c"}, {"model": "B", "run_id": "d"},
                                           {"model": "B", "run_id": "gone"}]}
    assert report._caption(layout, table, df) == [
        "5 cells in the suite, 4 finished and shown; mean ± std over the rows' classes and seeds (the suite's seeds: "
        "[0, 1]).",
        "- A, cars: van.",  # a class the layout does not name: its name
        "- B, dogs: husky (paper); collie (best known); pug (paper); akita; shiba.",  # the layout's order, then by name
        "\nClasses: the paper's forget classes where the model's zero-shot top-1 on them (the lower of train and test "
        "images) is at least 0.25, else the dataset's best-known classes by the same measure."]
    plain = report._caption({}, {"cells": table["cells"]}, df)
    assert plain == ["5 cells in the suite, 4 finished and shown; mean ± std over the rows' classes and seeds (the "
                     "suite's seeds: None)."]
    rule = report._caption({"seeds": [0]}, table, df)  # no texts: the classes by name
    assert rule[1] == "- A, cars: van." and rule[2] == "- B, dogs: akita; collie; husky; pug; shiba."
    assert "at least 0.3," in rule[-1]


# --- what the plots are given ----------------------------------------------------------------------------------

def _tradeoff_df() -> tuple[pd.DataFrame, dict[str, Any]]:
    # (run, method, seed, setting, target AF/BF, worst other dataset AF/BF)
    cells = [("r0", "lip", 0, "", 0.25, 0.75), ("r1", "lip", 1, "", 1.25, 1.25), ("r2", "amns", 0, "lr = 1", 0.5, 0.5),
             ("r3", "amns", 1, "lr = 1", None, 0.25), ("r4", "emb", 0, "", None, None)]
    df = pd.DataFrame([{"run_id": r, "model": "arch", "method": m, "dataset": "d", "classes": "c", "seed": s,
                        "target AF/BF": x, "other datasets AF/BF (worst)": y} for r, m, s, _, x, y in cells])
    table = {"name": "bar", "title": "the bar", "group_by": ["setting", "method"], "bar": BAR,
             "cells": [{"model": "m", "run_id": r, "setting": st} for r, _, _, st, _, _ in cells]}
    return df, table


def test_a_tradeoff_plot_gets_each_row_s_mean_each_cell_and_the_bar_s_region():
    df, table = _tradeoff_df()
    t = report.tradeoff(df, table)
    assert (t.name, t.title, t.file, t.x_column, t.y_column) == (
        "bar", "the bar", "plots/bar_tradeoff.png", "target AF/BF", "other datasets AF/BF (worst)")
    assert (t.x_label, t.y_label) == ("target AF/BF (lower: more forgotten)",
                                      "worst other dataset AF/BF (higher: more kept)")
    # rows: amns (lr = 1) x mean of 0.5 alone, y of 0.5 and 0.25; lip (preset) 0.75, 1.0; emb has no point
    assert t.means == (Mean("lr = 1 / amns", 0.5, 0.375, 2), Mean("preset / lip", 0.75, 1.0, 2))
    assert t.points == (Point("r0", "lip", "d", "c", 0, "preset / lip", 0.25, 0.75),
                        Point("r1", "lip", "d", "c", 1, "preset / lip", 1.25, 1.25),
                        Point("r2", "amns", "d", "c", 0, "lr = 1 / amns", 0.5, 0.5))
    assert t.region == (0.25, 0.75)
    assert t.x_range == pytest.approx((0.0, 1.3)) and t.y_range == pytest.approx((0.45, 1.3))
    # cells inside the unit square: the axes still show 0..1 and 0.5..1.05
    small = df.assign(**{"target AF/BF": [0.25, 0.5, 0.5, None, None],
                         "other datasets AF/BF (worst)": [0.75, 0.875, 0.625, 0.25, None]})
    t = report.tradeoff(small, {**table, "title": None, "bar": {"target": 0.25}})
    assert (t.title, t.region, t.x_range, t.y_range) == ("bar", None, (0.0, 1.0), (0.5, 1.05))


def test_a_tradeoff_row_without_a_setting_name_is_plotted_as_a_row_of_its_own():
    df, table = _tradeoff_df()
    table = {**table, "cells": [dict(c, setting=None) if c["run_id"] == "r2" else c for c in table["cells"]]}
    t = report.tradeoff(df, table)  # amns (lr = 1) keeps r3 alone: no target ratio, no mean
    assert t.means == (Mean("preset / lip", 0.75, 1.0, 2), Mean("nan / amns", 0.5, 0.5, 1))
    assert t.points[2] == Point("r2", "amns", "d", "c", 0, "nan / amns", 0.5, 0.5)


def test_a_tradeoff_plot_needs_a_cell_with_both_figures():
    df, table = _tradeoff_df()
    assert report.tradeoff(df, {**table, "cells": []}) is None
    assert report.tradeoff(df.assign(**{"target AF/BF": [0.1, None, None, None, None],
                                        "other datasets AF/BF (worst)": [None, 0.9, 0.9, 0.9, None]}), table) is None
    only_y = report.tradeoff(df.assign(**{"target AF/BF": [0.5, None, None, None, None]}), {**table, "bar": {}})
    assert only_y.points == (Point("r0", "lip", "d", "c", 0, "preset / lip", 0.5, 0.75),)
    assert only_y.means == (Mean("preset / lip", 0.5, 1.0, 2),)


def test_a_plot_s_row_label_is_its_keys_after_the_model():
    assert report._group_label(("m", "lr = 1", "lip")) == "lr = 1 / lip"
    assert report._group_label(("m",)) == "('m',)"
    assert report._group_label("mini") == "mini"  # a table grouped by the model alone
    assert report._number(float("nan")) is None and report._number(None) is None
    assert report._number(1) == 1.0 and isinstance(report._number(1), float)


def _summary_df() -> pd.DataFrame:
    rows = [("m2", "lip", 0.75, 0.25, None, 0.5, 1.0, 0.5, 0.75, 0.25),
            ("m1", "lip", 0.5, 0.125, 90.0, 0.25, 1.0, 0.75, 0.5, 0.125),
            ("m1", "lip", 1.0, 0.375, 80.0, None, 0.5, 0.25, 0.25, 0.375),
            ("m1", "amns", 1.0, 0.5, None, 0.0, 0.5, 0.5, 1.0, 0.5)]
    return pd.DataFrame([{"model": mo, "method": me, "target BF": bf, "target AF": af, "Score": sc, "Avg. Score": avg,
                          "IFT P@5 BF": b5, "IFT P@5 AF": a5, "IFT P@10 BF": b10, "IFT P@10 AF": a10}
                         for mo, me, bf, af, sc, avg, b5, a5, b10, a10 in rows])


def test_the_summary_plots_are_per_method_means_of_target_score_avg_score_and_precision():
    target, score, avg, precision = report.summary_plots(_summary_df())
    assert target == Bars("plots/target_bf_af.png", "target accuracy before and after", "target before and after",
                          "top-1", ("target BF", "target AF"), (
                              BarGroup("m1", "amns", (1.0, 0.5), 1), BarGroup("m1", "lip", (0.75, 0.25), 2),
                              BarGroup("m2", "lip", (0.75, 0.25), 1)))
    assert score == Bars("plots/subgroup_score.png", "subgroup forgetting: Score (CVPR'25, higher is better)", "Score",
                         "Score", ("Score",), (BarGroup("m1", "lip", (85.0,), 2),))  # the runs with a Score only
    assert avg == Bars("plots/avg_score.png", "Avg. Score (lower is better)", "Avg. Score", "Avg. Score",
                       ("Avg. Score",), (BarGroup("m1", "amns", (0.0,), 1), BarGroup("m1", "lip", (0.25,), 2),
                                         BarGroup("m2", "lip", (0.5,), 1)))
    # k sorted as numbers (5 before 10); before: the mean over every run
    assert precision == Lines("plots/precision_at_k.png", "precision@k", (Panel(
        "image from text: forgotten class", (5, 10), (
            Series("amns AF (m1)", (0.5, 0.5)), Series("lip AF (m1)", (0.5, 0.25)), Series("lip AF (m2)", (0.5, 0.25))),
        (0.75, 0.625)),))


def test_the_summary_plots_leave_out_what_no_run_measured():
    df = _summary_df().drop(columns=["Score", "IFT P@5 BF", "IFT P@5 AF", "IFT P@10 BF", "IFT P@10 AF"])
    assert [p.file for p in report.summary_plots(df.assign(**{"Avg. Score": None}))] == ["plots/target_bf_af.png"]
    assert [p.file for p in report.summary_plots(df.assign(Score=None))] == ["plots/target_bf_af.png",
                                                                              "plots/avg_score.png"]
    a_nan = report.summary_plots(df.assign(**{"target AF": [0.25, None, None, None]}))[0]
    assert a_nan.groups[0] == BarGroup("m1", "amns", (1.0, None), 1)
    ifi = df.assign(**{"IFI P@1 BF": 1.0, "IFI P@1 AF": 0.5})
    (panel,) = report.summary_plots(ifi)[-1].panels
    assert (panel.title, panel.ks, panel.before) == ("image from image: forgotten class", (1,), (1.0,))
    assert (panel.x_label, panel.y_label, panel.bands) == ("k", "precision@k", ())


def _relearning_cell(rid: str, method: str, classes: tuple[str, ...], curves: dict[str, dict[str, list[float]]],
                     preset: str = "default", steps: tuple[int, ...] = (0, 5), skipped: bool = False) -> Cell:
    rl: dict[str, Any] = {"attacks": list(next(iter(curves.values()))), "steps": list(steps), "curves": curves}
    if skipped:
        rl["skipped"] = "no relearning"
    audit = {"results": {"relearning": rl}}
    return Cell(rid, Path(rid), _run(rid, method=method, preset=preset, classes=classes), None, audit)


def test_relearning_curves_are_one_panel_per_class_with_each_method_s_mean_and_the_bands():
    two = {"a": [0.0, 0.5], "b": [0.25, 0.75]}
    three = {"a": [0.0, 0.25, 0.5], "b": [0.0, 0.5, 0.5], "c": [0.0, 0.0, 0.5]}
    cells = {
        "k0": _relearning_cell("k0", "lip", ("pug", "husky"),
                               {"forgotten": two, "original": {"a": [1.0, 1.0], "b": [0.5, 1.0]}}),
        "k1": _relearning_cell("k1", "lip", ("pug", "husky"), {"forgotten": {"a": [0.5, 0.5], "b": [0.5, 1.0]}}),
        "j0": _relearning_cell("j0", "amns", ("akita",), {"forgotten": three, "oracle": three}, preset="strong",
                               steps=(0, 1, 2)),
        "s0": _relearning_cell("s0", "lip", ("akita",), {"forgotten": two}, skipped=True),
        "n0": Cell("n0", Path("n0"), _run("n0", classes=("akita",)))}
    layout = {"tables": [{"show": "forgetting", "cells": [{"run_id": "k0"}]},
                         {"show": "depth", "cells": [{"run_id": r} for r in ("k1", "k0", "j0", "s0", "n0", "gone")]}]}
    lines = report.relearning_curves(layout, cells)
    assert (lines.file, lines.alt) == ("plots/relearning_curves.png",
                                       "relearning curves: each method beside the original and the oracle (bands)")
    akita, pug = lines.panels  # sorted by "dataset: classes"
    assert akita == Panel("caltech101: akita: relearning, mean over 3 attacks", (0, 1, 2),
                          (Series("amns (strong) (1 cells)", (0.0, 0.25, 0.5)),), (), x_label="relearning step",
                          y_label="class test accuracy", bands=(Band("oracle", (0.0, 0.25, 0.5), (0.0, 0.25, 0.5)),))
    # per cell the mean over attacks: k0 (0.125, 0.625), k1 (0.5, 0.75); then their mean; k0's original alone
    assert pug == Panel("caltech101: pug, husky: relearning, mean over 2 attacks", (0, 5),
                        (Series("lip (2 cells)", (0.3125, 0.6875)),), (), x_label="relearning step",
                        y_label="class test accuracy", bands=(Band("original", (0.75, 1.0), (0.75, 1.0)),))
    assert report.relearning_curves(None, cells) is None


def test_relearning_curves_name_every_attack_count_their_cells_were_averaged_over():
    cells = {"a": _relearning_cell("a", "lip", ("x",), {"forgotten": {"p": [0.0, 1.0], "q": [0.0, 1.0], "r": [0.0, 1.0]}}),
             "b": _relearning_cell("b", "lip", ("x",), {"forgotten": {"p": [0.0, 0.5], "q": [0.0, 0.5]}})}
    (panel,) = report.relearning_curves({"tables": [{"show": "depth", "cells": [{"run_id": "a"}, {"run_id": "b"}]}]},
                                        cells).panels
    assert panel.title == "caltech101: x: relearning, mean over 2/3 attacks"
    assert panel.series == (Series("lip (2 cells)", (0.0, 0.75)),)


# --- what the plots draw (matplotlib, captured before saving) -----------------------------------------------

@pytest.fixture
def drawn(monkeypatch):
    """The figures the plot functions hand to ``_save``, with the path each would be saved to."""
    import matplotlib.pyplot as plt

    figures: list[tuple[Any, Path]] = []
    monkeypatch.setattr(report, "_save", lambda fig, path: figures.append((fig, path)))
    yield figures
    for fig, _ in figures:
        plt.close(fig)


def test_save_writes_a_png_at_100_dpi_and_closes_the_figure(tmp_path):
    plt = report._pyplot()
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"
    fig = plt.figure(figsize=(2.0, 1.0), dpi=50)  # saved at 100 dpi whatever the figure's
    current = plt.figure()  # the figure closed is the one saved, not the current one
    report._save(fig, tmp_path / "plots" / "a.png")
    assert plt.fignum_exists(current.number)
    plt.close(current)
    data = (tmp_path / "plots" / "a.png").read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert (int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")) == (200, 100)
    assert not plt.fignum_exists(fig.number)


def test_a_bar_plot_draws_each_group_s_means_with_its_labels(drawn, tmp_path):
    bars = Bars("plots/x.png", "the title", "alt", "top-1", ("target BF", "target AF"),
                (BarGroup("m1", "amns", (1.0, None), 1), BarGroup("m1", "lip", (0.75, 0.25), 2),
                 BarGroup("m2", "lip", (0.5, 0.125), 1), BarGroup("m2", "ga", (0.25, 0.0), 1)))
    report._plot_bars(bars, tmp_path / "x.png")
    ((fig, path),) = drawn
    ax = fig.axes[0]
    assert path == tmp_path / "x.png"
    assert tuple(fig.get_size_inches()) == pytest.approx((0.9 * 4 + 2, 3.6))
    assert (ax.get_title(), ax.get_ylabel(), ax.get_xlabel()) == ("the title", "top-1", "")
    assert [t.get_text() for t in ax.get_xticklabels()] == ["(m1, amns)", "(m1, lip)", "(m2, lip)", "(m2, ga)"]
    assert {t.get_rotation() for t in ax.get_xticklabels()} == {30.0}
    heights = [[p.get_height() for p in c] for c in ax.containers]
    assert heights[0] == [1.0, 0.75, 0.5, 0.25]
    assert heights[1] == [0.0, 0.25, 0.125, 0.0]  # None: no bar (nan, which pandas draws at 0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["target BF", "target AF"]
    report._plot_bars(Bars("f", "t", "a", "y", ("c", "d"), (BarGroup("m", "x", (0.5, None), 1),)), tmp_path / "y.png")
    assert tuple(drawn[1][0].get_size_inches()) == (5.0, 3.6)  # at least 5 inches wide
    # a column no run measured is drawn as no bar (not refused as a column of no numbers)
    assert [[p.get_height() for p in c] for c in drawn[1][0].axes[0].containers] == [[0.5], [0.0]]


def test_a_tradeoff_plot_draws_the_region_the_cells_the_rows_and_their_names(drawn, tmp_path):
    import matplotlib.colors as mcolors

    df, table = _tradeoff_df()
    t = report.tradeoff(df, {**table, "title": "x" * 85 + " abcde tail"})  # 91 characters to "abcde"
    report._plot_tradeoff(t, tmp_path / "t.png")
    ((fig, path),) = drawn
    ax = fig.axes[0]
    assert path == tmp_path / "t.png" and tuple(fig.get_size_inches()) == pytest.approx((6.4, 4.4))
    region, cells, means = ax.collections
    xs, ys = region.get_paths()[0].vertices.T
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == pytest.approx((0.0, 0.25, 0.75, 1.3))
    assert region.get_alpha() == 0.15 and region.get_label() == "the bar's region"
    assert mcolors.to_hex(region.get_facecolor()[0]) == mcolors.to_hex("tab:green")
    assert cells.get_offsets().tolist() == [[0.25, 0.75], [1.25, 1.25], [0.5, 0.5]]
    assert list(cells.get_sizes()) == [10] and cells.get_alpha() == 0.5 and cells.get_label() == "cells"
    assert mcolors.to_hex(cells.get_facecolor()[0]) == mcolors.to_hex("tab:gray")
    assert means.get_offsets().tolist() == [[0.5, 0.375], [0.75, 1.0]] and means.get_label() == "rows (means)"
    assert mcolors.to_hex(means.get_facecolor()[0]) == mcolors.to_hex("tab:blue")
    names = [(a.get_text(), a.xy, a.get_fontsize(), a.xyann, a.anncoords) for a in ax.texts]
    assert names == [("lr = 1 / amns", (0.5, 0.375), 7, (4, 3), "offset points"),
                     ("preset / lip", (0.75, 1.0), 7, (4, 3), "offset points")]
    assert (ax.get_xlabel(), ax.get_ylabel()) == (t.x_label, t.y_label)
    assert ax.get_xlim() == pytest.approx((0.0, 1.3)) and ax.get_ylim() == pytest.approx((0.45, 1.3))
    assert ax.get_title() == "x" * 85 + "\nabcde tail"  # wrapped at 90 characters
    assert ax.title.get_fontsize() == 8
    legend = ax.get_legend()
    assert [x.get_text() for x in legend.get_texts()] == ["the bar's region", "cells", "rows (means)"]
    assert legend._loc == 4 and legend.get_texts()[0].get_fontsize() == 7  # 4: lower right
    import matplotlib
    from cycler import cycler

    with matplotlib.rc_context({"axes.prop_cycle": cycler(color=["#ff0000", "#00ff00"])}):
        report._plot_tradeoff(report.tradeoff(df, {**table, "bar": {}}), tmp_path / "u.png")
    cells, means = drawn[1][0].axes[0].collections  # no region without both thresholds
    assert mcolors.to_hex(means.get_facecolor()[0]) == mcolors.to_hex("tab:blue")  # whatever the style's colours


def test_a_line_plot_draws_each_panel_s_bands_series_and_before(drawn, tmp_path):
    import matplotlib.colors as mcolors

    first = Panel("y" * 45 + " abcde tail", (1, 5, 10),  # 51 characters to "abcde"
                  (Series("lip AF (m)", (0.5, None, 0.25)), Series("amns AF (m)", (0.75, 0.5, 0.5))),
                  (1.0, None, 0.75))
    second = Panel("relearning", (0, 5), (Series("s", (0.0, 0.5)),), (), x_label="step", y_label="accuracy",
                   bands=(Band("original", (0.5, 0.75), (1.0, 1.0)), Band("oracle", (0.0, 0.0), (0.25, 0.5)),
                          Band("third", (0.0, 0.0), (0.0, 0.0))))
    report._plot_lines(Lines("plots/l.png", "alt", (first, second)), tmp_path / "l.png")
    ((fig, path),) = drawn
    assert path == tmp_path / "l.png" and tuple(fig.get_size_inches()) == pytest.approx((10.0, 3.6))
    a, b = fig.axes
    assert a.get_title() == "y" * 45 + "\nabcde tail"  # wrapped at 50 characters
    assert a.title.get_fontsize() == 9 and b.get_title() == "relearning"
    assert (a.get_xlabel(), a.get_ylabel(), b.get_xlabel(), b.get_ylabel()) == ("k", "precision@k", "step", "accuracy")
    assert list(a.get_xticks()) == [1, 5, 10] and list(b.get_xticks()) == [0, 5]
    lip, amns, before = a.lines
    assert (lip.get_label(), lip.get_marker()) == ("lip AF (m)", "o")
    assert [str(v) for v in lip.get_ydata()] == ["0.5", "nan", "0.25"] and list(amns.get_ydata()) == [0.75, 0.5, 0.5]
    assert (before.get_label(), before.get_marker(), before.get_linestyle()) == ("before", "x", "--")
    assert mcolors.to_hex(before.get_color()) == "#000000" and [str(v) for v in before.get_ydata()] == ["1.0", "nan", "0.75"]
    assert len(a.collections) == 0 and a.get_legend() is None  # the legend on the last panel only
    assert [c.get_label() for c in b.collections] == ["original", "oracle", "third"]
    colours = ["tab:gray", "tab:green", "tab:orange"]
    assert [mcolors.to_hex(c.get_facecolor()[0]) for c in b.collections] == [mcolors.to_hex(c) for c in colours]
    assert {c.get_alpha() for c in b.collections} == {0.2}
    original, oracle = ({tuple(v) for v in c.get_paths()[0].vertices.tolist()} for c in b.collections[:2])
    assert original == {(0.0, 0.5), (5.0, 0.75), (0.0, 1.0), (5.0, 1.0)}  # between low and high at each k
    assert oracle == {(0.0, 0.0), (5.0, 0.0), (0.0, 0.25), (5.0, 0.5)}
    assert [list(x.get_xdata()) for x in a.lines] == [[1, 5, 10]] * 3
    assert [list(x.get_xdata()) for x in b.lines] == [[0, 5]] * 7
    edges, series = b.lines[:6], b.lines[6:]
    assert [list(e.get_ydata()) for e in edges] == [[0.5, 0.75], [1.0, 1.0], [0.0, 0.0], [0.25, 0.5], [0.0, 0.0], [0.0, 0.0]]
    assert [mcolors.to_hex(e.get_color()) for e in edges] == [mcolors.to_hex(c) for c in colours for _ in range(2)]
    assert {(e.get_linestyle(), e.get_linewidth()) for e in edges} == {(":", 1.2)}
    assert [s.get_label() for s in series] == ["s"]  # no before: no dashed line
    legend = b.get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["original", "oracle", "third", "s"]
    assert legend.get_texts()[0].get_fontsize() == 7
    report._plot_lines(Lines("plots/one.png", "alt", (second,)), tmp_path / "one.png")
    (one,) = drawn[1][0].axes
    assert tuple(drawn[1][0].get_size_inches()) == pytest.approx((5.0, 3.6)) and one.get_legend() is not None


def test_write_plots_draws_each_section_s_tradeoff_and_each_plot_under_the_page(monkeypatch, tmp_path):
    calls: list[tuple[str, str, Path]] = []
    for name in ("_plot_tradeoff", "_plot_bars", "_plot_lines"):
        monkeypatch.setattr(report, name, lambda what, path, name=name: calls.append((name, what, path)))
    df, table = _tradeoff_df()
    t = report.tradeoff(df, table)
    bars, lines = Bars("plots/b.png", "", "", "", (), ()), Lines("plots/l.png", "", ())
    sections = [report.Section("a", "a", pd.DataFrame(), [], []), report.Section("bar", "bar", pd.DataFrame(), [], [], t)]
    view = report.View("T", [], sections, [], [bars, lines], pd.DataFrame(), [], tmp_path, tmp_path / "page")
    report._write_plots(view)
    assert calls == [("_plot_tradeoff", t, tmp_path / "page" / "plots/bar_tradeoff.png"),
                     ("_plot_bars", bars, tmp_path / "page" / "plots/b.png"),
                     ("_plot_lines", lines, tmp_path / "page" / "plots/l.png")]


# --- a suite's folder: its runs, audits and records -------------------------------------------------------------

def _write_run(base: Path, folder: str, raw: dict[str, Any], audit: dict[str, Any] | None = None) -> Path:
    d = base / folder
    d.mkdir(parents=True)
    (d / "results.json").write_text(json.dumps(raw), encoding="utf-8")
    if audit is not None:
        (d / "audit").mkdir()
        (d / "audit" / "audit.json").write_text(json.dumps(audit), encoding="utf-8")
        (d / "audit" / "audit.md").write_text("# audit", encoding="utf-8")
        (d / "audit" / "curve.png").write_bytes(b"png")
        (d / "audit" / "notes.txt").write_text("not copied", encoding="utf-8")
    return d


AUDIT = _audit(relearning={"attacks": ["a"], "score": {"R": 0.25, "R_floor": 0.25}, "steps": [0, 5],
                           "curves": {"forgotten": {"a": [0.0, 0.5]}, "original": {"a": [1.0, 1.0]}}},
               verdict=[{"attack": "prompts", "verdict": "recovered"}, {"attack": "images", "verdict": "did not recover"}])


def _suite_folder(root: Path, layout: bool = True) -> Path:
    """A suite's folder: lip-a (audited), amns-a, a run gathered by hand (no run id), a hidden and an unfinished one."""
    runs = root / "runs"
    _write_run(runs, "lip-a", _raw("lip-a", datasets={"dogs": (0.5, 0.375)}), AUDIT)
    _write_run(runs, "amns-a", _raw("amns-a", method="amns", target=(0.8, 0.4), other=(0.5, 0.5),
                                    datasets={"dogs": (0.5, 0.5)}, avg=0.25,
                                    method_config={"lr": 1}, settings={"method": "gone", "seed": 0,
                                                                       "run_spec": {"run_id": "amns-a"}}))
    byhand = _raw("x", method="ga", datasets={"dogs": (0.5, 0.25)})
    byhand["settings"] = {"seed": 1}
    _write_run(runs, "byhand", byhand)
    _write_run(runs, ".hidden", _raw("hidden"))
    (runs / "unfinished").mkdir()
    if layout:
        cells = [{"model": "mini", "run_id": r, "setting": ""} for r in ("lip-a", "amns-a")]
        (root / "suite.json").write_text(json.dumps({
            "suite": "mine", "description": "two methods", "source": str(root / "mine.toml"), "seeds": [0],
            "tables": [{"name": "t1", "title": "Forgetting", "show": "forgetting", "group_by": ["method"], "cells": cells},
                       {"name": "bar", "show": "bar", "group_by": ["method"], "cells": cells, "bar": BAR},
                       {"name": "depth", "show": "depth", "group_by": ["method"], "cells": cells[:1]},
                       {"name": "audit", "show": "audit", "group_by": ["method"], "cells": cells[:1]},
                       {"name": "later", "show": "forgetting", "group_by": ["method"],
                        "cells": [{"model": "other", "run_id": "x1", "setting": ""}]}]}), encoding="utf-8")
    return root


def test_the_finished_runs_are_the_visible_folders_with_a_results_file_in_order(tmp_path):
    root = _suite_folder(tmp_path / "s")
    assert report._runs_base(root) == root / "runs" and report._runs_base(root / "runs") == root / "runs"
    assert [d.name for d in report._finished(root / "runs")] == ["amns-a", "byhand", "lip-a"]
    found = report.collect_runs(root)
    assert [(d.name, r.method) for d, r in found] == [("amns-a", "amns"), ("byhand", "ga"), ("lip-a", "lip")]
    assert [r.method for r in report.collect(root / "runs")] == ["amns", "ga", "lip"]
    assert report.collect_audits(root) == {"lip-a": root / "runs" / "lip-a" / "audit"}
    _write_run(root / "runs", "byhand2", {**_raw("x"), "settings": {}}, AUDIT)
    assert report.collect_audits(root)["byhand2"] == root / "runs" / "byhand2" / "audit"  # by its folder's name


def test_a_folder_without_runs_is_refused_naming_it(tmp_path):
    with pytest.raises(ClipUnlearnError) as e:
        report.collect_runs(tmp_path / "nothing")
    assert str(e.value) == (f"{str(tmp_path / 'nothing')!r} is not a folder. Pass the --out folder of "
                            "`clipunlearn benchmark`.")
    (tmp_path / "empty" / "runs" / "r").mkdir(parents=True)
    with pytest.raises(ClipUnlearnError) as e:
        report.collect_runs(tmp_path / "empty")
    assert str(e.value) == (f"No finished run under {str(tmp_path / 'empty' / 'runs')!r}. Run `clipunlearn benchmark "
                            f"--suite ... --out {tmp_path / 'empty'}` first.")


def test_records_are_each_run_s_results_and_audit_and_the_layout_with_portable_paths(tmp_path):
    root = _suite_folder(tmp_path / "s")
    assert report.write_records(root, tmp_path / "page") == 3
    rec = tmp_path / "page" / "records"
    assert sorted(str(p.relative_to(rec)) for p in rec.rglob("*") if p.is_file()) == [
        "runs/amns-a/results.json", "runs/byhand/results.json", "runs/lip-a/audit/audit.json",
        "runs/lip-a/results.json", "suite.json"]
    for name in ("runs/lip-a/results.json", "runs/lip-a/audit/audit.json", "suite.json"):
        kept, made = json.loads((rec / name).read_text()), json.loads((root / name).read_text())
        assert kept == report.portable(made, root) and kept.keys() == made.keys()
    assert report.write_records(root, tmp_path / "page") == 3  # again: the same records
    bare = _suite_folder(tmp_path / "b", layout=False)
    assert report.write_records(bare, tmp_path / "bare") == 3 and not (tmp_path / "bare" / "records" / "suite.json").exists()
    with pytest.raises(ClipUnlearnError) as e:
        report.write_records(rec, tmp_path / "page")
    assert str(e.value) == (f"{str(rec)!r} is already the records folder of {str(tmp_path / 'page')!r}: drop --records, "
                            "the records are what the report is made from.")
    import shutil

    shutil.rmtree(root / "runs" / "amns-a")
    with pytest.raises(ClipUnlearnError) as e:
        report.write_records(root, tmp_path / "page")
    assert str(e.value) == (f"{str(rec / 'runs')!r} holds 1 run(s) that {str(root / 'runs')!r} lacks (e.g. amns-a): "
                            f"copy them into {str(root / 'runs')!r} first (cp -r {rec / 'runs'}/. {root / 'runs'}/), "
                            "or remove them.")


def test_a_folder_is_shown_relative_to_the_page_or_as_a_placeholder(tmp_path):
    page = tmp_path / "docs" / "page"
    assert report.shown_path(page, page) == "."
    assert report.shown_path(page / "records", page) == "records"
    assert report.shown_path(tmp_path, page) == "../.."
    assert report.shown_path(tmp_path / "elsewhere", page) == "DIR"
    assert report.shown_path(tmp_path / "elsewhere", page, "suite.toml") == "suite.toml"


def _view_of(root: Path, dest: Path, cells: list[Cell]) -> report.View:
    return report.View("T", [], [], [], [], pd.DataFrame(), cells, root, dest)


def test_audits_are_copied_beside_a_page_kept_elsewhere_and_linked_from_it(tmp_path):
    root = _suite_folder(tmp_path / "s")
    cells = [Cell(d.name, d, r) for d, r in report.collect_runs(root)]
    cells[2].audit_folder, cells[2].audit = root / "runs" / "lip-a" / "audit", AUDIT
    report.copy_audits(_view_of(root, tmp_path / "page", cells))
    copied = tmp_path / "page" / "audits" / "lip-a"
    assert sorted(p.name for p in copied.iterdir()) == ["audit.json", "audit.md", "curve.png"]
    assert (copied / "audit.md").read_text() == "# audit"
    report.copy_audits(_view_of(root, root, cells))
    assert not (root / "audits").exists()  # the page in the suite's folder links them where they are
    by_id = {c.run_id: c for c in cells}
    assert report._audit_lines(by_id, {"lip-a", "amns-a", "gone"}, root, tmp_path / "page") == [
        "Audit thresholds and attacks: docs/audit.md. Per cell:", "",
        "- [lip-a](audits/lip-a/audit.md): prompts recovered; images did not recover", ""]
    assert report._audit_lines(by_id, {"lip-a"}, root, root)[2] == \
        "- [lip-a](runs/lip-a/audit/audit.md): prompts recovered; images did not recover"
    by_id["amns-a"].audit = {"verdict": [{"attack": "mia", "verdict": "no evidence"}]}
    with pytest.raises(AssertionError):  # an audit is read from its folder: one without is a bug, not a link
        report._audit_lines(by_id, {"amns-a"}, root, tmp_path / "page")
    by_id["amns-a"].audit_folder = root / "runs" / "amns-a" / "audit"
    assert report._audit_lines(by_id, {"lip-a", "amns-a"}, root, root)[2:4] == [
        "- [amns-a](runs/amns-a/audit/audit.md): mia no evidence",
        "- [lip-a](runs/lip-a/audit/audit.md): prompts recovered; images did not recover"]


# --- the page: its intro, sections, markdown and files ------------------------------------------------------------

TAIL = (". BF = before, AF = after forgetting; Avg. Score (WACV'25 Eq. 10) lower is better; figures are mean ± std "
        "over the classes and seeds of each row (std left out for a single run).")
RECORDS_LINE = ("The records this page was made from (`suite.json`, each run's `results.json`) are in "
                "[`records/`](records/): `clipunlearn benchmark report records --to .` (from this page's folder) "
                "rebuilds it; copied into a suite's `--out` folder, they let the suite resume there.")


def _layout(suite: str, source: str | None, cells: list[tuple[str, str]]) -> dict[str, Any]:
    layout: dict[str, Any] = {"suite": suite, "description": "d", "tables": [
        {"cells": [{"model": m, "run_id": r} for m, r in cells[:1]]},
        {"cells": [{"model": m, "run_id": r} for m, r in cells[1:]]}]}
    if source is not None:
        layout["source"] = source
    return layout


def test_the_intro_of_a_page_in_the_suite_s_folder_without_a_layout(tmp_path):
    assert report._intro(None, tmp_path, tmp_path, 2, {}, False, set()) == [
        "Made by `clipunlearn benchmark report .` from 2 run folders" + TAIL, ""]


def test_the_intro_of_a_page_rebuilt_from_its_records_names_them_and_the_shipped_suite(tmp_path):
    page = tmp_path / "page"
    layout = _layout("quick", "/elsewhere/quick.toml", [("zeta", "a"), ("alpha", "b"), ("zeta", "a")])
    assert report._intro(layout, page / "records", page, 2, {}, False, {"a", "b", "c"}) == [
        "Made by `clipunlearn benchmark report records --to .` from 2 run folders of the suite 'quick' (d)" + TAIL, "",
        RECORDS_LINE, "",
        "Cells made by `clipunlearn benchmark --suite quick --model alpha,zeta --out DIR` (DIR: a copy of `records/`) "
        "(2 of 2 cells finished).", ""]


def test_the_intro_names_the_stale_runs_the_records_and_a_suite_file_beside_the_page(tmp_path):
    page, suite = tmp_path / "page", tmp_path / "suite"
    layout = _layout("custom", str(page / "suites" / "custom.toml"), [("m", "a"), ("m", "b"), ("m", "c")])
    stale = {"a": "lr 1 -> 2", "b": "method 'x' is no longer registered"}
    assert report._intro(layout, suite, page, 3, stale, True, {"a", "b", "z"}) == [
        "Made by `clipunlearn benchmark report DIR --to .` (DIR: the suite's folder; run from this page's folder) from "
        "3 run folders of the suite 'custom' (d)" + TAIL, "",
        RECORDS_LINE, "",
        "**2 of these runs were made with another config of their preset than the method builds today** (e.g. a: "
        "lr 1 -> 2): rerun them with `clipunlearn benchmark ... --rerun-stale`.", "",
        "Cells made by `clipunlearn benchmark --suite suites/custom.toml --model m --out DIR` (2 of 3 cells finished; "
        "rerunning that command runs the rest, and tables show what is finished).", ""]
    layout["source"] = str(tmp_path / "far" / "custom.toml")  # outside the page: its file name
    below = report._intro(layout, page / "suite", page, 3, {}, False, {"a", "b", "c"})
    assert below[0].startswith("Made by `clipunlearn benchmark report suite --to .` from 3 run folders")
    assert below[2] == ("Cells made by `clipunlearn benchmark --suite custom.toml --model m --out suite` (3 of 3 cells "
                        "finished).")
    layout["source"] = "benchmarks/suites/custom.toml"  # as typed, relative to where the suite ran: kept as typed
    assert report._intro(layout, page / "suite", page, 3, {}, False, set())[2].startswith(
        "Cells made by `clipunlearn benchmark --suite benchmarks/suites/custom.toml --model m --out suite`")
    for suite, shown in (("quick", "quick"), ("custom", "custom")):  # no source: the suite's name
        bare = {k: v for k, v in layout.items() if k != "source"} | {"suite": suite}
        assert f"--suite {shown} --model m --out suite`" in report._intro(bare, page / "suite", page, 3, {}, False, set())[2]
    del layout["description"]
    assert "of the suite 'custom' ()." in report._intro(layout, page, page, 1, {}, False, set())[0]


def _sections_input(tmp_path: Path) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Cell]]:
    runs = [_run("a", datasets={"dogs": (0.5, 0.375)}), _run("b", method="amns", target=(0.8, 0.4),
                                                             datasets={"dogs": (0.5, 0.5)}, avg=0.25),
            parse_results(_subgroup_raw("s1", method="ga")),
            parse_results({**_subgroup_raw("s2", method="ours"), "ratio_score": 90.0})]
    df = frame(runs).assign(**{"audit R": [0.25, 0.5, None, None]})
    two = _cells(["a", "b"], "mini")
    layout = {"seeds": [0], "tables": [
        {"name": "bar", "title": "The bar", "show": "bar", "group_by": ["method"], "cells": two, "bar": BAR,
         "claims": [{"says": "lip beats amns", "method": "lip", "column": "avg_score", "than": ["amns"],
                     "higher": False}]},
        {"name": "later", "show": "forgetting", "group_by": ["method"], "cells": _cells(["x", "y"], "mini")},
        {"name": "audit", "show": "audit", "group_by": ["method"], "cells": two},
        {"name": "sub", "show": "subgroup", "group_by": ["method"], "cells": _cells(["s1", "s2"], "mini"),
         "goal": {"method": "ours", "score": 85}},
        {"name": "depth", "show": "depth", "group_by": ["method"], "cells": two,
         "goal": {"method": "lip", "r": 0.25, "kept": 0.75}}]}
    cells = {r: Cell(r, tmp_path / r, run) for r, run in zip(["a", "b", "s1", "s2"], runs)}
    cells["a"].audit, cells["a"].audit_folder = AUDIT, tmp_path / "a" / "audit"
    return df, layout, cells


def test_each_section_has_its_table_caption_notes_and_tradeoff_and_unrun_tables_wait(tmp_path):
    df, layout, cells = _sections_input(tmp_path)
    sections, waiting = report._sections(df, layout, cells, tmp_path, tmp_path / "page")
    assert waiting == ["later (later): 0 of 2 cells finished"]
    assert [(s.name, s.title) for s in sections] == [("bar", "The bar"), ("audit", "audit"), ("sub", "sub"),
                                                     ("depth", "depth")]
    bar, audit, sub, depth = sections
    caption = ("2 cells in the suite, 2 finished and shown; mean ± std over the rows' classes and seeds (the suite's "
               "seeds: [0]).")
    assert bar.caption == [caption] and sub.caption == [caption]
    assert bar.notes == ["Claims, each over the cells that all its methods finished (means; AF/BF = after/before):", "",
                         "- mini: lip beats amns: holds (Avg. Score: lip 0.125; amns 0.250; 1 cells each)", ""]
    assert bar.tradeoff == report.tradeoff(df, layout["tables"][0]) and bar.tradeoff is not None
    assert list(bar.table["verdict"]) == ["misses: target AF/BF 0.500 (needs <= 0.25)", "meets the bar"]
    assert audit.notes == ["Audit thresholds and attacks: docs/audit.md. Per cell:", "",
                           "- [a](audits/a/audit.md): prompts recovered; images did not recover", ""]
    assert audit.tradeoff is None and list(audit.table.columns) == ["model", "method", "audit R", "runs"]
    assert sub.notes == ["Goal: ours's Score at least 85 and above every other method's (means over seeds):", "",
                         "- mini: ours 90.0, best other ga 87.5: meets the goal", ""]
    assert list(sub.table["Score"]) == ["87.5", "90.0"]
    assert depth.notes[0].startswith("Goal: lip, means over its cells") and depth.notes[2] == (
        "- mini: lip (1 cells) meets the goal: R 0.250 ≤ 0.25; worst other dataset dogs keeps 0.750; Avg. Score no "
        "worse than each of 1 other methods on the cells both finished (closest: amns (ours 0.125, theirs 0.250, "
        "1 cell)); R below each of 1 other methods on the cells both finished (closest: amns (ours 0.250, theirs "
        "0.500, 1 cell))")


def test_identical_rows_are_said_under_any_table_and_no_layout_gives_the_generic_tables(tmp_path):
    df, layout, cells = _sections_input(tmp_path)
    twin = frame([_run("a"), _run("b", method="twin"), _run("c", seed=1), _run("d", method="twin", seed=1)])
    table = {"name": "t", "show": "forgetting", "group_by": ["method"], "cells": _cells("abcd", "mini")}
    (section,), _ = report._sections(twin, {"seeds": [0, 1], "tables": [table]}, {}, tmp_path, tmp_path)
    assert section.notes == identical_lines(twin, table) and section.notes[0] == "Identical rows:"
    sections, waiting = report._sections(df, None, cells, tmp_path, tmp_path)
    assert waiting == [] and [(s.name, s.title, s.caption, s.notes, s.tradeoff) for s in sections] == [
        ("methods", "methods", [], [], None), ("classes", "classes", [], [], None)]
    assert sections[0].table.equals(generic_tables(df)["methods"])


def test_the_view_of_a_suite_folder_merges_its_audits_and_names_its_stale_runs(tmp_path):
    root = _suite_folder(tmp_path / "s")
    view = report.build_view(root, tmp_path / "page")
    assert (view.title, view.root, view.dest) == ("Benchmark report: mine", root, tmp_path / "page")
    assert view.intro == [
        "Made by `clipunlearn benchmark report DIR --to .` (DIR: the suite's folder; run from this page's folder) "
        "from 3 run folders of the suite 'mine' (two methods)" + TAIL, "",
        "**1 of these runs were made with another config of their preset than the method builds today** (e.g. amns-a: "
        "method 'gone' is no longer registered): rerun them with `clipunlearn benchmark ... --rerun-stale`.", "",
        "Cells made by `clipunlearn benchmark --suite mine.toml --model mini,other --out DIR` (2 of 3 cells finished; "
        "rerunning that command runs the rest, and tables show what is finished).", ""]
    assert list(view.runs["run_id"]) == ["amns-a", "byhand", "lip-a"]  # the run gathered by hand: its folder's name
    assert list(view.runs["audit R"].fillna(-1)) == [-1, -1, 0.25]
    assert list(view.runs["audit prompts recovered"].fillna(-1)) == [-1, -1, 1.0]
    assert [(c.run_id, c.folder, c.audit_folder) for c in view.cells] == [
        ("amns-a", root / "runs" / "amns-a", None), ("byhand", root / "runs" / "byhand", None),
        ("lip-a", root / "runs" / "lip-a", root / "runs" / "lip-a" / "audit")]
    assert view.cells[2].audit == AUDIT and view.cells[0].audit is None
    assert [(s.name, s.title, s.tradeoff is not None) for s in view.sections] == [
        ("t1", "Forgetting", False), ("bar", "bar", True), ("depth", "depth", False), ("audit", "audit", False)]
    assert view.sections[3].notes == ["Audit thresholds and attacks: docs/audit.md. Per cell:", "",
                                      "- [lip-a](audits/lip-a/audit.md): prompts recovered; images did not recover", ""]
    in_place = report.build_view(root)
    assert in_place.sections[3].notes[2] == "- [lip-a](runs/lip-a/audit/audit.md): prompts recovered; images did not recover"
    assert view.waiting == ["later (later): 0 of 1 cells finished"]
    assert [p.file for p in view.plots] == ["plots/target_bf_af.png", "plots/avg_score.png",
                                            "plots/relearning_curves.png"]
    assert view.plots[2].panels[0].series == (Series("lip (1 cells)", (0.0, 0.5)),)
    assert view.plots[0].groups == (BarGroup("mini-rn", "amns", (0.8, 0.4), 1), BarGroup("mini-rn", "ga", (0.8, 0.2), 1),
                                    BarGroup("mini-rn", "lip", (0.8, 0.2), 1))


def test_the_view_of_runs_gathered_by_hand_has_the_generic_tables_and_no_audit_columns(tmp_path):
    root = _suite_folder(tmp_path / "s", layout=False)
    (root / "runs" / "lip-a" / "audit" / "audit.json").unlink()
    view = report.build_view(root / "runs")
    assert view.title == "Benchmark report: runs" and view.dest == root / "runs"
    assert view.intro == ["Made by `clipunlearn benchmark report .` from 3 run folders" + TAIL, "",
                          "**1 of these runs were made with another config of their preset than the method builds "
                          "today** (e.g. amns-a: method 'gone' is no longer registered): rerun them with "
                          "`clipunlearn benchmark ... --rerun-stale`.", ""]
    assert [s.name for s in view.sections] == ["methods", "classes"] and view.waiting == []
    assert not [c for c in view.runs.columns if c.startswith("audit")]
    assert all(c.audit is None and c.audit_folder is None for c in view.cells)
    assert [p.file for p in view.plots] == ["plots/target_bf_af.png", "plots/avg_score.png"]
    assert report.build_view(root, tmp_path / "p", records=True).intro[2] == RECORDS_LINE


def _small_view(tmp_path: Path) -> report.View:
    table = pd.DataFrame({"method": ["lip"], "x": ["0.500"]})
    df, t = _tradeoff_df()
    sections = [report.Section("t1", "Forgetting", table, ["cap"], ["note", ""]),
                report.Section("bar", "bar", table, [], [], report.tradeoff(df, t))]
    plots = [Bars("plots/b.png", "t", "the bars", "y", (), ()), Lines("plots/l.png", "the lines", ())]
    return report.View("Benchmark report: s", ["intro", ""], sections, ["later (x): 0 of 1 cells finished"], plots,
                       pd.DataFrame(), [], tmp_path, tmp_path)


MARKDOWN = """# Benchmark report: s

intro

## t1: Forgetting

cap

| method   | x     |
|:---------|:------|
| lip      | 0.500 |

note

## bar


| method   | x     |
|:---------|:------|
| lip      | 0.500 |

![bar: forgetting against what the other datasets keep](plots/bar_tradeoff.png)

## Not run yet

- later (x): 0 of 1 cells finished

## Plots

![the bars](plots/b.png)

![the lines](plots/l.png)
"""


def test_the_markdown_page_shows_each_section_then_what_waits_then_the_plots(tmp_path):
    assert report.render_markdown(_small_view(tmp_path)) == MARKDOWN
    view = _small_view(tmp_path)
    view.waiting, view.plots = [], []
    assert report.render_markdown(view).endswith("plots/bar_tradeoff.png)\n\n## Plots\n")


def test_write_report_writes_each_table_the_page_the_plots_and_the_html(tmp_path, monkeypatch):
    written: list[tuple[str, Any]] = []
    monkeypatch.setattr(report, "write_html", lambda view: written.append(("html", view)))
    monkeypatch.setattr(report, "_write_plots", lambda view: written.append(("plots", view)))
    monkeypatch.setattr(report, "build_view", lambda folder, to, records: _small_view(Path(to)))
    with pytest.raises(ClipUnlearnError) as e:
        report.write_report(tmp_path / "s", records=True)
    assert str(e.value) == ("--records needs --to: the records are a copy of the folder's results for a page kept "
                            "elsewhere (e.g. --to docs/results/NAME).")
    out = report.write_report(tmp_path / "s", tmp_path / "page")
    assert out == tmp_path / "page" / "report.md" and out.read_text() == MARKDOWN
    tables = tmp_path / "page" / "tables"
    assert sorted(p.name for p in tables.iterdir()) == ["bar.csv", "bar.md", "t1.csv", "t1.md"]
    assert (tables / "t1.csv").read_text() == "method,x\nlip,0.500\n"
    assert (tables / "t1.md").read_text() == "| method   | x     |\n|:---------|:------|\n| lip      | 0.500 |\n"
    assert [w for w, _ in written] == ["plots", "html"] and written[0][1] is written[1][1]


def test_write_report_with_records_copies_them_and_the_audits(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "write_html", lambda view: None)
    monkeypatch.setattr(report, "_write_plots", lambda view: None)
    root = _suite_folder(tmp_path / "s")
    out = report.write_report(root, tmp_path / "page", records=True)
    assert (tmp_path / "page" / "records" / "runs" / "lip-a" / "results.json").is_file()
    assert (tmp_path / "page" / "audits" / "lip-a" / "audit.md").is_file()
    assert RECORDS_LINE in out.read_text()
    report.write_report(root, tmp_path / "plain")
    assert not (tmp_path / "plain" / "records").exists()
