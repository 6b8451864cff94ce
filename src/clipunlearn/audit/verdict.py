"""The audit's verdict: per attack, did the forgotten class come back, by a documented threshold.

Every threshold is a field of :class:`Thresholds` (``docs/audit.md`` explains each). A verdict is
``recovered`` (the attack found the class), ``did not recover``, or ``undefined`` (the original model
never recognised the class, so there is nothing to recover), with the figure and the threshold used.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

RECOVERED = "recovered"
NOT_RECOVERED = "did not recover"
UNDEFINED = "undefined"


@dataclass(frozen=True)
class Thresholds:
    """When an attack counts as having brought the class back."""

    #: prompts: the forgotten model's best accuracy over the other prompts (ImageNet ensemble, other
    #: templates, synonyms, CuPL) exceeds this share of the original's accuracy with the run's template
    prompts_share: float = 0.5
    #: images: the forgotten model's best accuracy over the augmentations exceeds this share of the
    #: original's accuracy on the clean images
    images_share: float = 0.5
    #: probe: the forgotten model's probe AUC is at least this share of the original's; with an oracle,
    #: it keeps at least this share of the original's margin over the oracle's AUC
    probe_share: float = 0.9
    #: probe with an oracle: when the original's AUC is not above the oracle's by more than this, the
    #: oracle's features separate the class as well, and the probe cannot tell knowledge from generic
    #: features (undefined)
    probe_margin: float = 0.02
    #: relearning: after ``relearn_steps`` steps on ``relearn_k`` images per class, the forgotten model's
    #: accuracy is at least this share of the original's before any step
    relearn_share: float = 0.5
    relearn_k: int = 5
    relearn_steps: int = 5
    #: membership: without an oracle, the forgotten model's loss-threshold AUC is farther than this
    #: from 0.5 (outside [0.4, 0.6]); with one, farther from 0.5 than the oracle's AUC is
    mia_margin: float = 0.1

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _line(attack: str, verdict: str, figure: str, rule: str) -> dict[str, str]:
    return {"attack": attack, "verdict": verdict, "figure": figure, "threshold": rule}


def _share(attack: str, after: float, before: float, share: float, what: str, strict: bool = True) -> dict[str, str]:
    rule = f"{what} {'>' if strict else '≥'} {share:g} × before"
    if not before > 0:
        return _line(attack, UNDEFINED, f"before {before:.3f}", rule + " (the original never recognised the class)")
    hit = after > share * before if strict else after >= share * before
    return _line(attack, RECOVERED if hit else NOT_RECOVERED, f"{after:.3f} vs before {before:.3f}", rule)


def verdicts(results: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    """One verdict line per attack in ``results`` (attack name -> its result dict)."""
    lines = []
    if "prompts" in results:
        r = results["prompts"]
        best = r["best_after"]
        if best is None:
            lines.append(_line("prompts", UNDEFINED, "no other prompt", "—"))
        else:
            label = f"{best['family']} {best['prompt']!r}"
            line = _share("prompts", best["accuracy"]["forgotten"], r["before"], th.prompts_share,
                          "best other-prompt accuracy after")
            line["figure"] += f" ({label})"
            lines.append(line)
    if "images" in results:
        r = results["images"]
        best = r["best_after"]
        line = _share("images", best["accuracy"]["forgotten"], r["before"], th.images_share,
                      "best augmented accuracy after")
        line["figure"] += f" ({best['augmentation']}; retrieval P@{r['retrieval']['k']} " \
                          f"{r['retrieval']['precision']['forgotten']:.3f} vs before " \
                          f"{r['retrieval']['precision']['original']:.3f})"
        lines.append(line)
    if "probe" in results:
        auc = results["probe"]["auc"]
        if "oracle" not in auc:
            lines.append(_share("probe", auc["forgotten"], auc["original"], th.probe_share, "probe AUC after",
                                strict=False))
        else:
            margin = auc["original"] - auc["oracle"]
            rule = (f"probe AUC after − oracle's ≥ {th.probe_share:g} × (before − oracle's), when before exceeds the "
                    f"oracle's by more than {th.probe_margin:g}")
            figure = f"AUC {auc['forgotten']:.3f} vs before {auc['original']:.3f} and oracle {auc['oracle']:.3f}"
            if margin <= th.probe_margin:
                lines.append(_line("probe", UNDEFINED, figure, rule + " (the oracle, which never saw the class, "
                                   "separates it as well: a probe cannot tell knowledge from generic features)"))
            else:
                hit = auc["forgotten"] - auc["oracle"] >= th.probe_share * margin
                lines.append(_line("probe", RECOVERED if hit else NOT_RECOVERED, figure, rule))
    if "relearning" in results:
        r = results["relearning"]
        k, steps = str(th.relearn_k), th.relearn_steps
        curve = r["curves"]["forgotten"].get(k)
        if curve is None or len(curve) <= steps:
            lines.append(_line("relearning", UNDEFINED, f"no curve for k={k} with {steps} steps",
                               f"k={k}, {steps} steps"))
        else:
            before = r["curves"]["original"][k][0]
            line = _share("relearning", curve[steps], before, th.relearn_share,
                          f"accuracy after {steps} steps with k={k}", strict=False)
            if "oracle" in r["curves"]:
                line["figure"] += f" (oracle {r['curves']['oracle'][k][steps]:.3f})"
            lines.append(line)
    if "mia" in results:
        r = results["mia"]
        if "skipped" in r:
            lines.append(_line("mia", UNDEFINED, "skipped", r["skipped"]))
        else:
            auc = r["threshold_auc"]
            dist = abs(auc["forgotten"] - 0.5)
            if "oracle" in auc:
                ref, rule = abs(auc["oracle"] - 0.5), "|AUC after − 0.5| > |AUC oracle − 0.5|"
                figure = f"AUC {auc['forgotten']:.3f} vs oracle {auc['oracle']:.3f} (before {auc['original']:.3f})"
            else:
                ref, rule = th.mia_margin, f"|AUC after − 0.5| > {th.mia_margin:g}"
                figure = f"AUC {auc['forgotten']:.3f} (before {auc['original']:.3f})"
            lines.append(_line("mia", RECOVERED if dist > ref else NOT_RECOVERED, figure, rule))
    if "oracle" in results:
        kl = results["oracle"]["kl_to_oracle"]
        closer = kl["forgotten"]["all"] < kl["original"]["all"]
        parts = [f"{label} {kl['forgotten'][part]:.3f} vs {kl['original'][part]:.3f}"
                 for part, label in (("target", "class's images"), ("others", "other images"))
                 if kl["forgotten"].get(part) is not None]
        lines.append(_line("oracle", "closer to the oracle" if closer else "not closer to the oracle",
                           f"mean KL to the oracle {kl['forgotten']['all']:.4f} vs original's {kl['original']['all']:.4f}"
                           + (f" ({'; '.join(parts)})" if parts else ""),
                           "KL(forgotten ‖ oracle) < KL(original ‖ oracle)"))
    return lines


__all__ = ["NOT_RECOVERED", "RECOVERED", "UNDEFINED", "Thresholds", "verdicts"]
