"""The audit's verdict: per attack, did the forgotten class come back, by a documented threshold.

Every threshold is a field of :class:`Thresholds` (``docs/audit.md`` explains each). A verdict is
``recovered`` (the attack found the class), ``did not recover``, or ``undefined`` (the original model
never recognised the class, so there is nothing to recover, or the attack could not run on the run's
task: its result is ``{"skipped": reason}``), with the figure and the threshold used.
The membership attack, judged on an interval from its sample sizes, says ``no evidence`` instead of
``did not recover`` when the interval covers its reference: a noisy attack that finds nothing has not
shown the class gone. The oracle comparison gives two lines, ``oracle (class)`` (did the class's outputs
move toward the oracle's?) and ``oracle (rest)`` (did the other images stay as close to it as the
original's?), so drift on the kept classes cannot hide what happened to the class.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

RECOVERED = "recovered"
NOT_RECOVERED = "did not recover"
UNDEFINED = "undefined"
#: membership: the interval covers the reference (the oracle's AUC, or 0.5 without an oracle)
NO_EVIDENCE = "no evidence"
#: the oracle lines: the class's outputs against the oracle's, then the other images'
ORACLE_CLASS, ORACLE_REST = "oracle (class)", "oracle (rest)"
MOVED, NOT_MOVED = "moved toward the oracle", "did not move toward the oracle"
KEPT, DRIFTED = "stayed as close to the oracle", "drifted from the oracle"


@dataclass(frozen=True)
class Thresholds:
    """When an attack counts as having brought the class back."""

    #: prompts: the forgotten model's best accuracy over the other prompts (ImageNet ensemble, other
    #: templates, synonyms, CuPL) exceeds this share of the original's accuracy with the run's template
    prompts_share: float = 0.5
    #: prompts and images with an oracle: the forgotten model's best accuracy keeps more than the share
    #: above of the original's margin over the oracle's best under the same attack (the oracle may know
    #: the class through words or looks it learnt elsewhere: "car" and "side" for "car side"); undefined
    #: when that margin is at most this
    accuracy_margin: float = 0.05
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
    #: relearning: the relearning score R over the audited grid (the oracle at 0, the original at 1) is
    #: above this; without an oracle, R against an accuracy-0 floor
    relearn_r: float = 0.5
    #: prototype attack with ``prototype_k`` train images per class: the forgotten model's accuracy keeps more
    #: than this share of the original's margin over the oracle's (without an oracle: of the original's
    #: accuracy); undefined when that margin is at most ``prototype_margin``
    prototype_share: float = 0.5
    prototype_k: int = 5
    prototype_margin: float = 0.05
    #: oracle: a change of the mean KL(forgotten ‖ oracle) from the original's KL counts when it exceeds
    #: this share of the original's (relative: the original's own distance sets the scale of what training
    #: without the class changes). The class's images moved toward the oracle when their KL fell below
    #: (1 − share) × the original's; the other images drifted from it when theirs rose above (1 + share) ×
    oracle_share: float = 0.1

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


#: the order of the verdict lines: the attacks' (:data:`.attacks.ATTACKS`)
ORDER = ("prompts", "images", "probe", "prototype", "relearning", "mia", "weights", "oracle")


def _beyond_oracle(attack: str, v: dict[str, float], share: float, margin_min: float, what: str, unit: str,
                   why_undefined: str, strict: bool = True) -> dict[str, str]:
    """Recovered when the forgotten model keeps more than ``share`` of the original's margin over the oracle
    (at least, when not ``strict``); undefined when that margin is at most ``margin_min``: the oracle, which
    never saw the class, then scores as well, and the figure says nothing of knowledge."""
    margin = v["original"] - v["oracle"]
    rule = (f"{what} − oracle's {'>' if strict else '≥'} {share:g} × (before − oracle's), when before exceeds the "
            f"oracle's by more than {margin_min:g}")
    figure = f"{unit}{v['forgotten']:.3f} vs before {v['original']:.3f} and oracle {v['oracle']:.3f}"
    if margin <= margin_min:
        return _line(attack, UNDEFINED, figure, f"{rule} ({why_undefined})")
    kept = v["forgotten"] - v["oracle"]
    hit = kept > share * margin if strict else kept >= share * margin
    return _line(attack, RECOVERED if hit else NOT_RECOVERED, figure, rule)


def _best_of_attack(attack: str, after: float, before: float, tried: list[dict[str, float]], share: float,
                    margin_min: float, what: str) -> dict[str, str]:
    """An accuracy attack (prompts, images): the forgotten model's best over what the attack ``tried`` (one
    dict of accuracies per model each) against the original's ``before``; with an oracle among the models,
    against the original's margin over the oracle's best under the same attack (:func:`_beyond_oracle`)."""
    if not tried or "oracle" not in tried[0]:
        return _share(attack, after, before, share, what + " after")
    oracle = max(acc["oracle"] for acc in tried)
    return _beyond_oracle(attack, {"original": before, "forgotten": after, "oracle": oracle}, share, margin_min,
                          what + " after", "", "the oracle, which never saw the class, finds it as well under this "
                          "attack: its accuracy says nothing of knowledge", strict=True)


def verdicts(results: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    """One verdict line per attack in ``results`` (attack name -> its result dict); an attack that could
    not run (``{"skipped": reason}``) is undefined, with the reason."""
    skipped = [_line(name, UNDEFINED, "skipped", r["skipped"]) for name, r in results.items() if "skipped" in r]
    lines = _judge({name: r for name, r in results.items() if "skipped" not in r}, th) + skipped
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(lines, key=lambda v: rank.get(v["attack"].partition(" ")[0], len(ORDER)))  # stable


def _judge_prompts(r: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    best = r["best_after"]
    if best is None:
        return [_line("prompts", UNDEFINED, "no other prompt", "—")]
    tried = [f["accuracy"] for f in r["families"] if f["family"] != "run template"]
    line = _best_of_attack("prompts", best["accuracy"]["forgotten"], r["before"], tried, th.prompts_share,
                           th.accuracy_margin, "best other-prompt accuracy")
    line["figure"] += f" ({best['family']} {best['prompt']!r})"
    return [line]


def _judge_images(r: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    best = r["best_after"]
    tried = [r["accuracy"][a] for a in r["augmentations"]]
    line = _best_of_attack("images", best["accuracy"]["forgotten"], r["before"], tried, th.images_share,
                           th.accuracy_margin, "best augmented accuracy")
    rt = r["retrieval"]
    line["figure"] += (f" ({best['augmentation']}; retrieval P@{rt['k']} {rt['precision']['forgotten']:.3f} vs "
                       f"before {rt['precision']['original']:.3f})" if rt else f" ({best['augmentation']})")
    return [line]


def _judge_probe(r: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    auc = r["auc"]
    if "oracle" not in auc:
        return [_share("probe", auc["forgotten"], auc["original"], th.probe_share, "probe AUC after", strict=False)]
    return [_beyond_oracle("probe", auc, th.probe_share, th.probe_margin, "probe AUC after",
                           "AUC ", "the oracle, which never saw the class, separates it as well: a probe "
                           "cannot tell knowledge from generic features", strict=False)]


def _judge_prototype(r: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    acc = r["accuracy"].get(str(th.prototype_k))
    rule = f"prototype accuracy with k={th.prototype_k}"
    if acc is None:
        return [_line("prototype", UNDEFINED, f"no reading with k={th.prototype_k}", rule)]
    if "oracle" not in acc:
        return [_share("prototype", acc["forgotten"], acc["original"], th.prototype_share, rule + " after")]
    return [_beyond_oracle("prototype", acc, th.prototype_share, th.prototype_margin, rule + ": after",
                           "", "the oracle's features find the class as well: prototypes cannot tell "
                           "knowledge from generic features")]


def _judge_relearning(r: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    score, n = r["score"], len(r["attacks"])
    with_oracle = bool(score.get("with_oracle"))
    value = score["R"] if with_oracle else score["R_floor"]
    name = "R" if with_oracle else "R against an accuracy-0 floor (no oracle)"
    rule = f"{name} over {n} attacks > {th.relearn_r:g}"
    before = r["before"]
    if value is None:  # the oracle relearns the class as well as the original knew it
        return [_line("relearning", UNDEFINED, f"original {before:.3f} at step 0",
                      rule + " (undefined: the oracle relearns the class as well as the original knew it)")]
    return [_line("relearning", RECOVERED if value > th.relearn_r else NOT_RECOVERED,
                  f"{name} {value:.3f} (original at step 0: {before:.3f})", rule)]


def _judge_weights(w: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    barrier = "no other images" if w["barrier_others"] is None else f"{w['barrier_others']:.4f}"
    return [_line("weights", "moved" if w["touched"] else "unchanged",
                  f"{w['touched']} tensors changed, L2 {w['l2']:.4g} ({w['relative_l2']:.3%} of their norm), "
                  f"loss barrier {barrier}", "reported, not judged")]


#: each attack's verdict lines from its result
JUDGES: dict[str, Callable[[dict[str, Any], Thresholds], list[dict[str, str]]]] = {
    "prompts": _judge_prompts,
    "images": _judge_images,
    "probe": _judge_probe,
    "prototype": _judge_prototype,
    "relearning": _judge_relearning,
    "mia": lambda r, th: [_mia(r)],
    "weights": _judge_weights,
    "oracle": lambda r, th: _oracle(r["kl_to_oracle"], th),
}


def _judge(results: dict[str, Any], th: Thresholds) -> list[dict[str, str]]:
    """The verdict lines of the attacks that ran."""
    return [line for name, judge in JUDGES.items() if name in results for line in judge(results[name], th)]


#: the verdicts of attacks that could have found the class (an attack that was undefined, or a line that
#: only reports, such as the weights or the oracle lines, does not count in "X of N recovered")
JUDGED = (RECOVERED, NOT_RECOVERED, NO_EVIDENCE)


def judged(lines: list[dict[str, str]]) -> tuple[int, int]:
    """(how many verdict lines say recovered, how many judged at all)."""
    return sum(v["verdict"] == RECOVERED for v in lines), sum(v["verdict"] in JUDGED for v in lines)


def format_interval(interval: list[float], signed: bool = False) -> str:
    """``[low, high]`` to three decimals (with their signs when ``signed``: a difference)."""
    fmt = "{:+.3f}" if signed else "{:.3f}"
    return f"[{fmt.format(interval[0])}, {fmt.format(interval[1])}]"


def _mia(r: dict[str, Any]) -> dict[str, str]:
    """Recovered only when the bootstrap interval of the loss-threshold AUC lies wholly above its reference:
    with an oracle, the interval of AUC(forgotten) − AUC(oracle) above 0 (membership signal beyond what a
    model that never trained on the class shows); without one, the interval of AUC(forgotten) above 0.5.
    An AUC below the reference is never recovery; an interval that covers it is no evidence either way."""
    auc, iv, boot = r["threshold_auc"], r["threshold_auc_interval"], r["bootstrap"]
    how = (f"{boot['level']:.0%} bootstrap interval ({boot['resamples']} resamples of {r['n_members']} members and "
           f"{r['n_non_members']} non-members, seed {boot['seed']})")
    figure = f"AUC {auc['forgotten']:.3f} {format_interval(iv['forgotten'])}"
    if "oracle" in auc:
        diff = r["minus_oracle"]["forgotten"]
        low, rule = diff["interval"][0], f"{how} of AUC after − AUC oracle wholly above 0"
        figure += (f" vs oracle {auc['oracle']:.3f}: difference {diff['estimate']:+.3f} "
                   f"{format_interval(diff['interval'], signed=True)}")
    else:
        low, rule = iv["forgotten"][0] - 0.5, f"{how} of AUC after wholly above 0.5"
    figure += f" (before {auc['original']:.3f})"
    return _line("mia", RECOVERED if low > 0 else NO_EVIDENCE, figure, rule)


def _oracle(kl: dict[str, dict[str, float | None]], th: Thresholds) -> list[dict[str, str]]:
    """Two lines: the class's test images (did forgetting move their outputs toward the oracle's: mean
    KL(forgotten ‖ oracle) below KL(original ‖ oracle) by more than ``oracle_share`` of it?) and the other
    images (did they stay as close to the oracle as the original's, within ``oracle_share`` of it?)."""
    after, before = kl["forgotten"], kl["original"]
    lines = []
    if after.get("target") is None:
        lines.append(_line(ORACLE_CLASS, UNDEFINED, "no test image of the class", "—"))
    else:
        moved = after["target"] < (1.0 - th.oracle_share) * before["target"]
        lines.append(_line(ORACLE_CLASS, MOVED if moved else NOT_MOVED,
                           f"mean KL to the oracle on the class's test images {after['target']:.3f} vs the "
                           f"original's {before['target']:.3f}",
                           f"KL(forgotten ‖ oracle) < {1.0 - th.oracle_share:g} × KL(original ‖ oracle) on the "
                           "class's images"))
    if after.get("others") is None:
        lines.append(_line(ORACLE_REST, UNDEFINED, "no test image of another class", "—"))
    else:
        kept = after["others"] <= (1.0 + th.oracle_share) * before["others"]
        lines.append(_line(ORACLE_REST, KEPT if kept else DRIFTED,
                           f"mean KL to the oracle on the other test images {after['others']:.3f} vs the "
                           f"original's {before['others']:.3f} (all images {after['all']:.3f} vs {before['all']:.3f})",
                           f"KL(forgotten ‖ oracle) ≤ {1.0 + th.oracle_share:g} × KL(original ‖ oracle) "
                           "on the other images"))
    return lines


__all__ = ["DRIFTED", "KEPT", "MOVED", "NOT_MOVED", "NOT_RECOVERED", "NO_EVIDENCE", "ORACLE_CLASS", "ORACLE_REST",
           "ORDER", "RECOVERED", "UNDEFINED", "Thresholds", "format_interval", "verdicts"]
