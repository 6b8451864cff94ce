"""Every attack of the audit's relearning grid on one run: its curves and CPU seconds, per model, and the
CPU minutes of each set of attacks (tuning, held out, full) for one audited cell.

    python benchmarks/audit_grid.py --run RUN_DIR [--oracle FILE] [--grid full|held-out|tuning|text]
                                    [--data-root ../shared/data] [--threads 1] [--json OUT]

The forgotten model's curves are what an audited cell pays each time; the original's and the oracle's
are computed once per class (cached by content in a suite). Goal (issue 34): the held-out attacks of
one audited cell under 10 CPU minutes on mini-rn. Printed: one line per attack and model (accuracy on
the forgotten class at steps 0, 5, 25, 100, CPU seconds), then the CPU minutes per set.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.audit.attacks import _load_pixels
from clipunlearn.audit.case import load_case, read_run
from clipunlearn.audit.relearning import GRIDS, HELD_OUT, STEPS, TUNING, RelearnData, draw_rows, relearn_curve


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="a class run folder (clipunlearn forget)")
    p.add_argument("--oracle", default=None)
    p.add_argument("--grid", default="full", choices=sorted(GRIDS))
    p.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None, help="write every curve and time here")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    case = load_case(read_run(args.run), args.oracle, args.data_root, need_train=True)
    rows = draw_rows(case)
    labels = case.labels("train")
    data = {k: RelearnData(_load_pixels(case, "train", r), torch.tensor(labels[r], dtype=torch.long), r)
            for k, r in rows.items()}
    test_rows = np.flatnonzero(case.is_target("test"))
    test_px, test_y = _load_pixels(case, "test", test_rows.tolist()), case.labels("test")[test_rows]
    prompts = [case.template.format(c) for c in case.classnames]  # a text attack's classifier
    out: dict[str, dict[str, dict]] = {}
    print(f"{case.run.method} forgetting {case.target_names()} of {case.run.dataset} on {case.run.model}; "
          f"{args.threads} thread(s); accuracy at steps {[0, *STEPS]}")
    for attack in GRIDS[args.grid]:
        for name, clip in case.models.items():
            t = time.process_time()
            curve = relearn_curve(clip, attack, data[attack.data], test_px, test_y, case.classifier(name), STEPS,
                                  case.seed, prompts)
            cpu = time.process_time() - t
            out.setdefault(attack.name, {})[name] = {"curve": curve, "cpu_s": round(cpu, 2)}
            print(f"{attack.name:<34} {name:<9} {' '.join(f'{a:.2f}' for a in curve)}   {cpu:5.1f} s", flush=True)
    for label, attacks in (("tuning", TUNING), ("held-out", HELD_OUT), (args.grid, GRIDS[args.grid])):
        got = [out[a.name]["forgotten"]["cpu_s"] for a in attacks if a.name in out]
        if len(got) == len(attacks):
            print(f"{label}: {len(attacks)} attacks, {sum(got) / 60:.1f} CPU minutes for the forgotten model "
                  "(the original's and the oracle's: once per class)")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
