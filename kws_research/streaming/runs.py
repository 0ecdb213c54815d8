"""The streaming evaluation of an MLflow run (the ``evaluate`` stage's Python API), and
of a model inside its training run."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from pathlib import Path

from kws_research.errors import ConfigError
from kws_research.streaming.evaluation import DIGEST_TAG, Evaluation, evaluate, log_evaluation, variant
from kws_research.streaming.scoring import keras_predict
from kws_research.streaming.settings import StreamSettings

log = logging.getLogger(__name__)


def stream_source(dataset_cfg: Mapping, data, settings: StreamSettings):
    """The data set the streams take their words from: the run's, prepared with
    ``stream.unknown_percentage`` (more distinct non-command words than training samples)."""
    share = settings.unknown_percentage
    if share is None or float(share) == float(dataset_cfg.get("unknown_percentage", 10.0)):
        return data
    from kws_research.data.dataset import prepare

    return prepare({**dict(dataset_cfg), "unknown_percentage": float(share)})


def deployed(model, rule: tuple[str, float] | None, labels: list[str]):
    """The model as export ships it before the temperature: with its open-set rule."""
    from kws_research.models.gate import gated

    return gated(model, *rule, labels) if rule is not None else model


def evaluate_model(model, data, dataset_cfg: Mapping, stream_cfg: Mapping, rule=None) -> Evaluation:
    settings = StreamSettings.from_config(stream_cfg)
    model = deployed(model, rule, list(data.classes))
    evaluation = evaluate(keras_predict(model), data, stream_source(dataset_cfg, data, settings), settings)
    evaluation.rule = rule
    return evaluation


def is_evaluated(run, stream_cfg: Mapping, rule: tuple[str, float] | None) -> bool:
    """Whether ``run`` already has a streaming evaluation with these stream settings and rule."""
    return run.data.tags.get(DIGEST_TAG) == variant(StreamSettings.from_config(stream_cfg).digest(), rule)


def evaluate_run(client, run_id: str, stream_cfg: Mapping, gate: str = "auto") -> dict:
    """Evaluate a finished run on streams and log the result on it; returns the metrics."""
    from kws_research.exporting.source import fetch, open_set_rule, source_data
    from kws_research.models import load_model

    if gate not in ("auto", "off"):
        raise ConfigError("gate", f"{gate!r} is not auto or off")
    StreamSettings.from_config(stream_cfg)  # a bad stream key fails before anything is downloaded
    with tempfile.TemporaryDirectory(prefix="kws-evaluate-") as tmp:
        source = fetch(client, run_id, Path(tmp) / "source")
        data = source_data(source, "evaluate")
        model = load_model(source.model_path)
        rule = open_set_rule(source, {"gate": gate})
        evaluation = evaluate_model(model, data, source.config["dataset"], stream_cfg, rule)
    log_evaluation(client, run_id, evaluation, source.model_label)
    log.info("streaming evaluation logged on run %s", run_id)
    return evaluation.metrics
