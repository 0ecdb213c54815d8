"""Which MLflow store to use and where artifacts go.

Default: ``sqlite:///mlruns.db`` in the working directory with artifacts
under ``./mlartifacts`` (never the deprecated file store). ``MLFLOW_TRACKING_URI``
or ``tracking.uri`` select another store, e.g. an ``http://`` tracking server,
which then decides the artifact location itself.
"""

from __future__ import annotations

import logging
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from kws_research import databases
from kws_research.errors import KwsError
from kws_research.paths import existing_folder, write_probe
from kws_research.tracking.runs import end_dead_runs

log = logging.getLogger(__name__)

DEFAULT_URI = "sqlite:///mlruns.db"
# MLflow 3 opens an experiment in the view its kind names; without it the UI guesses GenAI.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"


def _quiet_mlflow() -> None:
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("alembic").setLevel(logging.WARNING)


REMOTE_SCHEMES = ("http://", "https://", "databricks")


def is_remote(uri: str) -> bool:
    return uri.startswith(REMOTE_SCHEMES)


def check_reachable(uri: str) -> None:
    """Fail fast with one line instead of MLflow's minutes of retries."""
    if uri.startswith("databricks"):
        return  # ``databricks`` or ``databricks://<profile>``: MLflow resolves and reports it
    if uri.startswith(("http://", "https://")):
        try:
            with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5) as response:
                response.read()
        except (urllib.error.URLError, OSError) as exc:
            raise KwsError(
                f"tracking.uri: MLflow server {uri} is not reachable ({getattr(exc, 'reason', exc)}); "
                "start it (make ui) or set tracking.uri / MLFLOW_TRACKING_URI to a reachable store"
            ) from exc
    elif uri.startswith("sqlite:///"):
        path = Path(uri[len("sqlite:///") :])
        databases.check_sqlite_file(path, uri, "tracking.uri")
    elif uri.startswith("file:") or ("://" not in uri and ("/" in uri or uri == "mlruns" or Path(uri).is_dir())):
        raise KwsError(
            f"tracking.uri: {uri} is MLflow's deprecated file store; use sqlite:///mlruns.db or an http:// server"
        )
    elif "://" not in uri:
        raise KwsError(
            f"tracking.uri: {uri!r} is not a store URL (MLflow would take it for a folder of its deprecated "
            "file store); use sqlite:///mlruns.db, an http:// server or a database URL such as "
            "postgresql+psycopg2://user@host/db"
        )
    else:
        databases.check_server(uri, "tracking.uri")


def resolve_uri(tracking: Mapping) -> str:
    return databases.database_url(str(tracking.get("uri") or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI))


def client_for(tracking: Mapping):
    """An ``MlflowClient`` on the configured store, checked to be reachable."""
    _quiet_mlflow()
    import mlflow
    from mlflow.tracking import MlflowClient

    uri = resolve_uri(tracking)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    try:  # the first use of the store: MLflow creates or upgrades its tables here
        if uri.startswith("sqlite:///"):
            create_whole(Path(uri[len("sqlite:///") :]))
        client = MlflowClient(tracking_uri=uri)
        end_dead_runs(client)
    except Exception as exc:  # SQLAlchemy's or MLflow's, whichever layer saw the full disk first
        if not any(s in str(exc) for s in FULL_STORE):
            raise
        where = Path(uri[len("sqlite:///") :]).resolve().parent if uri.startswith("sqlite:///") else uri
        raise KwsError(
            f"tracking.uri: the store {uri} cannot be written (database or disk is full); free space in {where} "
            "or set tracking.uri to a store with space"
        ) from None
    return client


def create_whole(path: Path) -> None:
    """A new sqlite store is made beside its place and linked in only with all of MLflow's
    tables: a disk that fills while the tables are made must not leave a half-migrated store
    that no later run can open. An existing store (or one a parallel process just made)
    is left as it is."""
    from mlflow.tracking import MlflowClient

    if path.exists():
        return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        made = MlflowClient(tracking_uri=f"sqlite:///{temporary}")
        made.search_experiments(max_results=1)  # MLflow makes its tables on first use
        store = getattr(getattr(made, "_tracking_client", None), "store", None)
        if hasattr(store, "engine"):
            store.engine.dispose()  # no connection left on the file after it moves
        try:
            os.link(temporary, path)  # never replaces a store a parallel process linked first
        except FileExistsError:
            pass
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + "-journal")):
            leftover.unlink(missing_ok=True)


# What SQLite and the file system say when the store's disk is full.
FULL_STORE = ("database or disk is full", "No space left on device")


def check_artifact_folder(location: str | None) -> None:
    """A local artifact folder must take files before any work (it was found out only when
    the trained model was logged): the folder, or the first of its parents that exists."""
    if not location or not location.startswith("file:"):
        return
    from urllib.parse import unquote, urlparse

    folder = Path(unquote(urlparse(location).path))
    existing = existing_folder(folder)
    try:
        write_probe(existing)
    except OSError as exc:
        raise KwsError(
            f"tracking.artifact_location: {existing} is not writable ({exc.strerror or exc}), so runs could not "
            f"keep their artifacts in {folder}; fix its permissions, or set tracking.artifact_location=<folder> "
            "together with a new tracking.experiment=<name> (an experiment keeps the folder it was created with)"
        ) from None


def experiment_id(client, tracking: Mapping, name: str) -> str:
    """Get or create experiment ``name`` (artifacts under ``tracking.artifact_location``),
    marked as model training for MLflow's UI."""
    from mlflow.exceptions import MlflowException

    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        if experiment.lifecycle_stage == "deleted":
            client.restore_experiment(experiment.experiment_id)
        if EXPERIMENT_KIND_TAG not in experiment.tags:  # created before the harness set it
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
        check_artifact_folder(experiment.artifact_location)
        return experiment.experiment_id
    location = None
    if not is_remote(client.tracking_uri):
        root = Path(str(tracking.get("artifact_location") or "mlartifacts")).expanduser().resolve()
        location = (root / name).as_uri()
        check_artifact_folder(location)
    try:
        return client.create_experiment(name, artifact_location=location, tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    except MlflowException:  # created by a parallel worker in the meantime
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id
