"""What a forget run measures before and after (WACV'25 §5.4, §5.8, §6.3): zero-shot accuracy on the
forgotten classes, the dataset's other classes and other datasets; retrieval precision@k
(image-from-text and image-from-image) over a database of every evaluated test image; and the same
accuracies under templates other than the ones used to forget.

All of it reads image features through the :class:`Evaluator`, so the retrieval and template-change
evaluations reuse the features the accuracies computed: they add text encodings and a few matrix
products, not image passes.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..data import CHANGED_TEMPLATES, ImageSet
from ..metrics import avg_score, precision_at_k, sensitivity_analysis
from .zeroshot import EvalResult, Evaluator

RETRIEVAL_KS = (1, 5, 10)


@dataclass
class Targets:
    """The test images of the request's dataset, the forgotten class indices and the other datasets."""

    images: ImageSet
    classes: list[int]
    others: list[ImageSet] = field(default_factory=list)


def evaluate_all(evaluator: Evaluator, t: Targets, templates: Sequence[str] | None = None) -> dict[str, EvalResult]:
    """Zero-shot logits of the request's dataset and of each other dataset, by dataset name."""
    return {s.name: evaluator.evaluate(s, templates) for s in (t.images, *t.others)}


def accuracies(evaluator: Evaluator, t: Targets, templates: Sequence[str] | None = None,
               results: dict[str, EvalResult] | None = None) -> dict[str, Any]:
    """Top-1 on the forgotten classes (together and each), the other classes (the classifier still
    holds the forgotten ones) and each other dataset; ``templates=None``: each dataset's own.
    ``results``: the :func:`evaluate_all` of the same model, when already computed."""
    results = results or evaluate_all(evaluator, t, templates)
    main = results[t.images.name]
    return {
        "target": main.accuracy(t.classes),
        "per_target": {main.classnames[c]: main.accuracy([c]) for c in t.classes},
        "other_classes": main.accuracy(exclude=t.classes),
        "datasets": {o.name: results[o.name].top1 for o in t.others},
    }


def error_analysis(before: dict[str, EvalResult], after: dict[str, EvalResult], t: Targets) -> dict[str, Any]:
    """The sensitivity analysis of WACV'25 App. D (Table 14) over every kept image: of the images
    that forgetting turned from right to wrong (the dataset's other classes and the other datasets),
    the share whose true class fell one rank, at most two ranks, and the mean standardised logit gap;
    per evaluation set and pooled (shares and gap weighted by the images turned wrong)."""
    out: dict[str, Any] = {}
    for name, b in before.items():
        a = after[name]
        keep = ~np.isin(b.labels, t.classes) if name == t.images.name else np.ones(b.n, bool)
        if not keep.any():
            continue
        label = "other_classes" if name == t.images.name else name
        # only the images turned from right to wrong enter the analysis: their logits are the ones read
        # (any one kept image when there are none, for the analysis to say so)
        turned = np.flatnonzero(keep & b.correct & ~a.correct)
        rows = turned if turned.size else np.flatnonzero(keep)[:1]
        out[label] = _finite(sensitivity_analysis(b.logits_of(rows), a.logits_of(rows), b.labels[rows]))
    n = sum(v["n_turned_wrong"] for v in out.values())
    pooled: dict[str, Any] = {"n_turned_wrong": n}
    for key in ("share_rank1", "share_rank_le2", "mean_std_logit_gap"):
        pooled[key] = (sum(v[key] * v["n_turned_wrong"] for v in out.values() if v["n_turned_wrong"]) / n
                       if n else None)
    out["pooled"] = pooled
    return out


def _finite(d: dict[str, Any]) -> dict[str, Any]:
    """NaN (no image turned wrong) written as None, so that results.json stays strict JSON."""
    return {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in d.items()}


