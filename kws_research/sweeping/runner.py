"""Running a study's trials: the worker loop, the trial budget, and never losing work.

* Budget: ``n_trials`` counts finished trials (complete, pruned, failed with an
  error) plus the ones running now; a rerun continues up to it. Trials cut short
  by a dead or interrupted worker do not count: they are failed and enqueued
  again with the same parameters (``retry_of``), so nothing is lost and nothing
  that completed runs twice.
* Dead workers: a RUNNING trial whose worker process on this host is gone is
  failed at once; trials of other hosts are failed by Optuna's heartbeat after
  the grace period. Their MLflow runs end KILLED.
* Parallel workers on one machine take a file lock around "check the budget,
  start a trial", so they never overshoot ``n_trials``.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from kws_research.errors import KwsError
from kws_research.locks import FileLock
from kws_research.processes import check_interrupted, owner_is_dead
from kws_research.sweeping import factories
from kws_research.sweeping.definition import SweepDefinition
from kws_research.sweeping.objective import Objective, metric_constraints
from kws_research.sweeping.space import Dimension

if TYPE_CHECKING:
    from kws_research.sweeping.context import SweepContext

log = logging.getLogger(__name__)

KILLED_REASON = "worker stopped before the trial finished (interrupted, killed, or stale heartbeat)"
INVOCATIONS = "sampler_invocations"


def counts_toward_budget(trial: FrozenTrial) -> bool:
    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and "fail_reason" in trial.user_attrs


def budget_used(study: optuna.Study) -> int:
    return sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))


def retried(study: optuna.Study, number: int) -> bool:
    return any(t.user_attrs.get("retry_of") == number for t in study.get_trials(deepcopy=False))


def end_interrupted_trial(study: optuna.Study, trial: FrozenTrial, client) -> None:
    """A trial failed by interruption: KILLED in MLflow and enqueued again (once)."""
    run_id = trial.user_attrs.get("mlflow_run_id")
    if run_id:
        try:
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "error", KILLED_REASON)
                client.set_terminated(run_id, "KILLED")
            client.set_tag(run_id, "optuna.state", "FAIL")
        except Exception as exc:  # the run may live in a store this process cannot reach
            log.warning("could not mark MLflow run %s KILLED: %s", run_id, exc)
    if not retried(study, trial.number) and "fail_reason" not in trial.user_attrs:
        study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number}, skip_if_exists=False)
        log.info("trial %d was interrupted; enqueued again with the same parameters", trial.number)


def fail_dead_local_trials(study: optuna.Study, client) -> None:
    """RUNNING trials whose worker process on this host is gone end FAIL (through the
    public ``study.tell``, which any process may call for any trial number)."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not owner_is_dead(trial.user_attrs.get("worker")):
            continue
        study.tell(trial.number, state=TrialState.FAIL, skip_if_finished=True)
        failed = study.get_trials(deepcopy=False)[trial.number]
        if failed.state != TrialState.FAIL:
            continue  # it finished in the meantime
        log.info("trial %d: its worker %s is gone; marking it failed", trial.number, trial.user_attrs["worker"])
        end_interrupted_trial(study, failed, client)


def recover(study: optuna.Study, client) -> None:
    """Fail trials of dead local workers and, via heartbeats, of dead remote ones."""
    fail_dead_local_trials(study, client)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,)):
        if trial.user_attrs.get("interrupted") and not retried(study, trial.number):
            end_interrupted_trial(study, trial, client)


def _sampler_and_pruner(definition: SweepDefinition, space: list[Dimension]):
    try:
        bounds = metric_constraints(definition.constraints)
    except ValueError as exc:
        raise KwsError(str(exc)) from exc
    sampler = factories.sampler(definition.sampler, int(definition.seed), space, len(bounds))
    return sampler, factories.pruner(definition.pruner, definition.multi_objective)


def check_search(definition: SweepDefinition, space: list[Dimension]) -> None:
    """Build the sampler and the pruner once, before any store exists, so a bad option
    (``sampler.n_startup_trials=abc``) is refused before a study or a run is created."""
    _sampler_and_pruner(definition, space)


