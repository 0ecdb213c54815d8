"""The export stage end to end on a tiny trained run, and its one-line errors."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from helpers.data import tiny_overrides
from helpers.stages import last_json, run_stage
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.errors import KwsError
from kws_research.exporting.stage import export_run
from kws_research.train import train

# Tests of the module fixture run on one pytest-xdist worker (`--dist loadgroup`), which trains it once.
same_worker = pytest.mark.xdist_group("export_run")


@pytest.fixture(scope="module")
def trained(tone_root, tmp_path_factory):
    folder = tmp_path_factory.mktemp("export")
    result = train(compose("train", tiny_overrides(tone_root, folder, "model=tc_resnet", "augment=none")))
    return folder, result.run_id


def export_cfg(folder, *overrides: str) -> dict:
    cfg = compose(
        "export",
        [
            f"tracking.uri=sqlite:///{folder}/mlruns.db",
            f"tracking.artifact_location={folder}/mlartifacts",
            "streaming=off",  # tests/test_streaming.py exports with it, and with the streaming model
            "streaming_model=false",
            *overrides,
        ],
    )
    return OmegaConf.to_container(cfg, resolve=True)


@same_worker
@pytest.mark.slow  # the export stage end to end (baseline trained first); make test runs it
def test_export_converts_verifies_compares_and_logs(trained):
    folder, run_id = trained
    args = [
        f"run_id={run_id}",
        f"tracking.uri=sqlite:///{folder}/mlruns.db",
        f"tracking.artifact_location={folder}/mlartifacts",
        "baseline_overrides=['trainer.epochs=1','trainer.verbose=0']",
        "streaming=off",
        "stream.verify_seconds=10",
    ]
    # on TensorFlow's portable kernels (CPUs without AVX-512, Apple silicon): a run trained with
    # oneDNN is exported and verified where Keras computes its reference another way
    result = run_stage("export", *args, cwd=folder, env={"TF_ENABLE_ONEDNN_OPTS": "0"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "no baseline run for data set" in result.stdout  # it said it trains the baseline first
    assert "| parameters |" in result.stdout and "tutorial (published)" in result.stdout
    final = last_json(result.stdout)
    assert final["coreml_verified"] is True and final["run_id"] == run_id
    for key in (
        "coreml_test_accuracy",
        "coreml_max_abs_diff",
        "coreml_agreement",
        "coreml_size_bytes",
        "baseline_test_accuracy",
        "accuracy_gain_vs_baseline",
    ):
        assert key in final, key
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    run = client.get_run(run_id)
    assert run.data.tags["coreml_verified"] == "true"
    assert run.data.metrics["coreml_max_abs_diff"] <= 5e-3
    assert run.data.metrics["accuracy_gain_vs_baseline"] == pytest.approx(
        final["coreml_test_accuracy"] - final["baseline_test_accuracy"]
    )
    names = {a.path for a in client.list_artifacts(run_id, "coreml")}
    assert {
        "coreml/kws-tc_resnet.mlpackage",
        "coreml/kws-tc_resnet.mlmodel",
        "coreml/verification.json",
        "coreml/comparison.md",
        "coreml/comparison.png",
    } <= names
    local = client.download_artifacts(run_id, "coreml", str(folder / "dl"))
    verification = json.loads((folder / "dl" / "coreml" / "verification.json").read_text())
    assert {c["format"] for c in verification["checks"]} == {"mlprogram", "neuralnetwork"}
    # without a shipped detector the streaming model is still verified hop by hop (probabilities only)
    assert {"coreml/kws-tc_resnet-streaming.mlpackage", "coreml/kws-tc_resnet-streaming.mlmodel"} <= names
    for check in verification["checks"]:
        assert check["streaming_hops"] == 10 * 10 - 9 and check["streaming_mismatches"] is None
        assert check["streaming_max_abs_diff"] <= check["tolerance"]
    assert final["coreml_streaming_max_abs_diff"] == max(c["streaming_max_abs_diff"] for c in verification["checks"])
    assert (folder / "dl" / "coreml" / "kws-tc_resnet.mlpackage" / "Manifest.json").exists(), local
    baselines = client.search_runs([run.info.experiment_id], "tags.role = 'baseline'")
    assert len(baselines) == 1
    assert baselines[0].data.tags["dataset_fingerprint"] == run.data.tags["dataset_fingerprint"]
    assert final["baseline_run_id"] == baselines[0].info.run_id

    again = export_run(export_cfg(folder, f"run_id={run_id}", "format=mlprogram", "precision=fp32"))  # oneDNN
    assert again["baseline_run_id"] == baselines[0].info.run_id  # found, not trained again
    # the re-export (mlprogram only, no streaming model) replaced the first one as a whole
    assert {a.path for a in client.list_artifacts(run_id, "coreml")} == {
        "coreml/kws-tc_resnet.mlpackage",
        "coreml/verification.json",
        "coreml/comparison.md",
        "coreml/comparison.png",
    }
    version = client.get_model_version(again["registered_model"], str(again["model_version"]))
    assert json.loads(version.tags["coreml_files"]) == ["kws-tc_resnet.mlpackage"]
    attached = {a.path for a in client.list_logged_model_artifacts(again["logged_model_id"], "coreml")}
    assert attached == {f"coreml/{n}" for n in ("kws-tc_resnet.mlpackage", "verification.json", "comparison.md")} | {
        "coreml/comparison.png"
    }  # the registered files are the re-export's, none of the first export's
    assert len(client.search_runs([run.info.experiment_id], "tags.role = 'baseline'")) == 1


@same_worker
def test_metadata_describes_the_model_for_the_app(trained, tmp_path):
    import coremltools as ct

    folder, run_id = trained
    result = export_run(
        export_cfg(
            folder,
            f"run_id={run_id}",
            "baseline=skip",
            "format=mlprogram",
            f"output_dir={tmp_path}",
            "metadata.license=CC-BY-4.0",
        )
    )
    model = ct.models.MLModel(result["files"][0], skip_model_load=True)
    meta = model.user_defined_metadata
    assert json.loads(meta["labels"]) == ["silence", "unknown", "yes", "no", "up"]
    assert meta["sample_rate"] == "16000" and meta["normalisation"] == "int16 / 32768"
    assert meta["source_run_id"] == run_id and len(meta["dataset_fingerprint"]) == 64
    assert {"validation_accuracy", "test_accuracy", "params", "macs"} <= set(meta)
    assert model.license == "CC-BY-4.0" and model.author and model.version == "1.0"
    assert "16 kHz" in model.short_description and "16000" in model.input_description["audio"]


@same_worker
def test_unknown_run_missing_model_and_wrong_baseline_are_clear_errors(trained):
    folder, run_id = trained
    with pytest.raises(KwsError, match="no MLflow run 'deadbeef'"):
        export_run(export_cfg(folder, "run_id=deadbeef"))
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    experiment = client.get_run(run_id).info.experiment_id
    empty = client.create_run(experiment, tags={"role": "trial", "optuna.state": "PRUNED"}).info.run_id
    client.set_terminated(empty)
    with pytest.raises(KwsError, match="has no model/model.keras artifact"):
        export_run(export_cfg(folder, f"run_id={empty}"))
    finished = client.create_run(experiment, tags={"role": "trial"}).info.run_id  # its model deleted
    client.set_terminated(finished)
    with pytest.raises(KwsError, match=f"run {finished} finished, but its model/model.keras artifact is missing"):
        export_run(export_cfg(folder, f"run_id={finished}"))
    with pytest.raises(KwsError, match="^baseline: no MLflow run 'nope'"):  # before any conversion
        export_run(export_cfg(folder, f"run_id={run_id}", "baseline=nope"))
    other = client.create_run(experiment, tags={"role": "baseline", "dataset_fingerprint": "f" * 64}).info.run_id
    client.set_terminated(other)
    with pytest.raises(KwsError, match="baseline: run .* was trained on data set ffffffffffff"):
        export_run(export_cfg(folder, f"run_id={run_id}", f"baseline={other}", "format=neuralnetwork"))
    tags = client.get_run(run_id).data.tags
    unfinished = client.create_run(
        experiment, tags={"role": "baseline", **{k: tags[k] for k in ("dataset_fingerprint", "test_fingerprint")}}
    ).info.run_id
    client.set_terminated(unfinished, "FAILED")
    with pytest.raises(KwsError, match=f"baseline: run {unfinished} has no test_accuracy"):
        export_run(export_cfg(folder, f"run_id={run_id}", f"baseline={unfinished}", "format=neuralnetwork"))


@same_worker
def test_a_damaged_model_artifact_is_named_by_its_run_not_by_a_temporary_folder(trained, tmp_path):
    """A model.keras cut short in the store (a full disk, before writes were atomic) was
    reported by the temporary folder export downloaded it to, gone after exit."""
    folder, run_id = trained
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    source = client.get_run(run_id)
    copy = Path(client.download_artifacts(run_id, "", str(tmp_path / "copy")))
    model = copy / "model" / "model.keras"
    model.write_bytes(model.read_bytes()[:2000])
    damaged = client.create_run(source.info.experiment_id, tags=source.data.tags).info.run_id
    for name in ("config.yaml", "labels.json"):
        client.log_artifact(damaged, str(copy / name))
    client.log_artifact(damaged, str(model), "model")
    client.set_terminated(damaged)
    with pytest.raises(KwsError) as caught:
        export_run(export_cfg(folder, f"run_id={damaged}", "baseline=skip"))
    message = str(caught.value)
    assert message.startswith(f"run {damaged}'s model/model.keras (") and "not a loadable .keras model" in message
    assert "kws-" not in message.split("(")[1] and message.endswith("restore the artifact or train the run again")


@same_worker
def test_a_deleted_run_is_refused_before_any_work(trained):
    folder, run_id = trained
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    before = client.get_run(run_id).data.tags
    client.delete_run(run_id)
    try:
        with pytest.raises(KwsError, match=rf"^run_id: run {run_id} is deleted \(in MLflow's trash\); restore it"):
            export_run(export_cfg(folder, f"run_id={run_id}", "baseline=skip"))
    finally:
        client.restore_run(run_id)
    assert client.get_run(run_id).data.tags == before  # nothing converted, verified or tagged


@same_worker
@pytest.mark.parametrize("override", ["tolerance.fp32=-1", "tolerance.fp16=abc", "tolerance.int8=2"])
def test_an_impossible_tolerance_is_refused_before_anything_is_tagged(trained, override):
    folder, run_id = trained
    key = override.partition("=")[0]
    with pytest.raises(KwsError, match=rf"^{key}: .* is not a number in \[0, 1\]"):
        export_run(export_cfg(folder, f"run_id={run_id}", override))
    assert MlflowClient(f"sqlite:///{folder}/mlruns.db").get_run(run_id).data.tags.get("coreml_verified") != "false"


def test_a_file_with_other_labels_fails_verification_with_one_line(tmp_path):
    import numpy as np
    from helpers.models import zoo_model

    from kws_research.contract import CLIP_SAMPLES
    from kws_research.coreml.convert import convert
    from kws_research.coreml.verify import verify

    model = zoo_model("tc_resnet", 3)
    convert(model, ["a", "b", "c"], fmt="neuralnetwork").save(str(tmp_path / "m.mlmodel"))
    clips = np.zeros((1, CLIP_SAMPLES), np.float32)
    with pytest.raises(KwsError, match="class labels .* differ from the run's"):
        verify(
            tmp_path / "m.mlmodel",
            "neuralnetwork",
            "fp32",
            ["x", "y", "z"],
            clips,
            np.zeros(1),
            np.zeros((1, 3), np.float32),
            1e-4,
        )


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
@same_worker
def test_a_run_with_only_training_data_options_changed_reuses_the_baseline(trained, tone_root):
    folder, first_run = trained
    export_run(
        export_cfg(
            folder,
            f"run_id={first_run}",
            "format=neuralnetwork",
            "baseline_overrides=['trainer.epochs=1','trainer.verbose=0']",
        )
    )
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    baselines = client.search_runs([client.get_run(first_run).info.experiment_id], "tags.role = 'baseline'")
    second = train(
        compose(
            "train",
            tiny_overrides(
                tone_root,
                folder,
                "model=tc_resnet",
                "augment=none",
                "trainer.epochs=1",
                "dataset.unknown_sources.reversed=0.5",
            ),
        )
    )
    tags = {run: client.get_run(run).data.tags for run in (first_run, second.run_id)}
    assert tags[first_run]["dataset_fingerprint"] != tags[second.run_id]["dataset_fingerprint"]
    assert tags[first_run]["test_fingerprint"] == tags[second.run_id]["test_fingerprint"]
    result = export_run(export_cfg(folder, f"run_id={second.run_id}", "format=neuralnetwork"))
    assert result["baseline_run_id"] in {b.info.run_id for b in baselines}
    assert f"run {result['baseline_run_id'][:8]}, same test split" in result["comparison"]
    assert len(client.search_runs([client.get_run(first_run).info.experiment_id], "tags.role = 'baseline'")) == len(
        baselines
    )


@same_worker
def test_unreachable_store_and_unwritable_output_are_clear_errors(trained, tmp_path):
    folder, run_id = trained
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(KwsError, match="not reachable"):
        export_run(export_cfg(folder, f"run_id={run_id}", f"tracking.uri=http://127.0.0.1:{port}"))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(KwsError, match="output_dir: cannot write"):
        export_run(export_cfg(folder, f"run_id={run_id}", f"output_dir={blocker}/models"))
    with pytest.raises(KwsError, match="no MLflow run 'deadbeef'"):  # refused: no empty output_dir left behind
        export_run(export_cfg(folder, "run_id=deadbeef", f"output_dir={tmp_path}/new/models"))
    assert not (tmp_path / "new").exists()


@same_worker
def test_run_id_best_is_the_best_trial_of_the_latest_sweep(trained):
    from kws_research.tracking.lookup import resolve_run_id

    folder, run_id = trained
    client = MlflowClient(f"sqlite:///{folder}/mlruns.db")
    with pytest.raises(KwsError, match="no finished sweep of study 'nope'"):
        resolve_run_id(client, "best", "nope")
    experiment = client.get_run(run_id).info.experiment_id
    client.create_run(experiment, tags={"role": "sweep", "optuna.study": "s1", "best_run_id": run_id})
    assert resolve_run_id(client, "best", None) == run_id
    assert resolve_run_id(client, "best", "s1") == run_id


@same_worker
def test_cli_error_is_one_line(trained):
    folder, _ = trained
    result = run_stage("export", "run_id=deadbeef", f"tracking.uri=sqlite:///{folder}/mlruns.db", cwd=folder)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: run_id: no MLflow run 'deadbeef'")
