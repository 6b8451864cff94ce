"""The data a run can hand a method (see ``methods.context``): made or loaded on first request,
then reused within the run. Real images come from the dataset's *train* split only."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from ..data import ImageSet, load_image_set
from ..errors import ClipUnlearnError, DataError
from ..io import computed_once
from ..methods import ForgetRequest, ImageBatch
from ..models import Clip
from ..precision import cache_tag
from ..synthetic import (
    GenerationConfig,
    SyntheticCache,
    SyntheticSet,
    check_synthetic_fits,
    generate_synthetic,
    generate_with_progress,
    load_synthetic,
)
from ..training import vocabulary_to_keep

PROMPT_KINDS = ("template", "cupl")


def train_split(dataset: str, data_root: str | None, why: str) -> ImageSet:
    """The train split of ``dataset``, or a one-line error naming the method's need and the fix."""
    try:
        return load_image_set(dataset, data_root, "train")
    except DataError as e:
        raise DataError(
            f"{why} needs real train images of {dataset}, but its train split cannot be read "
            f"({str(e).rstrip('.')}). Add a train split, or use a zero-shot method (clipunlearn methods)."
        ) from None


def decode(images: ImageSet, rows: list[int], clip: Clip) -> torch.Tensor:
    """Images ``rows`` of ``images`` as [0, 1] tensors at the model's input size; unreadable files
    fail with their names (no image is dropped silently)."""
    transform = clip.image_transform()
    out, bad = [], []
    for i in rows:
        try:
            out.append(transform(images.load(i)))
        except (OSError, ValueError):
            bad.append(images.describe(i))
    if bad:
        raise DataError(f"{len(bad)} train image(s) of {images.name} could not be read, e.g. {', '.join(bad[:3])}. "
                        "Replace or remove them (and their manifest rows).")
    if not out:
        return torch.zeros(0, 3, clip.image_size, clip.image_size)
    return torch.stack(out)


def sample_per_class(labels: list[int], classes: list[int], per_class: int | None, seed: int) -> list[int]:
    """Row indices: up to ``per_class`` rows of each class in ``classes`` (a seeded sample), in order."""
    gen = torch.Generator().manual_seed(seed)
    rows: list[int] = []
    for c in classes:
        mine = [i for i, y in enumerate(labels) if y == c]
        if per_class is not None and len(mine) > per_class:
            pick = torch.randperm(len(mine), generator=gen)[:per_class].tolist()
            mine = sorted(mine[j] for j in pick)
        rows += mine
    return sorted(rows)


