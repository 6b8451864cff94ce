"""The audit's attacks, one function each: ``attack(case) -> dict`` with every model of the case side by
side (``original``, ``forgotten`` and, when given, ``oracle``). Each tries to bring the forgotten
class back, or to find it still in the model; :mod:`.verdict` judges the numbers.

* :func:`prompts`: the class under other prompts: the 80 ImageNet templates as an ensemble, other
  templates, synonyms of its name (``synonyms.json``) and CuPL descriptions, each replacing the class's
  name in the classifier, the other classes unchanged;
* :func:`images`: its test images under seeded augmentations, and image-from-image retrieval;
* :func:`probe`: a logistic-regression probe on frozen image features, the class against the rest;
* :func:`prototype`: nearest class prototype from k train images' features (no text, no training);
* :func:`relearning`: the relearning grid (:mod:`.relearning`): fine-tuning attacks on k-shot images of
  the class, on other classes' images only and on related classes', and the relearning score R;
* :func:`mia`: membership inference on the class's train (members) and test (non-members) images;
* :func:`weights`: the distance of the changed tensors from the original and the loss on the way there;
* :func:`oracle`: accuracy gaps per class and the output divergence from a model that never saw it.
"""
from __future__ import annotations

import copy
import dataclasses
import functools
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms as T

from ..data import CHANGED_TEMPLATES
from ..errors import ClipUnlearnError, DataError
from ..evaluation import LOGIT_SCALE
from ..io import computed_once
from ..metrics import precision_at_k
from ..models import Clip
from ..precision import forward_pass
from ..synthetic.cupl import normalise
from .case import AuditCase
from .scores import classifier_auc, mean_kl, membership_scores, probe_auc, threshold_auc

if TYPE_CHECKING:
    from .relearning import CurveCache

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


def _prompt_row(clip: Clip, prompts: list[str]) -> torch.Tensor:
    """One unit-norm class weight from ``prompts`` (the mean of their normalised embeddings)."""
    with torch.no_grad(), forward_pass(clip.device):  # a block, not a decorator: mutmut skips decorated functions
        emb = torch.cat([clip.encode_text(prompts[i:i + 256]).float() for i in range(0, len(prompts), 256)])
    emb = F.normalize(emb, dim=-1)
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
            if not len(crow):  # a concept run's photos are labelled by its first concept only
                continue
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


def _encode(clip: Clip, pixels: torch.Tensor, batch: int = 128) -> torch.Tensor:
    clip.model.eval()
    with torch.no_grad(), forward_pass(clip.device):
        feats = torch.cat([clip.encode_image(pixels[i:i + batch].to(clip.device)).float().cpu()
                           for i in range(0, len(pixels), batch)])
    return F.normalize(feats, dim=-1)


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
    can_retrieve = len(rows) < len(labels)  # retrieval among the class's images alone finds nothing
    for name, clip in case.models.items():
        w = case.classifier(name)
        for a, px in pixels.items():
            acc[a][name] = _accuracy(_encode(clip, px), w, labels[rows])
        if can_retrieve:
            feats = case.features(name)
            sim = (feats[rows] @ feats.T).numpy().astype(np.float64)
            sim[np.arange(len(rows)), rows] = sim.min() - 1.0  # a query never retrieves itself
            retrieval[name] = precision_at_k(labels[rows], labels, sim, [k])[k]
    # a random ranking's precision: per query, the share of the other images that are of its own class
    own = [int((labels == labels[r]).sum()) - 1 for r in rows]
    chance = float(np.mean(own) / (len(labels) - 1)) if can_retrieve else None
    best = max(AUGMENTATIONS, key=lambda a: acc[a]["forgotten"])
    return {"augmentations": list(AUGMENTATIONS), "accuracy": acc, "before": acc["clean"]["original"],
            "best_after": {"augmentation": best, "accuracy": acc[best]}, "n_images": int(len(rows)),
            "seed": case.seed,
            "retrieval": {"k": k, "precision": retrieval, "chance": chance} if can_retrieve else None}


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


