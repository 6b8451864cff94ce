"""What an audit works on: a run folder checked and read, its original, forgotten and (optionally)
oracle models loaded, the dataset's splits, and the image features of each model, computed once.

A class run is read as it is; a subgroup run as a class run of the subgroup's source dataset, and a
concept run on the user's photos (or the run's synthetic images), with the attacks that need a train
split skipped (:mod:`.tasks`). Every check runs before any model is loaded: a folder that is not a
run, a style subgroup run, a missing or changed model file (sha256 against results.json), an oracle
of another architecture, an oracle for a concept run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..data import ImageSet, load_image_set
from ..errors import ClipUnlearnError, DataError
from ..evaluation import LOGIT_SCALE, Evaluator, hash_tensors, zero_shot_classifier
from ..io import file_hash
from ..models import Clip, load_clip
from ..runs.results import read_results
from .relearning import HELD_OUT, STEPS, Attack, CurveCache
from .tasks import (
    CLASS,
    CONCEPT,
    SUBGROUP,
    concept_facts,
    concept_images,
    concept_skips,
    exclude_flags,
    label_retain,
    refuse_oracle,
    run_task,
    subgroup_facts,
)

MODEL_FILE = "model.safetensors"


@dataclass
class RunInfo:
    """The facts of a run folder the audit needs, checked."""

    run_dir: Path
    model: str
    pretrained: str | None
    weights: str | None
    dataset: str
    classes: list[str]
    method: str
    data_root: str | None
    model_file: Path
    hash_checked: bool
    raw: dict[str, Any] = field(repr=False)
    task: str = "class"  # "class", "subgroup" or "concept" (results.json's task)
    facts: dict[str, Any] = field(default_factory=dict)  # the task's own facts (:mod:`.tasks`)


def read_run(run_dir: str | os.PathLike[str]) -> RunInfo:
    """Check ``run_dir`` is a run whose model file is the one it wrote; one-line errors otherwise. A
    subgroup run reads as its subgroups' source dataset and classes (:func:`.tasks.subgroup_facts`)."""
    run = Path(run_dir)
    if not run.is_dir():
        raise ClipUnlearnError(f"{str(run)!r} is not a folder. Pass a run folder written by `clipunlearn forget`.")
    r = read_results(run)
    task = run_task(r.raw)
    facts: dict[str, Any] = {}
    dataset, classes = r.dataset, list(r.classes)
    if task == SUBGROUP:
        facts = subgroup_facts(r.raw, run)
        dataset, classes = facts["dataset"], facts["subgroups"]
    elif task == CONCEPT:
        facts = concept_facts(r.raw, run)
    elif task != CLASS:
        raise ClipUnlearnError(f"{str(run)!r} is a {task!r} run, which this clipunlearn cannot audit (it reads class, "
                               "subgroup and concept runs). Upgrade clipunlearn.")
    settings = r.raw.get("settings")
    if not isinstance(settings, dict) or "model" not in settings:
        raise ClipUnlearnError(f"{str(run / 'results.json')!r} has no 'settings' with the model: it was not written "
                               "by clipunlearn forget, or was edited. Re-run the forget command.")
    model_file = run / MODEL_FILE
    if not model_file.is_file():
        raise ClipUnlearnError(f"The run {str(run)!r} has no {MODEL_FILE}: the forgotten model is missing. "
                               "Restore it, or re-run the forget command.")
    recorded = (r.raw.get("model_file") or {}).get("sha256")
    if recorded is not None and file_hash(model_file) != recorded:
        raise ClipUnlearnError(f"{str(model_file)!r} has changed since the run wrote it (sha256 {file_hash(model_file)}, "
                               f"results.json says {recorded}). Restore the run's model file, or re-run the forget command.")
    return RunInfo(run, settings["model"], settings.get("pretrained", "default"), settings.get("weights"),
                   dataset, classes, r.method, settings.get("data_root"), model_file,
                   recorded is not None, r.raw, task, facts)


