"""Speed of clipunlearn's batched / cached computation against the one-at-a-time way, measured side by side.

    python benchmarks/speed.py --quick --json OUT [--data-root ../shared/data] [--device cpu|cuda] [--no-eval]

Prints (and writes) JSON with, per model:
* generation_batched_vs_single: images/s of one batch against one image at a time, same steps;
* forget_epoch_vs_reference: one Lip epoch (all draws in one batch, gradients only for eligible
  tensors) against the official code's way (a forward per draw, gradients for every parameter, masked
  afterwards), same inputs; the updated weights are compared;
* eval_cached_vs_full: evaluation after the attention pool changed, reusing cached layer4 features,
  against a full recomputation; the accuracies are compared (left out with ``--no-eval``, which
  needs no data: the generation then ascends towards an everyday word).
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from clipunlearn.data import load_image_set
from clipunlearn.evaluation import Evaluator, FeatureCache
from clipunlearn.models import eligible_names, load_clip
from clipunlearn.synthetic import GenerationConfig, generate_synthetic
from clipunlearn.training import draw_perturbations, lipschitz_loss, select_top_k
from official import full_evaluation, generate_one_at_a_time, reference_backward
from official import sync as _sync


def bench_generation(clip, classnames, n: int, steps: int, device: str) -> dict:
    cfg = GenerationConfig(n_per_class=n, threshold=1.01, threshold_floor=1.01, max_steps=steps, seed=0)
    # warm-up (one-off allocations and kernel selection), so neither timed path pays for it
    generate_synthetic(clip, classnames, [0], "bench", "a photo of a {}.",
                       GenerationConfig(n_per_class=2, threshold=1.01, threshold_floor=1.01, max_steps=2))
    _sync(device)
    t0 = time.perf_counter()
    generate_synthetic(clip, classnames, [0], "bench", "a photo of a {}.", cfg)
    _sync(device)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    generate_one_at_a_time(clip, classnames, [0], "bench", "a photo of a {}.", cfg)
    _sync(device)
    single = time.perf_counter() - t0
    return {"images": n, "steps": steps, "batched_s": round(batched, 3), "single_s": round(single, 3),
            "batched_img_per_s": round(n / batched, 3), "single_img_per_s": round(n / single, 3),
            "ratio": round(single / batched, 2)}


def _reference_epoch(clip, pixels, tokens, eps, towers, k, opt_kwargs):
    """The official way: a forward per draw, gradients for every parameter, masked afterwards."""
    model = clip.model
    params = dict(model.named_parameters())
    names = towers["image"] + towers["text"]
    opt = torch.optim.Adam([params[n] for n in names], **opt_kwargs)
    for p in params.values():
        p.grad = None
    reference_backward(clip, pixels, tokens, eps)
    select_top_k(model, towers, k)
    opt.step()


def _ours_epoch(clip, pixels, tokens, eps, towers, k, opt_kwargs):
    model = clip.model
    params = dict(model.named_parameters())
    names = towers["image"] + towers["text"]
    for name, p in params.items():
        p.requires_grad_(name in names)
    opt = torch.optim.Adam([params[n] for n in names], **opt_kwargs)
    with clip.fast_conv_layout():  # as Lip.run does
        loss = lipschitz_loss(clip, pixels, tokens, eps, "official")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        select_top_k(model, towers, k)
        opt.step()
    for p in params.values():
        p.requires_grad_(True)


def bench_forget_epoch(clip, n_images: int, n_draws: int, device: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(n_images, 3, clip.image_size, clip.image_size, generator=gen).to(device)
    tokens = clip.tokenize(["A picture of a thing"] * n_images)
    eps = draw_perturbations(n_draws, pixels.shape, 0.5, gen)
    towers = {"image": eligible_names(clip.model, "image"), "text": eligible_names(clip.model, "text")}
    k = {"image": 5, "text": 5}
    opt_kwargs = {"lr": 5e-5, "betas": (0.9, 0.98), "eps": 1e-6, "weight_decay": 0.2}
    clip.model.eval()
    a, b = copy.deepcopy(clip), copy.deepcopy(clip)
    t0 = time.perf_counter()
    _reference_epoch(a, pixels, tokens, eps, towers, k, opt_kwargs)
    _sync(device)
    ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    _ours_epoch(b, pixels, tokens, eps, towers, k, opt_kwargs)
    _sync(device)
    ours = time.perf_counter() - t0
    sa, sb = a.model.state_dict(), b.model.state_dict()
    max_diff = max(float((sa[n] - sb[n]).abs().max()) for n in sa)
    changed = sum(not torch.equal(sa[n], clip.model.state_dict()[n]) for n in sa)
    return {"images": n_images, "draws": n_draws, "reference_s": round(ref, 3), "ours_s": round(ours, 3),
            "ratio": round(ref / ours, 2), "max_weight_diff": max_diff, "tensors_changed": changed,
            "same_weights": max_diff < 1e-5}


def bench_eval(clip, images, device: str) -> dict:
    cache = FeatureCache()
    ev = Evaluator(clip, cache, progress=False)
    ev.evaluate(images)  # before forgetting: fills the cache
    with torch.no_grad():  # what Lip does on ResNets: only the attention pool changes
        clip.model.visual.attnpool.c_proj.weight.mul_(1.01)
    t0 = time.perf_counter()
    cached = ev.evaluate(images)
    _sync(device)
    t_cached = time.perf_counter() - t0
    t0 = time.perf_counter()
    full = full_evaluation(clip, images)
    _sync(device)
    t_full = time.perf_counter() - t0
    return {"images": len(images), "cached_s": round(t_cached, 3), "full_s": round(t_full, 3),
            "ratio": round(t_full / t_cached, 2), "top1_cached": cached.top1, "top1_full": full.top1,
            "same_accuracy": cached.top1 == full.top1}


def main() -> int:
    logging.getLogger().setLevel(logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="few images and steps (minutes on a 2-core CPU)")
    ap.add_argument("--json", default=None)
    ap.add_argument("--data-root", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--models", default="mini-rn,RN50")
    ap.add_argument("--no-eval", action="store_true", help="leave out the evaluation (no data needed)")
    args = ap.parse_args()
    q = args.quick
    out: dict = {"device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads()}
    images = None if args.no_eval else load_image_set("caltech101", args.data_root, "test")
    classnames = ["house"] if images is None else images.classnames
    for name in args.models.split(","):
        clip = load_clip(name, pretrained="default" if name.startswith("mini") else "none", device=args.device)
        small = name.startswith("mini")
        r: dict = {"source": clip.source, "image_size": clip.image_size}
        r["generation_batched_vs_single"] = bench_generation(
            clip, classnames, n=(64 if small else 4) if q else 64, steps=(10 if small else 3) if q else 50,
            device=args.device)
        print(name, "generation", r["generation_batched_vs_single"], flush=True)
        r["forget_epoch_vs_reference"] = bench_forget_epoch(
            clip, n_images=(16 if small else 2) if q else 64, n_draws=(25 if small else 4) if q else 25,
            device=args.device)
        print(name, "forget epoch", r["forget_epoch_vs_reference"], flush=True)
        if images is not None:
            subset = images if small or not q else images.subset(classes=list(range(5)))
            r["eval_cached_vs_full"] = bench_eval(clip, subset, args.device)
            print(name, "eval", r["eval_cached_vs_full"], flush=True)
        out[name] = r
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
