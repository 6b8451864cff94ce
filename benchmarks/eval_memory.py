"""Peak memory of `clipunlearn eval` as the data grows: is it flat from 10k to 100k images?

    python benchmarks/eval_memory.py --work DIR [--model RN50] [--sizes 1000,10000,30000,100000]
        [--device cpu|cuda] [--batch-size 128] [--json OUT] [--page docs/results/eval-memory-MODEL.md]

Generates an ImageNet-shaped tree of 224-px JPEGs (``imagenet/val/<wnid>/``, 1000 class folders, image
j in class j mod 1000; the sizes share their images through hard links), then for each size runs
``clipunlearn eval --datasets imagenet`` in a fresh process twice: once computing the features into an
empty feature cache, once reading them back from it. Each process's peak resident memory comes from
the kernel (``wait4``'s ``ru_maxrss``; the process decodes images in place, ``--workers 0``, so it is the
whole job). The goal (issue 37): peak RSS within 10 % from 10k to 100k images.

``--classes K`` (with ``--dataset-dir`` trees of K class folders instead of ImageNet) is for quick checks.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from clipunlearn.benchmark.report import shown_command

GOAL = 1.10  # peak RSS at the largest size over the smallest, for sizes from FLAT_FROM on
FLAT_FROM = 10_000
FIRST, LAST = "n01440764", "n15075141"  # ImageNet's first and last wnid: the 998 between are made up


def wnids(k: int) -> list[str]:
    if k == 1000:
        return [FIRST, *(f"n0200{i:04d}" for i in range(998)), LAST]
    return [f"class_{i:04d}" for i in range(k)]


def jpeg(seed: int, size: int = 224) -> bytes:
    """A smooth random picture (a few kB as JPEG, like a photograph rather than noise)."""
    rng = np.random.default_rng(seed)
    small = Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    small.resize((size, size), Image.BICUBIC).save(buf, format="JPEG", quality=85)
    return buf.getvalue()


def make_images(folder: Path, n: int, classes: list[str]) -> None:
    """``folder``/<class>/<j>.JPEG for images j < n (those already there are kept)."""
    for j in range(n):
        path = folder / classes[j % len(classes)] / f"img_{j:06d}.JPEG"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(jpeg(j))


def make_tree(images: Path, root: Path, n: int, classes: list[str]) -> Path:
    """A tree of the first ``n`` images, hard-linked; returns the class-folder root."""
    top = root / "imagenet" / "val" if len(classes) == 1000 else root / "tree"
    if top.exists():
        shutil.rmtree(top)
    for j in range(n):
        src = images / classes[j % len(classes)] / f"img_{j:06d}.JPEG"
        dst = top / src.parent.name / src.name
        dst.parent.mkdir(parents=True, exist_ok=True)
        os.link(src, dst)
    return top


def measure_one(cmd: list[str]) -> dict:
    """One eval in a fresh process whose peak RSS is its own: the child is a new Python that runs the
    command and reports its own ``ru_maxrss`` (the children's accounting of this process keeps the
    largest child so far, so it cannot tell the sizes apart)."""
    probe = ("import resource, sys\n"
             "from clipunlearn.cli import main\n"
             "code = main(sys.argv[1:])\n"
             "print('PEAK_RSS_KIB', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)\n"
             "sys.exit(code)\n")
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", probe, *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak = int(re.findall(r"PEAK_RSS_KIB (\d+)", proc.stderr)[-1])
    cache = Path(cmd[cmd.index("--cache-dir") + 1])
    found = re.findall(r", ([0-9.]+)s\)", proc.stderr)
    return {"wall_s": round(wall, 2), "eval_s": float(found[-1]) if found else None, "peak_rss_mib": round(peak / 1024, 1),
            "top1": _top1(proc.stdout), "entries": len(list(cache.glob("*.npy")))}


def _top1(stdout: str) -> float | None:
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] != "dataset":
            return float(parts[1])
    return None


def random_weights(model: str, work: Path) -> Path:
    """A random-weight checkpoint of ``model`` drawn once (seed 0), so that the second process of a size
    evaluates the same weights and finds the first one's features in the cache (a model built with
    --pretrained none draws new weights in every process, and its features would never be found)."""
    path = work / f"{model}-random-seed0.safetensors"
    if not path.exists():
        import torch

        from clipunlearn.models import load_clip

        torch.manual_seed(0)
        load_clip(model, pretrained="none").save(path)
    return path


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="a folder for the generated images, trees and caches")
    ap.add_argument("--model", default="RN50")
    ap.add_argument("--sizes", default="1000,10000,30000,100000")
    ap.add_argument("--classes", type=int, default=1000, help="1000: ImageNet's layout; else a --dataset-dir tree")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--flat-from", type=int, default=FLAT_FROM, help="the smallest size the goal is judged on")
    ap.add_argument("--json", default=None)
    ap.add_argument("--page", default=None)
    args = ap.parse_args(argv)
    try:
        sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    except ValueError:
        raise SystemExit(f"--sizes takes image counts separated by commas, got {args.sizes!r}") from None
    if not sizes or sizes[0] < args.classes:
        raise SystemExit(f"--sizes must each be at least --classes ({args.classes}): every class folder needs an image")
    work = Path(args.work)
    classes = wnids(args.classes)
    t0 = time.perf_counter()
    make_images(work / "images", sizes[-1], classes)
    print(f"{sizes[-1]} images ready in {work / 'images'} ({time.perf_counter() - t0:.0f}s)", file=sys.stderr)
    load_start = os.getloadavg()[0]
    weights = random_weights(args.model, work)
    rows = []
    for n in sizes:
        root = work / f"n{n}"
        top = make_tree(work / "images", root, n, classes)
        cache = root / "cache"
        if cache.exists():
            shutil.rmtree(cache)
        data = ["--datasets", "imagenet", "--data-root", str(root)] if args.classes == 1000 else ["--dataset-dir", str(top)]
        cmd = ["eval", "--model", args.model, "--pretrained", str(weights), *data, "--templates", "a photo of a {}.",
               "--workers", "0", "--batch-size", str(args.batch_size), "--device", args.device,
               "--cache-dir", str(cache)]
        computed = measure_one(cmd)
        cached = measure_one(cmd)
        if computed["top1"] != cached["top1"]:
            raise SystemExit(f"{n} images: top-1 {computed['top1']} computed but {cached['top1']} from the cache")
        if len(list(cache.glob("*.npy"))) != computed["entries"]:
            raise SystemExit(f"{n} images: the second run wrote features again instead of reading the cache")
        row = {"images": n, "computed": computed, "from_cache": cached,
               "images_per_s": round(n / computed["eval_s"], 1) if computed["eval_s"] else None,
               "cache_mib": round(folder_bytes(cache) / 2**20, 1)}
        rows.append(row)
        print(json.dumps(row), file=sys.stderr)
    flat = [r for r in rows if r["images"] >= args.flat_from]
    ratio = None
    if len(flat) >= 2:
        peaks = [max(r["computed"]["peak_rss_mib"], r["from_cache"]["peak_rss_mib"]) for r in flat]
        ratio = round(max(peaks) / min(peaks), 3)
    result = {"model": args.model, "device": args.device, "classes": args.classes, "batch_size": args.batch_size,
              "machine": f"{platform.machine()}, {os.cpu_count()} cores", "threads": os.environ.get("OMP_NUM_THREADS"),
              "load_average": [round(load_start, 2), round(os.getloadavg()[0], 2)],
              "rows": rows, "flat_from": args.flat_from, "flat_ratio": ratio, "goal": GOAL, "goal_met": None if ratio is None else ratio <= GOAL,
              "command": shown_command(["python", "benchmarks/eval_memory.py", *(argv if argv is not None else sys.argv[1:])])}
    print(json.dumps({k: v for k, v in result.items() if k != "rows"}))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    if args.page:
        Path(args.page).write_text(render(result))
    return 0


def render(r: dict) -> str:
    lines = [f"# Evaluation memory as the data grows: {r['model']} on {r['device']}", "",
             f"Made by `{r['command']}`.", "",
             f"Each size is `clipunlearn eval --model {r['model']}` with random weights (drawn once, seed 0, and "
             "saved, so that both processes of a size evaluate the same model) over a generated "
             + ("ImageNet-shaped tree (`imagenet/val/<wnid>/`, 1000 classes, 224-px JPEGs)" if r["classes"] == 1000
                else f"tree of {r['classes']} class folders of 224-px JPEGs")
             + f", one template, batch {r['batch_size']}, images decoded in the process (`--workers 0`), "
             f"on {r['machine']} (OMP_NUM_THREADS={r['threads']}). Each size runs in a fresh process twice: "
             "computing the features into an empty cache, then reading them back from it. *Peak RSS* is the "
             "process's own `ru_maxrss`; the features themselves go to the cache folder on disk. Load average "
             f"{r['load_average'][0]} at the start, {r['load_average'][1]} at the end (images/s is slower on a "
             "shared machine; memory is not).", "",
             "| images | images/s | peak RSS, computing (MiB) | peak RSS, from the cache (MiB) | cache on disk (MiB) | top-1 |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['images']:,} | {row['images_per_s']} | {row['computed']['peak_rss_mib']} | "
                     f"{row['from_cache']['peak_rss_mib']} | {row['cache_mib']} | {row['computed']['top1']:.4f} |")
    lines.append("")
    if r["flat_ratio"] is None:
        lines.append(f"Goal (peak RSS within {round((r['goal'] - 1) * 100)} % from {r['flat_from']:,} images on): "
                     "not judged, fewer than two sizes from there.")
    else:
        verdict = "met" if r["goal_met"] else "missed"
        lines.append(f"Goal (peak RSS within {round((r['goal'] - 1) * 100)} % from {r['flat_from']:,} images on): "
                     f"**{verdict}**, largest over smallest peak = {r['flat_ratio']:.3f}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
