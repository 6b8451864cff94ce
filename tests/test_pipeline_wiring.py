"""The forget pipeline's wiring (``runs/pipeline.py``) on stand-ins whose every number is known (issue 35):
which measure becomes "before" and which "after", the Avg. Score of exactly those pairs, what results.json
holds and where, what each step is handed, the log lines, and each refusal's whole message.

No model is loaded, trained or evaluated: the evaluator, the method, the data and the model are stand-ins
that record what they are given, so each test takes milliseconds. The end-to-end pins of the same figures
(a real forget of the mini zoo model) are in test_pins_results.py."""
from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from clipunlearn import __version__
from clipunlearn.errors import ClipUnlearnError, DataError, RunExistsError
from clipunlearn.evaluation.forgetting import Targets
from clipunlearn.methods import ForgetContext, ForgetRequest, ImageBatch, Method
from clipunlearn.methods import base as method_registry
from clipunlearn.precision import Precision, active_precision, computing
from clipunlearn.runs import pipeline
from clipunlearn.runs.pipeline import ForgetSettings
from clipunlearn.runs.results import SCHEMA_VERSION
from clipunlearn.training import Trace

PIN = "pin-wiring"


@pytest.fixture
def messages() -> Iterator[list[tuple[int, str]]]:
    """The (level, message) of every record the pipeline's logger emits at INFO or above."""
    got: list[tuple[int, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append((record.levelno, record.getMessage()))

    logger = logging.getLogger("clipunlearn")
    handler, level = Keep(logging.INFO), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield got
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _settings(tmp_path: Path, **kw: Any) -> ForgetSettings:
    base: dict[str, Any] = {"model": "mini-rn", "dataset": "toy", "classes": ["dog"], "out": str(tmp_path / "run"),
                            "method": PIN, "progress": False}
    return ForgetSettings(**{**base, **kw})


@dataclass
class _Config:
    lr: float = 1.0
    sizes: tuple[int, ...] = (1, 2)
    real: bool = True


class _Pin(Method):
    """A test-only method: what it needs is set per test; a config with ``real=False`` sees no real image."""

    name = PIN
    title = "test only"
    config_cls = _Config
    needs = frozenset({"real_retain", "synthetic_forget"})
    presets = {"default": {"lr": 1.5, "resnet": {"lr": 2.0}, "vit": {"lr": 3.0}}, "paper": {"lr": 4.0}}
    ablations = {"no-real": {"real": False}}

    @property
    def data_kinds(self) -> frozenset[str]:
        return self.needs if self.config.real else self.needs - {"real_retain"}


def _method(needs: set[str], config: _Config | None = None) -> Method:
    cls = type("Pin", (_Pin,), {"needs": frozenset(needs)})
    return cls(config)


# --- small pieces: the trace's fields, a progress line, a before/after line, _info -----------------------------

def test_the_trace_gives_its_epochs_stage_and_steps_with_the_selected_tensors_apart():
    trace = Trace(steps=[{"epoch": 0, "kept": None},
                         {"epoch": 1, "stage": 2, "kept": True, "selected": ["a", "b"], "loss": 0.5},
                         {"epoch": 2, "stage": 1, "kept": False, "selected": ["c"]},
                         {"epoch": 3, "kept": True}],
                  stopped_because="stages exhausted", changed_tensors=["a", "b"], kept_any_step=True,
                  info={"retain_images": 6})
    assert pipeline.trace_results(trace) == {
        "epochs": 3, "stage_reached": 2, "stopped_because": "stages exhausted", "kept_any_step": True,
        "changed_tensors": ["a", "b"],
        "selected_tensors": [{"epoch": 1, "kept": True, "tensors": ["a", "b"]}, {"epoch": 2, "kept": False,
                                                                                 "tensors": ["c"]}],
        "steps": [{"epoch": 0, "kept": None}, {"epoch": 1, "stage": 2, "kept": True, "loss": 0.5},
                  {"epoch": 2, "stage": 1, "kept": False}, {"epoch": 3, "kept": True}],
        "trace_info": {"retain_images": 6}}


def test_a_progress_line_shows_numbers_and_words_but_no_lists_and_ends_with_tensors_and_the_keep():
    row = {"epoch": 3, "loss": 0.123456, "acc": 1, "note": None, "hist": [1, 2], "d": {"x": 1}, "name": "x",
           "selected": ["a", "b"], "kept": True}
    assert pipeline.format_step(row) == "epoch  3  loss 0.1235  acc 1  name x  2 tensors  kept"
    assert pipeline.format_step({"loss": 2.0, "kept": False}) == "epoch  0  loss 2  reverted"  # no epoch: 0
    assert pipeline.format_step({"epoch": 12, "kept": None, "selected": None}) == "epoch 12"
    # the selection is counted, never listed, whatever sequence holds it
    assert pipeline.format_step({"epoch": 1, "selected": ("a", "b", "c")}) == "epoch  1  3 tensors"


def test_a_before_or_after_line_names_each_column_to_three_decimals():
    acc = {"target": 0.12345, "other_classes": 0.5, "datasets": {"cifar10": 0.25, "food101": 1.0}}
    assert pipeline._describe(acc) == "target 0.123, other classes 0.500, cifar10 0.250, food101 1.000"
    assert pipeline._describe({**acc, "datasets": {}}) == "target 0.123, other classes 0.500"


def test_info_reaches_the_run_log_even_when_the_logger_shows_less(messages):
    got: list[logging.LogRecord] = []

    class RunLog(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            got.append(record)

    handler = RunLog()
    logging.getLogger("clipunlearn").setLevel(logging.WARNING)
    pipeline._RUN_LOGS.append(handler)
    try:
        pipeline._info("seen by the run log only")
        assert [(r.levelno, r.getMessage()) for r in got] == [(logging.INFO, "seen by the run log only")]
        assert messages == []  # the logger itself shows warnings only
        logging.getLogger("clipunlearn").setLevel(logging.INFO)
        pipeline._info("seen by both")
        assert messages == [(logging.INFO, "seen by both")]
        assert len(got) == 1  # the run log gets it through the logger, where it is attached (run_log)
    finally:
        pipeline._RUN_LOGS.remove(handler)


# --- refusals before any compute ---------------------------------------------------------------------------------

def test_save_model_takes_full_or_changed_and_names_both_otherwise():
    pipeline.check_save_model("full")
    pipeline.check_save_model("changed")
    with pytest.raises(ClipUnlearnError) as e:
        pipeline.check_save_model("half")
    assert str(e.value) == ("save_model 'half' is not one of full, changed: 'full' writes every tensor, 'changed' "
                            "only those the run changed.")


@pytest.mark.parametrize("needs, why", [
    ({"synthetic_forget"}, None),
    ({"real_forget"}, "Method pin-wiring (real_forget)"),
    ({"real_retain", "synthetic_forget"}, "Method pin-wiring (real_retain)"),
    ({"real_retain", "real_forget", "synthetic_forget"}, "Method pin-wiring (real_forget and real_retain)"),
])
def test_a_method_that_needs_real_images_asks_for_the_train_split_naming_what_it_needs(needs, why, tmp_path,
                                                                                       monkeypatch):
    asked: list[tuple[str, str | None, str]] = []
    monkeypatch.setattr(pipeline, "train_split", lambda dataset, root, w: asked.append((dataset, root, w)))
    pipeline.check_needs(_method(needs), _settings(tmp_path, data_root="/data"), "caltech101")
    assert asked == ([] if why is None else [("caltech101", "/data", why)])


def test_synthetic_images_given_to_a_method_that_uses_none_are_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(pipeline, "train_split", lambda *a: None)
    s = _settings(tmp_path, synthetic="set.safetensors")
    pipeline.check_needs(_method({"synthetic_forget"}), s, "toy")  # used: accepted
    with pytest.raises(ClipUnlearnError) as e:
        pipeline.check_needs(_method({"real_forget"}), s, "toy")
    assert str(e.value) == ("--synthetic was given, but pin-wiring uses no synthetic forget images. Drop --synthetic, "
                            "or choose a method that uses them (clipunlearn methods).")


def _data_root(root: Path, datasets: dict[str, list[str]]) -> str:
    """A data root of manifest datasets, each with one (empty) test image per class and one train image."""
    for name, classes in datasets.items():
        folder = root / name
        folder.mkdir(parents=True)
        (folder / "classes.txt").write_text("\n".join(classes) + "\n")
        rows = ["path,label,split"]
        for i in range(len(classes)):
            for split in ("test", "train"):
                (folder / f"{i}{split}.jpg").write_bytes(b"x")
                rows.append(f"{i}{split}.jpg,{i},{split}")
        (folder / "manifest.csv").write_text("\n".join(rows) + "\n")
    return str(root)


def test_the_targets_are_the_test_split_the_classes_and_every_other_dataset_but_the_forget_one(tmp_path):
    root = _data_root(tmp_path / "root", {"caltech101": ["a", "b", "c"], "cifar10": ["x", "y"]})
    t = pipeline.resolve_targets(_settings(tmp_path, dataset="caltech101", classes=["c", "a"], data_root=root,
                                           other_datasets=["caltech101", "cifar10"], templates=["x {}.", "y {}."]))
    assert (t.images.name, t.images.split, t.classes) == ("caltech101", "test", [2, 0])
    assert t.images.templates == ("x {}.", "y {}.")
    assert [(o.name, o.split, len(o)) for o in t.others] == [("cifar10", "test", 2)]
    none = pipeline.resolve_targets(_settings(tmp_path, dataset="caltech101", classes=["b"], data_root=root,
                                              other_datasets=[]))
    assert none.others == [] and none.images.templates[0] == "a photo of a {}."


def test_without_a_list_the_other_datasets_are_the_papers(tmp_path):
    names = {"stanford_dogs": ["d"], "stanford_cars": ["c"], "caltech101": ["a", "b"], "oxford_flowers": ["f"],
             "cifar10": ["x"]}
    root = _data_root(tmp_path / "root", names)
    t = pipeline.resolve_targets(_settings(tmp_path, dataset="caltech101", classes=["b"], data_root=root))
    assert [o.name for o in t.others] == ["stanford_dogs", "stanford_cars", "oxford_flowers"]


def test_missing_other_datasets_are_named_together_with_the_fix(tmp_path):
    root = _data_root(tmp_path / "root", {"caltech101": ["a"], "cifar10": ["x"]})
    with pytest.raises(DataError) as e:
        pipeline.resolve_targets(_settings(tmp_path, dataset="caltech101", classes=["a"], data_root=root,
                                           other_datasets=["food101", "cifar10", "imagenette"]))
    assert str(e.value) == (
        "The data root lacks other dataset(s) needed to measure what is kept: "
        f"food101 (No folder for dataset 'food101' under the data root '{root}'); "
        f"imagenette (No folder for dataset 'imagenette' under the data root '{root}'). "
        "Add them, or choose others with --other-datasets a,b (--other-datasets '' for none).")


# --- the method's run, the synthetic check, the model file -------------------------------------------------------

class _Source:
    """Serves three synthetic forget images; generating them took ``generation`` seconds."""

    def __init__(self, generation: float):
        self.seconds = {"generation": generation}

    def synthetic_forget(self, request: ForgetRequest, **options: Any) -> ImageBatch:
        return ImageBatch(torch.zeros(3, 3, 2, 2), torch.tensor([1, 1, 1]), request.classnames, "synthetic")


def _clock(*readings: float):
    """A stand-in for the time module whose time() gives ``readings`` in turn."""
    it = iter(readings)
    return SimpleNamespace(time=lambda: next(it))


REQUEST = ForgetRequest("toy", ["cat", "dog", "car"], [1], "a photo of a {}.")


def test_run_method_hands_the_method_its_context_and_times_the_forgetting_without_the_generation(monkeypatch,
                                                                                                messages):
    seen: list[ForgetContext] = []

    class Runs(_Pin):
        needs = frozenset({"synthetic_forget"})

        def run(self, ctx: ForgetContext) -> Trace:
            seen.append(ctx)
            ctx.synthetic_forget()
            ctx.knobs.progress({"epoch": 1, "loss": 0.5, "kept": True})
            return Trace(steps=[{"epoch": 0}, {"epoch": 2}], stopped_because="done")

    clip = SimpleNamespace(device=torch.device("cuda", 1))  # a device is named, not used: no GPU needed
    method, seconds = Runs(), {"generation": 0.0, "forgetting": 0.0}
    monkeypatch.setattr(pipeline, "time", _clock(100.0, 107.5))
    trace, ctx = pipeline.run_method(method, clip, REQUEST, _Source(2.0), 5, 3, 4, seconds)
    assert seen == [ctx] and trace.stopped_because == "done"
    assert (ctx.clip, ctx.request, ctx.allowed, ctx.method) == (clip, REQUEST, frozenset({"synthetic_forget"}), PIN)
    k = ctx.knobs
    assert (k.seed, k.max_epochs, k.max_steps, k.device, k.precision) == (5, 3, 4, "cuda:1", "fp32")
    assert seconds == {"generation": 2.0, "forgetting": 5.5}  # 7.5 s in all, 2 of them generating
    assert [m for _, m in messages] == ["epoch  1  loss 0.5  kept", "synthetic_forget: 3 images (synthetic)",
                                        "stopped: done after 2 epochs (5.5s)"]
    # a generation longer than the clock saw (a set read from the cache) leaves no negative time
    monkeypatch.setattr(pipeline, "time", _clock(100.0, 101.0))
    with computing("bf16", "cpu"):
        _, ctx = pipeline.run_method(method, clip, REQUEST, _Source(9.0), 0, None, None, seconds)
    assert seconds["forgetting"] == 0.0 and ctx.knobs.precision == "bf16"


def test_the_synthetic_set_is_saved_beside_the_run_and_scored_on_the_forgotten_model(tmp_path, monkeypatch):
    import clipunlearn.evaluation
    import clipunlearn.synthetic

    saved, scored = [], []
    monkeypatch.setattr(clipunlearn.synthetic, "save_synthetic", lambda syn, path: saved.append((syn, path)))
    monkeypatch.setattr(clipunlearn.evaluation, "image_scores", lambda *a: scored.append(a) or (0.25, 0.75))
    clip = object()
    assert pipeline.synthetic_after(SimpleNamespace(synthetic=None), clip, "a {}.", tmp_path) is None
    assert saved == [] and scored == []
    syn = SimpleNamespace(images="images", targets="targets", classnames=["cat", "dog"])
    assert pipeline.synthetic_after(SimpleNamespace(synthetic=syn), clip, "a {}.", tmp_path) == (0.25, 0.75)
    assert saved == [(syn, tmp_path / "synthetic.safetensors")]
    assert scored == [(clip, "images", "targets", ["cat", "dog"], ["a {}."])]


class _Loads:
    """A stand-in for load_clip that records its arguments and returns a model with a known state."""

    STATE = {"w": torch.ones(2)}

    def __init__(self):
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return SimpleNamespace(model=SimpleNamespace(state_dict=lambda: self.STATE))


@pytest.mark.parametrize("settings, loads", [
    ({}, None), ({"save_model": "full", "pretrained": "default"}, None),
    ({"save_model": "changed", "pretrained": "zoo"}, ("mini-rn", "zoo")),
    ({"save_model": "changed", "pretrained": "default"}, ("mini-rn", "default")),
])
def test_the_starting_state_is_read_again_only_for_a_file_of_changes(settings, loads, monkeypatch, messages):
    load = _Loads()
    monkeypatch.setattr(pipeline, "load_clip", load)
    state = pipeline.starting_state(SimpleNamespace(arch="mini-rn"), settings)
    assert state is (None if loads is None else _Loads.STATE)
    assert load.calls == ([] if loads is None else [loads]) and messages == []


@pytest.mark.parametrize("settings", [{"weights": "w.safetensors", "pretrained": "zoo"}, {"pretrained": None},
                                      {"pretrained": "none"}, {}])
def test_a_model_not_from_a_checkpoint_alone_is_saved_in_full_and_the_log_says_so(settings, monkeypatch, messages):
    load = _Loads()
    monkeypatch.setattr(pipeline, "load_clip", load)
    assert pipeline.starting_state(SimpleNamespace(arch="mini-rn"), {"save_model": "changed", **settings}) is None
    assert load.calls == []
    assert messages == [(logging.INFO, "model.safetensors holds every tensor: the run did not start from a "
                                       "checkpoint alone")]


def test_a_bad_save_mode_in_the_settings_is_refused():
    with pytest.raises(ClipUnlearnError, match="save_model 'half' is not one of full, changed"):
        pipeline.starting_state(SimpleNamespace(arch="mini-rn"), {"save_model": "half"})


class _SavingClip:
    """What write_run reads of a Clip; its save writes known bytes and records what it was handed."""

    arch, source, family, device = "mini-rn", "zoo", "resnet", torch.device("cpu")
    BYTES = b"the forgotten model"

    def __init__(self):
        self.saved: list[tuple[Path, Any]] = []

    def save(self, path: Path, changed_from: Any = None) -> int:
        self.saved.append((path, changed_from))
        Path(path).write_bytes(self.BYTES)
        return 7


def test_write_run_writes_results_json_with_every_field_in_its_place(tmp_path, monkeypatch):
    import clipunlearn.runs.report

    reports: list[Path] = []
    monkeypatch.setattr(clipunlearn.runs.report, "write_report", reports.append)
    monkeypatch.setattr(pipeline, "load_clip", _Loads())
    clip = _SavingClip()
    # the method needs real retain images, but its config does without: it is zero-shot as configured
    method = _method({"real_retain", "synthetic_forget"}, _Config(lr=0.5, sizes=(3, 4), real=False))
    ctx = SimpleNamespace(data_seen={"synthetic_forget": {"n": 3, "source": "synthetic"}})
    trace = Trace(steps=[{"epoch": 0, "kept": None}, {"epoch": 1, "kept": True, "selected": ["w"]}],
                  stopped_because="done", changed_tensors=["w"], kept_any_step=True)
    seconds = {"generation": 1.234, "forgetting": 5.678, "evaluation": 0.0}
    settings = {"save_model": "changed", "pretrained": "default", "seed": 3}
    fields = {"dataset": "toy", "target_before": 0.9}
    results = pipeline.write_run(tmp_path, clip, method, "paper", "no-real", ctx, trace, seconds, settings, fields)
    assert clip.saved == [(tmp_path / "model.safetensors", _Loads.STATE)]
    assert list(results) == [
        "schema_version", "model", "method", "preset", "ablation", "zero_shot", "dataset", "target_before",
        "data_seen", "epochs", "stage_reached", "stopped_because", "kept_any_step", "changed_tensors",
        "selected_tensors", "steps", "trace_info", "seconds", "settings", "precision", "method_config", "model_file",
        "torch", "clipunlearn"]
    assert results == {
        "schema_version": SCHEMA_VERSION, "model": {"arch": "mini-rn", "source": "zoo", "family": "resnet"},
        "method": PIN, "preset": "paper", "ablation": "no-real", "zero_shot": "ZS", **fields,
        "data_seen": ctx.data_seen, **pipeline.trace_results(trace),
        "seconds": {"generation": 1.23, "forgetting": 5.68, "evaluation": 0.0}, "settings": settings,
        "precision": "fp32", "method_config": {"lr": 0.5, "sizes": [3, 4], "real": False},
        "model_file": {"name": "model.safetensors", "sha256": hashlib.sha256(_SavingClip.BYTES).hexdigest()[:16],
                       "holds": "changed tensors", "tensors": 7},
        "torch": torch.__version__, "clipunlearn": __version__}
    assert json.loads((tmp_path / "results.json").read_text()) == json.loads(json.dumps(results))
    assert reports == [tmp_path]


def test_a_full_save_holds_all_tensors_and_the_precision_is_the_one_computed_at(tmp_path, monkeypatch):
    import clipunlearn.runs.report

    monkeypatch.setattr(clipunlearn.runs.report, "write_report", lambda run: None)
    clip = _SavingClip()
    method = _method({"real_retain"})
    for settings, precision in (({}, "fp32"), ({"precision": "auto"}, "fp32"), ({"precision": "bf16"}, "bf16")):
        results = pipeline.write_run(tmp_path, clip, method, "default", None, SimpleNamespace(data_seen={}), Trace(),
                                     {}, settings, {})
        assert results["precision"] == precision
        assert results["model_file"]["holds"] == "all tensors" and results["zero_shot"] == "not ZS"
    assert clip.saved[-1] == (tmp_path / "model.safetensors", None)


# --- measuring, and the run between the two measures ---------------------------------------------------------------

def test_measure_gives_the_accuracies_of_its_own_logits_and_the_measures_asked_for(tmp_path, monkeypatch):
    calls: list[tuple[Any, ...]] = []
    monkeypatch.setattr(pipeline, "evaluate_all", lambda ev, t: calls.append(("logits", ev, t)) or "LOGITS")
    monkeypatch.setattr(pipeline, "accuracies", lambda ev, t, results: {"accuracy of": (results, t)})
    monkeypatch.setattr(pipeline, "template_change", lambda ev, t: ("templates of", ev, t))
    monkeypatch.setattr(pipeline, "retrieval", lambda ev, t, seed: ("retrieval of", ev, t, seed))
    ev, t = object(), object()
    out = pipeline._measure(ev, t, _settings(tmp_path, seed=4))
    assert out == {"accuracy": {"accuracy of": ("LOGITS", t)}, "logits": "LOGITS",
                   "template_change": ("templates of", ev, t), "retrieval": ("retrieval of", ev, t, 4)}
    assert calls == [("logits", ev, t)]  # the image passes once: the accuracies read the same logits
    out = pipeline._measure(ev, t, _settings(tmp_path, retrieval=False, template_change=False))
    assert out == {"accuracy": {"accuracy of": ("LOGITS", t)}, "logits": "LOGITS"}


def _accuracy(target: float, per: tuple[float, float], other: float, datasets: dict[str, float],
              **extra: Any) -> dict[str, Any]:
    return {**extra, "target": target, "per_target": {"cat": per[0], "dog": per[1]}, "other_classes": other,
            "datasets": datasets}


#: what the model measures before (False) and after (True) forgetting; every figure differs from its pair
MEASURES = {
    False: {"accuracy": _accuracy(0.8, (0.9, 0.7), 0.6, {"cifar10": 0.5, "food101": 0.4}), "logits": "logits before",
            "retrieval": "retrieval before",
            "template_change": _accuracy(0.5, (0.6, 0.4), 0.4, {"cifar10": 0.2}, templates=["t1 {}", "t2 {}"])},
    True: {"accuracy": _accuracy(0.2, (0.1, 0.3), 0.45, {"cifar10": 0.55, "food101": 0.3}), "logits": "logits after",
           "retrieval": "retrieval after",
           "template_change": _accuracy(0.1, (0.15, 0.05), 0.3, {"cifar10": 0.25}, templates=["t1 {}", "t2 {}"])},
}


@dataclass
class _Run:
    """The stand-ins around _forget_in, and what each was handed."""

    measured: list[tuple[Any, ...]] = field(default_factory=list)  # (forgotten yet, cache in memory only, t, s)
    handed: dict[str, Any] = field(default_factory=dict)


class _Syn:
    """A synthetic forget set as _forget_in reads it."""

    def __init__(self, accepted: list[bool], probs: list[float], final_threshold: float, config: dict[str, Any]):
        self.accepted, self.probs = torch.tensor(accepted), torch.tensor(probs)
        self.final_threshold, self.config = final_threshold, config

    def __len__(self) -> int:
        return len(self.accepted)


class _Cache:
    def __init__(self, folder: str | None):
        self.folder, self.hits, self.misses, self.memory_only = folder, 4, 2, False

    @contextmanager
    def in_memory_only(self) -> Iterator[None]:
        self.memory_only = True
        try:
            yield
        finally:
            self.memory_only = False


def _stand_ins(monkeypatch, syn: Any, syn_after: tuple[float, float] | None, measures=MEASURES) -> _Run:
    r = _Run()

    class Evaluator:
        def __init__(self, clip, cache, progress):
            self.clip, self.cache = clip, cache
            r.handed["evaluator"] = (clip, cache.folder, progress)

    class RunData:
        def __init__(self, clip, data_root, seed, n_per_class, max_steps, synthetic_file, progress, synthetic_cache):
            r.handed["data"] = dict(clip=clip, data_root=data_root, seed=seed, n_per_class=n_per_class,
                                    max_steps=max_steps, synthetic_file=synthetic_file, progress=progress,
                                    synthetic_cache=synthetic_cache)
            self.synthetic = syn
            self.synthetic_scores_before = None if syn is None else (0.97, 0.9)

    def measure(evaluator, t, s):
        r.measured.append((evaluator.clip.forgotten, evaluator.cache.memory_only, t, s))
        return measures[evaluator.clip.forgotten]

    def run_method(method, clip, request, data, seed, max_epochs, max_steps, seconds):
        r.handed["method"] = (method, clip, request, data, seed, max_epochs, max_steps)
        clip.forgotten = True
        seconds.update(generation=1.0, forgetting=2.0)
        return "trace", "ctx"

    def synthetic_after(data, clip, template, run):
        r.handed["synthetic_after"] = (data, clip, template, run)
        return syn_after

    def write_run(*args):
        r.handed["write_run"] = args
        return "written"

    monkeypatch.setattr(pipeline, "Evaluator", Evaluator)
    monkeypatch.setattr(pipeline, "FeatureCache", _Cache)
    monkeypatch.setattr(pipeline, "RunData", RunData)
    monkeypatch.setattr(pipeline, "_measure", measure)
    monkeypatch.setattr(pipeline, "run_method", run_method)
    monkeypatch.setattr(pipeline, "synthetic_after", synthetic_after)
    monkeypatch.setattr(pipeline, "error_analysis", lambda b, a, t: {"of": (b, a, t)})
    monkeypatch.setattr(pipeline, "write_run", write_run)
    monkeypatch.setattr(pipeline, "time", _clock(10.0, 13.0, 20.0, 24.5))  # 3 s before, 4.5 s after
    return r


def test_before_is_measured_on_the_starting_model_and_after_on_the_forgotten_one_each_in_its_field(
        tmp_path, monkeypatch, messages):
    syn = _Syn([True, False, True, True], [0.5, 0.25, 1.0, 0.75], 0.8, {"steps": 9})
    r = _stand_ins(monkeypatch, syn, (0.05, 0.125))
    s = _settings(tmp_path, data_root="/data", seed=3, n_per_class=5, generation_max_steps=6, max_epochs=2,
                  synthetic_cache="/syn", cache_dir="/features", preset="paper", ablation="no-real")
    clip = SimpleNamespace(arch="mini-rn", source="zoo", forgotten=False)
    request = ForgetRequest("toy", ["cat", "dog", "car"], [0, 1], "a photo of a {}.")
    t = Targets(SimpleNamespace(name="toy"), [0, 1])
    method = _Pin()
    assert pipeline._forget_in(tmp_path, s, t, clip, method, request) == "written"
    # after: on the forgotten model, and no feature of it kept on disk
    assert r.measured == [(False, False, t, s), (True, True, t, s)]
    assert r.handed["evaluator"] == (clip, "/features", False)
    assert r.handed["data"] == dict(clip=clip, data_root="/data", seed=3, n_per_class=5, max_steps=6,
                                    synthetic_file=None, progress=False, synthetic_cache="/syn")
    data = r.handed["method"][3]
    assert r.handed["method"] == (method, clip, request, data, 3, 2, 6)
    assert r.handed["synthetic_after"] == (data, clip, "a photo of a {}.", tmp_path)
    run, clip_, method_, preset, ablation, ctx, trace, seconds, settings, fields = r.handed["write_run"]
    assert (run, clip_, method_, preset, ablation, ctx, trace) == (tmp_path, clip, method, "paper", "no-real", "ctx",
                                                                    "trace")
    assert seconds == {"generation": 1.0, "forgetting": 2.0, "evaluation": 7.5} and settings == asdict(s)
    # the Avg. Score of these pairs by hand: (0.2/0.8 + 0.15/0.6 + 0 (cifar10 gained) + 0.1/0.4) / 4
    # and under the other templates: (0.1/0.5 + 0.1/0.4 + 0 (cifar10 gained)) / 3
    assert fields == {
        "dataset": "toy", "classes": ["cat", "dog"], "target_before": 0.8, "target_after": 0.2,
        "per_target": {"cat": {"before": 0.9, "after": 0.1}, "dog": {"before": 0.7, "after": 0.3}},
        "other_classes_before": 0.6, "other_classes_after": 0.45,
        "datasets": {"cifar10": {"before": 0.5, "after": 0.55}, "food101": {"before": 0.4, "after": 0.3}},
        "avg_score": pytest.approx(0.1875), "avg_score_excluded": [],
        "retrieval": {"before": "retrieval before", "after": "retrieval after"},
        "template_change": {"templates": ["t1 {}", "t2 {}"],
                            "before": _accuracy(0.5, (0.6, 0.4), 0.4, {"cifar10": 0.2}),
                            "after": _accuracy(0.1, (0.15, 0.05), 0.3, {"cifar10": 0.25}),
                            "avg_score": pytest.approx(0.15), "avg_score_excluded": []},
        "error_analysis": {"of": ("logits before", "logits after", t)},
        "synthetic_acc_before": 0.97, "synthetic_acc_after": 0.05, "synthetic_prob_after": 0.125,
        "synthetic": {"n": 4, "accepted": 3, "mean_prob": 0.625, "final_threshold": 0.8, "source": "generated"},
        "feature_cache": {"folder": "/features", "hits": 4, "misses": 2}, "generation_config": {"steps": 9}}
    assert type(fields["synthetic"]["accepted"]) is int and type(fields["synthetic"]["mean_prob"]) is float
    assert [m for _, m in messages] == [
        "model mini-rn (zoo), forgetting ['cat', 'dog'] of toy with pin-wiring (paper preset, ablation no-real)",
        "before: target 0.800, other classes 0.600, cifar10 0.500, food101 0.400",
        "after: target 0.200, other classes 0.450, cifar10 0.550, food101 0.300"]


def test_a_target_never_recognised_leaves_the_score_undefined_and_says_so(tmp_path, monkeypatch, messages):
    measures = {False: {"accuracy": _accuracy(0.0, (0.0, 0.0), 0.6, {"cifar10": 0.0}), "logits": "b"},
                True: {"accuracy": _accuracy(0.0, (0.0, 0.0), 0.5, {"cifar10": 0.1}), "logits": "a"}}
    r = _stand_ins(monkeypatch, None, None, measures)
    s = _settings(tmp_path, retrieval=False, template_change=False, synthetic="given.safetensors")
    clip = SimpleNamespace(arch="mini-rn", source="zoo", forgotten=False)
    request = ForgetRequest("toy", ["cat", "dog"], [0, 1], "a {}.")
    pipeline._forget_in(tmp_path, s, Targets(SimpleNamespace(name="toy"), [0, 1]), clip, _Pin(), request)
    fields = r.handed["write_run"][-1]
    assert (fields["avg_score"], fields["avg_score_excluded"]) == (None, ["target", "cifar10"])
    assert fields["retrieval"] is None and fields["template_change"] is None
    assert r.handed["data"]["synthetic_file"] == "given.safetensors"
    assert {k: fields[k] for k in ("synthetic_acc_before", "synthetic_acc_after", "synthetic_prob_after", "synthetic",
                                   "generation_config")} == dict.fromkeys(
        ("synthetic_acc_before", "synthetic_acc_after", "synthetic_prob_after", "synthetic", "generation_config"))
    assert messages[0][1].endswith("with pin-wiring (default preset)")
    assert (logging.WARNING, "the model never recognised the target before forgetting: the Avg. Score is "
                             "undefined") in messages


def test_a_synthetic_set_from_a_file_names_the_file_as_its_source(tmp_path, monkeypatch):
    r = _stand_ins(monkeypatch, _Syn([True], [0.5], 0.7, {}), (0.0, 0.0))
    s = _settings(tmp_path, synthetic="given.safetensors")
    clip = SimpleNamespace(arch="mini-rn", source="zoo", forgotten=False)
    request = ForgetRequest("toy", ["cat", "dog"], [0, 1], "a {}.")
    pipeline._forget_in(tmp_path, s, Targets(SimpleNamespace(name="toy"), [0, 1]), clip, _Pin(), request)
    fields = r.handed["write_run"][-1]
    assert fields["synthetic"]["source"] == "given.safetensors"
    assert (fields["synthetic_acc_after"], fields["synthetic_prob_after"]) == (0.0, 0.0)


# --- forget: the checks before any compute, then the model, the method's config and the staged folder ------------

class _Forget:
    """Stand-ins for what forget calls around its checks, recording what each is handed."""

    def __init__(self, monkeypatch, family: str = "vit"):
        self.loaded: list[tuple[Any, ...]] = []
        self.checked: list[tuple[list[str], _Config]] = []
        self.train_split: list[str] = []
        self.ran: dict[str, Any] = {}
        self.targets_of: list[ForgetSettings] = []
        forget = self

        class Registered(_Pin):
            needs = frozenset({"real_forget", "synthetic_forget"})

            def check_classes(self, classnames):
                forget.checked.append((list(classnames), self.config))

        def load_clip(*args):
            self.loaded.append((*args, torch.initial_seed()))
            return SimpleNamespace(family=family)

        def forget_in(run, s, t, clip, method, request):
            (run / "made").write_text("by the run")
            self.ran = dict(run=run, s=s, t=t, clip=clip, method=method, request=request,
                            precision=active_precision())
            return {"results": 1}

        images = SimpleNamespace(name="toy", classnames=["cat", "dog", "car"], templates=("first {}.", "second {}."))
        monkeypatch.setitem(method_registry._METHODS, PIN, Registered)
        monkeypatch.setattr(pipeline, "resolve_targets", lambda s: self.targets_of.append(s) or Targets(images, [1]))
        monkeypatch.setattr(pipeline, "load_clip", load_clip)
        monkeypatch.setattr(pipeline, "train_split", lambda dataset, root, why: self.train_split.append(dataset))
        monkeypatch.setattr(pipeline, "_forget_in", forget_in)


def test_forget_builds_the_config_for_each_family_and_runs_in_a_staged_folder_at_the_asked_precision(
        tmp_path, monkeypatch):
    f = _Forget(monkeypatch)
    s = _settings(tmp_path, seed=7, ablation="no-real", options={"sizes": [5]}, precision="bf16", device="CPU",
                  pretrained="zoo", weights="w.safetensors")
    assert pipeline.forget(s) == {"results": 1}
    # checked before the model loads, with the resnet config (the data a method sees does not depend on it)
    assert f.checked == [(["dog"], _Config(lr=2.0, sizes=(5,), real=False))] and f.train_split == ["toy"]
    assert f.loaded == [("mini-rn", "zoo", "w.safetensors", "cpu", 7)]  # seeded before the model is built
    assert f.ran["method"].config == _Config(lr=3.0, sizes=(5,), real=False)  # the model's family: vit
    assert f.ran["request"] == ForgetRequest("toy", ["cat", "dog", "car"], [1], "first {}.")
    assert f.targets_of == [s] and f.ran["s"] is s and f.ran["clip"].family == "vit" and f.ran["t"].classes == [1]
    assert f.ran["precision"] is Precision.BF16
    out = tmp_path / "run"
    assert f.ran["run"] != out and (out / "made").read_text() == "by the run" and (out / "log.txt").is_file()


def test_forget_replaces_an_old_run_only_when_asked(tmp_path, monkeypatch):
    f = _Forget(monkeypatch)
    out = tmp_path / "run"
    out.mkdir()
    (out / "old").write_text("old")
    monkeypatch.setattr(pipeline, "resolve_targets", lambda s: pytest.fail("the targets were read"))
    with pytest.raises(RunExistsError) as e:
        pipeline.forget(_settings(tmp_path))
    assert str(e.value) == (f"The run folder {str(out)!r} exists already. Choose another path, or pass --overwrite "
                            "(overwrite=True) to replace it.")
    assert f.loaded == [] and (out / "old").exists()
    f = _Forget(monkeypatch)
    pipeline.forget(_settings(tmp_path, overwrite=True, preset="paper"))
    assert sorted(p.name for p in out.iterdir()) == ["log.txt", "made"]
    assert f.ran["method"].config == _Config(lr=4.0) and f.ran["precision"] is Precision.FP32


@pytest.mark.parametrize("bad, message", [
    ({"save_model": "half"}, "save_model 'half' is not one of full, changed"),
    ({"precision": "fp16"}, "Unknown precision 'fp16': use --precision auto, fp32, tf32 or bf16"),
    ({"device": "tpu"}, "Unknown device 'tpu'. Use 'cpu' or 'cuda'."),
    ({"method": "no-such-method"}, "no-such-method"),
])
def test_forget_refuses_bad_settings_before_the_model_loads(bad, message, tmp_path, monkeypatch):
    f = _Forget(monkeypatch)
    with pytest.raises(ClipUnlearnError, match=message):
        pipeline.forget(_settings(tmp_path, **bad))
    assert f.loaded == [] and not (tmp_path / "run").exists()


def test_forget_refuses_synthetic_images_for_a_method_that_uses_none_before_the_model_loads(tmp_path, monkeypatch):
    f = _Forget(monkeypatch)

    class Real(_Pin):
        needs = frozenset({"real_forget"})

    monkeypatch.setitem(method_registry._METHODS, PIN, Real)
    with pytest.raises(ClipUnlearnError, match="--synthetic was given, but pin-wiring uses no synthetic"):
        pipeline.forget(_settings(tmp_path, synthetic="set.safetensors"))
    assert f.loaded == [] and f.train_split == ["toy"]
