"""Invariants of the formulas, checked with hypothesis (issue 35, item 3): the Avg. Score and the ratio Score
move the right way in each column, precision@k stays in [0, 1] and is 1 for a perfect ranking, R is 0 for
the oracle's curves and 1 for the original's, and a report row of identical cells shows the cell."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from clipunlearn.benchmark.report import suite_table
from clipunlearn.metrics import avg_score, precision_at_k, ratio_score, relearning_score

FEW = settings(max_examples=60, deadline=None)

acc = st.floats(0.0, 1.0, allow_nan=False)
positive = st.floats(0.01, 1.0, allow_nan=False)
pair = st.tuples(positive, acc)
others = st.lists(pair, max_size=4)


def _raise(p: tuple[float, float], index: int, bump: float) -> tuple[float, float]:
    """``p`` with its before (0) or after (1) accuracy raised by ``bump``, kept in [0, 1]."""
    q = list(p)
    q[index] = min(1.0, q[index] + bump)
    return q[0], q[1]


@FEW
@given(pair, others, st.integers(0, 4), st.sampled_from([0, 1]), st.floats(0.0, 1.0))
def test_avg_score_moves_the_right_way_in_each_column(target, rest, i, which, bump):
    """Lower is better: more of the target kept after (or less before) raises it; more of another column
    kept after (or less there before) lowers it. Never below 0."""
    base = avg_score(target, rest)
    assert base >= 0.0
    raised = avg_score(_raise(target, which, bump), rest)
    assert raised >= base - 1e-12 if which == 1 else raised <= base + 1e-12
    if rest:
        j = i % len(rest)
        moved = list(rest)
        moved[j] = _raise(rest[j], which, bump)
        changed = avg_score(target, moved)
        assert changed <= base + 1e-12 if which == 1 else changed >= base - 1e-12


@FEW
@given(pair, others, st.integers(0, 4), st.sampled_from([0, 1]), st.floats(0.0, 1.0))
def test_ratio_score_moves_the_right_way_in_each_column_and_stays_in_the_unit_interval(target, rest, i, which, bump):
    """Higher is better: more of the target kept after (or less before) lowers it; more of another column
    kept after (or less there before) raises it."""
    base = ratio_score(target, rest)
    assert 0.0 <= base <= 1.0
    raised = ratio_score(_raise(target, which, bump), rest)
    assert raised <= base + 1e-12 if which == 1 else raised >= base - 1e-12
    if rest:
        j = i % len(rest)
        moved = list(rest)
        moved[j] = _raise(rest[j], which, bump)
        changed = ratio_score(target, moved)
        assert changed >= base - 1e-12 if which == 1 else changed <= base + 1e-12


@FEW
@given(st.lists(st.integers(0, 3), min_size=2, max_size=12), st.integers(0, 2**32 - 1))
def test_precision_at_k_is_a_share_and_1_for_a_perfect_ranking(db, seed):
    """Queries of every label the database holds. Random similarities: every precision lies in [0, 1].
    Similarities that rank every item of the query's label first: 1 up to k = the rarest label's count."""
    db = np.asarray(db)
    queries = np.unique(db)
    rng = np.random.default_rng(seed)
    ks = list(range(1, len(db) + 1))
    noisy = precision_at_k(queries, db, rng.normal(size=(len(queries), len(db))), ks)
    assert all(0.0 <= v <= 1.0 for v in noisy.values())
    perfect = (queries[:, None] == db[None, :]) + 0.5 * rng.uniform(size=(len(queries), len(db)))
    got = precision_at_k(queries, db, perfect, ks)
    rarest = min(int((db == q).sum()) for q in queries)
    assert all(got[k] == 1.0 for k in ks if k <= rarest)
    assert all(got[k] < 1.0 for k in ks if k > rarest)


curve = st.lists(acc, min_size=2, max_size=4)


@FEW
@given(st.lists(st.tuples(curve, curve), min_size=1, max_size=4))
def test_r_is_0_for_the_oracles_curves_and_1_for_the_originals(pairs):
    """Any grid whose original relearns more than its oracle (the score is defined): the oracle audited as
    the forgotten model scores 0, the original scores 1."""
    n = min(len(c) for p in pairs for c in p)
    original = [p[0][:n] for p in pairs]
    oracle = [p[1][:n] for p in pairs]
    defined = relearning_score(original, original, oracle)
    assume(not np.isnan(defined))
    assert defined == pytest.approx(1.0)
    assert relearning_score(oracle, original, oracle) == pytest.approx(0.0, abs=1e-9)


@FEW
@given(st.integers(0, 1000), st.integers(1, 5))
def test_a_report_row_of_identical_cells_shows_the_cell(thousandths, n):
    """n cells with the same figure: the row's mean is that figure, its std 0 (none shown for one cell)."""
    value = thousandths / 1000
    df = pd.DataFrame([{"run_id": f"r{i}", "model": "m", "method": "lip", "target BF": value, "target AF": value,
                        "Avg. Score": value} for i in range(n)])
    cells = [{"model": "m", "run_id": f"r{i}", "setting": ""} for i in range(n)]
    row = suite_table(df, {"group_by": ["method"], "show": "forgetting", "cells": cells}).iloc[0]
    shown = f"{value:.3f}" + ("" if n == 1 else " ± 0.000")
    assert (row["target BF"], row["target AF"], row["Avg. Score"], row["runs"]) == (shown, shown, shown, n)
