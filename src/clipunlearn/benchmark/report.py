"""Tables and plots of a suite, rebuilt from its folder alone (``clipunlearn benchmark report DIR``):
the run folders under ``DIR/runs`` and the suite's layout ``DIR/suite.json`` (which cells each table
shows, the settings they vary and the classes the class rule chose).

Each table groups its cells by its ``group_by`` keys (the model first) and shows, as mean ± std over
the rest (classes and seeds):

* ``forgetting``: target, other classes and each other dataset, before (BF) and after (AF), and the
  Avg. Score (WACV'25 Tables 1, 4, 16, 21 and the ablations);
* ``retrieval``: precision@k of the forgotten classes, image from text and image from image (Tables 2,
  25-28);
* ``errors``: of the kept images that forgetting turned wrong, the share whose true class fell one
  rank or at most two, and the standardised logit gap (Table 14);
* ``verification``: accuracy on the synthetic forget images against the real test images (Table 23);
* ``template``: the accuracies under templates other than the ones forgotten with (§6.3);
* ``bar``: after/before of the target, the other classes and the worst-kept other dataset, the Avg.
  Score, and whether the row's means meet the table's thresholds (``bar = {...}``);
* ``subgroup``: a subgroup run's columns (target, retain, the measured-only groups and other
  datasets) before and after, retrieval of the forgotten subgroup (forget@k by the coarse label and
  by its own name) and the CVPR'25 ratio Score (higher is better; CVPR'25 Tables 1-3);
* ``audit``: the audit of each cell (``RUN/audit/audit.json``, ``clipunlearn audit``): per attack the
  figure its verdict reads, for the original, forgotten and (where the suite trained one) oracle
  model, and how many attacks brought the class back; each cell's ``audit.md`` and plots are copied
  beside the report (``audits/<run id>/``) and linked;
* ``depth``: forgetting depth, one row per method: the relearning score R over the audited attacks,
  per attack the share of cells it brought the class back in, the weight distance, the target after,
  what the other classes and the worst-kept other dataset kept, and the Avg. Score; with a goal
  (``goal = { method, r, kept }``) each part of it met or missed, and the relearning curves of the
  depth tables' cells (each method beside the original's and the oracle's as bands) under the plots.

A folder without ``suite.json`` (run folders gathered by hand) gets the per-method, per-class and
retrieval tables. CSV and markdown (pandas) go to ``tables/``, plots (matplotlib) to ``plots/``, all
gathered in ``report.md``; the same tables and plots, sortable, filterable and interactive, in
``index.html``, with a page per run under ``cells/`` (``html_report.py``). Both read one computed
``View`` (``build_view``): neither renderer computes a figure of its own.

With ``records=True`` the report also keeps what it was made from beside it (``TO/records/``: the
layout ``suite.json``, each run's ``results.json`` and, where audited, its ``audit/audit.json``; no
model files; each absolute path in them made relative to the suite's folder, or cut to its last name
where it lies outside, so that the records name no folder of the machine that made them): the page can
then be rebuilt from the repository alone (``clipunlearn benchmark report TO/records --to TO``), and
copying the records into a suite's ``--out`` folder lets the suite resume there on another machine (a
cell is done when its ``results.json`` is).
"""
from __future__ import annotations

import json
import os
import re
import shlex
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ClipUnlearnError
from ..io import save_with, write_json, write_text
from ..runs.results import RunResults, read_results
from .html_report import write_html
from .view import (
    Band,
    BarGroup,
    Bars,
    Cell,
    Lines,
    Mean,
    Panel,
    Point,
    Section,
    Series,
    Tradeoff,
    View,
    format_figure,
)


def _runs_base(folder: str | os.PathLike[str]) -> Path:
    root = Path(folder)
    return root / "runs" if (root / "runs").is_dir() else root


def _finished(base: Path) -> list[Path]:
    """The run folders under ``base`` that hold a results.json (a cell is done when it does)."""
    return [d for d in sorted(base.iterdir()) if not d.name.startswith(".") and (d / "results.json").is_file()]


def collect_runs(folder: str | os.PathLike[str]) -> list[tuple[Path, RunResults]]:
    """Every finished run under ``folder/runs`` (or ``folder`` itself holding run folders), with its folder."""
    root = Path(folder)
    base = _runs_base(root)
    if not base.is_dir():
        raise ClipUnlearnError(f"{str(root)!r} is not a folder. Pass the --out folder of `clipunlearn benchmark`.")
    runs = [(d, read_results(d)) for d in _finished(base)]
    if not runs:
        raise ClipUnlearnError(f"No finished run under {str(base)!r}. Run `clipunlearn benchmark --suite ... --out "
                               f"{root}` first.")
    return runs


def collect(folder: str | os.PathLike[str]) -> list[RunResults]:
    """Every finished run under ``folder/runs`` (or ``folder`` itself holding run folders)."""
    return [r for _, r in collect_runs(folder)]


def _label(r: RunResults) -> str:
    """method (preset) +ablation [options]: the options a cell set over its preset tell rows apart."""
    options = (r.raw.get("settings") or {}).get("options") or {}
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    return (r.method + ("" if r.preset == "default" else f" ({r.preset})") + (f" +{r.ablation}" if r.ablation else "")
            + (f" [{shown}]" if shown else ""))


def _run_id(r: RunResults) -> str:
    return ((r.raw.get("settings") or {}).get("run_spec") or {}).get("run_id", "")


