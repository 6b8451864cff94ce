"""The forget pipeline behind ``clipunlearn forget``: generate (or reuse) the synthetic set, evaluate,
forget, evaluate again, and write the run folder atomically."""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..api import resolve_device
from ..data import ImageSet, load_image_set, paper_datasets
from ..errors import ClipUnlearnError, DataError
from ..evaluation import Evaluator, FeatureCache
from ..io import check_output_free, staged_dir, write_json
from ..methods import ForgetRequest, apply_options, get_method
from ..metrics import avg_score
from ..models import Clip, load_clip
from ..synthetic import (
    GenerationConfig,
    SyntheticSet,
    check_synthetic_fits,
    generate_synthetic,
    load_synthetic,
    save_synthetic,
)

log = logging.getLogger("clipunlearn")


@dataclass
class ForgetSettings:
    model: str
    dataset: str
    classes: list[str]
    out: str
    data_root: str | None = None
    pretrained: str | None = "default"
    weights: str | None = None
    other_datasets: list[str] | None = None
    synthetic: str | None = None
    method: str = "lip"
    preset: str = "default"
    seed: int = 0
    device: str = "cpu"
    n_per_class: int = 64
    overwrite: bool = False
    progress: bool = True
    max_epochs: int | None = None
    generation_max_steps: int | None = None
    options: dict[str, Any] = field(default_factory=dict)  # fields of the method's config, over the preset
    cache_dir: str | None = None  # keep image features here, so later runs skip the unchanged layers


@dataclass
class Targets:
    images: ImageSet
    classes: list[int]
    others: list[ImageSet] = field(default_factory=list)


def resolve_targets(s: ForgetSettings) -> Targets:
    """Find the dataset, the classes and the other datasets, failing before any compute."""
    if not s.classes:
        raise ClipUnlearnError("The class list is empty. Pass --classes \"name\" (comma-separated for several).")
    images = load_image_set(s.dataset, s.data_root, "test")
    classes = [images.class_index(c) for c in s.classes]
    if len(set(classes)) != len(classes):
        raise ClipUnlearnError(f"A class is named twice in {s.classes}.")
    if s.other_datasets is None:
        others = [d for d in paper_datasets() if d != images.name]
    else:
        others = [d for d in s.other_datasets if d != images.name]
    found, missing = [], []
    for name in others:
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


def _generation_progress(enabled: bool):
    if not enabled:
        return None, lambda: None
    from tqdm.auto import tqdm

    bar = tqdm(desc="generating", unit="img", leave=False)

    def update(info: dict) -> None:
        bar.total = info["total"]
        bar.n = info["accepted"]
        bar.set_postfix(step=info["step"], thr=f"{info['threshold']:.3f}", p=f"{info['mean_prob']:.2f}")
        bar.refresh()

    return update, bar.close


def make_synthetic(clip: Clip, request: ForgetRequest, config: GenerationConfig, progress: bool) -> SyntheticSet:
    update, close = _generation_progress(progress)
    try:
        return generate_synthetic(clip, request.classnames, request.classes, request.dataset, request.template,
                                  config, update)
    finally:
        close()


def evaluate_all(evaluator: Evaluator, t: Targets) -> dict[str, Any]:
    main = evaluator.evaluate(t.images)
    per_target = {main.classnames[c]: main.accuracy([c]) for c in t.classes}
    return {
        "target": main.accuracy(t.classes),
        "per_target": per_target,
        "other_classes": main.accuracy(exclude=t.classes),
        "datasets": {o.name: evaluator.evaluate(o).top1 for o in t.others},
        "_result": main,
    }


