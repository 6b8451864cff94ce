"""The TensorBoard tracker: each tracked run a folder of event files, ``ROOT/<run name>/``, written
with ``torch.utils.tensorboard.SummaryWriter`` (the ``tensorboard`` package). ROOT is the folder
after ``tensorboard:``, else ``HOME/tensorboard`` (HOME: the run folder, the suite's folder, the
weights file's folder); ``tensorboard --logdir ROOT`` shows every run logged there side by side.

A run's trace is logged as scalars by step, its final figures as ``final/<name>`` scalars and in the
HParams dashboard beside its settings, its settings and report as text, its plots as images."""
from __future__ import annotations

from pathlib import Path

from .base import Tracked, require, writable_folder


def _folder(root: Path, name: str) -> Path:
    """``root/name``, or ``root/name-2``, ... when a run of that name was logged there already."""
    folder, n = root / name, 1
    while folder.exists() and any(folder.iterdir()):
        n += 1
        folder = root / f"{name}-{n}"
    return folder


def _settings_table(params: dict[str, str]) -> str:
    rows = "\n".join(f"| {k} | {v.replace('|', '/')} |" for k, v in params.items())
    return f"| setting | value |\n|---|---|\n{rows}"


class TensorBoardTracker:
    """Writes each run's event files into ``root/<run name>/``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def where(self) -> str:
        return str(self.root)

    @classmethod
    def open(cls, target: str | None, home: Path) -> TensorBoardTracker:
        """The tracker for ``--track tensorboard[:target]``, checked before the run: TensorBoard is
        installed and a folder the user named can be written."""
        flag = "tensorboard" + (f":{target}" if target else "")
        require("tensorboard", flag)
        require("torch.utils.tensorboard", flag)
        return cls(writable_folder(Path(target), flag) if target else home / "tensorboard")

    def log(self, run: Tracked) -> None:
        import numpy as np
        from PIL import Image
        from torch.utils.tensorboard import SummaryWriter
        from torch.utils.tensorboard.summary import hparams

        writer = SummaryWriter(log_dir=str(_folder(self.root, run.name)))
        try:
            writer.add_text("settings", _settings_table(run.params))
            for name, points in run.steps.items():
                for step, value in points:
                    writer.add_scalar(name, value, step)
            final = {f"final/{k}": v for k, v in run.final.items()}
            for name, value in final.items():
                writer.add_scalar(name, value, 0)
            for summary in hparams(dict(run.params), final):  # the HParams dashboard: settings beside figures
                writer.file_writer.add_summary(summary)
            for name, text in run.texts.items():
                writer.add_text(name, text)
            for path, folder in run.files:
                if path.suffix == ".png":
                    with Image.open(path) as im:
                        pixels = np.asarray(im.convert("RGB"))
                    writer.add_image(f"{folder}/{path.stem}" if folder else path.stem, pixels, 0, dataformats="HWC")
        finally:
            writer.close()
