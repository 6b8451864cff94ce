"""The audit's verdict lines word for word (issue 35: the mutation survivors of audit/verdict.py): for
results of every attack, made up so that each figure is known, each line's verdict, figure and threshold
as a reader sees them, written out by hand; the boundaries of each rule; and the undefined cases."""
from __future__ import annotations

from clipunlearn.audit.verdict import Thresholds, format_interval, judged, verdicts

WHY_IMAGES = ("the oracle, which never saw the class, finds it as well under this attack: its accuracy says "
              "nothing of knowledge")
MIA_HOW = "95% bootstrap interval (2000 resamples of 51 members and 20 non-members, seed 0)"


def _line(attack, verdict, figure, threshold):
    return {"attack": attack, "verdict": verdict, "figure": figure, "threshold": threshold}


def _acc(original, forgotten, oracle=None):
    return {"original": original, "forgotten": forgotten, **({} if oracle is None else {"oracle": oracle})}


def _every_attack() -> dict:
    """Results of every attack, in an order other than the verdict's, and one attack that was skipped."""
    fams = [{"family": "run template", "accuracy": _acc(0.9, 0.1)},
            {"family": "synonym", "prompt": "p", "accuracy": _acc(0.9, 0.5)},
            {"family": "cupl", "prompt": "q", "accuracy": _acc(0.9, 0.25)}]
    return {
        "custom": {"skipped": "not for this task"},
        "oracle": {"kl_to_oracle": {"forgotten": {"all": 3.68, "target": 11.17, "others": 3.595},
                                    "original": {"all": 2.81, "target": 21.429, "others": 2.596}}},
        "weights": {"touched": 3, "l2": 0.125, "relative_l2": 0.0123, "barrier_others": None},
        "mia": {"n_members": 51, "n_non_members": 20, "threshold_auc": {"original": 0.69, "forgotten": 0.665},
                "threshold_auc_interval": {"original": [0.55, 0.82], "forgotten": [0.52, 0.81]},
                "bootstrap": {"resamples": 2000, "level": 0.95, "seed": 0}},
        "relearning": {"attacks": ["a", "b"], "before": 0.7, "score": {"R": 0.25, "R_floor": 0.9, "with_oracle": True}},
        "prototype": {"accuracy": {"5": _acc(0.8, 0.55, 0.2)}},
        "probe": {"auc": _acc(1.0, 0.9)},
        "images": {"before": 0.8, "augmentations": ["a", "b"], "retrieval": {"k": 5, "precision": _acc(0.9, 0.4)},
                   "accuracy": {"clean": _acc(0.8, 0.0, 0.0), "a": _acc(0.8, 0.3, 0.6), "b": _acc(0.7, 0.72, 0.1)},
                   "best_after": {"augmentation": "b", "accuracy": _acc(0.7, 0.72, 0.1)}},
        "prompts": {"before": 0.8, "families": fams, "best_after": fams[1]},
    }


def test_every_attacks_line_word_for_word_in_the_attacks_order():
    lines = verdicts(_every_attack(), Thresholds())
    assert lines == [
        _line("prompts", "recovered", "0.500 vs before 0.800 (synonym 'p')",
              "best other-prompt accuracy after > 0.5 × before"),
        # the oracle's best under the attack is 0.6 (augmentation a): kept 0.12 of the 0.2 margin
        _line("images", "recovered", "0.720 vs before 0.800 and oracle 0.600 (b; retrieval P@5 0.400 vs before 0.900)",
              "best augmented accuracy after − oracle's > 0.5 × (before − oracle's), when before exceeds the oracle's "
              "by more than 0.05"),
        _line("probe", "recovered", "0.900 vs before 1.000", "probe AUC after ≥ 0.9 × before"),  # at the bound
        _line("prototype", "recovered", "0.550 vs before 0.800 and oracle 0.200",
              "prototype accuracy with k=5: after − oracle's > 0.5 × (before − oracle's), when before exceeds the "
              "oracle's by more than 0.05"),
        _line("relearning", "did not recover", "R 0.250 (original at step 0: 0.700)", "R over 2 attacks > 0.5"),
        _line("mia", "recovered", "AUC 0.665 [0.520, 0.810] (before 0.690)", f"{MIA_HOW} of AUC after wholly above 0.5"),
        _line("weights", "moved", "3 tensors changed, L2 0.125 (1.230% of their norm), loss barrier no other images",
              "reported, not judged"),
        _line("oracle (class)", "moved toward the oracle",
              "mean KL to the oracle on the class's test images 11.170 vs the original's 21.429",
              "KL(forgotten ‖ oracle) < 0.9 × KL(original ‖ oracle) on the class's images"),
        _line("oracle (rest)", "drifted from the oracle",
              "mean KL to the oracle on the other test images 3.595 vs the original's 2.596 (all images 3.680 vs "
              "2.810)", "KL(forgotten ‖ oracle) ≤ 1.1 × KL(original ‖ oracle) on the other images"),
        _line("custom", "undefined", "skipped", "not for this task"),
    ]
    assert judged(lines) == (5, 6)  # all but relearning of the six lines that judge


