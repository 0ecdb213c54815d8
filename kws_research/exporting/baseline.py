"""The baseline every export is compared with: the tutorial model trained on the same data.

Found by ``role=baseline`` and the test split it was measured on (the
``test_fingerprint`` tag: classes, input contract, test clips), so runs that differ
only in training-only data options share one baseline; runs from before that tag
are matched by the whole data set fingerprint. Trained first when missing
(``+experiment=baseline`` on the source run's data set config).
"""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from kws_research.config import compose
from kws_research.errors import KwsError
from kws_research.tracking.lookup import get_run
from kws_research.tracking.source import SourceRun, fetch
from kws_research.training.run import run_training

log = logging.getLogger(__name__)


def find_baseline(client, test_fingerprint: str, dataset_fingerprint: str):
    """The newest finished baseline measured on the same test split."""
    experiments = [e.experiment_id for e in client.search_experiments()]
    for key, value in (("test_fingerprint", test_fingerprint), ("dataset_fingerprint", dataset_fingerprint)):
        runs = client.search_runs(
            experiments,
            f"tags.role = 'baseline' and tags.{key} = '{value}' and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time DESC"],
            max_results=20,
        )
        found = next((r for r in runs if "test_accuracy" in r.data.metrics), None)
        if found is not None:
            return found
    return None


def same_test_split(run, test_fingerprint: str, dataset_fingerprint: str) -> bool:
    tags = run.data.tags
    if tags.get("test_fingerprint"):
        return tags["test_fingerprint"] == test_fingerprint
    return tags.get("dataset_fingerprint") == dataset_fingerprint


def train_baseline(source: SourceRun, tracking: dict, overrides: list[str]) -> str:
    cfg = compose("train", ["+experiment=baseline", *overrides])
    cfg.dataset = OmegaConf.create(source.config["dataset"])
    cfg.tracking = OmegaConf.create(tracking)
    experiment = source.config.get("tracking", {}).get("experiment")
    if experiment:
        cfg.tracking.experiment = experiment
    print(
        f"no baseline run for data set {source.fingerprint[:12]}: training it first (+experiment=baseline)", flush=True
    )
    result = run_training(cfg)
    return result.run_id


def baseline_for(
    client, source: SourceRun, test_fingerprint: str, option: str, tracking: dict, overrides: list[str], folder
) -> SourceRun | None:
    """The baseline run to compare with (``option``: auto | skip | <run id>), fetched;
    ``test_fingerprint`` is that of the data the source run is verified on."""
    option = str(option)
    if option == "skip":
        return None
    if option == "auto":
        found = find_baseline(client, test_fingerprint, source.fingerprint)
        run_id = found.info.run_id if found else train_baseline(source, tracking, overrides)
    else:
        run_id = option
        run = get_run(client, run_id, "baseline")
        if not same_test_split(run, test_fingerprint, source.fingerprint):
            other = run.data.tags.get("dataset_fingerprint", "")
            raise KwsError(
                f"baseline: run {run_id} was trained on data set {other[:12] or '?'} with another test "
                f"split than the exported run (data set {source.fingerprint[:12]}); pass baseline=auto "
                "(find or train the right one) or a baseline run of the same data"
            )
        if "test_accuracy" not in run.data.metrics:
            raise KwsError(
                f"baseline: run {run_id} has no test_accuracy (state {run.info.status}); pass a finished "
                "training run, or baseline=auto to find or train one"
            )
    return fetch(client, run_id, folder)
