"""Synthetic forget images: batched gradient ascent from noise, saved for reuse."""
from .generate import (
    GenerationConfig,
    SyntheticSet,
    blur,
    climb_again,
    generate_synthetic,
    generate_with_progress,
)
from .store import (
    SyntheticCache,
    check_synthetic_fits,
    load_synthetic,
    save_grid,
    save_synthetic,
)

__all__ = ["GenerationConfig", "SyntheticCache", "SyntheticSet", "blur", "check_synthetic_fits", "climb_again", "generate_synthetic",
           "generate_with_progress", "load_synthetic", "save_grid", "save_synthetic"]
