"""Unit tests of the benchmark report (``benchmark/report.py``) on small hand-built inputs (issue 35: pin
every number and every word a user reads on a results page): each figure, rounding, sign, order, the
goal and claim wording, the missing cells shown as such, and what the plots are given to draw.
Expected values are computed by hand in the comments. No suite is run, no model loaded, no HTML built."""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
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
from clipunlearn.benchmark.view import Band, BarGroup, Bars, Cell, Lines, Mean, Panel, Point, Series, Tradeoff
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
        oracle={"kl_to_oracle": {"original": {"target": 2.0, "others": 0.5}, "forgotten": {"target": 0.25, "others": 0.125}}},
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
    table = {"cells": [{"model": "RN50", "run_id": "a", "setting": ""}, {"model": "RN50", "run_id": "b", "setting": "lr = 1"},
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


def test_a_subgroup_goal_has_no_lines_without_a_goal_cells_or_scores():
    df, table = _scores([("a", "ours", 0, 90.0)])
    assert goal_lines(df, {**table, "goal": {}}) == []
    assert goal_lines(df, {**table, "cells": []}) == []
    assert goal_lines(df.drop(columns=["Score"]), table) == []
    one_key = goal_lines(df, {**table, "group_by": ["method"]})
    assert one_key[2] == "- mini: ours 90.0, no other method yet: meets the goal"


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
        ("d-model", "lip", 0, 0.1, 0.0, 0.0, 1.0, 1.0, 0.25)])
    assert depth_goal_lines(df, table) == [
        DEPTH_HEADER, "",
        "- a-model: uproot (1 cells) meets the goal: R 0.000 ≤ 0.25; prompts recovered in 0 of 1 cells; mia recovered "
        "in 0 of 1 cells; worst other dataset cars keeps 0.750; Avg. Score no worse than each of 2 other methods on "
        "the cells both finished (closest: zeta (ours 0.250, theirs 0.375, 1 cell)); R below each of 2 other methods "
        "on the cells both finished (closest: ga (ours 0.000, theirs 0.250, 1 cell))",
        "- b-model: uproot (2 cells) misses 3 of 6 parts: R 0.250 ≤ 0.25; prompts recovered in 0 of 2 cells; mia "
        "recovered in 1 of 2 cells (missed); worst other dataset cars keeps 0.750; Avg. Score worse than amns (ours "
        "0.250, theirs 0.125, 1 cell) on the cells both finished (missed); R not below amns (ours 0.250, theirs 0.250, "
        "1 cell), lip (ours 0.250, theirs 0.250, 2 cells) on the cells both finished (missed)",
        "- c-model: uproot (1 cells) misses 3 of 3 parts: R 0.500 > 0.25 by 0.250 (missed); prompts recovered in 1 of "
        "1 cells (missed); worst other dataset dogs keeps 0.500 (< 0.75 by 0.250) (missed)",
        "- d-model: uproot not run yet", ""]


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
    assert rule[1] == "- A, cars: van." and rule[2] == "- B, dogs: akita; collie; husky; pug; shiba." and "at least 0.3," in rule[-1]


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
    assert report._group_label("m") == "m"
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
        "k0": _relearning_cell("k0", "lip", ("pug", "husky"), {"forgotten": two, "original": {"a": [1.0, 1.0], "b": [0.5, 1.0]}}),
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
