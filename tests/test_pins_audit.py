"""The audit's attack wrappers against answers known by construction (issue 35): which images are members,
which split the probe is scored on, which model's relearning curves go where in R.

The membership and probe wrappers read a case's features, logits and labels only, so they run here on a
hand-made case whose numbers are chosen so that each wrong wiring gives another figure. The relearning
wrapper runs on the real case of the tiny Lip run, with the curve of each model replaced by a known one.
"""
from __future__ import annotations

import copy
import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from clipunlearn.audit import Thresholds
from clipunlearn.audit.attacks import mia, probe, relearning
from clipunlearn.audit.case import load_case, read_run
from clipunlearn.audit.relearning import Attack
from clipunlearn.audit.verdict import NOT_RECOVERED, verdicts


class HandCase:
    """What the membership and probe attacks read of an :class:`AuditCase`, given by hand: class 0 is the
    forgotten class; per split, the labels, and per model the logits (membership) or features (probe)."""

    def __init__(self, labels: dict[str, list[int]], logits=None, features=None):
        self.run = SimpleNamespace(model="mini-rn", pretrained="default", weights=None, dataset="hand")
        self._labels = {k: np.asarray(v) for k, v in labels.items()}
        self._logits, self._features = logits or {}, features or {}
        self.models = {name: None for name in (logits or features)}
        self.targets, self.seed, self.train = [0], 0, True

    def labels(self, split="test"):
        return self._labels[split]

    def is_target(self, split="test"):
        return np.isin(self._labels[split], self.targets)

    def logits(self, name, split="test"):
        return np.asarray(self._logits[name][split], dtype=np.float64)

    def features(self, name, split="test"):
        return torch.as_tensor(np.asarray(self._features[name][split], dtype=np.float32))

    def need_train(self, what):
        return self.train


def _logits(margins: list[float], others: int) -> list[list[float]]:
    """Two-class logits: the forgotten class's images with the given margin for their class (loss
    log(1 + e^-margin)), then ``others`` images of class 1 the model is sure are class 0 (loss ~12)."""
    return [[m, 0.0] for m in margins] + [[12.0, 0.0]] * others


def _loss(margin: float) -> float:
    return math.log1p(math.exp(-margin))


def test_members_are_the_train_images_of_the_class_and_each_model_is_scored_on_its_own_losses():
    labels = {"train": [0, 0, 0, 0, 1, 1], "test": [0, 0, 0, 0, 1, 1, 1]}
    margins = {  # (train = members, test = non-members) margins of the class's images, per model
        "original": ([4, 5, 6, 7], [0, 1, 2, 3]),  # every member's loss below every non-member's: AUC 1
        "forgotten": ([0, 1, 2, 3], [4, 5, 6, 7]),  # every member's loss above: AUC 0
        "oracle": ([0, 2, 4, 6], [1, 3, 5, 7]),  # members win 0 + 1 + 2 + 3 = 6 of the 16 pairs: AUC 0.375
    }
    logits = {m: {"train": _logits(tr, 2), "test": _logits(te, 3)} for m, (tr, te) in margins.items()}
    r = mia(HandCase(labels, logits=logits))
    assert (r["n_members"], r["n_non_members"]) == (4, 4)  # the class's images only
    assert r["threshold_auc"] == pytest.approx({"original": 1.0, "forgotten": 0.0, "oracle": 0.375})
    for m, (tr, te) in margins.items():
        assert r["mean_loss"][m] == pytest.approx({"members": np.mean([_loss(a) for a in tr]),
                                                   "non_members": np.mean([_loss(a) for a in te])})
    assert r["minus_oracle"]["forgotten"]["estimate"] == pytest.approx(0.0 - 0.375)
    assert r["minus_oracle"]["original"]["estimate"] == pytest.approx(1.0 - 0.375)
    assert r["threshold_auc_interval"]["original"] == [1.0, 1.0]  # every resample keeps the perfect order
    assert r["threshold_auc_interval"]["forgotten"] == [0.0, 0.0]