def score(before: dict[str, Any], after: dict[str, Any]) -> tuple[float | None, list[str]]:
    """Avg. Score (Eq. 10) of two :func:`accuracies` results, and the columns left out because the
    model never recognised them before (before = 0 has no ratio). None when the target is such a column."""
    names = ["other_classes", *before["datasets"]]
    pairs = [(before["other_classes"], after["other_classes"])] + [
        (before["datasets"][k], after["datasets"][k]) for k in before["datasets"]]
    excluded = [n for n, (b, _) in zip(names, pairs) if not b > 0]
    kept = [p for p in pairs if p[0] > 0]
    if not before["target"] > 0:
        return None, ["target", *excluded]
    return avg_score((before["target"], after["target"]), kept), excluded


def template_change(evaluator: Evaluator, t: Targets,
                    templates: Sequence[str] = CHANGED_TEMPLATES) -> dict[str, Any]:
    """:func:`accuracies` under each of ``templates`` alone, and their mean (WACV'25 §6.3)."""
    each = [accuracies(evaluator, t, [tpl]) for tpl in templates]

    def mean(values: list[float]) -> float:
        return float(np.mean(values))

    return {
        "templates": list(templates),
        "target": mean([e["target"] for e in each]),
        "per_target": {c: mean([e["per_target"][c] for e in each]) for c in each[0]["per_target"]},
        "other_classes": mean([e["other_classes"] for e in each]),
        "datasets": {k: mean([e["datasets"][k] for e in each]) for k in each[0]["datasets"]},
    }


def retrieval(evaluator: Evaluator, t: Targets, ks: Sequence[int] = RETRIEVAL_KS,
              max_other_queries: int = 200, seed: int = 0) -> dict[str, Any]:
    """Precision@k over a database of every evaluated test image (the request's dataset and the
    other datasets), an image relevant when it has the query's dataset and class.

    * image from text (IfT): a query per class, the class's prompt embedding; reported for the
      forgotten classes and as the mean over the dataset's other classes;
    * image from image (IfI): each test image of a forgotten class as a query (itself excluded), and
      up to ``max_other_queries`` images of other classes (a seeded sample).
    Lower precision on the forgotten classes means less is retrieved of them.
    """
    sets = [t.images, *t.others]
    feats = torch.cat([evaluator.image_features(s) for s in sets]).float()
    labels = np.array([f"{s.name}/{s.classnames[y]}" for s in sets for y in s.labels])
    ks = [k for k in ks if k <= len(labels) - 1]
    main = t.images
    weights = evaluator.classifier(main.classnames, list(main.templates)).float().cpu()
    target_names = [f"{main.name}/{main.classnames[c]}" for c in t.classes]
    present = sorted(set(main.labels))
    others = [c for c in present if c not in set(t.classes)]

    def ift(classes: list[int]) -> dict[int, float]:
        sim = weights[classes] @ feats.T
        q = np.array([f"{main.name}/{main.classnames[c]}" for c in classes])
        return precision_at_k(q, labels, sim.numpy(), ks)

    def ifi(rows: list[int]) -> dict[int, float]:
        sim = (feats[rows] @ feats.T).numpy().astype(np.float64)
        sim[np.arange(len(rows)), rows] = sim.min() - 1.0  # a query never retrieves itself
        return precision_at_k(labels[rows], labels, sim, ks)

    main_labels = np.asarray(main.labels)
    target_rows = np.flatnonzero(np.isin(main_labels, t.classes)).tolist()
    other_rows = np.flatnonzero(~np.isin(main_labels, t.classes))
    if len(other_rows) > max_other_queries:
        pick = torch.randperm(len(other_rows), generator=torch.Generator().manual_seed(seed))[:max_other_queries]
        other_rows = np.sort(other_rows[pick.numpy()])
    out: dict[str, Any] = {"ks": ks, "database": {"images": len(labels), "datasets": [s.name for s in sets]},
                           "targets": target_names}
    out["ift"] = {"target": _keys(ift(t.classes)), "other_classes": _keys(ift(others)) if others else None}
    out["ifi"] = {"target": _keys(ifi(target_rows)) if target_rows else None,
                  "other_classes": _keys(ifi(other_rows.tolist())) if len(other_rows) else None,
                  "queries": {"target": len(target_rows), "other_classes": len(other_rows)}}
    return out


def _keys(d: dict[int, float]) -> dict[str, float]:
    return {str(k): v for k, v in d.items()}
