"""The Python API, mirroring the CLI verbs."""
from __future__ import annotations

import os
from collections.abc import Sequence

from .data import load_image_set, split_names
from .errors import ClipUnlearnError
from .evaluation import EvalResult, Evaluator
from .models import Clip, load_clip, resolve_device
from .precision import computing, parse_precision
from .synthetic import GenerationConfig, SyntheticSet, generate_with_progress

__all__ = ["evaluate", "generate", "resolve_device", "split_names"]


def evaluate(
    model: Clip | str,
    datasets: str | Sequence[str],
    data_root: str | os.PathLike[str] | None = None,
    split: str = "test",
    templates: Sequence[str] | None = None,
    evaluator: Evaluator | None = None,
    pretrained: str | None = "default",
    weights: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    precision: str = "auto",
) -> dict[str, EvalResult]:
    """Zero-shot top-1 of ``model`` on each dataset's ``split``.

    ``model`` is a loaded :class:`Clip` or a name for :func:`load_clip`; ``precision``: auto, fp32, tf32
    or bf16 (:mod:`clipunlearn.precision`).
    """
    wanted = parse_precision(precision)
    names = split_names(datasets)
    if not names:
        raise ClipUnlearnError("No dataset given. Pass one or more names, e.g. datasets='caltech101,cifar10'.")
    clip = model if isinstance(model, Clip) else load_clip(model, pretrained, weights, resolve_device(device))
    evaluator = evaluator or Evaluator(clip, progress=progress)
    image_sets = [load_image_set(n, data_root, split) for n in names]  # all found before any compute
    with computing(wanted, clip.device):
        return {s.name: evaluator.evaluate(s, templates) for s in image_sets}


def generate(
    model: Clip | str,
    dataset: str,
    classes: str | Sequence[str],
    data_root: str | os.PathLike[str] | None = None,
    config: GenerationConfig | None = None,
    pretrained: str | None = "default",
    weights: str | None = None,
    device: str = "cpu",
    progress: bool = False,
    precision: str = "auto",
) -> SyntheticSet:
    """Synthetic forget images for ``classes`` of ``dataset`` (``clipunlearn generate``).

    Only the dataset's class list and prompt template are read, never its images. Save the result
    with :func:`clipunlearn.save_synthetic` and pass the file to ``ForgetSettings(synthetic=...)``.
    ``precision``: auto, fp32, tf32 or bf16 (:mod:`clipunlearn.precision`).
    """
    wanted = parse_precision(precision)
    images = load_image_set(dataset, data_root, "test")
    targets = images.class_indices(split_names(classes))  # unknown names fail here, with close matches
    clip = model if isinstance(model, Clip) else load_clip(model, pretrained, weights, resolve_device(device))
    with computing(wanted, clip.device):
        return generate_with_progress(clip, images.classnames, targets, images.name, images.templates[0],
                                      config or GenerationConfig(), progress)
