"""Mutation testing of the modules that produce the numbers users read (mutmut; `pip install -e ".[mutation]"`).

    python benchmarks/mutation.py --page docs/results/mutation.md              # every module below
    python benchmarks/mutation.py --modules metrics/scores.py --page /tmp/m.md  # some of them
    python benchmarks/mutation.py --rebuild --page docs/results/mutation.md     # the page again, running nothing

Each module is mutated in a scratch clone of the repository's committed HEAD (nothing in the working
tree changes; mutmut's `mutants/` folder stays in the clone) and run against the tests that cover it
(``MODULES``). Each module's result is kept beside the page (``mutation.json`` for ``mutation.md``): a
run of some modules (``--modules``) updates their rows and keeps the others, each row naming the commit
it was made on (and whether the module or its tests changed since); ``--fresh`` starts the page anew. The page gives, per module, the mutants killed, the survivors judged equivalent (with the
reason, from ``EQUIVALENT``: a survivor is equivalent when no test could tell it from the original, e.g.
a default argument the callers always pass) and the score: killed / (all − equivalent). The other
survivors are listed with their diff: each is a behaviour no test pins. Slow (minutes per module on
2 cores): run it outside CI, in the background, with `OMP_NUM_THREADS=1`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: module under src/clipunlearn -> the tests that cover it (run with -n 0 under every mutant)
MODULES: dict[str, list[str]] = {
    "metrics/scores.py": ["tests/test_metrics.py", "tests/test_properties.py"],
    "metrics/retrieval.py": ["tests/test_metrics.py", "tests/test_properties.py"],
    "metrics/relearning.py": ["tests/test_metrics_relearning.py", "tests/test_properties.py"],
    "metrics/sensitivity.py": ["tests/test_metrics.py"],
    "evaluation/forgetting.py": ["tests/test_evaluation.py", "tests/test_pins_evaluation.py"],
    # the reader's own tests; test_pins_results' two forget runs (5 s each) pin the pipeline's writing
    "runs/results.py": ["tests/test_results_reader.py", "tests/test_query.py",
                        "tests/test_pins_results.py::test_the_reader_keeps_each_before_and_after_where_it_was_written"],
    # the audit's unit tests only: its end-to-end tests (an audit of a trained run, 5-10 s each) reach every
    # function, and under ~500 mutants would take hours
    "audit/scores.py": ["tests/test_audit_scores_rules.py"] + [f"tests/test_audit.py::{t}" for t in (
        "test_probe_auc_is_high_on_separable_features_and_chance_on_random_ones",
        "test_membership_aucs_match_sklearn_and_see_a_loss_gap", "test_membership_scores_and_kl",
        "test_resampled_auc_is_the_mann_whitney_statistic_of_the_drawn_sample",
        "test_the_bootstrap_interval_has_the_width_the_sample_sizes_give")],
    "audit/verdict.py": ["tests/test_verdict_lines.py"] + [f"tests/test_audit.py::{t}" for t in (
        "test_verdict_thresholds", "test_prompts_and_images_are_judged_against_the_oracles_best_under_the_same_attack",
        "test_the_membership_verdict_reads_the_interval_against_its_reference",
        "test_the_oracle_verdict_judges_the_class_and_the_rest_apart")]
        + ["tests/test_audit_tasks.py::test_the_verdict_order_is_the_attacks_order_and_the_help_names_the_tasks"],
    # the report's fast tests: the suites run end to end (test_benchmark's, test_suite_audit's: 10 s to 3 min each)
    # would run under each of ~2800 mutants, and the HTML report's (1-2 s each, building whole reports) put a run
    # past an hour on 2 busy cores
    "benchmark/report.py": ["tests/test_report_units.py", "tests/test_pins_report.py"] + [f"tests/test_benchmark.py::{t}" for t in (
        "test_claims_are_checked_on_the_cells_all_their_methods_finished",
        "test_a_bar_verdict_names_the_other_datasets_that_limit_it",
        "test_rows_with_the_same_figures_in_every_common_cell_are_named",
        "test_a_subgroup_goal_is_checked_per_setting_against_every_other_method",
        "test_records_keep_paths_relative_to_the_suite_folder_and_only_names_outside_it",
        "test_a_command_on_a_page_names_no_folder_of_the_machine")] + [
        f"tests/test_suite_audit.py::{t}" for t in (
            "test_audit_figures_hold_r_and_one_recovered_column_per_judged_attack",
            "test_the_depth_goal_names_each_part_met_or_missed_with_its_figure",
            "test_relearning_curves_average_the_attacks_then_the_cells_and_band_the_original_and_oracle",
            "test_a_depth_goal_needs_method_r_and_kept")],
    # the pipeline's wiring on stand-ins (milliseconds a test); test_pins_results' two forget runs (5 s each, a
    # real model) pin the same fields end to end, but reach every function and would run under each of its mutants
    "runs/pipeline.py": ["tests/test_pipeline_wiring.py"],
    # the counts, seconds and command `clipunlearn benchmark status` prints
    "benchmark/status.py": ["tests/test_status_lines.py"] + [f"tests/test_query.py::{t}" for t in (
        "test_benchmark_status_counts_the_cells_of_a_suite_folder", "test_benchmark_status_of_some_tables_and_seeds",
        "test_benchmark_status_of_a_folder_that_is_no_suite")],
    # the attacks on hand-made cases and stand-in models (milliseconds a test), and test_pins_audit's two on a
    # hand-made case; the audits of a trained run (test_audit's, test_audit_grid's, the pins' relearning: 5-10 s
    # each) reach every attack and would run under each of ~500 mutants
    "audit/attacks.py": ["tests/test_audit_attacks_wiring.py"] + [f"tests/test_pins_audit.py::{t}" for t in (
        "test_members_are_the_train_images_of_the_class_and_each_model_is_scored_on_its_own_losses",
        "test_the_probe_is_trained_on_the_train_split_and_scored_on_the_test_split")],
    # the one below: only the fast tests that reach it (each test runs under every mutant it covers; the
    # end-to-end runs of test_cli, test_methods_contract or the frr pin would take hours)
    "training/loop.py": ["tests/test_training_loop_rules.py", "tests/test_training_loop.py",
                         "tests/test_pins_training.py::test_each_reverted_epoch_restores_its_weights_while_others_are_kept",
                         "tests/test_out_of_memory.py::test_training_stops_naming_half_the_batch_and_keeps_the_original"],
    # Uproot's closed-form edit of the text projection, against its reference solve
    "training/text_edit.py": ["tests/test_training_text_edit.py"],
    # the classifier, accuracies and the evaluator's feature cuts on a stand-in tower of three one-line stages
    # (milliseconds a test); test_evaluation's and the pins' evaluations of a real model on decoded images
    # (1-5 s each) reach every function and would run under each of its mutants
    "evaluation/zeroshot.py": ["tests/test_zeroshot_units.py"],
    # the atomic writes, staged run folders, locks and hashes every run, cache and page goes through
    "io.py": ["tests/test_io_units.py"],
    # the subgroup figures on hand-placed features and stand-in evaluators; test_subgroups' run end to end
    # (a forget run, ~10 s) would run under each mutant
    "evaluation/subgroups.py": ["tests/test_subgroup_figures.py"],
    # the image tower in stages and the hash of its tensors (the cache keys), on the random mini models
    "evaluation/features.py": ["tests/test_feature_stages.py"],
    # the feature cache on hand-made entries (milliseconds a test); test_feature_store's evaluations of a real
    # model through the cache (1-5 s each) reach most of its functions and would run under each of its mutants
    "evaluation/cache.py": ["tests/test_feature_cache_units.py"],
}

#: survivors judged equivalent: mutant name -> why no test could tell it from the original
EQUIVALENT: dict[str, str] = {
    "clipunlearn.metrics.scores.x_ratio_score__mutmut_19":
        "the target term's upper clip min(1, ·) → min(2, ·): 1 − AF/BF exceeds 1 only for AF < 0, which "
        "_accuracy refuses before, so the clip never binds",
    "clipunlearn.metrics.scores.x__accuracy__mutmut_23":
        "the percentage hint's lower bound 1.0 < value → 1.0 <= value: the hint is computed only for a value "
        "outside [0, 1], and 1.0 is inside",
    **{f"clipunlearn.metrics.relearning.x_relearning_score__mutmut_{i}":
       "the forgotten model's label in _total (None or another string): _total reads it only in the errors of a "
       "count or length check, and the forgotten model is checked against nothing (n and length None)"
       for i in (10, 15, 16)},
    "clipunlearn.metrics.relearning.x_relearning_score__mutmut_49": 'float("NAN") is float("nan")',
    "clipunlearn.metrics.retrieval.x_precision_at_k__mutmut_14":
        "mean over all cells instead of the mean of row means: the rows have equal length (k), so both are the "
        "same mean (up to the last bit of rounding, which no tolerance can pin)",
    "clipunlearn.metrics.retrieval.x_precision_at_k_per_class__mutmut_19":
        "as x_precision_at_k__mutmut_14: rows of equal length k",
    "clipunlearn.metrics.retrieval.x__hits__mutmut_31":
        "argsort without axis=1: the default is the last axis, which is axis 1 of the 2-D similarity",
    "clipunlearn.metrics.retrieval.x__hits__mutmut_36":
        'kind="STABLE": numpy reads the sort kind by its first letter, case-insensitively, so it is the stable sort',
    "clipunlearn.metrics.retrieval.x__labels__mutmut_13":
        'dtype kinds "XXiuUXX" instead of "iuU": no numpy dtype has kind "X", so the same dtypes pass',
    "clipunlearn.metrics.retrieval.x__similarity__mutmut_21":
        'dtype kinds "XXbiufXX" instead of "biuf": no numpy dtype has kind "X", so the same dtypes pass',
    "clipunlearn.metrics.retrieval.x_finite_numeric__mutmut_4":
        "astype(None) instead of astype(np.float64): numpy reads dtype None as float64",
    "clipunlearn.metrics.sensitivity.x_sensitivity_analysis__mutmut_37": 'float("NAN") is float("nan")',
    "clipunlearn.metrics.sensitivity.x__logits__mutmut_26":
        'dtype kinds "XXiufXX" instead of "iuf": no numpy dtype has kind "X", so the same dtypes pass',
    "clipunlearn.metrics.sensitivity.x__labels__mutmut_12":
        'dtype kinds "XXiuXX" instead of "iu": no numpy dtype has kind "X", so the same dtypes pass',
    "clipunlearn.evaluation.forgetting.x_error_analysis__mutmut_33":
        "with no image turned wrong, the first two kept images instead of the first one: the analysis of any kept "
        "images none of which turned wrong is the same (0 turned wrong, no shares, no gap)",
    "clipunlearn.evaluation.forgetting.x_retrieval__mutmut_39":
        "astype(None) instead of astype(np.float64): numpy reads dtype None as float64",
    "clipunlearn.evaluation.forgetting.x_retrieval__mutmut_43":
        "a query's own similarity set to the minimum − 2 instead of − 1: either is below every other similarity "
        "of its row, so it ranks last either way",
    "clipunlearn.evaluation.forgetting.x_retrieval__mutmut_67":
        "sampling when the other rows number exactly max_other_queries (>=): a sample of all of them, sorted, is "
        "all of them in order",
    "clipunlearn.audit.scores.x__draw_counts__mutmut_6":
        "rng.integers(n, size=...) instead of rng.integers(0, n, size=...): both draw from [0, n), the same numbers "
        "from the same generator",
    **{f"clipunlearn.audit.scores.x_probe_auc__mutmut_{i}":
       "the logistic regression's random_state (its default 1, None, or left out): the default lbfgs solver does "
       "not use it (sklearn: only sag, saga and liblinear shuffle)" for i in (1, 24, 27)},
    **{f"clipunlearn.audit.scores.x_classifier_auc__mutmut_{i}":
       "the SVC's kernel='rbf' or gamma='scale' left out: those are sklearn's defaults" for i in (46, 47)},
    **{f"clipunlearn.audit.scores.x_mean_kl__mutmut_{i}":
       "the logits' float64 conversion in mean_kl (dtype None or left out): they are read only for their shape and "
       "by softmax, which converts them to float64 itself" for i in (3, 5, 7, 9)},
    **{f"clipunlearn.audit.scores.x_resampled_auc__mutmut_{i}":
       "the scores' float64 conversion in resampled_auc (dtype None or left out): they are only compared (> and ==), "
       "and numpy compares mixed dtypes after an exact upcast, so every kernel entry is the same" for i in (3, 5, 7, 9)},
    **{f"clipunlearn.audit.scores.x_resampled_auc__mutmut_{i}":
       "the counts' float64 conversion in resampled_auc (dtype None or left out): counts are integers; the product "
       "with the float64 kernel upcasts them exactly, and the integer sums and their product are exact (below 2**53)"
       for i in (12, 14, 16, 18)},
    **{f"clipunlearn.audit.scores.x_percentile_interval__mutmut_{i}":
       "the samples' float64 conversion in percentile_interval (dtype None or left out): np.percentile with float64 "
       "percentiles interpolates in float64 whatever the samples' dtype (float32 samples give the same endpoints to "
       "the bit)" for i in (20, 22)},
    **{f"clipunlearn.audit.scores.x_threshold_auc_intervals__mutmut_{i}":
       "each model's losses stacked without the float64 conversion: bootstrap_threshold_auc converts the stack to "
       "float64 itself, and no loss is negated or compared before" for i in (24, 26)},
    "clipunlearn.audit.verdict.x__best_of_attack__mutmut_39":
        "strict=True left out: True is _beyond_oracle's default",
    **{f"clipunlearn.audit.verdict.x__judge_probe__mutmut_{i}":
       "strict=None instead of strict=False: _share and _beyond_oracle only test it for truth" for i in (12, 36)},
    **{f"clipunlearn.benchmark.status.x_estimate_rest__mutmut_{i}":
       "max of the method names without key=len: every candidate is a prefix of the same run id, and of strings "
       "that are prefixes of one another the longest is also the greatest" for i in (36, 38)},
    "clipunlearn.audit.verdict.x_verdicts__mutmut_41":
        'partition("XX XX") instead of partition(" "): only the oracle lines have a space in their name, and ranked '
        "unknown (after every attack) instead of last of ORDER (the oracle) they still come after every other line",
    **{f"clipunlearn.benchmark.report.x_{f}__mutmut_{i}":
       "groupby(dropna=None) instead of dropna=False: pandas reads dropna for its truth only, so the rows whose key "
       "has a missing value are kept as their own group either way" for f, i in (
           ("_verdicts", 5), ("_mean_std", 15), ("goal_lines", 53), ("tradeoff", 21))},
    **{f"clipunlearn.benchmark.report.x__table_rows__mutmut_{i}":
       'merging on the common columns (on=None, or on left out) instead of on="run_id": the runs\' frame, its model '
       "dropped, and the layout's cells (model, run_id, setting) have only run_id in common" for i in (16, 18)},
    "clipunlearn.benchmark.report.x_shown_command__mutmut_26":
        'the word before the first one read as "XXXX" instead of "": neither starts with "--", so the first word '
        "takes no option's name either way",
    "clipunlearn.benchmark.report.x__unmoved__mutmut_8":
        'the columns "target BF" and "target AF" asked to be a strict subset of the rows\' columns (< for <=): '
        "goal_lines hands _unmoved the goal method's rows, which always hold method and Score besides",
    **{f"clipunlearn.benchmark.report.x_build_view__mutmut_{i}":
       'merging the audits\' figures on the common columns (on=None, or on left out) instead of on="run_id": they '
       "hold run_id and columns named \"audit ...\", which no column of the runs' frame is" for i in (67, 70)},
    "clipunlearn.benchmark.report.x_claim_lines__mutmut_38":
        'pivot_table\'s aggfunc="mean" left out: "mean" is its default',
    "clipunlearn.benchmark.report.x_identical_lines__mutmut_6":
        "the early return on no rows or one method taken only with both (and for or): with no rows, fewer than 2 "
        "methods hold too; with rows of one method, the loop finds no pair of methods and says nothing either way",
    "clipunlearn.benchmark.report.x_identical_lines__mutmut_41":
        'the figures of a cell joined by "XX|XX" instead of "|": the prints are only compared with each other, and no '
        'figure (a number to 6 decimals, or the missing mark) holds either separator, so equal prints stay equal',
    **{f"clipunlearn.benchmark.report.x_identical_lines__mutmut_{i}":
       'a missing figure printed "XXnanXX" or "NAN" instead of "nan": the prints are only compared with each other, '
       "and either mark differs from every number to 6 decimals, as \"nan\" does" for i in (44, 45)},
    **{f"clipunlearn.benchmark.report.x__pyplot__mutmut_{i}":
       'matplotlib.use("agg" or "AGG") instead of "Agg": matplotlib reads backend names case-insensitively'
       for i in (3, 4)},
    "clipunlearn.benchmark.report.x__save__mutmut_13":
        'savefig(format="PNG") instead of "png": matplotlib lowercases the format',
    **{f"clipunlearn.benchmark.report.x__plot_tradeoff__mutmut_{i}":
       'a colour named in capitals ("TAB:GREEN" for "tab:green"): matplotlib reads colour names case-insensitively'
       for i in (23, 41, 54)},
    **{f"clipunlearn.benchmark.report.x__plot_lines__mutmut_{i}":
       'a band colour named in capitals ("TAB:GRAY" for "tab:gray"): matplotlib reads colour names '
       "case-insensitively" for i in (26, 28, 30)},
    "clipunlearn.benchmark.report.x__plot_lines__mutmut_6":
        "plt.subplots(squeeze=None) instead of squeeze=False: matplotlib reads squeeze for its truth only, so the "
        "axes are a 2-D array either way",
    **{f"clipunlearn.benchmark.report.x__plot_lines__mutmut_{i}": 'float("NAN") is float("nan")' for i in (68, 86)},
    **{f"clipunlearn.benchmark.report.x_{f}__mutmut_{i}":
       "index=None instead of index=False in to_markdown or to_csv: both read it for its truth only (tabulate's "
       "showindex=None shows no index)" for f, i in (("render_markdown", 12), ("write_report", 29),
                                                    ("write_report", 32))},
    "clipunlearn.training.loop.x_run_loop__mutmut_53":
        'the first best read under "XXXX" instead of "" when the keep rule has no metric: then no epoch is '
        "reverted and the best is never read (with a metric, both read the metric)",
    "clipunlearn.training.loop.x_run_loop__mutmut_66":
        "the parameters and optimiser state saved before every epoch, even when no epoch can be reverted: the copy "
        "is read only when reverting (costs time, changes no number)",
    **{f"clipunlearn.runs.pipeline.x__info__mutmut_{i}":
       "the record's logger name, file or line (None or another): _RUN_LOGS holds only run_log's handlers, whose "
       "log.txt shows the time and the message alone" for i in (4, 6, 7, 16)},
    **{f"clipunlearn.runs.pipeline.x_resolve_targets__mutmut_{i}":
       'load_image_set\'s split left out: "test" is its default' for i in (8, 25)},
    **{f"clipunlearn.runs.pipeline.x_starting_state__mutmut_{i}":
       'the default of settings.get("pretrained", ...) in the reload (None, left out or another string): a settings '
       "dict without pretrained has already returned None above (get(\"pretrained\") is None there), so the "
       "default is never read" for i in (32, 34, 37, 38)},
    "clipunlearn.runs.pipeline.x_write_run__mutmut_59":
        'the precision\'s default "AUTO" instead of "auto": parse_precision lowercases it',
    "clipunlearn.runs.pipeline.x__measure__mutmut_9":
        "accuracies handed None for the evaluator: with results given (evaluate_all's, never empty: the request's "
        "dataset is in them) it does not read the evaluator",
    **{f"clipunlearn.runs.pipeline.x__forget_in__mutmut_{i}":
       "the generation or forgetting seconds starting at 1.0: run_method sets both before they are read"
       for i in (4, 7)},
    "clipunlearn.runs.pipeline.x__forget_in__mutmut_34":
        "the first evaluation time set instead of added: it is added to the 0.0 it starts at",
    "clipunlearn.audit.attacks.x__accuracy__mutmut_5": 'float("NAN") is float("nan")',
    "clipunlearn.audit.attacks.x_prompts__mutmut_179":
        "the best attack looked for even with no attack family: there is always one (imagenet-80 and the other "
        "templates are scored for every case)",
    "clipunlearn.audit.attacks.x_augmentation__mutmut_9":
        "RandomResizedCrop's antialias=True left out: True is its default (torchvision 0.29, as pinned)",
    "clipunlearn.audit.attacks.x__jpeg__mutmut_12": 'save(format="jpeg") instead of "JPEG": PIL uppercases the format',
    "clipunlearn.audit.attacks.x__jpeg__mutmut_14":
        "the buffer rewound to byte 1 instead of 0: Image.open rewinds a file object to 0 itself",
    "clipunlearn.audit.attacks.x__jpeg__mutmut_16":
        "the decoded JPEG converted with mode None (a copy in its own mode): a JPEG saved from RGB opens as RGB",
    "clipunlearn.audit.attacks.x_augmented_pixels__mutmut_13":
        "fork_rng(devices=None) instead of devices=[]: it also saves and restores the CUDA generators (none on the "
        "CPU); the augmentations draw from the CPU generator only",
    "clipunlearn.audit.attacks.x_images__mutmut_53":
        "astype(None) instead of astype(np.float64): numpy reads dtype None as float64",
    "clipunlearn.audit.attacks.x_images__mutmut_57":
        "a query's own similarity set to the minimum − 2 instead of − 1: either is below every other similarity "
        "of its row, so it ranks last either way",
    "clipunlearn.audit.attacks.x_images__mutmut_74":
        "the retrieval's chance computed also when there is no retrieval: it is written only in the retrieval "
        "entry, which is None then",
    **{f"clipunlearn.audit.attacks.x_{f}__mutmut_{i}":
       'a case\'s features or logits read without the split: "test" is their default'
       for f, i in (("probe", 27), ("prototype", 56), ("mia", 51), ("oracle", 16))},
    **{f"clipunlearn.audit.attacks.x_relearning__mutmut_{i}":
       '_load_pixels handed another split than "train" (None or another string): it reads the train split for '
       'every split but "test"' for i in (19, 24, 25)},
    "clipunlearn.audit.attacks.x_relearning__mutmut_65":
        "the forgotten model's placeholder hash another string: it is read only by the curve cache, which the "
        "forgotten model's curves never reach",
    "clipunlearn.audit.attacks.x_relearning__mutmut_146":
        "relearning_score's oracle None left out: None is its default",
    **{f"clipunlearn.audit.attacks.x_prototype__mutmut_{i}":
       "F.normalize without dim, or with dim=+1: the default is 1, which is dim -1 of the 2-D prototypes"
       for i in (63, 67)},
    "clipunlearn.audit.attacks.x_weights__mutmut_67":
        "choice(replace=None) instead of replace=False: numpy reads replace for its truth only",
    "clipunlearn.audit.attacks.x_weights__mutmut_112":
        "every tensor set along the line, not only the changed floating ones: an unchanged one is a + α · 0 = a, "
        "and a changed integer buffer (BatchNorm's num_batches_tracked) is not read by a model in eval mode",
    **{f"clipunlearn.audit.attacks.x_mia__mutmut_{i}":
       "the membership labels made as floats (dtype None or left out): every reader converts them to int "
       "(threshold_auc, classifier_auc, the bootstrap) or compares them with 1 (the mean losses, the ROC's "
       "positive label)" for i in (18, 20, 22, 24)},
    "clipunlearn.training.text_edit.x_pooled_text__mutmut_1":
        "the default batch of prompts per text-tower pass (256 or another): each prompt's feature is the same",
    "clipunlearn.training.text_edit.x_edit_text_projection__mutmut_54":
        "the ridge's identity made as float32 (dtype None) and added to a float64 matrix: 0 and 1 are exact in both",
    "clipunlearn.training.text_edit.x_edit_text_projection__mutmut_56":
        "as x_edit_text_projection__mutmut_54 (the identity's dtype left out)",
    **{f"clipunlearn.training.text_edit.x_edit_text_projection__mutmut_{n}":
       "cosine_similarity without dim, or with dim=+1: the default is 1, which is dim -1 of these 2-D features"
       for n in (66, 67, 76, 77, 88, 89)},
    "clipunlearn.training.text_edit.x_edit_text_projection__mutmut_94":
        "new.to(None) instead of new.to(proj): copy_ converts the float64 answer to the projection's dtype itself",
    **{f"clipunlearn.evaluation.zeroshot.{f}__mutmut_{i}":
       "F.normalize without dim, or with dim=+1: the default is 1, which is dim -1 of these 2-D embeddings, "
       "features or class weights" for f, i in (("xǁLogitRowsǁ_logits", 5), ("xǁLogitRowsǁ_logits", 7),
                                                 ("x_zero_shot_classifier", 33), ("x_zero_shot_classifier", 34),
                                                 ("x_zero_shot_classifier", 45), ("x_zero_shot_classifier", 46),
                                                 ("x_image_scores", 30), ("x_image_scores", 31),
                                                 ("xǁEvaluatorǁimage_features", 6), ("xǁEvaluatorǁimage_features", 9))},
    **{f"clipunlearn.evaluation.zeroshot.{f}__mutmut_{i}":
       "a tensor moved to None instead of the model's (or the weights') device: the tests run on the CPU, where "
       "both are the same tensor (on a GPU the mutant fails loudly on mismatched devices; it gives no other number)"
       for f, i in (("xǁLogitRowsǁ_logits", 6), ("xǁEvaluatorǁclassifier", 21), ("xǁEvaluatorǁ_stages_from", 14),
                    ("xǁEvaluatorǁ_run_cuts", 3), ("x_image_scores", 25), ("x_image_scores", 41))},
    "clipunlearn.audit.attacks.x__encode__mutmut_6":
        "the image batch moved to None instead of the model's device: the tests run on the CPU, where both are the "
        "same (on a GPU the mutant fails loudly on mismatched devices; it gives no other number)",
    **{f"clipunlearn.audit.attacks.x__prompt_row__mutmut_{i}":
       "F.normalize of the 2-D embeddings without dim, or with dim=+1: the default is 1, which is dim -1 of them"
       for i in (19, 20)},
    "clipunlearn.audit.attacks.x__prompt_row__mutmut_23":
        "F.normalize of the 1-D mean with dim=None: over all its elements, which for a vector is dim -1",
    **{f"clipunlearn.audit.attacks.x__encode__mutmut_{i}":
       "F.normalize without dim, or with dim=+1: the default is 1, which is dim -1 of the 2-D features" for i in (18, 19)},
    "clipunlearn.training.loop.x__put_back__mutmut_4":
        "the mask moved to None instead of the parameter's device: the tests run on the CPU, where both are the same "
        "(on a GPU torch.where fails loudly on mismatched devices; it gives no other number)",
    "clipunlearn.evaluation.subgroups.x_subgroup_retrieval__mutmut_22":
        "a query's text weight moved to None instead of the features' device: the tests run on the CPU, where both "
        "are the same tensor (on a GPU the mutant fails loudly on mismatched devices; it gives no other number)",
    "clipunlearn.evaluation.zeroshot.xǁEvalResultǁaccuracy__mutmut_25": 'float("NAN") is float("nan")',
    "clipunlearn.evaluation.zeroshot.xǁEvaluatorǁclassifier__mutmut_3":
        "the classifier's key hashed to 21 bytes instead of 20: it only names a kept classifier in the evaluator's "
        "own dictionary (the feature keys, file names on disk, are pinned)",
    "clipunlearn.evaluation.zeroshot.xǁEvaluatorǁclassifier__mutmut_32":
        "popitem(last=None) instead of last=False: OrderedDict reads last for its truth only",
    **{f"clipunlearn.evaluation.features.x__vit_stages__mutmut_{i}":
       'the embedding stage\'s prefix "patch_dropout." misspelt: open_clip\'s PatchDropout (and the Identity put '
       "there without it) holds no parameter or buffer, so no tensor name starts with it" for i in (10, 11)},
    "clipunlearn.evaluation.features.x_image_stages__mutmut_3":
        "_resnet_stages handed None instead of the tower: it does not read it (every ResNet tower has the same six "
        "stages)",
    "clipunlearn.evaluation.features.x_run_stages__mutmut_4":
        "end left None when not given: stages[start:None] is stages[start:len(stages)]",
    **{f"clipunlearn.evaluation.features.x_hash_tensors__mutmut_{i}":
       'each tensor converted to float32 without moving it to "cpu" (to(None, float32) or to(float32)): the tests '
       "run on the CPU, where it already is (on a GPU .numpy() fails loudly; no other hash)" for i in (11, 13)},
    "clipunlearn.evaluation.cache.x_nbytes__mutmut_2":
        "a tensor's size read from its own nbytes instead of numel() * element_size(): torch defines Tensor.nbytes "
        "as that product",
    **{f"clipunlearn.evaluation.cache.xǁFeatureWriterǁwrite__mutmut_{i}":
       'the written rows converted to float32 without moving them to "cpu" (to(None, float32) or to(float32)): the '
       "tests run on the CPU, where both are the same tensor (on a GPU, rows bound for a file fail loudly in "
       ".numpy(), and rows copied into the in-memory buffer are moved to its CPU by the copy: no other number)"
       for i in (2, 4)},
    "clipunlearn.evaluation.cache.xǁFeatureCacheǁ_remember__mutmut_10":
        "popitem(last=None) instead of last=False: OrderedDict reads last for its truth only",
    **{m: 'a JSON file read as "UTF-8" or in the locale\'s encoding (None) instead of "utf-8": the same codec '
          "(Python's names are case-blind; the test machines' locale is UTF-8), and the JSON it reads is written "
          "by this package as UTF-8" for m in ("clipunlearn.benchmark.status.x_read_layout__mutmut_15",
                                                "clipunlearn.benchmark.status.x_read_layout__mutmut_17",
                                                "clipunlearn.benchmark.status.x__first_error_line__mutmut_5",
                                                "clipunlearn.benchmark.status.x__first_error_line__mutmut_11",
                                                "clipunlearn.benchmark.report.x_write_records__mutmut_36",
                                                "clipunlearn.benchmark.report.x_write_records__mutmut_38")},
    **{f"clipunlearn.io.x_write_text__mutmut_{i}":
       'text written as "UTF-8", in the locale\'s encoding (None) or without an encoding instead of "utf-8": the '
       "same codec on the test machines (Python's names are case-blind; their locale is UTF-8)" for i in (3, 5, 7)},
    **{f"clipunlearn.io.x_write_json__mutmut_{i}":
       "json.dumps with sort_keys None or left out instead of False: False is its default and it reads the value "
       "for its truth only" for i in (8, 12)},
    **{f"clipunlearn.io.x_file_hash__mutmut_{i}":
       "the file read in blocks of another size (2 MiB, or whole with read(None)): sha256 of the bytes in order "
       "does not depend on how they are cut" for i in (16, 18, 19)},
    "clipunlearn.benchmark.status.x__seconds__mutmut_22":
        "astype(None) instead of astype(float) on the seconds: pandas reads dtype None as float64, which float is",
}


#: mutmut statuses of a mutant that no covering test failed on: it survived, or none of them reaches it
NOT_KILLED = ("survived", "no tests")


def _run(cmd: list[str], cwd: Path, timeout: float | None = None) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed in {cwd} (exit {done.returncode}):\n{done.stdout[-2000:]}"
                         f"\n{done.stderr[-2000:]}")
    return done.stdout


def mutate(module: str, tests: list[str], scratch: Path, commit: str) -> dict:
    """Clone ``commit`` into ``scratch``, configure mutmut for ``module`` and its ``tests``, run it, and read
    each mutant's status (and the survivors' diffs)."""
    clone = scratch / module.replace("/", "_").removesuffix(".py")
    _run(["git", "clone", "-q", str(ROOT), str(clone)], scratch)
    _run(["git", "checkout", "-q", commit], clone)  # the commit the run started on, whatever was committed since
    data = ROOT.parent / "shared"  # the tests read ../shared/data beside the checkout: mutmut runs them
    if data.is_dir():  # from clone/mutants/tests, so ../shared there is clone/shared
        (clone / "shared").symlink_to(data)
    config = ("\n[tool.mutmut]\nsource_paths = [\"src/\"]\n"
              f"only_mutate = [\"src/clipunlearn/{module}\"]\n"
              # tests that read the docs (e.g. every column documented) or a script run from mutants/
              + "also_copy = [\"docs/\", \"benchmarks/\", \"README.md\"]\n"
              f"pytest_add_cli_args_test_selection = {tests!r}\n".replace("'", '"')
              + "pytest_add_cli_args = [\"-n\", \"0\", \"-p\", \"no:cacheprovider\", \"-q\"]\n")
    with open(clone / "pyproject.toml", "a", encoding="utf-8") as f:
        f.write(config)
    start = time.time()
    # one child: the run shares the machine (2 cores) with everything else; MUTMUT_CHILDREN=N for more
    _run([sys.executable, "-m", "mutmut", "run", "--max-children", os.environ.get("MUTMUT_CHILDREN", "1")], clone)
    seconds = time.time() - start
    status: dict[str, str] = {}
    for line in _run([sys.executable, "-m", "mutmut", "results", "--all", "true"], clone).splitlines():
        m = re.match(r"\s*(\S+): (.+)$", line)
        if m:
            status[m.group(1)] = m.group(2).strip()
    shown = [name for name, s in status.items() if s == "survived"]  # a mutant no test runs is listed, not shown
    diffs = {name: _diff(d) for name, d in json.loads(_run([sys.executable, "-c", _SHOW, *shown], clone)).items()}
    return _compact({"module": module, "tests": tests, "status": status, "diffs": diffs, "seconds": seconds,
                     "commit": commit[:7]})


def _compact(r: dict) -> dict:
    """A module's result with the number of mutants per status, and the status of those not killed only."""
    if "counts" not in r:  # a result kept before counts were
        r = {**r, "counts": dict(Counter(r["status"].values())),
             "status": {n: s for n, s in r["status"].items() if s in NOT_KILLED}}
    return r


