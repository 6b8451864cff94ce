"""Training machinery shared by the unlearning methods: perturbation losses, tensor selection,
stage schedules."""
from .lipschitz import draw_perturbations, lipschitz_loss, lipschitz_terms, reduce_terms
from .retain import GENERAL_VOCABULARY, RetainAnchor, vocabulary_to_keep
from .schedule import Stage, paper_stages
from .selection import rank_by_gradient, restore, select_top_k, snapshot

__all__ = [
    "GENERAL_VOCABULARY",
    "RetainAnchor",
    "Stage",
    "draw_perturbations",
    "lipschitz_loss",
    "lipschitz_terms",
    "paper_stages",
    "rank_by_gradient",
    "reduce_terms",
    "restore",
    "select_top_k",
    "snapshot",
    "vocabulary_to_keep",
]
