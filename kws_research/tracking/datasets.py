"""The data a run used, as an MLflow dataset input (the UI's Dataset column).

Name, digest and source identify it: digest is the data set's fingerprint (its
first 36 characters, MLflow's column width; the whole one is in the profile),
source the data root. The profile holds the split sizes, so two runs' data can
be told apart on the run page without opening an artifact.
"""

from __future__ import annotations

import json

from kws_research.contract import CLIP_SAMPLES, NORMALISATION

DIGEST_LENGTH = 36  # MLflow's datasets.digest column is VARCHAR(36)


def dataset_entity(data):
    """The MLflow ``Dataset`` of a :class:`~kws_research.data.dataset.PreparedData`."""
    from mlflow.entities import Dataset

    summary = data.summary
    profile = {
        "fingerprint": data.fingerprint,
        "test_fingerprint": data.test_fingerprint,
        "classes": list(data.classes),
        "splits": dict(summary.get("totals", {})),
        "n_skipped": summary.get("n_skipped", 0),
    }
    return Dataset(
        name=data.name,
        digest=data.fingerprint[:DIGEST_LENGTH],
        source_type="local",
        source=json.dumps({"uri": str(summary.get("root", ""))}),
        schema=json.dumps({"audio": f"float32 (-1, {CLIP_SAMPLES}), {NORMALISATION}", "labels": list(data.classes)}),
        profile=json.dumps(profile),
    )


def log_dataset_input(client, run_id: str, data, context: str = "training") -> None:
    """Link ``data`` to the run with MLflow's ``mlflow.data.context`` tag."""
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    dataset_input = DatasetInput(dataset_entity(data), tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])
    client.log_inputs(run_id, datasets=[dataset_input])
