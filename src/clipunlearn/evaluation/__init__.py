"""Evaluation: zero-shot classification with a stage-wise feature cache."""
from .cache import FeatureCache, FeatureFile
from .features import ImageStage, hash_tensors, image_stages, run_stages
from .zeroshot import (
    LOGIT_SCALE,
    EvalResult,
    Evaluator,
    image_scores,
    zero_shot_classifier,
)

__all__ = [
    "LOGIT_SCALE",
    "EvalResult",
    "Evaluator",
    "FeatureCache",
    "FeatureFile",
    "ImageStage",
    "hash_tensors",
    "image_scores",
    "image_stages",
    "run_stages",
    "zero_shot_classifier",
]
