"""The forget pipeline behind ``clipunlearn forget``: evaluate, hand the method its context, forget,
evaluate again, and write the run folder atomically.

The pipeline knows no method's settings: it builds the method's config from its preset, ablation
and the user's options, checks that the data the method declares can be had, and hands it a
:class:`ForgetContext` that serves exactly that data (recorded as ``data_seen``).
"""
from __future__ import annotations

import _thread
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..data import load_image_set, paper_datasets
from ..errors import ClipUnlearnError, DataError
from ..evaluation import Evaluator, FeatureCache
from ..evaluation.forgetting import (
    Targets,
    accuracies,
    error_analysis,
    evaluate_all,
    retrieval,
    score,
    template_change,
)
from ..io import check_output_free, file_hash, staged_dir, write_json
from ..methods import (
    ForgetContext,
    ForgetRequest,
    Knobs,
    Method,
    config_json,
    get_method,
)
from ..models import Clip, load_clip, resolve_device
from ..precision import (
    Precision,
    active_precision,
    computing,
    parse_precision,
    resolve_precision,
)
from ..training import Trace
from ..version import __version__
from .data import RunData, train_split
from .results import SCHEMA_VERSION

log = logging.getLogger("clipunlearn")
_RUN_LOGS: list[logging.Handler] = []  # the log.txt of the run in progress


def _info(msg: str) -> None:
    """Log ``msg`` at INFO; the run's log.txt gets it even when the logger is set to show less."""
    if log.isEnabledFor(logging.INFO):
        log.info(msg)
        return
    record = log.makeRecord(log.name, logging.INFO, __file__, 0, msg, None, None)
    for handler in _RUN_LOGS:
        handler.handle(record)


@dataclass(kw_only=True)
class RunSettings:
    """What every forget run takes besides its request (keyword-only in every kind of run)."""

    data_root: str | None = None
    pretrained: str | None = "default"
    weights: str | None = None
    method: str = "lip"
    preset: str = "default"
    ablation: str | None = None
    seed: int = 0
    device: str = "cpu"
    n_per_class: int = 64  # synthetic images per class, for methods that use them
    overwrite: bool = False
    progress: bool = True
    max_epochs: int | None = None
    generation_max_steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # fields of the method's config, over the preset
    cache_dir: str | None = None  # keep image features here, so later runs skip the unchanged layers
    run_spec: dict[str, Any] | None = None  # the RunSpec this run executes (benchmark cells), with its id
    # model.safetensors: "full" (every tensor, a standalone checkpoint) or "changed" (only the tensors the
    # run changed, which load_clip puts back on the model the run started from: far smaller)
    save_model: str = "full"
    # the compute's precision (clipunlearn.precision): auto (TF32 on CUDA, fp32 on the CPU), fp32, tf32 or bf16
    precision: str = "auto"


@dataclass
class ForgetSettings(RunSettings):
    """A class request: forget ``classes`` of ``dataset``."""

    model: str
    dataset: str
    classes: list[str]
    out: str
    other_datasets: list[str] | None = None
    synthetic: str | None = None
    synthetic_cache: str | None = None  # share synthetic sets here between runs of the same model and class
    retrieval: bool = True  # precision@k before and after
    template_change: bool = True  # accuracies under other templates before and after
    # the forget dataset's prompt templates instead of its own (a dataset folder's own: "a photo of a {}.")
    templates: list[str] | None = None


def resolve_targets(s: ForgetSettings) -> Targets:
    """Find the dataset, the classes and the other datasets, failing before any compute. ``s.dataset``
    is a registered name or a class-folder tree's path (:func:`clipunlearn.data.folder_dataset`)."""
    images = load_image_set(s.dataset, s.data_root, "test").with_templates(s.templates)
    classes = images.class_indices(s.classes)
    names = [d for d in (paper_datasets() if s.other_datasets is None else s.other_datasets) if d != images.name]
    found, missing = [], []
    for name in names:
        try:
            found.append(load_image_set(name, s.data_root, "test"))
        except DataError as e:
            missing.append(f"{name} ({str(e).split('.')[0]})")
    if missing:
        raise DataError(
            f"The data root lacks other dataset(s) needed to measure what is kept: {'; '.join(missing)}. "
            "Add them, or choose others with --other-datasets a,b (--other-datasets '' for none)."
        )
    return Targets(images, classes, found)


