from __future__ import annotations

import csv
import logging
import shutil
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

logging.getLogger().setLevel(logging.ERROR)
torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not (SHARED_DATA / "caltech101" / "manifest.csv").exists():
        pytest.skip("../shared/data is not beside this checkout")
    return SHARED_DATA


def make_slice(src_root: Path, dst_root: Path, name: str, classes: list[int], per_class: int) -> None:
    """A small manifest-layout copy of some classes of a shared dataset (labels renumbered)."""
    src = src_root / name
    names = (src / "classes.txt").read_text().splitlines()
    dst = dst_root / name
    (dst / "images").mkdir(parents=True)
    (dst / "classes.txt").write_text("\n".join(names[c] for c in classes) + "\n")
    counts: dict[tuple[int, str], int] = {}
    rows = []
    with (src / "manifest.csv").open() as f:
        for row in csv.DictReader(f):
            label = int(row["label"])
            if label not in classes:
                continue
            key = (label, row["split"])
            if counts.get(key, 0) >= per_class:
                continue
            counts[key] = counts.get(key, 0) + 1
            new = classes.index(label)
            rel = f"images/{new}_{row['split']}_{counts[key]}.jpg"
            shutil.copy(src / row["path"], dst / rel)
            rows.append((rel, new, row["split"]))
    with (dst / "manifest.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "split"])
        w.writerows(rows)


@pytest.fixture(scope="session")
def data_slice(shared_data, tmp_path_factory) -> Path:
    """caltech101 (4 classes) and cifar10 (3 classes), 6 images per class and split, in a temp root."""
    root = tmp_path_factory.mktemp("slice")
    make_slice(shared_data, root, "caltech101", [0, 1, 2, 3], 6)
    make_slice(shared_data, root, "cifar10", [0, 1, 2], 6)
    return root


@pytest.fixture(scope="session")
def mini_rn_random():
    from clipunlearn.models import load_clip

    torch.manual_seed(0)
    return load_clip("mini-rn", pretrained="none")
