"""``--reuse``: a benchmark run is not trained again when its store already holds a finished
run of the same resolved config, trained by the same committed code on the same kind of
machine with the same CPU kernels.

Training is deterministic on one machine (op determinism, seeded), so such a run is the run
this invocation would train: a bench that adds one config to a table, or a bench rerun after
an interruption, trains only what is missing. Every bench run is tagged with its key, whether
``--reuse`` is given or not, so a later ``--reuse`` finds it. No key (no reuse) when the code
has uncommitted changes or is not a git checkout. Assumed, not checked: the data folders the
config names hold the same files as when the run was trained.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os

from omegaconf import DictConfig, OmegaConf

from kws_research.devices import device_label
from kws_research.tracking.runs import flatten, git_commit

TAG = "bench.reuse_key"


def add_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="read a finished run of the same config, commit and machine from the store instead of training it again",
    )


def reuse_key(cfg: DictConfig) -> str | None:
    """What makes two runs the same run; None when the code is not a clean commit."""
    commit = git_commit()
    if commit == "unknown" or commit.endswith("+dirty"):
        return None
    same = {
        "commit": commit,
        "device": device_label(),
        "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", ""),
        "config": flatten(OmegaConf.to_container(cfg, resolve=True)),
    }
    return hashlib.sha256(json.dumps(same, sort_keys=True).encode()).hexdigest()


def finished_run(cfg: DictConfig, key: str) -> dict | None:
    """``{"run_id", **metrics}`` of the newest finished run tagged ``key`` in the config's store
    and experiment; None when there is none."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(cfg.tracking.uri)
    experiment = client.get_experiment_by_name(cfg.tracking.experiment) if cfg.tracking.experiment else None
    if experiment is None:
        return None
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{TAG}` = '{key}' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1,
    )
    return {"run_id": runs[0].info.run_id, **runs[0].data.metrics} if runs else None


def mark(cfg: DictConfig, run_id: str, key: str) -> None:
    from mlflow.tracking import MlflowClient

    MlflowClient(cfg.tracking.uri).set_tag(run_id, TAG, key)
