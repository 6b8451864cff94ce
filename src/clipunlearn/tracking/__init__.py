"""Experiment tracking: ``--track tensorboard|mlflow[:URI]`` on forget, benchmark and zoo train.

A tracker logs what a run left behind, after the run is written: the run's settings (params), its
per-step trace (metrics by step), its figures before and after (final metrics), and its report and
plots (artifacts / text and images). A suite is one experiment (named after the suite) with one run
per cell; a zoo training logs its loss per epoch and its test top-1 per dataset. Tracking never
changes a run and never fails one: the libraries and the place to write are checked before the run
(a one-line error), and a failure while logging is one warning line.

Optional: ``pip install -e ".[tracking]"`` (mlflow-skinny with SQLAlchemy and Alembic, tensorboard).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ..memory import first_line
from .base import BACKENDS, INSTALL, Tracked, Tracker, TrackSpec, parse_track
from .records import from_run, from_zoo


def open_tracker(spec: TrackSpec, home: str | Path, experiment: str) -> Tracker:
    """The tracker ``spec`` asks for, checked (library installed, the folder or store named usable);
    ``home``: the folder its default store goes in (the run folder, the suite's folder); ``experiment``:
    the experiment its runs belong to (MLflow)."""
    if spec.backend == "mlflow":
        from .mlflow import MlflowTracker

        return MlflowTracker.open(spec.target, Path(home), experiment)
    from .tensorboard import TensorBoardTracker

    return TensorBoardTracker.open(spec.target, Path(home))


def open_trackers(values: Sequence[str], home: str | Path, experiment: str) -> list[Tracker]:
    """One tracker per ``--track`` value (none: an empty list), each checked before the run."""
    return [open_tracker(parse_track(v), home, experiment) for v in values]


def track(trackers: Sequence[Tracker], read: Callable[[], Tracked], warn: Callable[[str], None]) -> list[str]:
    """Log what ``read`` returns to every tracker; returns where it was logged. Never raises (but for
    an interrupt): a failure is one ``warn`` line, the run itself being complete and unchanged."""
    if not trackers:
        return []
    try:
        run = read()
    except Exception as e:  # noqa: BLE001 - tracking never fails a run
        warn(f"tracking: nothing logged, the run could not be read ({type(e).__name__}: {first_line(e)}); "
             "the run itself is complete.")
        return []
    logged = []
    for tracker in trackers:
        try:
            tracker.log(run)
            logged.append(tracker.where)
        except Exception as e:  # noqa: BLE001 - tracking never fails a run
            warn(f"tracking: could not log {run.name} to {tracker.where} ({type(e).__name__}: {first_line(e)}); "
                 "the run itself is complete.")
    return logged


__all__ = ["BACKENDS", "INSTALL", "TrackSpec", "Tracked", "Tracker", "from_run", "from_zoo", "open_tracker",
           "open_trackers", "parse_track", "track"]
