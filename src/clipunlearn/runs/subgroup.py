"""The subgroup forget pipeline (CVPR'25): ``clipunlearn forget --setting ...`` or
``--forget-subgroup ... --retain-subgroups ... --coarse-label ...``.

A subgroup request reaches a method as an ordinary :class:`ForgetRequest` whose class names are the
setting's vocabulary (coarse labels) and whose forgotten class is the subgroup's coarse label; the
run's data source hands ``real_forget`` = the forgotten subgroup's train images and ``real_retain`` =
the retained subgroups' train images, both labelled by coarse label. So every registered method runs
on a subgroup request, and one that sees only names (synthetic images of "flower") forgets the whole
coarse class: that is the point of the paper's comparison. The run measures each column of the
setting and each other dataset before and after (``evaluation.subgroups``) and writes the usual run
folder (results.json with ``task = "subgroup"``, model.safetensors, report.md, log.txt).
"""
from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..data import ImageSet
from ..data.subgroups import Subgroup, SubgroupSetting, check_setting, column_images, get_setting
from ..errors import ClipUnlearnError
from ..evaluation import Evaluator, FeatureCache
from ..evaluation.subgroups import (
    SubgroupTargets,
    database_paths,
    resolve_subgroup_targets,
    subgroup_accuracies,
    subgroup_retrieval,
    subgroup_score,
)
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
from .data import RunData, decode
from .pipeline import (
    RunSettings,
    _info,
    check_save_model,
    run_log,
    run_method,
    sigterm_as_interrupt,
    write_run,
)


@dataclass
class SubgroupSettings(RunSettings):
    """A subgroup request: a shipped setting's name or a built one (data.subgroups.custom_setting)."""

    model: str
    setting: SubgroupSetting | str
    out: str
    method: str = field(default="forget-remind-restore", kw_only=True)
    retrieval: bool = True
    other_datasets: list[str] | None = None  # measured over their own classes (None: the setting's)


@dataclass
class SubgroupData(RunData):
    """The run's data source with real images from the setting's subgroups (train split): each
    subgroup sampled on its own (``per_class`` images per subgroup), labelled by coarse label."""

    setting: SubgroupSetting | None = None

    def real_forget(self, request: ForgetRequest, per_class: int | None = None) -> ImageBatch:
        assert self.setting is not None
        return self._remember(("real_forget", per_class), lambda: self._subgroups("forget", per_class))

    def real_retain(self, request: ForgetRequest, per_class: int | None = None) -> ImageBatch:
        assert self.setting is not None
        return self._remember(("real_retain", per_class), lambda: self._subgroups("retain", per_class))

    def _subgroups(self, which: str, per_class: int | None) -> ImageBatch:
        assert self.setting is not None
        t0 = time.time()
        groups = self.setting.forget if which == "forget" else self.setting.retain
        gen = torch.Generator().manual_seed(self.seed + (11 if which == "forget" else 12))
        images, labels, counts = [], [], {}
        for g in groups:
            part: ImageSet = column_images([g], self.setting.vocabulary, self.data_root, "train", g.label)
            rows = list(range(len(part)))
            if per_class is not None and len(rows) > per_class:
                rows = sorted(torch.randperm(len(rows), generator=gen)[:per_class].tolist())
            images.append(decode(part, rows, self.clip))
            labels += [part.labels[i] for i in rows]
            counts[g.label] = len(rows)
        self.seconds["data"] += time.time() - t0
        return ImageBatch(torch.cat(images), torch.tensor(labels, dtype=torch.long), list(self.setting.vocabulary),
                          f"{self.setting.name} train ({which} subgroups)", {"per_subgroup": counts})


@dataclass(frozen=True)
class StyleRecipe:
    """How a model first learns the styled images (CVPR'25 §5.4: "We first fine-tune the CLIP on images
    with different styles"; the paper gives no recipe, these are ours): Adam over the whole image tower
    on the styled images and the class's photos with the zero-shot cross-entropy of their coarse label,
    plus ``anchor_weight`` × the squared distance of other classes' images' features (``anchor_per_class``
    train images of each other class of the dataset) to the original model's, so that learning one
    class in new styles does not turn every image into it."""

    lr: float = 1e-5
    epochs: int = 5
    batch_size: int = 32
    anchor_per_class: int = 2
    anchor_weight: float = 100.0


STYLE_RECIPE = StyleRecipe()


