"""A forgetting table on the mini zoo: one run per class, for any method, preset and ablation.

    python benchmarks/forget_table.py --model mini-rn --preset default --out runs/table-mini-rn-default
    python benchmarks/forget_table.py --model mini-rn --method salun --preset paper --out runs/salun-paper

Class rule (docs/lip.md): in each of the paper's four datasets, the paper's forget classes that the
model recognises (test accuracy >= 0.3), completed by the model's best-recognised classes of that
dataset, `--per-dataset` classes each. Every run is a normal `clipunlearn forget` run folder under
--out; the table (markdown + JSON) is rebuilt from their results.json files.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.data import load_image_set, paper_datasets
from clipunlearn.data.registry import PAPER_FORGET_CLASSES
from clipunlearn.evaluation import Evaluator
from clipunlearn.methods import parse_option
from clipunlearn.models import load_clip
from clipunlearn.runs import ForgetSettings, RunResults, forget, read_results


def pick_classes(model: str, data_root: str, per_dataset: int, min_acc: float = 0.3) -> dict[str, list[str]]:
    clip = load_clip(model)
    ev = Evaluator(clip, progress=False)
    chosen: dict[str, list[str]] = {}
    for name in paper_datasets():
        per_class = ev.evaluate(load_image_set(name, data_root, "test")).per_class()
        picks = [c for c in PAPER_FORGET_CLASSES.get(name, ()) if per_class.get(c, 0) >= min_acc]
        for c, _ in sorted(per_class.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(picks) >= per_dataset:
                break
            if c not in picks and per_class[c] >= min_acc:
                picks.append(c)
        chosen[name] = picks[:per_dataset]
    return chosen


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def table(rows: list[RunResults]) -> str:
    lines = ["| dataset | class | target BF | target AF | other cls BF→AF | other datasets AF/BF (min) | Avg. Score | epochs |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ratios = [v.after / v.before for v in r.datasets.values() if v.before]
        lines.append(f"| {r.dataset} | {', '.join(r.classes)} | {_f(r.target.before)} | {_f(r.target.after)} | "
                     f"{_f(r.other_classes.before)}→{_f(r.other_classes.after)} | "
                     f"{_f(min(ratios) if ratios else None)} | {_f(r.avg_score)} | {r.epochs} |")
    n = len(rows)
    if n:
        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        rel = mean([r.target.after / r.target.before for r in rows if r.target.before])
        keep = mean([r.other_classes.after / r.other_classes.before for r in rows if r.other_classes.before])
        scores = [r.avg_score for r in rows if r.avg_score is not None]
        lines.append(f"| **mean** | {n} runs | {mean([r.target.before for r in rows]):.3f} | "
                     f"{mean([r.target.after for r in rows]):.3f} (AF/BF {rel:.3f}) | kept {keep:.3f} | | "
                     f"{_f(mean(scores) if scores else None)} | |")
    return "\n".join(lines)


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini-rn")
    ap.add_argument("--method", default="lip")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--ablation", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--per-dataset", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("-n", "--n-per-class", type=int, default=64)
    ap.add_argument("--synthetic-from", help="another table's --out: reuse each run's synthetic.safetensors, "
                    "so that both presets forget from the same images")
    ap.add_argument("--cache-dir", default=None, help="image-feature cache shared by the runs (default OUT/.features)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a field of the method's config over the preset (as `clipunlearn forget --set`)")
    args = ap.parse_args()
    options = dict(parse_option(o) for o in args.set)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    classes = pick_classes(args.model, args.data_root, args.per_dataset)
    print("classes:", json.dumps(classes), flush=True)
    rows = []
    for dataset, names in classes.items():
        for c in names:
            run = out / f"{dataset}--{c.replace(' ', '_').replace('/', '_')}"
            if not (run / "results.json").exists():
                reuse = Path(args.synthetic_from) / run.name / "synthetic.safetensors" if args.synthetic_from else None
                if reuse is not None and not reuse.exists():
                    raise SystemExit(f"{reuse} does not exist: run the other preset's table first, or drop --synthetic-from.")
                forget(ForgetSettings(model=args.model, dataset=dataset, classes=[c], out=str(run),
                                      data_root=args.data_root, method=args.method, preset=args.preset,
                                      ablation=args.ablation, seed=args.seed, n_per_class=args.n_per_class,
                                      synthetic=str(reuse) if reuse else None, progress=False, options=options,
                                      cache_dir=args.cache_dir or str(out / ".features")))
            rows.append(read_results(run))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    md = table(rows)
    (out / "table.md").write_text(md + "\n")
    (out / "table.json").write_text(json.dumps([r.raw for r in rows], indent=1, default=str) + "\n")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
