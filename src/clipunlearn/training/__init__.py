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
from .retain import GENERAL_VOCABULARY, RetainAnchor, nearest_names, vocabulary_to_keep

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
    "nearest_names",
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

# the CVPR'25 baselines: fine-tuning the image tower with a signed zero-shot CE, and Fisher information
from .finetune import (  # noqa: E402
    FineTuneConfig,
    accuracy_measure,
    class_features,
    fine_tune_signed,
    image_tower_loop,
    signed_prompt_ce,
)
from .fisher import (  # noqa: E402
    diagonal_fisher,
    layer_fisher,
    layer_of,
    rank_layers,
    relative_fisher,
    relative_fisher_mask,
)
from .lipschitz import encode_perturbed, image_lipschitz_loss, similarity_terms  # noqa: E402

__all__ += [
    "FineTuneConfig",
    "accuracy_measure",
    "class_features",
    "diagonal_fisher",
    "encode_perturbed",
    "fine_tune_signed",
    "image_lipschitz_loss",
    "image_tower_loop",
    "layer_fisher",
    "layer_of",
    "rank_layers",
    "relative_fisher",
    "relative_fisher_mask",
    "signed_prompt_ce",
    "similarity_terms",
]

# forget-remind-restore (CVPR'25): LoRA adapters, batch-norm statistics alignment, EMA / soups / merges
from .bn_stats import (  # noqa: E402
    align_to_bn_statistics,
    batch_norm_layers,
    bn_statistics_loss,
    bn_statistics_terms,
)
from .lora import LoraAdapters, LoraSpec, attach_lora, lora_adapters, lora_targets  # noqa: E402
from .merge import EMA, choose_soup, merge_models, soup  # noqa: E402

__all__ += [
    "EMA",
    "LoraAdapters",
    "LoraSpec",
    "align_to_bn_statistics",
    "attach_lora",
    "batch_norm_layers",
    "bn_statistics_loss",
    "bn_statistics_terms",
    "choose_soup",
    "lora_adapters",
    "lora_targets",
    "merge_models",
    "soup",
]
