"""The Python API, mirroring the CLI verbs."""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from .data import load_image_set
from .errors import ClipUnlearnError
from .evaluation import EvalResult, Evaluator
from .models import Clip, load_clip
from .synthetic import GenerationConfig, SyntheticSet


def resolve_device(device: str | None) -> str:
    """'cpu' or 'cuda' (also 'cuda:N'); fails clearly when CUDA is asked for and absent."""
    device = (device or "cpu").strip().lower()
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ClipUnlearnError(f"--device {device} was asked for, but PyTorch sees no CUDA GPU here. "
                                   "Use --device cpu, or run on a machine with a GPU and a CUDA build of torch.")
        return device
    if device != "cpu":
        raise ClipUnlearnError(f"Unknown device {device!r}. Use 'cpu' or 'cuda'.")
    return device


def split_names(value: str | Sequence[str] | None) -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b'], whitespace trimmed, empties dropped."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    return [v.strip() for v in items if v and v.strip()]


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
) -> dict[str, EvalResult]:
    """Zero-shot top-1 of ``model`` on each dataset's ``split``.

    ``model`` is a loaded :class:`Clip` or a name for :func:`load_clip`.
    """
    names = split_names(datasets)
    if not names:
        raise ClipUnlearnError("No dataset given. Pass one or more names, e.g. datasets='caltech101,cifar10'.")
    clip = model if isinstance(model, Clip) else load_clip(model, pretrained, weights, resolve_device(device))
    evaluator = evaluator or Evaluator(clip, progress=progress)
    image_sets = [load_image_set(n, data_root, split) for n in names]  # all found before any compute
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
) -> SyntheticSet:
    """Synthetic forget images for ``classes`` of ``dataset`` (``clipunlearn generate``).

    Only the dataset's class list and prompt template are read, never its images. Save the result
    with :func:`clipunlearn.save_synthetic` and pass the file to ``ForgetSettings(synthetic=...)``.
    """
    from .methods import ForgetRequest
    from .runs.pipeline import make_synthetic

    names = split_names(classes)
    if not names:
        raise ClipUnlearnError("The class list is empty. Pass one or more class names, e.g. classes='motorbike'.")
    images = load_image_set(dataset, data_root, "test")
    targets = [images.class_index(c) for c in names]  # unknown names fail here, with close matches
    clip = model if isinstance(model, Clip) else load_clip(model, pretrained, weights, resolve_device(device))
    request = ForgetRequest(images.name, images.classnames, targets, images.templates[0])
    return make_synthetic(clip, request, config or GenerationConfig(), progress)
