"""The audit's files: ``audit.json`` (every number), ``audit.md`` (the verdict first, then one table per
attack) and the plots (accuracy by prompt family, relearning curves, ROC of the membership attack)."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..io import save_with, write_json, write_text
from .verdict import format_interval

PLOTS = {"prompts": "prompts.png", "relearning": "relearning.png", "mia": "mia_roc.png"}


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "–" if v is None else str(v)


def _table(header: list[str], rows: list[list[Any]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(_fmt(v) for v in row) + " |" for row in rows]
    return out + [""]


def _ran(results: dict[str, Any]) -> dict[str, Any]:
    """The attacks that ran (the membership attack's section says itself why it was skipped)."""
    return {k: v for k, v in results.items() if "skipped" not in v or k == "mia"}


def describe_task(audit: dict[str, Any]) -> str | None:
    """One sentence on what a subgroup or concept run was audited as (None for a class run)."""
    t = audit.get("task")
    if not t:
        return None
    if t["task"] == "subgroup":
        c = t["coarse_label"]
        called = ", ".join(f"{m} {_fmt(a)}" for m, a in c["accuracy"].items())
        elsewhere = "; ".join(f"{d}: {', '.join(n)}" for d, n in t["also_named_in"].items())
        return (f"Subgroup run ({t['setting']}): {', '.join(t['subgroups'])} audited as a class of {t['dataset']} "
                f"(its test images among {t['dataset']}'s classes). What the run judges, the share of those "
                f"{c['n_images']} images called {' or '.join(repr(x) for x in c['coarse_labels'])} among the setting's "
                f"{len(c['vocabulary'])} labels: {called} (results.json: before {_fmt(c['run']['before'])}, after "
                f"{_fmt(c['run']['after'])}). Its oracle: "
                f"`clipunlearn zoo train {audit['run']['model']} {t['oracle_exclude']}`"
                + (f", which also leaves out the same name in {elsewhere}." if elsewhere else "."))
    images = {"photos": "the user's {} photos of it", "synthetic": "the {} synthetic images the run forgot with"}
    seen = " (the method trained on them)" if t.get("seen_by_method") else ""
    return (f"Concept run: {', '.join(repr(c) for c in t['concepts'])} among {t['names']} names (vocabulary "
            f"{t['vocabulary']}, template {t['template']!r}), audited on "
            + (images[t["images"]].format(t["n_images"]) + seen if t.get("images") else "no image of the concept")
            + (f" and {t['retain_images']} retain photos labelled by the original's top-1"
               if t["retain_images"] else "")
            + f"; no oracle. Skipped: {', '.join(t['skipped'])} (`docs/audit.md`).")


def _prompts_section(prompts: dict[str, Any], models: list[str]) -> list[str]:
    """Accuracy under each prompt family."""
    lines = ["## Prompts", "Accuracy on the forgotten class's test images, classified among the dataset's "
             "classes; each prompt replaces the class's name, the other classes keep the run's template.", ""]
    lines += _table(["family", "prompt", "class", *models],
                    [[f["family"], f["prompt"], f["class"] or "all", *(f["accuracy"][m] for m in models)]
                     for f in prompts["families"]])
    return lines


def _images_section(im: dict[str, Any], models: list[str]) -> list[str]:
    """Accuracy on augmented images of the class, and image-from-image retrieval."""
    rt = im["retrieval"]
    lines = ["## Images", f"Accuracy on the {im['n_images']} test images of the class, augmented (seed {im['seed']}); "
             + (f"retrieval: image-from-image precision@{rt['k']} among all test images "
                f"(chance {rt['chance']:.3f})." if rt else "no retrieval: every test image is of the class."), ""]
    rows = [[a, *(im["accuracy"][a][m] for m in models)] for a in ["clean", *im["augmentations"]]]
    if rt:
        rows.append([f"retrieval P@{rt['k']}", *(rt["precision"][m] for m in models)])
    lines += _table(["images", *models], rows)
    return lines


def _probe_section(p: dict[str, Any], models: list[str]) -> list[str]:
    """A linear probe on frozen image features."""
    lines = ["## Linear probe", f"Logistic regression on frozen image features, class vs rest: trained on "
             f"{p['n_train']} train images ({p['n_train_target']} of the class), test ROC AUC.", ""]
    lines += _table(["", *models], [["AUC", *(p["auc"][m] for m in models)]])
    return lines


def _prototype_section(pr: dict[str, Any], models: list[str]) -> list[str]:
    """The nearest-prototype attack."""
    lines = ["## Prototype attack", f"Each class's prototype: the mean image feature of k train images of it; the "
             f"class's {pr['n_images']} test images classified by the nearest prototype (no text, no training). "
             "Accuracy on the class's images (on the other classes' in brackets).", ""]
    lines += _table(["k", *models], [[k, *(f"{_fmt(pr['accuracy'][k][m])} ({_fmt(pr['others_accuracy'][k][m])})"
                                           for m in models)] for k in pr["accuracy"]])
    return lines


def _relearning_section(rl: dict[str, Any], models: list[str]) -> list[str]:
    """The relearning grid: each attack's curve and the score R."""
    sc = rl["score"]
    lines = ["## Relearning", f"Accuracy on the class's test images at steps {', '.join(map(str, rl['steps']))} of each "
             "attack of the grid (data, optimiser, what trains, learning rate; `docs/audit.md`), on a copy of each "
             "model. Images per data kind: " + ", ".join(f"{k} {n}" for k, n in rl["images_used"].items())
             + (f"; related classes: {', '.join(rl['related_classes'])}" if rl.get("related_classes") else "") + ".",
             "", f"Relearning score R over these {len(rl['attacks'])} attacks (oracle 0, original 1): "
             f"**{_fmt(sc['R'])}**" + ("" if sc["R"] is not None else " (no oracle)")
             + f"; against an accuracy-0 floor instead of the oracle: {_fmt(sc['R_floor'])}.", ""]
    header = ["attack", *[f"{m} (steps {'/'.join(map(str, rl['steps']))})" for m in models]]
    lines += _table(header, [[a, *(" / ".join(f"{v:.2f}" for v in rl["curves"][m][a]) for m in models)]
                             for a in rl["attacks"]])
    return lines


def _mia_section(mi: dict[str, Any], models: list[str]) -> list[str]:
    """Membership inference (or why it was skipped)."""
    lines = ["## Membership inference"]
    if "skipped" in mi:
        lines += [mi["skipped"], ""]
    else:
        boot = mi.get("bootstrap")
        lines += [f"Members: the class's {mi['n_members']} train images; non-members: its {mi['n_non_members']} "
                  "test images. ROC AUC, members positive (0.5: no signal)"
                  + (f"; intervals: {boot['level']:.0%} bootstrap, {boot['resamples']} resamples of members and "
                     f"non-members apart, the same for every model (seed {boot['seed']})." if boot else "."), ""]
        rows = [["loss threshold", *(mi["threshold_auc"][m] for m in models)]]
        if "threshold_auc_interval" in mi:
            iv = mi["threshold_auc_interval"]
            rows.append(["loss threshold, interval", *(format_interval(iv[m]) for m in models)])
        if "minus_oracle" in mi:
            diff = mi["minus_oracle"]
            rows.append(["loss threshold − oracle's", *(
                f"{diff[m]['estimate']:+.3f} {format_interval(diff[m]['interval'], signed=True)}" if m in diff
                else None for m in models)])
        rows.append(["SVC on loss, confidence, entropy", *(mi["classifier_auc"][m] for m in models)])
        lines += _table(["attack", *models], rows)
    return lines


def _weights_section(w: dict[str, Any], models: list[str]) -> list[str]:
    """The weight-space distance and the path from the original's weights."""
    pa = w["path"]
    lines = ["## Weight space", f"Forgetting changed {w['touched']} tensors: L2 distance from the original "
             f"{w['l2']:.4g} ({w['relative_l2']:.3%} of their norm; per tower: "
             + ", ".join(f"{t} {v:.4g}" for t, v in w["l2_per_tower"].items()) + "). Zero-shot loss and accuracy on "
             f"the straight line from the original's weights (0) to the forgotten model's (1), on the class's test "
             f"images and {pa['n_others']} others; loss barrier on the others {_fmt(w['barrier_others'])}.", ""]
    keys = ("loss_target", "acc_target", "loss_others", "acc_others")
    if any(pa[k] for k in keys):
        lines += _table(["α", "loss (class)", "accuracy (class)", "loss (others)", "accuracy (others)"],
                        [[a, *(pa[k][i] if pa[k] else None for k in keys)] for i, a in enumerate(pa["alphas"])])
    return lines


def _oracle_section(o: dict[str, Any], models: list[str]) -> list[str]:
    """The distance to the oracle: KL, per other dataset and per class."""
    lines = ["## Distance to the oracle", f"Mean |accuracy gap| forgotten − oracle over classes: "
             f"{o['mean_abs_gap']:.3f}.", ""]
    lines += _table(["", "all images", "class's images", "other images"],
                    [[f"KL({m} ‖ oracle)", *(o["kl_to_oracle"][m][s] for s in ("all", "target", "others"))]
                     for m in ("forgotten", "original")])
    datasets = {k: v for k, v in o.get("per_dataset", {}).items() if "skipped" not in v}
    if datasets:
        lines += ["Other datasets (top-1, each with its own templates; original and forgotten as the run measured "
                  "them):", ""]
        lines += _table(["dataset", *models, "gap"],
                        [[name, *(v[m] for m in models), v["gap"]] for name, v in datasets.items()])
    lines += [f"- {k}: skipped ({v['skipped']})" for k, v in o.get("per_dataset", {}).items() if "skipped" in v]
    lines += _table(["class", *models, "gap"],
                    [[c + (" (forgotten)" if v["target"] else ""), *(v[m] for m in models), v["gap"]]
                     for c, v in o["per_class"].items()])
    return lines


#: each attack's section of audit.md, in the page's order
SECTIONS: dict[str, Callable[[dict[str, Any], list[str]], list[str]]] = {
    "prompts": _prompts_section,
    "images": _images_section,
    "probe": _probe_section,
    "prototype": _prototype_section,
    "relearning": _relearning_section,
    "mia": _mia_section,
    "weights": _weights_section,
    "oracle": _oracle_section,
}


def render_markdown(audit: dict[str, Any]) -> str:
    """audit.md: the verdict lines first, then each attack's table, models side by side."""
    models = audit["models"]
    r = _ran(audit["results"])
    lines = [f"# Audit of {audit['run']['method']} on {audit['run']['dataset']}: {', '.join(audit['run']['classes'])}", ""]
    lines += [f"- **{v['attack']}**: {v['verdict']} — {v['figure']} (threshold: {v['threshold']})"
              for v in audit["verdict"]]
    lines += ["", f"Run `{audit['run']['folder']}`, model {audit['run']['model']}; models: {', '.join(models)}"
              + (f" (oracle `{audit['oracle']}`)" if audit.get("oracle") else "") + " (paths relative to this folder). "
              "Thresholds: `docs/audit.md`.", ""]
    task = describe_task(audit)
    if task:
        lines += [task, ""]
    for name, section in SECTIONS.items():
        if name in r:
            lines += section(r[name], models)
    skipped = {k: v["skipped"] for k, v in audit["results"].items() if k not in r}
    if skipped:
        lines += ["## Attacks that could not run", *[f"- {k}: {why}" for k, why in skipped.items()], ""]
    if audit.get("plots"):
        lines += ["## Plots", *[f"![{p}]({p})" for p in audit["plots"]], ""]
    lines += ["## Seconds per attack", ""]
    lines += _table(["attack", "cpu s", "wall s"], [[a, t["cpu"], t["wall"]] for a, t in audit["seconds"].items()])
    return "\n".join(lines)


def _prompts_plot(plt: Any, prompts: dict[str, Any], models: list[str]) -> Any:
    """Each model's accuracy on the forgotten class under each prompt family, bars side by side."""
    fams = prompts["families"]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(fams)), 5))
    width = 0.8 / len(models)
    for j, m in enumerate(models):
        ax.bar([i + j * width for i in range(len(fams))], [f["accuracy"][m] for f in fams], width, label=m)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(fams))])
    ax.set_xticklabels([f"{f['family']}\n{f['prompt'][:32]}" for f in fams], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("accuracy on the forgotten class")
    ax.set_ylim(0, 1)
    ax.legend()
    return fig


def _relearning_plot(plt: Any, rl: dict[str, Any]) -> Any:
    """One panel per kind of relearning attack: the forgotten model's curves over the bands of the
    original's and the oracle's curves."""
    kinds = list(dict.fromkeys(a.split()[0] for a in rl["attacks"]))
    x = list(range(len(rl["steps"])))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.6 * len(kinds), 3.4), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        attacks = [a for a in rl["attacks"] if a.split()[0] == kind]
        for m, colour in (("original", "tab:green"), ("oracle", "tab:grey")):
            if m in rl["curves"]:
                vals = [rl["curves"][m][a] for a in attacks]
                ax.fill_between(x, [min(v[i] for v in vals) for i in x], [max(v[i] for v in vals) for i in x],
                                color=colour, alpha=0.25, label=m)
        for a in attacks:
            ax.plot(x, rl["curves"]["forgotten"][a], marker="o", lw=1, label=" ".join(a.split()[1:]))
        ax.set_title(kind)
        ax.set_xticks(x, [str(s) for s in rl["steps"]])
        ax.set_xlabel("relearning steps")
        ax.set_ylim(-0.02, 1.02)
        ax.legend(fontsize=6)
    axes[0][0].set_ylabel("accuracy on the forgotten class")
    return fig


