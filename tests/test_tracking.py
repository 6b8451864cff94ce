"""--track tensorboard|mlflow[:URI]: a forget run, a suite and a zoo training logged to local stores and
read back (MLflow's SQLite store through MlflowClient, TensorBoard's event files through its
EventAccumulator); bad flags, unwritable folders and missing libraries fail in one line before the run;
a tracker that fails while logging leaves the run complete."""
from __future__ import annotations

import json
import sys

import pytest

from clipunlearn.cli import main
from clipunlearn.errors import ClipUnlearnError
from clipunlearn.tracking import parse_track
from clipunlearn.tracking.records import trace_series
from conftest import AMNS_ENTRY, LIP_ENTRY, SMALL_SUITE

pytest.importorskip("mlflow", reason='the tracking extra: pip install -e ".[tracking]"')
pytest.importorskip("tensorboard", reason='the tracking extra: pip install -e ".[tracking]"')

TINY = ["--model", "mini-rn", "--pretrained", "none"]


def _forget(data_slice, out, *extra: str) -> list[str]:
    return ["forget", *TINY, "--dataset", "caltech101", "--classes", "leopard", "--data-root", str(data_slice),
            "--out", str(out), "-n", "2", "--max-steps", "2", "--max-epochs", "2", "--quiet", *extra]


def _mlflow_runs(uri: str, experiment: str):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} in {uri}"
    return client, client.search_runs([found.experiment_id])


