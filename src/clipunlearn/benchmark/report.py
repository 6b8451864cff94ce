"""Tables and plots of a suite, rebuilt from its run folders alone (``clipunlearn benchmark report DIR``).

* ``methods``: per model, dataset and method (preset, ablation): mean ± std over the forgotten classes
  and seeds of the target, the other classes and each other dataset, before and after, and the Avg.
  Score (the paper's Table 1);
* ``classes``: one row per model, method and forgotten class set, mean ± std over seeds (Table 4);
* ``retrieval``: precision@k of the target, image from text and image from image, before and after
  (Tables 2, 25-28), where the runs measured it.
Each table is written as CSV and markdown (pandas) under ``DIR/tables/``; plots (matplotlib) under
``DIR/plots/``; everything is gathered in ``DIR/report.md``.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ..errors import ClipUnlearnError
from ..io import save_with, write_text
from ..runs.results import RunResults, read_results


def collect(folder: str | os.PathLike[str]) -> list[RunResults]:
    """Every finished run under ``folder/runs`` (or ``folder`` itself holding run folders)."""
    root = Path(folder)
    base = root / "runs" if (root / "runs").is_dir() else root
    if not base.is_dir():
        raise ClipUnlearnError(f"{str(root)!r} is not a folder. Pass the --out folder of `clipunlearn benchmark`.")
    runs = [read_results(d) for d in sorted(base.iterdir()) if not d.name.startswith(".") and (d / "results.json").is_file()]
    if not runs:
        raise ClipUnlearnError(f"No finished run under {str(base)!r}. Run `clipunlearn benchmark --suite ... --out "
                               f"{root}` first.")
    return runs


def _label(r: RunResults) -> str:
    return r.method + ("" if r.preset == "default" else f" ({r.preset})") + (f" +{r.ablation}" if r.ablation else "")


def frame(runs: list[RunResults]) -> pd.DataFrame:
    """One row per run: identifiers and every before/after figure."""
    rows = []
    for r in runs:
        row = {"model": r.model["arch"], "method": _label(r), "kind": r.raw.get("zero_shot", ""), "dataset": r.dataset,
               "classes": ", ".join(r.classes), "seed": r.raw.get("settings", {}).get("seed", 0),
               "target BF": r.target.before, "target AF": r.target.after,
               "other classes BF": r.other_classes.before, "other classes AF": r.other_classes.after,
               "Avg. Score": r.avg_score}
        for name, ba in r.datasets.items():
            row[f"{name} BF"], row[f"{name} AF"] = ba.before, ba.after
        rt = r.retrieval
        if rt:
            for task in ("ift", "ifi"):
                for when in ("before", "after"):
                    target = rt[when][task].get("target") or {}
                    for k, v in target.items():
                        row[f"{task.upper()} P@{k} {'BF' if when == 'before' else 'AF'}"] = v
        rows.append(row)
    return pd.DataFrame(rows)


def _mean_std(df: pd.DataFrame, keys: list[str], columns: list[str]) -> pd.DataFrame:
    grouped = df.groupby(keys, sort=True)[columns]
    mean, std, n = grouped.mean(), grouped.std(ddof=0), grouped.size()
    out = mean.copy().astype(object)
    for c in columns:
        out[c] = [("–" if pd.isna(m) else f"{m:.3f}" + ("" if pd.isna(s) or k == 1 else f" ± {s:.3f}"))
                  for m, s, k in zip(mean[c], std[c], n)]
    out["runs"] = n
    return out.reset_index()


def _figure_columns(df: pd.DataFrame, prefix_skip: tuple[str, ...] = ("IFT", "IFI")) -> list[str]:
    fixed = {"model", "method", "kind", "dataset", "classes", "seed", "Avg. Score"}
    return [c for c in df.columns if c not in fixed and not c.startswith(prefix_skip)] + ["Avg. Score"]


def tables(df: pd.DataFrame) -> dict[str, pd.DataFrame]:
    figures = _figure_columns(df)
    out = {"methods": _mean_std(df, ["model", "dataset", "method", "kind"], figures),
           "classes": _mean_std(df, ["model", "dataset", "classes", "method"], figures)}
    retrieval = [c for c in df.columns if c.startswith(("IFT", "IFI"))]
    if retrieval:
        out["retrieval"] = _mean_std(df, ["model", "dataset", "method"], retrieval)
    return out


def _plot_bars(df: pd.DataFrame, path: Path, title: str, columns: list[str], ylabel: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = df.groupby(["model", "method"])[columns].mean()
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(means) + 2), 3.6))
    means.plot.bar(ax=ax, rot=30)
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.set_xlabel("")
    fig.tight_layout()
    save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


def write_report(folder: str | os.PathLike[str]) -> Path:
    """Write ``tables/``, ``plots/`` and ``report.md`` into ``folder`` from its run folders."""
    root = Path(folder)
    df = frame(collect(root))
    made = tables(df)
    lines = [f"# Benchmark report: {root.name}", "",
             f"Made by `clipunlearn benchmark report {root}` from {len(df)} run folders. Figures are the mean "
             "± std over the forgotten classes and seeds of each row (std left out for a single run); "
             "BF = before, AF = after forgetting; Avg. Score (WACV'25 Eq. 10) lower is better.", ""]
    for name, table in made.items():
        write_text(root / "tables" / f"{name}.csv", table.to_csv(index=False))
        md = table.to_markdown(index=False, disable_numparse=True)
        write_text(root / "tables" / f"{name}.md", md + "\n")
        lines += [f"## {name}", "", md, ""]
    _plot_bars(df, root / "plots" / "target_bf_af.png", "target accuracy before and after", ["target BF", "target AF"],
               "top-1")
    _plot_bars(df, root / "plots" / "avg_score.png", "Avg. Score (lower is better)", ["Avg. Score"], "Avg. Score")
    lines += ["## Plots", "", "![target before and after](plots/target_bf_af.png)", "",
              "![Avg. Score](plots/avg_score.png)", ""]
    out = root / "report.md"
    write_text(out, "\n".join(lines))
    return out