def _cached_curve(cache: CurveCache, key: str, what: str, compute: Callable[[], list[float]]) -> list[float]:
    """The cached curve of ``key``, or ``compute()``'s, stored; under the key's lock, so that cells audited
    side by side compute the same original's or oracle's curve once (the others wait, then read it)."""

    def computed() -> list[float]:
        curve = compute()
        cache.put(key, curve, what)
        return curve

    return computed_once(lambda first: cache.get(key), lambda: cache.lock(key), computed)[0]


def relearning(case: AuditCase) -> dict[str, Any]:
    """The relearning grid (:mod:`.relearning`): each attack of ``case.relearn_grid`` on a copy of each
    model, the forgotten classes' test accuracy at step 0 and after each of ``case.relearn_steps``; the
    original's and the oracle's curves come from the case's curve cache when they are there. R, the
    relearning score over the attacks (:func:`clipunlearn.metrics.relearning_score`), against the
    oracle's curves, and against an accuracy-0 floor."""
    from ..metrics import relearning_score
    from .relearning import Attack, RelearnData, case_key, draw_rows, model_hash, related_classes, relearn_curve

    rows = draw_rows(case)
    train_labels = case.labels("train")
    kinds = sorted({a.data for a in case.relearn_grid})
    data = {}
    for kind in kinds:
        r = rows[kind]
        data[kind] = RelearnData(_load_pixels(case, "train", r), torch.tensor(train_labels[r], dtype=torch.long), r)
    test_rows = np.flatnonzero(case.is_target("test"))
    test_px = _load_pixels(case, "test", test_rows.tolist())
    test_y = case.labels("test")[test_rows]
    key_case = case_key(case)
    prompts = [case.template.format(c) for c in case.classnames]  # what a text attack trains the classifier through
    cached = {name: name != "forgotten" for name in case.models}  # the forgotten model is new each run
    curves: dict[str, dict[str, list[float]]] = {name: {} for name in case.models}
    computed = {name: 0 for name in case.models}
    cpu = {name: 0.0 for name in case.models}  # CPU seconds of the curves computed here (not read from the cache)
    for name, clip in case.models.items():
        mhash = model_hash(clip) if cached[name] else ""
        for attack in case.relearn_grid:

            def compute(clip: Clip = clip, attack: Attack = attack, name: str = name) -> list[float]:
                t0 = time.process_time()
                curve = relearn_curve(clip, attack, data[attack.data], test_px, test_y, case.classifier(name),
                                      case.relearn_steps, case.seed, prompts)
                computed[name] += 1
                cpu[name] += time.process_time() - t0
                return curve

            if not cached[name]:
                curves[name][attack.name] = compute()
                continue
            key = case.curve_cache.key(mhash, key_case, attack, case.relearn_steps, case.seed)
            curves[name][attack.name] = _cached_curve(case.curve_cache, key, attack.name, compute)
    names = [a.name for a in case.relearn_grid]
    per_model = {name: [curves[name][a] for a in names] for name in case.models}
    oracle = per_model.get("oracle")
    score = {"R": _finite(relearning_score(per_model["forgotten"], per_model["original"], oracle)) if oracle else None,
             "R_floor": _finite(relearning_score(per_model["forgotten"], per_model["original"], None)),
             "with_oracle": oracle is not None}
    steps = [0, *sorted(set(case.relearn_steps))]
    return {"attacks": names, "steps": steps, "curves": curves, "score": score,
            "images_used": {kind: len(rows[kind]) for kind in kinds},
            "related_classes": [case.classnames[c] for c in related_classes(case)] if "related" in kinds else [],
            "before": per_model["original"][0][0], "computed": computed,
            "cpu_seconds": {n: round(v, 2) for n, v in cpu.items()}}


def _finite(x: float) -> float | None:
    """A score as JSON holds it: None where it is undefined (nan)."""
    return None if x != x else x


#: the prototype attack's numbers of train images per class
PROTOTYPE_KS = (1, 5, 10)


