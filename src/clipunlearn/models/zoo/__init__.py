"""The mini zoo: small CLIP models trained here, shipped with the package.

Their architectures are open_clip model configs (``<name>.json`` beside this file), registered with
open_clip on import, so ``open_clip.create_model("mini-rn")`` builds them too. Their weights are
``<name>.safetensors`` beside the config; ``clipunlearn zoo train NAME`` reproduces them.
"""
from __future__ import annotations

from pathlib import Path

ZOO_DIR = Path(__file__).resolve().parent
ZOO_MODELS: tuple[str, ...] = ("mini-rn", "mini-vit")


def register_with_open_clip() -> None:
    import open_clip

    known = set(open_clip.list_models())
    if not all(name in known for name in ZOO_MODELS):
        for name in ZOO_MODELS:
            open_clip.add_model_config(ZOO_DIR / f"{name}.json")


def weights_path(name: str) -> Path:
    return ZOO_DIR / f"{name}.safetensors"
