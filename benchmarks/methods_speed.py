"""CPU (or GPU) seconds per forgotten class of every registered method, beside Lip's, in one run.

    python benchmarks/methods_speed.py [--model mini-rn] [--dataset caltech101 --cls motorbike]
                                       [--preset default] [--json OUT] [--methods lip,salun]

Each method forgets the same class of the same model through the normal pipeline (its run folder
under a temporary directory); the seconds are those results.json records: making data (synthetic
images, or decoding real train images, counted in forgetting), forgetting, and evaluation. Every
method makes its own synthetic images (no sharing between methods), so the totals are comparable.
Ratios are to Lip's seconds measured in the same process. A method that refuses the model or the
class (e.g. one that needs batch-norm layers, on a ViT) is listed with its error instead of a row.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.benchmark.report import shown_command
from clipunlearn.data import split_names
from clipunlearn.errors import TrainingError
from clipunlearn.io import write_text
from clipunlearn.methods import method_names
from clipunlearn.runs import ForgetSettings, forget, read_results
from clipunlearn.runs.spec import weights_id


def measure(method: str, out: str, settings: dict) -> dict | str:
    """One method's row, or the reason it refuses this model/class (its error's message)."""
    t0 = time.time()
    try:
        forget(ForgetSettings(out=out, method=method, **settings))
    except TrainingError as e:  # the method refuses this model or class; bad input stops the script
        return str(e)
    wall = time.time() - t0
    r = read_results(out)
    method_s = r.seconds["generation"] + r.seconds["forgetting"]
    return {"method": method, "zero_shot": r.raw["zero_shot"], "generation_s": r.seconds["generation"],
            "forgetting_s": r.seconds["forgetting"], "method_s": round(method_s, 2),
            "evaluation_s": r.seconds["evaluation"], "wall_s": round(wall, 2),
            "target_before": r.target.before, "target_after": r.target.after, "avg_score": r.avg_score}


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mini-rn")
    ap.add_argument("--dataset", default="caltech101")
    ap.add_argument("--cls", default="motorbike")
    ap.add_argument("--other-datasets", default="cifar10,imagenette")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--methods", default=None, help="comma-separated (default: every registered method)")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    ap.add_argument("--page", default=None, help="also write the table as a markdown results page")
    args = ap.parse_args()
    methods = split_names(args.methods) or method_names()
    if "lip" in methods:
        methods = ["lip"] + [m for m in methods if m != "lip"]
    settings = dict(model=args.model, dataset=args.dataset, classes=[args.cls], data_root=args.data_root,
                    other_datasets=split_names(args.other_datasets), preset=args.preset, device=args.device,
                    progress=False, retrieval=False, template_change=False)
    rows: list[dict] = []
    refused: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in methods:
            row = measure(m, f"{tmp}/{m}", settings)
            if isinstance(row, str):
                refused[m] = row
                print(f"{m}: cannot run: {row}", file=sys.stderr, flush=True)
            else:
                rows.append(row)
                print(f"{m}: {row['method_s']:.1f}s method, {row['wall_s']:.1f}s wall", file=sys.stderr, flush=True)
    lip = next((row["method_s"] for row in rows if row["method"] == "lip"), None)
    for row in rows:
        row["vs_lip"] = round(row["method_s"] / lip, 3) if lip else None
    header = (f"{args.model} (weights {weights_id(args.model)[:12]}), {args.dataset} '{args.cls}', preset {args.preset}, {args.device}, "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(header)
    print(f"{'method':<12} {'kind':<7} {'generate s':>10} {'forget s':>9} {'method s':>9} {'x Lip':>6} "
          f"{'target BF→AF':>13} {'Avg.Score':>9}")
    for row in rows:
        score = "–" if row["avg_score"] is None else f"{row['avg_score']:.3f}"
        ratio = "–" if row["vs_lip"] is None else f"{row['vs_lip']:.2f}"
        print(f"{row['method']:<12} {row['zero_shot']:<7} {row['generation_s']:>10.1f} {row['forgetting_s']:>9.1f} "
              f"{row['method_s']:>9.1f} {ratio:>6} {row['target_before']:.2f}→{row['target_after']:.2f}"
              f"{'':>4} {score:>9}")
    for m, reason in refused.items():
        print(f"{m:<12} cannot run: {reason}")
    if args.json:
        write_text(args.json, json.dumps({"setup": header, "rows": rows, "refused": refused}, indent=2) + "\n")
    if args.page:
        lines = [f"# Seconds per forgotten class, every method beside Lip ({args.model})", "",
                 "Made by `" + shown_command(["python", "benchmarks/methods_speed.py", *sys.argv[1:]]) + "`.",
                 "", f"Setup: {header}. One run per method, in one process; *method s* = making data "
                 "(synthetic images) + forgetting (incl. decoding real images), evaluation excluded. "
                 "One class and one seed: the accuracies show that each method ran, not how good it is.", "",
                 "| method | kind | generate s | forget s | method s | × Lip | target BF → AF | Avg. Score |",
                 "|---|---|---|---|---|---|---|---|"]
        for row in rows:
            score = "–" if row["avg_score"] is None else f"{row['avg_score']:.3f}"
            ratio = "–" if row["vs_lip"] is None else f"{row['vs_lip']:.2f}"
            lines.append(f"| {row['method']} | {row['zero_shot']} | {row['generation_s']:.1f} | {row['forgetting_s']:.1f} | "
                         f"{row['method_s']:.1f} | {ratio} | {row['target_before']:.2f} → {row['target_after']:.2f} | {score} |")
        if refused:
            lines += ["", f"Methods that refuse {args.model} (each stopped with its own error):", ""]
            lines += [f"- {m}: {reason}" for m, reason in refused.items()]
        write_text(args.page, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
