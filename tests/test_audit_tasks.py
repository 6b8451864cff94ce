"""``clipunlearn audit`` on subgroup and concept runs: a tiny subgroup run audited as a class of its
source dataset (with the run's own coarse-label reading beside it), a tiny concept run audited on the
user's photos and on its synthetic images, without an oracle, and the refusals as one-line errors."""
from __future__ import annotations

import json
import shutil

import pytest

from clipunlearn.audit import audit_run
from clipunlearn.audit.attacks import ATTACKS
from clipunlearn.audit.relearning import Attack
from clipunlearn.audit.tasks import CONCEPT_SKIPS, also_named_in, exclude_flags
from clipunlearn.audit.verdict import NOT_RECOVERED, ORDER, RECOVERED, UNDEFINED
from clipunlearn.cli import main
from clipunlearn.data import load_image_set
from clipunlearn.data.subgroups import custom_setting

#: a two-attack relearning grid read after 1 and 2 steps: small enough for the data slice
SMALL = dict(relearning=(Attack.parse("forget-k1 adam tower lr=0.0001"),), relearn_steps=(1, 2))
TINY = dict(method="lip", n_per_class=2, max_epochs=1, generation_max_steps=2, progress=False,
            options={"n_draws": 2, "retain_steps": 2})


def _copy(run, tmp_path, name="run"):
    dst = tmp_path / name
    shutil.copytree(run, dst)
    return dst


def _edit(run, **fields):
    results = json.loads((run / "results.json").read_text())
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(results.get(key), dict):
            results[key].update(value)
        else:
            results[key] = value
    (run / "results.json").write_text(json.dumps(results))


def _fails(capsys, args, message):
    assert main(["audit", *args]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("clipunlearn: error:")]
    assert len(errors) == 1 and message in errors[0], errors


@pytest.fixture(scope="module")
def subgroup_run(data_slice, tmp_path_factory):
    """cifar10 airplane forgotten as a "vehicle" (automobile kept), Lip, on the data slice."""
    from clipunlearn.runs.subgroup import SubgroupSettings, forget_subgroup

    out = tmp_path_factory.mktemp("subgroup") / "run"
    setting = custom_setting("cifar10", ["airplane"], ["automobile"], "vehicle", ["vehicle", "animal", "flower"])
    forget_subgroup(SubgroupSettings(model="mini-rn", setting=setting, out=str(out), data_root=str(data_slice),
                                     other_datasets=[], retrieval=False, **TINY))
    return out


@pytest.fixture(scope="module")
def concept_run(data_slice, tmp_path_factory):
    """"motorbike" forgotten among cifar10's names (not one of them), Lip, checked on the slice's motorbike
    photos, with two photos of each cifar10 class to keep."""
    from clipunlearn.runs.concept import ConceptSettings, forget_concept

    root = tmp_path_factory.mktemp("concept")
    photos, keep = root / "photos", root / "keep"
    photos.mkdir()
    keep.mkdir()
    bikes = load_image_set("caltech101", str(data_slice), "test")
    for i, p in enumerate(p for p, y in zip(bikes.paths, bikes.labels) if y == bikes.class_index("motorbike")):
        shutil.copy(p, photos / f"{i:03d}.jpg")
    cifar = load_image_set("cifar10", str(data_slice), "test")
    for c in range(len(cifar.classnames)):
        for j, p in enumerate([p for p, y in zip(cifar.paths, cifar.labels) if y == c][:2]):
            shutil.copy(p, keep / f"{c}_{j}.jpg")
    out = root / "run"
    forget_concept(ConceptSettings("mini-rn", ["motorbike"], str(out), vocabulary="cifar10", images=str(photos),
                                   retain_images=str(keep), data_root=str(data_slice), **TINY))
    return out