def frame(runs: list[RunResults]) -> pd.DataFrame:
    """One row per run: identifiers and every figure a table may show."""
    rows = []
    for r in runs:
        row: dict[str, Any] = {
            "run_id": _run_id(r), "model": r.model["arch"], "method": _label(r), "kind": r.raw.get("zero_shot", ""),
            "dataset": r.dataset, "classes": ", ".join(r.classes), "n_classes": len(r.classes),
            "seed": r.raw.get("settings", {}).get("seed", 0),
            "target BF": r.target.before, "target AF": r.target.after}
        subgroup = r.raw.get("task") == "subgroup"
        kept = "retain" if subgroup else "other classes"  # a subgroup run keeps the retained subgroups
        row[f"{kept} BF"], row[f"{kept} AF"] = r.other_classes.before, r.other_classes.after
        for name, ba in r.datasets.items():
            row[f"{name} BF"], row[f"{name} AF"] = ba.before, ba.after
        row["Avg. Score"] = r.avg_score
        row.update(_ratios(r))
        rt = r.retrieval
        if subgroup:
            row["Score"] = r.raw.get("ratio_score")
            row.update(_subgroup_retrieval(r))
        elif rt:
            for task in ("ift", "ifi"):
                for when in ("before", "after"):
                    target = rt[when][task].get("target") or {}
                    for k, v in target.items():
                        row[f"{task.upper()} P@{k} {'BF' if when == 'before' else 'AF'}"] = v
        ea = (r.error_analysis or {}).get("pooled")
        if ea:
            row["turned wrong"] = ea["n_turned_wrong"]
            row["fell 1 rank"] = ea["share_rank1"]
            row["fell ≤ 2 ranks"] = ea["share_rank_le2"]
            row["std. logit gap"] = ea["mean_std_logit_gap"]
        row["synthetic BF"], row["synthetic AF"] = r.synthetic_acc.before, r.synthetic_acc.after
        if r.synthetic_acc.after is not None and r.target.after is not None:
            row["|synthetic AF - target AF|"] = abs(r.synthetic_acc.after - r.target.after)
        tc = r.template_change
        if tc:
            for part, label in (("target", "target"), ("other_classes", "other classes")):
                row[f"changed templates: {label} BF"] = tc["before"][part]
                row[f"changed templates: {label} AF"] = tc["after"][part]
            row["changed templates: Avg. Score"] = tc.get("avg_score")
        rows.append(row)
    return pd.DataFrame(rows)


def audit_figures(audit: dict[str, Any]) -> dict[str, Any]:
    """The figures an audit's verdicts read, one column per attack and model (``audit ...``)."""
    r, models = {k: v for k, v in audit["results"].items() if "skipped" not in v}, audit["models"]
    th = audit.get("thresholds", {})
    row: dict[str, Any] = {}
    if "prompts" in r:
        row["audit run template (original)"] = r["prompts"]["before"]
        best = r["prompts"].get("best_after")
        for m in models:
            row[f"audit best other prompt ({m})"] = None if best is None else best["accuracy"].get(m)
    if "images" in r:
        for m in models:
            row[f"audit best augmentation ({m})"] = r["images"]["best_after"]["accuracy"].get(m)
    if "probe" in r:
        for m in models:
            row[f"audit probe AUC ({m})"] = r["probe"]["auc"].get(m)
    if "prototype" in r:
        k = str(th.get("prototype_k", 5))
        for m in models:
            row[f"audit prototype k={k} ({m})"] = r["prototype"]["accuracy"].get(k, {}).get(m)
    if "relearning" in r:
        score = r["relearning"].get("score", {})
        row["audit R"] = score.get("R")
        row["audit R (floor 0)"] = score.get("R_floor")
        row["audit relearning attacks"] = len(r["relearning"].get("attacks", []))
    if "weights" in r:
        row["audit weight distance (relative)"] = r["weights"]["relative_l2"]
        row["audit loss barrier"] = r["weights"]["barrier_others"]
    if "mia" in r:  # a membership attack that ran has its AUCs (one that could not run says only why)
        for m in models:
            row[f"audit MIA AUC ({m})"] = r["mia"]["threshold_auc"].get(m)
        for m, diff in r["mia"].get("minus_oracle", {}).items():  # the verdict: recovered when this is above 0
            row[f"audit MIA AUC − oracle's, interval low ({m})"] = diff["interval"][0]
    if "oracle" in r:
        for part, label in (("target", "class's images"), ("others", "other images")):
            for m in ("original", "forgotten"):
                row[f"audit KL to oracle, {label} ({m})"] = r["oracle"]["kl_to_oracle"][m][part]
    from ..audit.verdict import JUDGED, RECOVERED, judged

    row["audit attacks recovered"], row["audit attacks"] = judged(audit["verdict"])
    for line in audit["verdict"]:  # 1 recovered, 0 not (or no evidence): a table's mean is the share of cells
        if line["verdict"] in JUDGED:
            row[f"audit {line['attack']} recovered"] = float(line["verdict"] == RECOVERED)
    return row


def collect_audits(folder: str | os.PathLike[str]) -> dict[str, Path]:
    """Run id -> audit folder, for every finished run under ``folder`` that was audited."""
    out = {}
    for d in _finished(_runs_base(folder)):
        if (d / "audit" / "audit.json").is_file():
            out[_run_id(read_results(d)) or d.name] = d / "audit"
    return out


def _subgroup_retrieval(r: RunResults) -> dict[str, float]:
    """forget@10 (share of the top 10 retrieved that are forgotten-subgroup images) by the coarse label
    and by the subgroup's own name, before and after."""
    rt = r.retrieval
    if not rt:
        return {}
    coarse = {g["coarse"] for g in r.raw["setting"]["forget"] if g.get("coarse")}
    out = {}
    for query, values in rt["before"].items():
        by = "coarse label" if query in coarse else "subgroup name"
        k = max(int(key.split("@")[1]) for key in values if key.startswith("forget@"))
        out[f"forget@{k} by {by} BF"] = values[f"forget@{k}"]
        out[f"forget@{k} by {by} AF"] = rt["after"][query][f"forget@{k}"]
    return out


def _ratios(r: RunResults) -> dict[str, float | None]:
    """After/before of the target, the other classes and the worst-kept other dataset."""
    def ratio(ba) -> float | None:
        return ba.after / ba.before if ba.before and ba.after is not None else None

    per_dataset = {f"{_KEPT}{name}": ratio(ba) for name, ba in r.datasets.items()}
    datasets = [x for x in per_dataset.values() if x is not None]
    return {"target AF/BF": ratio(r.target), "other classes AF/BF": ratio(r.other_classes),
            "other datasets AF/BF (worst)": min(datasets) if datasets else None, **per_dataset}


_KEPT = "AF/BF of "  # the hidden per-dataset ratio columns a bar verdict names when datasets limit it


_BAR = {"target": ("target AF/BF", "<="), "other_classes": ("other classes AF/BF", ">="),
        "other_datasets": ("other datasets AF/BF (worst)", ">="), "avg_score": ("Avg. Score", "<=")}
#: the forgetting-depth view (``show = "depth"``): per row, what the audit found (R over the held-out
#: attacks; per attack the share of cells it brought the class back in) and what forgetting cost
_DEPTH = ["audit R", "audit relearning recovered", "audit prompts recovered", "audit images recovered",
          "audit prototype recovered", "audit mia recovered", "audit weight distance (relative)", "target AF",
          "other classes AF/BF", "other datasets AF/BF (worst)", "Avg. Score"]
