"""MLflow as its users know it: logged models that load in a fresh process, datasets as run
inputs, the model-training experiment view, and the registry with a ``champion`` that moves
only on improvement. Real MLflow (sqlite store), real training, real Core ML conversion."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile

import h5py
import numpy as np
import pytest
from helpers.data import tiny_overrides
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.contract import to_float
from kws_research.data.dataset import prepare
from kws_research.exporting.registry import VERSION_METRICS
from kws_research.exporting.stage import export_run
from kws_research.models import load_model
from kws_research.streaming.settings import STREAM_METRICS
from kws_research.train import train
from kws_research.training.validation import (
    OPEN_SET_METRICS,
    STREAMING_MODEL_METRICS,
    TEST_METRICS,
    TRAINING_METRICS,
)

same_worker = pytest.mark.xdist_group("mlflow_models")

FRESH_LOAD = """
import json, sys
import numpy as np
import mlflow
uri, model_id, clips = sys.argv[1:]
mlflow.set_tracking_uri(uri)
audio = np.load(clips)
pyfunc = mlflow.pyfunc.load_model(f"models:/{model_id}")  # no kws_research import: its loader registers
out = {"pyfunc": np.asarray(pyfunc.predict(audio)).tolist()}
import kws_research.models  # what mlflow.keras.load_model needs, as model/model.keras does
keras_model = mlflow.keras.load_model(f"models:/{model_id}")
out["keras"] = keras_model.predict(audio, verbose=0).tolist()
out["loaded_before_keras"] = "kws_research" in sys.modules
print(json.dumps(out))
"""


@pytest.fixture(scope="module")
def runs(tone_root, tmp_path_factory):
    """A trained tc_resnet and a poor one (mixed float16, a learning rate too small to learn)."""
    folder = tmp_path_factory.mktemp("registry")
    good = train(compose("train", tiny_overrides(tone_root, folder, "model=tc_resnet", "trainer.epochs=3")))
    poor = train(
        compose(
            "train",
            tiny_overrides(
                tone_root,
                folder,
                "model=tc_resnet",
                "trainer.epochs=1",
                "trainer.precision=mixed_float16",
                "optimizer.learning_rate=1e-7",
            ),
        )
    )
    return folder, good, poor


def client_of(folder) -> MlflowClient:
    return MlflowClient(f"sqlite:///{folder}/mlruns.db")


@pytest.mark.slow  # two training runs; make test runs it, make test-fast does not
@same_worker
def test_a_run_logs_its_model_data_device_and_description(runs, tone_root):
    folder, good, _ = runs
    client = client_of(folder)
    run = client.get_run(good.run_id)
    tags = run.data.tags
    assert tags["device"].startswith(("CPU: ", "GPU: ")) and len(tags["device"]) > 5
    assert tags["precision"] == "float32"
    assert "best validation accuracy" in tags["mlflow.note.content"]
    assert tags["logged_model_id"] in tags["mlflow.note.content"]
    experiment = client.get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"

    data = prepare(OmegaConf.to_container(compose("train", tiny_overrides(tone_root, folder)).dataset))
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert dataset.name == "speech_commands" and dataset.digest == data.fingerprint[:36]
    assert json.loads(dataset.source)["uri"] == str(tone_root)
    profile = json.loads(dataset.profile)
    assert profile["fingerprint"] == data.fingerprint and profile["splits"] == data.summary["totals"]
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}

    logged = client.get_logged_model(tags["logged_model_id"])
    assert logged.source_run_id == good.run_id and logged.experiment_id == run.info.experiment_id
    assert str(logged.status) in ("READY", "LoggedModelStatus.READY")
    assert [o.model_id for o in run.outputs.model_outputs] == [logged.model_id]
    assert {m.key for m in logged.metrics} >= {"best_val_accuracy", "test_accuracy"}


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
@same_worker
def test_the_logged_model_loads_in_a_fresh_process_with_the_runs_probabilities(runs, tone_root, tmp_path):
    folder, good, _ = runs
    client = client_of(folder)
    data = prepare(OmegaConf.to_container(compose("train", tiny_overrides(tone_root, folder)).dataset))
    audio = to_float(np.asarray(data.splits["test"].audio[:6]))
    np.save(tmp_path / "clips.npy", audio)
    local = client.download_artifacts(good.run_id, "model/model.keras", str(tmp_path))
    expected = load_model(local).predict(audio, verbose=0)
    model_id = client.get_run(good.run_id).data.tags["logged_model_id"]
    done = subprocess.run(
        [sys.executable, "-c", FRESH_LOAD, f"sqlite:///{folder}/mlruns.db", model_id, str(tmp_path / "clips.npy")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    loaded = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(np.array(loaded["pyfunc"]), expected, atol=1e-6)
    np.testing.assert_allclose(np.array(loaded["keras"]), expected, atol=1e-6)


def export_cfg(folder, run_id: str) -> dict:
    cfg = compose(
        "export",
        [
            f"run_id={run_id}",
            f"tracking.uri=sqlite:///{folder}/mlruns.db",
            f"tracking.artifact_location={folder}/mlartifacts",
            "streaming=off",
            "streaming_model=false",  # tests/test_streaming.py verifies it
            "baseline=skip",
            "format=mlprogram",
            "verify_clips=8",
        ],
    )
    return OmegaConf.to_container(cfg, resolve=True)


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
@same_worker
def test_export_registers_versions_and_champion_moves_only_on_improvement(runs, tmp_path):
    folder, good, poor = runs
    assert poor.metrics["best_val_accuracy"] < good.metrics["best_val_accuracy"], (poor.metrics, good.metrics)
    client = client_of(folder)

    first = export_run(export_cfg(folder, poor.run_id))  # mixed precision trained: converts and verifies
    assert first["coreml_verified"] is True
    assert (first["model_version"], first["alias"]) == (1, "champion")
    name = first["registered_model"]
    assert name.startswith("kws-speech_commands-") and len(name.rsplit("-", 1)[1]) == 8

    better = export_run(export_cfg(folder, good.run_id))
    assert (better["registered_model"], better["model_version"], better["alias"]) == (name, 2, "champion")
    assert "beats champion v1" in better["alias_reason"]
    exported = {m for m in VERSION_METRICS if m.startswith("coreml_")}
    assert exported <= set(better)  # every version tag names a metric some run or export produces
    assert set(VERSION_METRICS) - exported <= {
        *TRAINING_METRICS,
        *TEST_METRICS,
        *OPEN_SET_METRICS,
        *STREAM_METRICS,
        *STREAMING_MODEL_METRICS,
    }

    worse = export_run(export_cfg(folder, poor.run_id))  # exported again: its version, not a new one
    assert (worse["model_version"], worse["alias"]) == (1, "challenger")
    assert "does not beat champion v2" in worse["alias_reason"]
    assert str(client.get_model_version_by_alias(name, "champion").version) == "2"
    assert str(client.get_model_version_by_alias(name, "challenger").version) == "1"
    assert len(client.search_model_versions(f"name = '{name}'")) == 2

    version = client.get_model_version(name, "2")
    assert version.run_id == good.run_id
    assert version.tags["coreml_verified"] == "true"
    assert version.tags["dataset_fingerprint"] == client.get_run(good.run_id).data.tags["dataset_fingerprint"]
    assert float(version.tags["best_val_accuracy"]) == pytest.approx(good.metrics["best_val_accuracy"], abs=1e-5)
    assert "| parameters |" in version.description
    logged = client.get_logged_model(better["logged_model_id"])
    assert {"name": name, "version": "2"} in json.loads(logged.tags["mlflow.modelVersions"])  # the UI's link
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{folder}/mlruns.db")
    pulled = mlflow.artifacts.download_artifacts(f"models:/{name}@champion", dst_path=str(tmp_path / "pulled"))
    coreml = {p.name for p in (tmp_path / "pulled" / "coreml").iterdir()}
    assert {"kws-tc_resnet.mlpackage", "verification.json", "comparison.md"} <= coreml, pulled
    assert json.loads((tmp_path / "pulled" / "coreml" / "verification.json").read_text())["run_id"] == good.run_id

    again = export_run(export_cfg(folder, f"models:/{name}@champion"))
    assert again["run_id"] == good.run_id and (again["model_version"], again["alias"]) == (2, "champion")


@pytest.mark.slow  # two training runs; make test runs it, make test-fast does not
@same_worker
def test_a_mixed_precision_run_saves_a_float32_model(runs):
    folder, _, poor = runs
    client = client_of(folder)
    assert client.get_run(poor.run_id).data.tags["precision"] == "mixed_float16"
    local = client.download_artifacts(poor.run_id, "model/model.keras", str(folder / "poor"))
    model = load_model(local)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    with zipfile.ZipFile(local) as archive, archive.open("model.weights.h5") as weights:
        assert "optimizer" not in h5py.File(weights, "r")  # saved without the optimizer's state


def test_a_missing_registered_model_is_one_clear_line(tmp_path):
    from kws_research.errors import KwsError
    from kws_research.tracking.lookup import parse_model_uri, run_of_model_uri

    assert parse_model_uri("models:/kws-x-1234abcd@champion") == ("kws-x-1234abcd", "champion", None)
    assert parse_model_uri("models:/kws-x-1234abcd/3") == ("kws-x-1234abcd", None, "3")
    with pytest.raises(KwsError, match="is not models:/<name>@<alias>"):
        parse_model_uri("models:/kws-x")
    with pytest.raises(KwsError, match="no registered model version models:/nope@champion"):
        run_of_model_uri(MlflowClient(f"sqlite:///{tmp_path}/mlruns.db"), "models:/nope@champion")
