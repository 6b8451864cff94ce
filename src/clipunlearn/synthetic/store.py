"""Saving and loading synthetic sets (safetensors + JSON metadata) and their picture grid."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..errors import ClipUnlearnError
from ..io import save_with
from .generate import SyntheticSet

FORMAT = "clipunlearn-synthetic-1"


def save_synthetic(s: SyntheticSet, path: str | os.PathLike[str], grid: bool = True) -> None:
    """Write ``path`` (.safetensors) and, if ``grid``, ``path`` with suffix .png beside it."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {"images": s.images.contiguous(), "targets": s.targets, "probs": s.probs,
               "accepted": s.accepted.to(torch.uint8), "steps": s.steps}
    meta = {"format": FORMAT, "classnames": json.dumps(s.classnames), "dataset": s.dataset, "model": s.model,
            "template": s.template, "config": json.dumps(s.config), "final_threshold": str(s.final_threshold),
            "seconds": str(s.seconds)}
    save_with(path, lambda tmp: save_file(tensors, str(tmp), metadata=meta))
    if grid:
        save_grid(s, path.with_suffix(".png"))


def load_synthetic(path: str | os.PathLike[str]) -> SyntheticSet:
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ClipUnlearnError(f"The synthetic set {str(path)!r} does not exist. Make one with "
                               "`clipunlearn generate ... --out FILE`, or leave --synthetic out.")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            t = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # noqa: BLE001
        raise ClipUnlearnError(f"{str(path)!r} is not a synthetic set written by clipunlearn ({e}).") from None
    if meta.get("format") != FORMAT:
        raise ClipUnlearnError(f"{str(path)!r} is not a synthetic set written by clipunlearn (format "
                               f"{meta.get('format')!r}).")
    return SyntheticSet(images=t["images"], targets=t["targets"], probs=t["probs"], accepted=t["accepted"].bool(),
                        steps=t["steps"], classnames=json.loads(meta["classnames"]), dataset=meta["dataset"],
                        model=meta["model"], template=meta["template"], config=json.loads(meta["config"]),
                        final_threshold=float(meta["final_threshold"]), seconds=float(meta["seconds"]))


def check_synthetic_fits(s: SyntheticSet, model: str, dataset: str, classes: list[str]) -> None:
    """Refuse a synthetic set made for another model, dataset or classes."""
    if s.model != model:
        raise ClipUnlearnError(f"The synthetic set was made for model {s.model}, not {model}. Generate one for "
                               f"{model}, or pass --model {s.model}.")
    if s.dataset != dataset:
        raise ClipUnlearnError(f"The synthetic set was made for dataset {s.dataset}, not {dataset}.")
    if sorted(s.target_names) != sorted(classes):
        raise ClipUnlearnError(f"The synthetic set was made for classes {s.target_names}, not {classes}. "
                               "Generate one for these classes, or leave --synthetic out to generate it.")


def save_grid(s: SyntheticSet, path: str | os.PathLike[str], per_class: int = 8) -> None:
    """A PNG with up to ``per_class`` images per class in a row, labelled with class and probability."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    classes = sorted(set(s.targets.tolist()))
    cols = min(per_class, max(int((s.targets == c).sum()) for c in classes))
    fig, axes = plt.subplots(len(classes), cols, figsize=(1.3 * cols, 1.5 * len(classes)), squeeze=False)
    for r, c in enumerate(classes):
        idx = (s.targets == c).nonzero().flatten()[:cols]
        for j in range(cols):
            ax = axes[r][j]
            ax.axis("off")
            if j < len(idx):
                i = int(idx[j])
                ax.imshow(s.images[i].permute(1, 2, 0).clamp(0, 1).numpy())
                ax.set_title(f"p={float(s.probs[i]):.2f}", fontsize=7)
        axes[r][0].text(-0.1, 0.5, s.classnames[c], transform=axes[r][0].transAxes, ha="right", va="center",
                        fontsize=8)
    fig.tight_layout()
    save_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=100))
    plt.close(fig)


class SyntheticCache:
    """Synthetic sets kept on disk by content: the model's tensors, the dataset's classes, the
    template, the generation config, the seed and the prompts. Benchmark cells that forget the same
    class of the same model with the same seed share one set, whatever the method."""

    def __init__(self, folder: str | os.PathLike[str]):
        self.folder = Path(folder).expanduser()
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(model_hash: str, **what: object) -> str:
        import hashlib

        h = hashlib.blake2b(digest_size=16)
        h.update(json.dumps({"model": model_hash, **what}, sort_keys=True, default=str).encode())
        return h.hexdigest()

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.safetensors"

    def lock(self, key: str):
        """Held while one process makes the set of ``key``; others wait for it, then read it."""
        from ..io import exclusive

        return exclusive(self.folder / f"{key}.lock")

    def get(self, key: str) -> SyntheticSet | None:
        p = self.path(key)
        if not p.is_file():
            self.misses += 1
            return None
        self.hits += 1
        return load_synthetic(p)

    def put(self, key: str, s: SyntheticSet) -> None:
        """Written atomically: a cell killed while writing leaves no set for the next one to trust."""
        self.folder.mkdir(parents=True, exist_ok=True)
        save_synthetic(s, self.path(key), grid=False)