_RETRIEVAL = ("IFT", "IFI")
_ERRORS = ["turned wrong", "fell 1 rank", "fell ≤ 2 ranks", "std. logit gap"]
_VERIFY = ["target BF", "target AF", "synthetic BF", "synthetic AF", "|synthetic AF - target AF|"]


def columns_for(show: str, df: pd.DataFrame) -> list[str]:
    """The figure columns of a view, among those the runs measured."""
    if show == "forgetting":
        accuracy = [c for c in df.columns if c.endswith((" BF", " AF")) and not c.startswith(_RETRIEVAL)
                    and not c.startswith(("synthetic", "changed templates"))]
        return accuracy + ["Avg. Score"]
    if show == "retrieval":
        return [c for c in df.columns if c.startswith(_RETRIEVAL)]
    if show == "errors":
        return [c for c in _ERRORS if c in df.columns]
    if show == "verification":
        return [c for c in _VERIFY if c in df.columns] + ["Avg. Score"]
    if show == "template":
        return [c for c in df.columns if c.startswith("changed templates")]
    if show == "bar":
        return [column for column, _ in _BAR.values()]
    if show == "audit":
        return [c for c in df.columns if c.startswith("audit ")]
    if show == "depth":
        return [c for c in _DEPTH if c in df.columns]
    if show == "subgroup":
        accuracy = [c for c in df.columns if c.endswith((" BF", " AF")) and not c.startswith(_RETRIEVAL)
                    and not c.startswith(("synthetic", "changed templates", "other classes", "forget@"))]
        return accuracy + [c for c in df.columns if c.startswith("forget@")] + ["Score"]
    raise ClipUnlearnError(f"Unknown table view {show!r}.")


def _verdicts(rows: pd.DataFrame, keys: list[str], bar: dict[str, float]) -> list[str]:
    """Per group: whether the means meet every threshold of ``bar``, naming those missed."""
    kept = [c for c in rows.columns if c.startswith(_KEPT)]
    means = rows.groupby(keys, dropna=False)[[c for c, _ in _BAR.values()] + kept].mean()
    out = []
    for _, m in means.iterrows():
        missed = []
        for key, limit in bar.items():
            column, op = _BAR[key]
            value = m[column]
            if pd.isna(value) or (value > limit if op == "<=" else value < limit):
                why = f"needs {op} {limit:g}"
                if key == "other_datasets":  # which datasets limit it: each one's mean after/before
                    each = m[kept].dropna().sort_values()
                    why += "".join(f"; {c[len(_KEPT):]} {v:.3f}" for c, v in each.items())
                missed.append(f"{column} {'–' if pd.isna(value) else f'{value:.3f}'} ({why})")
        out.append("meets the bar" if not missed else "misses: " + "; ".join(missed))
    return out


