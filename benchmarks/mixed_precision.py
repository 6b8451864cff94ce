"""What lower precision would give clipunlearn's three hot loops, against fp32, measured in one run.

    python benchmarks/mixed_precision.py --device cuda [--models RN50,ViT-B-16] [--json OUT] [--repeats 5] [--page MD]
    python benchmarks/mixed_precision.py --render OUT.json --page MD   # the page of a run made elsewhere

clipunlearn computes in fp32 today. Before a precision switch is built into the library, this script
measures, per model (real architectures with random weights: speed does not depend on the weights),
what each precision would change in:

* ``generation``: one step of the synthetic-image ascent on a batch of 64 images (image features,
  cosine to a class prompt, gradient to the pixels);
* ``forget_step``: one Lip step on 32 images and 25 noise draws (``lipschitz_loss``, backward into
  every eligible tensor of both towers);
* ``evaluation``: image features of a batch of 256 images, no gradient.

Precisions: ``fp32`` (TF32 off: the reference), ``tf32`` (fp32 tensors, TF32 matrix units), ``bf16``
(``torch.autocast``, weights kept in fp32). Each is timed as the median of ``--repeats`` runs after a
warm-up; agreement with fp32 is the cosine similarity of the outputs (features, or the gradient
flattened over every tensor it reaches) and, for the two loops with a loss, its relative difference.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from clipunlearn.benchmark.report import shown_command
from clipunlearn.errors import ClipUnlearnError
from clipunlearn.io import write_text
from clipunlearn.models import eligible_names, load_clip
from clipunlearn.models.factory import Clip
from clipunlearn.training import draw_perturbations, lipschitz_loss

PRECISIONS = ("fp32", "tf32", "bf16")


@contextlib.contextmanager
def precision(name: str, device: str) -> Iterator[None]:
    """fp32 with TF32 off, fp32 with TF32 on, or bf16 autocast (on the device's type)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = name == "tf32"
    try:
        if name == "bf16":
            with torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16):
                yield
        else:
            yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _time(fn: Callable[[], tuple[torch.Tensor, float]], repeats: int, device: str) -> tuple[float, torch.Tensor, float]:
    """Median seconds of ``fn`` over ``repeats`` runs after one warm-up, with its last output and loss."""
    fn()
    _sync(device)
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out, loss = fn()
        _sync(device)
        seconds.append(time.perf_counter() - t0)
    return statistics.median(seconds), out, loss


def generation_step(clip: Clip, pixels: torch.Tensor, text: torch.Tensor) -> Callable[[], tuple[torch.Tensor, float]]:
    def run() -> tuple[torch.Tensor, float]:
        x = pixels.clone().requires_grad_(True)
        feats = F.normalize(clip.encode_image(x).float(), dim=-1)
        loss = (feats @ text).sum()
        (grad,) = torch.autograd.grad(loss, x)
        return grad.flatten().float(), float(loss.detach())
    return run


def forget_step(clip: Clip, pixels: torch.Tensor, tokens: torch.Tensor, eps: torch.Tensor,
                names: list[str]) -> Callable[[], tuple[torch.Tensor, float]]:
    params = dict(clip.model.named_parameters())
    for name, p in params.items():
        p.requires_grad_(name in names)
    chosen = [params[n] for n in names]

    def run() -> tuple[torch.Tensor, float]:
        loss = lipschitz_loss(clip, pixels, tokens, eps, "official").float()
        grads = torch.autograd.grad(loss, chosen)
        return torch.cat([g.flatten().float() for g in grads]), float(loss.detach())
    return run


def evaluation(clip: Clip, pixels: torch.Tensor) -> Callable[[], tuple[torch.Tensor, float]]:
    def run() -> tuple[torch.Tensor, float]:
        with torch.no_grad():
            feats = F.normalize(clip.encode_image(pixels).float(), dim=-1)
        return feats, float("nan")  # no loss: the features' cosine says it all
    return run


def _agreement(ref: torch.Tensor, out: torch.Tensor) -> float:
    """Mean cosine similarity of rows (features), or of the two vectors (gradients), in float64."""
    ref, out = ref.double(), out.double()
    if ref.dim() == 1:
        return float(F.cosine_similarity(ref, out, dim=0))
    return float(F.cosine_similarity(ref, out, dim=-1).mean())


