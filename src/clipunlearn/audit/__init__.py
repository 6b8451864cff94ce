"""``clipunlearn audit RUN_DIR``: evidence that a forgotten class is gone, not just hidden from one prompt.

:func:`audit_run` reads a class run folder, loads the original, the forgotten and (optionally) an oracle
model that never saw the class, runs the attacks of :mod:`.attacks` and writes ``RUN_DIR/audit/``
(``audit.json``, ``audit.md``, plots) through a staging folder, so a killed audit leaves nothing
half-written. ``docs/audit.md`` describes each attack and the thresholds of :class:`Thresholds`.
"""
from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ClipUnlearnError, unknown
from ..io import check_output_free, staged_dir
from ..precision import computing, parse_precision
from ..version import __version__
from .attacks import ATTACKS, NEEDS_TRAIN, NO_FEATURES
from .case import AuditCase, load_case, read_run, with_dataset_dir
from .relearning import STEPS, Attack, CurveCache, resolve_grid
from .tasks import CONCEPT, SUBGROUP, also_named_in, coarse_reading, exclude_flags, refuse_oracle
from .verdict import Thresholds, verdicts

log = logging.getLogger("clipunlearn")


def resolve_attacks(attacks: str | Sequence[str] | None, has_oracle: bool) -> list[str]:
    """The attacks to run, in :data:`ATTACKS` order: all (``oracle`` only with an oracle) when None."""
    if attacks is None:
        return [a for a in ATTACKS if a != "oracle" or has_oracle]
    names = [a.strip() for a in (attacks.split(",") if isinstance(attacks, str) else attacks) if a.strip()]
    if not names:
        raise ClipUnlearnError(f"--attacks names no attack. Pass some of: {', '.join(ATTACKS)}.")
    for a in names:
        if a not in ATTACKS:
            raise unknown("attack", a, ATTACKS)
    if "oracle" in names and not has_oracle:
        raise ClipUnlearnError("The attack 'oracle' needs an oracle model. Pass --oracle FILE, or leave 'oracle' "
                               "out of --attacks.")
    return [a for a in ATTACKS if a in names]


def audit_run(run_dir: str | os.PathLike[str], oracle: str | os.PathLike[str] | None = None,
              attacks: str | Sequence[str] | None = None, data_root: str | None = None,
              out: str | os.PathLike[str] | None = None, overwrite: bool = False,
              thresholds: Thresholds | None = None, seed: int = 0,
              relearning: str | Sequence[str | Attack] = "held-out", relearn_steps: Sequence[int] = STEPS,
              cache_dir: str | os.PathLike[str] | None = None,
              dataset_dir: str | os.PathLike[str] | None = None,
              precision: str = "auto") -> dict[str, Any]:
    """Audit the run in ``run_dir``; write ``out`` (default ``run_dir/audit``) and return audit.json's dict.

    Every input is checked before any compute: the run (a class, subgroup or concept run whose model
    file matches its recorded sha256), the oracle's architecture (a concept run takes none), the attack
    names and the output folder (never overwritten unless ``overwrite``). An attack that cannot run on
    the run's task is reported as ``{"skipped": reason}`` with an undefined verdict.

    ``relearning``: the relearning grid's attacks, by grid name (``held-out``, the verdict's; ``tuning``;
    ``full``, the image tower's; ``text``, the text tower's) or as attacks; ``relearn_steps``: the step counts each curve is read at. ``cache_dir``: a
    folder for the original's and the oracle's relearning curves, shared by every audit of their class
    (``relearning/`` inside it); without it they are computed anew each time. ``dataset_dir``: where the
    class-folder tree of a run made with ``--dataset-dir`` is now, when it has moved (default: the
    folder the run names). ``precision``: of the audit's own compute (:mod:`clipunlearn.precision`; on
    the CPU ``auto`` is fp32), recorded in audit.json.
    """
    th = thresholds or Thresholds()
    wanted = parse_precision(precision)
    if not relearn_steps or any(int(s) < 1 for s in relearn_steps):
        raise ClipUnlearnError(f"Relearning curves are read after 1 step or more, got steps={list(relearn_steps)}. "
                               "Pass positive step counts, e.g. 5,25,100.")
    grid = resolve_grid(relearning)
    info = read_run(run_dir)
    if dataset_dir is not None:
        info = with_dataset_dir(info, dataset_dir)
    refuse_oracle(info.task, oracle, attacks)
    names = resolve_attacks(attacks, oracle is not None)
    target = Path(out) if out is not None else info.run_dir / "audit"
    check_output_free(target, overwrite, "audit folder")
    with computing(wanted, "cpu") as used:  # the audit computes on the CPU
        cache = CurveCache(Path(cache_dir) / "relearning" if cache_dir is not None else None)
        case = load_case(info, oracle, data_root, need_train=any(a in NEEDS_TRAIN for a in names), seed=seed,
                         relearn_grid=grid, relearn_steps=tuple(sorted({int(s) for s in relearn_steps})),
                         curve_cache=cache)
        results, seconds = _run_attacks(case, names)
        audit: dict[str, Any] = {
            # paths relative to the audit folder, so that a page that copies the audit names no machine's folders
            "run": {"folder": os.path.relpath(info.run_dir, target), "model": info.model, "pretrained": info.pretrained,
                    "method": info.method, "dataset": info.dataset, "classes": info.classes,
                    "model_sha256_checked": info.hash_checked, "task": info.task},
            "task": _task_block(case, oracle is not None),
            "oracle": os.path.relpath(oracle, target) if oracle is not None else None,
            "models": list(case.models),
            "attacks": names,
            "thresholds": th.to_json(),
            "verdict": verdicts(results, th),
            "results": results,
            "seconds": seconds,
            "seed": seed,
            "relearning_grid": [a.name for a in grid] if "relearning" in names else [],
            "precision": used.value,
            "clipunlearn": __version__,
        }
    from .report import write_audit

    with staged_dir(target, overwrite) as folder:
        write_audit(folder, audit)
    return audit