@dataclass
class _StyleData:
    """What the style fine-tuning reads: every subgroup's train images under its coarse label, and
    plain photos of the dataset's other classes with their features before (the anchor)."""
    groups: list[Subgroup]
    sets: list[ImageSet]
    images: torch.Tensor
    labels: torch.Tensor
    anchors: torch.Tensor
    anchor_feats: torch.Tensor


def _style_data(clip: Clip, setting: SubgroupSetting, data_root: str | None, seed: int,
                recipe: StyleRecipe) -> _StyleData:
    from ..data import load_image_set
    from .data import sample_per_class

    groups = [*setting.forget, *setting.retain, *(g for c in setting.keep for g in c.subgroups)]
    sets = [column_images([g], setting.vocabulary, data_root, "train", g.label) for g in groups]
    images = torch.cat([decode(x, list(range(len(x))), clip) for x in sets])
    labels = torch.tensor([y for x in sets for y in x.labels], dtype=torch.long)
    plain = load_image_set(groups[0].dataset, data_root, "train")
    others = [c for c in range(len(plain.classnames)) if plain.classnames[c] not in {g.name for g in groups}]
    anchors = decode(plain, sample_per_class(plain.labels, others, recipe.anchor_per_class, seed), clip)
    with torch.no_grad():
        anchor_feats = torch.cat([F.normalize(clip.encode_image(anchors[i:i + 64].to(clip.device)), dim=-1)
                                  for i in range(0, len(anchors), 64)])
    return _StyleData(groups, sets, images, labels, anchors, anchor_feats)


def _fine_tune_styles(clip: Clip, setting: SubgroupSetting, data: _StyleData, seed: int,
                      recipe: StyleRecipe) -> dict[str, Any]:
    """The image tower trained on the styled subgroups' coarse labels (cross-entropy against the
    vocabulary's prompts) while the anchors' features stay where they were (squared drift)."""
    from ..evaluation.zeroshot import image_scores
    from ..training import KeepRule, Loop, OptimConfig, StopRule, run_loop, tower_tensors
    from ..training.finetune import class_features
    from ..training.relabel import ShuffledBatches, zero_shot_logits

    images, labels, anchors = data.images, data.labels, data.anchors
    text = class_features(clip, list(setting.vocabulary), setting.template)
    batches = ShuffledBatches(len(images), recipe.batch_size, torch.Generator().manual_seed(seed + 31))
    anchor_batches = ShuffledBatches(len(anchors), recipe.batch_size, torch.Generator().manual_seed(seed + 32))

    def step(stage, epoch: int, s: int):
        idx = batches.indices(s)
        ce = F.cross_entropy(zero_shot_logits(clip, images[idx].to(clip.device), text), labels[idx].to(text.device))
        a = anchor_batches.indices(s % anchor_batches.steps)
        drift = (F.normalize(clip.encode_image(anchors[a].to(clip.device)), dim=-1) - data.anchor_feats[a]).pow(2).sum(-1)
        return ce + recipe.anchor_weight * drift.mean(), {"ce": float(ce.detach()), "drift": float(drift.detach().mean())}

    def styled_acc() -> dict[str, float]:  # per group, the train images' top-1 under the coarse label
        out, start = {}, 0
        for g, x in zip(data.groups, data.sets):
            out[g.label] = round(image_scores(clip, images[start:start + len(x)], labels[start:start + len(x)],
                                              list(setting.vocabulary), [setting.template])[0], 4)
            start += len(x)
        return out

    loop = Loop(towers=tower_tensors(clip.model, "all", image=True, text=False),
                optim=OptimConfig("adam", recipe.lr, (0.9, 0.999), 1e-8), max_epochs=recipe.epochs,
                steps_per_epoch=batches.steps, keep=KeepRule(), stop=StopRule())
    before = styled_acc()
    trace = run_loop(clip, loop, step)
    return {"train_acc_before": before, "train_acc_after": styled_acc(),
            "steps": [{k: round(v, 4) for k, v in r.items() if k in ("ce", "drift")} for r in trace.steps[1:]]}


