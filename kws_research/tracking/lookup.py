"""Finding a finished run: a run id, the latest sweep's best trial or a registered model
version, and the run itself, without loading TensorFlow, so that a wrong run id is one
line before any stage loads a model."""

from __future__ import annotations

from kws_research.errors import KwsError


def parse_model_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``models:/<name>@<alias>`` or ``models:/<name>/<version>`` -> (name, alias, version)."""
    body = uri[len("models:/") :]
    if "@" in body:
        name, alias = body.split("@", 1)
        return name, alias, None
    name, _, version = body.rpartition("/")
    if not name or not version.isdigit():
        raise KwsError(f"run_id: {uri!r} is not models:/<name>@<alias> or models:/<name>/<version>")
    return name, None, version


def run_of_model_uri(client, uri: str) -> str:
    """The training run behind a registered model version (what ``run_id=models:/...`` exports)."""
    from mlflow.exceptions import MlflowException

    name, alias, version = parse_model_uri(uri)
    try:
        found = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as exc:
        raise KwsError(
            f"run_id: no registered model version {uri} in {client.tracking_uri}; list them in the MLflow UI "
            "(Models) or export a run first"
        ) from exc
    if not found.run_id:
        raise KwsError(f"run_id: registered model version {uri} has no source run; export a run id instead")
    return found.run_id


def latest_sweep(client, sweep: str | None):
    """The most recent sweep parent run (of study ``sweep`` if given) that reached a
    verdict: a best run, or the finding that no trial met its constraints."""
    query = "tags.role = 'sweep'"
    if sweep:
        query += f" and tags.`optuna.study` = '{sweep}'"
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, query, order_by=["attributes.start_time DESC"], max_results=50)
    return next(
        (r for r in runs if r.data.tags.get("best_run_id") or r.data.tags.get("constraints_met") == "false"), None
    )


def resolve_run_id(client, run_id: str, sweep: str | None) -> str:
    """A run id, ``best`` (the latest sweep's best trial) or a registered model version
    (``models:/<name>@<alias>``, ``models:/<name>/<version>``) -> the run id."""
    if str(run_id).startswith("models:/"):
        return run_of_model_uri(client, str(run_id))
    if str(run_id) != "best":
        return str(run_id)
    parent = latest_sweep(client, sweep)
    which = f" of study {sweep!r}" if sweep else ""
    if parent is None:
        raise KwsError(
            f"run_id=best: no finished sweep{which} with a best trial in {client.tracking_uri}; "
            "run `make sweep` first or pass run_id=<MLflow run id>"
        )
    if not parent.data.tags.get("best_run_id"):
        closest = parent.data.tags.get("closest_run_id", "?")
        raise KwsError(
            f"run_id=best: no trial of the latest sweep{which} (run {parent.info.run_id}) met its metric "
            f"constraints, so it has no best run; the closest is run {closest}: export it with "
            f"run_id={closest} if you accept that, or relax the constraints and rerun the sweep"
        )
    return parent.data.tags["best_run_id"]


def get_run(client, run_id: str, key: str = "run_id"):
    """The run, or one line naming ``key`` (the option that named it)."""
    from mlflow.exceptions import MlflowException

    try:
        run = client.get_run(run_id)
    except MlflowException as exc:
        raise KwsError(
            f"{key}: no MLflow run {run_id!r} in {client.tracking_uri}; find run ids with "
            "`make ui` or the last line of `train`/`sweep`"
        ) from exc
    if run.info.lifecycle_stage == "deleted":
        raise KwsError(
            f"run_id: run {run_id} is deleted (in MLflow's trash); restore it first "
            f"(`mlflow runs restore --run-id {run_id}` with MLFLOW_TRACKING_URI={client.tracking_uri}) "
            "or pass another run"
        )
    return run


def existing_run_id(client, run_id: str, sweep: str | None) -> str:
    """``run_id`` resolved (:func:`resolve_run_id`) and shown to exist in the store."""
    found = resolve_run_id(client, run_id, sweep)
    get_run(client, found)
    return found