def _run_attacks(case: AuditCase, names: list[str]) -> tuple[dict[str, Any], dict[str, dict[str, float]]]:
    """Each attack's result (``{"skipped": reason}`` where it cannot run on the task) and the CPU and
    wall seconds it took; the image features most attacks share are computed first, timed apart."""
    results: dict[str, Any] = {}
    seconds: dict[str, dict[str, float]] = {}
    t_cpu, t_wall = time.process_time(), time.time()
    splits = ["test", "train"] if case.train is not None else ["test"]
    for model in case.models if any(a not in NO_FEATURES and a not in case.skipped for a in names) else ():
        for split in splits:
            case.features(model, split)
    seconds["features"] = {"cpu": round(time.process_time() - t_cpu, 2), "wall": round(time.time() - t_wall, 2)}
    for name in names:
        t_cpu, t_wall = time.process_time(), time.time()
        log.info("audit: %s ...", name)
        results[name] = {"skipped": case.skipped[name]} if name in case.skipped else ATTACKS[name](case)
        seconds[name] = {"cpu": round(time.process_time() - t_cpu, 2), "wall": round(time.time() - t_wall, 2)}
        log.info("audit: %s done in %.1fs", name, seconds[name]["wall"])
    return results, seconds


def _task_block(case: AuditCase, has_oracle: bool) -> dict[str, Any] | None:
    """What audit.json says about a subgroup or a concept run (None for a class run): a subgroup's
    setting, what each model calls its test images among the setting's coarse labels (the run's own
    measure) and the other datasets with a class of its name (an ``--exclude`` oracle left those out
    too); a concept's names and the images it was audited on."""
    info = case.run
    if info.task == SUBGROUP:
        f = info.facts
        return {"task": SUBGROUP, "setting": f["setting"], "kind": f["kind"], "dataset": f["dataset"],
                "subgroups": f["subgroups"], "coarse_label": coarse_reading(case),
                "oracle_exclude": exclude_flags(f["dataset"], f["subgroups"]),
                "also_named_in": also_named_in(f["dataset"], f["subgroups"], case.data_root),
                "with_oracle": has_oracle}
    if info.task == CONCEPT:
        return {"task": CONCEPT, "concepts": info.facts["concepts"], **info.facts.get("read", {}),
                "skipped": dict(case.skipped)}
    return None


__all__ = ["ATTACKS", "Thresholds", "audit_run", "resolve_attacks"]