def test_the_other_branches_word_for_word():
    th = Thresholds()
    results = {
        "prompts": {"before": 0.8, "families": [], "best_after": None},
        "images": {"before": 0.0, "augmentations": ["a"], "retrieval": None, "accuracy": {"a": _acc(0.0, 0.3)},
                   "best_after": {"augmentation": "a", "accuracy": _acc(0.0, 0.3)}},
        "probe": {"auc": _acc(0.9, 0.85, 0.89)},
        "prototype": {"accuracy": {"3": _acc(0.8, 0.5)}},
        "relearning": {"attacks": ["a"], "before": 0.6, "score": {"R": 0.9, "R_floor": None, "with_oracle": False}},
        "weights": {"touched": 0, "l2": 0.0, "relative_l2": 0.0, "barrier_others": 0.01234},
        "oracle": {"kl_to_oracle": {"forgotten": {"all": 1.0, "target": None, "others": None},
                                    "original": {"all": 1.0, "target": None, "others": None}}},
    }
    assert verdicts(results, th) == [
        _line("prompts", "undefined", "no other prompt", "—"),
        _line("images", "undefined", "before 0.000 (a)",
              "best augmented accuracy after > 0.5 × before (the original never recognised the class)"),
        _line("probe", "undefined", "AUC 0.850 vs before 0.900 and oracle 0.890",
              "probe AUC after − oracle's ≥ 0.9 × (before − oracle's), when before exceeds the oracle's by more than "
              "0.02 (the oracle, which never saw the class, separates it as well: a probe cannot tell knowledge from "
              "generic features)"),
        _line("prototype", "undefined", "no reading with k=5", "prototype accuracy with k=5"),
        _line("relearning", "undefined", "original 0.600 at step 0",
              "R against an accuracy-0 floor (no oracle) over 1 attacks > 0.5 (undefined: the oracle relearns the "
              "class as well as the original knew it)"),
        _line("weights", "unchanged", "0 tensors changed, L2 0 (0.000% of their norm), loss barrier 0.0123",
              "reported, not judged"),
        _line("oracle (class)", "undefined", "no test image of the class", "—"),
        _line("oracle (rest)", "undefined", "no test image of another class", "—"),
    ]
    assert judged(verdicts(results, th)) == (0, 0)


def test_each_rule_at_its_bound():
    th = Thresholds()
    # prompts without an oracle: strictly above half the original's accuracy
    fams = [{"family": "synonym", "prompt": "p", "accuracy": _acc(0.9, 0.4)}]
    line = verdicts({"prompts": {"before": 0.8, "families": fams, "best_after": fams[0]}}, th)[0]
    assert line["verdict"] == "did not recover"
    # beyond the oracle, strict: kept exactly half the margin is not recovery; a margin of exactly 0.05 is
    # undefined, above it judged
    proto = {"prototype": {"accuracy": {"5": _acc(0.75, 0.5, 0.25)}}}
    assert verdicts(proto, th)[0]["verdict"] == "did not recover"
    proto = {"prototype": {"accuracy": {"5": _acc(0.3, 0.3, 0.25)}}}
    assert verdicts(proto, Thresholds(prototype_margin=0.0625))[0]["verdict"] == "undefined"
    proto = {"prototype": {"accuracy": {"5": _acc(0.3125, 0.3125, 0.25)}}}
    assert verdicts(proto, Thresholds(prototype_margin=0.0625))[0]["verdict"] == "undefined"
    proto = {"prototype": {"accuracy": {"5": _acc(0.375, 0.375, 0.25)}}}
    assert verdicts(proto, Thresholds(prototype_margin=0.0625))[0]["verdict"] == "recovered"
    # the probe beyond the oracle is not strict: exactly the share of the margin is recovery
    assert verdicts({"probe": {"auc": _acc(1.0, 0.875, 0.5)}}, Thresholds(probe_share=0.75))[0]["verdict"] == "recovered"
    assert verdicts({"probe": {"auc": _acc(1.0, 0.87, 0.5)}}, Thresholds(probe_share=0.75))[0]["verdict"] == \
        "did not recover"
    # relearning: strictly above relearn_r
    def relearnt(r):
        return {"relearning": {"attacks": ["a"], "before": 0.5, "score": {"R": r, "R_floor": 0.0, "with_oracle": True}}}
    assert verdicts(relearnt(0.5), th)[0]["verdict"] == "did not recover"
    assert verdicts(relearnt(0.5000001), th)[0]["verdict"] == "recovered"
    # the oracle lines: the class moved only strictly below (1 − share) ×, the rest kept up to (1 + share) ×
    def oracle(target, others):
        kl = {"forgotten": {"all": 1.0, "target": target, "others": others},
              "original": {"all": 1.0, "target": 2.0, "others": 2.0}}
        return [v["verdict"] for v in verdicts({"oracle": {"kl_to_oracle": kl}}, Thresholds(oracle_share=0.25))]
    assert oracle(1.5, 2.5) == ["did not move toward the oracle", "stayed as close to the oracle"]
    assert oracle(1.4999, 2.5001) == ["moved toward the oracle", "drifted from the oracle"]


