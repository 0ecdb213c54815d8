"""Reading a finished run: finding it (a run id, the latest sweep's best trial, a
registered model version) and fetching its model, labels, config and data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kws_research.data.dataset import prepare
from kws_research.errors import KwsError
from kws_research.models import load_model
from kws_research.models.gate import calibrated_rule


@dataclass
class SourceRun:
    run_id: str
    experiment_id: str
    config: dict
    labels: list[str]
    model_path: Path
    metrics: dict
    tags: dict
    report: dict | None
    streaming: dict | None = None  # streaming/streaming.json: the run's latest streaming evaluation
    artifact_uri: str = ""  # where the run's artifacts live in the store

    def model(self):
        """The run's Keras model. A damaged artifact (e.g. cut short by a full disk) is named
        by the run and its place in the store, not by the temporary folder it was downloaded
        to, which is gone when the stage ends."""
        try:
            return load_model(self.model_path)
        except KwsError as exc:
            named = str(exc).replace(
                str(self.model_path), f"run {self.run_id}'s model/model.keras ({self.artifact_uri})"
            )
            raise KwsError(f"{named}; restore the artifact or train the run again") from None

    @property
    def fingerprint(self) -> str:
        return self.tags.get("dataset_fingerprint", "")

    @property
    def model_label(self) -> str:
        return self.tags.get("model", "model")


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> (name, alias, version)."""
    body = uri[len("models:/") :]
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, alias, None
    name, _, version = body.rpartition("/")
    if not name or not version.isdigit():
        raise KwsError(f"run_id: {uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    return name, None, version


def run_of_model_uri(client, uri: str) -> str:
    """The training run behind a registered model version (what ``run_id=models:/...`` exports)."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(uri)
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise KwsError(
            f"run_id: no registered model version {uri} in {client.tracking_uri}; list them in the MLflow UI "
            "(Models) or export a run first"
        ) from exc
    if not found.run_id:
        raise KwsError(f"run_id: registered model version {uri} has no source run; export a run id instead")
    return found.run_id


def latest_sweep(client, sweep: str | None):
    """The most recent sweep parent run (of study ``sweep`` if given) that reached a
    verdict: a best run, or the finding that no trial met its constraints."""
    query = "tags.role = 'sweep'"
    if sweep:
        query += f" and tags.`optuna.study` = '{sweep}'"
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=50)
    return next(
        (r for r in runs if r.data.tags.get("best_run_id") or r.data.tags.get("constraints_met") == "false"), None
    )


def resolve_run_id(client, run_id: str, sweep: str | None) -> str:
    """A run id, ``best`` (the latest sweep's best trial) or a registered model version
    (``models:/<name>@<alias>``, ``models:/<name>/<version>``) -> the run id."""
    if str(run_id).startswith("models:/"):
        return run_of_model_uri(client, str(run_id))
    if str(run_id) != "best":
        return str(run_id)
    parent = latest_sweep(client, sweep)
    which = f" of study {sweep!r}" if sweep else ""
    if parent is None:
        raise KwsError(
            f"run_id=best: no finished sweep{which} with a best trial in {client.tracking_uri}; "
            "run `make sweep` first or pass run_id=<MLflow run id>"
        )
    if not parent.data.tags.get("best_run_id"):
        closest = parent.data.tags.get("closest_run_id", "?")
        raise KwsError(
            f"run_id=best: no trial of the latest sweep{which} (run {parent.info.run_id}) met its metric "
            f"constraints, so it has no best run; the closest is run {closest}: export it with "
            f"run_id={closest} if you accept that, or relax the constraints and rerun the sweep"
        )
    return parent.data.tags["best_run_id"]


def get_run(client, run_id: str, key: str = "run_id"):
    """The run, or one line naming ``key`` (the option that named it)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise KwsError(
            f"{key}: no MLflow run {run_id!r} in {client.tracking_uri}; find run ids with "
            "`make ui` or the last line of `train`/`sweep`"
        ) from exc
    if run.info.lifecycle_stage == "deleted":
        raise KwsError(
            f"run_id: run {run_id} is deleted (in MLflow's trash); restore it first "
            f"(`mlflow runs restore --run-id {run_id}` with MLFLOW_TRACKING_URI={client.tracking_uri}) "
            "or pass another run"
        )
    return run


def fetch(client, run_id: str, folder: Path) -> SourceRun:
    """Download the run's model, labels, config and report into ``folder``."""
    from mlflow.exceptions import MlflowException

    run = get_run(client, run_id)
    names = {a.path for a in client.list_artifacts(run_id)} | {a.path for a in client.list_artifacts(run_id, "model")}
    if "model/model.keras" not in names:
        state = run.data.tags.get("optuna.state") or run.info.status
        if state in ("FINISHED", "COMPLETE"):
            raise KwsError(
                f"run {run_id} finished, but its model/model.keras artifact is missing from "
                f"{run.info.artifact_uri} (deleted or moved?); restore the artifact folder, or train the run again"
            )
        raise KwsError(
            f"run {run_id} has no model/model.keras artifact (run state {state}: pruned, failed or "
            "still running runs keep no model); export a finished training run"
        )
    try:
        local = Path(client.download_artifacts(run_id, "", str(folder)))
    except MlflowException as exc:
        raise KwsError(f"run {run_id}: cannot download its artifacts ({exc})") from exc
    import yaml

    report_path = local / "classification_report.json"
    streaming_path = local / "streaming" / "streaming.json"
    return SourceRun(
        run_id=run_id,
        experiment_id=run.info.experiment_id,
        config=yaml.safe_load((local / "config.yaml").read_text()),
        labels=json.loads((local / "labels.json").read_text()),
        model_path=local / "model" / "model.keras",
        metrics=dict(run.data.metrics),
        tags=dict(run.data.tags),
        report=json.loads(report_path.read_text()) if report_path.exists() else None,
        streaming=json.loads(streaming_path.read_text()) if streaming_path.exists() else None,
        artifact_uri=run.info.artifact_uri,
    )


def source_data(source: SourceRun, stage: str = "export"):
    """The run's data set, prepared here and checked to be the one it was trained on."""
    try:
        data = prepare(source.config["dataset"])
    except KwsError as exc:
        raise KwsError(
            f"the data set of run {source.run_id} is not available here ({exc}); {stage} needs its "
            "validation and test splits, run it where the data is (or from the folder the run was trained in)"
        ) from exc
    if data.fingerprint != source.fingerprint:
        raise KwsError(
            f"the data under {data.summary.get('root')} changed since run {source.run_id} was trained "
            f"(fingerprint {data.fingerprint[:12]} != {source.fingerprint[:12]}); restore it to {stage}"
        )
    return data


def open_set_rule(source: SourceRun, cfg) -> tuple[str, float] | None:
    """The open-set rule the run calibrated (``openset.gate``), to fold in unless ``gate=off``."""
    if cfg["gate"] != "auto":
        return None
    return calibrated_rule(source.metrics)
