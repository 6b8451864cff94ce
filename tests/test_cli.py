"""The CLI verbs end to end on a small slice of ../shared/data (random-init mini-rn: seconds)."""
from __future__ import annotations

import json
import logging

import pytest

from clipunlearn.cli import main

TINY = ["--model", "mini-rn", "--pretrained", "none"]


@pytest.fixture(autouse=True)
def _quiet_root_logger():
    level = logging.getLogger().level
    yield
    logging.getLogger().setLevel(level)


def test_eval_writes_json(data_slice, tmp_path, capsys):
    from clipunlearn.data import load_image_set
    from clipunlearn.evaluation import Evaluator
    from clipunlearn.models import load_clip

    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "mini-rn", "--datasets", "caltech101,cifar10", "--data-root", str(data_slice),
                 "--json", str(out), "--workers", "0", "--quiet"]) == 0
    table = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert set(data) == {"caltech101", "cifar10"}
    assert data["caltech101"]["n"] == 24 and set(data["caltech101"]["per_class"]) == {"face", "leopard", "motorbike", "accordion"}
    # each dataset's figures are the zoo model's on that dataset, evaluated here without the CLI
    reference = Evaluator(load_clip("mini-rn"), workers=0, progress=False)
    for name in ("caltech101", "cifar10"):
        expected = reference.evaluate(load_image_set(name, str(data_slice), "test"))
        assert data[name]["top1"] == pytest.approx(expected.top1)
        assert data[name]["per_class"] == pytest.approx(expected.per_class())
        printed = next(line for line in table.splitlines() if line.startswith(name))
        assert f"{expected.top1:.3f}" in printed.split()
    assert data["caltech101"]["top1"] != data["cifar10"]["top1"]  # (1.0 and 0.889: a swap would show)
    # an existing output is kept unless --overwrite
    assert main(["eval", *TINY, "--datasets", "cifar10", "--data-root", str(data_slice), "--json", str(out),
                 "--quiet"]) == 2
    assert "--overwrite" in capsys.readouterr().err


def test_eval_bad_names(data_slice, capsys):
    assert main(["eval", *TINY, "--datasets", "caltech10", "--data-root", str(data_slice)]) == 2
    assert "caltech101" in capsys.readouterr().err
    assert main(["eval", "--model", "mini-rnn", "--datasets", "cifar10", "--data-root", str(data_slice)]) == 2
    assert "mini-rn" in capsys.readouterr().err
    assert main(["eval", *TINY, "--datasets", "stanford_dogs", "--data-root", str(data_slice)]) == 2
    assert "No folder for dataset 'stanford_dogs'" in capsys.readouterr().err


