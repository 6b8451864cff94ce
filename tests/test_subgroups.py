"""Subgroup requests (CVPR'25): the shipped settings, their images, the ratio Score, bad input, and the
subgroup pipeline end to end."""
from __future__ import annotations

import json
from dataclasses import dataclass, replace

import pytest

from clipunlearn.cli import main
from clipunlearn.data import load_image_set
from clipunlearn.data.subgroups import (
    Column,
    Subgroup,
    SubgroupSetting,
    check_setting,
    column_images,
    custom_setting,
    get_setting,
    setting_names,
)
from clipunlearn.errors import (
    ClipUnlearnError,
    DataError,
    RunExistsError,
    UnknownNameError,
)
from clipunlearn.evaluation.subgroups import subgroup_score


def test_shipped_settings_are_built_as_the_paper_describes(shared_data):
    names = setting_names()
    assert {"in-domain-flower", "in-domain-car", "in-domain-person", "in-domain-dog", "in-domain-food",
            "cross-domain-airplane", "cross-domain-truck"} <= set(names)
    superclasses = [n for n in names if n.startswith("in-domain-")]
    for name in names:
        s = get_setting(name)
        check_setting(s, str(shared_data))
        if s.kind == "in-domain":
            # a superclass of four subgroups: one forgotten, three retained, all under one coarse label
            assert len(s.forget) == 1 and len(s.retain) == 3
            assert {g.coarse for g in (*s.forget, *s.retain)} == {name.removeprefix("in-domain-")}
            others = s.keep[0].subgroups
            # the other superclasses' four subgroups each
            assert len(others) == 4 * (len(superclasses) - 1) and not {g.dataset for g in others} & set(s.datasets)
            # the default other datasets, less the request's own (in-domain-food's food101)
            assert s.measured_datasets() == [d for d in ("caltech101", "cifar10", "food101", "imagenette")
                                             if d not in s.datasets]
        elif s.kind == "style":  # checked in test_styles.py
            assert len(s.forget) == 1 and len(s.retain) == 2
        else:
            # a class of CIFAR-10 forgotten, the other nine retained, the concept measured elsewhere
            assert s.kind == "cross-domain" and len(s.forget) == 1 and len(s.retain) == 9
            assert s.forget[0].coarse == s.forget[0].name and s.coarse_labels == [s.forget[0].name]
            assert len(s.vocabulary) == 10 and all(g.coarse == g.name for g in s.retain)
            (same,) = s.keep
            assert same.subgroups[0].coarse is None  # classified among its own dataset's classes
            assert "cifar10" not in s.measured_datasets()


def test_column_images_are_labelled_by_coarse_label(shared_data):
    s = get_setting("in-domain-flower")
    images = column_images(s.retain, s.vocabulary, str(shared_data), "test", "retain")
    flowers = load_image_set("oxford_flowers", str(shared_data), "test")
    expected = sum(flowers.labels.count(flowers.class_index(g.name)) for g in s.retain)
    assert len(images) == expected > 0
    assert set(images.labels) == {list(s.vocabulary).index("flower")}
    assert images.classnames == list(s.vocabulary)
    same = get_setting("cross-domain-airplane").keep[0]
    own = column_images(same.subgroups, (), str(shared_data), "test", same.name)
    assert own.classnames == load_image_set("caltech101", str(shared_data), "test").classnames
    assert set(own.labels) == {own.classnames.index("airplane")}


