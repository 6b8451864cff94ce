"""Evaluation: zero-shot classification with a stage-wise feature cache."""
from .features import FeatureCache, first_changed_stage, image_stages, run_stages
from .zeroshot import LOGIT_SCALE, EvalResult, Evaluator, zero_shot_classifier

__all__ = [
    "LOGIT_SCALE",
    "EvalResult",
    "Evaluator",
    "FeatureCache",
    "first_changed_stage",
    "image_stages",
    "run_stages",
    "zero_shot_classifier",
]
