"""The benchmark report's aggregations against hand computations (issue 35): the worst-kept other dataset,
a claim against every rival, and the std convention the page states (docs/benchmark.md: "means ±
population std over the cells of a row")."""
from __future__ import annotations

import pandas as pd
import pytest

from clipunlearn.benchmark.report import claim_lines, frame, suite_table
from clipunlearn.runs.results import parse_results


def _run(rid: str, seed: int, target, other, datasets: dict[str, tuple[float, float]], avg: float):
    """A parsed results.json of one cell: (before, after) of the target, the other classes, each dataset."""
    return parse_results({
        "method": "lip", "preset": "default", "model": {"arch": "mini-rn"}, "dataset": "caltech101",
        "classes": ["motorbike"], "target_before": target[0], "target_after": target[1],
        "other_classes_before": other[0], "other_classes_after": other[1],
        "datasets": {k: {"before": b, "after": a} for k, (b, a) in datasets.items()}, "avg_score": avg,
        "settings": {"seed": seed, "run_spec": {"run_id": rid}}})


def _cells(ids):
    return [{"model": "mini-rn", "run_id": rid, "setting": ""} for rid in ids]


def test_the_worst_other_dataset_is_the_one_that_kept_least():
    # cell a: dogs keep 0.4/0.8 = 0.5, flowers 0.45/0.5 = 0.9, cars 0.6/0.6 = 1; cell b: 0.7, 0.8, 1.0
    a = _run("a", 0, (0.9, 0.09), (0.8, 0.6), {"dogs": (0.8, 0.4), "flowers": (0.5, 0.45), "cars": (0.6, 0.6)}, 0.2)
    b = _run("b", 1, (0.5, 0.25), (0.8, 0.8), {"dogs": (1.0, 0.7), "flowers": (0.5, 0.4), "cars": (0.4, 0.4)}, 0.1)
    df = frame([a, b]).set_index("run_id")
    assert df.loc["a", "other datasets AF/BF (worst)"] == pytest.approx(0.5)
    assert df.loc["b", "other datasets AF/BF (worst)"] == pytest.approx(0.7)
    assert df.loc["a", "target AF/BF"] == pytest.approx(0.1)
    assert df.loc["a", "other classes AF/BF"] == pytest.approx(0.75)
    assert (df.loc["a", "other classes BF"], df.loc["a", "other classes AF"]) == (0.8, 0.6)
    assert (df.loc["a", "dogs BF"], df.loc["a", "dogs AF"]) == (0.8, 0.4)
    table = {"group_by": ["method"], "show": "bar", "cells": _cells("ab"),
             "bar": {"target": 0.3, "other_classes": 0.5, "other_datasets": 0.65, "avg_score": 0.5}}
    shown = suite_table(frame([a, b]), table).iloc[0]
    # means of the two cells: worst 0.6 ± 0.1 (population std), target 0.3 ± 0.2, other classes 0.875 ± 0.125
    assert shown["other datasets AF/BF (worst)"] == "0.600 ± 0.100"
    assert shown["target AF/BF"] == "0.300 ± 0.200" and shown["other classes AF/BF"] == "0.875 ± 0.125"
    assert shown["verdict"] == ("misses: other datasets AF/BF (worst) 0.600 (needs >= 0.65; dogs 0.600; "
                                "flowers 0.850; cars 1.000)")


def test_a_claim_holds_only_when_the_method_beats_every_rival():
    # Avg. Score (lower is better), one cell each: lip 0.2 beats amns 0.3 but not emb 0.1
    scores = {"lip": 0.2, "amns": 0.3, "emb": 0.1}
    df = pd.DataFrame([{"run_id": m, "model": "m", "method": m, "dataset": "d", "classes": "x", "seed": 0,
                        "Avg. Score": s, "target AF/BF": 1 - s} for m, s in scores.items()])
    claims = [{"says": "lip beats both", "method": "lip", "column": "avg_score", "than": ["amns", "emb"],
               "higher": False},
              {"says": "lip beats amns", "method": "lip", "column": "avg_score", "than": ["amns"], "higher": False},
              {"says": "lip keeps more", "method": "lip", "column": "target", "than": ["amns", "emb"],
               "higher": True}]
    lines = claim_lines(df, {"cells": _cells(scores), "claims": claims})
    assert ("- mini-rn: lip beats both: does not hold (Avg. Score: lip 0.200; amns 0.300; emb 0.100; "
            "1 cells each)") in lines
    assert "- mini-rn: lip beats amns: holds (Avg. Score: lip 0.200; amns 0.300; 1 cells each)" in lines
    # target AF/BF (higher keeps more): lip 0.8 above amns 0.7 but below emb 0.9
    assert ("- mini-rn: lip keeps more: does not hold (target AF/BF: lip 0.800; amns 0.700; emb 0.900; "
            "1 cells each)") in lines


def test_figures_are_means_and_population_std_over_a_rows_cells():
    # three cells of lip: Avg. Score 0.1, 0.2, 0.6 -> mean 0.3, population std sqrt((0.04 + 0.01 + 0.09) / 3)
    # = 0.216 (the sample std, ddof=1, would be sqrt(0.14 / 2) = 0.265); one cell of amns: no std
    values = [("lip", 0.1), ("lip", 0.2), ("lip", 0.6), ("amns", 0.4)]
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "m", "method": m, "target BF": 0.9, "target AF": s / 2,
                        "Avg. Score": s} for i, (m, s) in enumerate(values)])
    shown = suite_table(df, {"group_by": ["method"], "show": "forgetting", "cells": _cells(df["run_id"])})
    rows = shown.set_index("method")
    assert rows.loc["lip", "Avg. Score"] == "0.300 ± 0.216"
    assert rows.loc["lip", "target AF"] == "0.150 ± 0.108" and rows.loc["lip", "target BF"] == "0.900 ± 0.000"
    assert rows.loc["amns", "Avg. Score"] == "0.400" and rows.loc["amns", "runs"] == 1
    assert rows.loc["lip", "runs"] == 3