#: the diffs of the mutants named in argv, as JSON, in one process (``mutmut show`` takes a second a mutant)
_SHOW = """
import json, sys
import mutmut.__main__ as mm
out = {}
for name in sys.argv[1:]:
    out[name] = mm.get_diff_for_mutant(name, path=mm.find_mutant(name).path)
print(json.dumps(out))
"""


def _diff(shown: str) -> str:
    return "\n".join(line for line in shown.splitlines() if line.startswith(("-    ", "+    ", "- ", "+ "))
                     and not line.startswith(("---", "+++")))


def _changed_since(r: dict) -> bool:
    """Whether the module or its covering test files differ between the row's commit and HEAD."""
    paths = [f"src/clipunlearn/{r['module']}", *sorted({t.split("::")[0] for t in r["tests"]})]
    return bool(_run(["git", "diff", "--name-only", r["commit"], "HEAD", "--", *paths], ROOT).strip())


def skipped_functions(source: str) -> list[str]:
    """The functions of a module's ``source`` that mutmut leaves unmutated: every decorated one (a property,
    ``torch.no_grad()``, a context manager...) but a lone ``@staticmethod`` / ``@classmethod``, named
    ``Class.method`` with their decorators. Functions nested in them are left too, and not listed."""
    import ast

    def decorators(node: ast.FunctionDef | ast.AsyncFunctionDef) -> list[str]:
        return [ast.unparse(d) for d in node.decorator_list]

    found: list[str] = []

    def visit(body: list[ast.stmt], prefix: str) -> None:
        for node in body:
            if isinstance(node, ast.ClassDef):
                visit(node.body, f"{prefix}{node.name}.")
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names = decorators(node)
                if names and names not in (["staticmethod"], ["classmethod"]):
                    found.append(f"`{prefix}{node.name}` (" + ", ".join(f"@{n}" for n in names) + ")")

    visit(ast.parse(source).body, "")
    return found


