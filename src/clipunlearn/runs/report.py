"""report.md of a run folder, rebuilt from results.json alone (runs are data)."""
from __future__ import annotations

import os
from collections import Counter
from pathlib import Path
from typing import Any

from ..io import save_with, write_text
from .results import BeforeAfter, RunResults, read_results


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


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def plot_subgroup_retrieval(results: dict, path: str | os.PathLike[str]) -> bool:
    """The best-matching test images of each retrieval query before and after forgetting (CVPR'25
    Fig. 3-4); images of the forgotten subgroup framed in red."""
    rt = results.get("retrieval")
    paths = (rt or {}).get("database") or []
    if not rt or not paths:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    n_forget = results["columns"]["target"]["n"]  # the target column comes first in the database
    queries = list(rt["before"])
    top = max(len(rt["before"][q]["top"]) for q in queries)
    fig, axes = plt.subplots(2 * len(queries), top, figsize=(1.2 * top, 1.35 * 2 * len(queries)), squeeze=False)
    for qi, q in enumerate(queries):
        for wi, when in enumerate(("before", "after")):
            row = axes[2 * qi + wi]
            for j, ax in enumerate(row):
                ax.set_xticks([])
                ax.set_yticks([])
                rows = rt[when][q]["top"]
                if j >= len(rows):
                    ax.axis("off")
                    continue
                with Image.open(paths[rows[j]]) as im:
                    ax.imshow(im.convert("RGB").resize((64, 64)))
                color = "red" if rows[j] < n_forget else "lightgray"
                for side in ax.spines.values():
                    side.set_edgecolor(color)
                    side.set_linewidth(3 if color == "red" else 1)
            row[0].set_ylabel(f"{q!r}\n{when}", fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle("text-to-image retrieval (red: the forgotten subgroup)", fontsize=9)
    fig.tight_layout()
    save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=90))
    plt.close(fig)
    return True


