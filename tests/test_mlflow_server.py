"""A real MLflow tracking server on 127.0.0.1: train into it over HTTP, read back over REST."""

from __future__ import annotations

import json
import urllib.request
from urllib.parse import urlencode

import pytest
from helpers import servers
from helpers.data import tiny_overrides

from kws_research.config import compose
from kws_research.train import train


@pytest.fixture
def mlflow_server(tmp_path):
    with servers.mlflow_server(f"sqlite:///{tmp_path}/server.db", tmp_path / "server-artifacts") as url:
        yield url


def get_json(url: str, path: str, **query) -> dict:
    with urllib.request.urlopen(f"{url}{path}?{urlencode(query)}", timeout=30) as response:
        return json.loads(response.read())


@pytest.mark.slow  # a real MLflow server
def test_training_into_a_tracking_server_is_readable_over_rest(mlflow_server, tone_root, tmp_path):
    overrides = tiny_overrides(tone_root, tmp_path, "trainer.epochs=1") + [f"tracking.uri={mlflow_server}"]
    result = train(compose("train", overrides))
    run = get_json(mlflow_server, "/api/2.0/mlflow/runs/get", run_id=result.run_id)["run"]
    assert run["info"]["status"] == "FINISHED"
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert tags["role"] == "train" and tags["model"] == "seed_cnn1d"
    metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
    assert metrics["test_accuracy"] == pytest.approx(result.metrics["test_accuracy"])
    history = get_json(
        mlflow_server, "/api/2.0/mlflow/metrics/get-history", run_id=result.run_id, metric_key="val_accuracy"
    )["metrics"]
    assert [m["step"] for m in history] == [0]
    with urllib.request.urlopen(
        f"{mlflow_server}/get-artifact?" + urlencode({"path": "labels.json", "run_uuid": result.run_id}), timeout=30
    ) as r:
        assert json.loads(r.read()) == ["silence", "unknown", "yes", "no", "up"]
    assert (tmp_path / "server-artifacts").is_dir()  # the server stored the artifacts, not the client


def test_remote_stores_are_not_mistaken_for_the_file_store():
    from kws_research.errors import KwsError
    from kws_research.tracking.store import check_reachable, is_remote

    for uri in ("databricks", "databricks://my-profile"):
        assert is_remote(uri)
        check_reachable(uri)  # MLflow resolves Databricks credentials itself
    for uri in ("file:///tmp/mlruns", "mlruns"):
        with pytest.raises(KwsError, match="deprecated file store"):
            check_reachable(uri)
