"""The audit's attacks, one function each: ``attack(case) -> dict`` with every model of the case side by
side (``original``, ``forgotten`` and, when given, ``oracle``). Each tries to bring the forgotten
class back, or to find it still in the model; :mod:`.verdict` judges the numbers.

* :func:`prompts`: the class under other prompts: the 80 ImageNet templates as an ensemble, other
  templates, synonyms of its name (``synonyms.json``) and CuPL descriptions, each replacing the class's
  name in the classifier, the other classes unchanged;
* :func:`images`: its test images under seeded augmentations, and image-from-image retrieval;
* :func:`probe`: a logistic-regression probe on frozen image features, the class against the rest;
* :func:`relearning`: a few fine-tuning steps on k real train images of the class;
* :func:`mia`: membership inference on the class's train (members) and test (non-members) images;
* :func:`oracle`: accuracy gaps per class and the output divergence from a model that never saw it.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from ..data import CHANGED_TEMPLATES
from ..errors import ClipUnlearnError, DataError
from ..evaluation import LOGIT_SCALE
from ..metrics import precision_at_k
from ..models import Clip
from ..synthetic.cupl import normalise
from .case import RELEARN_LR, RELEARN_STEPS, AuditCase
from .scores import classifier_auc, mean_kl, membership_scores, probe_auc, threshold_auc

SYNONYMS_FILE = Path(__file__).with_name("synonyms.json")
AUGMENTATIONS = ("crop", "flip", "colour", "jpeg30")
RETRIEVAL_K = 10


@functools.lru_cache(maxsize=1)
def _synonym_index() -> dict[str, list[str]]:
    data = json.loads(SYNONYMS_FILE.read_text(encoding="utf-8"))
    return {normalise(k): list(v) for k, v in data.items()}


def synonyms(classname: str) -> list[str]:
    """The shipped paraphrases of a class name (``synonyms.json``; matched as CuPL matches), or []."""
    return _synonym_index().get(normalise(classname), [])


def imagenet_templates() -> tuple[str, ...]:
    """open_clip's 80 ImageNet templates as ``{}`` strings."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    return tuple(t("{}") for t in OPENAI_IMAGENET_TEMPLATES)


@torch.no_grad()
def _prompt_row(clip: Clip, prompts: list[str]) -> torch.Tensor:
    """One unit-norm class weight from ``prompts`` (the mean of their normalised embeddings)."""
    emb = torch.cat([clip.encode_text(prompts[i:i + 256], normalize=True) for i in range(0, len(prompts), 256)])
    return F.normalize(emb.mean(0), dim=-1).float().cpu()


def _accuracy(feats: torch.Tensor, weights: torch.Tensor, labels: np.ndarray) -> float:
    if len(labels) == 0:
        return float("nan")
    pred = (feats @ weights.T).argmax(1).numpy()
    return float((pred == labels).mean())


def prompts(case: AuditCase) -> dict[str, Any]:
    """Accuracy on the forgotten class(es) under prompt families other than the run's template."""
    labels = case.labels("test")
    rows = np.flatnonzero(case.is_target("test"))
    imagenet = imagenet_templates()
    families: list[dict[str, Any]] = []

    def add(family: str, prompt: str, cls: str | None, acc: dict[str, float]) -> None:
        families.append({"family": family, "prompt": prompt, "class": cls, "accuracy": acc})

    per_model: dict[str, dict[str, Any]] = {n: {} for n in case.models}
    for name, clip in case.models.items():
        feats = case.features(name)
        tf, tl = feats[rows], labels[rows]
        per_model[name]["run template"] = _accuracy(tf, case.classifier(name), tl)
        per_model[name]["imagenet-80"] = _accuracy(tf, case.classifier(name, imagenet), tl)
        for tpl in CHANGED_TEMPLATES:
            per_model[name][f"template:{tpl}"] = _accuracy(tf, case.classifier(name, (tpl,)), tl)
        for c in case.targets:
            cname = case.classnames[c]
            crow = np.flatnonzero(labels == c)
            for syn in synonyms(cname):
                w = case.classifier(name).clone()
                w[c] = _prompt_row(clip, [case.template.format(syn)])
                per_model[name][f"synonym:{cname}:{syn}"] = _accuracy(feats[crow], w, labels[crow])
            sentences, _ = _cupl(cname)
            if sentences:
                w = case.classifier(name).clone()
                w[c] = _prompt_row(clip, sentences)
                per_model[name][f"cupl:{cname}"] = _accuracy(feats[crow], w, labels[crow])
    first = per_model["original"]
    for key in first:
        kind, _, rest = key.partition(":")
        acc = {n: per_model[n][key] for n in case.models}
        if kind == "synonym":
            cls, _, syn = rest.partition(":")
            add("synonym", case.template.format(syn), cls, acc)
        elif kind == "cupl":
            sentences, source = _cupl(rest)
            add("cupl", f"{len(sentences)} descriptions ({source})", rest, acc)
        elif kind == "template":
            add("other template", rest, None, acc)
        elif key == "imagenet-80":
            add("imagenet-80", f"{len(imagenet)} ImageNet templates (ensemble)", None, acc)
        else:
            add("run template", case.template, None, acc)
    attacks = [f for f in families if f["family"] != "run template"]
    best = max(attacks, key=lambda f: f["accuracy"]["forgotten"]) if attacks else None
    return {"classes": case.target_names(), "families": families,
            "before": first["run template"], "best_after": best,
            "synonyms_missing": [n for n in case.target_names() if not synonyms(n)]}