def prototype(case: AuditCase) -> dict[str, Any]:
    """The few-shot prototype attack: each class's prototype is the mean (renormalised) image feature of k
    seeded train images of it, under each model; the forgotten class's test images are classified by
    their nearest prototype (cosine) among every class's. No text and no training: the image tower's
    features alone bring the class back if it is still there. Accuracy on the class's test images (and
    on the others', for scale) per model and k."""
    case.need_train("prototype attack")
    labels = case.labels("train")
    test_labels = case.labels("test")
    target = case.is_target("test")
    gen = np.random.default_rng(case.seed + 1)
    order = {int(c): gen.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)}
    classes = sorted(order)
    out: dict[str, Any] = {"ks": list(PROTOTYPE_KS), "accuracy": {}, "others_accuracy": {},
                           "n_images": int(target.sum())}
    for k in PROTOTYPE_KS:
        key = str(k)
        out["accuracy"][key], out["others_accuracy"][key] = {}, {}
        for name in case.models:
            train_f, test_f = case.features(name, "train"), case.features(name, "test")
            protos = F.normalize(torch.stack([train_f[order[c][:k]].mean(0) for c in classes]), dim=-1)
            pred = np.asarray(classes)[(test_f @ protos.T).argmax(1).numpy()]
            hit = pred == test_labels
            out["accuracy"][key][name] = float(hit[target].mean())
            out["others_accuracy"][key][name] = float(hit[~target].mean()) if (~target).any() else None
    return out


#: the points along the straight line from the original's weights (0) to the forgotten model's (1)
PATH_ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: the path's loss on the other classes reads at most this many of their test images (seeded)
PATH_OTHERS = 300


def weights(case: AuditCase) -> dict[str, Any]:
    """Weight space: which tensors forgetting changed, their L2 distance from the original (in all and
    relative to their norm), and the zero-shot loss on the forgotten class's and on other test images
    at points along the straight line from the original's weights to the forgotten model's (a bump on
    the way, a loss barrier, says forgetting left the original's basin; none, that it moved along it)."""
    from ..evaluation import zero_shot_classifier

    original, forgotten = case.models["original"].model, case.models["forgotten"].model
    a, b = original.state_dict(), forgotten.state_dict()
    touched = [n for n in a if a[n].is_floating_point() and not torch.equal(a[n], b[n])]
    sq = {n: float((b[n].double() - a[n].double()).pow(2).sum()) for n in touched}
    norm = sum(float(a[n].double().pow(2).sum()) for n in touched)
    towers: dict[str, float] = {}
    for n in touched:
        tower = "image" if n.startswith("visual.") else "text"
        towers[tower] = towers.get(tower, 0.0) + sq[n]
    distance = float(np.sqrt(sum(sq.values())))
    labels = case.labels("test")
    target_rows = np.flatnonzero(case.is_target("test"))
    others = np.flatnonzero(~case.is_target("test"))
    gen = np.random.default_rng(case.seed)
    others = np.sort(gen.choice(others, min(PATH_OTHERS, len(others)), replace=False))
    parts = {part: rows for part, rows in (("target", target_rows), ("others", others)) if len(rows)}
    px = {part: _load_pixels(case, "test", rows.tolist()) for part, rows in parts.items()}
    ys = {part: labels[rows] for part, rows in parts.items()}
    path: dict[str, list[float]] = {"loss_target": [], "loss_others": [], "acc_target": [], "acc_others": []}
    barrier: float | None = None  # no other test image (a concept run without retain photos): no barrier
    if touched:
        probe = dataclasses.replace(case.models["original"], model=copy.deepcopy(original))
        for alpha in PATH_ALPHAS:
            mixed = {n: (a[n] + alpha * (b[n] - a[n]) if n in touched else a[n]) for n in a}
            probe.model.load_state_dict(mixed)
            w = zero_shot_classifier(probe, case.classnames, [case.template]).float().cpu()
            for part in px:
                logits = LOGIT_SCALE * _encode(probe, px[part]) @ w.T
                y = torch.as_tensor(ys[part], dtype=torch.long)
                path[f"loss_{part}"].append(float(F.cross_entropy(logits, y)))
                path[f"acc_{part}"].append(float((logits.argmax(1) == y).float().mean()))
        if "others" in px:
            ends = np.asarray(path["loss_others"])
            line = ends[0] + (ends[-1] - ends[0]) * np.asarray(PATH_ALPHAS)
            barrier = float((ends - line).max())
    elif "others" in px:
        barrier = 0.0
    return {"touched": len(touched), "touched_tensors": touched[:50], "l2": distance,
            "relative_l2": float(distance / np.sqrt(norm)) if norm > 0 else 0.0,
            "l2_per_tower": {t: float(np.sqrt(v)) for t, v in towers.items()},
            "path": {"alphas": list(PATH_ALPHAS), **path, "n_others": int(len(others))},
            "barrier_others": barrier}


