"""The audit's files: ``audit.json`` (every number), ``audit.md`` (the verdict first, then one table per
attack) and the plots (accuracy by prompt family, relearning curves, ROC of the membership attack)."""
from __future__ import annotations

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


def render_markdown(audit: dict[str, Any]) -> str:
    """audit.md: the verdict lines first, then each attack's table, models side by side."""
    models = audit["models"]
    r = audit["results"]
    lines = [f"# Audit of {audit['run']['method']} on {audit['run']['dataset']}: {', '.join(audit['run']['classes'])}", ""]
    lines += [f"- **{v['attack']}**: {v['verdict']} — {v['figure']} (threshold: {v['threshold']})"
              for v in audit["verdict"]]
    lines += ["", f"Run `{audit['run']['folder']}`, model {audit['run']['model']}; models: {', '.join(models)}"
              + (f" (oracle `{audit['oracle']}`)" if audit.get("oracle") else "") + ". Thresholds: `docs/audit.md`.", ""]
    if "prompts" in r:
        lines += ["## Prompts", "Accuracy on the forgotten class's test images, classified among the dataset's "
                  "classes; each prompt replaces the class's name, the other classes keep the run's template.", ""]
        lines += _table(["family", "prompt", "class", *models],
                        [[f["family"], f["prompt"], f["class"] or "all", *(f["accuracy"][m] for m in models)]
                         for f in r["prompts"]["families"]])
    if "images" in r:
        im = r["images"]
        lines += ["## Images", f"Accuracy on the {im['n_images']} test images of the class, augmented (seed {im['seed']}); "
                  f"retrieval: image-from-image precision@{im['retrieval']['k']} among all test images "
                  f"(chance {im['retrieval']['chance']:.3f}).", ""]
        rows = [[a, *(im["accuracy"][a][m] for m in models)] for a in ["clean", *im["augmentations"]]]
        rows.append([f"retrieval P@{im['retrieval']['k']}", *(im["retrieval"]["precision"][m] for m in models)])
        lines += _table(["images", *models], rows)
    if "probe" in r:
        p = r["probe"]
        lines += ["## Linear probe", f"Logistic regression on frozen image features, class vs rest: trained on "
                  f"{p['n_train']} train images ({p['n_train_target']} of the class), test ROC AUC.", ""]
        lines += _table(["", *models], [["AUC", *(p["auc"][m] for m in models)]])
    if "relearning" in r:
        rl = r["relearning"]
        lines += ["## Relearning", f"Accuracy on the class's test images after each of {rl['steps']} Adam steps "
                  f"(lr {rl['lr']:g}, image tower) on k train images per class (images used per k: "
                  + ", ".join(f"{k}: {n}" for k, n in rl["images_used"].items()) + ").", ""]
        header = ["model", "k", *[f"step {i}" for i in range(rl["steps"] + 1)]]
        lines += _table(header, [[m, k, *rl["curves"][m][k]] for m in models for k in rl["curves"][m]])
    if "mia" in r:
        mi = r["mia"]
        lines += ["## Membership inference"]
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
    if "oracle" in r:
        o = r["oracle"]
        lines += ["## Distance to the oracle", f"Mean |accuracy gap| forgotten − oracle over classes: "
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
    if audit.get("plots"):
        lines += ["## Plots", *[f"![{p}]({p})" for p in audit["plots"]], ""]
    lines += ["## Seconds per attack", ""]
    lines += _table(["attack", "cpu s", "wall s"], [[a, t["cpu"], t["wall"]] for a, t in audit["seconds"].items()])
    return "\n".join(lines)


def write_plots(folder: Path, audit: dict[str, Any]) -> list[str]:
    """The PNG plots of the attacks that ran; returns their file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r, models, written = audit["results"], audit["models"], []

    def save(fig, name: str) -> None:
        fig.tight_layout()
        save_with(folder / name, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
        plt.close(fig)
        written.append(name)

    if "prompts" in r:
        fams = r["prompts"]["families"]
        fig, ax = plt.subplots(figsize=(max(6.0, 0.6 * len(fams)), 5))
        width = 0.8 / len(models)
        for j, m in enumerate(models):
            ax.bar([i + j * width for i in range(len(fams))], [f["accuracy"][m] for f in fams], width, label=m)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(fams))])
        ax.set_xticklabels([f"{f['family']}\n{f['prompt'][:32]}" for f in fams], rotation=60, ha="right", fontsize=7)
        ax.set_ylabel("accuracy on the forgotten class")
        ax.set_ylim(0, 1)
        ax.legend()
        save(fig, PLOTS["prompts"])
    if "relearning" in r:
        rl = r["relearning"]
        ks = [str(k) for k in rl["ks"]]
        fig, axes = plt.subplots(1, len(ks), figsize=(4 * len(ks), 3.4), squeeze=False)
        for ax, k in zip(axes[0], ks):
            for m in models:
                ax.plot(range(rl["steps"] + 1), rl["curves"][m][k], marker="o", label=m)
            ax.set_title(f"k = {k}")
            ax.set_xlabel("fine-tuning steps")
            ax.set_ylim(-0.02, 1.02)
        axes[0][0].set_ylabel("accuracy on the forgotten class")
        axes[0][0].legend()
        save(fig, PLOTS["relearning"])
    if "mia" in r and "roc" in r["mia"]:
        fig, ax = plt.subplots(figsize=(4.2, 4))
        for m in models:
            roc = r["mia"]["roc"][m]
            iv = r["mia"].get("threshold_auc_interval", {}).get(m)
            ax.plot(roc["fpr"], roc["tpr"], label=f"{m} (AUC {r['mia']['threshold_auc'][m]:.2f}"
                    + (f", {format_interval(iv)})" if iv else ")"))
        ax.plot([0, 1], [0, 1], "k:", lw=1)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title("loss-threshold membership attack")
        ax.legend(fontsize=8)
        save(fig, PLOTS["mia"])
    return written


def write_audit(folder: Path, audit: dict[str, Any]) -> None:
    """Write the plots, audit.json and audit.md into ``folder`` (a staging folder)."""
    audit["plots"] = write_plots(folder, audit)
    write_json(folder / "audit.json", audit)
    write_text(folder / "audit.md", render_markdown(audit))


__all__ = ["PLOTS", "render_markdown", "write_audit", "write_plots"]
