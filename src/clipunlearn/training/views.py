"""Random views of a batch of preprocessed images: a crop of random area and shape, resized back to the
image size, and a horizontal flip, drawn from a seeded generator. A method that trains on a few real
images sees a new view of each at every step instead of the same pixels, so that what it learns about
those images is less tied to them (the usual augmentation of image training; the views are made on the
preprocessed tensors, so they work on whatever the model's transform produced)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from ..errors import TrainingError


@dataclass(frozen=True)
class Views:
    """How views are drawn: the crop's share of the image area and its width/height ratio, each uniform
    (the ratio log-uniform) in its range, and the probability of a horizontal flip."""

    scale: tuple[float, float] = (0.5, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    flip: float = 0.5

    def __post_init__(self) -> None:
        lo, hi = self.scale
        if not 0.0 < lo <= hi <= 1.0:
            raise TrainingError(f"A view's scale is a share of the image area: 0 < low <= high <= 1, got {self.scale}.")
        if not 0.0 < self.ratio[0] <= self.ratio[1]:
            raise TrainingError(f"A view's ratio range must be positive and ordered, got {self.ratio}.")
        if not 0.0 <= self.flip <= 1.0:
            raise TrainingError(f"A view's flip probability must lie in [0, 1], got {self.flip}.")


def crop_box(height: int, width: int, views: Views, generator: torch.Generator) -> tuple[int, int, int, int]:
    """One crop (top, left, h, w) inside a height x width image: its area a uniform share of the image's
    in ``views.scale``, its ratio log-uniform in ``views.ratio``, clipped to the image, placed uniformly."""
    u = torch.rand(4, generator=generator).tolist()
    area = height * width * (views.scale[0] + u[0] * (views.scale[1] - views.scale[0]))
    log_lo, log_hi = math.log(views.ratio[0]), math.log(views.ratio[1])
    ratio = math.exp(log_lo + u[1] * (log_hi - log_lo))
    w = min(width, max(1, round(math.sqrt(area * ratio))))
    h = min(height, max(1, round(math.sqrt(area / ratio))))
    top = int(u[2] * (height - h + 1))
    left = int(u[3] * (width - w + 1))
    return min(top, height - h), min(left, width - w), h, w


def random_views(images: torch.Tensor, views: Views, generator: torch.Generator) -> torch.Tensor:
    """A random view of each image of a (N, C, H, W) batch, same shape, drawn from ``generator``."""
    if images.dim() != 4:
        raise TrainingError(f"random_views takes a (N, C, H, W) batch, got shape {tuple(images.shape)}.")
    height, width = images.shape[-2:]
    out = []
    for image in images:
        top, left, h, w = crop_box(height, width, views, generator)
        view = TF.resized_crop(image, top, left, h, w, [height, width], antialias=True)
        if float(torch.rand(1, generator=generator)) < views.flip:
            view = view.flip(-1)
        out.append(view)
    return torch.stack(out)