def _mean_std(df: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    columns = [c for c in columns if c in df.columns and df[c].notna().any()]
    numeric = df[keys + columns].copy()
    for c in columns:
        numeric[c] = pd.to_numeric(numeric[c], errors="coerce")
    grouped = numeric.groupby(keys, dropna=False)[columns]
    mean, std, n = grouped.mean(), grouped.std(ddof=0), grouped.size()
    out = mean.copy()  # each column replaced by its text below
    for c in columns:
        out[c] = [("–" if pd.isna(m) else format_figure(c, m)
                   + ("" if pd.isna(s) or k == 1 else f" ± {format_figure(c, s)}"))
                  for m, s, k in zip(mean[c], std[c], n)]
    out["runs"] = n
    return out.reset_index()


def generic_tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """A folder without a suite layout: per method, per class and retrieval."""
    figures = columns_for("forgetting", df)
    out = {"methods": _mean_std(df, ["model", "dataset", "method", "kind"], figures),
           "classes": _mean_std(df, ["model", "dataset", "classes", "method"], figures)}
    retrieval = columns_for("retrieval", df)
    if retrieval:
        out["retrieval"] = _mean_std(df, ["model", "dataset", "method"], retrieval)
    return out


def _table_rows(df: pd.DataFrame, table: dict[str, Any]) -> pd.DataFrame:
    """The rows of the finished cells of one table of a suite layout (the preset's setting named)."""
    cells = pd.DataFrame(table["cells"], columns=["model", "run_id", "setting"])  # the run gives the rest (its seed)
    rows = df.drop(columns=["model"]).merge(cells, on="run_id")  # inner: the finished cells
    rows["setting"] = rows["setting"].replace("", "preset")
    return rows


def goal_lines(df: pd.DataFrame, table: dict[str, Any]) -> list[str]:
    """Per setting (the table's rows without the method), whether the goal's method (its row of the goal's
    ``preset``, else of its default) has a mean ratio Score of at least the goal's and above every other
    method's (the method's own other rows are not others)."""
    goal = table.get("goal") or {}
    rows = _table_rows(df, table)
    if not goal or rows.empty or "Score" not in rows.columns:
        return []
    name, least = goal["method"], float(goal["score"])
    method = name + ("" if goal.get("preset", "default") == "default" else f" ({goal['preset']})")  # as _label
    keys = ["model", *[k for k in table["group_by"] if k != "method"]]
    lines = [f"Goal: {method}'s Score at least {least:g} and above every other method's (means over seeds):", ""]
    for key, group in rows.groupby(keys, dropna=False):
        means = group.groupby("method")["Score"].mean()
        where = ", ".join(str(k) for k in key)  # grouped by a list of keys: a tuple
        if method not in means.index:
            lines.append(f"- {where}: {method} not run yet")
            continue
        if pd.isna(means[method]):  # the subgroup's ratio Score is undefined where its target was 0 before
            lines.append(f"- {where}: {method}: Score undefined (the model did not recognise the forgotten subgroup "
                         "before forgetting, target BF 0: there is nothing to forget)")
            continue
        scores = means.dropna()
        own = [label for label in scores.index if label == name or label.startswith(name + " ")]
        ours, others = scores[method], scores.drop(own)
        best = (f"best other {others.idxmax()} {others.max():.1f}" if len(others) else "no other method yet")
        missed = ([f"Score {ours:.1f} < {least:g}"] if ours < least else []) + (
            [f"below {others.idxmax()}"] if len(others) and others.max() >= ours else [])
        lines.append(f"- {where}: {method} {ours:.1f}, {best}: " + ("meets the goal" if not missed else
                                                                    "misses (" + "; ".join(missed) + ")")
                     + _unmoved(group[group["method"] == method]))
    return lines + [""]


def _unmoved(ours: pd.DataFrame) -> str:
    """A warning for a goal line whose method did not lower its target (means over seeds): a model left
    unchanged scores N/(N+1), so its Score says nothing of forgetting."""
    if not {"target BF", "target AF"} <= set(ours.columns):
        return ""
    before, after = ours["target BF"].mean(), ours["target AF"].mean()
    if pd.isna(before) or pd.isna(after) or after < before:
        return ""
    return (f"; but its target did not fall ({before:.2f} -> {after:.2f}): the Score of a model that forgot "
            "nothing")


def depth_goal_lines(df: pd.DataFrame, table: dict[str, Any]) -> list[str]:
    """Per model, each part of a forgetting-depth goal (``suite.DEPTH_GOAL_KEYS``) for the goal's method,
    met or missed and by how much: means over its finished cells; against another method, means over
    the cells both have finished."""
    goal = table.get("goal") or {}
    rows = _table_rows(df, table)
    if not goal or rows.empty or "audit R" not in rows.columns:
        return []
    method, r_max, kept_min = goal["method"], float(goal["r"]), float(goal["kept"])
    lines = [f"Goal: {method}, means over its cells, held-out attacks: R ≤ {r_max:g}; prompts, images and membership "
             f"bring the class back in no cell; every other dataset keeps ≥ {kept_min:g} of its accuracy; Avg. Score "
             "no worse than any other method's and R below every other method's, each on the cells both finished.", ""]
    kept_cols = [c for c in rows.columns if c.startswith(_KEPT)]
    for model, of_model in rows.groupby("model"):
        ours = of_model[of_model["method"] == method]
        if ours.empty:
            lines.append(f"- {model}: {method} not run yet")
            continue
        parts = []
        r = float(ours["audit R"].mean())
        parts.append((r <= r_max, f"R {r:.3f} " + (f"≤ {r_max:g}" if r <= r_max else f"> {r_max:g} by {r - r_max:.3f}")))
        for attack in ("prompts", "images", "mia"):
            column = f"audit {attack} recovered"
            if column in ours.columns and ours[column].notna().any():
                hit, n = int(ours[column].sum()), int(ours[column].notna().sum())
                parts.append((hit == 0, f"{attack} recovered in {hit} of {n} cells"))
        if kept_cols:
            kept = ours[kept_cols].mean()
            worst = kept.idxmin()
            parts.append((bool(kept.min() >= kept_min),
                          f"worst other dataset {worst[len(_KEPT):]} keeps {kept.min():.3f}"
                          + ("" if kept.min() >= kept_min else f" (< {kept_min:g} by {kept_min - kept.min():.3f})")))
        others = sorted(set(of_model["method"]) - {method})
        for column, name, better, words in (("Avg. Score", "Avg. Score", lambda a, b: a <= b, ("no worse than", "worse than")),
                                            ("audit R", "R", lambda a, b: a < b, ("below", "not below"))):
            paired = _paired_means(ours, of_model, others, column)
            if paired:
                parts.append(_against_others(name, paired, better, words))
        missed = [text for ok, text in parts if not ok]
        lines.append(f"- {model}: {method} ({len(ours)} cells) " + ("meets the goal: " if not missed else
                     f"misses {len(missed)} of {len(parts)} parts: ") + "; ".join(
                         text + ("" if ok else " (missed)") for ok, text in parts))
    return lines + [""]


_SAME_CELL = ["dataset", "classes", "seed"]  # what makes two methods' cells comparable


def _paired_means(ours: pd.DataFrame, rows: pd.DataFrame, others: list[str],
                  column: str) -> list[tuple[str, int, float, float]]:
    """For each other method: (method, cells, our mean, its mean) of ``column`` over the cells both have
    finished (same dataset, classes and seed; a cell without the figure, e.g. not audited yet, left out),
    so that a method with fewer finished cells is compared on those only."""
    out = []
    mine = ours[_SAME_CELL + [column]].dropna()
    for other in others:
        theirs = rows.loc[rows["method"] == other, _SAME_CELL + [column]].dropna()
        both = mine.merge(theirs, on=_SAME_CELL, suffixes=("", " (other)"))
        if len(both):
            out.append((other, len(both), float(both[column].mean()), float(both[f"{column} (other)"].mean())))
    return out


def _against_others(name: str, paired: list[tuple[str, int, float, float]],
                    better: Callable[[float, float], bool], words: tuple[str, str]) -> tuple[bool, str]:
    """One goal part: ours against each other method on the cells both finished."""
    def say(p: tuple[str, int, float, float]) -> str:
        return f"{p[0]} (ours {p[2]:.3f}, theirs {p[3]:.3f}, {p[1]} cell{'' if p[1] == 1 else 's'})"

    losing = [p for p in paired if not better(p[2], p[3])]
    if losing:
        return False, f"{name} {words[1]} " + ", ".join(say(p) for p in losing) + " on the cells both finished"
    closest = min(paired, key=lambda p: abs(p[3] - p[2]))
    return True, (f"{name} {words[0]} each of {len(paired)} other methods on the cells both finished "
                  f"(closest: {say(closest)})")


def claim_lines(df: pd.DataFrame, table: dict[str, Any]) -> list[str]:
    """Per model, whether each claim of a bar table holds: the claim's method's mean of the column
    against each other method's, over the cells (dataset, classes, seed) that all of them finished."""
    rows = _table_rows(df, table)
    if not table.get("claims") or rows.empty:
        return []
    lines = ["Claims, each over the cells that all its methods finished (means; AF/BF = after/before):", ""]
    for model, of_model in rows.groupby("model"):
        for claim in table["claims"]:
            methods = [claim["method"], *claim["than"]]
            column = _BAR[claim["column"]][0]
            wide = of_model[of_model["method"].isin(methods)].pivot_table(
                index=_SAME_CELL, columns="method", values=column, aggfunc="mean").dropna()
            missing = [m for m in methods if m not in wide.columns]
            if missing or wide.empty:
                lines.append(f"- {model}: {claim['says']}: not run yet"
                             + (f" ({', '.join(missing)} has no cell finished beside the others)" if missing else ""))
                continue
            means = wide[methods].mean()
            ours = means[claim["method"]]
            holds = all((ours > means[m]) if claim["higher"] else (ours < means[m]) for m in claim["than"])
            figures = "; ".join(f"{m} {means[m]:.3f}" for m in methods)
            lines.append(f"- {model}: {claim['says']}: {'holds' if holds else 'does not hold'} ({column}: {figures}; "
                         f"{len(wide)} cells each)")
    return lines + [""]


def identical_lines(df: pd.DataFrame, table: dict[str, Any]) -> list[str]:
    """Rows (methods) of a table whose every common cell (dataset, classes, seed) gave exactly the same
    figures as another row's: a setting that changed nothing on this model, said outright instead of
    left to the reader to spot in equal means."""
    rows = _table_rows(df, table)
    if rows.empty or rows["method"].nunique() < 2:
        return []
    figures = [c for c in columns_for("forgetting", rows) if c.endswith(" AF") or c == "Avg. Score"]
    lines = []
    for model, of_model in rows.groupby("model"):
        prints = of_model.set_index(_SAME_CELL + ["method"])[figures].apply(
            lambda r: "|".join("nan" if pd.isna(v) else f"{float(v):.6f}" for v in r), axis=1)
        prints = prints[~prints.index.duplicated(keep=False)]
        by_method = {m: group.droplevel("method") for m, group in prints.groupby(level="method")}
        names = list(by_method)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                common = by_method[a].index.intersection(by_method[b].index)
                if len(common) >= 2 and (by_method[a][common] == by_method[b][common]).all():
                    lines.append(f"- {model}: `{b}` gives exactly the figures of `{a}` in all {len(common)} cells "
                                 "both finished: on this model the setting that tells them apart changed nothing.")
    return (["Identical rows:", "", *lines, ""]) if lines else []


def suite_table(df: pd.DataFrame, table: dict[str, Any]) -> pd.DataFrame | None:
    """One table of a suite layout: its cells' rows, grouped by its keys, shown by its view."""
    rows = _table_rows(df, table)
    if rows.empty:
        return None
    keys = ["model", *table["group_by"]]
    shown = _mean_std(rows, keys, columns_for(table["show"], rows))
    if table["show"] == "bar":
        shown["verdict"] = _verdicts(rows, keys, table.get("bar") or {})
    return shown


def _caption(layout: dict[str, Any], table: dict[str, Any], df: pd.DataFrame) -> list[str]:
    """How many of the table's cells are finished, and which classes its finished cells forgot (with
    the class rule's reason for each)."""
    ids = {c["run_id"] for c in table["cells"]}
    rows = df[df["run_id"].isin(ids)]
    lines = [f"{len(ids)} cells in the suite, {len(rows)} finished and shown; mean ± std over the rows' classes "
             f"and seeds (the suite's seeds: {layout.get('seeds')})."]
    if table.get("class_rule"):
        # the run folders' model is the architecture; the layout's classes are keyed by the suite's model name
        cell_model = {c["run_id"]: c["model"] for c in table["cells"]}
        for (model, dataset), group in rows.groupby([rows["run_id"].map(cell_model), "dataset"]):
            texts = {c["name"]: c["text"] for c in layout.get("classes", {}).get(model, {}).get(dataset, [])}
            # the layout's order, then the classes it does not name by name (a set's order changes per process)
            used = sorted({name for names in group["classes"] for name in names.split(", ")},
                          key=lambda n: (list(texts).index(n) if n in texts else len(texts), n))
            lines.append(f"- {model}, {dataset}: " + "; ".join(texts.get(n, n) for n in used) + ".")
        lines.append(f"\nClasses: the paper's forget classes where the model's zero-shot top-1 on them (the lower of "
                     f"train and test images) is at least {layout.get('min_top1', 0.3)}, else the dataset's best-known "
                     "classes by the same measure.")
    return lines


def _number(value: Any) -> float | None:
    return None if pd.isna(value) else float(value)


def _group_label(key: Any) -> str:
    """A table row's name on a plot: its keys after the model."""
    keys = key if isinstance(key, tuple) else (key,)
    return " / ".join(str(k) for k in keys[1:]) or str(key)


def tradeoff(df: pd.DataFrame, table: dict[str, Any]) -> Tradeoff | None:
    """A bar table's rows and cells as points: what the target keeps (x) against what the worst-kept
    other dataset keeps (y), both after/before, with the region the bar asks for."""
    rows = _table_rows(df, table)
    x_col, y_col = _BAR["target"][0], _BAR["other_datasets"][0]
    if rows.empty or rows[[x_col, y_col]].dropna().empty:
        return None
    keys = ["model", *table["group_by"]]
    grouped = rows.groupby(keys, dropna=False)[[x_col, y_col]]
    means = grouped.mean()
    means["runs"] = grouped.size().to_numpy()  # by position: a key with a missing value cannot be looked up
    cells = rows.dropna(subset=[x_col, y_col])
    points = tuple(Point(str(r["run_id"]), str(r["method"]), str(r["dataset"]), str(r["classes"]), int(r["seed"]),
                         _group_label(tuple(r[k] for k in keys)), float(r[x_col]), float(r[y_col]))
                   for _, r in cells.iterrows())
    xs, ys = [p.x for p in points], [p.y for p in points]
    bar = table.get("bar") or {}
    name = table["name"]
    return Tradeoff(
        name=name, title=table.get("title") or name, file=f"plots/{name}_tradeoff.png",
        x_label="target AF/BF (lower: more forgotten)", y_label="worst other dataset AF/BF (higher: more kept)",
        x_column=x_col, y_column=y_col,
        means=tuple(Mean(_group_label(key), float(m[x_col]), float(m[y_col]), int(m["runs"]))
                    for key, m in means.dropna().iterrows()),
        points=points,
        region=(bar["target"], bar["other_datasets"]) if "target" in bar and "other_datasets" in bar else None,
        x_range=(0.0, max(1.0, max(xs) + 0.05)), y_range=(min(0.5, min(ys) - 0.05), max(1.05, max(ys) + 0.05)))


def _bars(df: pd.DataFrame, file: str, title: str, alt: str, columns: list[str], y_label: str) -> Bars:
    """Per (model, method): the mean of each column over its runs."""
    grouped = df.groupby(["model", "method"])[columns]
    means, n = grouped.mean(), grouped.size()
    return Bars(file=file, title=title, alt=alt, y_label=y_label, columns=tuple(columns),
                groups=tuple(BarGroup(str(model), str(method), tuple(_number(v) for v in means.loc[(model, method)]),
                                      int(n[(model, method)])) for model, method in means.index))


def _precision(df: pd.DataFrame) -> Lines | None:
    """Precision@k of the forgotten classes against k, per method, image from text and from image."""
    panels = []
    for task in _RETRIEVAL:
        cols = sorted((c for c in df.columns if c.startswith(task) and c.endswith(" AF")),
                      key=lambda c: int(c.split("@")[1].split()[0]))
        if not cols:
            continue
        before = [c.replace(" AF", " BF") for c in cols]
        series = tuple(Series(f"{method} AF ({model})", tuple(_number(v) for v in g[cols].mean().values))
                       for (model, method), g in df.groupby(["model", "method"]))
        panels.append(Panel(f"{'image from text' if task == 'IFT' else 'image from image'}: forgotten class",
                            tuple(int(c.split("@")[1].split()[0]) for c in cols), series,
                            tuple(_number(v) for v in df[before].mean().values)))
    return Lines("plots/precision_at_k.png", "precision@k", tuple(panels)) if panels else None


def summary_plots(df: pd.DataFrame) -> list[Bars | Lines]:
    """The plots under every report: target before and after, the Score (subgroup runs), the Avg.
    Score and precision@k, per method."""
    plots: list[Bars | Lines] = [_bars(df, "plots/target_bf_af.png", "target accuracy before and after",
                                       "target before and after", ["target BF", "target AF"], "top-1")]
    if "Score" in df.columns and df["Score"].notna().any():
        plots.append(_bars(df[df["Score"].notna()], "plots/subgroup_score.png",
                           "subgroup forgetting: Score (CVPR'25, higher is better)", "Score", ["Score"], "Score"))
    if df["Avg. Score"].notna().any():
        plots.append(_bars(df, "plots/avg_score.png", "Avg. Score (lower is better)", "Avg. Score", ["Avg. Score"],
                           "Avg. Score"))
    precision = _precision(df)
    return plots + ([precision] if precision else [])


def relearning_curves(layout: dict[str, Any] | None, cells: dict[str, Cell]) -> Lines | None:
    """The depth tables' relearning curves, one panel per class: each method's forgotten model, averaged
    over the audited attacks and then over the class's cells (seeds), with the original's and the
    oracle's curves as bands (their lowest and highest over those cells)."""
    ids = {c["run_id"] for t in (layout or {}).get("tables", []) if t["show"] == "depth" for c in t["cells"]}
    curves: dict[str, dict[str, list[list[float]]]] = {}  # class -> model or method -> one mean curve per cell
    steps: dict[str, tuple[int, ...]] = {}
    attacks: dict[str, set[int]] = {}
    for rid in sorted(ids):
        cell = cells.get(rid)
        rl = None if cell is None or cell.audit is None else cell.audit["results"].get("relearning")
        if rl is None or "skipped" in rl:
            continue
        key = f"{cell.results.dataset}: {', '.join(cell.results.classes)}"
        steps.setdefault(key, tuple(int(k) for k in rl["steps"]))
        attacks.setdefault(key, set()).add(len(rl["attacks"]))
        for model, per_attack in rl["curves"].items():
            mean = [float(v) for v in pd.DataFrame([per_attack[a] for a in rl["attacks"]]).mean().values]
            name = _label(cell.results) if model == "forgotten" else model
            curves.setdefault(key, {}).setdefault(name, []).append(mean)
    panels = []
    for key in sorted(curves):
        group = curves[key]
        bands = tuple(Band(m, tuple(float(v) for v in pd.DataFrame(group[m]).min().values),
                           tuple(float(v) for v in pd.DataFrame(group[m]).max().values))
                      for m in ("original", "oracle") if m in group)
        series = tuple(Series(f"{m} ({len(c)} cells)", tuple(float(v) for v in pd.DataFrame(c).mean().values))
                       for m, c in sorted(group.items()) if m not in ("original", "oracle"))
        n = "/".join(str(a) for a in sorted(attacks[key]))
        panels.append(Panel(f"{key}: relearning, mean over {n} attacks", steps[key], series, (),
                            x_label="relearning step", y_label="class test accuracy", bands=bands))
    return Lines("plots/relearning_curves.png", "relearning curves: each method beside the original and the oracle "
                 "(bands)", tuple(panels)) if panels else None


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    fig.tight_layout()
    save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    _pyplot().close(fig)


def _plot_bars(bars: Bars, path: Path) -> None:
    plt = _pyplot()
    index = pd.MultiIndex.from_tuples([(g.model, g.method) for g in bars.groups])  # unnamed: no x label
    means = pd.DataFrame([list(g.values) for g in bars.groups], index=index, columns=list(bars.columns),
                         dtype=float)  # None: nan, no bar
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(means) + 2), 3.6))
    means.plot.bar(ax=ax, rot=30)
    ax.set_title(bars.title)
    ax.set_ylabel(bars.y_label)
    _save(fig, path)


