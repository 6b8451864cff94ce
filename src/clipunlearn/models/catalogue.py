"""Which parameter tensors an unlearning method may update (WACV'25 §4.4), per architecture.

Units are tensors: a weight and its bias count separately. The rules, by tower:

* ResNet image tower (``ModifiedResNet``): only the attention-pool projections, i.e. the weights and
  biases of ``q_proj``, ``k_proj``, ``v_proj`` and ``c_proj`` (8 tensors).
* ViT image tower (``VisionTransformer``): every tensor of the transformer blocks and ``ln_pre``.
* Text tower: every tensor of the transformer blocks.
* Never: token, class and positional embeddings, the patch embedding, final layer norms, the
  projections into the joint space, the logit scale, batch-norm statistics.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from torch import nn

from ..errors import ClipUnlearnError

_ATTNPOOL = re.compile(r"^visual\.attnpool\.(q_proj|k_proj|v_proj|c_proj)\.(weight|bias)$")
_VIT_BLOCK = re.compile(r"^visual\.transformer\.resblocks\.\d+\.")
_TEXT_BLOCK = re.compile(r"^transformer\.resblocks\.\d+\.")


@dataclass(frozen=True)
class TensorInfo:
    name: str
    tower: str  # "image" | "text" | "shared"
    shape: tuple[int, ...]
    numel: int
    eligible: bool
    reason: str

    def as_dict(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


def image_family(model: nn.Module) -> str:
    """'resnet' or 'vit', from the class of the model's image tower."""
    from open_clip.modified_resnet import ModifiedResNet
    from open_clip.transformer import VisionTransformer

    visual = getattr(model, "visual", None)
    if isinstance(visual, ModifiedResNet):
        return "resnet"
    if isinstance(visual, VisionTransformer):
        return "vit"
    raise ClipUnlearnError(
        f"clipunlearn knows which tensors to update for ResNet (ModifiedResNet) and ViT "
        f"(VisionTransformer) image towers; this model's is {type(visual).__name__}. Use an open_clip "
        "architecture of the RN* or ViT-* families."
    )


def _rule(name: str, family: str) -> tuple[str, bool, str]:
    if name.startswith("visual."):
        if family == "resnet":
            if _ATTNPOOL.match(name):
                return "image", True, "attention-pool projection"
            if name.startswith("visual.attnpool.positional_embedding"):
                return "image", False, "positional embedding"
            return "image", False, "ResNet body: only the attention pool may change"
        if _VIT_BLOCK.match(name):
            return "image", True, "transformer block"
        if name.startswith("visual.ln_pre."):
            return "image", True, "pre-transformer layer norm"
        if name.startswith("visual.ln_post."):
            return "image", False, "final layer norm"
        if name == "visual.proj":
            return "image", False, "projection"
        return "image", False, "embedding"
    if _TEXT_BLOCK.match(name):
        return "text", True, "transformer block"
    if name in ("token_embedding.weight", "positional_embedding"):
        return "text", False, "embedding"
    if name.startswith("ln_final."):
        return "text", False, "final layer norm"
    if name == "text_projection" or name.startswith("text_projection."):
        return "text", False, "projection"
    if name in ("logit_scale", "logit_bias"):
        return "shared", False, "logit scale"
    return "text", False, "not a transformer block"


def tensor_catalogue(model: nn.Module, rule: str = "catalogue") -> list[TensorInfo]:
    """Every parameter tensor of a CLIP model with whether a method may update it under ``rule``
    (:data:`ELIGIBILITY`), and why.

    Batch-norm running statistics are buffers, not parameters: they never change.
    """
    family = image_family(model)
    rows = []
    for name, p in model.named_parameters():
        tower, ok, reason = _rule(name, family)
        if not ok and rule == "official" and family == "vit" and tower == "image":
            ok, reason = True, f"{reason} (eligible in the official code)"
        elif not ok and rule == "all" and tower != "shared":
            ok, reason = True, f"{reason} (every tensor trains)"
        rows.append(TensorInfo(name, tower, tuple(p.shape), p.numel(), ok, reason))
    return rows


#: which tensors may change: "catalogue" (the rules above), "official" (the official WACV'25 code:
#: as the catalogue, but any tensor of a ViT image tower), "all" (every tensor but the logit scale)
ELIGIBILITY = ("catalogue", "official", "all")


def eligible_names(model: nn.Module, tower: str | None = None, rule: str = "catalogue") -> list[str]:
    """Names of the tensors a method may update under ``rule`` (:data:`ELIGIBILITY`), optionally of
    one tower ('image' or 'text')."""
    if rule not in ELIGIBILITY:
        raise ClipUnlearnError(f"Unknown eligibility rule {rule!r}; use one of {ELIGIBILITY}.")
    rows = [t for t in tensor_catalogue(model, rule) if tower is None or t.tower == tower]
    return [t.name for t in rows if t.eligible]
