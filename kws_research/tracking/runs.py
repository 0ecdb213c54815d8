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

log = logging.getLogger(__name__)

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
MAX_PARAM_LENGTH = 6000


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
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_ROOT, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=PACKAGE_ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}".strip()
    return text[:4900]


@contextlib.contextmanager
def tracked_run(client, experiment_id: str, run_name: str | None, tags: Mapping[str, str],
                parent_run_id: str | None = None) -> Iterator[str]:
    """Create a run, yield its id, and always terminate it with the right status."""
    from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

    all_tags = {k: str(v) for k, v in tags.items()}
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


@contextlib.contextmanager
def artifact_dir() -> Iterator[Path]:
    """A scratch folder whose content is logged with ``client.log_artifacts``."""
    with tempfile.TemporaryDirectory(prefix="kws-artifacts-") as tmp:
        yield Path(tmp)
