"""Image styles made by transforms, for the style setting of subgroup forgetting (CVPR'25 §5.4, Table 3).

The paper turns one class's photos into sketch, poster art and black-and-white drawing with Stable
Diffusion; here each style is a deterministic image transform (no generative model is available):

* ``sketch``: edges of the grey image (PIL's FIND_EDGES), inverted and stretched: dark lines on white;
* ``poster``: the colours posterised to 2 bits per channel;
* ``drawing``: the grey image thresholded at its median: black and white areas.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from ..errors import unknown


def sketch(image: Image.Image) -> Image.Image:
    edges = ImageOps.grayscale(image).filter(ImageFilter.FIND_EDGES)
    return ImageOps.autocontrast(ImageOps.invert(edges)).convert("RGB")


def poster(image: Image.Image) -> Image.Image:
    return ImageOps.posterize(image.convert("RGB"), 2)


def drawing(image: Image.Image) -> Image.Image:
    grey = ImageOps.grayscale(image)
    median = int(np.median(np.asarray(grey)))
    return grey.point(lambda v: 255 if v > median else 0).convert("RGB")


STYLES: dict[str, Callable[[Image.Image], Image.Image]] = {"sketch": sketch, "poster": poster, "drawing": drawing}


def apply_style(name: str, image: Image.Image) -> Image.Image:
    if name not in STYLES:
        raise unknown("image style", name, STYLES)
    return STYLES[name](image)


__all__ = ["STYLES", "apply_style", "drawing", "poster", "sketch"]