def _cupl(classname: str) -> tuple[list[str], str]:
    """CuPL descriptions of the class and their source where :func:`describe` has it (the user's file,
    clip_benchmark's CuPL or the shipped ones), else ([], "")."""
    from ..synthetic.cupl import describe

    try:
        found = describe([classname])
    except ClipUnlearnError:
        return [], ""
    return found.sentences[classname], found.sources[classname]


def augmentation(name: str, size: int) -> Callable[[Image.Image], Image.Image]:
    """A PIL-to-PIL augmentation by name (:data:`AUGMENTATIONS`); randomness from torch's generator."""
    if name == "crop":
        return T.RandomResizedCrop(size, scale=(0.35, 1.0), antialias=True)
    if name == "flip":
        return T.RandomHorizontalFlip(p=1.0)
    if name == "colour":
        return T.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    if name == "jpeg30":
        return _jpeg(30)
    raise ClipUnlearnError(f"Unknown augmentation {name!r}. Known: {', '.join(AUGMENTATIONS)}.")


def _jpeg(quality: int) -> Callable[[Image.Image], Image.Image]:
    def encode(im: Image.Image) -> Image.Image:
        buf = io.BytesIO()
        im.convert("RGB").save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as out:
            return out.convert("RGB")

    return encode


def augmented_pixels(case: AuditCase, rows: np.ndarray, name: str | None, seed: int) -> torch.Tensor:
    """Test images ``rows`` under augmentation ``name`` (None: as evaluated), [0, 1] tensors, seeded."""
    clip = case.models["original"]
    to_pixels = clip.image_transform()
    aug = augmentation(name, clip.image_size) if name else None
    out = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for i in rows.tolist():
            im = case.test.load(int(i))
            out.append(to_pixels(aug(im) if aug else im))
    return torch.stack(out)


@torch.no_grad()
def _encode(clip: Clip, pixels: torch.Tensor, batch: int = 128) -> torch.Tensor:
    clip.model.eval()
    return torch.cat([clip.encode_image(pixels[i:i + batch].to(clip.device), normalize=True).float().cpu()
                      for i in range(0, len(pixels), batch)])


def images(case: AuditCase) -> dict[str, Any]:
    """Accuracy on the forgotten class's test images under each augmentation, and image-from-image
    retrieval precision@10 of those images among all the dataset's test images (each query excluded)."""
    labels = case.labels("test")
    rows = np.flatnonzero(case.is_target("test"))
    pixels = {a: augmented_pixels(case, rows, None if a == "clean" else a, case.seed)
              for a in ("clean", *AUGMENTATIONS)}
    acc: dict[str, dict[str, float]] = {a: {} for a in pixels}
    retrieval: dict[str, float] = {}
    k = min(RETRIEVAL_K, len(labels) - 1)
    for name, clip in case.models.items():
        w = case.classifier(name)
        for a, px in pixels.items():
            acc[a][name] = _accuracy(_encode(clip, px), w, labels[rows])
        feats = case.features(name)
        sim = (feats[rows] @ feats.T).numpy().astype(np.float64)
        sim[np.arange(len(rows)), rows] = sim.min() - 1.0  # a query never retrieves itself
        retrieval[name] = precision_at_k(labels[rows], labels, sim, [k])[k]
    chance = float((np.isin(labels, case.targets).sum() - 1) / (len(labels) - 1))
    best = max(AUGMENTATIONS, key=lambda a: acc[a]["forgotten"])
    return {"augmentations": list(AUGMENTATIONS), "accuracy": acc, "before": acc["clean"]["original"],
            "best_after": {"augmentation": best, "accuracy": acc[best]}, "n_images": int(len(rows)),
            "seed": case.seed, "retrieval": {"k": k, "precision": retrieval, "chance": chance}}