def _mia_plot(plt: Any, mia: dict[str, Any], models: list[str]) -> Any:
    """Each model's ROC curve of the loss-threshold membership attack, with its AUC (and interval)."""
    fig, ax = plt.subplots(figsize=(4.2, 4))
    for m in models:
        roc = mia["roc"][m]
        iv = mia.get("threshold_auc_interval", {}).get(m)
        ax.plot(roc["fpr"], roc["tpr"], label=f"{m} (AUC {mia['threshold_auc'][m]:.2f}"
                + (f", {format_interval(iv)})" if iv else ")"))
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("loss-threshold membership attack")
    ax.legend(fontsize=8)
    return fig


def write_plots(folder: Path, audit: dict[str, Any]) -> list[str]:
    """The PNG plots of the attacks that ran; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, models, written = _ran(audit["results"]), audit["models"], []
    figures = []
    if "prompts" in r:
        figures.append(("prompts", lambda: _prompts_plot(plt, r["prompts"], models)))
    if "relearning" in r:
        figures.append(("relearning", lambda: _relearning_plot(plt, r["relearning"])))
    if "mia" in r and "roc" in r["mia"]:
        figures.append(("mia", lambda: _mia_plot(plt, r["mia"], models)))
    for attack, draw in figures:
        fig = draw()
        fig.tight_layout()
        save_with(folder / PLOTS[attack], lambda tmp, fig=fig: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        written.append(PLOTS[attack])
    return written


def write_audit(folder: Path, audit: dict[str, Any]) -> None:
    """Write the plots, audit.json and audit.md into ``folder`` (a staging folder)."""
    audit["plots"] = write_plots(folder, audit)
    write_json(folder / "audit.json", audit)
    write_text(folder / "audit.md", render_markdown(audit))


__all__ = ["PLOTS", "describe_task", "render_markdown", "write_audit", "write_plots"]