@pytest.fixture(scope="module")
def run_dir(data_slice, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    code = main(["forget", *TINY, "--dataset", "caltech101", "--classes", "leopard", "--other-datasets", "cifar10",
                 "--data-root", str(data_slice), "--out", str(out), "-n", "2", "--max-steps", "2",
                 "--max-epochs", "2", "--quiet"])
    assert code == 0
    return out


def test_forget_writes_a_complete_run(run_dir):
    names = {p.name for p in run_dir.iterdir()}
    assert {"results.json", "model.safetensors", "report.md", "log.txt", "synthetic.safetensors",
            "synthetic.png"} <= names
    r = json.loads((run_dir / "results.json").read_text())
    for key in ("target_before", "target_after", "other_classes_before", "other_classes_after", "datasets",
                "avg_score", "synthetic_acc_after", "epochs", "stage_reached", "selected_tensors", "seconds"):
        assert key in r
    assert set(r["datasets"]) == {"cifar10"} and set(r["seconds"]) == {"generation", "forgetting", "evaluation"}
    report = (run_dir / "report.md").read_text()
    assert "| before | after |" in report and r["precision"] == "fp32"
    assert "; model weights from `random`, computed in fp32." in report
    assert "epoch" in (run_dir / "log.txt").read_text()


def test_run_model_loads_back(run_dir, data_slice, tmp_path, capsys):
    """A full model file is a standalone checkpoint: over the zoo weights (which call every caltech101 image
    of the slice right) it gives the figures the random-init run measured after forgetting."""
    out = tmp_path / "eval.json"
    assert main(["eval", "--model", "mini-rn", "--weights", str(run_dir / "model.safetensors"),
                 "--datasets", "caltech101,cifar10", "--data-root", str(data_slice), "--json", str(out),
                 "--quiet"]) == 0
    got, run = json.loads(out.read_text()), json.loads((run_dir / "results.json").read_text())
    assert got["caltech101"]["per_class"]["leopard"] == pytest.approx(run["target_after"])
    others = [v for k, v in got["caltech101"]["per_class"].items() if k != "leopard"]  # 6 images each
    assert sum(others) / len(others) == pytest.approx(run["other_classes_after"])
    assert got["cifar10"]["top1"] == pytest.approx(run["datasets"]["cifar10"]["after"])
    assert got["caltech101"]["top1"] < 1.0  # not the zoo model's figures


def test_forget_can_save_only_the_changed_tensors(data_slice, tmp_path, capsys):
    base = ["forget", "--model", "mini-rn", "--dataset", "caltech101", "--classes", "leopard", "--other-datasets", "",
            "--data-root", str(data_slice), "-n", "2", "--max-steps", "2", "--max-epochs", "1", "--quiet",
            "--no-retrieval", "--no-template-change", "--save-model", "changed"]
    assert main([*base, "--out", str(tmp_path / "zoo")]) == 0
    model_file = json.loads((tmp_path / "zoo" / "results.json").read_text())["model_file"]
    assert model_file["holds"] == "changed tensors" and model_file["tensors"] > 0
    # that such a file loads back whole on its starting model (and only there): test_merge_runs; that
    # `--weights` reaches the model the CLI evaluates: test_run_model_loads_back
    # random starting weights cannot be named by a checkpoint: every tensor is saved, and the log says why
    assert main([*base, "--pretrained", "none", "--out", str(tmp_path / "random")]) == 0
    assert json.loads((tmp_path / "random" / "results.json").read_text())["model_file"]["holds"] == "all tensors"
    assert "did not start from a checkpoint alone" in (tmp_path / "random" / "log.txt").read_text()
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main([*base[:-1], "partly", "--out", str(tmp_path / "bad")])
    assert "invalid choice: 'partly'" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_forget_refuses_to_overwrite(run_dir, data_slice, capsys):
    before = (run_dir / "results.json").read_text()
    args = ["forget", *TINY, "--dataset", "caltech101", "--classes", "leopard", "--other-datasets", "",
            "--data-root", str(data_slice), "--out", str(run_dir), "--quiet"]
    assert main(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run_dir / "results.json").read_text() == before


def test_forget_bad_inputs(data_slice, tmp_path, capsys, run_dir):
    base = ["forget", *TINY, "--dataset", "caltech101", "--data-root", str(data_slice), "--other-datasets", "",
            "--quiet"]
    assert main([*base, "--classes", "leopards", "--out", str(tmp_path / "a")]) == 2
    assert "'leopard'" in capsys.readouterr().err
    assert main([*base, "--classes", " , ", "--out", str(tmp_path / "b")]) == 2
    assert "empty" in capsys.readouterr().err
    assert main([*base, "--classes", "face", "--synthetic", str(run_dir / "synthetic.safetensors"),
                 "--out", str(tmp_path / "c")]) == 2
    assert "made for classes ['leopard']" in capsys.readouterr().err
    assert main([*base[:-3], "--classes", "face", "--other-datasets", "food101", "--out", str(tmp_path / "d")]) == 2
    assert "food101" in capsys.readouterr().err
    import torch

    if not torch.cuda.is_available():
        assert main([*base, "--classes", "face", "--device", "cuda", "--out", str(tmp_path / "e")]) == 2
        assert "no CUDA GPU" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abcde")


def test_forget_set_overrides_preset_fields(data_slice, tmp_path, capsys, run_dir):
    base = ["forget", *TINY, "--dataset", "caltech101", "--classes", "leopard", "--data-root", str(data_slice),
            "--other-datasets", "", "--synthetic", str(run_dir / "synthetic.safetensors"), "--quiet"]
    out = tmp_path / "run"
    assert main([*base, "--out", str(out), "--set", "retain_weight=0", "--set", "lr=1e-4", "--set", "max_epochs=1",
                 "--set", "keep=target_prob"]) == 0
    cfg = json.loads((out / "results.json").read_text())["method_config"]
    assert (cfg["retain_weight"], cfg["lr"], cfg["max_epochs"], cfg["keep"]) == (0.0, 1e-4, 1, "target_prob")
    assert isinstance(cfg["retain_weight"], float)
    assert main([*base, "--out", str(tmp_path / "a"), "--set", "retain_wieght=1"]) == 2
    assert "'retain_weight'" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "b"), "--set", "max_epochs=many"]) == 2
    assert "max_epochs=" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "c"), "--set", "lr"]) == 2
    assert "KEY=VALUE" in capsys.readouterr().err
    assert not any((tmp_path / n).exists() for n in "abc")