def with_dataset_dir(info: RunInfo, dataset_dir: str | os.PathLike[str]) -> RunInfo:
    """``info`` reading its dataset from ``dataset_dir``: for a class run made from a class-folder tree
    (forget --dataset-dir) whose folder has moved since."""
    from dataclasses import replace

    from ..data import folder_dataset, is_folder_dataset

    if info.task != CLASS or not is_folder_dataset(info.dataset):
        raise ClipUnlearnError(f"--dataset-dir is for runs made from a folder of class folders (forget --dataset-dir), "
                               f"but {str(info.run_dir)!r} is a {info.task} run of {info.dataset!r}. Drop --dataset-dir "
                               "(--data-root says where the registered datasets are).")
    return replace(info, dataset=folder_dataset(dataset_dir))


def check_oracle(oracle: str | os.PathLike[str], model: str, reference: dict[str, torch.Tensor],
                 exclude: str = "--exclude DATASET:CLASS") -> None:
    """An oracle file must exist and hold the run's architecture: by the arch in its safetensors
    metadata (written by :meth:`Clip.save`), else by the names and shapes of its tensors. ``exclude``:
    the ``zoo train`` flags the fix names."""
    from ..models.factory import META_ARCH, read_checkpoint

    path = Path(oracle)
    fix = (f"Pass an oracle of {model}, e.g. trained with `clipunlearn zoo train {model} {exclude} "
           "--out oracle.safetensors`.")
    if not path.is_file():
        raise ClipUnlearnError(f"The oracle file {str(path)!r} does not exist. {fix}")
    state, meta = read_checkpoint(path)
    arch = meta.get(META_ARCH)
    if arch and arch != model:
        raise ClipUnlearnError(f"The oracle {str(path)!r} is a {arch} model, but the run's model is {model}. {fix}")
    wrong = sorted(k for k in reference if k not in state or tuple(state[k].shape) != tuple(reference[k].shape))
    extra = sorted(set(state) - set(reference))
    if wrong or extra:
        example = (wrong or extra)[0]
        raise ClipUnlearnError(f"The oracle {str(path)!r} does not hold a {model} model ({len(wrong)} tensors missing "
                               f"or of another shape, {len(extra)} unexpected, e.g. {example!r}). {fix}")


@dataclass
class AuditCase:
    """The models and data of one audit; features and logits are computed once per model and split."""

    run: RunInfo
    models: dict[str, Clip]  # "original", "forgotten" and, when given, "oracle"
    test: ImageSet
    train: ImageSet | None
    targets: list[int]
    seed: int = 0
    relearn_grid: tuple[Attack, ...] = HELD_OUT
    relearn_steps: tuple[int, ...] = STEPS
    data_root: str | None = None
    curve_cache: CurveCache = field(default_factory=lambda: CurveCache(None))
    #: the task's templates, the run's first (empty: the test split's, a dataset's own)
    templates: tuple[str, ...] = ()
    #: attack name -> why it cannot run on this case (its result is ``{"skipped": reason}``)
    skipped: dict[str, str] = field(default_factory=dict)
    _evaluators: dict[str, Evaluator] = field(default_factory=dict, repr=False)
    _classifiers: dict[tuple[str, tuple[str, ...]], torch.Tensor] = field(default_factory=dict, repr=False)
    _features: dict[tuple[str, str], torch.Tensor] = field(default_factory=dict, repr=False)
    _text_ids: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def classnames(self) -> list[str]:
        return list(self.test.classnames)

    @property
    def template(self) -> str:
        """The template the run forgot with (a class or subgroup run: the dataset's first; a concept run:
        its vocabulary's forget template)."""
        return (self.templates or self.test.templates)[0]

    def target_names(self) -> list[str]:
        return [self.classnames[c] for c in self.targets]

    def evaluator(self, name: str) -> Evaluator:
        if name not in self._evaluators:
            self._evaluators[name] = Evaluator(self.models[name], progress=False)
        return self._evaluators[name]

    def features(self, name: str, split: str = "test") -> torch.Tensor:
        """Unit-norm image features of every image of ``split`` under model ``name`` (cached in memory)."""
        if (name, split) not in self._features:  # the models do not change during an audit
            images = self.test if split == "test" else self.need_train(f"split {split}")
            self._features[(name, split)] = self.evaluator(name).image_features(images).float().cpu()
        return self._features[(name, split)]

    def need_train(self, what: str) -> ImageSet:
        if self.train is None:
            raise DataError(f"The {what} needs the train split of {self.run.dataset}, which the data root lacks. "
                            "Add it, or leave this attack out with --attacks.")
        return self.train

    def classifier(self, name: str, templates: tuple[str, ...] | None = None) -> torch.Tensor:
        """Zero-shot class weights of model ``name`` over the dataset's classes (default: the run's template)."""
        templates = templates or (self.template,)
        key = (self.text_id(name), templates)  # models with the same text tower share their classifiers
        if key not in self._classifiers:
            self._classifiers[key] = zero_shot_classifier(self.models[name], self.classnames, list(templates)).float().cpu()
        return self._classifiers[key]

    def text_id(self, name: str) -> str:
        """A hash of every tensor of model ``name`` outside the image tower (what a classifier depends on)."""
        if name not in self._text_ids:
            self._text_ids[name] = hash_tensors(self.models[name].model, lambda t: not t.startswith("visual."))
        return self._text_ids[name]

    def logits(self, name: str, split: str = "test") -> np.ndarray:
        """Zero-shot logits (100 · cosine, the run's template) of every image of ``split`` under ``name``."""
        return (LOGIT_SCALE * self.features(name, split) @ self.classifier(name).T).numpy()

    def labels(self, split: str = "test") -> np.ndarray:
        images = self.test if split == "test" else self.need_train(f"split {split}")
        return np.asarray(images.labels)

    def is_target(self, split: str = "test") -> np.ndarray:
        return np.isin(self.labels(split), self.targets)


