"""One sweep invocation: the parent MLflow run, the workers, the report, the final stage."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time

from omegaconf import OmegaConf

from kws_research.exporting.stage import export_best
from kws_research.processes import current_owner
from kws_research.sweeping.context import open_context
from kws_research.sweeping.definition import SweepDefinition
from kws_research.sweeping.report import describe, log_report
from kws_research.sweeping.runner import trial_budget, work
from kws_research.tracking.datasets import log_dataset_input
from kws_research.tracking.runs import flatten, git_commit, log_metrics, log_params, tracked_run

log = logging.getLogger(__name__)


def worker_count(definition: SweepDefinition, budget: int) -> int:
    """``workers``, but never more processes than trials; above the cores a warning
    (each TensorFlow process then gets one thread and they compete)."""
    workers = min(int(definition.workers), max(1, budget))
    if workers < int(definition.workers):
        log.info("workers=%d capped to %d: the sweep has %d trial(s)", definition.workers, workers, budget)
    cores = os.cpu_count() or 1
    if workers > cores:
        log.warning(
            "workers=%d is more than the %d CPU core(s) here; trials will run slower, not faster", workers, cores
        )
    return workers


def run_workers(definition: SweepDefinition, parent_run_id: str, deadline: float | None, workers: int) -> None:
    """``workers`` processes on this machine sharing the study."""
    threads = str(max(1, (os.cpu_count() or 2) // workers))
    env = dict(os.environ, TF_NUM_INTRAOP_THREADS=threads, TF_NUM_INTEROP_THREADS="1", OMP_NUM_THREADS=threads)
    spec = {
        "name": definition.name,
        "config": OmegaConf.to_container(definition.config, resolve=True),
        "run_overrides": definition.run_overrides,
        "parent_run_id": parent_run_id,
        "deadline": deadline,
    }
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as handle:
        json.dump(spec, handle)
    processes = [
        subprocess.Popen([sys.executable, "-m", "kws_research.sweeping.worker", handle.name], env=env)
        for _ in range(workers)
    ]
    try:
        codes = [p.wait() for p in processes]
    except KeyboardInterrupt:
        for p in processes:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in processes:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        raise
    finally:
        os.unlink(handle.name)
    failed = [c for c in codes if c != 0]
    if failed:
        log.warning("%d worker(s) exited with errors %s; the study keeps what they finished", len(failed), failed)


def run_sweep(definition: SweepDefinition) -> dict:
    """Search, report on the parent run, then run the final stage on the best trial."""
    started = time.perf_counter()
    context = open_context(definition)  # decodes the data once, before any worker
    timings = {"data": time.perf_counter() - started}
    data, client, experiment, study = context.data, context.client, context.experiment_id, context.study
    previous = list(study.user_attrs.get("mlflow_parent_runs", []))  # dead ones were ended by client_for
    tags = {
        "role": "sweep",
        "sweep": definition.name,
        "optuna.study": str(definition.study_name),
        "optuna.storage": str(definition.storage),
        "dataset": data.name,
        "dataset_fingerprint": data.fingerprint,
        "git_commit": git_commit(),
    }
    if previous:
        tags["resumed_from"] = ",".join(p["run_id"] for p in previous)
    deadline = time.time() + float(definition.timeout) if definition.timeout else None
    with tracked_run(client, experiment, f"sweep-{definition.study_name}", tags) as parent:
        study.set_user_attr("mlflow_parent_runs", previous + [{"run_id": parent, "worker": current_owner()}])
        log_params(client, parent, flatten({"sweep": OmegaConf.to_container(definition.config, resolve=True)}))
        log_params(client, parent, {"run_overrides": json.dumps(definition.run_overrides)})
        log_dataset_input(client, parent, data)
        try:
            workers = worker_count(definition, trial_budget(definition, context.space))
            searched = time.perf_counter()
            if workers == 1:
                work(context, parent, deadline)
            else:
                run_workers(definition, parent, deadline, workers)
            timings["study"] = time.perf_counter() - searched
        finally:
            try:
                result = log_report(client, parent, study, definition)
            except Exception as exc:
                log.warning("could not write the sweep report: %s", exc)
                result = {}
    result.update(parent_run_id=parent, experiment_id=experiment, tracking_uri=client.tracking_uri)
    try:
        result["final_stage"] = final_stage(definition, result)
    finally:
        final = result.get("final_stage") or {}
        if final:
            timings["baseline"] = final.get("baseline_seconds", 0.0)
            timings["export"] = final.get("seconds", 0.0) - timings["baseline"]
        result["timings"] = {stage: round(seconds, 1) for stage, seconds in timings.items()}
        log_metrics(client, parent, {f"time_{stage}_s": seconds for stage, seconds in result["timings"].items()})
        describe(client, parent, result)
    return result


def final_stage(definition: SweepDefinition, result: dict) -> dict | None:
    """The hook after the search: export the best run (see ``export`` in the sweep file)."""
    options = definition.config.get("export") or {}
    if not options.get("enabled") or not result.get("best_run_id"):
        return None

    return export_best(
        result["best_run_id"], OmegaConf.to_container(options, resolve=True), tracking_uri=result["tracking_uri"]
    )
