"""The subgroup settings' figures (``evaluation/subgroups.py``) on stand-ins whose answers are known by
construction (issue 35): which images each column and dataset holds and how each is prompted, the Score's
pairs (which columns count, which are left out), the retrieval shares of hand-placed features, and each
refusal's whole message. No model or image is loaded: each test takes milliseconds. The subgroup pipeline
end to end is in test_subgroups.py."""
from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from clipunlearn.data import ImageSet
from clipunlearn.data.registry import DatasetSpec
from clipunlearn.data.subgroups import Column, Subgroup, SubgroupSetting
from clipunlearn.errors import DataError
from clipunlearn.evaluation import subgroups
from clipunlearn.evaluation.subgroups import (
    RETRIEVAL_KS,
    SubgroupTargets,
    database_paths,
    resolve_subgroup_targets,
    subgroup_accuracies,
    subgroup_retrieval,
    subgroup_score,
)
from clipunlearn.metrics import ratio_score

VOCAB = ("flower", "car", "dog")
ROSE = Subgroup("flowers", "rose", "flower")


def _setting(forget=(ROSE,), keep=(), other=("cifar10",), template="a {} pic"):
    return SubgroupSetting("s", "custom", VOCAB, tuple(forget), (Subgroup("flowers", "tulip", "flower"),),
                           tuple(keep), other_datasets=other, template=template)


def _set(name, classnames, labels, templates=None, paths=None) -> ImageSet:
    spec = DatasetSpec(name, name, templates=tuple(templates)) if templates else None
    return ImageSet(name, "test", list(classnames), list(labels), f"mem:{name}", paths=paths, spec=spec)


# ----------------------------------------------------------------------------------------------- the targets


def test_the_targets_are_each_columns_test_images_and_each_measured_datasets(monkeypatch):
    keep = (Column("others", "keep", (Subgroup("cars", "sedan", "car"),)),)
    setting = _setting(keep=keep, other=("flowers", "cifar10", "caltech101"))  # flowers: the setting's own
    asked, loaded = [], []

    def columns(groups, vocabulary, root, split, name):
        asked.append((groups, vocabulary, root, split, name))
        return _set(name, vocabulary, [0])

    def load(name, root, split):
        loaded.append((name, root, split))
        return _set(name, ["a"], [0, 0])

    monkeypatch.setattr(subgroups, "column_images", columns)
    monkeypatch.setattr(subgroups, "load_image_set", load)
    t = resolve_subgroup_targets(setting, "/data")
    assert t.setting is setting
    assert asked == [(setting.forget, VOCAB, "/data", "test", "target"),
                     (setting.retain, VOCAB, "/data", "test", "retain"), (keep[0].subgroups, VOCAB, "/data", "test",
                                                                          "others")]
    assert [(c.name, images.name) for c, images in t.columns] == [("target", "target"), ("retain", "retain"),
                                                                 ("others", "others")]
    assert loaded == [("cifar10", "/data", "test"), ("caltech101", "/data", "test")]
    assert [d.name for d in t.datasets] == ["cifar10", "caltech101"]
    assert t.database == [images for _, images in t.columns]


def test_missing_other_datasets_are_all_named_with_the_first_sentence_of_their_error(monkeypatch):
    def load(name, root, split):
        if name != "cifar10":
            raise DataError(f"No dataset {name} under /data. Download it first. Or else.")
        return _set(name, ["a"], [0])

    monkeypatch.setattr(subgroups, "column_images", lambda g, v, r, s, n: _set(n, v, [0]))
    monkeypatch.setattr(subgroups, "load_image_set", load)
    with pytest.raises(DataError) as e:
        resolve_subgroup_targets(_setting(other=("food101", "cifar10", "caltech101")), "/data")
    assert str(e.value) == (
        "The data root lacks other dataset(s) the subgroup run measures: food101 (No dataset food101 under /data); "
        "caltech101 (No dataset caltech101 under /data). Add them, or choose others with --other-datasets a,b "
        "(--other-datasets '' for none).")


# ----------------------------------------------------------------------------------------------- accuracies


class _Evaluator:
    """Each image set's top-1 given by hand; records what each evaluation was handed."""

    def __init__(self, top1: dict[str, float]):
        self.top1, self.asked = top1, []

    def evaluate(self, images, templates=None):
        self.asked.append((images.name, None if templates is None else list(templates)))
        return SimpleNamespace(top1=self.top1[images.name])