def load_case(info: RunInfo, oracle: str | os.PathLike[str] | None, data_root: str | None, need_train: bool,
              seed: int = 0, relearn_grid: tuple[Attack, ...] = HELD_OUT, relearn_steps: tuple[int, ...] = STEPS,
              curve_cache: CurveCache | None = None) -> AuditCase:
    """Read the dataset's splits (a concept run: its images, :func:`.tasks.concept_images`) and load the
    three models (the oracle checked before it is loaded)."""
    root = data_root or info.data_root
    if info.task == CONCEPT:
        refuse_oracle(info.task, oracle, None)
        images = concept_images(info.run_dir, info.facts, root)
        info.facts["read"] = images.about
        case = AuditCase(info, _load_models(info, None), images.test, None, images.targets, seed, tuple(relearn_grid),
                         tuple(relearn_steps), root, curve_cache or CurveCache(None), images.templates,
                         concept_skips(images.about))
        label_retain(case, images.retain_rows)
        return case
    templates = (info.raw.get("settings") or {}).get("templates")  # the run's own, when it was given some
    test = load_image_set(info.dataset, root, "test").with_templates(templates)
    targets = test.class_indices(info.classes)
    train = None
    if need_train:
        try:
            train = load_image_set(info.dataset, root, "train").with_templates(templates)
        except DataError as e:
            raise DataError(f"The audit's probe, relearning and membership attacks need the train split of "
                            f"{info.dataset}: {e} Or leave them out with --attacks prompts,images.") from None
    return AuditCase(info, _load_models(info, oracle), test, train, targets, seed, tuple(relearn_grid),
                     tuple(relearn_steps), root, curve_cache or CurveCache(None))


def _load_models(info: RunInfo, oracle: str | os.PathLike[str] | None) -> dict[str, Clip]:
    """The original and forgotten models and, when given, the oracle (checked before it is loaded)."""
    original = load_clip(info.model, info.pretrained, info.weights)
    models = {"original": original}
    if oracle is not None:
        exclude = exclude_flags(info.dataset, info.classes) if info.task == SUBGROUP else "--exclude DATASET:CLASS"
        check_oracle(oracle, info.model, original.model.state_dict(), exclude)
    models["forgotten"] = load_clip(info.model, info.pretrained, info.model_file)
    if oracle is not None:
        models["oracle"] = load_clip(info.model, "none", oracle)
    return models


__all__ = ["AuditCase", "RunInfo", "check_oracle", "load_case", "read_run", "with_dataset_dir"]