def page(results: list[dict], commands: list[str]) -> str:
    commits = sorted({r["commit"] for r in results})
    made = (f"on commit `{commits[0]}`" if len(commits) == 1 else
            "on the commit each row names (a module is rerun alone with `--modules`; its row keeps the others)")
    lines = ["# Mutation testing", "",
             "Made by " + ", then ".join(f"`{c}`" for c in commands) + f" {made} (mutmut; `benchmarks/mutation.py` "
             "says how). Score = killed / (mutants − survivors judged equivalent); a killed mutant is one that made a "
             "covering test fail (or time out); a survivor is one no covering test failed on, or that none runs.", ""]
    missing = [m for m in MODULES if m not in {r["module"] for r in results}]
    if missing:
        lines += [f"This page covers {len(results)} of the {len(MODULES)} modules of `MODULES`; not run: "
                  + ", ".join(f"`{m}`" for m in missing) + ".", ""]
    lines += ["| module | covering tests | mutants | killed | equivalent | other survivors | score | minutes | commit |",
              "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        killed = r["counts"].get("killed", 0) + r["counts"].get("timeout", 0)
        equivalent = [n for n, s in r["status"].items() if s in NOT_KILLED and n in EQUIVALENT]
        others = [n for n, s in r["status"].items() if s in NOT_KILLED and n not in EQUIVALENT]
        judged = sum(r["counts"].values()) - len(equivalent)
        score = f"{killed / judged:.0%}" if judged else "–"
        stale = " (module or tests changed since)" if _changed_since(r) else ""
        lines.append(f"| `{r['module']}` | {', '.join(Path(t).name for t in r['tests'])} | {sum(r['counts'].values())} | "
                     f"{killed} | {len(equivalent)} | {len(others)} | {score} | {r['seconds'] / 60:.1f} | "
                     f"`{r['commit']}`{stale} |")
    for r in results:
        survivors = [n for n, s in r["status"].items() if s in NOT_KILLED]
        if not survivors:
            continue
        lines += ["", f"## `{r['module']}`: survivors", ""]
        for name in survivors:
            if r["status"][name] == "no tests" and name not in EQUIVALENT:
                continue
            why = EQUIVALENT.get(name)
            lines += [f"- `{name}`" + (f" (equivalent: {why})" if why else " (no test tells it apart)"),
                      "", "  ```diff", *("  " + x for x in r["diffs"].get(name, "").splitlines()), "  ```"]
        untested = Counter(n.rpartition("__mutmut_")[0] for n in survivors
                           if r["status"][n] == "no tests" and n not in EQUIVALENT)
        if untested:
            lines += ["", "Mutants that no covering test runs (no test reaches the function), by function:", ""]
            lines += [f"- `{f}`: {k}" for f, k in untested.items()]
    skipped = {r["module"]: skipped_functions((ROOT / "src/clipunlearn" / r["module"]).read_text()) for r in results}
    if any(skipped.values()):
        lines += ["", "## Not mutated: decorated functions", "",
                  "mutmut leaves every decorated function unmutated (all but a lone @staticmethod or @classmethod), so "
                  "no score above covers these (their tests still run in the suite); as the modules read now:", ""]
        lines += [f"- `{m}`: " + ", ".join(names) for m, names in skipped.items() if names]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modules", help="comma-separated modules under src/clipunlearn (default: all of MODULES)")
    ap.add_argument("--page", required=True, help="the markdown page to write (its results are kept beside it, "
                    "in the same name with .json: a later run of some modules updates their rows only)")
    ap.add_argument("--fresh", action="store_true", help="forget the kept results: the page holds this run only")
    ap.add_argument("--rebuild", action="store_true", help="run nothing: write the page again from the kept results "
                    "(e.g. after a survivor was judged equivalent)")
    args = ap.parse_args()
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit('mutmut is not installed: pip install -e ".[mutation]"') from None
    modules = [] if args.rebuild else args.modules.split(",") if args.modules else list(MODULES)
    unknown = [m for m in modules if m not in MODULES]
    if unknown:
        raise SystemExit(f"unknown module(s) {unknown}: known are {', '.join(MODULES)} (add its covering tests "
                         "to MODULES first)")
    commit = _run(["git", "rev-parse", "HEAD"], ROOT).strip()
    out = Path(args.page)
    kept = out.with_suffix(".json")  # every module's last result, so that a run of some modules keeps the others
    previous = {} if args.fresh or not kept.is_file() else json.loads(kept.read_text(encoding="utf-8"))
    if args.rebuild and not previous:
        raise SystemExit(f"--rebuild needs the kept results {kept}: run some modules first")
    command = "python benchmarks/mutation.py" + (f" --modules {args.modules}" if args.modules else "") + \
        f" --page {args.page}"
    results = []
    with tempfile.TemporaryDirectory(prefix="clipunlearn-mutation-") as tmp:
        for module in modules:
            print(f"{module}: mutating ...", flush=True)
            results.append({**mutate(module, MODULES[module], Path(tmp), commit), "command": command})
            r = results[-1]
            print(f"{module}: {sum(r['counts'].values())} mutants, {len(r['diffs'])} not killed, {r['seconds']:.0f}s",
                  flush=True)
    rows = {m: _compact(r) for m, r in (previous.get("modules") or {}).items()}
    rows.update({r["module"]: r for r in results})
    ordered = [rows[m] for m in MODULES if m in rows]
    commands = list(dict.fromkeys(r["command"] for r in ordered))
    for path, text in ((kept, json.dumps({"modules": rows}, indent=1, ensure_ascii=False) + "\n"),
                       (out, page(ordered, commands))):
        tmp_out = path.with_name(path.name + ".tmp")
        tmp_out.write_text(text, encoding="utf-8")
        tmp_out.replace(path)
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