def test_columns_are_prompted_with_the_settings_template_unless_classified_among_their_own_datasets_classes():
    setting = _setting()
    target = _set("target", VOCAB, [0, 0])
    own = _set("own", ["cat", "plane"], [1, 1, 1], templates=["a {}.", "the {}."])
    other = _set("cifar10", ["x"], [0] * 4)
    t = SubgroupTargets(setting, [(Column("target", "forget", ()), target), (Column("same", "keep", ()), own)],
                        [other])
    ev = _Evaluator({"target": 0.5, "own": 0.25, "cifar10": 0.75})
    got = subgroup_accuracies(ev, t)
    assert got == {"columns": {"target": 0.5, "same": 0.25}, "datasets": {"cifar10": 0.75},
                   "n": {"target": 2, "same": 3, "cifar10": 4}}
    # a dataset is evaluated with its own templates (None: the evaluator reads them from the set)
    assert ev.asked == [("target", ["a {} pic"]), ("own", ["a {}.", "the {}."]), ("cifar10", None)]
    reordered = _set("target", ("car", "flower", "dog"), [0])  # the same names in another order: its own
    assert subgroups._templates(reordered, setting) == ["a photo of a {}."]


# ----------------------------------------------------------------------------------------------- the Score


@pytest.fixture
def cols():
    return SimpleNamespace(columns=[(Column("target", "forget", ()), None), (Column("retain", "keep", ()), None),
                                    (Column("others", "keep", ()), None), (Column("never", "keep", ()), None)])


def test_the_score_pairs_the_target_against_every_other_column_and_dataset_learnt_before(cols):
    before = {"columns": {"target": 0.8, "retain": 0.5, "others": 0.4, "never": 0.0},
              "datasets": {"d": 0.5, "e": 0.0, "f": 0.2}}
    after = {"columns": {"target": 0.2, "retain": 0.6, "others": 0.2, "never": 0.1},
             "datasets": {"d": 0.25, "e": 0.3, "f": 0.3}}
    score, excluded = subgroup_score(cols, before, after)
    # target 1 − 0.2/0.8 = 0.75; retain min(1, 1.2) = 1; others 0.5; d 0.5; f min(1, 1.5) = 1; never, e: BF 0
    assert score == pytest.approx(100 * (0.75 + 1 + 0.5 + 0.5 + 1) / 5, abs=1e-12)
    assert score == pytest.approx(100 * ratio_score((0.8, 0.2), [(0.5, 0.6), (0.4, 0.2), (0.5, 0.25), (0.2, 0.3)]))
    assert excluded == ["never", "e"]


def test_the_target_may_be_any_column_marked_forget(cols):
    cols.columns = [(Column("kept", "keep", ()), None), (Column("gone", "forget", ()), None)]
    before = {"columns": {"kept": 0.5, "gone": 0.5}, "datasets": {}}
    after = {"columns": {"kept": 0.25, "gone": 0.0}, "datasets": {}}
    assert subgroup_score(cols, before, after) == (pytest.approx(100 * (1 + 0.5) / 2), [])


def test_no_score_without_a_target_learnt_before(cols):
    before = {"columns": {"target": 0.0, "retain": 0.5, "others": 0.0, "never": 0.0}, "datasets": {"d": 0.0}}
    after = {"columns": {"target": 0.0, "retain": 0.5, "others": 0.1, "never": 0.1}, "datasets": {"d": 0.1}}
    assert subgroup_score(cols, before, after) == (None, ["target", "others", "never", "d"])
    cols.columns = cols.columns[1:]  # no column to forget
    before["columns"]["target"] = 0.9
    assert subgroup_score(cols, before, after) == (None, ["target", "others", "never", "d"])
    # a target with any accuracy before is scored, however small
    cols.columns.insert(0, (Column("target", "forget", ()), None))
    before["columns"]["target"], after["columns"]["target"] = 1e-9, 0.0
    assert subgroup_score(cols, before, after) == (pytest.approx(100 * (1 + 1) / 2), ["others", "never", "d"])


# ----------------------------------------------------------------------------------------------- retrieval


class _Features:
    """Unit features per image set and one text direction per query, given by hand; records each query."""

    def __init__(self, feats: dict[str, torch.Tensor], text: dict[str, torch.Tensor]):
        self.feats, self.text, self.queries = feats, text, []

    def image_features(self, images):
        return self.feats[images.name]

    def classifier(self, classnames, templates):
        self.queries.append((list(classnames), list(templates)))
        return torch.stack([self.text[c] for c in classnames])


