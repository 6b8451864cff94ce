"""Forget what a user names (``clipunlearn forget --concept NAME``): a concept that need not be a class
of any dataset, among a vocabulary of names to keep, checked on the user's own photos when given.

The request reaches a method as an ordinary :class:`ForgetRequest`: its class names are the kept
names of the vocabulary and the concepts, its forgotten classes the concepts. A concept already in
the vocabulary is forgotten where it stands (one class list, the vocabulary's). The run measures:

* with ``--images DIR`` (the user's photos of the concept, no labels): the share of them the model
  calls by a forgotten concept, before and after; the photos are also what a method allowed real
  forget images gets;
* with ``--retain-images DIR`` (photos to keep, no labels): the share whose top-1 name after is the
  one before (``retain agreement``); a method allowed real retain images gets them labelled by the
  original model's top-1 among the kept names;
* without ``--images``: only the synthetic images of the concept, and the report says so first;
* ``--other-datasets``: zero-shot on their own classes, as a class run.
"""
from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import ImageSet, load_image_set
from ..data.vocabularies import FolderImages, Vocabulary, image_folder, load_vocabulary
from ..errors import ClipUnlearnError, DataError
from ..evaluation import Evaluator, FeatureCache
from ..io import check_output_free, staged_dir
from ..methods import (
    ForgetRequest,
    ImageBatch,
    Method,
    get_method,
)
from ..metrics import avg_score
from ..models import Clip, load_clip, resolve_device
from ..precision import computing, parse_precision
from ..synthetic import SyntheticSet
from .data import RunData, decode
from .pipeline import (
    RunSettings,
    _info,
    check_save_model,
    run_log,
    run_method,
    sigterm_as_interrupt,
    synthetic_after,
    write_run,
)

log = logging.getLogger("clipunlearn")


@dataclass
class ConceptSettings(RunSettings):
    """A concept request: forget the names ``concepts`` among a vocabulary's."""

    model: str
    concepts: list[str]
    out: str
    vocabulary: str = "imagenet"
    images: str | None = None  # the user's photos of the concept(s)
    retain_images: str | None = None  # the user's photos of what to keep
    other_datasets: list[str] = field(default_factory=list)


@dataclass
class ConceptRequest:
    vocabulary: Vocabulary
    classnames: list[str]
    concepts: list[int]  # indices into classnames
    in_vocabulary: list[str]  # concepts that were already names of the vocabulary
    template: str  # the prompt the method forgets with
    images: FolderImages | None
    retain: FolderImages | None


def build_request(s: ConceptSettings) -> ConceptRequest:
    """The class list, the concepts' indices and the user's folders, failing before any compute."""
    concepts = list(dict.fromkeys(c.strip() for c in s.concepts if c.strip()))
    if not concepts:
        raise ClipUnlearnError("--concept is empty; name what to forget, e.g. --concept \"Gal Gadot\".")
    vocab = load_vocabulary(s.vocabulary, s.data_root)
    known = [c for c in concepts if c in vocab.names]
    for c in known:
        log.warning(f"{c!r} is a name of the vocabulary {vocab.name}: it is forgotten where it stands, not kept.")
    classnames = list(vocab.names) + [c for c in concepts if c not in vocab.names]
    indices = [classnames.index(c) for c in concepts]
    template = vocab.forget_template
    images = image_folder(s.images, indices[0], classnames, "concept images") if s.images else None
    retain = image_folder(s.retain_images, 0, classnames, "retain images") if s.retain_images else None
    for what, folder in (("--images", images), ("--retain-images", retain)):
        if folder is not None and folder.skipped:
            log.warning(f"{what}: {len(folder.skipped)} file(s) could not be read and are skipped, e.g. "
                        f"{folder.skipped[0]}")
    return ConceptRequest(vocab, classnames, indices, known, template, images, retain)