def _subgroup_head(r: RunResults) -> list[str]:
    raw = r.raw
    st = raw["setting"]
    coarse = ", ".join(sorted({g["coarse"] or g["name"] for g in st["forget"]}))
    lines = [f"# Forgetting the subgroup {', '.join(r.classes)} of {coarse} ({st['name']}) in {r.model['arch']}", ""]
    lines += [f"Method **{r.method}** ({raw.get('zero_shot', '?')}), preset **{r.preset}**"
              + (f", ablation **{r.ablation}**" if r.ablation else "") + f"; model weights from `{r.model['source']}`"
              + (f", computed in {raw['precision']}." if raw.get("precision") else "."),
              f"Stopped after {r.epochs} epochs: {r.stopped_because}."
              + ("" if r.kept_any_step else " No step was kept: the model is the original."), ""]
    lines += ["Data the method saw: " + ("; ".join(f"{k} {v['n']} images ({v['source']})" for k, v in r.data_seen.items())
                                         or "none (class names only)") + ".", "",
              *([f"Before forgetting, the model was prepared for the setting: {raw['prepared']['prepare']} "
                 f"(recipe {raw['prepared']['recipe']}); \"before\" is that model.", ""] if raw.get("prepared") else []),
              f"Classifier: \"{st['template']}\" over {len(st['vocabulary'])} labels ({', '.join(st['vocabulary'])}).", "",
              "| measured on real test images | role | images | before | after | AF/BF |", "|---|---|---|---|---|---|"]
    for name, c in raw["columns"].items():
        ratio = "–" if not c["before"] else f"{c['after'] / c['before']:.2f}"
        lines.append(f"| {name}: {', '.join(c['subgroups'][:4])}{' …' if len(c['subgroups']) > 4 else ''} | {c['role']} "
                     f"| {c['n']} | {_fmt(c['before'])} | {_fmt(c['after'])} | {ratio} |")
    for name in st["other_datasets"]:
        v = raw["datasets"][name]
        ratio = "–" if not v["before"] else f"{v['after'] / v['before']:.2f}"
        lines.append(f"| {name} (own classes) | keep | | {_fmt(v['before'])} | {_fmt(v['after'])} | {ratio} |")
    score = raw.get("ratio_score")
    lines += ["", f"**Score** (CVPR'25 §5.1: mean over the columns of 1 − AF/BF for the target and min(1, AF/BF) "
              f"for the others, ×100; higher is better): {'undefined' if score is None else f'{score:.1f}'}"
              + (f" (left out, never recognised before: {', '.join(raw['ratio_score_excluded'])})"
                 if raw.get("ratio_score_excluded") else ""), ""]
    lines += ["Time: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items()) + ".", ""]
    rt = r.retrieval
    if rt:
        ks = sorted({int(k.split("@")[1]) for q in rt["before"].values() for k in q if "@" in k})
        lines += ["## Retrieval of the forgotten subgroup (CVPR'25 Fig. 3-4)", "",
                  f"Database: the {len(rt['database'])} test images of the columns above. forget@k: share of the "
                  "top k that are images of the forgotten subgroup; label@k: share that carry the query's label.", "",
                  "| query | " + " | ".join(f"forget@{k} before | after" for k in ks) + " | "
                  + " | ".join(f"label@{k} before | after" for k in ks) + " |",
                  "|---|" + "---|---|" * (2 * len(ks))]
        for q in rt["before"]:
            b, a = rt["before"][q], rt["after"][q]
            lines.append(f"| \"{q}\" | " + " | ".join(f"{b[f'forget@{k}']:.2f} | {a[f'forget@{k}']:.2f}" for k in ks)
                         + " | " + " | ".join(f"{b[f'label@{k}']:.2f} | {a[f'label@{k}']:.2f}" for k in ks) + " |")
        lines += ["", "![retrieval](retrieval.png)", ""]
    return lines


def _concept_head(r: RunResults, has_grid: bool) -> list[str]:
    raw = r.raw
    m, v = raw["measured"], raw["vocabulary"]
    names = ", ".join(f'"{c}"' for c in r.classes)
    lines = [f"# Forgetting {names} in {r.model['arch']}", ""]
    if m["concept images"] is None:
        lines += ["**Only synthetic images of the concept were checked**: no `--images` folder was given, so "
                  "nothing below measures real photos of it.", ""]
    lines += [f"Vocabulary **{v['name']}** ({v['names']} names kept, {v['templates']} templates; {v['source']})"
              + (f"; already in it and forgotten where they stand: {', '.join(v['concepts_in_vocabulary'])}"
                 if v["concepts_in_vocabulary"] else "") + ".",
              f"Method **{r.method}** ({raw.get('zero_shot', '?')}), preset **{r.preset}**"
              + (f", ablation **{r.ablation}**" if r.ablation else "") + f"; model weights from `{r.model['source']}`"
              + (f", computed in {raw['precision']}." if raw.get("precision") else "."),
              f"Stopped after {r.epochs} epochs: {r.stopped_because}.", "",
              "Data the method saw: " + ("; ".join(f"{k} {x['n']} images ({x['source']})" for k, x in r.data_seen.items())
                                         or "none (names only)") + ".", "",
              "| measured | on | before | after |", "|---|---|---|---|"]
    ci, ri = m["concept images"], m["retain images"]
    if ci is not None:
        lines.append(f"| share of your photos called {names} | {ci['n']} images in `{ci['folder']}`"
                     + (f" ({ci['skipped']} unreadable, skipped)" if ci["skipped"] else "")
                     + f" | {_fmt(r.target.before)} | {_fmt(r.target.after)} |")
    if ri is not None:
        lines.append(f"| retain photos whose top-1 name is unchanged | {ri['n']} images in `{ri['folder']}`"
                     + (f" ({ri['skipped']} unreadable, skipped)" if ri["skipped"] else "")
                     + f" | 1.000 | {_fmt(r.other_classes.after)} |")
    if r.synthetic_acc.before is not None:
        lines.append(f"| synthetic images of the concept called by it (verification) | "
                     f"{(m['synthetic images'] or {}).get('n', '?')} synthetic images | {_fmt(r.synthetic_acc.before)} "
                     f"| {_fmt(r.synthetic_acc.after)} |")
    for k, ba in r.datasets.items():
        lines.append(f"| {k} (zero-shot, own classes) | {m['other datasets'].get(k, '?')} test images "
                     f"| {_fmt(ba.before)} | {_fmt(ba.after)} |")
    lines += ["", f"**Avg. Score** (WACV'25 Eq. 10, lower is better): {_fmt(r.avg_score)}"
              + ("" if r.avg_score is not None else " (needs --images: the concept's real accuracy)"), ""]
    if has_grid:
        lines += ["![synthetic images](synthetic.png)", ""]
    return lines


def render_report(r: RunResults, has_grid: bool, has_plot: bool) -> str:
    raw = r.raw
    if raw.get("task") == "concept":
        return "\n".join(_concept_head(r, has_grid) + _steps_and_tensors(r, has_plot))
    if raw.get("task") == "subgroup":
        return "\n".join(_subgroup_head(r) + _steps_and_tensors(r, has_plot))
    lines = _class_head(r) + _template_change(r.template_change) + _retrieval(r.retrieval)
    if r.raw.get("synthetic"):
        sy = r.raw["synthetic"]
        lines += ["## Synthetic forget set", "",
                  f"{sy['n']} images ({sy['source']}), {sy['accepted']} accepted, mean target probability "
                  f"{sy['mean_prob']:.3f}, final threshold {sy['final_threshold']:.3f}.", ""]
        if has_grid:
            lines += ["![synthetic images](synthetic.png)", ""]
    return "\n".join(lines + _steps_and_tensors(r, has_plot))


def _class_head(r: RunResults) -> list[str]:
    """A class run's title, method, stop, the data it saw, the before/after table, Avg. Score and time."""
    raw = r.raw
    lines = [f"# Forgetting {', '.join(r.classes)} ({r.dataset}) in {r.model['arch']}", ""]
    lines += [f"Method **{r.method}** ({raw.get('zero_shot', '?')}), preset **{r.preset}**"
              + (f", ablation **{r.ablation}**" if r.ablation else "") + f"; model weights from `{r.model['source']}`"
              + (f", computed in {raw['precision']}." if raw.get("precision") else "."),
              f"Stopped after {r.epochs} epochs: {r.stopped_because}."
              + ("" if r.kept_any_step else " No step was kept: the model is the original."), ""]
    if r.data_seen:
        lines += ["Data the method saw: " + "; ".join(f"{k} {v['n']} images ({v['source']})"
                                                      for k, v in r.data_seen.items()) + ".", ""]
    else:
        lines += ["Data the method saw: none (class names only).", ""]
    lines += ["| measured on real test images | before | after | change |", "|---|---|---|---|"]

    def row(name: str, ba: BeforeAfter) -> None:
        d = "–" if ba.change is None else f"{ba.change:+.3f}"
        lines.append(f"| {name} | {_fmt(ba.before)} | {_fmt(ba.after)} | {d} |")

    row(f"**target** ({', '.join(r.classes)})", r.target)
    if len(r.per_target) > 1:
        for c, v in r.per_target.items():
            row(f"  {c}", v)
    row(f"other classes of {r.dataset}", r.other_classes)
    for k, v in r.datasets.items():
        row(k, v)
    if r.synthetic_acc.before is not None:
        row("synthetic forget set", r.synthetic_acc)
    lines += ["", f"**Avg. Score** (WACV'25 Eq. 10, lower is better): {_fmt(r.avg_score)}", ""]
    return lines + ["Time: " + ", ".join(f"{k} {v:.1f}s" for k, v in r.seconds.items()) + ".", ""]


def _template_change(tc: dict[str, Any] | None) -> list[str]:
    """The section of accuracies under the other templates (WACV'25 §6.3), where measured."""
    if not tc:
        return []
    lines = ["## Other templates (WACV'25 §6.3)", "",
             "Mean accuracy over the templates " + ", ".join(f"\"{t}\"" for t in tc["templates"]) + ":", "",
             "| measured | before | after |", "|---|---|---|",
             f"| target | {_fmt(tc['before']['target'])} | {_fmt(tc['after']['target'])} |",
             f"| other classes | {_fmt(tc['before']['other_classes'])} | {_fmt(tc['after']['other_classes'])} |"]
    lines += [f"| {k} | {_fmt(v)} | {_fmt(tc['after']['datasets'][k])} |" for k, v in tc["before"]["datasets"].items()]
    return lines + ["", f"Avg. Score under these templates: {_fmt(tc.get('avg_score'))}", ""]


def _retrieval(rt: dict[str, Any] | None) -> list[str]:
    """The section of retrieval precision@k before and after (WACV'25 §5.8), where measured."""
    if not rt:
        return []
    b, a = rt["before"], rt["after"]
    lines = ["## Retrieval precision@k (WACV'25 §5.8)", "",
             f"Database: {b['database']['images']} test images of {', '.join(b['database']['datasets'])}; "
             "lower on the target means less of it is retrieved.", "",
             "| task | queries | " + " | ".join(f"P@{k} before | P@{k} after" for k in b["ks"]) + " |",
             "|---|---|" + "---|---|" * len(b["ks"])]
    for task, title in (("ift", "image from text"), ("ifi", "image from image")):
        for who in ("target", "other_classes"):
            pb, pa = b[task].get(who), a[task].get(who)
            if pb is None:
                continue
            lines.append(f"| {title} | {who.replace('_', ' ')} | "
                         + " | ".join(f"{_fmt(pb[str(k)])} | {_fmt(pa[str(k)])}" for k in b["ks"]) + " |")
    return lines + [""]


def _steps_and_tensors(r: RunResults, has_plot: bool) -> list[str]:
    lines: list[str] = []
    keys: list[str] = []
    for st in r.steps:
        keys += [k for k in st if k not in keys and k not in ("epoch", "kept")]
    lines += ["## Steps", "", "| epoch | " + " | ".join(keys) + " | kept |", "|---|" + "---|" * (len(keys) + 1)]
    for st in r.steps:
        kept = "start" if st.get("kept") is None else ("yes" if st["kept"] else "reverted")
        lines.append(f"| {st.get('epoch', '')} | " + " | ".join(_cell(st.get(k)) for k in keys) + f" | {kept} |")
    lines += ["", "## Changed tensors", ""]
    if has_plot:
        lines += ["![selected tensors](selected_tensors.png)", ""]
    counts = selection_counts(r.raw)
    if counts:
        lines += ["| tensor | kept steps |", "|---|---|"] + [f"| `{n}` | {c} |" for n, c in counts.most_common(25)]
    elif r.changed_tensors:
        lines += [f"`{n}`" for n in r.changed_tensors[:25]]
    else:
        lines.append("No tensor was changed.")
    lines.append("")
    return lines


def write_report(run: str | os.PathLike[str]) -> Path:
    run = Path(run)
    results = read_results(run)
    has_plot = plot_selection(results.raw, run / "selected_tensors.png")
    if results.raw.get("task") == "subgroup":
        plot_subgroup_retrieval(results.raw, run / "retrieval.png")
    out = run / "report.md"
    write_text(out, render_report(results, (run / "synthetic.png").exists(), has_plot))
    return out
