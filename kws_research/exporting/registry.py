"""The exported model as a version of an MLflow registered model, with ``champion`` moving
only on a measured improvement.

One registered model per task: ``kws-<dataset>-<8 hex of the label list>`` (same data
set name and classes, same model name), so an app build can pull
``models:/<name>@champion``. The version's source is the run's logged Keras model; the
Core ML files, verification and comparison are attached to it under ``coreml/``.

``champion`` moves to the new version only when it was trained on the same data
(dataset fingerprint) as the current champion and beats it on
``registry.champion_metric`` (validation accuracy by default: never the test split,
which the comparison reports). Otherwise the new version gets ``challenger``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from kws_research.errors import ConfigError
from kws_research.tracking.logged_model import log_keras_model, logged_model_id

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
VERSION_METRICS = (
    "best_val_accuracy",
    "test_accuracy",
    "command_accuracy",
    "coreml_test_accuracy",
    "coreml_max_abs_diff",
    "params",
    "macs",
    "macs_per_hop",
    "stream_hit_rate",
    "stream_fa_per_hour",
    "stream_fa_per_hour_upper95",
    "val_stream_fa_per_hour_upper95",
    "stream_miss_rate_at_1fah",
    "stream_latency_ms",
    "unseen_unknown_recall",
    "false_command_rate",
)


def registered_name(source) -> str:
    """``kws-<dataset>-<hash of the labels>``: the task a version solves."""
    dataset = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(source.tags.get("dataset") or "dataset"))
    labels = hashlib.sha1(json.dumps(list(source.labels)).encode()).hexdigest()[:8]
    return f"kws-{dataset}-{labels}"


def check_options(registry: dict) -> None:
    if not isinstance(registry["register"], bool):
        raise ConfigError("registry.register", f"{registry['register']!r} must be true or false")
    if not isinstance(registry.get("champion_metric") or "", str) or not registry.get("champion_metric"):
        raise ConfigError("registry.champion_metric", "must name a run metric, e.g. best_val_accuracy")


def _ensure_logged_model(client, source, example: np.ndarray) -> str:
    """The run's logged model; runs trained before logged models get theirs now."""
    model_id = logged_model_id(client, source.run_id)
    if model_id:
        return model_id

    log.info("run %s has no logged model (trained by an older version): logging it now", source.run_id)
    tags = {"dataset": str(source.tags.get("dataset")), "model": source.model_label}
    return log_keras_model(client, source.run_id, source.model(), example, tags)


def _version_for_run(client, name: str, run_id: str):
    versions = client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    return max(versions, key=lambda v: int(v.version), default=None)


def _better(new: float | None, old: float | None, greater_is_better: bool) -> bool:
    if new is None or math.isnan(new):
        return False
    if old is None or math.isnan(old):
        return True
    return new > old if greater_is_better else new < old


def _alias_decision(client, name: str, version, source, registry: dict) -> tuple[str, str]:
    """(alias, reason) for the new version: champion only on improvement on the same data."""
    from mlflow.exceptions import MlflowException

    metric = str(registry["champion_metric"])
    new_value = source.metrics.get(metric)
    try:
        champion = client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return CHAMPION, "first version of this task"
    if str(champion.version) == str(version.version):
        return CHAMPION, "already the champion"
    if champion.tags.get("dataset_fingerprint") != source.fingerprint:
        return CHALLENGER, f"trained on other data than champion v{champion.version} (dataset fingerprint differs)"
    old_value = client.get_run(champion.run_id).data.metrics.get(metric) if champion.run_id else None
    if new_value is None:
        return CHALLENGER, f"the run has no {metric} metric to compare with champion v{champion.version}"
    comparison = f"{metric} {new_value:.4f} vs {old_value if old_value is None else round(old_value, 4)}"
    if _better(new_value, old_value, bool(registry["greater_is_better"])):
        return CHAMPION, f"beats champion v{champion.version}: {comparison}"
    return CHALLENGER, f"does not beat champion v{champion.version}: {comparison}"


def register(
    client, source, registry: dict, files: list[Path], reports: list[Path], metrics: dict, table: str, example
) -> dict:
    """Register the exported run (Core ML files attached) and move the aliases; returns what it did."""
    from mlflow.exceptions import MlflowException

    name = str(registry.get("name") or registered_name(source))
    model_id = _ensure_logged_model(client, source, example)
    _attach(client, model_id, files + reports)

    try:
        client.get_registered_model(name)
    except MlflowException:
        client.create_registered_model(
            name,
            tags={"dataset": str(source.tags.get("dataset")), "labels": json.dumps(source.labels)},
            description=(
                f"Keyword spotting for {source.tags.get('dataset')}: classes {', '.join(source.labels)}. "
                f"Registered by kws-research export; alias `{CHAMPION}` is the best version by "
                f"{registry['champion_metric']} on the same data, `{CHALLENGER}` the latest that did not beat it."
            ),
        )
    version = _version_for_run(client, name, source.run_id)
    if version is None:
        version = client.create_model_version(
            name, source=f"models:/{model_id}", run_id=source.run_id, model_id=model_id, description=table
        )
    else:
        client.update_model_version(name, version.version, description=table)
    _link_version(client, model_id, name, str(version.version))
    tags = {
        "dataset_fingerprint": source.fingerprint,
        "model": source.model_label,
        "coreml_files": json.dumps([p.name for p in files]),
        **{k: f"{v:.6g}" for k, v in {**source.metrics, **metrics}.items() if k in VERSION_METRICS},
        "coreml_verified": "true",
    }
    for key, value in tags.items():
        client.set_model_version_tag(name, version.version, key, value)
    alias, reason = _alias_decision(client, name, version, source, registry)
    client.set_registered_model_alias(name, alias, version.version)
    log.info("registered %s version %s as @%s (%s)", name, version.version, alias, reason)
    return {
        "registered_model": name,
        "model_version": int(version.version),
        "alias": alias,
        "alias_reason": reason,
        "model_uri": f"models:/{name}/{version.version}",
        "logged_model_id": model_id,
    }


def registered_line(result: dict) -> str | None:
    """What export, the sweep and the sweep's description say about the registration."""
    if not result.get("model_uri"):
        return None
    return f"registered: {result['model_uri']} @{result['alias']} ({result['alias_reason']})"


def _link_version(client, model_id: str, name: str, version: str) -> None:
    """The logged model's ``mlflow.modelVersions`` tag, which the UI reads to show its
    registered versions (an MLflow server sets it itself; a sqlite store does not)."""
    from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

    entry = {"name": name, "version": version}
    listed = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    if entry not in listed:
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps(listed + [entry])})


def _attach(client, model_id: str, paths: list[Path]) -> None:
    """The Core ML files and reports as the logged model's ``coreml/`` folder, replacing an
    earlier export's whole (a re-export without a streaming model keeps no streaming file)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    if client.list_logged_model_artifacts(model_id, "coreml"):
        location = client.get_logged_model(model_id).artifact_location
        try:
            get_artifact_repository(location).delete_artifacts("coreml")
        except (NotImplementedError, OSError) as exc:
            log.warning("logged model %s: could not remove its old coreml/ files (%s)", model_id, exc)
    with tempfile.TemporaryDirectory(prefix="kws-register-") as tmp:
        for path in paths:
            target = Path(tmp) / path.name
            if path.is_dir():
                shutil.copytree(path, target)
            else:
                shutil.copy2(path, target)
        client.log_model_artifacts(model_id, tmp, "coreml")