@dataclass
class ConceptData(RunData):
    """The run's data source with the user's folders as real images: the concept photos labelled by the
    first concept, the retain photos by the original model's top-1 among the kept names."""

    concept: ConceptRequest | None = None
    retain_labels: torch.Tensor | None = None  # set by the run before the method starts

    def real_forget(self, request: ForgetRequest, per_class: int | None = None) -> ImageBatch:
        assert self.concept is not None
        if self.concept.images is None:
            raise DataError("This method forgets with real images of the concept; pass --images DIR (photos of "
                            "it), or choose a zero-shot method (clipunlearn methods).")
        return self._remember(("real_forget", per_class), lambda: self._folder(self.concept.images.images, None,
                                                                                per_class, "concept photos"))

    def real_retain(self, request: ForgetRequest, per_class: int | None = None) -> ImageBatch:
        assert self.concept is not None
        if self.concept.retain is None or self.retain_labels is None:
            raise DataError("This method keeps knowledge with real retain images; pass --retain-images DIR "
                            "(photos of what to keep), or choose a method without them (clipunlearn methods).")
        return self._remember(("real_retain", per_class), lambda: self._folder(
            self.concept.retain.images, self.retain_labels, None, "retain photos, labelled by the original model"))

    def _folder(self, images: ImageSet, labels: torch.Tensor | None, cap: int | None, source: str) -> ImageBatch:
        t0 = time.time()
        rows = list(range(len(images)))
        if cap is not None and len(rows) > cap:
            rows = sorted(torch.randperm(len(rows), generator=torch.Generator().manual_seed(self.seed + 13))[:cap].tolist())
        y = torch.tensor([images.labels[i] for i in rows]) if labels is None else labels[rows]
        batch = ImageBatch(decode(images, rows, self.clip), y.long(), list(images.classnames), source)
        self.seconds["data"] += time.time() - t0
        return batch


def _called_concept(logits: np.ndarray, concepts: list[int]) -> float:
    return float(np.isin(logits.argmax(1), concepts).mean())


def _measure(evaluator: Evaluator, r: ConceptRequest, others: list[ImageSet]) -> dict[str, Any]:
    templates = list(r.vocabulary.templates)
    out: dict[str, Any] = {"datasets": {d.name: evaluator.evaluate(d).top1 for d in others}}
    if r.images is not None:
        out["concept"] = _called_concept(evaluator.evaluate(r.images.images, templates).logits, r.concepts)
    if r.retain is not None:
        out["retain_top1"] = evaluator.evaluate(r.retain.images, templates).logits.argmax(1)
    return out


def forget_concept(s: ConceptSettings) -> dict[str, Any]:
    """Run the concept pipeline; returns the results written to ``s.out``/results.json."""
    check_output_free(s.out, s.overwrite, "run folder")
    check_save_model(s.save_model)
    parse_precision(s.precision)
    device = resolve_device(s.device)
    r = build_request(s)
    others = [load_image_set(d, s.data_root, "test") for d in s.other_datasets]
    method_cls = get_method(s.method)
    early = method_cls(method_cls.build_config(s.preset, "resnet", s.ablation, s.options))
    early.check_classes([r.classnames[c] for c in r.concepts])
    kinds = early.data_kinds
    if "real_forget" in kinds and r.images is None:
        raise ClipUnlearnError(f"Method {s.method} forgets with real images of the concept; pass --images DIR, or "
                               "choose a zero-shot method such as lip (clipunlearn methods).")
    if "real_retain" in kinds and r.retain is None:
        raise ClipUnlearnError(f"Method {s.method} keeps knowledge with real retain images; pass --retain-images "
                               "DIR, or choose a method without them (clipunlearn methods).")
    torch.manual_seed(s.seed)
    clip = load_clip(s.model, s.pretrained, s.weights, device)
    method = method_cls(method_cls.build_config(s.preset, clip.family, s.ablation, s.options))
    request = ForgetRequest("concept", r.classnames, r.concepts, r.template)
    with sigterm_as_interrupt(), staged_dir(s.out, s.overwrite) as run, run_log(run), computing(s.precision, device):
        return _forget_in(run, s, r, others, clip, method, request)


def _concept_score(before: float | None, after: float | None, datasets: dict[str, dict[str, float]],
                   agreement: float | None) -> float | None:
    """The Avg. Score of a concept run: the concept's photos before -> after against every other
    dataset kept and, with retain photos, their agreement with the original model (1.0 before);
    None without concept photos."""
    if not before:
        return None
    kept_pairs = [(v["before"], v["after"]) for v in datasets.values() if v["before"] > 0]
    if agreement is not None:
        kept_pairs.append((1.0, agreement))
    return avg_score((before, after), kept_pairs)