def open_study(definition: SweepDefinition, space: list[Dimension], client) -> optuna.Study:
    """Create the study or load it to continue; a study with other directions is refused."""
    # A failing trial is reported in one line by the objective (KWS_DEBUG=1 adds the
    # traceback); Optuna's own report would repeat it with a traceback every time.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    storage = factories.storage(
        str(definition.storage),
        definition.heartbeat_interval,
        on_stale=lambda study, trial: end_interrupted_trial(study, trial, client),
    )
    sampler, pruner = _sampler_and_pruner(definition, space)
    name = str(definition.study_name)
    directions = list(definition.directions)
    try:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    except KeyError:
        try:
            return optuna.create_study(
                study_name=name, storage=storage, sampler=sampler, pruner=pruner, directions=directions
            )
        except optuna.exceptions.DuplicatedStudyError:  # a parallel worker created it first
            study = optuna.load_study(study_name=name, storage=storage, sampler=sampler, pruner=pruner)
    existing = [d.name.lower() for d in study.directions]
    if existing != directions:
        raise KwsError(
            f"study_name: study {name!r} in {definition.storage} optimises {existing}, this sweep "
            f"{directions}; choose another study_name"
        )
    return study


def trial_budget(definition: SweepDefinition, space: list[Dimension]) -> int:
    """``n_trials``, or the grid's size when a grid sampler has fewer points."""
    if str(definition.sampler.get("name", "")).lower() != "grid":
        return int(definition.n_trials)
    size = 1
    for dim in space:
        size *= len(dim.grid_values())
    if size < definition.n_trials:
        log.info("the grid has %d points; n_trials=%d is capped to it", size, definition.n_trials)
    return min(int(definition.n_trials), size)


def storage_identity(url: str) -> str:
    """The storage a URL names: relative sqlite/journal paths resolved against the
    working directory, so ``sqlite:///optuna.db`` in two checkouts are two storages."""
    for prefix in ("sqlite:///", "journal:"):
        if url.startswith(prefix):
            return prefix + str(Path(url[len(prefix) :]).expanduser().resolve())
    return url


def lock_for(definition: SweepDefinition) -> FileLock:
    identity = f"{storage_identity(str(definition.storage))}|{definition.study_name}"
    key = hashlib.sha1(identity.encode()).hexdigest()[:16]
    return FileLock(Path(tempfile.gettempdir()) / f"kws-sweep-{key}.lock")


def invocation_seed(seed: int, invocation: int) -> int:
    """The study seed for the first sampler that joins a study (a fresh sweep stays
    reproducible); a derived one for every later sampler (a resumed sweep, another
    worker), so they do not propose the settings the first one already ran."""
    if invocation == 0:
        return int(seed)
    return int(hashlib.sha256(f"{seed}:{invocation}".encode()).hexdigest()[:8], 16)


def join_study(study: optuna.Study, definition: SweepDefinition, space: list[Dimension]) -> None:
    """Give this worker its own sampler seed (call under the sweep lock)."""
    invocation = int(study.user_attrs.get(INVOCATIONS, 0))
    study.set_user_attr(INVOCATIONS, invocation + 1)
    seed = invocation_seed(int(definition.seed), invocation)
    study.sampler = factories.sampler(definition.sampler, seed, space, len(metric_constraints(definition.constraints)))


def work(context: SweepContext, parent_run_id: str | None, deadline: float | None) -> int:
    """Run trials until the study's budget is spent (or ``deadline``); returns trials run here."""
    definition, space, study, client = context.definition, context.space, context.study, context.client
    experiment = context.experiment_id
    lock = lock_for(definition)
    with lock:
        join_study(study, definition, space)
    objective = Objective(definition, space, parent_run_id, client, experiment, on_trial_start=lock.release)
    budget = trial_budget(definition, space)
    ran = 0
    while True:
        check_interrupted()
        lock.acquire()
        try:
            recover(study, client)
            if budget_used(study) >= budget:
                break
            if deadline is not None and time.time() >= deadline:
                log.info("timeout reached; stopping this worker")
                break
            study.optimize(objective, n_trials=1, catch=(Exception,), gc_after_trial=True)
            ran += 1
        finally:
            lock.release()
    return ran
