"""Cells per second of the benchmark executors (local, process, ray) on one small suite, in one run.

    python benchmarks/executors_speed.py [--workers 2] [--executors local,process,ray,ray-running]
                                         [--classes leopard,motorbike,airplane] [--n-per-class 4]
                                         [--max-steps 20] [--json OUT] [--page FILE]

Each executor runs the same suite (mini-rn; Lip and Amns on each class, tiny settings: one cell is
seconds of work) into a new temporary folder, so every executor starts with empty feature and
synthetic caches. The seconds are ``run_suite``'s wall time, worker processes and the Ray cluster's
start included: what a user waits for; ``ray-running`` is the ray executor on a Ray cluster started
before the clock, as with ``--ray-address``. ``cell s`` is the mean of the seconds the cells'
results.json record (generation + forgetting + evaluation): how much slower a cell is in a worker
than in this process. process runs ``--workers`` processes with cores / workers torch threads each;
ray starts a local cluster of this machine's cores, one CPU per cell. Goals: process at least 1.5x
local; ray within 15 % of process.

``--scaling`` also times the suite's first cell in this process with 1 thread and with all cores,
caches warm (a first, untimed run fills them), as the cells after the first run in a suite: how
much faster one cell gets from more threads bounds what N single-thread workers can gain over one
process with N threads (at most N x t(N threads) / t(1 thread) times the cells per second).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.benchmark import ExecutorOptions, load_suite, plan, run_suite
from clipunlearn.benchmark.report import shown_command
from clipunlearn.data import split_names
from clipunlearn.io import write_text

SUITE = """
name = "executors-speed"
models = ["mini-rn"]
seeds = [0]
other_datasets = ["cifar10"]
n_per_class = {n_per_class}
max_steps = {max_steps}
max_epochs = 1
retrieval = false
template_change = false
[[methods]]
method = "lip"
options = {{ n_draws = 2, retain_steps = 2 }}
[[methods]]
method = "amns"
{targets}
"""

GOALS = {"process / local": 1.5, "ray / process": 0.85, "ray-running / process": 0.85}  # ray within 15 %


def thread_scaling(suite, data_root: str, tmp: Path) -> dict[int, float]:
    """Seconds of the suite's first cell in this process with 1 thread and with every core, caches
    warm (features and synthetic sets made by a first, untimed run)."""
    from clipunlearn.runs.execution import execute

    spec = suite.cells()[0].resolved()
    cache, synthetic = tmp / "scaling" / "features", tmp / "scaling" / "synthetic"
    execute(spec, tmp / "scaling" / "warm", data_root, str(cache), synthetic_cache=str(synthetic))
    threads, out = torch.get_num_threads(), {}
    for n in sorted({1, os.cpu_count() or 1}):
        torch.set_num_threads(n)
        t0 = time.time()
        execute(spec, tmp / "scaling" / f"threads-{n}", data_root, str(cache), synthetic_cache=str(synthetic))
        out[n] = round(time.time() - t0, 2)
    torch.set_num_threads(threads)
    return out


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--executors", default="local,process,ray,ray-running",
                    help="ray-running: the ray executor on a Ray cluster started before the clock starts")
    ap.add_argument("--workers", type=int, default=2, help="worker processes of the process executor")
    ap.add_argument("--classes", default="leopard,motorbike,airplane", help="caltech101 classes, two cells each")
    ap.add_argument("--n-per-class", type=int, default=4, help="synthetic images per class of each cell")
    ap.add_argument("--max-steps", type=int, default=20, help="generation steps per image attempt")
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--scaling", action="store_true", help="also time one cell with 1 thread and with all cores")
    ap.add_argument("--json", default=None)
    ap.add_argument("--page", default=None, help="also write the table as a markdown results page")
    args = ap.parse_args()
    executors = split_names(args.executors)
    targets = "".join(f'[[targets]]\ndataset = "caltech101"\nclasses = ["{c}"]\n' for c in split_names(args.classes))
    load = os.getloadavg()[0]  # this machine may be shared: a busy one slows every executor
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.toml"
        path.write_text(SUITE.format(targets=targets, n_per_class=args.n_per_class, max_steps=args.max_steps))
        suite = load_suite(path)
        for name in executors:
            out = Path(tmp) / name
            options = ExecutorOptions(workers=args.workers) if name == "process" else ExecutorOptions()
            if name == "ray-running":  # the executor uses a Ray this process started, and leaves it running
                import ray

                ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.ERROR)
            t0 = time.time()
            run_suite(suite, out, args.data_root, executor=name.removesuffix("-running"), options=options,
                      echo=lambda *_: None)
            wall = time.time() - t0
            if name == "ray-running":
                ray.shutdown()
            p = plan(suite, out)
            if p.failed or p.todo:
                raise SystemExit(f"{name}: {len(p.failed)} cells failed, {len(p.todo)} not run; see {out}/failed")
            cell_s = [sum(json.loads((out / "runs" / s.run_id / "results.json").read_text())["seconds"].values())
                      for s in p.done]
            rows.append({"executor": name, "cells": len(p.done), "wall_s": round(wall, 1),
                         "cells_per_s": round(len(p.done) / wall, 4),
                         "cell_s": round(sum(cell_s) / len(cell_s), 1)})
            print(f"{name}: {len(p.done)} cells in {wall:.1f}s", file=sys.stderr, flush=True)
        scaling = thread_scaling(suite, args.data_root, Path(tmp)) if args.scaling else {}
    rate = {r["executor"]: r["cells_per_s"] for r in rows}
    ratios = {}
    if "local" in rate and "process" in rate:
        ratios["process / local"] = round(rate["process"] / rate["local"], 2)
    for ray_name in ("ray", "ray-running"):
        if "process" in rate and ray_name in rate:
            ratios[f"{ray_name} / process"] = round(rate[ray_name] / rate["process"], 2)
    header = (f"mini-rn, {rows[0]['cells']} cells (lip, amns x {args.classes}; {args.n_per_class} images per "
              f"class, {args.max_steps} generation steps), "
              f"{os.cpu_count()} cores (load average {load:.1f} at the start), torch {torch.__version__}, "
              f"process: {args.workers} workers")
    print(header)
    print(f"{'executor':<9} {'cells':>5} {'wall s':>7} {'cells/s':>8} {'cell s':>7}")
    for r in rows:
        print(f"{r['executor']:<9} {r['cells']:>5} {r['wall_s']:>7.1f} {r['cells_per_s']:>8.3f} {r['cell_s']:>7.1f}")
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    bound = None
    if len(scaling) == 2:
        (one, t1), (n, tn) = sorted(scaling.items())
        bound = round(args.workers * tn / t1, 2)
        print(f"one cell, caches warm: {t1:.1f}s with 1 thread, {tn:.1f}s with {n}: {args.workers} single-thread "
              f"workers can run at most {bound:.2f}x the cells per second of one {n}-thread process")
    if args.json:
        write_text(args.json, json.dumps({"setup": header, "rows": rows, "ratios": ratios, "scaling": scaling,
                                          "bound": bound}, indent=2) + "\n")
    if args.page:
        command = shown_command(["python", "benchmarks/executors_speed.py", *sys.argv[1:]])
        lines = ["# Benchmark executors: cells per second", "", f"Made by `{command}`.",
                 "", f"Setup: {header}. Each executor runs the same suite into a new folder (empty caches); "
                 "*wall s* is `run_suite`'s time, worker and Ray start-up included (ray-running: the ray "
                 "executor on a local Ray cluster started before the clock); *cell s* is the mean of the "
                 "seconds each cell's results.json records (generation + forgetting + evaluation).", "",
                 "| executor | cells | wall s | cells / s | cell s |", "|---|---|---|---|---|"]
        lines += [f"| {r['executor']} | {r['cells']} | {r['wall_s']:.1f} | {r['cells_per_s']:.3f} | {r['cell_s']:.1f} |"
                  for r in rows]
        cell = {r["executor"]: r["cell_s"] for r in rows}
        if "local" in cell and len(cell) > 1:
            slower = ", ".join(f"{k} {v / cell['local']:.1f}x" for k, v in cell.items() if k != "local")
            lines += ["", f"Mean cell seconds relative to local: {slower}. In local a cell has all "
                      f"{torch.get_num_threads()} torch threads; in process each of {args.workers} workers has "
                      f"{max(1, (os.cpu_count() or 1) // args.workers)}, in ray each cell 1."]
        if bound is not None:
            (one, t1), (n, tn) = sorted(scaling.items())
            lines += ["", f"Thread scaling (`--scaling`): the first cell, caches warm, took {t1:.1f} s with 1 thread "
                      f"and {tn:.1f} s with {n} ({t1 / tn:.2f}x faster). So {args.workers} single-thread workers can "
                      f"run at most {args.workers} x {tn:.1f} / {t1:.1f} = **{bound:.2f}x** the cells per second of "
                      f"one {n}-thread process on this machine, start-up and shared-cache waits aside."]
        lines += ["", "| ratio of cells / s | measured | goal | met |", "|---|---|---|---|"]
        lines += [f"| {k} | {v:.2f} | ≥ {GOALS[k]} | {'yes' if v >= GOALS[k] else 'no'} |" for k, v in ratios.items()]
        write_text(args.page, "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
