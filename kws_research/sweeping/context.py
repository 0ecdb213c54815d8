"""What one sweep process opens once and hands to its worker loop: the search space,
the composed base config, the prepared data, the MLflow client and experiment, and
the Optuna study."""

from __future__ import annotations

from dataclasses import dataclass

import optuna
from omegaconf import DictConfig, OmegaConf

from kws_research.config import compose
from kws_research.data.dataset import PreparedData, prepare
from kws_research.sweeping.definition import SweepDefinition
from kws_research.sweeping.objective import check_metrics
from kws_research.sweeping.runner import check_search, open_study
from kws_research.sweeping.space import Dimension, parse
from kws_research.tracking import store


@dataclass
class SweepContext:
    definition: SweepDefinition
    space: list[Dimension]
    base: DictConfig
    data: PreparedData
    client: object  # mlflow.tracking.MlflowClient
    experiment_id: str
    study: optuna.Study


def open_context(definition: SweepDefinition) -> SweepContext:
    """Check the sweep, decode its data (a cache hit after the first process), and open
    the stores; a bad metric name or data root fails before any store is touched."""
    space = parse(definition.params)
    base = compose("train", definition.base_overrides)
    check_metrics(definition, base)
    check_search(definition, space)
    data = prepare(OmegaConf.to_container(base.dataset, resolve=True))
    client = store.client_for(base.tracking)
    experiment = store.experiment_id(client, base.tracking, base.tracking.get("experiment") or data.name)
    return SweepContext(definition, space, base, data, client, experiment, open_study(definition, space, client))