def probe(case: AuditCase) -> dict[str, Any]:
    """Test AUC of a logistic regression on each model's frozen image features, forgotten class(es) vs
    the rest, trained on the dataset's train split."""
    case.need_train("linear probe")
    auc = {name: probe_auc(case.features(name, "train").numpy(), case.is_target("train"),
                           case.features(name, "test").numpy(), case.is_target("test"), case.seed)
           for name in case.models}
    return {"auc": auc, "n_train": len(case.labels("train")), "n_test": len(case.labels("test")),
            "n_train_target": int(case.is_target("train").sum())}


def _load_pixels(case: AuditCase, split: str, rows: list[int]) -> torch.Tensor:
    images = case.test if split == "test" else case.need_train("relearning attack")
    to_pixels = case.models["original"].image_transform()
    return torch.stack([to_pixels(images.load(i)) for i in rows])


def relearn_curve(clip: Clip, train_px: torch.Tensor, train_y: torch.Tensor, test_px: torch.Tensor,
                  test_y: np.ndarray, text: torch.Tensor, steps: int = RELEARN_STEPS, lr: float = RELEARN_LR,
                  seed: int = 0) -> list[float]:
    """Target test accuracy before and after each of ``steps`` Adam steps (image tower, zero-shot CE over
    the dataset's classes, one batch of all ``train_px``) of a copy of ``clip``; ``clip`` is left as it was."""
    from ..training.finetune import FineTuneConfig, fine_tune_signed

    copy_ = dataclasses.replace(clip, model=copy.deepcopy(clip.model))
    text = text.to(copy_.device)

    def measure() -> dict[str, float]:
        return {"target_acc": _accuracy(_encode(copy_, test_px), text.cpu(), test_y)}

    cfg = FineTuneConfig(lr=lr, max_epochs=steps, batch_size=len(train_px))
    trace = fine_tune_signed(copy_, cfg, train_px, train_y, torch.ones(len(train_px)), text,
                             torch.Generator().manual_seed(seed), steps, measure)
    return [float(row["target_acc"]) for row in trace.steps]


def relearning(case: AuditCase, lr: float = RELEARN_LR) -> dict[str, Any]:
    """Fine-tune a copy of each model on k real train images per forgotten class (seeded draw) and
    record the forgotten classes' test accuracy after each step, for each k (``case.relearn_ks``,
    ``case.relearn_steps``)."""
    ks, steps = case.relearn_ks, case.relearn_steps
    train_labels = case.labels("train")
    gen = np.random.default_rng(case.seed)
    order = {c: gen.permutation(np.flatnonzero(train_labels == c)).tolist() for c in case.targets}
    test_rows = np.flatnonzero(case.is_target("test"))
    test_px = _load_pixels(case, "test", test_rows.tolist())
    test_y = case.labels("test")[test_rows]
    curves: dict[str, dict[str, list[float]]] = {name: {} for name in case.models}
    used: dict[str, int] = {}
    for k in ks:
        rows = [r for c in case.targets for r in order[c][:k]]
        if not rows:
            raise ClipUnlearnError(f"The train split of {case.run.dataset} has no image of {case.target_names()}: "
                                   "nothing to relearn from. Leave relearning out with --attacks.")
        px = _load_pixels(case, "train", rows)
        y = torch.tensor(train_labels[rows], dtype=torch.long)
        used[str(k)] = len(rows)
        for name, clip in case.models.items():
            curves[name][str(k)] = relearn_curve(clip, px, y, test_px, test_y, case.classifier(name), steps, lr,
                                                 case.seed)
    return {"ks": list(ks), "steps": steps, "lr": lr, "images_used": used, "curves": curves,
            "before": curves["original"][str(ks[0])][0]}


def is_zoo_run(case: AuditCase) -> bool:
    """Whether the run's original model is a zoo model with its shipped weights (training data known)."""
    from ..models.zoo import ZOO_MODELS

    r = case.run
    return r.model in ZOO_MODELS and r.pretrained in ("default", "zoo", None) and not r.weights


