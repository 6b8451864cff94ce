"""CPU seconds of each attack of ``clipunlearn audit`` for one class on mini-rn.

    python benchmarks/audit_speed.py [--data-root ../shared/data] [--dataset caltech101] [--class motorbike]
                                     [--run RUN_DIR] [--oracle FILE] [--attacks a,b] [--threads 2] [--json OUT]

Without ``--run``, a small Lip run of the class is made first in a temporary folder (a few epochs,
not timed: the audit's cost does not depend on how well the run forgot). The audit then runs every
attack (``oracle`` too when ``--oracle`` is given; without one, the audit has two models, not three,
so the per-attack times are about two thirds of an audit with an oracle) and prints, per attack,
the process CPU seconds and the wall seconds. Goal (issue 12): the whole audit of one class on
mini-rn under 10 minutes on 2 cores, oracle training excluded.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.audit import audit_run
from clipunlearn.runs import ForgetSettings, forget


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--dataset", default="caltech101")
    p.add_argument("--class", dest="cls", default="motorbike")
    p.add_argument("--run", default=None, help="an existing run folder to audit (default: make a small Lip run)")
    p.add_argument("--oracle", default=None)
    p.add_argument("--attacks", default=None)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default=None, help="write the timings here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="audit-speed-"))
    run = Path(args.run) if args.run else tmp / "run"
    if args.run is None:
        t0 = time.time()
        forget(ForgetSettings(model="mini-rn", dataset=args.dataset, classes=[args.cls], out=str(run),
                              data_root=args.data_root, method="lip", n_per_class=16, max_epochs=2,
                              other_datasets=[], retrieval=False, template_change=False, progress=False))
        print(f"made a Lip run of {args.cls} in {time.time() - t0:.0f}s (not part of the audit's time)")
    t0, c0 = time.time(), time.process_time()
    audit = audit_run(run, oracle=args.oracle, attacks=args.attacks, data_root=args.data_root,
                      out=tmp / "audit", overwrite=True)
    wall, cpu = time.time() - t0, time.process_time() - c0
    print(f"{'attack':<12} {'cpu s':>8} {'wall s':>8}")
    for name, t in audit["seconds"].items():
        print(f"{name:<12} {t['cpu']:8.1f} {t['wall']:8.1f}")
    print(f"{'whole audit':<12} {cpu:8.1f} {wall:8.1f}  (loading models and data, report and plots included; "
          f"{args.threads} threads)")
    for v in audit["verdict"]:
        print(f"  {v['attack']}: {v['verdict']} - {v['figure']}")
    if args.json:
        Path(args.json).write_text(json.dumps({"seconds": audit["seconds"], "cpu": cpu, "wall": wall,
                                               "threads": args.threads, "dataset": args.dataset,
                                               "class": args.cls}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
