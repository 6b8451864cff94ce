"""How far a model's image features tell each in-domain setting's forgotten subgroup from its retained
siblings, before any forgetting: each subgroup's prototype is the mean (renormalised) image feature of its
train images; each test image of the setting's subgroups is given the subgroup of its nearest prototype
(cosine). Printed per setting: the forgotten subgroup's test accuracy among the setting's subgroups, its
siblings' mean, and chance (1 / subgroups); zero-shot among the subgroups' own names beside it; and a
logistic probe (scikit-learn) trained on the train features to tell the forgotten subgroup from its
siblings: the share of the forgotten subgroup's test images it catches when its threshold lets 90 % of
the siblings' test images pass (what the CVPR goal of issue 36 asks of dog: the forgotten breed at
<= 20 % while the kept breeds keep >= 90 %, i.e. >= 0.8 caught at 0.9 passed).

A method changes the image tower from the forget and retain *train* images alone: where the original
features put a test image of the forgotten subgroup nearer a sibling's prototype than its own, forgetting
that generalises to it and keeping the sibling pull against each other (docs/methods.md, in-domain dog).

    python benchmarks/subgroup_separability.py --model mini-rn-h --data-root ../shared/data
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from clipunlearn.data import load_image_set
from clipunlearn.data.subgroups import get_setting, setting_names
from clipunlearn.models import load_clip
from clipunlearn.runs.data import decode
from clipunlearn.training.finetune import class_features


def features(clip, dataset: str, names: list[str], data_root: str, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised image features of the ``names`` classes' ``split`` images, and each one's index in ``names``."""
    images = load_image_set(dataset, data_root, split)
    ids = [images.classnames.index(n) for n in names]
    rows = [i for i, label in enumerate(images.labels) if label in ids]
    with torch.no_grad():
        x = decode(images, rows, clip)
        feats = torch.cat([F.normalize(clip.encode_image(x[i:i + 64]), dim=-1) for i in range(0, len(x), 64)])
    return feats, torch.tensor([ids.index(images.labels[i]) for i in rows])


def per_subgroup(pred: torch.Tensor, labels: torch.Tensor, n: int) -> list[float]:
    return [float((pred[labels == c] == c).float().mean()) for c in range(n)]


def caught_at(train: torch.Tensor, train_forgotten: torch.Tensor, test: torch.Tensor, test_forgotten: torch.Tensor,
              passed: float = 0.9) -> float:
    """A logistic probe, forgotten subgroup against its siblings on the train features: the share of the
    forgotten subgroup's test images scored above the threshold that ``passed`` of the siblings' stay below."""
    probe = LogisticRegression(max_iter=2000, class_weight="balanced").fit(train.numpy(), train_forgotten.numpy())
    scores = probe.decision_function(test.numpy())
    threshold = np.quantile(scores[~test_forgotten.numpy()], passed)
    return float((scores[test_forgotten.numpy()] > threshold).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-rn-h")
    ap.add_argument("--data-root", default="../shared/data")
    args = ap.parse_args()
    clip = load_clip(args.model)
    clip.model.eval()
    print(f"model {args.model}: nearest train prototype / zero-shot among each setting's subgroups (test images)")
    print(f"{'setting':22s} {'forgotten':28s} {'proto':>6s} {'siblings':>8s} {'zero-shot':>9s} {'siblings':>8s} "
          f"{'chance':>6s} {'probe@0.9':>9s}")
    for name in setting_names():
        setting = get_setting(name)
        if setting.kind != "in-domain":
            continue
        dataset = setting.forget[0].dataset
        names = [s.name for s in (*setting.forget, *setting.retain)]
        train, train_labels = features(clip, dataset, names, args.data_root, "train")
        test, test_labels = features(clip, dataset, names, args.data_root, "test")
        protos = F.normalize(torch.stack([train[train_labels == c].mean(0) for c in range(len(names))]), dim=-1)
        proto = per_subgroup((test @ protos.T).argmax(1), test_labels, len(names))
        with torch.no_grad():
            text = class_features(clip, names, setting.template)
        zero = per_subgroup((test @ text.to(test.dtype).T).argmax(1), test_labels, len(names))
        k = len(setting.forget)
        caught = caught_at(train, train_labels < k, test, test_labels < k)
        print(f"{name:22s} {', '.join(names[:k])[:28]:28s} {sum(proto[:k]) / k:6.2f} {sum(proto[k:]) / (len(names) - k):8.2f} "
              f"{sum(zero[:k]) / k:9.2f} {sum(zero[k:]) / (len(names) - k):8.2f} {1 / len(names):6.2f} {caught:9.2f}")


if __name__ == "__main__":
    main()
