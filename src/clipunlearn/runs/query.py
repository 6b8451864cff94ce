"""SQL over the runs of a folder (``clipunlearn query DIR "SQL"``): DuckDB runs the SQL over the view
of :mod:`.view`, registered as the table ``runs``; the answer can be written to a .parquet or .csv
file. DuckDB is an optional extra: ``pip install -e ".[query]"``."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import ClipUnlearnError
from ..io import atomic_path
from .view import runs_view

#: the table the view is known by in the SQL
TABLE = "runs"
#: the files ``--to`` writes, by suffix
FORMATS = (".parquet", ".csv")


def _duckdb() -> Any:
    try:
        import duckdb
    except ImportError:
        raise ClipUnlearnError('clipunlearn query needs DuckDB: pip install -e ".[query]" (or pip install duckdb).'
                               ) from None
    return duckdb


def check_output(to: str | os.PathLike[str], force: bool) -> Path:
    """``to`` as a path to write: a known suffix, and not an existing file unless ``force``."""
    path = Path(to)
    if path.suffix.lower() not in FORMATS:
        raise ClipUnlearnError(f"--to {str(path)!r}: unknown output suffix {path.suffix or '(none)'!r}; write a "
                               ".parquet or a .csv file.")
    if path.is_dir():
        raise ClipUnlearnError(f"--to {str(path)!r} is a folder; name a .parquet or .csv file.")
    if path.exists() and not force:
        raise ClipUnlearnError(f"--to {str(path)!r} exists already. Choose another file, or pass --force to "
                               "replace it.")
    return path


def query(folder: str | os.PathLike[str], sql: str, to: str | os.PathLike[str] | None = None,
          force: bool = False) -> pd.DataFrame:
    """Run ``sql`` over the view of ``folder``'s runs (the table ``runs``); with ``to``, also write
    the answer there (.parquet or .csv, atomically: a temporary file beside it, then renamed)."""
    duckdb = _duckdb()
    path = None if to is None else check_output(to, force)
    view = runs_view(folder)
    con = duckdb.connect()
    try:
        con.register(TABLE, view)
        try:
            answer = con.sql(sql)
            df = None if answer is None else answer.df()
        except duckdb.Error as e:
            message = " ".join(str(e).split("\n")[0].split()).rstrip("!.")
            raise ClipUnlearnError(f"the SQL failed: {message}. The view is the table {TABLE!r} ({len(view.columns)} "
                                   f"columns); try \"SELECT * FROM {TABLE} LIMIT 5\" or \"DESCRIBE {TABLE}\" to see "
                                   "them (docs/benchmark.md, Query every run).") from None
        if answer is None or df is None:
            raise ClipUnlearnError("the SQL returned no table; ask with a SELECT (e.g. \"SELECT method, target_after "
                                   f"FROM {TABLE}\").")
        if path is not None:  # from the relation, not the frame: its column types (integers with nulls) are kept
            with atomic_path(path) as tmp:
                if path.suffix.lower() == ".parquet":
                    answer.write_parquet(str(tmp))
                else:
                    answer.write_csv(str(tmp), header=True)
        return df
    finally:
        con.close()


def format_answer(df: pd.DataFrame) -> str:
    """The answer as a plain-text table (figures to 4 significant digits), its row count last."""
    n = f"({len(df)} row{'' if len(df) == 1 else 's'})"
    if df.empty:
        return "  ".join(map(str, df.columns)) + "\n" + n
    df = df.copy()
    for column in df.columns:  # None (SQL's NULL) in a column of objects shown as "-", as NaN is
        if df[column].dtype == object:
            df[column] = df[column].where(df[column].notna(), "-")
    with pd.option_context("display.max_rows", None, "display.max_columns", None, "display.width", 10_000,
                           "display.max_colwidth", 80):
        text = df.to_string(index=False, na_rep="-", float_format=lambda v: f"{v:.4g}")
    return text + "\n" + n


__all__ = ["FORMATS", "TABLE", "check_output", "format_answer", "query"]
