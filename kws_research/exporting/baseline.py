"""The baseline every export is compared with: the tutorial model trained on the same data.

Found by ``role=baseline`` and the data set fingerprint; trained first when
missing (``+experiment=baseline`` on the source run's data set config).
"""

from __future__ import annotations

import logging

from omegaconf import OmegaConf

from kws_research.errors import KwsError
from kws_research.exporting.source import SourceRun, fetch, get_run

log = logging.getLogger(__name__)


def find_baseline(client, fingerprint: str):
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(
        experiments,
        f"tags.role = 'baseline' and tags.dataset_fingerprint = '{fingerprint}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"], max_results=20)
    return next((r for r in runs if "test_accuracy" in r.data.metrics), None)


def train_baseline(source: SourceRun, tracking: dict, overrides: list[str]) -> str:
    from kws_research.config import compose
    from kws_research.training.run import run_training

    cfg = compose("train", ["+experiment=baseline", *overrides])
    cfg.dataset = OmegaConf.create(source.config["dataset"])
    cfg.tracking = OmegaConf.create(tracking)
    experiment = source.config.get("tracking", {}).get("experiment")
    if experiment:
        cfg.tracking.experiment = experiment
    print(f"no baseline run for data set {source.fingerprint[:12]}: training it first (+experiment=baseline)",
          flush=True)
    result = run_training(cfg)
    return result.run_id


def baseline_for(client, source: SourceRun, option: str, tracking: dict, overrides: list[str], folder) -> SourceRun | None:
    """The baseline run to compare with (``option``: auto | skip | <run id>), fetched."""
    option = str(option)
    if option == "skip":
        return None
    if option == "auto":
        found = find_baseline(client, source.fingerprint)
        run_id = found.info.run_id if found else train_baseline(source, tracking, overrides)
    else:
        run_id = option
        other = get_run(client, run_id).data.tags.get("dataset_fingerprint", "")
        if other != source.fingerprint:
            raise KwsError(f"baseline: run {run_id} was trained on data set {other[:12] or '?'}, the exported run "
                           f"on {source.fingerprint[:12]}; pass baseline=auto (find or train the right one) or a "
                           "baseline run of the same data")
    return fetch(client, run_id, folder)
