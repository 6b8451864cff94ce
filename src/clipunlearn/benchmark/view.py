"""What a suite's report shows, computed once (``report.build_view``) and read by every renderer: the
markdown page and its matplotlib plots (``report.py``) and the HTML page (``html_report.py``). A
renderer formats these figures; it never computes one of its own."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..runs.results import RunResults


def format_figure(column: str, value: float) -> str:
    """A figure as every page prints it: counts of attacks whole, the Score and the count of images
    turned wrong to 0.1, the rest to 0.001."""
    if column in ("audit attacks recovered", "audit attacks"):
        return f"{value:.1f}".removesuffix(".0")
    return f"{value:.1f}" if column in ("turned wrong", "Score") else f"{value:.3f}"


@dataclass(frozen=True)
class Point:
    """One cell of a trade-off plot: what the target keeps (x) against the worst-kept other dataset (y)."""

    run_id: str
    method: str
    dataset: str
    classes: str
    seed: int
    group: str  # the table row (plotted as a mean) the cell is averaged into
    x: float
    y: float


@dataclass(frozen=True)
class Mean:
    """One row of a bar table as a point: the means of its cells."""

    group: str
    x: float
    y: float
    runs: int


@dataclass(frozen=True)
class Tradeoff:
    """A bar table's trade-off plot: its rows' means, their cells, and the region the bar asks for."""

    name: str
    title: str
    file: str  # the PNG, relative to the report
    x_label: str
    y_label: str
    x_column: str
    y_column: str
    means: tuple[Mean, ...]
    points: tuple[Point, ...]
    region: tuple[float, float] | None  # (largest target AF/BF, smallest other datasets AF/BF) the bar accepts
    x_range: tuple[float, float]
    y_range: tuple[float, float]


@dataclass(frozen=True)
class BarGroup:
    model: str
    method: str
    values: tuple[float | None, ...]  # one per column of the plot
    runs: int


@dataclass(frozen=True)
class Bars:
    """A bar plot of per-method means (one bar per column)."""

    file: str
    title: str
    alt: str
    y_label: str
    columns: tuple[str, ...]
    groups: tuple[BarGroup, ...]


@dataclass(frozen=True)
class Series:
    label: str
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class Band:
    """A range drawn behind a line plot's series: its lowest and highest value at each x."""

    label: str
    low: tuple[float, ...]
    high: tuple[float, ...]


@dataclass(frozen=True)
class Panel:
    """One panel of a line plot: a series per method over the same ks, the mean before forgetting (dashed;
    empty: none) and bands behind them (e.g. the original's and the oracle's relearning curves)."""

    title: str
    ks: tuple[int, ...]
    series: tuple[Series, ...]
    before: tuple[float | None, ...]
    x_label: str = "k"
    y_label: str = "precision@k"
    bands: tuple[Band, ...] = ()


@dataclass(frozen=True)
class Lines:
    file: str
    alt: str
    panels: tuple[Panel, ...]


@dataclass
class Section:
    """One table of the report with what is said around it (markdown lines) and its trade-off plot."""

    name: str
    title: str
    table: pd.DataFrame
    caption: list[str]
    notes: list[str]
    tradeoff: Tradeoff | None = None


@dataclass
class Cell:
    """One finished run: its folder, its results and its audit where it was audited."""

    run_id: str
    folder: Path
    results: RunResults
    audit_folder: Path | None = None
    audit: dict[str, Any] | None = None


@dataclass
class View:
    """A suite folder's report: every table, line and plot, before any is rendered."""

    title: str
    intro: list[str]
    sections: list[Section]
    waiting: list[str]
    plots: list[Bars | Lines]
    runs: pd.DataFrame  # one row per run (``report.frame``, with the audits' figures)
    cells: list[Cell]
    root: Path
    dest: Path
