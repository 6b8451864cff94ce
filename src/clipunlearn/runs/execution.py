"""Execute a :class:`.spec.RunSpec` into a run folder (what a benchmark's executor does for each cell): a
spec with a subgroup setting runs the subgroup pipeline (:mod:`.subgroup`), any other the class
pipeline (:mod:`.pipeline`). It sits above both, so that the spec, which both pipelines read, stays
below them."""
from __future__ import annotations

import os
from typing import Any

from .pipeline import ForgetSettings, forget
from .spec import RunSpec
from .subgroup import SubgroupSettings, forget_subgroup


def execute(spec: RunSpec, out: str | os.PathLike[str], data_root: str | None, cache_dir: str | None = None,
            progress: bool = False, device: str = "cpu", synthetic_cache: str | None = None,
            save_model: str = "full") -> dict[str, Any]:
    """Run ``spec`` into the folder ``out`` (written atomically; never overwritten). Image features are
    cached in ``cache_dir`` and synthetic sets shared through ``synthetic_cache``, when given;
    ``save_model``: the run's model.safetensors holds every tensor ("full") or the changed ones."""
    if spec.subgroup is not None:
        return forget_subgroup(SubgroupSettings(
            model=spec.model, setting=spec.subgroup, out=str(out), data_root=data_root, pretrained=spec.pretrained,
            method=spec.method, preset=spec.preset, ablation=spec.ablation, seed=spec.seed, device=device,
            n_per_class=spec.n_per_class, progress=progress, max_epochs=spec.max_epochs,
            generation_max_steps=spec.max_steps, options=dict(spec.options), cache_dir=cache_dir,
            retrieval=spec.retrieval, other_datasets=None if spec.other_datasets is None else list(spec.other_datasets),
            run_spec={"run_id": spec.run_id, **spec.key()}, save_model=save_model, precision=spec.precision))
    s = ForgetSettings(model=spec.model, dataset=spec.dataset, classes=list(spec.classes), out=str(out),
                       data_root=data_root, pretrained=spec.pretrained,
                       other_datasets=None if spec.other_datasets is None else list(spec.other_datasets),
                       method=spec.method, preset=spec.preset, ablation=spec.ablation, seed=spec.seed,
                       device=device, n_per_class=spec.n_per_class, progress=progress, max_epochs=spec.max_epochs,
                       generation_max_steps=spec.max_steps, options=dict(spec.options), cache_dir=cache_dir,
                       synthetic_cache=synthetic_cache,
                       retrieval=spec.retrieval, template_change=spec.template_change,
                       run_spec={"run_id": spec.run_id, **spec.key()}, save_model=save_model,
                       precision=spec.precision)
    return forget(s)


__all__ = ["execute"]
