"""The σ / k stage schedule of WACV'25 §4.5 and App. K (METHOD.md §1.2)."""
from __future__ import annotations

from dataclasses import dataclass

SIGMAS = (0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)
RESNET_K_IMG = (5, 7, 10, 13, 15, 20, 25)
RESNET_K_TXT = (5, 7, 12, 18, 25, 30, 35)
VIT_K = (25, 28, 32, 35, 38, 42, 45)


@dataclass(frozen=True)
class Stage:
    index: int
    sigma: float
    k_img: int
    k_txt: int


def paper_stages(family: str, n_img: int, n_txt: int) -> list[Stage]:
    """The paper's stages for an image-tower family, k capped by the eligible tensor counts."""
    k_img, k_txt = (RESNET_K_IMG, RESNET_K_TXT) if family == "resnet" else (VIT_K, VIT_K)
    return [Stage(i, s, min(ki, n_img), min(kt, n_txt)) for i, (s, ki, kt) in enumerate(zip(SIGMAS, k_img, k_txt))]
