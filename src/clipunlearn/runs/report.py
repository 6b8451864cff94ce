"""report.md of a run folder, rebuilt from results.json alone (runs are data)."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

from ..io import save_with, write_text


def _fmt(x) -> str:
    return "–" if x is None else f"{x:.3f}"


def selection_counts(results: dict) -> Counter:
    """How often each tensor was selected, over the kept steps (the paper's Fig. 5)."""
    c: Counter = Counter()
    for row in results.get("selected_tensors", []):
        if row.get("kept"):
            c.update(row["tensors"])
    return c


def plot_selection(results: dict, path: str | os.PathLike[str], top: int = 25) -> bool:
    counts = selection_counts(results)
    if not counts:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    items = counts.most_common(top)[::-1]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(items) + 1.2))
    colors = ["tab:blue" if n.startswith("visual.") else "tab:orange" for n, _ in items]
    ax.barh([n for n, _ in items], [v for _, v in items], color=colors)
    ax.set_xlabel("times selected in kept steps (blue: image tower, orange: text tower)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)
    return True


def render_report(results: dict, has_grid: bool, has_plot: bool) -> str:
    r = results
    lines = [f"# Forgetting {', '.join(r['classes'])} ({r['dataset']}) in {r['model']['arch']}", ""]
    lines += [f"Method **{r['method']}**, preset **{r['preset']}**; model weights from `{r['model']['source']}`.",
              f"Stopped after {r['epochs']} epochs at stage {r['stage_reached']}: {r['stopped_because']}."
              + ("" if r["kept_any_step"] else " No step was kept: the model is the original."), ""]
    lines += ["| measured on real test images | before | after | change |", "|---|---|---|---|"]

    def row(name, b, a):
        d = "–" if b is None or a is None else f"{a - b:+.3f}"
        lines.append(f"| {name} | {_fmt(b)} | {_fmt(a)} | {d} |")

    row(f"**target** ({', '.join(r['classes'])})", r["target_before"], r["target_after"])
    if len(r["per_target"]) > 1:
        for c, v in r["per_target"].items():
            row(f"  {c}", v["before"], v["after"])
    row(f"other classes of {r['dataset']}", r["other_classes_before"], r["other_classes_after"])
    for k, v in r["datasets"].items():
        row(k, v["before"], v["after"])
    if r.get("synthetic_acc_before") is not None:
        row("synthetic forget set", r["synthetic_acc_before"], r["synthetic_acc_after"])
    lines += ["", f"**Avg. Score** (WACV'25 Eq. 10, lower is better): {_fmt(r['avg_score'])}", ""]
    s = r["seconds"]
    lines += [f"Time: generation {s['generation']:.1f}s, forgetting {s['forgetting']:.1f}s, "
              f"evaluation {s['evaluation']:.1f}s.", ""]
    if r.get("synthetic"):
        sy = r["synthetic"]
        lines += ["## Synthetic forget set", "",
                  f"{sy['n']} images ({sy['source']}), {sy['accepted']} accepted, mean target probability "
                  f"{sy['mean_prob']:.3f}, final threshold {sy['final_threshold']:.3f}.", ""]
        if has_grid:
            lines += ["![synthetic images](synthetic.png)", ""]
    lines += ["## Steps", "", "| epoch | stage | σ | k img/txt | loss | synthetic acc | p(target) | kept |",
              "|---|---|---|---|---|---|---|---|"]
    for st in r["steps"]:
        if st["epoch"] == 0:
            lines.append(f"| 0 | | | | | {_fmt(st['synthetic_acc'])} | {_fmt(st['target_prob'])} | start |")
            continue
        lines.append(f"| {st['epoch']} | {st['stage']} | {st['sigma']} | {st['k_img']}/{st['k_txt']} | "
                     f"{st['loss']:.4f} | {_fmt(st['synthetic_acc'])} | {_fmt(st['target_prob'])} | "
                     f"{'yes' if st['kept'] else 'reverted'} |")
    lines += ["", "## Selected tensors", ""]
    if has_plot:
        lines += ["![selected tensors](selected_tensors.png)", ""]
    counts = selection_counts(r)
    if counts:
        lines += ["| tensor | kept steps |", "|---|---|"] + [f"| `{n}` | {c} |" for n, c in counts.most_common(25)]
    else:
        lines.append("No tensor was changed.")
    lines.append("")
    return "\n".join(lines)


def write_report(run: str | os.PathLike[str]) -> Path:
    run = Path(run)
    results = json.loads((run / "results.json").read_text(encoding="utf-8"))
    has_plot = plot_selection(results, run / "selected_tensors.png")
    out = run / "report.md"
    write_text(out, render_report(results, (run / "synthetic.png").exists(), has_plot))
    return out