def test_forget_reuses_a_feature_cache_across_runs(data_slice, tmp_path, run_dir):
    cache = tmp_path / "features"
    base = ["forget", *TINY, "--dataset", "caltech101", "--classes", "leopard", "--data-root", str(data_slice),
            "--other-datasets", "cifar10", "--synthetic", str(run_dir / "synthetic.safetensors"),
            "--max-epochs", "1", "--max-steps", "2", "--cache-dir", str(cache), "--quiet",
            "--no-retrieval", "--no-template-change"]  # counted alone: those reuse the same features
    assert main([*base, "--out", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "results.json").read_text())
    # before: 2 datasets x 2 cuts missed; after: the final features missed, the layer4 features reused
    assert (first["feature_cache"]["hits"], first["feature_cache"]["misses"]) == (2, 6) and any(cache.iterdir())
    assert main([*base, "--out", str(tmp_path / "b")]) == 0
    second = json.loads((tmp_path / "b" / "results.json").read_text())
    # "before" of both datasets comes from disk; "after" reuses the layer4 features (only the pool changed)
    assert second["feature_cache"]["hits"] == 4 and second["feature_cache"]["misses"] == 2
    for key in ("target_before", "other_classes_before", "target_after", "other_classes_after"):
        assert second[key] == first[key]
    assert second["datasets"] == first["datasets"]


def test_generate_and_reuse(data_slice, tmp_path, capsys):
    syn = tmp_path / "syn.safetensors"
    assert main(["generate", *TINY, "--dataset", "caltech101", "--classes", "face", "-n", "2", "--max-steps", "2",
                 "--out", str(syn), "--data-root", str(data_slice), "--quiet"]) == 0
    assert syn.exists() and syn.with_suffix(".png").exists()
    out = tmp_path / "run"
    assert main(["forget", *TINY, "--dataset", "caltech101", "--classes", "face", "--synthetic", str(syn),
                 "--other-datasets", "", "--data-root", str(data_slice), "--out", str(out), "--max-epochs", "1",
                 "--set", "retain_steps=2", "--quiet"]) == 0
    r = json.loads((out / "results.json").read_text())
    assert r["synthetic"]["source"] == str(syn) and str(syn) in r["data_seen"]["synthetic_forget"]["source"]
    assert r["data_seen"]["synthetic_forget"]["n"] == 2  # reused: only the retain images were made
    assert r["seconds"]["generation"] == pytest.approx(r["data_seen"]["synthetic_retain"]["seconds"], abs=0.05)