def is_zoo_run(case: AuditCase) -> bool:
    """Whether the run's original model is a zoo model with its shipped weights (training data known)."""
    from ..models.zoo import ZOO_MODELS

    r = case.run
    return r.model in ZOO_MODELS and r.pretrained in ("default", "zoo", None) and not r.weights


def mia(case: AuditCase) -> dict[str, Any]:
    """Membership inference on the forgotten class(es): members are the train images (the zoo's training
    data), non-members the test images. Loss-threshold AUC and a cross-validated SVC on [loss,
    confidence, entropy]; ROC curves for the plot. The loss-threshold AUC's seeded bootstrap interval per
    model and, with an oracle, of each model's AUC minus the oracle's (paired: the same resamples), which
    the verdict reads: with tens of images per side, one AUC alone moves by several hundredths."""
    from sklearn.metrics import roc_curve

    from .scores import BOOTSTRAP_LEVEL, BOOTSTRAP_RESAMPLES, threshold_auc_intervals

    if not is_zoo_run(case):
        return {"skipped": f"{case.run.model} ({case.run.pretrained}) is not a zoo model with its shipped weights: "
                           "its training data is unknown, so membership cannot be tested."}
    tr, te = np.flatnonzero(case.is_target("train")), np.flatnonzero(case.is_target("test"))
    member = np.r_[np.ones(len(tr), int), np.zeros(len(te), int)]
    out: dict[str, Any] = {"n_members": int(len(tr)), "n_non_members": int(len(te)), "threshold_auc": {},
                           "classifier_auc": {}, "roc": {}, "mean_loss": {}}
    losses: dict[str, np.ndarray] = {}
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
        losses[name] = s["loss"]
    reference = "oracle" if "oracle" in losses else None
    intervals = threshold_auc_intervals(member, losses, reference, seed=case.seed)
    out["threshold_auc_interval"] = intervals["interval"]
    if reference is not None:
        out["minus_oracle"] = intervals["minus_reference"]
    out["bootstrap"] = {"resamples": BOOTSTRAP_RESAMPLES, "level": BOOTSTRAP_LEVEL, "seed": case.seed}
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
    from ..data import dataset_names, is_folder_dataset, load_image_set

    out: dict[str, Any] = {}
    known = set(dataset_names())
    for name, ba in (case.run.raw.get("datasets") or {}).items():
        if name not in known and not is_folder_dataset(name):  # a subgroup run's columns are groups of subgroups
            out[name] = {"skipped": "a column of the subgroup setting, not a dataset"}
            continue
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
    "prompts": prompts, "images": images, "probe": probe, "prototype": prototype, "relearning": relearning,
    "mia": mia, "weights": weights, "oracle": oracle,
}
#: the attacks that read the dataset's train split
NEEDS_TRAIN = ("probe", "prototype", "relearning", "mia")
#: the attacks that read no precomputed image features of the splits (they train or load their own pixels)
NO_FEATURES = ("relearning", "weights")

__all__ = ["ATTACKS", "AUGMENTATIONS", "NEEDS_TRAIN", "NO_FEATURES", "PATH_ALPHAS", "PROTOTYPE_KS", "augmentation",
           "imagenet_templates", "images", "is_zoo_run", "mia", "oracle", "probe", "prompts", "prototype",
           "relearning", "synonyms", "weights"]
