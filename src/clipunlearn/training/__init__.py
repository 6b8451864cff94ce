"""The training machinery every method is built from: the one loop (stages, keep-or-revert, stop
rules, the trace), parameter selection and freezing, losses, and the data-free retain term."""
from .lipschitz import (
    draw_perturbations,
    encode_text_perturbed,
    lipschitz_loss,
    lipschitz_terms,
    reduce_terms,
)
from .loop import (
    KeepRule,
    Loop,
    OptimConfig,
    Stage,
    StopRule,
    Trace,
    make_stages,
    run_loop,
)
from .params import (
    all_names,
    apply_mask,
    frozen,
    rank_by_gradient,
    restore,
    select_all,
    select_top_k,
    snapshot,
    tower_tensors,
    trainable,
)
from .retain import GENERAL_VOCABULARY, RetainAnchor, vocabulary_to_keep

__all__ = [
    "GENERAL_VOCABULARY",
    "KeepRule",
    "Loop",
    "OptimConfig",
    "RetainAnchor",
    "Stage",
    "StopRule",
    "Trace",
    "all_names",
    "apply_mask",
    "draw_perturbations",
    "encode_text_perturbed",
    "frozen",
    "lipschitz_loss",
    "lipschitz_terms",
    "make_stages",
    "rank_by_gradient",
    "reduce_terms",
    "restore",
    "run_loop",
    "select_all",
    "select_top_k",
    "snapshot",
    "tower_tensors",
    "trainable",
    "vocabulary_to_keep",
]
