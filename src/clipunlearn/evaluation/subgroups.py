"""What a subgroup forget run measures before and after (CVPR'25 §5.1, Fig. 3-4): zero-shot accuracy
of each column of the setting (the forgotten subgroup, the retained subgroups, the measured-only
groups, each classified among the setting's vocabulary or its own dataset's classes) and of each
other dataset; the ratio Score over all columns; and text-to-image retrieval of the forgotten
subgroup by its coarse label and by its own name.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data import ImageSet, load_image_set
from ..data.subgroups import Column, SubgroupSetting, column_images
from ..errors import DataError
from ..metrics import ratio_score
from .zeroshot import Evaluator

RETRIEVAL_KS = (1, 5, 10)


@dataclass
class SubgroupTargets:
    """The test images of each column (labelled as the column is classified) and of each other dataset."""

    setting: SubgroupSetting
    columns: list[tuple[Column, ImageSet]]
    datasets: list[ImageSet]

    @property
    def database(self) -> list[ImageSet]:
        """The retrieval database: every column's images."""
        return [images for _, images in self.columns]


def resolve_subgroup_targets(setting: SubgroupSetting, data_root: str | None) -> SubgroupTargets:
    """The test images of the setting's columns and datasets; a missing dataset fails with the fix."""
    cols = [(c, column_images(c.subgroups, setting.vocabulary, data_root, "test", c.name)) for c in setting.columns()]
    found, missing = [], []
    for name in setting.measured_datasets():
        try:
            found.append(load_image_set(name, data_root, "test"))
        except DataError as e:
            missing.append(f"{name} ({str(e).split('.')[0]})")
    if missing:
        raise DataError(f"The data root lacks other dataset(s) the subgroup run measures: {'; '.join(missing)}. "
                        "Add them, or choose others with --other-datasets a,b (--other-datasets '' for none).")
    return SubgroupTargets(setting, cols, found)


def _templates(images: ImageSet, setting: SubgroupSetting) -> list[str]:
    """The setting's template for vocabulary columns; a dataset's own templates for its own classes."""
    return [setting.template] if list(images.classnames) == list(setting.vocabulary) else list(images.templates)


def subgroup_accuracies(evaluator: Evaluator, t: SubgroupTargets) -> dict[str, Any]:
    """``{"columns": {name: top-1}, "datasets": {name: top-1}, "n": {name: images}}``."""
    columns = {c.name: evaluator.evaluate(images, _templates(images, t.setting)).top1 for c, images in t.columns}
    datasets = {d.name: evaluator.evaluate(d).top1 for d in t.datasets}
    n = {**{c.name: len(images) for c, images in t.columns}, **{d.name: len(d) for d in t.datasets}}
    return {"columns": columns, "datasets": datasets, "n": n}


def subgroup_score(t: SubgroupTargets, before: dict[str, Any], after: dict[str, Any]
                   ) -> tuple[float | None, list[str]]:
    """CVPR'25 ratio Score ×100 over the columns and datasets (target: 1 − AF/BF; others min(1, AF/BF));
    columns the model never got right before (BF 0) are left out and named; None if the target is."""
    target = None
    others, excluded = [], []
    for c, _ in t.columns:
        pair = (before["columns"][c.name], after["columns"][c.name])
        if c.role == "forget":
            target = pair
        elif pair[0] > 0:
            others.append(pair)
        else:
            excluded.append(c.name)
    for name in before["datasets"]:
        pair = (before["datasets"][name], after["datasets"][name])
        (others.append(pair) if pair[0] > 0 else excluded.append(name))
    if target is None or target[0] <= 0:
        return None, ["target", *excluded]
    return 100.0 * ratio_score(target, others), excluded


def subgroup_retrieval(evaluator: Evaluator, t: SubgroupTargets, ks: Sequence[int] = RETRIEVAL_KS,
                       top: int = 8) -> dict[str, Any]:
    """Text-to-image retrieval over every column's test images, queried with the forgotten subgroups'
    coarse labels and with their own names (the setting's template): per query the share of the top k
    that are forgotten-subgroup images (``forget@k``) and that carry the query's coarse label
    (``label@k``), and the database rows of the ``top`` best matches (for the report's picture)."""
    with torch.no_grad():
        feats = torch.cat([evaluator.image_features(images) for images in t.database])
        is_forget = torch.cat([torch.full((len(images),), c.role == "forget") for c, images in t.columns])
        labels = [images.classnames[y] for images in t.database for y in images.labels]
        queries: dict[str, str | None] = {}
        for g in t.setting.forget:
            if g.coarse is not None:
                queries[g.coarse] = g.coarse
            queries[g.name] = g.coarse or g.name
        out: dict[str, Any] = {}
        for query, label in queries.items():
            text = evaluator.classifier([query], [t.setting.template]).to(feats.device)
            order = torch.argsort((feats @ text.T).squeeze(1), descending=True).tolist()
            row: dict[str, Any] = {}
            for k in ks:
                hits = order[:k]
                row[f"forget@{k}"] = float(is_forget[hits].float().mean())
                row[f"label@{k}"] = sum(labels[i] == label for i in hits) / max(1, len(hits))
            row["top"] = order[:top]
            out[query] = row
        return out


def database_paths(t: SubgroupTargets) -> list[str]:
    """The file of each retrieval database row (for the report's picture)."""
    return [str(p) for images in t.database for p in (images.paths or [])]


__all__ = ["RETRIEVAL_KS", "SubgroupTargets", "database_paths", "resolve_subgroup_targets", "subgroup_accuracies",
           "subgroup_retrieval", "subgroup_score"]