def test_the_membership_line_with_an_oracle_word_for_word():
    r = {"n_members": 51, "n_non_members": 20, "threshold_auc": {"original": 0.69, "forgotten": 0.665, "oracle": 0.435},
         "threshold_auc_interval": {"original": [0.55, 0.82], "forgotten": [0.52, 0.81]},
         "bootstrap": {"resamples": 2000, "level": 0.95, "seed": 0},
         "minus_oracle": {"forgotten": {"estimate": 0.23, "interval": [0.0, 0.35]}}}
    assert verdicts({"mia": r}, Thresholds()) == [_line(
        "mia", "no evidence",  # the interval's low end exactly at 0: not wholly above it
        "AUC 0.665 [0.520, 0.810] vs oracle 0.435: difference +0.230 [+0.000, +0.350] (before 0.690)",
        f"{MIA_HOW} of AUC after − AUC oracle wholly above 0")]
    r["threshold_auc_interval"]["forgotten"] = [0.5, 0.81]
    del r["threshold_auc"]["oracle"], r["minus_oracle"]
    assert verdicts({"mia": r}, Thresholds())[0]["verdict"] == "no evidence"  # low end exactly at 0.5


def test_format_interval():
    assert format_interval([0.1234, 0.5]) == "[0.123, 0.500]"
    assert format_interval([-0.1234, 0.5], signed=True) == "[-0.123, +0.500]"


def test_thresholds_to_json_holds_every_field():
    assert Thresholds(relearn_r=0.25).to_json() == {
        "prompts_share": 0.5, "accuracy_margin": 0.05, "images_share": 0.5, "probe_share": 0.9,
        "probe_margin": 0.02, "relearn_r": 0.25, "prototype_share": 0.5, "prototype_k": 5,
        "prototype_margin": 0.05, "oracle_share": 0.1}


def test_the_undefined_and_oracle_free_lines_word_for_word():
    th = Thresholds()
    results = {
        # images with an oracle whose best under the augmentations is within 0.05 of the original
        "images": {"before": 0.8, "augmentations": ["a"], "retrieval": None, "accuracy": {"a": _acc(0.8, 0.3, 0.77)},
                   "best_after": {"augmentation": "a", "accuracy": _acc(0.8, 0.3, 0.77)}},
        "prototype": {"accuracy": {"5": _acc(0.8, 0.5, 0.78)}},
    }
    assert verdicts(results, th) == [
        _line("images", "undefined", "0.300 vs before 0.800 and oracle 0.770 (a)",
              "best augmented accuracy after − oracle's > 0.5 × (before − oracle's), when before exceeds the oracle's "
              f"by more than 0.05 ({WHY_IMAGES})"),
        _line("prototype", "undefined", "0.500 vs before 0.800 and oracle 0.780",
              "prototype accuracy with k=5: after − oracle's > 0.5 × (before − oracle's), when before exceeds the "
              "oracle's by more than 0.05 (the oracle's features find the class as well: prototypes cannot tell "
              "knowledge from generic features)"),
    ]
    proto = {"prototype": {"accuracy": {"5": _acc(0.8, 0.5)}}}
    assert verdicts(proto, th) == [_line("prototype", "recovered", "0.500 vs before 0.800",
                                         "prototype accuracy with k=5 after > 0.5 × before")]


def test_the_oracles_run_template_accuracy_is_not_its_best_under_other_prompts():
    """The oracle is judged by its best over the other prompts; its accuracy with the run's own template
    (0.7 here, the highest) is not one of them."""
    fams = [{"family": "run template", "accuracy": _acc(0.9, 0.1, 0.7)},
            {"family": "synonym", "prompt": "p", "accuracy": _acc(0.9, 0.55, 0.2)}]
    line = verdicts({"prompts": {"before": 0.8, "families": fams, "best_after": fams[1]}}, Thresholds())[0]
    assert line["figure"] == "0.550 vs before 0.800 and oracle 0.200 (synonym 'p')"
    assert line["verdict"] == "recovered"  # kept 0.35 of the 0.6 margin over the oracle's 0.2: more than half


def test_a_not_strict_share_scales_the_original():
    """The probe without an oracle: at least 0.9 × the original's AUC, here 0.9 × 0.5 = 0.45."""
    assert verdicts({"probe": {"auc": _acc(0.5, 0.45)}}, Thresholds())[0]["verdict"] == "recovered"
    assert verdicts({"probe": {"auc": _acc(0.5, 0.44)}}, Thresholds())[0]["verdict"] == "did not recover"


def test_a_skipped_attack_takes_its_place_in_the_attacks_order():
    lines = verdicts({"probe": {"auc": _acc(0.5, 0.45)}, "images": {"skipped": "no images"},
                      "relearning": {"skipped": "no zoo model"}}, Thresholds())
    assert [v["attack"] for v in lines] == ["images", "probe", "relearning"]


def test_an_interval_that_is_not_finite_reads_in_lower_case():
    assert format_interval([float("-inf"), float("nan")]) == "[-inf, nan]"
    assert format_interval([float("inf"), float("nan")], signed=True) == "[+inf, +nan]"