def _probe_features(rng, n: int, side: float, spread: float) -> np.ndarray:
    """``n`` 2-D features at ``(side, 0)`` plus noise of ``spread``."""
    return np.c_[np.full(n, side), np.zeros(n)] + spread * rng.normal(size=(n, 2))


def test_the_probe_is_trained_on_the_train_split_and_scored_on_the_test_split():
    rng = np.random.default_rng(0)
    labels = {"train": [0] * 6 + [1] * 10, "test": [0] * 5 + [1] * 7}
    # train: the class at x = +1, the rest at x = -1 (separable); the probe learns "x high: the class"
    train = np.r_[_probe_features(rng, 6, 1.0, 0.1), _probe_features(rng, 10, -1.0, 0.1)]
    test_same = np.r_[_probe_features(rng, 5, 1.0, 0.1), _probe_features(rng, 7, -1.0, 0.1)]
    features = {
        "original": {"train": train, "test": test_same},  # the test split as the train split: AUC 1
        "forgotten": {"train": train, "test": np.ones((12, 2))},  # one point for every test image: AUC 0.5
        "oracle": {"train": train, "test": -test_same},  # the test split mirrored: AUC 0
    }
    r = probe(HandCase(labels, features=features))
    assert r["auc"] == pytest.approx({"original": 1.0, "forgotten": 0.5, "oracle": 0.0})
    assert (r["n_train"], r["n_test"], r["n_train_target"]) == (16, 12, 6)
    line = verdicts({"probe": r}, Thresholds())[0]  # kept 0.5 of the original's margin of 1 over the oracle
    assert line["verdict"] == NOT_RECOVERED and line["figure"].startswith("AUC 0.500 vs before 1.000 and oracle 0.000")


#: a two-attack grid read after 1 and 2 steps (as test_audit's), and each model's curve for each attack
SMALL_GRID = (Attack.parse("forget-k1 adam tower lr=0.0001"), Attack.parse("retain sgd lora lr=0.0001"))
CURVES = {"original": ([0.8, 0.9, 1.0], [0.8, 0.8, 0.8]),  # areas 0.9 + 0.8 = 1.7
          "forgotten": ([0.2, 0.6, 0.8], [0.3, 0.4, 0.4]),  # areas 0.55 + 0.375 = 0.925
          "oracle": ([0.4, 0.5, 0.6], [0.3, 0.3, 0.3])}  # areas 0.5 + 0.3 = 0.8


def test_relearning_puts_each_models_curves_in_its_place_in_r(data_slice, lip_run, monkeypatch):
    case = load_case(read_run(lip_run), None, str(data_slice), need_train=True, relearn_grid=SMALL_GRID,
                     relearn_steps=(1, 2))
    case.models["oracle"] = copy.deepcopy(case.models["original"])  # another model object: its own curves
    name_of = {id(m): name for name, m in case.models.items()}
    seen = []

    def known_curve(clip, attack, data, test_px, test_y, text, steps, seed, prompts):
        name = name_of[id(clip)]
        seen.append((name, attack.name, tuple(steps)))
        return list(CURVES[name][SMALL_GRID.index(attack)])

    monkeypatch.setattr("clipunlearn.audit.relearning.relearn_curve", known_curve)
    r = relearning(case)
    assert sorted(seen) == sorted((m, a.name, (1, 2)) for m in CURVES for a in SMALL_GRID)
    assert r["curves"] == {m: {a.name: list(c) for a, c in zip(SMALL_GRID, CURVES[m])} for m in CURVES}
    # R = (0.925 - 0.8) / (1.7 - 0.8); against the accuracy-0 floor 0.925 / 1.7
    assert r["score"]["R"] == pytest.approx(0.125 / 0.9)
    assert r["score"]["R_floor"] == pytest.approx(0.925 / 1.7)
    assert r["before"] == 0.8 and r["score"]["with_oracle"]
    # the verdict reads R (0.139, not recovered), not the floor (0.544, which would be)
    line = verdicts({"relearning": r}, Thresholds())[0]
    assert line["verdict"] == NOT_RECOVERED and line["figure"].startswith("R 0.139")