def forget(s: ForgetSettings) -> dict[str, Any]:
    """Run the whole pipeline; returns the results written to ``s.out``/results.json."""
    check_output_free(s.out, s.overwrite, "run folder")
    device = resolve_device(s.device)
    method_cls = get_method(s.method)
    t = resolve_targets(s)
    torch.manual_seed(s.seed)
    clip = load_clip(s.model, s.pretrained, s.weights, device)
    config = method_cls.preset(s.preset, clip.family)
    config.seed = s.seed
    if s.max_epochs is not None:
        config.max_epochs = s.max_epochs
    if s.generation_max_steps is not None and hasattr(config, "retain_steps"):
        config.retain_steps = min(config.retain_steps, s.generation_max_steps)  # the budget caps retain images too
    apply_options(config, s.options)
    request = ForgetRequest(t.images.name, t.images.classnames, t.classes, t.images.templates[0])
    with staged_dir(s.out, s.overwrite) as run:
        handler = logging.FileHandler(run / "log.txt", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        log.addHandler(handler)
        try:
            results = _forget_in(run, s, t, clip, method_cls, config, request)
        finally:
            log.removeHandler(handler)
            handler.close()
    return results


def _forget_in(run: Path, s: ForgetSettings, t: Targets, clip: Clip, method_cls, config, request) -> dict[str, Any]:
    seconds = {"generation": 0.0, "forgetting": 0.0, "evaluation": 0.0}
    log.info(f"model {clip.arch} ({clip.source}), forgetting {request.class_names} of {request.dataset} "
             f"with {method_cls.name} ({s.preset} preset)")
    synthetic = None
    if method_cls.needs_synthetic:
        if s.synthetic:
            synthetic = load_synthetic(s.synthetic)
            check_synthetic_fits(synthetic, clip.arch, request.dataset, request.class_names)
            log.info(f"reusing {len(synthetic)} synthetic images from {s.synthetic}")
        else:
            gcfg = GenerationConfig(n_per_class=s.n_per_class, seed=s.seed)
            if s.generation_max_steps is not None:
                gcfg.max_steps = s.generation_max_steps
            synthetic = make_synthetic(clip, request, gcfg, s.progress)
            seconds["generation"] = synthetic.seconds
            log.info(f"generated {len(synthetic)} images, {int(synthetic.accepted.sum())} accepted, "
                     f"threshold {synthetic.final_threshold:.3f}, {synthetic.seconds:.1f}s")
        save_synthetic(synthetic, run / "synthetic.safetensors")

    evaluator = Evaluator(clip, FeatureCache(s.cache_dir), progress=s.progress)
    t0 = time.time()
    before = evaluate_all(evaluator, t)
    seconds["evaluation"] += time.time() - t0
    log.info(f"before: target {before['target']:.3f}, other classes {before['other_classes']:.3f}, "
             + ", ".join(f"{k} {v:.3f}" for k, v in before["datasets"].items()))

    def on_step(row: dict) -> None:
        log.info(f"epoch {row['epoch']:2d}  stage {row['stage']} σ={row['sigma']} k={row['k_img']}/{row['k_txt']}  "
                 f"loss {row['loss']:.4f}  "
                 + (f"retain KL {row['retain_kl']:.4f}  " if row.get("retain_kl") is not None else "")
                 + f"synthetic acc {row['synthetic_acc']:.3f}  "
                 f"p(target) {row['target_prob']:.3f}  {'kept' if row['kept'] else 'reverted'}")

    method = method_cls(config)
    trace = method.run(clip, request, synthetic, on_step)
    seconds["forgetting"] = trace.seconds
    if trace.steps and "retain_images" in trace.steps[0]:
        log.info(f"retain term: {trace.steps[0]['retain_images']} synthetic images of classes to keep, "
                 f"made in {trace.steps[0]['retain_seconds']:.1f}s")
    log.info(f"stopped: {trace.stopped_because} after {trace.epochs} epochs ({trace.seconds:.1f}s)")

    t0 = time.time()
    after = evaluate_all(evaluator, t)
    seconds["evaluation"] += time.time() - t0
    log.info(f"after: target {after['target']:.3f}, other classes {after['other_classes']:.3f}, "
             + ", ".join(f"{k} {v:.3f}" for k, v in after["datasets"].items()))
    others = [(before["other_classes"], after["other_classes"])] + [
        (before["datasets"][k], after["datasets"][k]) for k in before["datasets"]]
    # a column the model never recognised (before = 0) has no ratio: it is left out and named
    excluded = [name for name, (b, _) in zip(["other_classes", *before["datasets"]], others) if b <= 0]
    kept_cols = [pair for pair in others if pair[0] > 0]
    if before["target"] > 0:
        score = avg_score((before["target"], after["target"]), kept_cols)
    else:
        score = float("nan")
        excluded.insert(0, "target")
        log.warning("the model never recognised the target before forgetting: the Avg. Score is undefined")
    syn_after = method_cls.synthetic_scores(clip, synthetic, request.template) if synthetic is not None else None
    syn_before = trace.steps[0] if trace.steps else {}
    clip.save(run / "model.safetensors")
    results: dict[str, Any] = {
        "model": {"arch": clip.arch, "source": clip.source, "family": clip.family},
        "method": method_cls.name,
        "preset": s.preset,
        "dataset": request.dataset,
        "classes": request.class_names,
        "target_before": before["target"],
        "target_after": after["target"],
        "per_target": {c: {"before": before["per_target"][c], "after": after["per_target"][c]}
                       for c in request.class_names},
        "other_classes_before": before["other_classes"],
        "other_classes_after": after["other_classes"],
        "datasets": {k: {"before": before["datasets"][k], "after": after["datasets"][k]} for k in before["datasets"]},
        "avg_score": score,
        "avg_score_excluded": excluded,
        "synthetic_acc_before": syn_before.get("synthetic_acc"),
        "synthetic_acc_after": syn_after[0] if syn_after else None,
        "synthetic_prob_after": syn_after[1] if syn_after else None,
        "synthetic": None if synthetic is None else {
            "n": len(synthetic), "accepted": int(synthetic.accepted.sum()),
            "mean_prob": float(synthetic.probs.mean()), "final_threshold": synthetic.final_threshold,
            "source": s.synthetic or "generated"},
        "epochs": trace.epochs,
        "stage_reached": trace.stage_reached,
        "stopped_because": trace.stopped_because,
        "kept_any_step": trace.kept_any_step,
        "changed_tensors": trace.changed_tensors,
        "selected_tensors": [{"epoch": r["epoch"], "kept": r["kept"], "tensors": r["selected"]}
                             for r in trace.steps if "selected" in r],
        "steps": [{k: v for k, v in r.items() if k != "selected"} for r in trace.steps],
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "feature_cache": {"folder": s.cache_dir, "hits": evaluator.cache.hits, "misses": evaluator.cache.misses},
        "settings": {k: v for k, v in asdict(s).items()},
        "method_config": config.to_json() if hasattr(config, "to_json") else asdict(config),
        "generation_config": synthetic.config if synthetic is not None else None,
        "torch": torch.__version__,
    }
    write_json(run / "results.json", results)
    from .report import write_report

    write_report(run)
    return results


__all__ = ["ForgetSettings", "evaluate_all", "forget", "make_synthetic", "resolve_targets"]
