"""What a method is handed: the model, the request, global knobs, and exactly the data it declared.

Data kinds a method may declare in ``needs`` (nothing else is ever handed to it):

* ``synthetic_forget``: images of the forgotten classes made from their names (WACV'25 §4.3);
* ``synthetic_retain``: images of classes to keep, made the same way from their names;
* ``real_forget``: real images of the forgotten classes, from the *train* split of the dataset;
* ``real_retain``: real images of the dataset's other classes, from the *train* split.

Test images are never handed to a method: they are what the run measures. Every access is counted
in :attr:`ForgetContext.data_seen`, which the run writes into results.json.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from ..errors import ClipUnlearnError, DataError
from ..models.factory import Clip

DATA_KINDS: dict[str, str] = {
    "synthetic_forget": "synthetic images of the forgotten classes (from their names)",
    "synthetic_retain": "synthetic images of classes to keep (from their names)",
    "real_forget": "real train images of the forgotten classes",
    "real_retain": "real train images of the dataset's other classes",
}


@dataclass
class ForgetRequest:
    """Forget ``classes`` (indices into ``classnames``) of ``dataset``; ``template`` is its prompt."""

    dataset: str
    classnames: list[str]
    classes: list[int]
    template: str

    @property
    def class_names(self) -> list[str]:
        return [self.classnames[c] for c in self.classes]

    @property
    def other_classes(self) -> list[int]:
        gone = set(self.classes)
        return [i for i in range(len(self.classnames)) if i not in gone]


@dataclass
class ImageBatch:
    """Images handed to a method: ``images`` in [0, 1] (N×3×H×W), ``labels`` index ``classnames``."""

    images: torch.Tensor
    labels: torch.Tensor
    classnames: list[str]
    source: str  # e.g. "synthetic", "caltech101 train"
    info: dict[str, Any] = field(default_factory=dict)  # how it was made (counts, seconds, ...)

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Knobs:
    """Global settings of a run that are not a method's own: they override nothing in its config."""

    seed: int = 0
    max_epochs: int | None = None  # caps the method's epochs
    max_steps: int | None = None  # caps each synthetic image's generation steps
    device: str = "cpu"
    progress: Callable[[dict], None] | None = None  # called with each trace step
    # the precision the run computes at (fp32, tf32 or bf16; clipunlearn.precision): the shared training
    # parts apply it, a method reads it only to report it
    precision: str = "fp32"


class DataSource(Protocol):
    """Makes or loads the data kinds (see the module docstring); implemented by the run."""

    def synthetic_forget(self, request: ForgetRequest, **options: Any) -> ImageBatch: ...

    def synthetic_retain(self, request: ForgetRequest, **options: Any) -> ImageBatch: ...

    def real_forget(self, request: ForgetRequest, **options: Any) -> ImageBatch: ...

    def real_retain(self, request: ForgetRequest, **options: Any) -> ImageBatch: ...


class ForgetContext:
    """The model, the request, the knobs and lazy accessors for the declared data kinds.

    Asking for a kind that the method did not declare raises, so a method's claim to be zero-shot
    (it saw no real image) is enforced, not just stated.
    """

    def __init__(self, clip: Clip, request: ForgetRequest, source: DataSource, allowed: set[str] | frozenset[str],
                 knobs: Knobs | None = None, method: str = "method"):
        unknown = set(allowed) - set(DATA_KINDS)
        if unknown:
            raise ClipUnlearnError(f"Unknown data kind(s) {sorted(unknown)}; the kinds are {sorted(DATA_KINDS)}.")
        self.clip = clip
        self.request = request
        self.knobs = knobs or Knobs()
        self.allowed = frozenset(allowed)
        self.method = method
        self._source = source
        self.data_seen: dict[str, dict[str, Any]] = {}

    def _get(self, kind: str, **options: Any) -> ImageBatch:
        if kind not in self.allowed:
            raise ClipUnlearnError(
                f"{self.method} asked for {kind} ({DATA_KINDS.get(kind, '?')}) but does not declare it in "
                f"`needs` ({sorted(self.allowed) or 'nothing'}). Declare it, or do without it."
            )
        batch: ImageBatch = getattr(self._source, kind)(self.request, **options)
        self.data_seen[kind] = {"n": len(batch), "source": batch.source, **batch.info}
        return batch

    def synthetic_forget(self, **options: Any) -> ImageBatch:
        """Synthetic images of the forgotten classes; labels index ``request.classnames``."""
        return self._get("synthetic_forget", **options)

    def synthetic_retain(self, **options: Any) -> ImageBatch:
        """Synthetic images of classes to keep (``max_classes``, ``vocabulary``, ``steps``)."""
        return self._get("synthetic_retain", **options)

    def real_forget(self, **options: Any) -> ImageBatch:
        """Real train images of the forgotten classes (``per_class`` caps the count)."""
        return self._get("real_forget", **options)

    def real_retain(self, **options: Any) -> ImageBatch:
        """Real train images of the dataset's other classes (``per_class`` caps the count)."""
        return self._get("real_retain", **options)

    def over_request_classes(self, batch: ImageBatch) -> ImageBatch:
        """``batch``, once its labels are known to index the request's class list (the real and
        synthetic forget images do; synthetic retain images may add everyday concepts)."""
        if list(batch.classnames) != list(self.request.classnames):
            raise DataError(f"The {batch.source} images are labelled over other classes than the request's "
                                   f"{self.request.dataset} classes; use one class list for both.")
        return batch

    def epochs(self, wanted: int) -> int:
        """The method's epoch count under the run's cap."""
        cap = self.knobs.max_epochs
        return wanted if cap is None else max(1, min(wanted, cap))

    def generator(self, offset: int = 0) -> torch.Generator:
        """A CPU generator seeded from the run's seed (plus ``offset`` for independent streams)."""
        return torch.Generator().manual_seed(int(self.knobs.seed) + offset)
