"""CVPR'25 Table 6 on the mini zoo: models that each forgot one CIFAR-10 class (ship, airplane, cat)
with forget-remind-restore, merged into one (``clipunlearn merge``), and the per-class CIFAR-10
accuracy of the original, of each single model and of the merges S+A and S+A+C.

    python benchmarks/subgroup_merge.py --data-root ../shared/data --out runs/merge \
        --page docs/results/subgroup-merge-mini-rn.md

The three forget runs are ordinary run folders under --out (content-hashed: a rerun skips them).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from clipunlearn.benchmark.report import shown_command
from clipunlearn.data import load_image_set
from clipunlearn.evaluation import Evaluator
from clipunlearn.io import write_text
from clipunlearn.models import load_clip
from clipunlearn.runs.execution import execute
from clipunlearn.runs.merge import merge_runs
from clipunlearn.runs.spec import RunSpec

CLASSES = {"S": "ship", "A": "airplane", "C": "cat"}
MERGES = {"S+A": ["S", "A"], "S+A+C": ["S", "A", "C"]}


def per_class(model: str, weights: str | None, data_root: str) -> dict[str, float]:
    clip = load_clip(model, weights=weights)
    images = load_image_set("cifar10", data_root, "test")
    return Evaluator(clip, progress=False).evaluate(images).per_class()


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini-rn")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--page", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--how", choices=("mean", "sum"), default="mean")
    args = ap.parse_args()
    out = Path(args.out)
    runs: dict[str, Path] = {}
    for key, cls in CLASSES.items():
        spec = RunSpec(model=args.model, method="forget-remind-restore", dataset=f"cross-domain-{cls}", classes=(cls,),
                       seed=args.seed, other_datasets=(), retrieval=False, template_change=False,
                       subgroup=f"cross-domain-{cls}").resolved()
        runs[key] = out / "runs" / spec.run_id
        if not (runs[key] / "results.json").is_file():
            print(f"forgetting {cls} ...", file=sys.stderr)
            execute(spec, runs[key], args.data_root, cache_dir=str(out / "cache"))
    rows = {"Original": per_class(args.model, None, args.data_root)}
    for key, cls in CLASSES.items():
        rows[f"{cls.capitalize()} ({key})"] = per_class(args.model, str(runs[key] / "model.safetensors"), args.data_root)
    for name, keys in MERGES.items():
        merged = out / f"merged-{name}-{args.how}.safetensors"
        if not merged.is_file():
            merge_runs([runs[k] for k in keys], merged, args.how)
        rows[name] = per_class(args.model, str(merged), args.data_root)
    classes = list(rows["Original"])
    command = shown_command(["python", "benchmarks/subgroup_merge.py", *sys.argv[1:]])
    lines = [f"# Merging single-class forget models (CVPR'25 App. A.2, Table 6) on {args.model}", "",
             f"Made by `{command}`. forget-remind-restore (default preset, seed {args.seed}) forgot ship, airplane "
             f"and cat of CIFAR-10, one model each (settings cross-domain-ship / -airplane / -cat); `clipunlearn "
             f"merge --how {args.how}` merged them (original + {args.how} of the models' changes). Per-class zero-shot "
             f"top-1 on the {len(load_image_set('cifar10', args.data_root, 'test'))} CIFAR-10 test images.", "",
             "| model | " + " | ".join(classes) + " |", "|---|" + "---|" * len(classes)]
    for name, accs in rows.items():
        lines.append(f"| {name} | " + " | ".join(f"{accs[c]:.2f}" for c in classes) + " |")
    page = "\n".join(lines) + "\n"
    print(page)
    if args.page:
        write_text(args.page, page)
    return 0


if __name__ == "__main__":
    sys.exit(main())
