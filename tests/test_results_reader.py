"""The typed reader of results.json field by field: every field of a written file lands in its place with
its value, every optional one has its documented default, and each error names the problem and the fix
(issue 35: the mutation survivors of runs/results.py)."""
from __future__ import annotations

import json
import os

import pytest

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.runs.results import SCHEMA_VERSION, BeforeAfter, parse_results, read_results


def _full() -> dict:
    """A schema-2 results.json with every field the reader knows, each value distinct."""
    return {
        "schema_version": 2, "method": "lip", "preset": "paper", "ablation": "no-retain",
        "model": {"name": "mini-rn"}, "dataset": "caltech101", "classes": ["motorbike", "leopard"],
        "target_before": 0.91, "target_after": 0.12,
        "per_target": {"motorbike": {"before": 0.93, "after": 0.14}, "leopard": {"before": 0.89}},
        "other_classes_before": 0.81, "other_classes_after": 0.72,
        "datasets": {"cifar10": {"before": 0.61, "after": 0.53}, "food101": None},
        "avg_score": 0.173, "avg_score_excluded": ["stanford_cars"],
        "synthetic_acc_before": 0.97, "synthetic_acc_after": 0.05,
        "data_seen": {"forget": {"images": 12}}, "steps": [{"epoch": 0}, {"epoch": 1}],
        "stopped_because": "target reached", "kept_any_step": 1, "changed_tensors": ["visual.proj"],
        "epochs": "3", "seconds": {"forget": 4.5}, "retrieval": {"ks": [1]}, "template_change": {"target": 0.2},
        "error_analysis": {"pooled": {}}, "task": "concept", "ratio_score": 0.64,
        "settings": {"seed": "7", "run_spec": {"run_id": "lip-caltech101-s7"}},
    }


def test_every_field_lands_in_its_place():
    raw = _full()
    r = parse_results(raw)
    assert (r.schema_version, r.method, r.preset, r.ablation) == (2, "lip", "paper", "no-retain")
    assert (r.model, r.dataset, r.classes) == ({"name": "mini-rn"}, "caltech101", ["motorbike", "leopard"])
    assert r.target == BeforeAfter(0.91, 0.12) and r.other_classes == BeforeAfter(0.81, 0.72)
    assert r.per_target == {"motorbike": BeforeAfter(0.93, 0.14), "leopard": BeforeAfter(0.89, None)}
    assert r.datasets == {"cifar10": BeforeAfter(0.61, 0.53), "food101": BeforeAfter(None, None)}
    assert (r.avg_score, r.avg_score_excluded) == (0.173, ["stanford_cars"])
    assert r.synthetic_acc == BeforeAfter(0.97, 0.05)
    assert (r.data_seen, r.steps, r.stopped_because) == ({"forget": {"images": 12}}, [{"epoch": 0}, {"epoch": 1}],
                                                         "target reached")
    assert r.kept_any_step is True and r.changed_tensors == ["visual.proj"]
    assert r.epochs == 3 and isinstance(r.epochs, int) and r.seconds == {"forget": 4.5}
    assert (r.retrieval, r.template_change, r.error_analysis) == ({"ks": [1]}, {"target": 0.2}, {"pooled": {}})
    assert (r.kind, r.run_id, r.seed, r.ratio_score) == ("concept", "lip-caltech101-s7", 7, 0.64)
    assert r.raw is raw
    assert [(n, ba) for n, ba in r.columns] == [
        ("target", BeforeAfter(0.91, 0.12)), ("other_classes", BeforeAfter(0.81, 0.72)),
        ("cifar10", BeforeAfter(0.61, 0.53)), ("food101", BeforeAfter(None, None))]


def test_a_first_release_file_reads_with_the_documented_defaults():
    raw = {k: _full()[k] for k in ("method", "model", "dataset", "classes", "target_before", "target_after",
                                  "other_classes_before", "other_classes_after")}
    r = parse_results(raw)
    assert (r.schema_version, r.preset, r.ablation) == (1, "", None)
    assert (r.per_target, r.datasets, r.avg_score, r.avg_score_excluded) == ({}, {}, None, [])
    assert r.synthetic_acc == BeforeAfter(None, None)
    assert (r.data_seen, r.steps, r.stopped_because, r.kept_any_step) == ({}, [], "", False)
    assert (r.changed_tensors, r.epochs, r.seconds) == ([], 0, {})
    assert (r.retrieval, r.template_change, r.error_analysis) == (None, None, None)
    assert (r.kind, r.run_id, r.seed, r.ratio_score) == ("class", "", 0, None)
    assert [n for n, _ in r.columns] == ["target", "other_classes"]


def test_empty_settings_read_as_no_run_id_and_seed_0():
    r = parse_results({**_full(), "settings": {"seed": None, "run_spec": None}, "task": None})
    assert (r.run_id, r.seed, r.kind) == ("", 0, "class")


def test_change_is_after_minus_before_and_none_without_both():
    assert BeforeAfter(0.75, 0.5).change == -0.25
    assert BeforeAfter(None, 0.5).change is None and BeforeAfter(0.5, None).change is None


def test_a_newer_schema_is_refused_naming_the_upgrade():
    with pytest.raises(ClipUnlearnError) as info:
        parse_results({**_full(), "schema_version": SCHEMA_VERSION + 1}, "runs/x/results.json")
    assert str(info.value) == (f"runs/x/results.json has schema version {SCHEMA_VERSION + 1}, newer than this "
                               f"clipunlearn reads ({SCHEMA_VERSION}). Upgrade clipunlearn.")
    assert parse_results({**_full(), "schema_version": SCHEMA_VERSION}).schema_version == SCHEMA_VERSION


@pytest.mark.parametrize("missing", ["method", "model", "dataset", "classes", "target_before", "target_after",
                                     "other_classes_before", "other_classes_after"])
def test_a_missing_field_is_named_with_the_fix(missing):
    raw = _full()
    del raw[missing]
    with pytest.raises(ClipUnlearnError) as info:
        parse_results(raw)
    assert str(info.value) == (f"results.json lacks the field {missing!r}: it was not written by clipunlearn "
                               "forget, or was edited. Re-run the forget command.")


def test_read_results_takes_the_folder_or_the_file(tmp_path):
    (tmp_path / "results.json").write_text(json.dumps(_full()), encoding="utf-8")
    assert read_results(tmp_path).method == "lip"
    assert read_results(tmp_path / "results.json").run_id == "lip-caltech101-s7"
    assert read_results(str(tmp_path)).seed == 7


def test_read_results_errors_name_the_folder_and_the_fix(tmp_path):
    fix = " is not a run folder (no results.json). Pass a folder written by `clipunlearn forget`."
    with pytest.raises(ClipUnlearnError) as info:
        read_results(tmp_path)  # a folder without results.json
    assert str(info.value) == repr(str(tmp_path)) + fix
    with pytest.raises(ClipUnlearnError) as info:
        read_results(tmp_path / "nowhere")  # a path that does not exist
    assert str(info.value) == repr(str(tmp_path / "nowhere")) + fix
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "pipe")
        with pytest.raises(ClipUnlearnError) as info:
            read_results(tmp_path / "pipe")  # there, but neither a folder nor a file: its folder is named
        assert str(info.value) == repr(str(tmp_path)) + fix
    (tmp_path / "results.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(ClipUnlearnError) as info:
        read_results(tmp_path)
    message = str(info.value)
    assert message.startswith(f"{str(tmp_path / 'results.json')!r} cannot be read as JSON (Expecting ")
    assert message.endswith("). Re-run the forget command.")
