"""Sweep a method's settings on the mini zoo: every combination of a grid, over several classes and
seeds, through the normal pipeline; one table of means, written as a results page.

    python benchmarks/sweep.py --method emmn --preset paper \\
        --setting "impair_lr=0.02;repair_lr=0.01" --setting "impair_lr=0.001;repair_lr=0.0005" \\
        --classes "caltech101:minaret,caltech101:euphonium,caltech101:motorbike" --seeds 0 \\
        --out runs/sweep-emmn --page docs/results/sweeps/emmn-mini-rn.md

Each cell is a normal run folder under --out (rerunning skips finished cells). Synthetic forget
sets are made once per class and seed and reused by every setting, so settings differ only in what
they change. The bar of the project (docs/lip.md): target ≤ 20 % of its accuracy before, other
classes ≥ 90 %, other datasets ≥ 95 %, Avg. Score ≤ 0.10.
"""
from __future__ import annotations

import argparse
import itertools
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.benchmark.report import shown_command  # noqa: E402
from clipunlearn.data import split_names  # noqa: E402
from clipunlearn.io import write_text  # noqa: E402
from clipunlearn.methods import get_method, parse_option  # noqa: E402
from clipunlearn.runs import ForgetSettings, RunResults, forget, read_results  # noqa: E402


def _grid(specs: list[str]) -> list[dict]:
    axes = []
    for spec in specs:
        key, _, values = spec.partition("=")
        axes.append([parse_option(f"{key}={v}") for v in values.split(",")])
    return [dict(combo) for combo in itertools.product(*axes)] if axes else [{}]


def _summary(rows: list[RunResults]) -> dict[str, float | None]:
    def mean(xs: list[float]) -> float | None:
        return sum(xs) / len(xs) if xs else None

    target = mean([r.target.after / r.target.before for r in rows if r.target.before])
    others = mean([r.other_classes.after / r.other_classes.before for r in rows if r.other_classes.before])
    worst = mean([min((v.after / v.before for v in r.datasets.values() if v.before), default=1.0) for r in rows])
    score = mean([r.avg_score for r in rows if r.avg_score is not None])
    seconds = mean([r.seconds.get("generation", 0) + r.seconds.get("forgetting", 0) for r in rows])
    return {"target_af_bf": target, "others_ratio": others, "worst_dataset_ratio": worst, "avg_score": score,
            "seconds": seconds}


def _meets(s: dict[str, float | None]) -> bool:
    return (s["target_af_bf"] is not None and s["target_af_bf"] <= 0.2 and (s["others_ratio"] or 0) >= 0.9
            and (s["worst_dataset_ratio"] or 0) >= 0.95 and s["avg_score"] is not None and s["avg_score"] <= 0.10)


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini-rn")
    ap.add_argument("--method", required=True)
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--ablation", default=None)
    ap.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2",
                    help="repeatable: every combination of the values is a setting")
    ap.add_argument("--setting", action="append", default=[], metavar="FIELD=V[;FIELD=V]",
                    help="repeatable: one setting each (fields separated by ';'), after the grid's")
    ap.add_argument("--classes", required=True, help="comma-separated dataset:class")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--other-datasets", default=None, help="default: the paper's other datasets")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("-n", "--n-per-class", type=int, default=64)
    ap.add_argument("--out", required=True)
    ap.add_argument("--page", default=None, help="also write the table here (a results page)")
    args = ap.parse_args()
    method = get_method(args.method)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    targets = [tuple(item.split(":", 1)) for item in split_names(args.classes)]
    seeds = [int(s) for s in split_names(args.seeds)]
    settings = _grid(args.grid) if args.grid or not args.setting else []
    settings += [dict(parse_option(item) for item in spec.split(";")) for spec in args.setting]
    lines = [f"# Sweep of {args.method} ({args.preset} preset{', ' + args.ablation if args.ablation else ''}) "
             f"on {args.model}", "",
             "Made by `" + shown_command(["python", "benchmarks/sweep.py", *sys.argv[1:]]) + "`.", "",
             f"Classes: {', '.join(f'{d} {c}' for d, c in targets)}; seeds {seeds}. Means over the cells; "
             "ratios are after/before; ✓ = meets the bar (target ≤ 0.20 of before, other classes ≥ 0.90, "
             "worst other dataset ≥ 0.95, Avg. Score ≤ 0.10).", "",
             "| setting | target AF/BF | other classes AF/BF | worst other dataset AF/BF | Avg. Score | s per class | bar |",
             "|---|---|---|---|---|---|---|"]
    for options in settings:
        rows = []
        for (dataset, cls), seed in itertools.product(targets, seeds):
            tag = ",".join(f"{k}={v}" for k, v in options.items()) or "preset"
            run = out / f"{dataset}--{cls.replace(' ', '_')}--s{seed}--{tag}"
            shared = out / ".synthetic" / f"{dataset}--{cls.replace(' ', '_')}--s{seed}.safetensors"
            if not (run / "results.json").exists():
                reuse = shared if shared.exists() and "synthetic_forget" in method.needs else None
                forget(ForgetSettings(model=args.model, dataset=dataset, classes=[cls], out=str(run),
                                      data_root=args.data_root, method=args.method, preset=args.preset,
                                      ablation=args.ablation, seed=seed, n_per_class=args.n_per_class,
                                      synthetic=str(reuse) if reuse else None, options=options,
                                      other_datasets=split_names(args.other_datasets) if args.other_datasets else None,
                                      progress=False, retrieval=False, template_change=False,
                                      cache_dir=str(out / ".features")))
                if (run / "synthetic.safetensors").exists() and not shared.exists():
                    shared.parent.mkdir(exist_ok=True)
                    shared.write_bytes((run / "synthetic.safetensors").read_bytes())
            rows.append(read_results(run))
        s = _summary(rows)

        def f(x: float | None) -> str:
            return "–" if x is None else f"{x:.3f}"

        line = (f"| {', '.join(f'{k}={v}' for k, v in options.items()) or '(preset)'} | {f(s['target_af_bf'])} | "
                f"{f(s['others_ratio'])} | {f(s['worst_dataset_ratio'])} | {f(s['avg_score'])} | "
                f"{f(s['seconds'])} | {'✓' if _meets(s) else ''} |")
        lines.append(line)
        print(line, flush=True)
    text = "\n".join(lines) + "\n"
    write_text(out / "sweep.md", text)
    if args.page:
        write_text(args.page, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
