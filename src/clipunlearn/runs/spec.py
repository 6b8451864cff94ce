"""RunSpec: everything that determines a forget run, hashable; its hash is the run id.

The CLI's ``forget``, the Python API and benchmark suites can all describe a run as a RunSpec; one
function (:func:`.execution.execute`) turns it into a run folder. Two specs with the same content give
the same id, so a suite can tell a finished cell from one still to do, whatever machine ran it.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..io import file_hash
from ..version import __version__


def weights_id(model: str, pretrained: str | None = "default", weights: str | None = None) -> str:
    """What identifies a model's weights: the hash of the zoo file or of the checkpoint file given,
    else the open_clip tag (``openai``, ``none``)."""
    from ..models.zoo import ZOO_MODELS, weights_path

    parts = []
    if pretrained not in (None, "none") and Path(str(pretrained)).is_file():
        parts.append(file_hash(str(pretrained)))
    elif model in ZOO_MODELS and pretrained in ("default", "zoo"):
        parts.append(file_hash(weights_path(model)))
    else:
        parts.append(str(pretrained))
    if weights:
        parts.append(file_hash(weights))
    return "+".join(parts)


@dataclass(frozen=True)
class RunSpec:
    """One forget run. ``options`` are fields of the method's config over its preset."""

    model: str
    method: str
    dataset: str
    classes: tuple[str, ...]
    preset: str = "default"
    ablation: str | None = None
    options: tuple[tuple[str, Any], ...] = ()
    seed: int = 0
    other_datasets: tuple[str, ...] | None = None
    n_per_class: int = 64
    max_epochs: int | None = None
    max_steps: int | None = None
    retrieval: bool = True
    template_change: bool = True
    pretrained: str | None = "default"
    weights_hash: str = ""  # filled by :meth:`resolved`
    version: str = __version__
    subgroup: str | None = None  # a shipped subgroup setting (CVPR'25): ``dataset`` is then its name
    # the precision asked for (clipunlearn.precision); results.json records the one it resolved to on the
    # device the cell ran on (auto: tf32 on CUDA, fp32 on the CPU), as the run id never names the device
    precision: str = "auto"

    # fields left out of the key while at this value (their default, which keeps what runs did before the
    # field existed), so older run ids stay valid
    _LEFT_OUT_AT = (("subgroup", None), ("precision", "auto"))

    def resolved(self) -> RunSpec:
        """The spec with the hash of its model's weights filled in."""
        from dataclasses import replace

        return replace(self, weights_hash=self.weights_hash or weights_id(self.model, self.pretrained))

    def key(self) -> dict[str, Any]:
        at = dict(self._LEFT_OUT_AT)
        d = {k: v for k, v in asdict(self).items() if not (k in at and v == at[k])}
        return json.loads(json.dumps(d, default=str))

    @property
    def run_id(self) -> str:
        """``method-dataset-class-HASH``: readable, and unique by content."""
        digest = hashlib.blake2b(json.dumps(self.key(), sort_keys=True).encode(), digest_size=6).hexdigest()
        slug = "+".join(c.replace(" ", "_").replace("/", "_") for c in self.classes)[:40]
        tag = self.method + (f"@{self.ablation}" if self.ablation else "")
        return f"{tag}-{self.dataset}-{slug}-s{self.seed}-{digest}"

