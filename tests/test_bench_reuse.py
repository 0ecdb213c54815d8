"""`--reuse` in the benchmarks: a finished run of the same config, commit and machine is read
from the store, not trained again; uncommitted code (no key) or another config trains."""

from __future__ import annotations

import pytest
from helpers.data import tiny_overrides
from mlflow.tracking import MlflowClient

from benchmarks import reuse
from benchmarks.bench_accuracy import run
from kws_research.config import compose

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_the_key_changes_with_the_config_the_commit_and_the_kernels(tone_root, tmp_path, monkeypatch):
    monkeypatch.setattr(reuse, "git_commit", lambda: COMMIT)
    monkeypatch.delenv("TF_ENABLE_ONEDNN_OPTS", raising=False)  # the key reads it; TensorFlow read it at import
    cfg = compose("train", tiny_overrides(tone_root, tmp_path))
    key = reuse.reuse_key(cfg)
    assert key == reuse.reuse_key(compose("train", tiny_overrides(tone_root, tmp_path)))
    assert key != reuse.reuse_key(compose("train", tiny_overrides(tone_root, tmp_path, "seed=1")))
    monkeypatch.setenv("TF_ENABLE_ONEDNN_OPTS", "0")
    assert key != reuse.reuse_key(cfg)
    monkeypatch.setattr(reuse, "git_commit", lambda: "1123456789abcdef0123456789abcdef01234567")
    assert key != reuse.reuse_key(cfg)
    monkeypatch.setattr(reuse, "git_commit", lambda: COMMIT + "+dirty")
    assert reuse.reuse_key(cfg) is None


@pytest.mark.slow  # trains a run
def test_a_finished_run_is_read_back_with_every_metric_not_trained_again(tone_root, tmp_path, monkeypatch):
    overrides = tiny_overrides(tone_root, tmp_path, "tracking.experiment=bench-test", "trainer.epochs=1")
    monkeypatch.setattr(reuse, "git_commit", lambda: COMMIT)
    trained = run(overrides)  # tagged even without --reuse
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    assert client.get_run(trained["run_id"]).data.tags[reuse.TAG] == reuse.reuse_key(compose("train", overrides))
    reused = run(overrides, True)
    assert {k: reused.get(k) for k in trained} == trained  # the same run id and every metric the bench reads
    assert len(client.search_runs([client.get_experiment_by_name("bench-test").experiment_id])) == 1
