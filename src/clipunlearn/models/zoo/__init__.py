"""The mini zoo: small CLIP models trained here, shipped with the package.

Their architectures are open_clip model configs (``<name>.json`` beside this file), registered with
open_clip on import, so ``open_clip.create_model("mini-rn")`` builds them too. Their weights are
``<name>.safetensors`` beside the config; ``clipunlearn zoo train NAME`` reproduces them. Their cards
(``<name>.card.json``: measured accuracies and the hash of the weights measured) are written by
``clipunlearn zoo card NAME``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

ZOO_DIR = Path(__file__).resolve().parent
ZOO_MODELS: tuple[str, ...] = ("mini-rn", "mini-vit", "mini-rn-h")


def register_with_open_clip() -> None:
    import open_clip

    known = set(open_clip.list_models())
    if not all(name in known for name in ZOO_MODELS):
        for name in ZOO_MODELS:
            open_clip.add_model_config(ZOO_DIR / f"{name}.json")


def weights_path(name: str) -> Path:
    return ZOO_DIR / f"{name}.safetensors"


def card_path(name: str) -> Path:
    return ZOO_DIR / f"{name}.card.json"


def read_card(name: str) -> dict[str, Any] | None:
    """The shipped card of zoo model ``name``, or None where none ships."""
    path = card_path(name)
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