def bench_model(name: str, device: str, repeats: int) -> dict:
    clip = load_clip(name, pretrained="default" if name.startswith("mini") else "none", device=device)
    clip.model.eval()
    gen = torch.Generator().manual_seed(0)
    size = clip.image_size
    pixels64 = torch.rand(64, 3, size, size, generator=gen).to(device)
    pixels32 = pixels64[:32]
    pixels256 = torch.rand(256, 3, size, size, generator=gen).to(device)
    with torch.no_grad():
        text = F.normalize(clip.encode_text(["a photo of a dog."]).float(), dim=-1)[0]
    tokens = clip.tokenize(["a photo of a dog."] * 32).to(device)
    eps = draw_perturbations(25, pixels32.shape, 0.5, gen).to(device)
    names = eligible_names(clip.model, "image") + eligible_names(clip.model, "text")
    loops = {"generation": generation_step(clip, pixels64, text),
             "forget_step": forget_step(clip, pixels32, tokens, eps, names),
             "evaluation": evaluation(clip, pixels256)}
    out: dict = {"image_size": size, "parameters_m": round(sum(p.numel() for p in clip.model.parameters()) / 1e6, 1)}
    for loop, fn in loops.items():
        row: dict = {}
        ref_out, ref_loss = None, 0.0
        for prec in PRECISIONS:
            with precision(prec, device):
                seconds, result, loss = _time(fn, repeats, device)
            if prec == "fp32":
                ref_out, ref_loss, ref_s = result, loss, seconds
            row[prec] = {"seconds": round(seconds, 5), "speedup_vs_fp32": round(ref_s / seconds, 2),
                         "cosine_to_fp32": round(_agreement(ref_out, result), 6)}
            if loss == loss:  # not nan
                row[prec]["loss_rel_diff"] = round(abs(loss - ref_loss) / max(abs(ref_loss), 1e-12), 6)
            print(name, loop, prec, row[prec], flush=True)
        out[loop] = row
    if device.startswith("cuda"):
        out["peak_memory_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
        torch.cuda.reset_peak_memory_stats()
    return out


_LOOPS = {"generation": "generation step (64 images)", "forget_step": "Lip step (32 images, 25 draws)",
          "evaluation": "evaluation (256 images)"}


def render(result: dict, command: str) -> str:
    """The markdown page of one run's JSON."""
    models = [k for k, v in result.items() if isinstance(v, dict)]
    lines = ["# Mixed precision: fp32, TF32 and bf16 autocast on clipunlearn's hot loops", "",
             f"Made by `{command}`" + (f" from the figures of `{result['command']}`."
                                        if result.get("command", command) != command else "."), "",
             f"Setup: {result.get('gpu') or result['device']}, torch {result['torch']}. Zoo models with their "
             "weights, other architectures at their real size with random weights (speed does not depend on them). Median of the repeats after a warm-up. "
             "*cosine* is fp32 against the precision: of the features (evaluation, mean over images) or of the "
             "gradient flattened over every tensor it reaches (generation: to the pixels; Lip step: to every "
             "eligible tensor of both towers); *loss diff* is the loss's relative difference. "
             "clipunlearn itself computes in fp32 (on cuda with PyTorch's defaults: TF32 for convolutions, not "
             "for matrix products): this page measures what a precision switch would give.", "",
             "| model | loop | precision | ms | × fp32 | cosine to fp32 | loss diff |", "|---|---|---|---|---|---|---|"]
    for model in models:
        for loop, title in _LOOPS.items():
            for prec in PRECISIONS:
                r = result[model][loop][prec]
                diff = f"{r['loss_rel_diff']:.1e}" if loop != "evaluation" and "loss_rel_diff" in r else "–"
                lines.append(f"| {model} | {title} | {prec} | {1000 * r['seconds']:.1f} | {r['speedup_vs_fp32']:.2f} "
                             f"| {r['cosine_to_fp32']:.6f} | {diff} |")
    memory = [f"{m} {result[m]['peak_memory_gib']} GiB" for m in models if "peak_memory_gib" in result[m]]
    if memory:
        lines += ["", "Peak GPU memory over the three loops and precisions: " + ", ".join(memory) + "."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--models", default="RN50,ViT-B-16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--page", default=None, help="also write a markdown page of the figures")
    ap.add_argument("--render", default=None, help="write --page from this JSON of an earlier run, measure nothing")
    args = ap.parse_args()
    command = shown_command(["python", "benchmarks/mixed_precision.py", *sys.argv[1:]])
    if args.render:
        if not args.page:
            ap.error("--render needs --page FILE")
        if not Path(args.render).is_file():
            ap.error(f"no file {args.render!r} to render: give the --json file of an earlier run")
        write_text(Path(args.page), render(json.loads(Path(args.render).read_text()), command))
        return 0
    result: dict = {"command": command, "device": args.device, "torch": torch.__version__, "threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None}
    for name in args.models.split(","):
        try:
            result[name] = bench_model(name, args.device, args.repeats)
        except ClipUnlearnError as e:
            print(f"mixed_precision.py: {e}", file=sys.stderr)
            return 2
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        write_text(Path(args.json), text + "\n")
    if args.page:
        write_text(Path(args.page), render(result, command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