def prepare_model(clip: Clip, setting: SubgroupSetting, data_root: str | None, cache_dir: str | None,
                  seed: int = 0, recipe: StyleRecipe = STYLE_RECIPE) -> dict[str, Any] | None:
    """Make ``clip`` the model a setting starts from, in place: for ``prepare = "fine-tune-styles"``,
    the image tower fine-tuned as :class:`StyleRecipe` says on every styled subgroup and the class's
    plain photos (train split). The result is kept in ``cache_dir``/prepared by content (model
    weights, setting, recipe, seed), so the cells of a suite fine-tune once."""
    if setting.prepare is None:
        return None
    if setting.prepare != "fine-tune-styles":
        raise ClipUnlearnError(f"Unknown preparation {setting.prepare!r} of setting {setting.name}; the known one "
                               "is fine-tune-styles.")
    from safetensors.torch import load_file

    from ..evaluation import hash_tensors

    info: dict[str, Any] = {"prepare": setting.prepare, "recipe": asdict(recipe)}
    key = hashlib.blake2b(repr((hash_tensors(clip.model, lambda n: True), setting.to_json(), info, seed)).encode(),
                          digest_size=12).hexdigest()
    info["key"] = key
    cached = Path(cache_dir) / "prepared" / f"{key}.safetensors" if cache_dir else None
    if cached is not None and cached.is_file():
        clip.model.load_state_dict(load_file(str(cached)))
        return {**info, "cached": True}
    t0 = time.time()
    data = _style_data(clip, setting, data_root, seed, recipe)
    trained = _fine_tune_styles(clip, setting, data, seed, recipe)
    if cached is not None:
        clip.save(cached)
    steps = trained.pop("steps")
    return {**info, **trained, "cached": False, "images": len(data.labels), "anchor_images": len(data.anchors),
            "seconds": round(time.time() - t0, 2), "steps": steps}


def resolve_setting(setting: SubgroupSetting | str, data_root: str | None,
                    other_datasets: list[str] | None = None) -> SubgroupSetting:
    """The shipped or built setting, with ``other_datasets`` instead of its own when given, checked."""
    s = get_setting(setting) if isinstance(setting, str) else setting
    if other_datasets is not None:
        s = replace(s, other_datasets=tuple(other_datasets))
    check_setting(s, data_root)
    return s


def forget_subgroup(s: SubgroupSettings) -> dict[str, Any]:
    """Run the subgroup pipeline; returns the results written to ``s.out``/results.json."""
    check_output_free(s.out, s.overwrite, "run folder")
    check_save_model(s.save_model)
    parse_precision(s.precision)
    device = resolve_device(s.device)
    setting = resolve_setting(s.setting, s.data_root, s.other_datasets)
    method_cls = get_method(s.method)
    # a bad option or setting of the method is refused before the model loads (as in the class pipeline)
    method_cls(method_cls.build_config(s.preset, "resnet", s.ablation, s.options)).check_classes(setting.coarse_labels)
    targets = resolve_subgroup_targets(setting, s.data_root)
    torch.manual_seed(s.seed)
    clip = load_clip(s.model, s.pretrained, s.weights, device)
    prepared = prepare_model(clip, setting, s.data_root, s.cache_dir, s.seed)
    method = method_cls(method_cls.build_config(s.preset, clip.family, s.ablation, s.options))
    request = ForgetRequest(setting.name, list(setting.vocabulary),
                            [list(setting.vocabulary).index(c) for c in setting.coarse_labels], setting.template)
    # the setting's starting model (prepared above, cached by content) is made in fp32 whatever the precision
    with sigterm_as_interrupt(), staged_dir(s.out, s.overwrite) as run, run_log(run), computing(s.precision, device):
        return _forget_in(run, s, setting, targets, clip, method, request, prepared)


def _measure(evaluator: Evaluator, t: SubgroupTargets, s: SubgroupSettings) -> dict[str, Any]:
    out = subgroup_accuracies(evaluator, t)
    if s.retrieval:
        out["retrieval"] = subgroup_retrieval(evaluator, t)
    return out


def _describe(m: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:.3f}" for k, v in {**m["columns"], **m["datasets"]}.items())


def _kept_columns_and_avg_score(t: SubgroupTargets, before: dict[str, Any],
                                after: dict[str, Any]) -> tuple[dict[str, dict[str, float]], float | None]:
    """The measured-only columns and other datasets, before and after, and the WACV Avg. Score of the
    forgotten subgroup against the retained subgroups and those (None if the target was never known)."""
    b, a = before["columns"], after["columns"]
    keep_cols = [c.name for c, _ in t.columns if c.role == "keep" and c.name != "retain"]
    datasets = {**{k: {"before": b[k], "after": a[k]} for k in keep_cols},
                **{k: {"before": before["datasets"][k], "after": after["datasets"][k]} for k in before["datasets"]}}
    others = [(v["before"], v["after"]) for v in [{"before": b["retain"], "after": a["retain"]}, *datasets.values()]
              if v["before"] > 0]
    return datasets, (avg_score((b["target"], a["target"]), others) if b["target"] > 0 else None)


