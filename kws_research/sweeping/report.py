"""What a sweep leaves on its parent MLflow run: counts, the best trial, a trials
table and Optuna's plots (matplotlib backend)."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import optuna  # noqa: E402
from optuna.trial import TrialState  # noqa: E402

from kws_research.exporting.registry import registered_line  # noqa: E402
from kws_research.sweeping.definition import SweepDefinition  # noqa: E402
from kws_research.tracking.logged_model import logged_model_id  # noqa: E402
from kws_research.tracking.runs import artifact_dir, log_artifacts, log_metrics

log = logging.getLogger(__name__)


def feasible(trial: optuna.trial.FrozenTrial) -> bool:
    return all(v <= 0 for v in trial.user_attrs.get("constraints", []))


def violation(trial: optuna.trial.FrozenTrial) -> float:
    return sum(max(0.0, v) for v in trial.user_attrs.get("constraints", []))


def closest_infeasible(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The complete trial that misses the metric constraints by the least."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return min(complete, key=violation, default=None)


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best complete trial that meets the metric constraints; for several objectives,
    the Pareto-optimal one that is best on the first objective. None when no trial meets
    them: an infeasible trial is never the best one (see :func:`closest_infeasible`)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    candidates = [t for t in complete if feasible(t)]
    if not candidates:
        return None
    maximise = study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
    if len(study.directions) == 1:
        return (max if maximise else min)(candidates, key=lambda t: t.value)
    allowed = {t.number for t in candidates}
    pareto = [t for t in study.best_trials if t.number in allowed] or candidates
    return (max if maximise else min)(pareto, key=lambda t: t.values[0])


def summary(study: optuna.Study, definition: SweepDefinition) -> dict:
    trials = study.get_trials(deepcopy=False)
    states = [t.state for t in trials]
    best = best_trial(study)
    result = {
        "study_name": study.study_name,
        "storage": str(definition.storage),
        "n_trials": len(trials),
        "n_complete": states.count(TrialState.COMPLETE),
        "n_pruned": states.count(TrialState.PRUNED),
        "n_failed": states.count(TrialState.FAIL),
        "n_running": states.count(TrialState.RUNNING),
        "best_trial": best.number if best else None,
        "best_value": best.values[0] if best else None,
        "best_values": dict(zip(definition.metrics, best.values)) if best else None,
        "best_params": dict(best.params) if best else None,
        "best_run_id": best.user_attrs.get("mlflow_run_id") if best else None,
        "constraints_met": best is not None or not any_complete(states),
    }
    if best is None and any_complete(states):
        closest = closest_infeasible(study)
        result["closest_trial"] = closest.number
        result["closest_run_id"] = closest.user_attrs.get("mlflow_run_id")
        log.warning(
            "no trial met the metric constraints %s: the sweep has no best trial and exports nothing; "
            "the closest is trial %d (run %s), export it with run_id=%s if you accept that",
            dict(zip(closest.user_attrs.get("constraint_names", []), closest.user_attrs.get("constraints", []))),
            closest.number,
            result["closest_run_id"],
            result["closest_run_id"],
        )
    return result


def any_complete(states: list) -> bool:
    return TrialState.COMPLETE in states


def _plots(study: optuna.Study, definition: SweepDefinition, folder: Path) -> list[str]:
    from optuna.visualization import matplotlib as vis

    complete = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)))
    first = definition.metrics[0]
    target = (lambda t: t.values[0]) if definition.multi_objective else None
    plots = {"optimization_history": lambda: vis.plot_optimization_history(study, target=target, target_name=first)}
    if complete >= 2 and study.get_trials(deepcopy=False)[0].params:
        plots["param_importances"] = lambda: vis.plot_param_importances(study, target=target, target_name=first)
        plots["parallel_coordinate"] = lambda: vis.plot_parallel_coordinate(study, target=target, target_name=first)
    if not definition.multi_objective:
        plots["intermediate_values"] = lambda: vis.plot_intermediate_values(study)
    else:
        plots["pareto_front"] = lambda: vis.plot_pareto_front(study, target_names=list(definition.metrics))
    written = []
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax = draw()
            figure = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            figure.set_size_inches(10, 6)
            figure.tight_layout()
            figure.savefig(folder / f"{name}.png", dpi=100)
            written.append(f"{name}.png")
        except Exception as exc:  # a plot needs enough trials of the right kind; the rest still ships
            log.info("plot %s skipped: %s", name, exc)
        finally:
            plt.close("all")
    return written


def link_best_model(client, parent_run_id: str, best_run_id: str) -> None:
    """The best trial's logged model as an output of the parent run (its Logged models)."""
    from mlflow.entities import LoggedModelOutput

    model_id = logged_model_id(client, best_run_id)
    if model_id:
        client.log_outputs(parent_run_id, models=[LoggedModelOutput(model_id, step=0)])


def describe(client, parent_run_id: str, result: dict) -> str:
    """The parent run's description (MLflow's run note): counts, best trial, and the
    comparison table of the exported model when the final stage ran."""
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NOTE

    lines = [
        f"Optuna study `{result.get('study_name')}`: {result.get('n_trials', 0)} trials "
        f"({result.get('n_complete', 0)} complete, {result.get('n_pruned', 0)} pruned, "
        f"{result.get('n_failed', 0)} failed)."
    ]
    if result.get("best_run_id"):
        lines.append(
            f"Best trial {result['best_trial']}: {result['best_values']} (run {result['best_run_id']}), "
            f"params {result['best_params']}."
        )
    elif result.get("closest_run_id"):
        lines.append(f"No trial met the metric constraints; the closest is run {result['closest_run_id']}.")
    exported = result.get("final_stage") or {}
    if exported:
        verified = "verified" if exported.get("coreml_verified") else "NOT verified"
        lines.append(f"Exported to Core ML ({verified} against Keras).")
        if registered := registered_line(exported):
            lines.append(registered)
        if exported.get("comparison"):
            lines += ["", exported["comparison"]]
    text = "\n".join(lines)
    client.set_tag(parent_run_id, MLFLOW_RUN_NOTE, text)
    return text


def log_report(client, parent_run_id: str, study: optuna.Study, definition: SweepDefinition) -> dict:
    """Write the sweep's metrics, tags and artifacts on its parent run; return the summary."""
    result = summary(study, definition)
    log_metrics(client, parent_run_id, {k: result[k] for k in ("n_complete", "n_pruned", "n_failed")})
    if result["best_value"] is not None:
        log_metrics(client, parent_run_id, {"best_value": result["best_value"]})
        client.set_tag(parent_run_id, "best_trial", str(result["best_trial"]))
    if result["best_run_id"]:
        client.set_tag(parent_run_id, "best_run_id", result["best_run_id"])
        link_best_model(client, parent_run_id, result["best_run_id"])
    client.set_tag(parent_run_id, "constraints_met", str(result["constraints_met"]).lower())
    if result.get("closest_run_id"):
        client.set_tag(parent_run_id, "closest_run_id", result["closest_run_id"])
    with artifact_dir() as folder:
        (folder / "sweep.yaml").write_text(definition.to_yaml())
        frame = study.trials_dataframe(
            attrs=(
                "number",
                "value" if not definition.multi_objective else "values",
                "state",
                "params",
                "user_attrs",
                "duration",
                "datetime_start",
            )
        )
        frame.to_csv(folder / "trials.csv", index=False)
        result["plots"] = _plots(study, definition, folder)
        log_artifacts(client, parent_run_id, folder)
    return result
