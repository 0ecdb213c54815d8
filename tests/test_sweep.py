"""The sweep stage with real Optuna (sqlite RDB storage) and real MLflow (sqlite store)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import optuna
import pytest
from helpers.stages import last_json
from helpers.sweeps import data_args, write_sweep
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from kws_research.errors import KwsError
from kws_research.sweeping.coordinator import run_sweep
from kws_research.sweeping.definition import load
from kws_research.sweeping.space import parse


def study_of(tmp_path, name="t") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path}/optuna.db")


def runs_of(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlruns.db")
    experiment = client.get_experiment_by_name("speech_commands")
    return client, client.search_runs([experiment.experiment_id], max_results=1000)


def test_definition_splits_sweep_fields_space_and_run_overrides(tmp_path):
    definition = load(
        [
            f"sweep={write_sweep(tmp_path)}",
            "n_trials=3",
            "storage=sqlite:///x.db",
            "study_name=try1",
            "workers=2",
            "sampler.name=random",
            "trainer.epochs=5",
            "params.model.dropout=interval(0.0, 0.3)",
        ]
    )
    assert (definition.n_trials, definition.storage, definition.study_name, definition.workers) == (
        3,
        "sqlite:///x.db",
        "try1",
        2,
    )
    assert definition.sampler.name == "random"
    assert definition.run_overrides == ["trainer.epochs=5"]
    assert definition.base_overrides[-1] == "trainer.epochs=5"
    assert definition.params["model.dropout"] == "interval(0.0, 0.3)"
    with pytest.raises(KwsError, match="no sweep named 'nope'"):
        load(["sweep=nope"])


def test_switching_sampler_or_pruner_drops_the_options_of_the_one_the_file_named():
    from kws_research.sweeping import factories

    definition = load(
        [
            "sweep=quick",
            "pruner.interval_steps=2",
            "sampler.name=random",
            "pruner.name=percentile",
            "pruner.percentile=25",
        ]
    )
    assert dict(definition.sampler) == {"name": "random"}
    assert dict(definition.pruner) == {"name": "percentile", "interval_steps": 2, "percentile": 25}
    assert isinstance(factories.sampler(definition.sampler, 0, []), optuna.samplers.RandomSampler)
    assert isinstance(factories.pruner(definition.pruner, False), optuna.pruners.PercentilePruner)
    unchanged = load(["sweep=quick", "pruner.name=successive_halving"])
    assert unchanged.pruner.reduction_factor == 3  # same pruner: the file's options stay
    assert isinstance(
        factories.pruner(load(["sweep=quick", "pruner.name=none"]).pruner, False), optuna.pruners.NopPruner
    )


def test_search_space_syntax_maps_to_optuna_distributions():
    dims = {
        d.name: d
        for d in parse(
            {
                "optimizer.learning_rate": "tag(log, interval(1e-4, 1e-2))",
                "model": "choice(ds_cnn, tc_resnet)",
                "model.blocks": "int(interval(2, 6))",
                "trainer.batch_size": "range(32, 129, 32)",
                "model.channels": "choice([16,24],[32,48])",
                "augment.noise_volume": "0.1",
            }
        )
    }
    assert list(dims)[0] == "model"  # config groups are sampled first
    lr = dims["optimizer.learning_rate"]
    assert (lr.kind, lr.low, lr.high, lr.log) == ("float", 1e-4, 1e-2, True)
    assert (dims["model.blocks"].kind, dims["model.blocks"].low, dims["model.blocks"].high) == ("int", 2, 6)
    assert dims["trainer.batch_size"].grid_values() == [32, 64, 96, 128]
    assert dims["model.channels"].choices == ("[16,24]", "[32,48]")
    assert dims["model"].is_group and not dims["model.blocks"].is_group
    assert dims["augment.noise_volume"].override(0.1) == "augment.noise_volume=0.1"


@pytest.mark.slow  # the sweep stage end to end, with its export; make test runs it
def test_sweep_leaves_parent_and_nested_trial_runs(tone_root, tmp_path):
    result = run_sweep(load([f"sweep={write_sweep(tmp_path)}", *data_args(tone_root, tmp_path)]))
    study = study_of(tmp_path)
    trials = study.get_trials()
    states = [t.state for t in trials]
    assert len(trials) == 4 and TrialState.RUNNING not in states
    assert states.count(TrialState.PRUNED) >= 2  # cnn1d (144 K params) is over max_params
    for trial in trials:
        if trial.params["model"] == "cnn1d":
            assert trial.state == TrialState.PRUNED and "max_params" in trial.user_attrs["pruned_reason"]
    client, runs = runs_of(tmp_path)
    parents = [r for r in runs if r.data.tags.get("role") == "sweep"]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    children = {r.info.run_id: r for r in runs if r.data.tags.get("role") == "trial"}
    assert len(children) == 4
    for trial in trials:
        run = children[trial.user_attrs["mlflow_run_id"]]
        assert run.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert run.data.tags["optuna.study"] == "t"
        assert run.data.tags["optuna.trial_number"] == str(trial.number)
        assert run.data.tags["optuna.state"] == trial.state.name
        assert run.info.status == "FINISHED"
    best = study.best_trial
    assert parent.data.tags["best_run_id"] == best.user_attrs["mlflow_run_id"] == result["best_run_id"]
    metrics = parent.data.metrics
    assert metrics["best_value"] == pytest.approx(best.value)
    # where the time went, printed by the sweep stage and logged on the parent run
    assert set(result["timings"]) >= {"data", "study"} and all(v >= 0 for v in result["timings"].values())
    assert {f"time_{stage}_s" for stage in result["timings"]} <= set(metrics)
    if result.get("final_stage"):
        assert {"baseline", "export"} <= set(result["timings"])
    assert (metrics["n_complete"], metrics["n_pruned"], metrics["n_failed"]) == (
        states.count(TrialState.COMPLETE),
        states.count(TrialState.PRUNED),
        states.count(TrialState.FAIL),
    )
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"sweep.yaml", "trials.csv", "optimization_history.png", "intermediate_values.png"} <= artifacts
    note = parent.data.tags["mlflow.note.content"]
    assert note.startswith("Optuna study `t`: 4 trials") and f"Best trial {best.number}:" in note
    (dataset,) = parent.inputs.dataset_inputs
    best_model = children[result["best_run_id"]].data.tags["logged_model_id"]
    assert [o.model_id for o in parent.outputs.model_outputs] == [best_model]
    assert dataset.dataset.digest == parent.data.tags["dataset_fingerprint"][:36]
    for trial in trials:
        if trial.state == TrialState.COMPLETE:
            assert len(trial.intermediate_values) == 2  # reported every epoch
            run = children[trial.user_attrs["mlflow_run_id"]]
            assert client.get_logged_model(run.data.tags["logged_model_id"]).source_run_id == run.info.run_id
        else:
            assert "logged_model_id" not in children[trial.user_attrs["mlflow_run_id"]].data.tags


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tone_root, tmp_path):
    sweep = write_sweep(
        tmp_path, n_trials=2, params={"model": "choice(tc_resnet)", "model.kernel_size": "choice(9, 0)"}
    )
    result = run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    trials = {t.params["model.kernel_size"]: t for t in study_of(tmp_path).get_trials()}
    assert trials[0].state == TrialState.FAIL and "kernel" in trials[0].user_attrs["fail_reason"].lower()
    assert trials[9].state == TrialState.COMPLETE
    assert result["n_failed"] == 1 and result["n_complete"] == 1
    client, runs = runs_of(tmp_path)
    failed = client.get_run(trials[0].user_attrs["mlflow_run_id"])
    assert failed.info.status == "FAILED" and failed.data.tags["optuna.state"] == "FAIL" and failed.data.tags["error"]


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_metric_constraints_are_recorded_for_the_sampler(tone_root, tmp_path):
    sweep = write_sweep(
        tmp_path,
        n_trials=2,
        params={"model": "choice(tc_resnet)", "optimizer.learning_rate": "choice(0.001, 0.003)"},
        constraints={"max_params": None, "min_best_val_accuracy": 2.0, "max_test_loss": 100.0},
    )
    result = run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    for trial in study_of(tmp_path).get_trials():
        values = dict(zip(trial.user_attrs["constraint_names"], trial.user_attrs["constraints"]))
        assert values["min_best_val_accuracy"] == pytest.approx(2.0 - trial.value)  # > 0: infeasible
        assert values["max_test_loss"] < 0  # feasible
    # no trial is feasible: no best trial, nothing exported, the closest one named
    assert result["best_trial"] is None and result["best_run_id"] is None and not result["constraints_met"]
    client, _ = runs_of(tmp_path)
    tags = client.get_run(result["parent_run_id"]).data.tags
    assert tags["constraints_met"] == "false" and "best_run_id" not in tags
    assert tags["closest_run_id"] == result["closest_run_id"]
    from kws_research.tracking.lookup import resolve_run_id

    with pytest.raises(KwsError, match=f"no trial of the latest sweep.*run_id={result['closest_run_id']}"):
        resolve_run_id(client, "best", None)
    with pytest.raises(KwsError, match="constraints.most_params"):
        run_sweep(load([f"sweep={sweep}", "constraints.most_params=3", *data_args(tone_root, tmp_path)]))


@pytest.mark.parametrize(
    "field,value,key",
    [
        ("constraints", {"max_false_command_rate": 0.2}, "constraints.max_false_command_rate"),
        ("metrics", ["no_such_metric"], "metrics"),
    ],
)
def test_a_metric_no_run_produces_is_refused_before_any_training(tone_root, tmp_path, field, value, key):
    sweep = write_sweep(tmp_path, n_trials=3, **{field: value})
    with pytest.raises(KwsError, match=f"^{key}: no run of this sweep produces"):
        run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    assert not (tmp_path / "optuna.db").exists() and not (tmp_path / "mlruns.db").exists()


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_rerun_continues_up_to_n_trials_without_rerunning_completed_ones(tone_root, tmp_path):
    sweep = write_sweep(
        tmp_path,
        n_trials=1,
        sampler={"name": "random"},
        params={"model": "choice(tc_resnet)", "optimizer.learning_rate": "tag(log, interval(1e-3, 1e-2))"},
    )
    first = run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    second = run_sweep(load([f"sweep={sweep}", "n_trials=2", *data_args(tone_root, tmp_path)]))
    trials = study_of(tmp_path).get_trials()
    assert [t.number for t in trials] == [0, 1] and all(t.state == TrialState.COMPLETE for t in trials)
    assert trials[0].params != trials[1].params  # the resumed sampler has its own seed
    client, _ = runs_of(tmp_path)
    assert client.get_run(second["parent_run_id"]).data.tags["resumed_from"] == first["parent_run_id"]


@pytest.mark.slow  # end to end; make test runs it, make test-fast does not
def test_a_trial_with_the_parameters_of_a_finished_one_is_not_trained_again(tone_root, tmp_path):
    sweep = write_sweep(
        tmp_path,
        n_trials=2,
        sampler={"name": "random"},
        params={"model": "choice(tc_resnet)", "optimizer.learning_rate": "choice(0.003)"},
    )
    result = run_sweep(load([f"sweep={sweep}", *data_args(tone_root, tmp_path)]))
    first, second = study_of(tmp_path).get_trials()
    assert first.state == TrialState.COMPLETE and first.params == second.params
    assert second.state == TrialState.PRUNED and second.user_attrs["duplicate_of"] == 0
    assert result["n_complete"] == 1 and result["best_trial"] == 0
    client, _ = runs_of(tmp_path)
    duplicate = client.get_run(second.user_attrs["mlflow_run_id"])
    assert duplicate.data.tags["optuna.state"] == "PRUNED" and "trial 0" in duplicate.data.tags["stopped"]
    assert "epochs_run" not in duplicate.data.metrics  # nothing was trained


def test_sweep_locks_are_keyed_on_the_resolved_storage(tmp_path, monkeypatch):
    from kws_research.sweeping.runner import lock_for

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    paths = []
    for folder in ("a", "b", "a"):
        monkeypatch.chdir(tmp_path / folder)
        paths.append(lock_for(load(["sweep=quick", "storage=sqlite:///optuna.db"])).path)
    assert paths[0] != paths[1] and paths[0] == paths[2]
    absolute = lock_for(load(["sweep=quick", f"storage=sqlite:///{tmp_path}/a/optuna.db"])).path
    assert absolute == paths[0]


def sweep_command(sweep: str, tone_root, tmp_path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "kws_research.sweep", f"sweep={sweep}", *data_args(tone_root, tmp_path), *extra]


def wait_for_running_trial(db: str, timeout: float = 240) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if os.path.exists(db):
            try:
                with sqlite3.connect(db, timeout=5) as conn:
                    rows = conn.execute(
                        "SELECT t.trial_id FROM trials t JOIN trial_user_attributes a ON a.trial_id = t.trial_id "
                        "WHERE t.state = 'RUNNING' AND a.key = 'mlflow_run_id'"
                    ).fetchall()
                    if rows:
                        return
            except sqlite3.OperationalError:
                pass
        time.sleep(0.5)
    raise AssertionError("no trial started running")


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_sigkill_during_a_trial_then_rerun_loses_nothing(tone_root, tmp_path, sig):
    sweep = write_sweep(
        tmp_path,
        n_trials=2,
        sampler={"name": "random"},
        pruner={"name": "none"},
        params={"model": "choice(tc_resnet)", "optimizer.learning_rate": "tag(log, interval(1e-3, 1e-2))"},
    )
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    command = sweep_command(sweep, tone_root, tmp_path, "trainer.epochs=30", "trainer.early_stopping_patience=null")
    victim = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    wait_for_running_trial(str(tmp_path / "optuna.db"))
    time.sleep(2)
    os.killpg(victim.pid, sig)
    _, stderr = victim.communicate(timeout=120)
    if sig == signal.SIGINT:  # Ctrl-C: the sweep says how to resume and exits 130
        assert victim.returncode == 130 and "Traceback" not in stderr, (victim.returncode, stderr[-3000:])
        assert stderr.strip().splitlines()[-1] == "error: interrupted; rerun the same command to resume the study"
    rerun = subprocess.run(
        sweep_command(sweep, tone_root, tmp_path, "trainer.epochs=2"),
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    trials = study_of(tmp_path).get_trials()
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and "fail_reason" not in killed[0].user_attrs
    retry = [t for t in trials if t.user_attrs.get("retry_of") == killed[0].number]
    assert len(retry) == 1 and retry[0].params == killed[0].params and retry[0].state == TrialState.COMPLETE
    assert sum(t.state == TrialState.COMPLETE for t in trials) == 2  # the retry and one new trial: the budget, met
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    client, runs = runs_of(tmp_path)
    assert not [r for r in runs if r.info.status == "RUNNING"]
    assert client.get_run(killed[0].user_attrs["mlflow_run_id"]).info.status == "KILLED"
    parents = sorted((r for r in runs if r.data.tags.get("role") == "sweep"), key=lambda r: r.info.start_time)
    assert [p.info.status for p in parents] == ["KILLED", "FINISHED"]
    assert parents[1].data.tags["resumed_from"] == parents[0].info.run_id
    assert last_json(rerun.stdout)["n_complete"] == 2


@pytest.mark.slow
def test_two_workers_share_one_study_without_duplicates(tone_root, tmp_path):
    sweep = write_sweep(
        tmp_path,
        n_trials=4,
        workers=2,
        sampler={"name": "random"},
        pruner={"name": "none"},
        params={"model": "choice(tc_resnet)", "optimizer.learning_rate": "tag(log, interval(1e-3, 1e-2))"},
    )
    result = subprocess.run(
        sweep_command(sweep, tone_root, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    trials = study_of(tmp_path).get_trials()
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    assert len({t.params["optimizer.learning_rate"] for t in trials}) == 4  # each worker has its own seed
    run_ids = [t.user_attrs["mlflow_run_id"] for t in trials]
    assert len(set(run_ids)) == 4
    _, runs = runs_of(tmp_path)
    assert {r.info.run_id for r in runs if r.data.tags.get("role") == "trial"} == set(run_ids)


def test_a_long_failure_reason_keeps_its_cause():
    from kws_research.errors import one_line

    error = RuntimeError("Graph execution error:\n" + "  frame\n" * 400 + "the actual cause: kernel not found")
    reason = one_line(error)
    assert len(reason) <= 1000 and reason.startswith("RuntimeError: Graph execution error:")
    assert reason.endswith("the actual cause: kernel not found") and "\n" not in reason