def _measured(s: ConceptSettings, r: ConceptRequest, syn: SyntheticSet | None, others: list[ImageSet]) -> dict[str, Any]:
    """What the run measured on: the user's concept and retain photos (with the files skipped), the
    synthetic images and the other datasets' sizes."""
    def photos(folder: str | None, found: FolderImages | None) -> dict[str, Any] | None:
        return None if found is None else {"folder": folder, "n": len(found.images), "skipped": len(found.skipped),
                                           "skipped_files": found.skipped[:20]}

    return {"concept images": photos(s.images, r.images), "retain images": photos(s.retain_images, r.retain),
            "synthetic images": None if syn is None else {"n": len(syn)},
            "other datasets": {d.name: len(d) for d in others}}


def _forget_in(run: Path, s: ConceptSettings, r: ConceptRequest, others: list[ImageSet], clip: Clip, method: Method,
               request: ForgetRequest) -> dict[str, Any]:
    seconds = {"generation": 0.0, "forgetting": 0.0, "evaluation": 0.0}
    names = [r.classnames[i] for i in r.concepts]
    _info(f"model {clip.arch} ({clip.source}), forgetting {names} among {len(r.classnames)} names "
          f"(vocabulary {r.vocabulary.name}) with {method.name}")
    evaluator = Evaluator(clip, FeatureCache(s.cache_dir), progress=s.progress)
    t0 = time.time()
    before = _measure(evaluator, r, others)
    seconds["evaluation"] += time.time() - t0
    data = ConceptData(clip, s.data_root, seed=s.seed, n_per_class=s.n_per_class, max_steps=s.generation_max_steps,
                       progress=s.progress, concept=r)
    if r.retain is not None:  # pseudo-labels: the original model's top-1 among the kept names
        kept = [i for i in range(len(r.classnames)) if i not in set(r.concepts)]
        logits = evaluator.evaluate(r.retain.images, list(r.vocabulary.templates)).logits
        data.retain_labels = torch.tensor(np.asarray(kept)[logits[:, kept].argmax(1)])
    trace, ctx = run_method(method, clip, request, data, s.seed, s.max_epochs, s.generation_max_steps, seconds)
    t0 = time.time()
    with evaluator.cache.in_memory_only():  # no later run starts from this model
        after = _measure(evaluator, r, others)
    seconds["evaluation"] += time.time() - t0
    syn = data.synthetic
    syn_after = synthetic_after(data, clip, request.template, run)
    agreement = None
    if r.retain is not None:
        agreement = float((before["retain_top1"] == after["retain_top1"]).mean())
    datasets = {k: {"before": before["datasets"][k], "after": after["datasets"][k]} for k in before["datasets"]}
    score = _concept_score(before.get("concept"), after.get("concept"), datasets, agreement)
    measured = _measured(s, r, syn, others)
    return write_run(run, clip, method, s.preset, s.ablation, ctx, trace, seconds, dict(asdict(s)), {
        "task": "concept",
        "concepts": names,
        "vocabulary": {"name": r.vocabulary.name, "names": len(r.vocabulary.names), "source": r.vocabulary.source,
                       "templates": len(r.vocabulary.templates), "concepts_in_vocabulary": r.in_vocabulary},
        "measured": measured,
        # the class-run fields: the target is the share of the user's photos called by a concept (None
        # without --images), "other classes" the retain photos' agreement with the original model
        "dataset": f"concept ({r.vocabulary.name})",
        "classes": names,
        "target_before": before.get("concept"),
        "target_after": after.get("concept"),
        "per_target": {},
        "other_classes_before": 1.0 if agreement is not None else None,
        "other_classes_after": agreement,
        "datasets": datasets,
        "avg_score": score,
        "avg_score_excluded": [],
        "retrieval": None,
        "template_change": None,
        "error_analysis": None,
        "synthetic_acc_before": data.synthetic_scores_before[0] if data.synthetic_scores_before else None,
        "synthetic_acc_after": syn_after[0] if syn_after else None,
        "synthetic_prob_after": syn_after[1] if syn_after else None,
        "synthetic": None if syn is None else {
            "n": len(syn), "accepted": int(syn.accepted.sum()), "mean_prob": float(syn.probs.mean()),
            "final_threshold": syn.final_threshold, "source": "generated"},
    })


__all__ = ["ConceptData", "ConceptRequest", "ConceptSettings", "build_request", "forget_concept"]
