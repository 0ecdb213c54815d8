"""A full disk, a read-only working folder and a full artifact store: one error line
naming the folder and the override that moves it, nothing half-written left behind.

Each test mounts a tiny tmpfs in a private namespace (``unshare``); where the machine
cannot, the test is skipped with that reason."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from helpers.system import freed_filesystem_command, small_filesystem_command
from mlflow.tracking import MlflowClient


def stage(module: str, *overrides: str) -> list[str]:
    return [sys.executable, "-m", f"kws_research.{module}", *overrides]


def run_on_small_filesystem(command, mount, cwd, size_kb, read_only=False):
    wrapped = small_filesystem_command(command, mount, cwd, size_kb, read_only)
    if wrapped is None:
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}  # the stage's default store
    return subprocess.run(wrapped, capture_output=True, text=True, timeout=300, env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"))


def last_line(stderr: str) -> str:
    return [line for line in stderr.splitlines() if line.strip()][-1]


def check_full_artifact_store(line: str, run) -> None:
    """The one line and the FAILED run a full artifact store leaves."""
    assert line.startswith("error: tracking.artifact_location: cannot write the artifacts of run "), line
    assert "No space left on device" in line and "tracking.experiment=<name>" in line
    assert run.info.status == "FAILED" and "No space left" in run.data.tags["error"]


def data_args(tone_root) -> list[str]:
    return ["dataset=speech_commands", f"dataset.root={tone_root}", "dataset.commands=[yes,no,up]"]


def test_a_full_disk_while_building_the_cache_is_one_line_and_leaves_no_temporary(tone_root, tmp_path):
    mount = tmp_path / "small"
    result = run_on_small_filesystem(
        stage("prepare", *data_args(tone_root), f"dataset.cache_dir={mount}"), mount, tmp_path, size_kb=256
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    line = last_line(result.stderr)
    assert line.startswith(f"error: dataset.cache_dir: {mount}/prepared has ") and "the cache needs" in line
    assert "dataset.cache_dir=<folder with space>" in line
    assert "LEFT" not in result.stdout


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_read_only_working_folder_names_the_folder_and_the_override(tone_root, tmp_path):
    work = tmp_path / "readonly"
    train = ["model=tc_resnet", "trainer.epochs=1", "trainer.verbose=0", "augment=none"]
    result = run_on_small_filesystem(stage("train", *data_args(tone_root), *train), work, work, 64, read_only=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last_line(result.stderr) == (
        "error: dataset.cache_dir: cannot write to .cache/kws_research/prepared "
        "(Read-only file system); set dataset.cache_dir=<writable folder>"
    )
    result = run_on_small_filesystem(
        stage("train", *data_args(tone_root), *train, f"dataset.cache_dir={tmp_path}/cache"),
        work,
        work,
        64,
        read_only=True,
    )
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last_line(result.stderr).startswith(
        f"error: tracking.uri: cannot write in {work} (Read-only file system), where mlruns.db and its journal live"
    )


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_full_artifact_store_fails_the_run_with_one_line(tone_root, tmp_path):
    """Full in the middle of the model (full before any artifact: the rerun test below)."""
    artifacts = tmp_path / "artifacts"
    db = tmp_path / "mlruns.db"
    command = stage(
        "train",
        *data_args(tone_root),
        "model=tc_resnet",
        "trainer.epochs=1",
        "trainer.verbose=0",
        "augment=none",
        f"dataset.cache_dir={tmp_path}/cache",
        f"tracking.uri=sqlite:///{db}",
        f"tracking.artifact_location={artifacts}",
    )
    result = run_on_small_filesystem(command, artifacts, tmp_path, size_kb=640)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{db}")
    (run,) = client.search_runs([client.get_experiment_by_name("speech_commands").experiment_id])
    check_full_artifact_store(last_line(result.stderr), run)
    left = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("FILE ")]
    assert not [p for p in left if p.endswith("model.keras")], left  # no truncated model in the store


@pytest.mark.slow  # trains a run, then exports it onto a tiny file system
def test_a_full_output_dir_is_one_line_and_leaves_no_half_written_model(tone_root, tmp_path):
    """Export into a full output_dir gave a raw shutil.Error list and a half-written
    .mlpackage that the next export refused as not created by kws-research."""
    from helpers.data import tiny_overrides

    from kws_research.config import compose
    from kws_research.train import train

    run_id = train(compose("train", tiny_overrides(tone_root, tmp_path, "model=tc_resnet", "trainer.epochs=1"))).run_id
    out = tmp_path / "out"
    command = stage(
        "export",
        f"run_id={run_id}",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_location={tmp_path}/mlartifacts",
        f"output_dir={out}",
        "streaming=off",
        "streaming_model=false",
        "baseline=skip",
        "format=both",
    )
    result = run_on_small_filesystem(command, out, tmp_path, size_kb=512)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert line.startswith("error: output_dir: cannot write kws-tc_resnet.") and f"in {out} (" in line, line
    assert "free space there or set output_dir=<another folder>" in line
    left = [line.split()[1] for line in result.stdout.splitlines() if line.startswith("FILE ")]
    assert not [p for p in left if ".mlpackage" in p or p.endswith(".mlmodel")], left


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_an_unwritable_artifact_folder_is_refused_before_training(tone_root, tmp_path):
    """It was found out only when the trained model was logged, and the message said
    "free space" for a folder that refuses writes."""
    artifacts = tmp_path / "artifacts"
    command = stage(
        "train",
        *data_args(tone_root),
        "model=tc_resnet",
        "trainer.epochs=1",
        f"dataset.cache_dir={tmp_path}/cache",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_location={artifacts}",
    )
    result = run_on_small_filesystem(command, artifacts, tmp_path, 64, read_only=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    line = last_line(result.stderr)
    assert line.startswith(f"error: tracking.artifact_location: {artifacts} is not writable (Read-only file system)")
    assert "epoch" not in result.stderr.lower() and "free space" not in line


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_full_disk_under_the_store_itself_is_one_line(tone_root, tmp_path):
    """The store and its artifacts on one full disk: MLflow's table creation failed with 121
    lines and two tracebacks."""
    store = tmp_path / "store"
    command = stage(
        "train",
        *data_args(tone_root),
        "model=tc_resnet",
        "trainer.epochs=1",
        f"dataset.cache_dir={tmp_path}/cache",
        f"tracking.uri=sqlite:///{store}/mlruns.db",
        f"tracking.artifact_location={store}/artifacts",
    )
    result = run_on_small_filesystem(command, store, tmp_path, size_kb=600)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert last_line(result.stderr) == (
        f"error: tracking.uri: the store sqlite:///{store}/mlruns.db cannot be written (database or disk is full); "
        f"free space in {store} or set tracking.uri to a store with space"
    )


def run_twice_freeing_space(command, mount, cwd):
    """``command`` on a full tmpfs (a file of the user's leaves 64 KB), then again once that
    file is deleted; returns (stdout, stderr of each run)."""
    wrapped = freed_filesystem_command(command, mount, cwd, size_kb=32768, free_kb=64)
    if wrapped is None:
        pytest.skip("cannot mount a tmpfs in a user namespace here (unshare -rm)")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run(wrapped, capture_output=True, text=True, timeout=600, env=dict(env, TF_CPP_MIN_LOG_LEVEL="3"))
    first, _, second = done.stderr.partition("FREED\n")
    return done.stdout, first, second


@pytest.mark.slow  # two runs of a stage per target
@pytest.mark.parametrize("target", ["store", "artifacts", "cache", "output_dir"])
def test_after_a_full_disk_freeing_space_and_rerunning_succeeds(tone_root, tmp_path, target):
    from helpers.data import tiny_overrides

    mount = tmp_path / target
    place = {name: (mount if name == target else tmp_path / name) for name in ("store", "artifacts", "cache")}
    place["store"].mkdir(exist_ok=True)
    where = [
        f"dataset.cache_dir={place['cache']}",
        f"tracking.uri=sqlite:///{place['store']}/mlruns.db",
        f"tracking.artifact_location={place['artifacts']}",
    ]
    if target == "output_dir":
        from kws_research.config import compose
        from kws_research.train import train

        trained = train(compose("train", tiny_overrides(tone_root, tmp_path, "model=tc_resnet", "trainer.epochs=1")))
        where = [f"tracking.uri=sqlite:///{tmp_path}/mlruns.db", f"tracking.artifact_location={tmp_path}/mlartifacts"]
        command = stage("export", f"run_id={trained.run_id}", *where, f"output_dir={mount}", "baseline=skip")
        command += ["streaming=off", "streaming_model=false", "format=mlprogram"]
    elif target == "cache":  # the cache is written by every stage's first step: prepare is that step alone
        command = stage("prepare", *data_args(tone_root), f"dataset.cache_dir={mount}")
    else:
        command = stage("train", *data_args(tone_root), "model=tc_resnet", "trainer.epochs=1", "augment=none", *where)
    stdout, first, second = run_twice_freeing_space(command, mount, tmp_path)
    lines = dict(line.split("=", 1) for line in stdout.splitlines() if line.startswith("RC"))
    assert lines["RC1"] == "2" and "Traceback" not in first, first[-2000:]
    assert last_line(first).startswith("error: ")
    assert "No space left" in first or "is full" in first or "needs" in first, first[-1000:]
    assert f"BALLAST {(32768 - 64) * 1024}" in stdout  # the user's file is untouched
    assert lines["RC2"] == "0", second[-3000:]
    assert "LEFT" not in stdout, stdout  # no temporary of either run is left
    files = [line.split()[1] for line in stdout.splitlines() if line.startswith("FILE ")]
    if target == "output_dir":
        assert any(".mlpackage/" in f for f in files), files
        return
    if target == "artifacts":  # a store on the mount is gone with it; this one outlives the namespace
        client = MlflowClient(f"sqlite:///{place['store']}/mlruns.db")
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        assert sorted(r.info.status for r in runs) == ["FAILED", "FINISHED"]  # nothing left RUNNING
        (failed,) = [r for r in runs if r.info.status == "FAILED"]
        check_full_artifact_store(last_line(first), failed)