def _forget_in(run: Path, s: SubgroupSettings, setting: SubgroupSetting, t: SubgroupTargets, clip: Clip,
               method: Method, request: ForgetRequest, prepared: dict[str, Any] | None) -> dict[str, Any]:
    seconds = {"generation": 0.0, "forgetting": 0.0, "evaluation": 0.0}
    forget_names = [g.name for g in setting.forget]
    _info(f"model {clip.arch} ({clip.source}), forgetting subgroup(s) {forget_names} known as "
          f"{setting.coarse_labels} ({setting.name}) with {method.name} ({s.preset} preset"
          f"{', ablation ' + s.ablation if s.ablation else ''})")
    if prepared:
        _info(f"model prepared for the setting: {prepared['prepare']} "
              + ("(from the cache)" if prepared.get("cached") else f"({prepared['images']} images, {prepared['seconds']}s)"))
    evaluator = Evaluator(clip, FeatureCache(s.cache_dir), progress=s.progress)
    t0 = time.time()
    before = _measure(evaluator, t, s)
    seconds["evaluation"] += time.time() - t0
    _info(f"before: {_describe(before)}")

    data = SubgroupData(clip, s.data_root, seed=s.seed, n_per_class=s.n_per_class, max_steps=s.generation_max_steps,
                        progress=s.progress, setting=setting)
    trace, ctx = run_method(method, clip, request, data, s.seed, s.max_epochs, s.generation_max_steps, seconds)

    t0 = time.time()
    with evaluator.cache.in_memory_only():  # no later run starts from this model
        after = _measure(evaluator, t, s)
    seconds["evaluation"] += time.time() - t0
    _info(f"after: {_describe(after)}")
    score, excluded = subgroup_score(t, before, after)
    if score is None:
        _info("the model never recognised the forgotten subgroup before forgetting: the Score is undefined")
    b, a = before["columns"], after["columns"]
    datasets, wacv = _kept_columns_and_avg_score(t, before, after)
    return write_run(run, clip, method, s.preset, s.ablation, ctx, trace, seconds,
                     {**asdict(s), "setting": setting.name}, {
        "task": "subgroup",
        "setting": setting.to_json(),
        "prepared": prepared,  # how the model was made ready for the setting before "before" (None: as loaded)
        # the class-run fields, so that every reader of runs reads this one: the target is the forgotten
        # subgroup, "other classes" the retained subgroups, "datasets" the measured-only columns and datasets
        "dataset": setting.name,
        "classes": forget_names,
        "target_before": b["target"],
        "target_after": a["target"],
        "per_target": {n: {"before": b["target"], "after": a["target"]} for n in forget_names[:1]}
        if len(forget_names) == 1 else {},
        "other_classes_before": b["retain"],
        "other_classes_after": a["retain"],
        "datasets": datasets,
        "columns": {c.name: {"role": c.role, "before": b[c.name], "after": a[c.name], "n": before["n"][c.name],
                             "subgroups": [g.label for g in c.subgroups]} for c, _ in t.columns},
        "ratio_score": score,
        "ratio_score_excluded": excluded,
        "avg_score": wacv,
        "avg_score_excluded": [],
        "retrieval": {"before": before["retrieval"], "after": after["retrieval"],
                      "database": database_paths(t)} if s.retrieval else None,
        "template_change": None,
        "error_analysis": None,
        "feature_cache": {"folder": s.cache_dir, "hits": evaluator.cache.hits, "misses": evaluator.cache.misses},
    })


def setting_from_flags(setting: str | None, dataset: str | None, forget: list[str], retain: list[str],
                       coarse_label: str | None, vocabulary: list[str] | None) -> SubgroupSetting | str:
    """The CLI's subgroup flags as a setting: a shipped name, or a custom request (all three flags)."""
    from ..data.subgroups import custom_setting

    if setting is not None:
        if forget or retain or coarse_label:
            raise ClipUnlearnError("--setting names a whole request; drop --forget-subgroup, --retain-subgroups "
                                   "and --coarse-label, or drop --setting.")
        return setting
    missing = [f for f, v in (("--dataset", dataset), ("--forget-subgroup", forget),
                              ("--retain-subgroups", retain), ("--coarse-label", coarse_label)) if not v]
    if missing:
        raise ClipUnlearnError(f"A subgroup request needs {', '.join(missing)} too (or a shipped --setting; "
                               "clipunlearn subgroups lists them).")
    assert dataset is not None and coarse_label is not None
    return custom_setting(dataset, forget, retain, coarse_label, vocabulary)


__all__ = ["SubgroupData", "SubgroupSettings", "forget_subgroup", "resolve_setting", "setting_from_flags"]