def test_bad_subgroup_requests_fail_with_the_fix(data_slice):
    root = str(data_slice)
    with pytest.raises(UnknownNameError, match="Did you mean 'airplane'"):
        check_setting(custom_setting("cifar10", ["airplan"], ["bird"], "vehicle"), root)
    with pytest.raises(DataError, match="empty retain set"):
        check_setting(custom_setting("cifar10", ["airplane"], [], "vehicle"), root)
    with pytest.raises(DataError, match="both forgotten and retained"):
        check_setting(custom_setting("cifar10", ["airplane"], ["airplane", "bird"], "vehicle"), root)
    with pytest.raises(UnknownNameError, match="Did you mean 'in-domain-flower'"):
        get_setting("in-domain-flowers")
    bad = SubgroupSetting("x", "custom", ("a",), (Subgroup("cifar10", "airplane", "b"),),
                          (Subgroup("cifar10", "bird", "a"),))
    with pytest.raises(DataError, match="not in the vocabulary"):
        check_setting(bad, root)


def test_cli_subgroup_flags_are_checked(data_slice, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(["forget", "--model", "mini-rn", "--setting", "in-domain-flower", "--forget-subgroup", "x",
                 "--out", out]) == 2
    assert "--setting names a whole request" in capsys.readouterr().err
    assert main(["forget", "--model", "mini-rn", "--dataset", "cifar10", "--forget-subgroup", "airplane",
                 "--out", out]) == 2
    err = capsys.readouterr().err
    assert "--retain-subgroups, --coarse-label" in err and err.count("\n") == 1
    assert main(["forget", "--model", "mini-rn", "--out", out]) == 2
    assert "needs --dataset and --classes" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_bad_method_setting_of_a_subgroup_run_is_refused_before_the_model_loads(shared_data, tmp_path, capsys,
                                                                                 monkeypatch):
    from clipunlearn.runs import subgroup

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(subgroup, "load_clip", no_model)
    for option, message in (("soup_calibration=all", "Unknown soup_calibration 'all'"),
                            ("remind_negatives=-2", "remind_negatives is a loss weight"),
                            ("fisher_unit=row", "Unknown fisher_unit 'row'")):
        assert main(["forget", "--model", "mini-rn", "--setting", "in-domain-car", "--data-root", str(shared_data),
                     "--out", str(tmp_path / "run"), "--set", option]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


@dataclass
class _Targets:  # the part of SubgroupTargets that the score reads
    columns: list


def test_ratio_score_over_columns_against_a_hand_computation():
    cols = [(Column("target", "forget", ()), None), (Column("retain", "keep", ()), None),
            (Column("others", "keep", ()), None), (Column("never", "keep", ()), None)]
    before = {"columns": {"target": 0.8, "retain": 0.5, "others": 0.4, "never": 0.0}, "datasets": {"d": 0.5}}
    after = {"columns": {"target": 0.2, "retain": 0.6, "others": 0.2, "never": 0.1}, "datasets": {"d": 0.25}}
    score, excluded = subgroup_score(_Targets(cols), before, after)
    # target 1 - 0.2/0.8 = 0.75; retain capped at 1; others 0.5; d 0.5; "never" left out (BF 0)
    assert score == pytest.approx(100 * (0.75 + 1 + 0.5 + 0.5) / 4)
    assert excluded == ["never"]
    before["columns"]["target"] = 0.0
    assert subgroup_score(_Targets(cols), before, after)[0] is None


SLICE_SETTING = dict(dataset="cifar10", forget=["airplane"], retain=["automobile"], coarse_label="vehicle",
                     vocabulary=["vehicle", "animal", "flower"])


@pytest.fixture(scope="module")
def subgroup_run(data_slice, tmp_path_factory):
    """A subgroup run of amns-retain (one epoch) on the data slice: (settings, results, folder)."""
    from clipunlearn.runs.subgroup import SubgroupSettings, forget_subgroup

    out = tmp_path_factory.mktemp("subgroup") / "run"
    s = SubgroupSettings(model="mini-rn", setting=custom_setting(**SLICE_SETTING), out=str(out),
                         data_root=str(data_slice), method="amns-retain", max_epochs=1, progress=False,
                         other_datasets=["caltech101"])
    return s, forget_subgroup(s), out


def test_subgroup_run_end_to_end(subgroup_run, data_slice, tmp_path):
    from clipunlearn.runs import read_results
    from clipunlearn.runs.subgroup import SubgroupSettings, forget_subgroup

    s, r, run = subgroup_run
    setting = custom_setting(**SLICE_SETTING)
    assert r["task"] == "subgroup" and r["setting"]["other_datasets"] == ["caltech101"]
    assert list(r["columns"]) == ["target", "retain"]
    assert r["columns"]["target"]["n"] == 6 and r["columns"]["retain"]["n"] == 6  # the slice's test images
    # the method saw the subgroups' train images, labelled by the coarse label
    assert r["data_seen"]["real_forget"]["n"] == 6 and r["data_seen"]["real_retain"]["n"] == 6
    assert r["data_seen"]["real_forget"]["per_subgroup"] == {"airplane": 6}
    assert set(r["retrieval"]["before"]) == {"vehicle", "airplane"}
    assert len(r["retrieval"]["database"]) == 12
    assert {"results.json", "model.safetensors", "report.md", "retrieval.png", "log.txt"} <= {p.name for p in run.iterdir()}
    assert "Score" in (run / "report.md").read_text()
    rr = read_results(run)  # the one reader reads subgroup runs too
    assert rr.classes == ["airplane"] and rr.target.before == r["columns"]["target"]["before"]
    assert json.loads((run / "results.json").read_text())["method"] == "amns-retain"
    with pytest.raises(RunExistsError):
        forget_subgroup(s)
    with pytest.raises(ClipUnlearnError, match="--other-datasets"):
        forget_subgroup(SubgroupSettings(model="mini-rn", setting=setting, out=str(tmp_path / "r2"),
                                         data_root=str(data_slice), method="amns-retain", progress=False))
    assert not (tmp_path / "r2").exists()


def test_benchmark_report_reads_subgroup_runs(subgroup_run):
    from clipunlearn.benchmark.report import columns_for, frame
    from clipunlearn.runs import read_results

    _, r, run = subgroup_run
    df = frame([read_results(run)])
    assert df.loc[0, "Score"] == pytest.approx(r["ratio_score"])
    assert df.loc[0, "retain BF"] == r["columns"]["retain"]["before"] and "other classes BF" not in df
    shown = columns_for("subgroup", df)
    assert {"target BF", "target AF", "retain AF", "caltech101 AF", "Score"} <= set(shown)
    assert {"forget@10 by coarse label BF", "forget@10 by subgroup name AF"} <= set(shown)


def test_suites_take_subgroup_tables(tmp_path, shared_data):
    from clipunlearn.benchmark import load_suite
    from clipunlearn.benchmark.suite import check_suite

    cvpr = load_suite("cvpr")
    check_suite(cvpr, str(shared_data))
    cells = cvpr.table_cells(cvpr.table("table1"), "mini-rn")
    assert len(cells) == 8 * 5 * 3  # methods (forget-remind-restore twice: anchored, default) × settings (flower, car, person, dog, food) × seeds
    spec = cells[0].spec
    assert spec.subgroup == "in-domain-flower" and spec.dataset == "in-domain-flower"
    assert spec.classes == ("king protea",) and not spec.template_change
    assert "subgroup" not in replace(spec, subgroup=None).key()  # class cells keep their run ids
    header = 'name = "s"\nmodels = ["mini-rn"]\n[[tables]]\nname = "t"\nshow = "subgroup"\n' \
             'methods = [{ method = "ga" }]\n'
    bad = tmp_path / "bad.toml"
    bad.write_text(header + 'subgroups = ["in-domain-flowers"]\n')
    with pytest.raises(ClipUnlearnError, match="Did you mean 'in-domain-flower'"):
        check_suite(load_suite(str(bad)), str(shared_data))
    bad.write_text(header + 'subgroups = ["in-domain-flower"]\ndatasets = ["caltech101"]\n')
    with pytest.raises(ClipUnlearnError, match="mixes subgroup settings with class targets"):
        load_suite(str(bad))
