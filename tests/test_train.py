"""The train stage end to end on tone data: the whole MLflow contract, determinism, failures."""

from __future__ import annotations

import gc
import json

import keras
import numpy as np
import pytest
from helpers.data import tiny_overrides
from helpers.stages import last_json, run_stage
from mlflow.tracking import MlflowClient

from kws_research.config import compose
from kws_research.contract import CLIP_SAMPLES, to_float
from kws_research.data.dataset import prepare
from kws_research.errors import ConfigError
from kws_research.metrics import command_accuracy
from kws_research.models import load_model
from kws_research.train import train
from kws_research.training.memory import custom_gradient_count
from kws_research.training.result import RunHooks

CONTRACT_ARTIFACTS = {
    "config.yaml",
    "labels.json",
    "confusion_matrix.png",
    "training_curves.png",
    "classification_report.json",
    "summary.json",
    "model/model.keras",
}


def artifact_paths(client, run_id, path=None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def test_one_run_leaves_the_complete_mlflow_record(tone_root, tmp_path):
    cfg = compose("train", tiny_overrides(tone_root, tmp_path))
    result = train(cfg)
    client = MlflowClient(cfg.tracking.uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    data = prepare(cfg.dataset)
    tags = run.data.tags
    assert tags["role"] == "train" and tags["model"] == "seed_cnn1d" and tags["dataset"] == "speech_commands"
    assert tags["dataset_fingerprint"] == data.fingerprint and tags["seed"] == "0"
    assert len(tags["git_commit"].split("+")[0]) in (40, 7) or tags["git_commit"] == "unknown"
    params = run.data.params
    assert params["optimizer.learning_rate"] == "0.001" and params["trainer.epochs"] == "2"
    assert json.loads(params["dataset.commands"]) == ["yes", "no", "up"]
    for key in ("train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"):
        history = client.get_metric_history(result.run_id, key)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [0, 1], key
    metrics = run.data.metrics
    for key in ("best_val_accuracy", "test_accuracy", "test_loss", "params", "macs", "train_seconds", "epochs_run"):
        assert key in metrics, key
    assert metrics["epochs_run"] == 2 and metrics["params"] > 4_000_000
    assert CONTRACT_ARTIFACTS <= artifact_paths(client, result.run_id)
    local = client.download_artifacts(result.run_id, "", str(tmp_path / "dl"))
    assert json.loads((tmp_path / "dl" / "labels.json").read_text()) == data.classes
    summary = json.loads((tmp_path / "dl" / "summary.json").read_text())
    assert summary["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    report = json.loads((tmp_path / "dl" / "classification_report.json").read_text())
    assert set(data.classes) <= set(report)
    model = load_model(f"{local}/model/model.keras")  # safe mode
    test = data.splits["test"]
    probs = model.predict(to_float(test.audio), verbose=0)
    assert float((probs.argmax(1) == test.labels).mean()) == pytest.approx(metrics["test_accuracy"])
    validation = data.splits["validation"]
    val_probs = model.predict(to_float(validation.audio), verbose=0)
    expected = command_accuracy(validation.labels, val_probs, data.classes)
    assert metrics["val_command_accuracy"] == pytest.approx(expected)


def test_same_seed_same_validation_accuracy(tone_root, tmp_path):
    overrides = tiny_overrides(tone_root, tmp_path, "augment=standard", "trainer.epochs=2")
    first = train(compose("train", overrides))
    second = train(compose("train", overrides))
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")

    def history(run_id):
        return [m.value for m in sorted(client.get_metric_history(run_id, "val_accuracy"), key=lambda m: m.step)]

    assert history(first.run_id) == history(second.run_id)
    assert first.metrics["test_loss"] == second.metrics["test_loss"]


def live_training_graphs() -> int:
    from tensorflow.python.framework.func_graph import FuncGraph

    gc.collect()
    return sum(isinstance(o, FuncGraph) and o.name == "one_step_on_data" for o in gc.get_objects())


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_runs_in_one_process_leave_no_training_graph_behind(tone_root, tmp_path):
    """A sweep trains many runs in one worker: each run's traced training step must be freed."""
    before_graphs, before_gradients = live_training_graphs(), custom_gradient_count()
    for seed in (1, 2):
        train(compose("train", tiny_overrides(tone_root, tmp_path, "trainer.epochs=1", f"seed={seed}")))
    assert custom_gradient_count() == before_gradients
    assert live_training_graphs() <= before_graphs


class _Raise(keras.callbacks.Callback):
    def __init__(self, error):
        super().__init__()
        self.error = error

    def on_epoch_end(self, epoch, logs=None):
        raise self.error


@pytest.mark.parametrize("error,status", [(KeyboardInterrupt(), "KILLED"), (RuntimeError("boom"), "FAILED")])
def test_interrupted_or_crashed_runs_never_stay_running(tone_root, tmp_path, error, status):
    cfg = compose("train", tiny_overrides(tone_root, tmp_path))
    with pytest.raises(type(error)):
        train(cfg, RunHooks(callbacks=[_Raise(error)]))
    client = MlflowClient(cfg.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("speech_commands").experiment_id])
    assert [r.info.status for r in runs] == [status]
    assert runs[0].data.tags["error"]


def test_impossible_architecture_fails_the_run_with_the_reason(tone_root, tmp_path):
    cfg = compose("train", tiny_overrides(tone_root, tmp_path, "model.filters=[2,2,2,2,2,2,2,2,2,2,2,2,2,2,2]"))
    with pytest.raises(ConfigError, match="model"):
        train(cfg)
    client = MlflowClient(cfg.tracking.uri)
    runs = client.search_runs([client.get_experiment_by_name("speech_commands").experiment_id])
    assert [r.info.status for r in runs] == ["FAILED"]
    assert "seed_cnn1d" in runs[0].data.tags["error"]


@pytest.mark.parametrize(
    "override,line",
    [
        ("model=no_such_model", "error: model: no option 'no_such_model' (available: bc_resnet, "),
        ("trainer.epochz=1", "error: trainer.epochz: no such key (keys of trainer: epochs, "),
        ("trainer.epochs=[1", "error: trainer.epochs=[1: cannot parse"),
        ("trainer.epochs=abc", "error: trainer.epochs"),
        ("optimizer.learning_rate=-0.1", "error: optimizer.learning_rate"),
        ("dataset.root=/definitely/missing", "error: dataset.root"),
        ("trainer.precision=half", "error: trainer.precision: 'half' is not one of float32, mixed_float16"),
    ],
)
def test_bad_overrides_give_one_clear_line_and_log_nothing_finished(tone_root, tmp_path, override, line):
    result = run_stage("train", *tiny_overrides(tone_root, tmp_path), override, cwd=tmp_path)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith(line), result.stderr[-2000:]
    if (tmp_path / "mlruns.db").exists():
        client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
        experiments = client.search_experiments()
        runs = client.search_runs([e.experiment_id for e in experiments])
        assert not [r for r in runs if r.info.status == "FINISHED"]


def test_train_cli_prints_run_id_and_final_json(tone_root, tmp_path):
    result = run_stage("train", *tiny_overrides(tone_root, tmp_path, "trainer.epochs=1"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    final = last_json(result.stdout)
    assert f"run_id: {final['run_id']}" in result.stdout
    assert 0 <= final["test_accuracy"] <= 1 and final["epochs_run"] == 1


def test_baseline_experiment_is_the_tutorial_recipe():
    cfg = compose("train", ["+experiment=baseline"])
    assert cfg.role == "baseline"
    assert cfg.model._target_ == "kws_research.models.seed_cnn1d.build"
    assert list(cfg.model.filters) == [2, 4, 8, 16, 32, 64] and list(cfg.model.dense_units) == [300, 150]
    assert cfg.optimizer._target_ == "keras.optimizers.Adam" and cfg.optimizer.learning_rate == 0.001
    assert cfg.optimizer.label_smoothing == 0.0 and cfg.augment.noise_probability == 0.0
    assert cfg.augment.time_shift_ms == 0 and cfg.augment.spec_augment is None


def test_an_epoch_is_one_pass_over_the_training_split():
    """10 clips in batches of 4: every epoch (3 steps) sees each clip exactly once."""
    from kws_research.data.cache import SplitArrays
    from kws_research.training import pipeline

    n, batch = 10, 4
    rows = np.repeat(np.arange(n, dtype=np.int16)[:, None] * 100, CLIP_SAMPLES, axis=1)
    split = SplitArrays(audio=rows, labels=np.arange(n) % 3, sources=[str(i) for i in range(n)])
    steps = pipeline.steps_per_epoch(split, batch)
    batches = iter(pipeline.training_dataset(split, 3, batch, seed=0))
    orders = []
    for _ in range(3):
        seen = [np.asarray(next(batches)[0])[:, 0] for _ in range(steps)]
        orders.append([int(v) for v in np.round(np.concatenate(seen) / to_float(np.int16(100)))])
        assert sorted(orders[-1]) == list(range(n))
    assert orders[0] != orders[1]  # reshuffled each epoch


def test_a_fresh_session_keeps_the_seed_it_was_given():
    """Seeding must come after clearing Keras' state, or the stored global seed is lost."""
    from keras.src.utils import rng_utils  # Keras has no public getter for the stored seed

    from kws_research.training.run import fresh_session

    fresh_session(1234, deterministic=False)
    assert rng_utils.get_random_seed() == 1234
    first = keras.random.uniform((4,))
    fresh_session(1234, deterministic=False)
    assert np.allclose(np.asarray(first), np.asarray(keras.random.uniform((4,))))


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_killed_train_run_ends_killed_at_the_next_stage_and_cannot_be_exported(tone_root, tmp_path):
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    command = [
        sys.executable,
        "-m",
        "kws_research.train",
        *tiny_overrides(tone_root, tmp_path, "trainer.epochs=500", "trainer.early_stopping_patience=null"),
    ]
    victim = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    db, running = tmp_path / "mlruns.db", []
    deadline = time.time() + 240
    while not running and time.time() < deadline and victim.poll() is None:
        time.sleep(0.5)
        if db.exists():
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    running = conn.execute("SELECT run_uuid FROM runs WHERE status = 'RUNNING'").fetchall()
            except sqlite3.OperationalError:
                pass
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert running, "the train stage never started its run"
    run_id = running[0][0]
    result = run_stage(
        "export",
        f"run_id={run_id}",
        f"tracking.uri=sqlite:///{db}",
        f"tracking.artifact_location={tmp_path}/mlartifacts",
        cwd=tmp_path,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: run {run_id} has no model/model.keras")
    run = MlflowClient(f"sqlite:///{db}").get_run(run_id)
    assert run.info.status == "KILLED" and "died" in run.data.tags["error"]
