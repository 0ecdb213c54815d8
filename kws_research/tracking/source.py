"""Reading a finished run (found by tracking.lookup): fetching its model, labels, config
and data."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kws_research.data.dataset import prepare
from kws_research.errors import KwsError
from kws_research.models import load_model
from kws_research.models.gate import calibrated_rule
from kws_research.tracking.lookup import get_run


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
