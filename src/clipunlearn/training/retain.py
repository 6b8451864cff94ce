"""A data-free retain term: keep the model's predictions on synthetic images of classes it must keep.

The images are made from class names alone (``synthetic.generate``), so no training data is needed.
The term is KL(p_original ‖ p_current) of the zero-shot predictions over the dataset's classes,
averaged over the images; the classifier is rebuilt from the current text tower on every call, so
gradients reach both towers.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ..evaluation.zeroshot import LOGIT_SCALE
from ..models.factory import Clip

#: everyday concepts anchored besides the dataset's own classes, so that forgetting one class of a
#: narrow dataset (dog breeds) does not spill over into everything else the model knows
GENERAL_VOCABULARY: tuple[str, ...] = (
    "person", "man", "woman", "child", "face", "car", "truck", "bus", "bicycle", "airplane", "boat", "train",
    "house", "building", "street", "city", "tree", "forest", "flower", "grass", "mountain", "beach", "sea",
    "sky", "dog", "cat", "bird", "horse", "fish", "insect", "food", "fruit", "vegetable", "bread", "cake",
    "chair", "table", "bed", "book", "phone", "computer", "clock", "bottle", "cup", "shoe", "shirt", "ball",
    "toy", "musical instrument", "tool",
)


def vocabulary_to_keep(classnames: list[str], forget: list[str],
                       vocabulary: tuple[str, ...] = GENERAL_VOCABULARY) -> list[str]:
    """The words of ``vocabulary`` that are not already classes and share no word with a forgotten
    class (case-insensitive): anchoring "dog" would fight forgetting "African hunting dog"."""
    known = {c.lower() for c in classnames}
    gone = {word for c in forget for word in c.lower().split()}
    return [w for w in vocabulary if w.lower() not in known and not set(w.lower().split()) & gone]


def nearest_names(clip: Clip, forget: list[str], candidates: list[str], template: str, k: int) -> list[str]:
    """The ``k`` names of ``candidates`` whose prompts (under ``template``) the model embeds closest to a
    forgotten name's, closest first: the concepts that forgetting the name is most likely to take along
    (for "car side": minivan, convertible, ...), to be kept on purpose. Candidates that are forgotten
    names are never chosen; ties keep the given order."""
    if k < 1 or not forget:
        return []
    gone = {n.lower() for n in forget}
    pool = list(dict.fromkeys(c for c in candidates if c.lower() not in gone))
    if not pool:
        return []
    with torch.no_grad():
        g = F.normalize(clip.encode_text([template.format(n) for n in forget]).float(), dim=-1)
        c = F.normalize(clip.encode_text([template.format(n) for n in pool]).float(), dim=-1)
        closeness = (c @ g.T).max(dim=1).values
    order = sorted(range(len(pool)), key=lambda i: -float(closeness[i]))
    return [pool[i] for i in order[:k]]


class RetainAnchor:
    """Predictions of the original model on ``images`` ([0, 1], B×3×H×W) over ``classnames``."""

    def __init__(self, clip: Clip, images: torch.Tensor, classnames: list[str], template: str):
        self.images = images.to(clip.device)
        self.tokens = clip.tokenize([template.format(c) for c in classnames])
        with torch.no_grad():
            self.reference = F.softmax(self._logits(clip), dim=1)

    def _logits(self, clip: Clip) -> torch.Tensor:
        feats = clip.encode_image(self.images, normalize=True)
        text = F.normalize(clip.model.encode_text(self.tokens), dim=-1)
        return LOGIT_SCALE * feats @ text.T

    def kl(self, clip: Clip) -> torch.Tensor:
        """KL(original ‖ current), mean over images; 0 for the unchanged model."""
        return F.kl_div(F.log_softmax(self._logits(clip), dim=1), self.reference, reduction="batchmean")
