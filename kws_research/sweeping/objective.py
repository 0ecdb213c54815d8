"""One Optuna trial = one training run through the train stage's Python API.

The trial samples its overrides, composes the train config, and runs it with
hooks: a size check that prunes over-budget models before any training, and a
Keras callback that reports validation accuracy every epoch to the pruner.
Whatever happens, the trial's MLflow child run carries ``optuna.state``.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable

import keras
import optuna
from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.sweeping.definition import SweepDefinition
from kws_research.sweeping.space import Dimension
from kws_research.training.run import RunHooks, run_training

log = logging.getLogger(__name__)

WORKER = f"{socket.gethostname()}:{os.getpid()}"
MONITOR = "val_accuracy"


class PruningCallback(keras.callbacks.Callback):
    """Reports validation accuracy per epoch; stops training when Optuna says prune."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial = trial
        self.stop_reason: str | None = None

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(MONITOR)
        if value is None:
            return
        self.trial.report(float(value), epoch)
        if self.trial.should_prune():
            self.stop_reason = f"pruned after epoch {epoch + 1} ({MONITOR} {float(value):.4f})"
            self.model.stop_training = True


def sample(trial: optuna.Trial, space: list[Dimension], base: list[str]) -> list[str]:
    """Overrides for this trial: group choices first, then the values that apply to them."""
    overrides = [d.override(d.suggest(trial)) for d in space if d.is_group]
    composed = compose("train", base + overrides)
    for dim in space:
        if dim.is_group:
            continue
        if dim.always or OmegaConf.select(composed, dim.name, default=_MISSING) is not _MISSING:
            overrides.append(dim.override(dim.suggest(trial)))
    return overrides


_MISSING = object()


SIZE_CONSTRAINTS = ("max_params", "max_macs")


def metric_constraints(constraints) -> list[tuple[str, str, float]]:
    """``min_<metric>`` / ``max_<metric>`` bounds other than the size budget, as
    (metric, min|max, bound), checked after training (e.g. ``max_false_command_rate``)."""
    found = []
    for key, bound in dict(constraints or {}).items():
        if key in SIZE_CONSTRAINTS or bound is None:
            continue
        kind, _, metric = key.partition("_")
        if kind not in ("min", "max") or not metric:
            raise ValueError(f"constraints.{key}: use max_params, max_macs, min_<metric> or max_<metric>")
        found.append((metric, kind, float(bound)))
    return found


def violations(bounds: list[tuple[str, str, float]], metrics: dict) -> list[float]:
    """Optuna's convention: a value > 0 violates its constraint."""
    out = []
    for metric, kind, bound in bounds:
        if metric not in metrics:
            raise KeyError(f"constraint on {metric!r}: the run did not produce that metric")
        value = float(metrics[metric])
        out.append(value - bound if kind == "max" else bound - value)
    return out


def size_check(constraints) -> Callable[[object, dict], str | None]:
    def check(model, sizes: dict) -> str | None:
        for key, metric in (("max_params", "params"), ("max_macs", "macs")):
            limit = constraints.get(key)
            if limit is not None and sizes[metric] > limit:
                return f"{metric} {sizes[metric]:,} > {key} {int(limit):,}"
        return None

    return check


def one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:1000]


class Objective:
    """Callable for ``study.optimize``; ``on_trial_start`` runs once the trial exists."""

    def __init__(self, definition: SweepDefinition, space: list[Dimension], parent_run_id: str | None,
                 client, experiment_id: str, on_trial_start: Callable[[], None] | None = None) -> None:
        self.definition = definition
        self.space = space
        self.parent_run_id = parent_run_id
        self.client = client
        self.experiment_id = experiment_id
        self.on_trial_start = on_trial_start

    def __call__(self, trial: optuna.Trial):
        if self.on_trial_start is not None:
            self.on_trial_start()
        trial.set_user_attr("worker", WORKER)
        definition = self.definition
        tags = {"role": "trial", "optuna.study": str(definition.study_name), "optuna.trial_number": str(trial.number)}
        run: dict[str, str] = {}

        def started(run_id: str) -> None:
            run["id"] = run_id
            trial.set_user_attr("mlflow_run_id", run_id)

        try:
            overrides = sample(trial, self.space, definition.base_overrides)
            trial.set_user_attr("overrides", overrides)
            log.info("trial %d: %s", trial.number, " ".join(overrides))
            cfg = compose("train", [*definition.base_overrides, *overrides, "role=trial"])
            callbacks = [] if definition.multi_objective else [PruningCallback(trial)]
            hooks = RunHooks(on_start=started, check_model=size_check(definition.constraints),
                             callbacks=callbacks, tags=tags, parent_run_id=self.parent_run_id)
            result = run_training(cfg, hooks)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            self._state(run, "FAIL")
            raise
        except Exception as exc:
            reason = one_line(exc)
            trial.set_user_attr("fail_reason", reason)
            if "id" not in run:
                started(self._failed_run_without_training(tags, reason))
            self._state(run, "FAIL")
            log.warning("trial %d failed: %s", trial.number, reason, exc_info=bool(os.environ.get("KWS_DEBUG")))
            raise
        for key, value in result.metrics.items():
            if key in ("params", "macs"):
                trial.set_user_attr(key, int(value))
        if result.stopped:
            trial.set_user_attr("pruned_reason", result.stopped)
            self._state(run, "PRUNED")
            raise optuna.TrialPruned(result.stopped)
        missing = [m for m in definition.metrics if m not in result.metrics]
        if missing:
            reason = f"metric(s) {missing} not produced by the run; check `metrics` in the sweep file"
            trial.set_user_attr("fail_reason", reason)
            self._state(run, "FAIL")
            raise KeyError(reason)
        bounds = metric_constraints(definition.constraints)
        if bounds:
            trial.set_user_attr("constraints", violations(bounds, result.metrics))
            trial.set_user_attr("constraint_names", [f"{kind}_{metric}" for metric, kind, _ in bounds])
        self._state(run, "COMPLETE")
        values = [float(result.metrics[m]) for m in definition.metrics]
        return values[0] if len(values) == 1 else values

    def _state(self, run: dict, state: str) -> None:
        if "id" in run:
            self.client.set_tag(run["id"], "optuna.state", state)

    def _failed_run_without_training(self, tags: dict, reason: str) -> str:
        """A trial that failed before its run existed (e.g. an impossible override) still
        shows up under the sweep in MLflow."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        all_tags = {**tags, "error": reason}
        if self.parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{tags['optuna.trial_number']}",
                                     tags=all_tags)
        self.client.set_terminated(run.info.run_id, "FAILED")
        return run.info.run_id