def _scalars(folder) -> dict[str, tuple[list[int], list[float]]]:
    """Each scalar's steps and values (float32, as TensorBoard keeps them)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    events.Reload()
    return {tag: ([e.step for e in events.Scalars(tag)], [e.value for e in events.Scalars(tag)])
            for tag in events.Tags()["scalars"]}


def _same(points: tuple[list[int], list[float]], steps: list[int], values: list[float]) -> bool:
    return points[0] == steps and points[1] == pytest.approx(values, rel=1e-6, abs=1e-6)


@pytest.fixture(scope="module")
def tracked_run(data_slice, tmp_path_factory):
    """One forget run logged to MLflow and TensorBoard at their default places (inside the run folder)."""
    out = tmp_path_factory.mktemp("tracked") / "leopard"
    assert main(_forget(data_slice, out, "--other-datasets", "cifar10", "--track", "mlflow",
                        "--track", "tensorboard")) == 0
    return out


def test_parse_track_values():
    assert parse_track("mlflow") == parse_track("mlflow:")
    assert parse_track("mlflow").target is None
    assert parse_track("mlflow:sqlite:///runs/m.db").target == "sqlite:///runs/m.db"
    assert parse_track("tensorboard:tb/logs").target == "tb/logs"
    with pytest.raises(ClipUnlearnError, match="unknown tracker 'wandb'.*tensorboard.*mlflow"):
        parse_track("wandb")


def test_bad_flags_and_unwritable_folders_fail_in_one_line_before_the_run(data_slice, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    for value, says in (("wandb", "unknown tracker 'wandb'"),
                        (f"mlflow:{blocker}/store", "cannot write to"),
                        (f"mlflow:sqlite:///{blocker}/m.db", "cannot write to"),
                        (f"tensorboard:{blocker}/tb", "cannot write to")):
        assert main(_forget(data_slice, tmp_path / "run", "--track", value)) == 2
        err = capsys.readouterr().err
        assert says in err and err.count("\n") == 1, err
    assert not (tmp_path / "run").exists()  # nothing ran
    assert main(["benchmark", "--suite", "quick", "--out", str(tmp_path / "s"), "--track", f"mlflow:{blocker}/x",
                 "--data-root", str(data_slice)]) == 2
    assert "cannot write to" in capsys.readouterr().err and not (tmp_path / "s").exists()


@pytest.mark.parametrize("module, value", [("mlflow", "mlflow"), ("sqlalchemy", "mlflow"),
                                           ("tensorboard", "tensorboard")])
def test_a_missing_library_gives_the_install_hint(data_slice, tmp_path, capsys, monkeypatch, module, value):
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if not installed
    assert main(_forget(data_slice, tmp_path / "run", "--track", value)) == 2
    err = capsys.readouterr().err
    assert f"needs the {module} package" in err and 'pip install -e ".[tracking]"' in err and err.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_forget_run_is_read_back_from_mlflow(tracked_run):
    results = json.loads((tracked_run / "results.json").read_text())
    client, runs = _mlflow_runs(f"sqlite:///{tracked_run / 'mlflow' / 'mlflow.db'}", "clipunlearn-forget")
    assert len(runs) == 1 and runs[0].info.run_name == "leopard" and runs[0].info.status == "FINISHED"
    run = runs[0]
    params = run.data.params
    assert {k: params[k] for k in ("method", "preset", "model", "dataset", "classes", "seed", "n_per_class")} == {
        "method": "lip", "preset": "default", "model": "mini-rn", "dataset": "caltech101", "classes": "leopard",
        "seed": "0", "n_per_class": "2"}
    assert params["config.lr"] == str(results["method_config"]["lr"])
    # the trace: one point per step, in order
    history = sorted(client.get_metric_history(run.info.run_id, "trace/loss"), key=lambda m: m.step)
    losses = [(i, s["loss"]) for i, s in enumerate(results["steps"]) if "loss" in s]
    assert len(losses) == 2 and [(m.step, m.value) for m in history] == losses
    kept = client.get_metric_history(run.info.run_id, "trace/kept")
    assert [m.value for m in sorted(kept, key=lambda m: m.step)] == [float(s["kept"]) for s in results["steps"][1:]]
    # the figures before and after
    metrics = run.data.metrics
    assert metrics["target_before"] == pytest.approx(results["target_before"])
    assert metrics["target_after"] == pytest.approx(results["target_after"])
    assert metrics["other_classes_after"] == pytest.approx(results["other_classes_after"])
    assert metrics["other_cifar10_after"] == pytest.approx(results["datasets"]["cifar10"]["after"])
    assert "n_per_class" not in metrics  # a setting of the run (a param), not a figure it measured
    # the report and plots
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"report.md", "log.txt", "synthetic.png", "selected_tensors.png"} <= artifacts


def test_a_forget_run_is_read_back_from_tensorboard(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    results = json.loads((tracked_run / "results.json").read_text())
    folder = tracked_run / "tensorboard" / "leopard"
    scalars = _scalars(folder)
    losses = [(i, s["loss"]) for i, s in enumerate(results["steps"]) if "loss" in s]
    assert len(losses) == 2 and _same(scalars["trace/loss"], [i for i, _ in losses], [v for _, v in losses])
    assert _same(scalars["final/target_after"], [0], [results["target_after"]])
    assert _same(scalars["final/other_cifar10_before"], [0], [results["datasets"]["cifar10"]["before"]])
    events = EventAccumulator(str(folder), size_guidance={"images": 0, "tensors": 0})
    events.Reload()
    assert {"synthetic", "selected_tensors"} <= set(events.Tags()["images"])
    report = events.Tensors("report/text_summary")[0].tensor_proto.string_val[0].decode()
    assert report == (tracked_run / "report.md").read_text()


def test_a_tracker_that_fails_leaves_the_run_complete(data_slice, tmp_path, capsys, monkeypatch):
    from clipunlearn.tracking.tensorboard import TensorBoardTracker

    def broken(self, run):
        raise OSError("disk full")

    monkeypatch.setattr(TensorBoardTracker, "log", broken)
    out = tmp_path / "run"
    assert main(_forget(data_slice, out, "--other-datasets", "", "--no-retrieval", "--no-template-change",
                        "--track", "tensorboard")) == 0
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if "tracking:" in line]
    assert len(warnings) == 1 and "disk full" in warnings[0] and "complete" in warnings[0]
    assert (out / "results.json").is_file() and (out / "report.md").is_file()


def test_the_trace_of_a_multi_phase_method_runs_on_across_phases():
    steps = [{"epoch": 0, "phase": "forget", "acc": 0.9, "kept": None},
             {"epoch": 1, "phase": "forget", "loss": 2.0, "acc": 0.2, "kept": True, "selected": ["a", "b"]},
             {"epoch": 0, "phase": "remind (EMA)", "acc": 0.5, "kept": None},
             {"epoch": 1, "phase": "remind (EMA)", "loss": 1.0, "acc": 0.6, "kept": False, "note": "text"}]
    series = trace_series(steps)
    assert series["trace/forget/acc"] == [(0, 0.9), (1, 0.2)]
    assert series["trace/remind_EMA/acc"] == [(2, 0.5), (3, 0.6)]
    assert series["trace/forget/kept"] == [(1, 1.0)] and series["trace/remind_EMA/kept"] == [(3, 0.0)]
    assert series["trace/forget/selected_tensors"] == [(1, 2.0)]
    assert not any("note" in k or "phase" in k.split("/")[-1] for k in series)


@pytest.mark.slow
def test_a_suite_is_one_experiment_with_a_run_per_cell(data_slice, tmp_path, capsys):
    suite = tmp_path / "small.toml"
    suite.write_text(SMALL_SUITE.format(methods=LIP_ENTRY + AMNS_ENTRY))
    out, db = tmp_path / "out", tmp_path / "store" / "m.db"
    assert main(["benchmark", "--suite", str(suite), "--out", str(out), "--data-root", str(data_slice),
                 "--track", f"mlflow:sqlite:///{db}", "--track", "mlflow", "--track", "tensorboard"]) == 0
    assert "logged 2 cells to" in capsys.readouterr().out
    client, runs = _mlflow_runs(f"sqlite:///{db}", "small")
    cells = {d.name: json.loads((d / "results.json").read_text()) for d in (out / "runs").iterdir()
             if not d.name.startswith(".")}
    assert len(cells) == 2 and sorted(r.info.run_name for r in runs) == sorted(cells)
    for run in runs:
        results = cells[run.info.run_name]
        assert run.data.params["method"] == results["method"] and run.data.params["run_id"] == run.info.run_name
        assert run.data.metrics["target_after"] == pytest.approx(results["target_after"])
        assert "report.md" in {a.path for a in client.list_artifacts(run.info.run_id)}
    assert (db.parent / "artifacts").is_dir()  # a SQLite store's artifacts beside it, not in the working folder
    # the default stores, inside the suite's folder: one run per cell, and no run more to its readers
    from clipunlearn.runs.view import runs_view

    assert len(_mlflow_runs(f"sqlite:///{out / 'mlflow' / 'mlflow.db'}", "small")[1]) == 2
    assert sorted(p.name for p in (out / "tensorboard").iterdir()) == sorted(cells)
    assert list(out.glob("mlflow/artifacts/**/report.md")) and len(runs_view(out)) == 2


@pytest.mark.slow
def test_a_zoo_training_logs_its_loss_per_epoch_and_test_top1(data_slice, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["zoo", "train", "mini-rn", "--data-root", str(data_slice), "--datasets", "cifar10", "--epochs", "2",
                 "--out", str(out), "--track", f"tensorboard:{tmp_path / 'tb'}"]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    scalars = _scalars(tmp_path / "tb" / "m")
    assert _same(scalars["train/loss"], [1, 2], record["epoch_loss"])
    for name, top1 in record["test_top1"].items():
        assert _same(scalars[f"final/test_top1/{name}"], [0], [top1])
