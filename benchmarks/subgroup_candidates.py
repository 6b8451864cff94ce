"""Which subgroups a model knows by their coarse label: zero-shot top-1 of each class of a dataset
when the classifier chooses among coarse labels ("a photo of a {}."), on the train and test splits.

This is how the in-domain superclasses of ``clipunlearn/data/subgroups.toml`` were chosen: the four
subgroups with the best *train* accuracy (choosing on test flatters them), kept only where their mean
test accuracy reaches 0.5 (CVPR'25 stand-ins must know the superclass).

    python benchmarks/subgroup_candidates.py --model mini-rn --data-root ../shared/data \
        --superclass flower=oxford_flowers --superclass car=stanford_cars --superclass person=pins_faces
"""
from __future__ import annotations

import argparse

import numpy as np

from clipunlearn.data import load_image_set
from clipunlearn.data.subgroups import Subgroup, coarse_vocabulary, column_images
from clipunlearn.evaluation import Evaluator
from clipunlearn.models import load_clip


def per_class(evaluator: Evaluator, dataset: str, coarse: str, vocab: list[str], data_root: str, split: str
              ) -> dict[str, float]:
    names = load_image_set(dataset, data_root, split).classnames
    images = column_images([Subgroup(dataset, n, coarse) for n in names], vocab, data_root, split, dataset)
    own = load_image_set(dataset, data_root, split)
    result = evaluator.evaluate(images, ["a photo of a {}."])
    correct = result.correct
    out = {}
    labels = np.asarray(sorted(own.labels))  # column_images keeps each class's rows together, in class order
    for c, n in enumerate(names):
        rows = labels == c
        out[n] = float(correct[rows].mean()) if rows.any() else float("nan")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="mini-rn")
    ap.add_argument("--data-root", default="../shared/data")
    ap.add_argument("--superclass", action="append", required=True, help="LABEL=DATASET")
    ap.add_argument("--top", type=int, default=8)
    args = ap.parse_args()
    vocab = coarse_vocabulary()
    evaluator = Evaluator(load_clip(args.model), progress=False)
    print(f"model {args.model}; classifier: {len(vocab)} coarse labels {vocab}")
    for item in args.superclass:
        coarse, dataset = item.split("=")
        train = per_class(evaluator, dataset, coarse, vocab, args.data_root, "train")
        test = per_class(evaluator, dataset, coarse, vocab, args.data_root, "test")
        ranked = sorted(train, key=lambda n: -train[n])
        print(f"\n{coarse} ({dataset}): mean train {np.nanmean(list(train.values())):.3f}, "
              f"test {np.nanmean(list(test.values())):.3f}; best {args.top} by train:")
        for n in ranked[: args.top]:
            print(f"  {n:40s} train {train[n]:.2f}  test {test[n]:.2f}")
        best4 = ranked[:4]
        print(f"  best four: mean test {np.mean([test[n] for n in best4]):.3f}")


if __name__ == "__main__":
    main()