def test_the_verdict_order_is_the_attacks_order_and_the_help_names_the_tasks(capsys):
    assert ORDER == tuple(ATTACKS)
    with pytest.raises(SystemExit):
        main(["audit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "(a class, subgroup or concept run)" in text and "a concept run takes none" in text


def test_a_subgroup_run_is_audited_as_a_class_of_its_dataset(data_slice, subgroup_run, tmp_path, capsys):
    run = _copy(subgroup_run, tmp_path)
    # the run's own model as the "oracle": the same architecture, so accepted
    audit = audit_run(run, oracle=run / "model.safetensors", data_root=str(data_slice), **SMALL)
    assert audit["run"]["task"] == "subgroup"
    assert audit["run"]["dataset"] == "cifar10" and audit["run"]["classes"] == ["airplane"]
    assert [v["attack"] for v in audit["verdict"]] == [*ORDER[:-1], "oracle (class)", "oracle (rest)"]
    assert not any("skipped" in r for name, r in audit["results"].items() if name != "mia")
    r = audit["results"]
    assert r["images"]["n_images"] == 6  # the slice's test airplanes, among cifar10's classes
    assert r["relearning"]["images_used"]["forget-k1"] == 1 and r["probe"]["n_train_target"] == 6
    task = audit["task"]
    assert task["oracle_exclude"] == "--exclude cifar10:airplane" and task["also_named_in"] == {}  # the slice's
    coarse = task["coarse_label"]
    assert coarse["coarse_labels"] == ["vehicle"] and coarse["n_images"] == 6
    results = json.loads((run / "results.json").read_text())
    assert coarse["accuracy"]["original"] == pytest.approx(results["target_before"])  # the run's measure, recomputed
    assert coarse["accuracy"]["forgotten"] == pytest.approx(results["target_after"])
    assert coarse["accuracy"]["oracle"] == coarse["accuracy"]["forgotten"]
    assert r["oracle"]["per_dataset"] == {}  # the run measured no other dataset
    md = (run / "audit" / "audit.md").read_text()
    assert "airplane audited as a class of cifar10" in md and "--exclude cifar10:airplane" in md
    other = tmp_path / "vit.safetensors"
    from clipunlearn.models import load_clip

    load_clip("mini-vit", pretrained="none").save(other)
    _fails(capsys, [str(run), "--oracle", str(other), "--overwrite", "--data-root", str(data_slice)],
           "--exclude cifar10:airplane --out oracle.safetensors")


def test_an_exclude_oracle_leaves_out_the_subgroups_train_images_and_its_name_elsewhere(shared_data):
    """``zoo train --exclude cifar10:airplane`` drops every train image of a class named airplane: cifar10's
    (the subgroup's train images, exactly) and caltech101's, the cross-domain setting's same-concept column."""
    from clipunlearn.data.subgroups import column_images, get_setting
    from clipunlearn.zoo.train import excluded_classes

    root = str(shared_data)
    names = excluded_classes(["cifar10:airplane"], root)
    setting = get_setting("cross-domain-airplane")
    subgroup = column_images(setting.forget, setting.vocabulary, root, "train", "forget")
    cifar = load_image_set("cifar10", root, "train")
    left_out = [p for p, y in zip(cifar.paths, cifar.labels) if cifar.classnames[y] in names]
    assert sorted(left_out) == sorted(subgroup.paths) and len(left_out) == 200
    assert also_named_in("cifar10", ["airplane"], root) == {"caltech101": ["airplane"]}
    assert also_named_in("oxford_flowers", ["king protea"], root) == {}
    assert exclude_flags("oxford_flowers", ["king protea"]) == '--exclude "oxford_flowers:king protea"'


def test_a_style_subgroup_run_is_refused(subgroup_run, tmp_path, capsys):
    run = _copy(subgroup_run, tmp_path)
    results = json.loads((run / "results.json").read_text())
    _edit(run, setting={"prepare": "fine-tune-styles",
                        "forget": [{**results["setting"]["forget"][0], "style": "sketch"}]})
    _fails(capsys, [str(run)], "is a style subgroup run")


def test_a_concept_run_is_audited_on_the_users_photos_without_an_oracle(data_slice, concept_run, tmp_path, capsys):
    run = _copy(concept_run, tmp_path)
    assert main(["audit", str(run), "--data-root", str(data_slice), "--relearn-steps", "1", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Concept run: 'motorbike' among 4 names" in out and "the user's 6 photos of it and 6 retain photos" in out
    audit = json.loads((run / "audit" / "audit.json").read_text())
    v = {line["attack"]: line for line in audit["verdict"]}
    assert list(v) == list(ORDER[:-1])  # no oracle lines
    for name, why in CONCEPT_SKIPS.items():
        assert audit["results"][name] == {"skipped": why}
        assert v[name]["verdict"] == UNDEFINED and v[name]["threshold"] == why
    r = audit["results"]
    # each verdict is its documented rule applied to the attack's own figures (Thresholds: half of before)
    others = [f["accuracy"]["forgotten"] for f in r["prompts"]["families"] if f["family"] != "run template"]
    assert r["prompts"]["best_after"]["accuracy"]["forgotten"] == max(others)
    assert r["images"]["best_after"]["accuracy"]["forgotten"] == max(
        r["images"]["accuracy"][a]["forgotten"] for a in r["images"]["augmentations"])
    for name in ("prompts", "images"):
        before, best = r[name]["before"], r[name]["best_after"]["accuracy"]["forgotten"]
        expected = UNDEFINED if not before > 0 else RECOVERED if best > 0.5 * before else NOT_RECOVERED
        assert v[name]["verdict"] == expected, name
    results = json.loads((run / "results.json").read_text())
    run_tpl = [f for f in r["prompts"]["families"] if f["family"] == "run template"][0]["accuracy"]
    assert run_tpl["original"] == pytest.approx(results["target_before"])  # cifar10's one template: the run's measure
    assert r["images"]["n_images"] == 6 and r["images"]["retrieval"]["chance"] == pytest.approx(5 / 11)
    # the retain photos are labelled by the original's top-1 among the kept names (none of them is called a motorbike)
    assert r["weights"]["path"]["acc_others"][0] == 1.0 and r["weights"]["path"]["n_others"] == 6
    task = audit["task"]
    assert task["images"] == "photos" and task["retain_images"] == 6 and not task["seen_by_method"]
    md = (run / "audit" / "audit.md").read_text()
    assert "## Attacks that could not run" in md and "- relearning: a concept run has no train split" in md
    assert sorted(p.name for p in (run / "audit").iterdir()) == ["audit.json", "audit.md", "prompts.png"]
    # refusals, one line each: an oracle, the oracle attack
    _fails(capsys, [str(run), "--overwrite", "--oracle", str(run / "model.safetensors")],
           "A concept run is audited without an oracle (a concept is a name")
    _fails(capsys, [str(run), "--overwrite", "--attacks", "prompts,oracle"], "Leave 'oracle' out of --attacks")


def test_a_concept_run_without_photos_is_audited_on_its_synthetic_images(data_slice, concept_run, tmp_path):
    run = _copy(concept_run, tmp_path)
    _edit(run, settings={"images": None, "retain_images": None})  # as if run without --images/--retain-images
    audit = audit_run(run, attacks="prompts,images,weights,probe", data_root=str(data_slice))
    task, r = audit["task"], audit["results"]
    assert task["images"] == "synthetic" and task["n_images"] == 2 and task["seen_by_method"]
    assert r["prompts"]["before"] == 1.0  # made by the original to be called the concept
    assert r["images"]["retrieval"] is None  # every test image is of the concept
    assert r["weights"]["barrier_others"] is None and r["weights"]["path"]["loss_others"] == []
    assert r["probe"] == {"skipped": CONCEPT_SKIPS["probe"]}
    md = (run / "audit" / "audit.md").read_text()
    assert "no retrieval" in md and "the 2 synthetic images the run forgot with (the method trained on them)" in md
    # no photos and no synthetic images: nothing to attack with prompts or augmentations
    (run / "synthetic.safetensors").unlink()
    _edit(run, synthetic=None)
    audit = audit_run(run, attacks="prompts,images,weights", data_root=str(data_slice), overwrite=True)
    v = {line["attack"]: line for line in audit["verdict"]}
    assert v["prompts"]["verdict"] == v["images"]["verdict"] == UNDEFINED
    assert "no image of the concept" in v["images"]["threshold"]
    assert audit["results"]["weights"]["l2"] > 0 and audit["results"]["weights"]["path"]["loss_target"] == []


def test_a_malformed_concept_run_is_a_one_line_error(concept_run, tmp_path, capsys):
    run = _copy(concept_run, tmp_path)
    _edit(run, vocabulary=None)
    _fails(capsys, [str(run)], "is a concept run whose results.json lacks 'concepts' or 'vocabulary'")
    _edit(run, vocabulary={"name": "cifar10", "names": 7})
    _fails(capsys, [str(run)], "has 3 names, the run's had 7")