def _retrieval_case(forget=(ROSE,)):
    """Ten images along a half circle (angles 0°..90° in 10° steps, one 180°): the target's 3 (0°, 10°, 80°),
    retain's 4 (20°, 30°, 40°, 180°), others' 3 (50°, 60°, 70°). A query at 0° ranks them by angle."""
    def at(*degrees):
        return torch.tensor([[math.cos(math.radians(d)), math.sin(math.radians(d))] for d in degrees])

    target = _set("target", VOCAB, [0, 0, 0], paths=[Path("t0"), Path("t1"), Path("t2")])
    retain = _set("retain", VOCAB, [0, 0, 0, 0])  # flowers too
    others = _set("others", VOCAB, [1, 1, 2])  # two cars, a dog
    feats = {"target": at(0, 10, 80), "retain": at(20, 30, 40, 180), "others": at(50, 60, 70)}
    text = {"flower": at(0)[0], "rose": at(90)[0], "tulip": at(0)[0]}
    t = SubgroupTargets(_setting(forget=forget), [(Column("target", "forget", ()), target),
                                                  (Column("retain", "keep", ()), retain),
                                                  (Column("others", "keep", ()), others)], [])
    return t, _Features(feats, text)


def test_retrieval_shares_of_the_forgotten_images_and_of_the_querys_label_in_each_top_k():
    t, ev = _retrieval_case()
    r = subgroup_retrieval(ev, t, ks=(1, 3, 5, 10, 12))
    assert list(r) == ["flower", "rose"]  # the coarse label, then the subgroup's own name
    assert ev.queries == [(["flower"], ["a {} pic"]), (["rose"], ["a {} pic"])]
    # "flower" at 0°: rows by angle 0 (t), 10 (t), 20, 30, 40 (r), 50, 60, 70 (o), 80 (t), 180 (r)
    assert r["flower"]["top"] == [0, 1, 3, 4, 5, 7, 8, 9]
    assert r["flower"] == pytest.approx({
        "forget@1": 1.0, "label@1": 1.0, "forget@3": 2 / 3, "label@3": 1.0, "forget@5": 2 / 5, "label@5": 1.0,
        "forget@10": 3 / 10, "label@10": 7 / 10, "forget@12": 3 / 10, "label@12": 7 / 10,  # 10 rows: shares of 10
        "top": [0, 1, 3, 4, 5, 7, 8, 9]})
    # "rose" at 90° (labelled by its coarse label, flower): 80 (t), 70, 60, 50 (o), 40, 30, 20 (r), 10, 0 (t), 180
    assert r["rose"]["top"] == [2, 9, 8, 7, 5, 4, 3, 1]
    assert r["rose"]["forget@1"] == 1.0 and r["rose"]["label@1"] == 1.0
    assert r["rose"]["forget@5"] == pytest.approx(1 / 5) and r["rose"]["label@5"] == pytest.approx(2 / 5)


def test_retrieval_reads_the_top_1_5_and_10_and_the_8_best_rows_by_default():
    t, ev = _retrieval_case()
    r = subgroup_retrieval(ev, t)
    assert RETRIEVAL_KS == (1, 5, 10)
    assert set(r["flower"]) == {"forget@1", "label@1", "forget@5", "label@5", "forget@10", "label@10", "top"}
    assert len(r["flower"]["top"]) == 8
    assert subgroup_retrieval(ev, t, ks=(1,), top=3)["flower"]["top"] == [0, 1, 3]


def test_a_subgroup_without_a_coarse_label_is_queried_by_its_name_and_counts_its_own_name():
    t, ev = _retrieval_case(forget=(Subgroup("flowers", "tulip"),))
    r = subgroup_retrieval(ev, t, ks=(2,))
    assert list(r) == ["tulip"]  # no coarse query; the images are labelled flower/car/dog, none "tulip"
    assert r["tulip"]["forget@2"] == 1.0 and r["tulip"]["label@2"] == 0.0


def test_an_empty_top_k_has_no_forget_share_and_a_zero_label_share():
    t, ev = _retrieval_case()
    r = subgroup_retrieval(ev, t, ks=(0,))
    assert math.isnan(r["flower"]["forget@0"]) and r["flower"]["label@0"] == 0.0


def test_the_pictures_rows_are_the_database_files_in_order():
    t, _ = _retrieval_case()
    assert database_paths(t) == ["t0", "t1", "t2"]  # the other columns have no files


def test_a_database_of_one_image_ranks_that_image():
    t, ev = _retrieval_case()
    t.columns = t.columns[:1]
    t.columns[0][1].labels[:] = [0]  # the target's first image alone
    ev.feats["target"] = ev.feats["target"][:1]
    assert subgroup_retrieval(ev, t, ks=(1, 5))["flower"] == {"forget@1": 1.0, "label@1": 1.0, "forget@5": 1.0,
                                                             "label@5": 1.0, "top": [0]}