def _plot_tradeoff(t: Tradeoff, path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    if t.region:
        ax.fill_between([0, t.region[0]], t.region[1], t.y_range[1], color="tab:green", alpha=0.15,
                        label="the bar's region")
    ax.scatter([p.x for p in t.points], [p.y for p in t.points], s=10, color="tab:gray", alpha=0.5, label="cells")
    ax.scatter([m.x for m in t.means], [m.y for m in t.means], color="tab:blue", label="rows (means)")
    for m in t.means:
        ax.annotate(m.group, (m.x, m.y), textcoords="offset points", xytext=(4, 3), fontsize=7)
    ax.set_xlabel(t.x_label)
    ax.set_ylabel(t.y_label)
    ax.set_xlim(*t.x_range)
    ax.set_ylim(*t.y_range)
    ax.set_title(textwrap.fill(t.title, 90), fontsize=8)
    ax.legend(loc="lower right", fontsize=7)
    _save(fig, path)


def _plot_lines(lines: Lines, path: Path) -> None:
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(lines.panels), figsize=(5 * len(lines.panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], lines.panels):
        for band, colour in zip(panel.bands, ("tab:gray", "tab:green", "tab:orange")):
            ax.fill_between(panel.ks, band.low, band.high, color=colour, alpha=0.2, label=band.label)
            for edge in (band.low, band.high):  # a band of one cell has no width: its edges show it
                ax.plot(panel.ks, edge, color=colour, linestyle=":", linewidth=1.2)
        for s in panel.series:
            ax.plot(panel.ks, [float("nan") if v is None else v for v in s.values], marker="o", label=s.label)
        if panel.before:
            ax.plot(panel.ks, [float("nan") if v is None else v for v in panel.before], "k--", marker="x",
                    label="before")
        ax.set_title(textwrap.fill(panel.title, 50), fontsize=9)
        ax.set_xlabel(panel.x_label)
        ax.set_ylabel(panel.y_label)
        ax.set_xticks(panel.ks)
    axes[0][-1].legend(fontsize=7)
    _save(fig, path)


def _audit_lines(cells: dict[str, Cell], ids: set[str], root: Path, dest: Path) -> list[str]:
    """Each audited cell's verdict lines, linking its audit.md (copied under ``dest/audits/`` when the
    report goes elsewhere than the suite's folder: ``copy_audits``)."""
    lines = ["Audit thresholds and attacks: docs/audit.md. Per cell:", ""]
    for rid in sorted(rid for rid in ids if rid in cells and cells[rid].audit is not None):
        cell = cells[rid]
        assert cell.audit is not None and cell.audit_folder is not None
        link = (f"audits/{rid}/audit.md" if dest.resolve() != root.resolve()
                else os.path.relpath(cell.audit_folder / "audit.md", dest))
        lines += [f"- [{rid}]({link}): " + "; ".join(f"{v['attack']} {v['verdict']}" for v in cell.audit["verdict"])]
    return lines + [""]


def copy_audits(view: View) -> None:
    """Copy each audited cell's audit.md, plots and audit.json to ``dest/audits/<run id>/`` (nothing
    when the report is written into the suite's own folder: it links them where they are)."""
    import shutil

    if view.dest.resolve() == view.root.resolve():
        return
    for cell in view.cells:
        if cell.audit_folder is None:
            continue
        for f in sorted(cell.audit_folder.iterdir()):
            if f.suffix in (".md", ".png", ".json"):
                save_with(view.dest / "audits" / cell.run_id / f.name, lambda tmp, f=f: shutil.copyfile(f, tmp))


RECORDS = "records"


def portable(value: Any, root: Path) -> Any:
    """``value`` (a JSON tree) with each absolute path made relative to ``root`` (posix), or cut to its
    last name where it lies outside ``root``: what the records keep of a machine's folders."""
    if isinstance(value, dict):
        return {k: portable(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [portable(v, root) for v in value]
    if isinstance(value, str) and value.startswith("/") and "\n" not in value:
        path, base = Path(value).resolve(), root.resolve()
        if path == base or base in path.parents:
            return path.relative_to(base).as_posix()
        return path.name
    return value


def write_records(root: Path, dest: Path) -> int:
    """Copy ``root``'s layout and each finished run's ``results.json`` (and ``audit/audit.json`` where it
    was audited) into ``dest/records`` (atomically, their paths made ``portable``); returns the number of
    runs. Records of runs that ``root`` lacks are refused, not dropped: the page would otherwise lose
    cells a former machine finished."""
    base = _runs_base(root)
    ids = {d.name for d in _finished(base)}
    rec = dest / RECORDS
    if rec.resolve() == root.resolve():
        raise ClipUnlearnError(f"{str(root)!r} is already the records folder of {str(dest)!r}: drop --records, "
                               "the records are what the report is made from.")
    kept = rec / "runs"
    extra = [d.name for d in _finished(kept) if d.name not in ids] if kept.is_dir() else []
    if extra:
        raise ClipUnlearnError(f"{str(kept)!r} holds {len(extra)} run(s) that {str(base)!r} lacks (e.g. {extra[0]}): "
                               f"copy them into {str(base)!r} first (cp -r {kept}/. {base}/), or remove them.")

    def copy(src: Path, to: Path) -> None:
        write_json(to, portable(json.loads(src.read_text(encoding="utf-8")), root))

    for rid in sorted(ids):
        for name in ("results.json", "audit/audit.json"):  # an audit's figures and verdicts, where audited
            if (base / rid / name).is_file():
                copy(base / rid / name, kept / rid / name)
    if (root / "suite.json").is_file():
        copy(root / "suite.json", rec / "suite.json")
    return len(ids)


def shown_path(path: str | os.PathLike[str], dest: Path, placeholder: str = "DIR") -> str:
    """A folder as a page prints it: relative to the page when it lies inside the page's folder or
    above it, else ``placeholder`` (a page names no folder of the machine that made it)."""
    target, page = Path(path).resolve(), dest.resolve()
    if target == page or page in target.parents or target in page.parents:
        return Path(os.path.relpath(target, page)).as_posix()
    return placeholder


def shown_command(words: list[str], here: Path | None = None) -> str:
    """A command line as a page prints it: each absolute path relative to ``here`` (default: the
    working folder) when it lies there, else the option's name in capitals (``--out /x/y`` -> ``--out
    OUT``; ``PATH`` for a bare one), so that a page names no folder of the machine that made it."""
    base, shown = (here or Path.cwd()).resolve(), []
    for i, word in enumerate(words):
        option, sep, value = word.partition("=") if word.startswith("--") and "=" in word else ("", "", word)
        if value.startswith("/"):
            path = Path(value).resolve()
            before = words[i - 1] if i else ""
            name = (option or (before if before.startswith("--") and "=" not in before else "")).lstrip("-")
            value = (os.path.relpath(path, base) if path == base or base in path.parents
                     else re.sub(r"[^A-Z0-9]+", "_", name.upper()) or "PATH")
        shown.append(shlex.quote(option + sep + value))
    return " ".join(shown)


def _intro(layout: dict[str, Any] | None, root: Path, dest: Path, n_runs: int, stale: dict[str, str],
           records: bool, ids_done: set[str]) -> list[str]:
    """The lines under the title: how the page was made, its records, stale runs, the suite's command."""
    from_records = root.resolve() == (dest / RECORDS).resolve()
    same = dest.resolve() == root.resolve()
    folder = shown_path(root, dest)
    lines = [f"Made by `clipunlearn benchmark report {folder}" + ("`" if same else " --to .`")
             + (" (DIR: the suite's folder; run from this page's folder)" if folder == "DIR" else "")
             + f" from {n_runs} run folders"
             + (f" of the suite {layout['suite']!r} ({layout.get('description', '')})" if layout else "")
             + ". BF = before, AF = after forgetting; Avg. Score (WACV'25 Eq. 10) lower is better; figures are "
             "mean ± std over the classes and seeds of each row (std left out for a single run).", ""]
    if records or from_records:
        lines += [f"The records this page was made from (`suite.json`, each run's `results.json`) are in "
                  f"[`{RECORDS}/`]({RECORDS}/): `clipunlearn benchmark report {RECORDS} --to .` (from this page's "
                  f"folder) rebuilds it; copied into a suite's `--out` folder, they let the suite resume there.", ""]
    if stale:
        first = next(iter(stale))
        lines += [f"**{len(stale)} of these runs were made with another config of their preset than the method builds "
                  f"today** (e.g. {first}: {stale[first]}): rerun them with `clipunlearn benchmark ... --rerun-stale`.",
                  ""]
    if layout:
        models = sorted({c["model"] for t in layout["tables"] for c in t["cells"]})
        ids = {c["run_id"] for t in layout["tables"] for c in t["cells"]}
        finished = ids & ids_done
        from .suite import shipped_suites

        source = layout.get("source", layout["suite"])
        # a suite file named relative to where the suite was run is shown as typed (it names no folder of
        # the machine); an absolute one relative to the page where it can be, else by its file name
        suite_arg = (layout["suite"] if layout["suite"] in shipped_suites()
                     else source if not Path(source).is_absolute()
                     else shown_path(source, dest, Path(source).name))
        out_arg = "DIR" if from_records else folder
        lines += [f"Cells made by `clipunlearn benchmark --suite {suite_arg} --model {','.join(models)} --out "
                  f"{out_arg}`" + (f" (DIR: a copy of `{RECORDS}/`)" if from_records else "")
                  + f" ({len(finished)} of {len(ids)} cells finished"
                  + ("" if len(finished) == len(ids) else "; rerunning that command runs the rest, and tables show "
                     "what is finished") + ").", ""]
    return lines


def _sections(df: pd.DataFrame, layout: dict[str, Any] | None, cells: dict[str, Cell], root: Path,
              dest: Path) -> tuple[list[Section], list[str]]:
    """Each table with its caption, the lines said under it and its trade-off plot; the tables not run yet."""
    if not layout:
        return [Section(name, name, t, [], []) for name, t in generic_tables(df).items()], []
    sections: list[Section] = []
    waiting: list[str] = []
    for table in layout["tables"]:
        name, title = table["name"], table.get("title") or table["name"]
        shown = suite_table(df, table)
        if shown is None:
            waiting.append(f"{name} ({title}): 0 of {len({c['run_id'] for c in table['cells']})} cells finished")
            continue
        notes = (_audit_lines(cells, {c["run_id"] for c in table["cells"]}, root, dest)
                 if table["show"] == "audit" else [])
        goals = depth_goal_lines if table["show"] == "depth" else goal_lines
        notes += goals(df, table) + claim_lines(df, table) + identical_lines(df, table)  # each [] when not asked
        sections.append(Section(name, title, shown, _caption(layout, table, df), notes,
                                tradeoff(df, table) if table["show"] == "bar" else None))
    return sections, waiting


def build_view(folder: str | os.PathLike[str], to: str | os.PathLike[str] | None = None,
               records: bool = False) -> View:
    """Everything the report of ``folder`` shows, computed once for every renderer."""
    root = Path(folder)
    dest = Path(to) if to is not None else root
    found = collect_runs(root)
    df = frame([r for _, r in found])
    df["run_id"] = [rid or d.name for rid, (d, _) in zip(df["run_id"], found)]  # run folders gathered by hand
    from .runner import stale_reason

    stale = {rid: why for rid, (_, r) in zip(df["run_id"], found) if (why := stale_reason(r.raw)) is not None}
    cells = {rid: Cell(rid, d, r) for rid, (d, r) in zip(df["run_id"], found)}
    for cell in cells.values():
        if (cell.folder / "audit" / "audit.json").is_file():
            cell.audit_folder = cell.folder / "audit"
            cell.audit = json.loads((cell.audit_folder / "audit.json").read_bytes())
    audited = [{"run_id": c.run_id, **audit_figures(c.audit)} for c in cells.values() if c.audit is not None]
    if audited:
        df = df.merge(pd.DataFrame(audited), on="run_id", how="left")
    layout_file = root / "suite.json"
    layout = json.loads(layout_file.read_bytes()) if layout_file.is_file() else None
    sections, waiting = _sections(df, layout, cells, root, dest)
    return View(title=f"Benchmark report: {layout['suite'] if layout else root.name}",
                intro=_intro(layout, root, dest, len(df), stale, records, set(df["run_id"])),
                sections=sections, waiting=waiting,
                plots=summary_plots(df) + [c for c in [relearning_curves(layout, cells)] if c is not None],
                runs=df, cells=list(cells.values()),
                root=root, dest=dest)


def render_markdown(view: View) -> str:
    """report.md: the intro, each table with its lines and trade-off plot, the plots."""
    lines = [f"# {view.title}", "", *view.intro]
    for s in view.sections:
        lines += [f"## {s.name}" + (f": {s.title}" if s.title != s.name else ""), "", *s.caption, "",
                  s.table.to_markdown(index=False, disable_numparse=True), "", *s.notes]
        if s.tradeoff is not None:
            lines += [f"![{s.name}: forgetting against what the other datasets keep]({s.tradeoff.file})", ""]
    if view.waiting:
        lines += ["## Not run yet", "", *(f"- {w}" for w in view.waiting), ""]
    lines += ["## Plots", ""]
    for plot in view.plots:
        lines += [f"![{plot.alt}]({plot.file})", ""]
    return "\n".join(lines)


def _write_plots(view: View) -> None:
    for s in view.sections:
        if s.tradeoff is not None:
            _plot_tradeoff(s.tradeoff, view.dest / s.tradeoff.file)
    for plot in view.plots:
        if isinstance(plot, Bars):
            _plot_bars(plot, view.dest / plot.file)
        else:
            _plot_lines(plot, view.dest / plot.file)


def write_report(folder: str | os.PathLike[str], to: str | os.PathLike[str] | None = None,
                 records: bool = False) -> Path:
    """Write ``tables/``, ``plots/``, ``report.md``, ``index.html`` and ``cells/`` (``html_report``)
    into ``to`` (default: ``folder``) from the run folders and layout of ``folder``; with ``records``,
    also the records they were made from (``to/records``, see the module's text)."""
    if records and to is None:
        raise ClipUnlearnError("--records needs --to: the records are a copy of the folder's results for a page "
                               "kept elsewhere (e.g. --to docs/results/NAME).")
    view = build_view(folder, to, records)
    if records:
        write_records(view.root, view.dest)
    for s in view.sections:
        write_text(view.dest / "tables" / f"{s.name}.csv", s.table.to_csv(index=False))
        markdown = s.table.to_markdown(index=False, disable_numparse=True)
        write_text(view.dest / "tables" / f"{s.name}.md", markdown + "\n")
    copy_audits(view)
    _write_plots(view)
    out = view.dest / "report.md"
    write_text(out, render_markdown(view))
    write_html(view)
    return out
