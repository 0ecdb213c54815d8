"""One MLflow run with a guaranteed end state.

A run that raises ends FAILED, an interrupted one (Ctrl-C, SIGTERM) KILLED, both
with the error in the ``error`` tag; no run is ever left RUNNING by this process.
"""

from __future__ import annotations

import contextlib
import json
import logging
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from kws_research.errors import KwsError, one_line
from kws_research.paths import PACKAGE_DIR
from kws_research.processes import current_owner, owner_is_dead

log = logging.getLogger(__name__)

MAX_PARAM_LENGTH = 6000
OWNER_TAG = "kws.owner"  # host:pid of the process that runs it


def flatten(config: Mapping, prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"a.b.c": "value"}`` for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            text = json.dumps(value) if isinstance(value, (list, tuple, bool)) or value is None else str(value)
            flat[name] = text[:MAX_PARAM_LENGTH]
    return flat


def git_commit() -> str:
    """Commit of the harness code (``+dirty`` when it has uncommitted changes)."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR.parent, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=PACKAGE_DIR.parent,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def error_text(exc: BaseException) -> str:
    """The ``error`` tag: MLflow keeps 5,000 characters of a tag, so the start and the end."""
    return one_line(exc, limit=4900)


@contextlib.contextmanager
def tracked_run(
    client, experiment_id: str, run_name: str | None, tags: Mapping[str, str], parent_run_id: str | None = None
) -> Iterator[str]:
    """Create a run, yield its id, and always terminate it with the right status."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    all_tags = {k: str(v) for k, v in tags.items()}
    all_tags[OWNER_TAG] = current_owner()
    if parent_run_id:
        all_tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
    run = client.create_run(experiment_id, tags=all_tags, run_name=run_name)
    run_id = run.info.run_id
    try:
        yield run_id
    except KeyboardInterrupt as exc:
        client.set_tag(run_id, "error", error_text(exc) if str(exc) else "interrupted")
        client.set_terminated(run_id, "KILLED")
        raise
    except BaseException as exc:
        with contextlib.suppress(Exception):
            client.set_tag(run_id, "error", error_text(exc))
        client.set_terminated(run_id, "FAILED")
        raise
    else:
        client.set_terminated(run_id, "FINISHED")


def end_dead_runs(client) -> list[str]:
    """Runs left RUNNING by a process of this host that no longer exists (SIGKILL, power
    loss) end KILLED, with the reason; every stage calls this when it opens the store."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    if not experiments:
        return []
    ended = []
    for run in client.search_runs(experiments, "attributes.status = 'RUNNING'", max_results=1000):
        owner = run.data.tags.get(OWNER_TAG)
        if owner_is_dead(owner):
            client.set_tag(run.info.run_id, "error", f"its process {owner} died before the run ended")
            client.set_terminated(run.info.run_id, "KILLED")
            ended.append(run.info.run_id)
    if ended:
        log.info("marked %d run(s) of dead processes KILLED: %s", len(ended), ", ".join(ended))
    return ended


def log_metrics(client, run_id: str, metrics: Mapping[str, float], step: int = 0) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, step) for k, v in metrics.items() if v is not None]
    for start in range(0, len(batch), 500):
        client.log_batch(run_id, metrics=batch[start : start + 500])


def log_params(client, run_id: str, params: Mapping[str, str]) -> None:
    from mlflow.entities import Param

    items = [Param(k, v) for k, v in params.items()]
    for start in range(0, len(items), 100):
        client.log_batch(run_id, params=items[start : start + 100])


def log_artifacts(client, run_id: str, local: Path | str, artifact_path: str | None = None) -> None:
    """Log a file or a folder's content; a store that cannot take it (full, read-only)
    becomes one line naming where the artifacts go and how to move them."""
    local = Path(local)
    try:
        if local.is_dir():
            client.log_artifacts(run_id, str(local), artifact_path)
        else:
            client.log_artifact(run_id, str(local), artifact_path)
    except OSError as exc:
        where = client.get_run(run_id).info.artifact_uri
        if local.is_dir():  # a folder logged at the root: each of its entries, never the root itself
            written = [artifact_path] if artifact_path else [p.name for p in local.iterdir()]
        else:
            written = [f"{artifact_path}/{local.name}" if artifact_path else local.name]
        for path in written:
            _discard_artifacts(client, run_id, path)  # no half-written file stays in the store
        remedy = "fix its permissions" if isinstance(exc, PermissionError) else "free space there"
        raise KwsError(
            f"tracking.artifact_location: cannot write the artifacts of run {run_id} to {where} "
            f"({exc.strerror or exc}); {remedy}, or set tracking.artifact_location=<folder> together "
            "with a new tracking.experiment=<name> (an experiment keeps the artifact folder it was created with)"
        ) from exc


def _repository(client, run_id: str):
    """The artifact repository of a run (local folder, server, object store)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(client.get_run(run_id).info.artifact_uri)


def _discard_artifacts(client, run_id: str, artifact_path: str) -> None:
    """Best effort: what a failed upload wrote under ``artifact_path`` (a full disk may refuse this too)."""
    try:
        _repository(client, run_id).delete_artifacts(artifact_path)
    except Exception as exc:  # the store is failing already; the error that matters is raised by the caller
        log.debug("could not remove the partial artifacts %s of run %s: %s", artifact_path, run_id, exc)


def remove_artifacts(client, run_id: str, artifact_path: str) -> None:
    """Remove a folder of the run's artifacts the harness logged, so that what is logged
    next replaces it as a whole (a re-export without a streaming model must not keep the
    last export's streaming files). A store that cannot delete says so in a warning."""
    if not client.list_artifacts(run_id, artifact_path):
        return
    try:
        _repository(client, run_id).delete_artifacts(artifact_path)
    except (NotImplementedError, OSError) as exc:
        log.warning(
            "run %s: could not remove its old %s/ artifacts (%s); they stay beside the new ones",
            run_id,
            artifact_path,
            exc,
        )


@contextlib.contextmanager
def artifact_dir() -> Iterator[Path]:
    """A scratch folder whose content is logged with ``client.log_artifacts``."""
    with tempfile.TemporaryDirectory(prefix="kws-artifacts-") as tmp:
        yield Path(tmp)
