from __future__ import annotations

import csv
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

logging.getLogger().setLevel(logging.ERROR)
# pytest-xdist runs the suite in one process per core (pyproject's addopts): each takes one thread,
# so two processes do not fight over the two cores of a CI machine.
_PER_PROCESS = 1 if os.environ.get("PYTEST_XDIST_WORKER") else 2
torch.set_num_threads(max(1, min(_PER_PROCESS, torch.get_num_threads())))


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


class FakeSource:
    """A data source of seeded random images of every kind, for method tests without a data root.

    ``calls`` records each kind asked for; the context around it enforces the method's ``needs``.
    """

    def __init__(self, clip, n: int = 3, seed: int = 0):
        self.clip, self.n, self.seed, self.calls = clip, n, seed, []

    def _batch(self, classes, names, source, salt):
        from clipunlearn.methods import ImageBatch

        gen = torch.Generator().manual_seed(self.seed + salt)
        labels = torch.tensor([c for c in classes for _ in range(self.n)])
        size = self.clip.image_size
        return ImageBatch(torch.rand(len(labels), 3, size, size, generator=gen), labels, list(names), source)

    def synthetic_forget(self, request, **options):
        self.calls.append("synthetic_forget")
        return self._batch(request.classes, request.classnames, "synthetic", 1)

    def synthetic_retain(self, request, **options):
        self.calls.append("synthetic_retain")
        return self._batch(request.other_classes, request.classnames, "synthetic", 2)

    def real_forget(self, request, **options):
        self.calls.append("real_forget")
        return self._batch(request.classes, request.classnames, "toy train", 3)

    def real_retain(self, request, **options):
        self.calls.append("real_retain")
        return self._batch(request.other_classes, request.classnames, "toy train", 4)


TOY_CLASSES = ["cat", "dog", "car", "tree", "boat"]


@pytest.fixture
def make_context():
    """make_context(clip, method_cls, seed=0, max_epochs=2) -> a ForgetContext over a FakeSource that
    forgets "dog" among TOY_CLASSES and serves only what ``method_cls.needs`` declares."""
    from clipunlearn.methods import ForgetContext, ForgetRequest, Knobs

    def make(clip, method_cls, seed: int = 0, max_epochs: int | None = 2, max_steps: int | None = 2):
        request = ForgetRequest("toy", TOY_CLASSES, [1], "a photo of a {}.")
        return ForgetContext(clip, request, FakeSource(clip, seed=seed), method_cls.needs,
                             Knobs(seed=seed, max_epochs=max_epochs, max_steps=max_steps), method_cls.name)

    return make


#: the settings of the tiny benchmark suites the tests run: one mini-rn cell in seconds
SUITE_HEADER = """
name = "{name}"
models = ["mini-rn"]
seeds = [0]
other_datasets = ["cifar10"]
n_per_class = 2
max_steps = 2
max_epochs = 1
"""
SMALL_SUITE = SUITE_HEADER.format(name="small") + """retrieval = false
template_change = false
{methods}
[[targets]]
dataset = "caltech101"
classes = ["leopard"]
"""
LIP_ENTRY = '[[methods]]\nmethod = "lip"\noptions = { n_draws = 2, retain_steps = 2 }\n'
AMNS_ENTRY = '[[methods]]\nmethod = "amns"\n'


@pytest.fixture(scope="session")
def lip_run(data_slice, tmp_path_factory) -> Path:
    """A tiny Lip run forgetting caltech101 motorbike from mini-rn on the data slice (for the audit's tests)."""
    from clipunlearn.runs import ForgetSettings, forget

    out = tmp_path_factory.mktemp("audit") / "run"
    forget(ForgetSettings(model="mini-rn", dataset="caltech101", classes=["motorbike"], out=str(out),
                          data_root=str(data_slice), method="lip", n_per_class=2, max_epochs=1,
                          generation_max_steps=2, options={"n_draws": 2, "retain_steps": 2}, other_datasets=[],
                          retrieval=False, template_change=False, progress=False))
    return out


@pytest.fixture
def dead_pid() -> int:
    """The id of a process that has exited (what a run killed outright leaves in its temporary names)."""
    out = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                         check=True).stdout
    return int(out)


@pytest.fixture
def sleeper():
    """A running child process (asked about, never signalled by the code under test), killed after the test
    (list it before monkeypatch, so that it is torn down after it, with the real os.kill)."""
    catch_all = ("import signal, sys, time\n"  # any signal it can catch ends it (also one a nohup parent ignores)
                 "for s in signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP, signal.SIGCHLD}:\n"
                 "    signal.signal(s, lambda *_: sys.exit(3))\n"
                 "time.sleep(60)\n")
    child = subprocess.Popen([sys.executable, "-c", catch_all])
    time.sleep(0.3)
    yield child
    child.kill()
    child.wait()