def mia(case: AuditCase) -> dict[str, Any]:
    """Membership inference on the forgotten class(es): members are the train images (the zoo's training
    data), non-members the test images. Loss-threshold AUC and a cross-validated SVC on [loss,
    confidence, entropy]; ROC curves for the plot."""
    from sklearn.metrics import roc_curve

    if not is_zoo_run(case):
        return {"skipped": f"{case.run.model} ({case.run.pretrained}) is not a zoo model with its shipped weights: "
                           "its training data is unknown, so membership cannot be tested."}
    tr, te = np.flatnonzero(case.is_target("train")), np.flatnonzero(case.is_target("test"))
    member = np.r_[np.ones(len(tr), int), np.zeros(len(te), int)]
    out: dict[str, Any] = {"n_members": int(len(tr)), "n_non_members": int(len(te)), "threshold_auc": {},
                           "classifier_auc": {}, "roc": {}, "mean_loss": {}}
    for name in case.models:
        logits = np.r_[case.logits(name, "train")[tr], case.logits(name, "test")[te]]
        labels = np.r_[case.labels("train")[tr], case.labels("test")[te]]
        s = membership_scores(logits, labels)
        out["threshold_auc"][name] = threshold_auc(member, s["loss"])
        out["classifier_auc"][name] = classifier_auc(
            member, np.stack([s["loss"], s["confidence"], s["entropy"]], 1), case.seed)
        fpr, tpr, _ = roc_curve(member, -s["loss"])
        out["roc"][name] = {"fpr": fpr.round(4).tolist(), "tpr": tpr.round(4).tolist()}
        out["mean_loss"][name] = {"members": float(s["loss"][member == 1].mean()),
                                  "non_members": float(s["loss"][member == 0].mean())}
    return out


def oracle(case: AuditCase) -> dict[str, Any]:
    """Accuracy per class (run's template) of the forgotten model and the oracle, their gaps, and the
    mean KL divergence of the zero-shot outputs (forgotten ‖ oracle, and original ‖ oracle for scale)."""
    if "oracle" not in case.models:
        raise ClipUnlearnError("The oracle attack needs an oracle model. Pass --oracle FILE "
                               f"(train one with `clipunlearn zoo train {case.run.model} --exclude DATASET:CLASS`).")
    labels = case.labels("test")
    logits = {n: case.logits(n, "test") for n in case.models}
    per_class = {}
    for c, cname in enumerate(case.classnames):
        rows = labels == c
        if not rows.any():
            continue
        acc = {n: float((logits[n][rows].argmax(1) == c).mean()) for n in case.models}
        per_class[cname] = {**acc, "gap": acc["forgotten"] - acc["oracle"], "target": c in case.targets}
    target = case.is_target("test")
    kl = {}
    for name in ("forgotten", "original"):
        kl[name] = {"all": mean_kl(logits[name], logits["oracle"]),
                    "target": mean_kl(logits[name][target], logits["oracle"][target]) if target.any() else None,
                    "others": mean_kl(logits[name][~target], logits["oracle"][~target]) if (~target).any() else None}
    gaps = [abs(v["gap"]) for v in per_class.values()]
    return {"per_class": per_class, "mean_abs_gap": float(np.mean(gaps)), "kl_to_oracle": kl,
            "per_dataset": _oracle_datasets(case), "logit_scale": LOGIT_SCALE}


def _oracle_datasets(case: AuditCase) -> dict[str, Any]:
    """Top-1 on each of the run's other datasets (each with its own templates, the run's protocol):
    original and forgotten as the run measured them (results.json), the oracle measured here."""
    from ..data import load_image_set

    out: dict[str, Any] = {}
    for name, ba in (case.run.raw.get("datasets") or {}).items():
        try:
            images = load_image_set(name, case.data_root, "test")
        except DataError as e:
            out[name] = {"skipped": str(e)}
            continue
        top1 = case.evaluator("oracle").evaluate(images).top1
        out[name] = {"original": ba.get("before"), "forgotten": ba.get("after"), "oracle": top1,
                     "gap": None if ba.get("after") is None else ba["after"] - top1}
    return out


#: every attack by name, in the order the audit runs and reports them
ATTACKS: dict[str, Callable[[AuditCase], dict[str, Any]]] = {
    "prompts": prompts, "images": images, "probe": probe, "relearning": relearning, "mia": mia, "oracle": oracle,
}
#: the attacks that read the dataset's train split
NEEDS_TRAIN = ("probe", "relearning", "mia")

__all__ = ["ATTACKS", "AUGMENTATIONS", "NEEDS_TRAIN", "augmentation",
           "imagenet_templates", "images", "is_zoo_run", "mia", "oracle", "probe", "prompts", "relearn_curve",
           "relearning", "synonyms"]