def test_zoo_train_on_a_slice(data_slice, tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    assert main(["zoo", "train", "mini-rn", "--data-root", str(data_slice), "--datasets", "caltech101,cifar10",
                 "--epochs", "1", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["train_images"] == 42 and set(record["test_top1"]) == {"caltech101", "cifar10"}
    assert main(["eval", "--model", "mini-rn", "--pretrained", str(out), "--datasets", "cifar10",
                 "--data-root", str(data_slice), "--quiet", "--json", str(tmp_path / "eval.json")]) == 0
    from clipunlearn.data import load_image_set
    from clipunlearn.evaluation import Evaluator
    from clipunlearn.models import load_clip

    trained = Evaluator(load_clip("mini-rn", pretrained=str(out)), workers=0, progress=False)
    expected = trained.evaluate(load_image_set("cifar10", str(data_slice), "test")).per_class()
    assert json.loads((tmp_path / "eval.json").read_text())["cifar10"]["per_class"] == pytest.approx(expected)


def test_zoo_train_exclude_leaves_every_image_of_the_class_out(data_slice, tmp_path, capsys):
    """The oracle of clipunlearn audit: no train image of the excluded class reaches training."""
    from clipunlearn.models import load_clip
    from clipunlearn.zoo.train import decode_split, excluded_classes

    clip = load_clip("mini-rn", pretrained="none")
    names = excluded_classes(["caltech101:motorbike"], str(data_slice))
    assert names == ["motorbike"]
    (name, images, pixels, labels), = decode_split(clip, str(data_slice), "train", datasets=["caltech101"],
                                                  exclude=names)
    motorbike = images.classnames.index("motorbike")
    assert motorbike not in labels.tolist() and len(pixels) == len(labels) == 3 * 6
    out = tmp_path / "oracle.safetensors"
    assert main(["zoo", "train", "mini-rn", "--data-root", str(data_slice), "--datasets", "caltech101,cifar10",
                 "--epochs", "1", "--exclude", "caltech101:motorbike", "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["train_images"] == 42 - 6
    assert record["excluded"] == {"classes": ["motorbike"], "train_images_removed": {"caltech101": 6}}
    capsys.readouterr()
    assert main(["zoo", "train", "mini-rn", "--data-root", str(data_slice), "--exclude", "caltech101:motorbik",
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "Did you mean 'motorbike'" in capsys.readouterr().err
    assert main(["zoo", "train", "mini-rn", "--data-root", str(data_slice), "--exclude", "motorbike",
                 "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "DATASET:CLASS" in capsys.readouterr().err


@pytest.mark.slow
def test_sigterm_leaves_no_partial_run(data_slice, tmp_path):
    """A cluster's preemption (SIGTERM) in the middle of a run removes the hidden staging folder."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "clipunlearn.cli", "forget", *TINY, "--dataset", "caltech101", "--classes", "leopard",
         "--other-datasets", "cifar10", "--data-root", str(data_slice), "--out", str(out), "--quiet",
         "--max-steps", "100000", "-n", "64"],  # generation that would run for minutes
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".run.*.partial")) and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert list(tmp_path.glob(".run.*.partial")), proc.stderr.read().decode() if proc.poll() is not None else ""
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    finally:  # a run that ignored SIGTERM must not outlive the test and slow the rest of the suite down
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code != 0
    assert not out.exists() and not list(tmp_path.glob(".run.*")), list(tmp_path.iterdir())


def test_sigterm_dropped_where_python_ignores_exceptions_is_delivered_again():
    """A SIGTERM whose handler runs inside a ``__del__`` (or an at-fork or GC callback), where Python
    prints and drops the exception, still stops the block."""
    import signal
    import time

    from clipunlearn.runs.pipeline import Preempted, sigterm_as_interrupt

    class SignalsInDel:
        def __del__(self):
            signal.raise_signal(signal.SIGTERM)  # the handler runs here: its exception is dropped

    before = signal.getsignal(signal.SIGTERM)  # the default, or the handler of pytest-xdist's worker
    reached_the_end = False
    with pytest.raises(Preempted):
        with sigterm_as_interrupt():
            obj = SignalsInDel()
            del obj
            for _ in range(200):
                time.sleep(0.005)
            reached_the_end = True
    assert not reached_the_end
    assert signal.getsignal(signal.SIGTERM) is before  # the handler it found is back


def test_methods_lists_the_registry(capsys):
    assert main(["methods", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_name = {r["name"]: r for r in rows}
    assert {"lip", "emb", "amns", "emmn", "ulip", "amns-retain", "salun"} <= set(by_name)
    assert all({"name", "needs", "presets", "ablations"} <= set(r) for r in rows)
    assert by_name["lip"]["zero_shot"] == "ZS" and "no-text-loss" in by_name["lip"]["ablations"]
    assert by_name["salun"]["needs"] == ["real_forget", "real_retain"] and by_name["salun"]["zero_shot"] == "not ZS"
    assert main(["methods"]) == 0
    assert "amns-retain" in capsys.readouterr().out


def test_forget_bad_method_preset_ablation_and_missing_train_split(data_slice, tmp_path, capsys):
    base = ["forget", *TINY, "--dataset", "caltech101", "--classes", "face", "--data-root", str(data_slice),
            "--other-datasets", "", "--quiet"]
    cases = [(["--method", "lipp"], "Unknown method 'lipp'. Did you mean 'lip'"),
             (["--preset", "fast"], "Unknown preset of lip 'fast'"),
             (["--ablation", "no-text"], "Did you mean 'no-text-loss'"),
             (["--method", "ulip", "--ablation", "one-iter"], "ulip has no ablations"),
             (["--method", "emmn", "--synthetic", str(tmp_path / "x.safetensors")], "emmn uses no synthetic")]
    for i, (extra, message) in enumerate(cases):
        assert main([*base, *extra, "--out", str(tmp_path / f"r{i}")]) == 2
        assert message in capsys.readouterr().err
    # a dataset without a train split: methods that need real images stop before any compute
    test_only = tmp_path / "root"
    for name in ("caltech101",):
        src = data_slice / name
        dst = test_only / name
        dst.mkdir(parents=True)
        (dst / "classes.txt").write_text((src / "classes.txt").read_text())
        rows = [r for r in (src / "manifest.csv").read_text().splitlines() if not r.endswith(",train")]
        (dst / "manifest.csv").write_text("\n".join(rows) + "\n")
        (dst / "images").symlink_to(src / "images")
    only = ["forget", *TINY, "--dataset", "caltech101", "--classes", "face", "--data-root", str(test_only),
            "--other-datasets", "", "--quiet"]
    assert main([*only, "--method", "salun", "--out", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert "salun" in err and "train" in err and "zero-shot method" in err and err.count("\n") == 1
    assert not any(p.name.startswith((".r", "r", ".s", "s")) for p in tmp_path.iterdir() if p.name != "root")


def test_console_log_follows_the_stderr_of_each_call(monkeypatch):
    """main() called again (tests, notebooks) logs to the stderr of that call, not to a closed one."""
    import io
    import logging
    import sys

    from clipunlearn.cli import _setup_logging

    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    _setup_logging(False)
    logging.getLogger("clipunlearn").info("one")
    first.close()
    monkeypatch.setattr(sys, "stderr", second)
    _setup_logging(False)
    logging.getLogger("clipunlearn").info("two")
    assert second.getvalue() == "two\n"
