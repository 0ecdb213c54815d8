"""The "several machines" recipe on real servers: one Optuna study in PostgreSQL, one MLflow
tracking server backed by PostgreSQL, and two sweep processes with two workers each; one
worker is SIGKILLed mid-trial and its trial runs again, once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import optuna
import psutil
import pytest
from helpers import servers
from helpers.sweeps import write_sweep
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

N_TRIALS = 5


def sweep_process(sweep: str, tone_root, tmp_path, tracking: str, name: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "kws_research.sweep",
            f"sweep={sweep}",
            f"dataset.root={tone_root}",
            f"dataset.cache_dir={tmp_path}/cache",
            f"tracking.uri={tracking}",
        ],
        cwd=tmp_path,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
        stdout=open(tmp_path / f"{name}.out", "w"),
        stderr=open(tmp_path / f"{name}.err", "w"),
        text=True,
    )


def kill_a_worker_mid_trial(study: optuna.Study, sweep: subprocess.Popen, timeout: float = 300) -> int:
    """SIGKILL the worker of ``sweep`` that runs a trial; returns the trial's number."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        workers = {
            p.pid: p
            for p in psutil.Process(sweep.pid).children(recursive=True)
            if "kws_research.sweeping.worker" in " ".join(p.cmdline())
        }
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            pid = int(str(trial.user_attrs.get("worker", ":0")).rsplit(":", 1)[1])
            if pid in workers and trial.user_attrs.get("mlflow_run_id"):
                time.sleep(1)
                workers[pid].send_signal(signal.SIGKILL)
                return trial.number
        time.sleep(0.5)
    raise AssertionError("no trial of the first sweep process started running")


@pytest.mark.slow
def test_two_sweep_processes_share_a_postgres_study_and_tracking_server(tone_root, tmp_path):
    with servers.postgres(["mlflow", "optuna"]) as db:
        with servers.mlflow_server(db["mlflow"], tmp_path / "artifacts") as tracking:
            sweep = write_sweep(
                tmp_path,
                storage=db["optuna"],
                n_trials=N_TRIALS,
                workers=2,
                sampler={"name": "random"},
                pruner={"name": "none"},
                constraints={},
                params={"model": "choice(tc_resnet)", "optimizer.learning_rate": "tag(log, interval(1e-3, 1e-2))"},
            )
            first = sweep_process(sweep, tone_root, tmp_path, tracking, "first")
            study = None
            deadline = time.time() + 120
            while study is None and time.time() < deadline:
                try:
                    study = optuna.load_study(study_name="t", storage=db["optuna"])
                except KeyError:
                    time.sleep(0.5)
            assert study is not None, (tmp_path / "first.err").read_text()[-3000:]
            second = sweep_process(sweep, tone_root, tmp_path, tracking, "second")
            killed = kill_a_worker_mid_trial(study, first)
            for name, process in (("first", first), ("second", second)):
                assert process.wait(timeout=600) == 0, (tmp_path / f"{name}.err").read_text()[-3000:]

            trials = study.get_trials()
            assert len({t.number for t in trials}) == len(trials)
            complete = [t for t in trials if t.state == TrialState.COMPLETE]
            assert len(complete) == N_TRIALS  # the budget, met exactly
            assert len({t.params["optimizer.learning_rate"] for t in complete}) == N_TRIALS  # no duplicate
            assert not [t for t in trials if t.state == TrialState.RUNNING]
            failed = [t for t in trials if t.state == TrialState.FAIL]
            assert [t.number for t in failed] == [killed]
            retries = [t for t in trials if t.user_attrs.get("retry_of") == killed]
            assert len(retries) == 1 and retries[0].state == TrialState.COMPLETE
            assert retries[0].params == failed[0].params
            assert len({t.user_attrs["worker"] for t in trials}) >= 3  # workers of both processes ran trials

            client = MlflowClient(tracking)
            experiment = client.get_experiment_by_name("speech_commands")
            runs = {r.info.run_id: r for r in client.search_runs([experiment.experiment_id], max_results=100)}
            parents = [r for r in runs.values() if r.data.tags.get("role") == "sweep"]
            assert len(parents) == 2 and {p.info.status for p in parents} == {"FINISHED"}
            for trial in trials:
                run = runs[trial.user_attrs["mlflow_run_id"]]
                assert run.data.tags["optuna.trial_number"] == str(trial.number)
                assert run.data.tags["mlflow.parentRunId"] in {p.info.run_id for p in parents}
                assert run.info.status == ("KILLED" if trial.number == killed else "FINISHED")
            assert len([r for r in runs.values() if r.data.tags.get("role") == "trial"]) == len(trials)
            for trial in complete:
                model_id = runs[trial.user_attrs["mlflow_run_id"]].data.tags["logged_model_id"]
                assert client.get_logged_model(model_id).source_run_id == trial.user_attrs["mlflow_run_id"]
