"""Retrieval precision@k from a query-by-database similarity matrix.

Ranking is deterministic: database items are sorted by decreasing similarity with
a stable sort, so ties go to the lower database index.
"""
from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

from ..errors import ClipUnlearnError


def to_numpy(values: Any, what: str) -> np.ndarray:
    """``values`` (array-like or torch tensor) as a numpy array."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):  # torch.Tensor
        values = values.detach().cpu().numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as exc:
        raise ClipUnlearnError(f"{what} cannot be read as an array ({exc}). Pass a numpy array.") from None


def precision_at_k(
    query_labels: Any,
    database_labels: Any,
    similarity: Any,
    ks: Sequence[int] = (1, 5, 10),
    exclude_self: bool = False,
) -> dict[int, float]:
    """Precision@k averaged over the queries.

    For each query the ``k`` database items of highest similarity are taken (ties
    to the lower database index); its precision is the fraction of them whose
    label equals the query's label.

    Args:
        query_labels: ``(n_query,)`` integer or string labels.
        database_labels: ``(n_database,)`` labels of the same kind.
        similarity: ``(n_query, n_database)`` finite scores, higher is closer.
        ks: the cut-offs, positive integers.
        exclude_self: drop database item ``i`` from query ``i``'s ranking (for a
            query set that is the database itself; needs a square ``similarity``).

    Returns:
        ``{k: mean precision@k}`` for each ``k`` in ``ks``.

    Raises:
        ClipUnlearnError: on a bad shape, non-finite similarity, labels that are
            neither integers nor strings, or a ``k`` larger than the number of
            database items that can be ranked.
    """
    q, _db, hits, ks = _hits(query_labels, database_labels, similarity, ks, exclude_self)
    return {k: float(hits[:, :k].mean(axis=1).mean()) for k in ks}


def precision_at_k_per_class(
    query_labels: Any,
    database_labels: Any,
    similarity: Any,
    ks: Sequence[int] = (1, 5, 10),
    exclude_self: bool = False,
) -> dict[Hashable, dict[int, float]]:
    """Precision@k averaged over the queries of each label.

    Same arguments and ranking as :func:`precision_at_k`.

    Returns:
        ``{label: {k: mean precision@k over the queries with that label}}``, labels
        in sorted order, as Python ints or strings.
    """
    q, _db, hits, ks = _hits(query_labels, database_labels, similarity, ks, exclude_self)
    result: dict[Hashable, dict[int, float]] = {}
    for label in np.unique(q):
        rows = hits[q == label]
        result[label.item()] = {k: float(rows[:, :k].mean(axis=1).mean()) for k in ks}
    return result


def _hits(
    query_labels: Any,
    database_labels: Any,
    similarity: Any,
    ks: Sequence[int],
    exclude_self: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """Checked labels, and a boolean ``(n_query, max k)`` matrix: rank r is a match."""
    q = _labels(query_labels, "query_labels")
    db = _labels(database_labels, "database_labels")
    _check_same_label_kind(q, db)
    sim = _similarity(similarity, len(q), len(db))
    order = np.argsort(-sim, axis=1, kind="stable")
    if exclude_self:
        order = _drop_diagonal(order)
    ks = _ks(ks, order.shape[1], exclude_self)
    top = order[:, : max(ks)]
    return q, db, db[top] == q[:, None], ks


def _labels(labels: Any, what: str) -> np.ndarray:
    arr = to_numpy(labels, what)
    if arr.ndim != 1 or arr.size == 0:
        raise ClipUnlearnError(
            f"{what} must be a non-empty 1-D sequence of labels, got shape {arr.shape}. "
            f"Pass one label per item."
        )
    if arr.dtype.kind not in "iuU":
        raise ClipUnlearnError(
            f"{what} must hold integer or string labels, got dtype {arr.dtype}. "
            f"Convert class ids to int (e.g. labels.astype(int)) or names to str."
        )
    return arr


def _check_same_label_kind(q: np.ndarray, db: np.ndarray) -> None:
    if (q.dtype.kind == "U") != (db.dtype.kind == "U"):
        raise ClipUnlearnError(
            f"query_labels ({q.dtype}) and database_labels ({db.dtype}) are of "
            f"different kinds, so no label would ever match. Use class ids for both, "
            f"or class names for both."
        )


def finite_numeric(arr: np.ndarray, what: str, kinds: str, hint: str) -> np.ndarray:
    """``arr`` as float64 if its dtype kind is in ``kinds`` and every value is finite; else a clear error."""
    if arr.dtype.kind not in kinds:
        raise ClipUnlearnError(f"{what} must be numeric, got dtype {arr.dtype}.")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise ClipUnlearnError(f"{what} holds NaN or infinite values{hint}")
    return arr


def _similarity(similarity: Any, n_query: int, n_database: int) -> np.ndarray:
    sim = to_numpy(similarity, "similarity")
    if sim.shape != (n_query, n_database):
        raise ClipUnlearnError(
            f"similarity has shape {sim.shape}, expected (n_query, n_database) = "
            f"({n_query}, {n_database}). Transpose it if queries are its columns."
        )
    sim = finite_numeric(sim, "similarity", "biuf", ", so the ranking is undefined. "
                         "Check the embeddings (a zero vector normalised gives NaN).")
    return sim


def _drop_diagonal(order: np.ndarray) -> np.ndarray:
    n_query, n_database = order.shape
    if n_query != n_database:
        raise ClipUnlearnError(
            f"exclude_self needs the queries to be the database (a square similarity), "
            f"got shape {order.shape}. Pass exclude_self=False for separate sets."
        )
    keep = order != np.arange(n_query)[:, None]
    return order[keep].reshape(n_query, n_database - 1)


def _ks(ks: Sequence[int], n_ranked: int, exclude_self: bool) -> list[int]:
    if isinstance(ks, (int, np.integer)):
        ks = [ks]
    ks = list(ks)
    if not ks:
        raise ClipUnlearnError("ks is empty. Pass at least one cut-off, e.g. ks=(1, 5, 10).")
    for k in ks:
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ClipUnlearnError(f"Each k must be a positive integer, got {k!r}.")
        if k > n_ranked:
            excluded = " after excluding each query itself" if exclude_self else ""
            raise ClipUnlearnError(
                f"k={k} is larger than the {n_ranked} database items that can be "
                f"ranked{excluded}. Use k <= {n_ranked}, or a larger database."
            )
    return [int(k) for k in ks]
