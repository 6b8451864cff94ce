"""Merge the models of several forget runs into one (CVPR'25 App. A.2, Table 6): models that each
forgot one class merged into one that forgets all of them, without forgetting anything again.

    merged = original + mean over runs of (run model − original)     (how = "mean", the paper's merge)
    merged = original + sum over runs of (run model − original)      (how = "sum", task arithmetic)

The runs must start from the same model (name, weights); the original is loaded as each run did. A
run that saved only its changed tensors is put back on the original first.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ClipUnlearnError
from ..io import check_output_free
from ..models import Clip, load_clip
from ..models.factory import read_weights
from ..training.merge import merge_models
from .results import read_results


def _origin(run: Path) -> tuple[str, Any, Any]:
    settings = read_results(run).raw.get("settings") or {}
    if "model" not in settings:
        raise ClipUnlearnError(f"{run}/results.json does not say which model the run started from; re-run it "
                               "with this clipunlearn.")
    return settings["model"], settings.get("pretrained", "default"), settings.get("weights")


def merge_runs(runs: list[str | os.PathLike[str]], out: str | os.PathLike[str], how: str = "mean",
               overwrite: bool = False) -> Clip:
    """Merge the run folders' models (see the module docstring) and write the result to ``out``
    (safetensors, atomically; an existing file only with ``overwrite``). Returns the merged model."""
    check_output_free(out, overwrite, "merged model")
    if len(runs) < 2:
        raise ClipUnlearnError("Merging needs at least two run folders; pass two or more.")
    folders = [Path(r) for r in runs]
    origins = [_origin(f) for f in folders]
    if len(set(map(repr, origins))) != 1:
        listing = "; ".join(f"{f}: {o[0]} ({o[1]})" for f, o in zip(folders, origins))
        raise ClipUnlearnError(f"The runs started from different models ({listing}); merge runs of one model only.")
    for f in folders:
        if not (f / "model.safetensors").is_file():
            raise ClipUnlearnError(f"{f} has no model.safetensors; it is not a finished forget run. Re-run it.")
    model, pretrained, weights = origins[0]
    clip = load_clip(model, pretrained, weights)
    original = {k: v.detach().clone() for k, v in clip.model.state_dict().items()}
    states = [read_weights(f / "model.safetensors", original) for f in folders]
    clip.model.load_state_dict(merge_models(original, states, how))
    clip.save(out)
    return clip


__all__ = ["merge_runs"]