@dataclass
class RunData:
    """A :class:`methods.context.DataSource` for one run."""

    clip: Clip
    data_root: str | None
    seed: int = 0
    n_per_class: int = 64
    max_steps: int | None = None  # generation steps per image (forget and retain images alike)
    synthetic_file: str | None = None  # reuse this synthetic forget set instead of generating
    progress: bool = False
    synthetic_cache: str | None = None  # share generated sets by content (model, classes, config, seed, prompts)
    synthetic: SyntheticSet | None = None  # the synthetic forget set, once made or loaded
    synthetic_scores_before: tuple[float, float] | None = None
    seconds: dict[str, float] = field(default_factory=lambda: {"generation": 0.0, "data": 0.0})
    _cache: dict[Any, ImageBatch] = field(default_factory=dict)
    _model_hash: str | None = None

    def _remember(self, key: Any, make) -> ImageBatch:
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _generate(self, what: dict[str, Any], make) -> tuple[SyntheticSet, bool]:
        """``make()``'s set, or the one a previous run made from the same model and ``what``
        (True when it came from the shared cache)."""
        if self.synthetic_cache is None:
            return make(), False
        from ..evaluation import hash_tensors

        if self._model_hash is None:  # the original model: sets are asked for before any training
            self._model_hash = hash_tensors(self.clip.model, lambda name: True)
        cache = SyntheticCache(self.synthetic_cache)
        tag = cache_tag()  # a set made at another precision than fp32 is kept apart (fp32 keys as before)
        key = cache.key(self._model_hash, arch=self.clip.arch, **what, **({"precision": tag} if tag else {}))

        def made() -> SyntheticSet:
            s = make()
            cache.put(key, s)
            return s

        # cells running side by side make a shared set once
        return computed_once(lambda first: cache.get(key), lambda: cache.lock(key), made)

    # --- synthetic ----------------------------------------------------------------------------
    def synthetic_forget(self, request: ForgetRequest, prompts: str = "template") -> ImageBatch:
        if prompts not in PROMPT_KINDS:
            raise ClipUnlearnError(f"Unknown prompt kind {prompts!r} for synthetic images; use one of {PROMPT_KINDS}.")
        return self._remember(("synthetic_forget", prompts), lambda: self._make_forget(request, prompts))

    def _make_forget(self, request: ForgetRequest, prompts: str) -> ImageBatch:
        from ..evaluation import image_scores

        if self.synthetic_file and prompts == "template":
            s = load_synthetic(self.synthetic_file)
            check_synthetic_fits(s, self.clip.arch, request.dataset, request.class_names)
            source = f"synthetic ({self.synthetic_file})"
            origins = None
        else:
            cfg = self.forget_config()
            descriptions, origins = None, None
            if prompts == "cupl":
                from ..synthetic.cupl import describe

                found = describe(request.class_names)
                descriptions, origins = found.sentences, found.origins
            what = {"kind": "forget", "dataset": request.dataset, "classnames": list(request.classnames),
                    "classes": list(request.classes), "template": request.template, "config": asdict(cfg),
                    "descriptions": descriptions}
            s, cached = self._generate(what, lambda: generate_with_progress(
                self.clip, request.classnames, request.classes, request.dataset, request.template, cfg,
                self.progress, descriptions=descriptions))
            if not cached:
                self.seconds["generation"] += s.seconds
            source = ("synthetic" if prompts == "template" else "synthetic (CuPL descriptions)") + (
                ", shared cache" if cached else "")
        self.synthetic = s
        # measured now, while the model is the original: a method asks for its images before training
        self.synthetic_scores_before = image_scores(self.clip, s.images, s.targets, s.classnames, [request.template])
        info: dict[str, Any] = {"accepted": int(s.accepted.sum()), "seconds": round(s.seconds, 2)}
        if prompts == "cupl":
            info["descriptions"] = origins
        return ImageBatch(s.images, s.targets, list(s.classnames), source, info)

    def synthetic_retain(self, request: ForgetRequest, max_classes: int = 48, vocabulary: bool = True,
                         steps: int = 100, extra: tuple[str, ...] = ()) -> ImageBatch:
        """One synthetic image for each of up to ``max_classes`` of the dataset's other classes (a
        seeded sample), with ``vocabulary`` for each everyday concept that does not overlap a forgotten
        class, and for each name of ``extra`` (a method's own choice of concepts to keep) that is not a
        forgotten name or already there. Made like the forget images but with a short budget and no
        threshold lowering: each keeps its most probable state."""
        extra = tuple(extra)
        key = ("synthetic_retain", max_classes, vocabulary, steps, extra)
        return self._remember(key, lambda: self._make_retain(request, max_classes, vocabulary, steps, extra))

    def forget_config(self) -> GenerationConfig:
        """How the synthetic forget images are made: ``n_per_class`` a class, the run's seed and step cap."""
        cfg = GenerationConfig(n_per_class=self.n_per_class, seed=self.seed)
        if self.max_steps is not None:
            cfg.max_steps = self.max_steps
        return cfg

    def retain_plan(self, request: ForgetRequest, max_classes: int, vocabulary: bool, steps: int,
                    extra_names: tuple[str, ...] = ()) -> tuple[list[str], list[int], GenerationConfig]:
        """What :meth:`synthetic_retain` makes: the class names (the dataset's, then the everyday words
        kept, then ``extra_names``), the indices given one image each, and the generation config."""
        others = request.other_classes
        if len(others) > max_classes:
            order = torch.randperm(len(others), generator=torch.Generator().manual_seed(self.seed + 1))
            others = sorted(others[i] for i in order[: max(0, max_classes)].tolist())
        names = list(request.classnames)
        if vocabulary:
            words = vocabulary_to_keep(names, request.class_names)
            others += list(range(len(names), len(names) + len(words)))
            names += words
        if extra_names:  # a method's deliberate choice: only the forgotten names themselves are left out
            known = {n.lower() for n in [*names, *request.class_names]}
            more = [n for n in dict.fromkeys(extra_names) if n.lower() not in known]
            others += list(range(len(names), len(names) + len(more)))
            names += more
        if not others:
            raise ClipUnlearnError("There is no class to keep: every class of the dataset is forgotten and the "
                                   "everyday vocabulary is off. Keep a class, or turn the retain term off.")
        budget = steps if self.max_steps is None else min(steps, self.max_steps)
        return names, others, GenerationConfig(n_per_class=1, max_steps=budget, threshold_floor=1.0, seed=self.seed + 1)

    def _make_retain(self, request: ForgetRequest, max_classes: int, vocabulary: bool, steps: int,
                     extra: tuple[str, ...] = ()) -> ImageBatch:
        names, others, cfg = self.retain_plan(request, max_classes, vocabulary, steps, extra)
        t0 = time.time()
        what = {"kind": "retain", "dataset": request.dataset, "classnames": names, "classes": others,
                "template": request.template, "config": asdict(cfg)}
        s, cached = self._generate(what, lambda: generate_synthetic(self.clip, names, others, request.dataset,
                                                                     request.template, cfg))
        seconds = time.time() - t0
        self.seconds["generation"] += seconds
        return ImageBatch(s.images, s.targets, names, "synthetic" + (", shared cache" if cached else ""),
                          {"classes": len(others), "seconds": round(seconds, 2)})

    # --- real (train split) -------------------------------------------------------------------
    def real_forget(self, request: ForgetRequest, per_class: int | None = None) -> ImageBatch:
        return self._remember(("real_forget", per_class),
                              lambda: self._real(request, request.classes, per_class, "real_forget"))

    def real_retain(self, request: ForgetRequest, per_class: int | None = 10) -> ImageBatch:
        return self._remember(("real_retain", per_class),
                              lambda: self._real(request, request.other_classes, per_class, "real_retain"))

    def _real(self, request: ForgetRequest, classes: list[int], per_class: int | None, kind: str) -> ImageBatch:
        t0 = time.time()
        images = train_split(request.dataset, self.data_root, f"A method that sees {kind}")
        if list(images.classnames) != list(request.classnames):
            raise DataError(f"The train split of {request.dataset} lists other classes than its test split. "
                            "Use one classes.txt for both splits.")
        rows = sample_per_class(images.labels, classes, per_class, self.seed + 2)
        if not rows:
            raise DataError(f"The train split of {request.dataset} has no image of "
                            f"{'the forgotten classes' if kind == 'real_forget' else 'the other classes'}. "
                            "Add some, or use a method that does not need them.")
        pixels = decode(images, rows, self.clip)
        labels = torch.tensor([images.labels[i] for i in rows])
        self.seconds["data"] += time.time() - t0
        return ImageBatch(pixels, labels, list(images.classnames), f"{request.dataset} train",
                          {"classes": len(set(labels.tolist()))})
