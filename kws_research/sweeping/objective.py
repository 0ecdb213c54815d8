"""One Optuna trial = one training run through the train stage's Python API.

The trial samples its overrides, composes the train config, and runs it with
hooks: a size check that prunes over-budget models before any training, and a
Keras callback that reports validation accuracy every epoch to the pruner.
Whatever happens, the trial's MLflow child run carries ``optuna.state``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable

import keras
import optuna
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from kws_research.config import compose
from kws_research.errors import ConfigError, KwsError, one_line
from kws_research.processes import current_owner
from kws_research.sweeping.definition import SweepDefinition
from kws_research.sweeping.space import Dimension
from kws_research.training.result import RunHooks
from kws_research.training.run import run_training
from kws_research.training.validation import produced_metrics

log = logging.getLogger(__name__)

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


def check_metrics(definition: SweepDefinition, base: DictConfig) -> None:
    """Refuse, before any training, a sweep whose objective or constraints name a metric
    that the runs it composes never produce."""
    produced = produced_metrics(base)
    known = ", ".join(sorted(produced))
    for metric in definition.metrics:
        if metric not in produced:
            hint = "streaming metrics need stream_eval=true; " if metric.startswith(("stream_", "detector_")) else ""
            raise ConfigError("metrics", f"no run of this sweep produces {metric!r}", f"{hint}choose from {known}")
    try:
        bounds = metric_constraints(definition.constraints)
    except ValueError as exc:
        raise KwsError(str(exc)) from None
    for metric, kind, _ in bounds:
        if metric not in produced:
            raise ConfigError(
                f"constraints.{kind}_{metric}",
                f"no run of this sweep produces {metric!r}",
                "open-set metrics need dataset.heldout_unknown_words, gated ones openset.gate=true, streaming ones "
                f"stream_eval=true; produced: {known}",
            )


def violations(bounds: list[tuple[str, str, float]], metrics: dict) -> list[float]:
    """Optuna's convention: a value > 0 violates its constraint."""
    return [float(metrics[m]) - bound if kind == "max" else bound - float(metrics[m]) for m, kind, bound in bounds]


def duplicate_of(trial: optuna.Trial) -> int | None:
    """The number of a finished or running trial with exactly this trial's parameters.

    Trials cut short by a dead worker do not count (they are retried on purpose)."""
    for other in trial.study.get_trials(deepcopy=False):
        if other.number == trial.number or other.params != trial.params:
            continue
        if other.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING) or (
            other.state == TrialState.FAIL and "fail_reason" in other.user_attrs
        ):
            return other.number
    return None


def size_check(constraints) -> Callable[[object, dict], str | None]:
    def check(model, sizes: dict) -> str | None:
        for key, metric in (("max_params", "params"), ("max_macs", "macs")):
            limit = constraints.get(key)
            if limit is not None and sizes[metric] > limit:
                return f"{metric} {sizes[metric]:,} > {key} {int(limit):,}"
        return None

    return check


class Objective:
    """Callable for ``study.optimize``; ``on_trial_start`` runs once the trial exists."""

    def __init__(
        self,
        definition: SweepDefinition,
        space: list[Dimension],
        parent_run_id: str | None,
        client,
        experiment_id: str,
        on_trial_start: Callable[[], None] | None = None,
    ) -> None:
        self.definition = definition
        self.space = space
        self.parent_run_id = parent_run_id
        self.client = client
        self.experiment_id = experiment_id
        self.on_trial_start = on_trial_start

    def __call__(self, trial: optuna.Trial):
        trial.set_user_attr("worker", current_owner())
        definition = self.definition
        tags = {"role": "trial", "optuna.study": str(definition.study_name), "optuna.trial_number": str(trial.number)}
        run: dict[str, str] = {}

        def started(run_id: str) -> None:
            run["id"] = run_id
            trial.set_user_attr("mlflow_run_id", run_id)

        try:
            overrides = sample(trial, self.space, definition.base_overrides)
            trial.set_user_attr("overrides", overrides)
            same = duplicate_of(trial)
            if self.on_trial_start is not None:  # sampled and checked: other workers may go on
                self.on_trial_start()
            if same is not None:
                reason = f"same parameters as trial {same}; not trained again"
                trial.set_user_attr("duplicate_of", same)
                trial.set_user_attr("pruned_reason", reason)
                started(self._run_without_training(tags, reason, "FINISHED"))
                self._state(run, "PRUNED")
                log.info("trial %d: %s", trial.number, reason)
                raise optuna.TrialPruned(reason)
            log.info("trial %d: %s", trial.number, " ".join(overrides))
            cfg = compose("train", [*definition.base_overrides, *overrides, "role=trial"])
            callbacks = [] if definition.multi_objective else [PruningCallback(trial)]
            hooks = RunHooks(
                on_start=started,
                check_model=size_check(definition.constraints),
                callbacks=callbacks,
                tags=tags,
                parent_run_id=self.parent_run_id,
            )
            result = run_training(cfg, hooks)
        except KeyboardInterrupt:
            trial.set_user_attr("interrupted", True)
            self._state(run, "FAIL")
            raise
        except optuna.TrialPruned:
            raise
        except Exception as exc:
            reason = one_line(exc)
            trial.set_user_attr("fail_reason", reason)
            if "id" not in run:
                started(self._run_without_training(tags, reason, "FAILED"))
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
        bounds = metric_constraints(definition.constraints)
        missing = [m for m in [*definition.metrics, *(b[0] for b in bounds)] if m not in result.metrics]
        if missing:
            reason = f"metric(s) {missing} not produced by the run (e.g. an empty test split)"
            trial.set_user_attr("fail_reason", reason)
            self._state(run, "FAIL")
            raise KeyError(reason)
        if bounds:
            trial.set_user_attr("constraints", violations(bounds, result.metrics))
            trial.set_user_attr("constraint_names", [f"{kind}_{metric}" for metric, kind, _ in bounds])
        self._state(run, "COMPLETE")
        values = [float(result.metrics[m]) for m in definition.metrics]
        return values[0] if len(values) == 1 else values

    def _state(self, run: dict, state: str) -> None:
        if "id" in run:
            self.client.set_tag(run["id"], "optuna.state", state)

    def _run_without_training(self, tags: dict, reason: str, status: str) -> str:
        """A trial that ended before its training run existed (an impossible override, a
        duplicate) still shows up under the sweep in MLflow, with the reason."""
        from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

        all_tags = {**tags, "error" if status == "FAILED" else "stopped": reason}
        if self.parent_run_id:
            all_tags[MLFLOW_PARENT_RUN_ID] = self.parent_run_id
        run = self.client.create_run(self.experiment_id, run_name=f"trial-{tags['optuna.trial_number']}", tags=all_tags)
        self.client.set_terminated(run.info.run_id, status)
        return run.info.run_id
