"""The MLflow tracker: each tracked run an MLflow run of one experiment, through ``MlflowClient``
(no global MLflow state is touched).

Where: ``--track mlflow`` keeps a SQLite store beside the run (``HOME/mlflow/mlflow.db``, artifacts in
``HOME/mlflow/artifacts``; HOME: the run folder, the suite's folder, the weights file's folder);
``mlflow:DIR`` the same in DIR; ``mlflow:URI`` (``sqlite:///path.db``, ``http://host:5000``,
``file:/path/mlruns``, ...) is MLflow's own tracking URI, used as given. The SQLite store needs
SQLAlchemy and Alembic, which the ``tracking`` extra installs beside ``mlflow-skinny``.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ..errors import ClipUnlearnError
from ..memory import first_line
from .base import Tracked, has_scheme, require, writable_folder

#: MLflow's limits of one log_batch call
PARAMS_PER_BATCH, METRICS_PER_BATCH = 100, 1000


@contextmanager
def _quiet() -> Iterator[None]:
    """MLflow's and Alembic's INFO lines (creating a store's tables) kept off the console."""
    loggers = [logging.getLogger(n) for n in ("mlflow", "alembic")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _sqlite(folder: Path) -> tuple[str, str]:
    """The URI of a SQLite store in ``folder`` and the URI of the artifact folder beside it."""
    folder = folder.resolve()
    return f"sqlite:///{folder / 'mlflow.db'}", (folder / "artifacts").as_uri()


class MlflowTracker:
    """Logs each run into ``experiment`` of the store at ``uri`` (created with its artifacts in
    ``artifacts`` when it does not exist yet; None: MLflow's default for the store)."""

    def __init__(self, uri: str, experiment: str, artifacts: str | None = None) -> None:
        self.uri, self.experiment, self.artifacts = uri, experiment, artifacts
        self._client: Any = None

    @property
    def where(self) -> str:
        return self.uri

    @classmethod
    def open(cls, target: str | None, home: Path, experiment: str) -> MlflowTracker:
        """The tracker for ``--track mlflow[:target]``, checked before the run: MLflow (and, for a
        SQLite store, SQLAlchemy and Alembic) installed, and a store named by the user opened (a
        folder that cannot be written, or a store MLflow refuses, fails here in one line)."""
        flag = "mlflow" + (f":{target}" if target else "")
        require("mlflow", flag)
        if target is None:
            uri, artifacts = _sqlite(home / "mlflow")
        elif not has_scheme(target):
            uri, artifacts = _sqlite(writable_folder(Path(target), flag))
        else:
            uri, artifacts = target, None
            if target.startswith("sqlite:///"):  # sqlite:///relative.db, sqlite:////absolute.db
                db = Path(target[len("sqlite:///"):])
                artifacts = (writable_folder(db.parent, flag).resolve() / "artifacts").as_uri()
            elif target.startswith("file:") and urlparse(target).path:
                writable_folder(Path(urlparse(target).path), flag)
        if uri.startswith("sqlite:"):
            for package in ("sqlalchemy", "alembic"):
                require(package, flag)
        tracker = cls(uri, experiment, artifacts)
        if target is not None:  # the user's store: opened now, so that a refusal comes before the run
            tracker.client()
        return tracker

    def client(self) -> Any:
        if self._client is None:
            from mlflow.tracking import MlflowClient

            try:
                with _quiet():
                    self._client = MlflowClient(tracking_uri=self.uri)
            except Exception as e:  # noqa: BLE001 - MLflow's own reasons, said in one line
                hint = (" Use a SQLite store (--track mlflow:DIR or mlflow:sqlite:///PATH.db), or set "
                        "MLFLOW_ALLOW_FILE_STORE=true." if self.uri.startswith("file:") else "")
                raise ClipUnlearnError(f"--track mlflow:{self.uri}: MLflow cannot open this store "
                                       f"({first_line(e).split('. ')[0]}).{hint}") from None
        return self._client

    def _experiment_id(self) -> str:
        client = self.client()
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return found.experiment_id
        return client.create_experiment(self.experiment, artifact_location=self.artifacts)

    def log(self, run: Tracked) -> None:
        from mlflow.entities import Metric, Param

        with _quiet():
            client = self.client()
            run_id = client.create_run(self._experiment_id(), run_name=run.name).info.run_id
            try:
                now = int(time.time() * 1000)
                params = [Param(k, v) for k, v in run.params.items()]
                metrics = [Metric(k, v, now, step) for k, points in run.steps.items() for step, v in points]
                metrics += [Metric(k, v, now, 0) for k, v in run.final.items()]
                for i in range(0, len(params), PARAMS_PER_BATCH):
                    client.log_batch(run_id, params=params[i:i + PARAMS_PER_BATCH])
                for i in range(0, len(metrics), METRICS_PER_BATCH):
                    client.log_batch(run_id, metrics=metrics[i:i + METRICS_PER_BATCH])
                for path, folder in run.files:
                    client.log_artifact(run_id, str(path), folder or None)
            except BaseException:
                client.set_terminated(run_id, "FAILED")
                raise
            client.set_terminated(run_id, "FINISHED")