def check_needs(method: Method, s: ForgetSettings, dataset: str) -> None:
    """Fail before any compute if the method needs real images that cannot be had."""
    method_cls, needs = type(method), method.data_kinds
    if needs & {"real_forget", "real_retain"}:
        kinds = " and ".join(sorted(needs & {"real_forget", "real_retain"}))
        train_split(dataset, s.data_root, f"Method {method_cls.name} ({kinds})")
    if s.synthetic and "synthetic_forget" not in needs:
        raise ClipUnlearnError(f"--synthetic was given, but {method_cls.name} uses no synthetic forget images. "
                               "Drop --synthetic, or choose a method that uses them (clipunlearn methods).")


class Preempted(KeyboardInterrupt):
    """SIGTERM (a cluster's preemption) within :func:`sigterm_as_interrupt`."""


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM (a cluster's preemption) raises like Ctrl-C, so that every ``finally``
    runs and no half-written run folder is left behind. Only in the main thread.

    Python runs a signal's handler between any two bytecodes, also inside code whose exceptions it
    drops with an "Exception ignored in" message: a ``__del__``, a weakref or GC callback, an at-fork
    callback (logging's runs at every DataLoader worker's fork). An interrupt dropped there would
    let the run go on, so while the block runs a dropped interrupt is delivered again, a moment
    later and from another thread, until it lands where it can stop the run.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise Preempted(f"signal {signum}")

    previous_hook = sys.unraisablehook
    active = threading.Event()
    timers: list[threading.Timer] = []

    def interrupt_again(signum: int) -> None:
        if active.is_set():
            _thread.interrupt_main(signum)

    def deliver_again(unraisable) -> None:
        previous_hook(unraisable)
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            # from another thread, a moment later: the main thread has left the code that drops it
            signum = signal.SIGTERM if isinstance(unraisable.exc_value, Preempted) else signal.SIGINT
            timer = threading.Timer(0.05, interrupt_again, args=(signum,))
            timer.daemon = True
            timers.append(timer)
            timer.start()

    previous = signal.signal(signal.SIGTERM, handler)
    sys.unraisablehook = deliver_again
    active.set()
    try:
        yield
    finally:
        active.clear()
        for timer in timers:
            timer.cancel()
        sys.unraisablehook = previous_hook
        signal.signal(signal.SIGTERM, previous)


def forget(s: ForgetSettings) -> dict[str, Any]:
    """Run the whole pipeline; returns the results written to ``s.out``/results.json."""
    check_output_free(s.out, s.overwrite, "run folder")
    check_save_model(s.save_model)
    parse_precision(s.precision)
    device = resolve_device(s.device)
    method_cls = get_method(s.method)
    t = resolve_targets(s)
    # the data a method sees does not depend on the image tower's family: checked before loading the model
    early = method_cls(method_cls.build_config(s.preset, "resnet", s.ablation, s.options))
    check_needs(early, s, t.images.name)
    early.check_classes([t.images.classnames[c] for c in t.classes])
    torch.manual_seed(s.seed)
    clip = load_clip(s.model, s.pretrained, s.weights, device)
    config = method_cls.build_config(s.preset, clip.family, s.ablation, s.options)
    request = ForgetRequest(t.images.name, t.images.classnames, t.classes, t.images.templates[0])
    with sigterm_as_interrupt(), staged_dir(s.out, s.overwrite) as run, run_log(run), computing(s.precision, device):
        return _forget_in(run, s, t, clip, method_cls(config), request)


@contextmanager
def run_log(run: Path) -> Iterator[None]:
    """Within the block every INFO message also goes to ``run``/log.txt."""
    handler = logging.FileHandler(run / "log.txt", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    handler.setLevel(logging.INFO)
    log.addHandler(handler)
    _RUN_LOGS.append(handler)
    try:
        yield
    finally:
        _RUN_LOGS.remove(handler)
        log.removeHandler(handler)
        handler.close()


def trace_results(trace: Trace) -> dict[str, Any]:
    """The fields of results.json that say what a method did, from its trace."""
    return {
        "epochs": trace.epochs,
        "stage_reached": trace.stage_reached,
        "stopped_because": trace.stopped_because,
        "kept_any_step": trace.kept_any_step,
        "changed_tensors": trace.changed_tensors,
        "selected_tensors": [{"epoch": r["epoch"], "kept": r["kept"], "tensors": r["selected"]}
                             for r in trace.steps if "selected" in r],
        "steps": [{k: v for k, v in r.items() if k != "selected"} for r in trace.steps],
        "trace_info": trace.info,
    }


def run_method(method: Method, clip: Clip, request: ForgetRequest, data: RunData, seed: int, max_epochs: int | None,
               max_steps: int | None, seconds: dict[str, float]) -> tuple[Trace, ForgetContext]:
    """Hand ``method`` its context over ``data`` and run it; ``seconds`` gets the generation and
    forgetting times; what it saw and why it stopped go to the log."""
    knobs = Knobs(seed=seed, max_epochs=max_epochs, max_steps=max_steps, device=str(clip.device),
                  progress=lambda row: _info(format_step(row)), precision=(active_precision() or Precision.FP32).value)
    ctx = ForgetContext(clip, request, data, method.data_kinds, knobs, method.name)
    t0 = time.time()
    trace = method.run(ctx)
    seconds["generation"] = data.seconds["generation"]
    seconds["forgetting"] = max(0.0, time.time() - t0 - data.seconds["generation"])
    for kind, seen in ctx.data_seen.items():
        _info(f"{kind}: {seen['n']} images ({seen['source']})")
    _info(f"stopped: {trace.stopped_because} after {trace.epochs} epochs ({seconds['forgetting']:.1f}s)")
    return trace, ctx


def synthetic_after(data: RunData, clip: Clip, template: str, run: Path) -> tuple[float, float] | None:
    """When the method used a synthetic forget set: its accuracy and mean target probability on the
    forgotten model (the verification of WACV'25 §5.6), the set saved beside the run; else None."""
    syn = data.synthetic
    if syn is None:
        return None
    from ..evaluation import image_scores
    from ..synthetic import save_synthetic

    save_synthetic(syn, run / "synthetic.safetensors")
    return image_scores(clip, syn.images, syn.targets, syn.classnames, [template])


SAVE_MODEL = ("full", "changed")


def check_save_model(value: str) -> None:
    if value not in SAVE_MODEL:
        raise ClipUnlearnError(f"save_model {value!r} is not one of {', '.join(SAVE_MODEL)}: 'full' writes every "
                               "tensor, 'changed' only those the run changed.")


def starting_state(clip: Clip, settings: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The state the run's model started from, read again from its checkpoint, when only the changed
    tensors are to be saved; None for a full save. A model that started from random weights or from a
    --weights file is saved in full: a file of changes could not name its base by checkpoint alone."""
    mode = settings.get("save_model", "full")
    check_save_model(mode)
    if mode == "full":
        return None
    if settings.get("weights") or settings.get("pretrained") in (None, "none"):
        _info("model.safetensors holds every tensor: the run did not start from a checkpoint alone")
        return None
    return load_clip(clip.arch, settings.get("pretrained", "default")).model.state_dict()


def write_run(run: Path, clip: Clip, method: Method, preset: str, ablation: str | None, ctx: ForgetContext,
              trace: Trace, seconds: dict[str, float], settings: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """Save the model (every tensor, or with ``settings["save_model"] == "changed"`` the changed ones),
    then results.json (the fields every run has around the request's own ``fields``) and report.md;
    returns the results."""
    base = starting_state(clip, settings)
    written = clip.save(run / "model.safetensors", changed_from=base)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "model": {"arch": clip.arch, "source": clip.source, "family": clip.family},
        "method": method.name,
        "preset": preset,
        "ablation": ablation,
        "zero_shot": method.zero_shot(method.data_kinds),
        **fields,
        "data_seen": ctx.data_seen,
        **trace_results(trace),
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "settings": settings,
        # the precision the run computed at (settings["precision"] is the one asked for: auto, ...)
        "precision": resolve_precision(settings.get("precision", "auto"), clip.device).value,
        "method_config": config_json(method.config),
        "model_file": {"name": "model.safetensors", "sha256": file_hash(run / "model.safetensors"),
                       "holds": "all tensors" if base is None else "changed tensors", "tensors": written},
        "torch": torch.__version__,
        "clipunlearn": __version__,
    }
    write_json(run / "results.json", results)
    from .report import write_report

    write_report(run)
    return results


def format_step(row: dict[str, Any]) -> str:
    """One progress line from whatever a trace step carries."""
    parts = [f"epoch {row.get('epoch', 0):2d}"]
    for k, v in row.items():
        if k in ("epoch", "kept", "selected"):
            continue
        if isinstance(v, float):
            parts.append(f"{k} {v:.4g}")
        elif v is not None and not isinstance(v, (list, dict)):
            parts.append(f"{k} {v}")
    if row.get("selected") is not None:
        parts.append(f"{len(row['selected'])} tensors")
    if row.get("kept") is not None:
        parts.append("kept" if row["kept"] else "reverted")
    return "  ".join(parts)


def _measure(evaluator: Evaluator, t: Targets, s: ForgetSettings) -> dict[str, Any]:
    logits = evaluate_all(evaluator, t)
    out: dict[str, Any] = {"accuracy": accuracies(evaluator, t, results=logits), "logits": logits}
    if s.template_change:
        out["template_change"] = template_change(evaluator, t)
    if s.retrieval:
        out["retrieval"] = retrieval(evaluator, t, seed=s.seed)
    return out


def _describe(acc: dict[str, Any]) -> str:
    return (f"target {acc['target']:.3f}, other classes {acc['other_classes']:.3f}"
            + "".join(f", {k} {v:.3f}" for k, v in acc["datasets"].items()))


def _forget_in(run: Path, s: ForgetSettings, t: Targets, clip: Clip, method: Method,
               request: ForgetRequest) -> dict[str, Any]:
    seconds = {"generation": 0.0, "forgetting": 0.0, "evaluation": 0.0}
    _info(f"model {clip.arch} ({clip.source}), forgetting {request.class_names} of {request.dataset} "
             f"with {method.name} ({s.preset} preset{', ablation ' + s.ablation if s.ablation else ''})")
    evaluator = Evaluator(clip, FeatureCache(s.cache_dir), progress=s.progress)
    t0 = time.time()
    before = _measure(evaluator, t, s)
    seconds["evaluation"] += time.time() - t0
    _info(f"before: {_describe(before['accuracy'])}")

    data = RunData(clip, s.data_root, seed=s.seed, n_per_class=s.n_per_class, max_steps=s.generation_max_steps,
                   synthetic_file=s.synthetic, progress=s.progress, synthetic_cache=s.synthetic_cache)
    trace, ctx = run_method(method, clip, request, data, s.seed, s.max_epochs, s.generation_max_steps, seconds)

    t0 = time.time()
    with evaluator.cache.in_memory_only():  # no later run starts from this model
        after = _measure(evaluator, t, s)
    seconds["evaluation"] += time.time() - t0
    _info(f"after: {_describe(after['accuracy'])}")
    b, a = before["accuracy"], after["accuracy"]
    avg, excluded = score(b, a)
    if avg is None:
        log.warning("the model never recognised the target before forgetting: the Avg. Score is undefined")
    syn = data.synthetic
    syn_after = synthetic_after(data, clip, request.template, run)
    tc = None
    if s.template_change:
        tb, ta = before["template_change"], after["template_change"]
        tc_score, tc_excluded = score(tb, ta)
        tc = {"templates": tb["templates"], "before": {k: v for k, v in tb.items() if k != "templates"},
              "after": {k: v for k, v in ta.items() if k != "templates"}, "avg_score": tc_score,
              "avg_score_excluded": tc_excluded}
    return write_run(run, clip, method, s.preset, s.ablation, ctx, trace, seconds, dict(asdict(s)), {
        "dataset": request.dataset,
        "classes": request.class_names,
        "target_before": b["target"],
        "target_after": a["target"],
        "per_target": {c: {"before": b["per_target"][c], "after": a["per_target"][c]} for c in request.class_names},
        "other_classes_before": b["other_classes"],
        "other_classes_after": a["other_classes"],
        "datasets": {k: {"before": b["datasets"][k], "after": a["datasets"][k]} for k in b["datasets"]},
        "avg_score": avg,
        "avg_score_excluded": excluded,
        "retrieval": {"before": before["retrieval"], "after": after["retrieval"]} if s.retrieval else None,
        "template_change": tc,
        "error_analysis": error_analysis(before["logits"], after["logits"], t),
        "synthetic_acc_before": data.synthetic_scores_before[0] if data.synthetic_scores_before else None,
        "synthetic_acc_after": syn_after[0] if syn_after else None,
        "synthetic_prob_after": syn_after[1] if syn_after else None,
        "synthetic": None if syn is None else {
            "n": len(syn), "accepted": int(syn.accepted.sum()), "mean_prob": float(syn.probs.mean()),
            "final_threshold": syn.final_threshold, "source": s.synthetic or "generated"},
        "feature_cache": {"folder": s.cache_dir, "hits": evaluator.cache.hits, "misses": evaluator.cache.misses},
        "generation_config": syn.config if syn is not None else None,
    })


__all__ = ["ForgetSettings", "RunSettings", "SAVE_MODEL", "check_needs", "check_save_model", "forget", "format_step", "resolve_targets", "run_log",
           "Preempted", "run_method", "sigterm_as_interrupt", "synthetic_after", "trace_results", "write_run"]
