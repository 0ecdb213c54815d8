"""The streaming evaluation of an MLflow run (the ``evaluate`` stage's Python API), and
of a model inside its training run."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import numpy as np

from kws_research.data import long_audio
from kws_research.data.dataset import cache_root, prepare, task_spec
from kws_research.data.unknown import long_recordings
from kws_research.errors import ConfigError
from kws_research.models.gate import gated
from kws_research.streaming import mining, streams
from kws_research.streaming.evaluation import DIGEST_TAG, SPLITS, Evaluation, evaluate, log_evaluation, variant
from kws_research.streaming.scoring import keras_scorer
from kws_research.streaming.settings import StreamSettings
from kws_research.tracking.lookup import get_run
from kws_research.tracking.runs import log_artifacts, log_metrics
from kws_research.tracking.source import fetch, open_set_rule, source_data

log = logging.getLogger(__name__)


def stream_source(dataset_cfg: Mapping, data, settings: StreamSettings):
    """The data set the streams take their words from: the run's, prepared with
    ``stream.unknown_percentage`` (more distinct non-command words than training samples)
    and, with ``stream.unknown_sources``, those sources' words in every split."""
    share = settings.unknown_percentage
    changes = {} if share is None else {"unknown_percentage": float(share)}
    if settings.unknown_sources:
        changes.update(unknown_sources=dict(settings.unknown_sources), unknown_sources_in_eval=True)
    if all(dataset_cfg.get(key) == value for key, value in changes.items()):
        return data
    return prepare({**dict(dataset_cfg), **changes})


def stream_backgrounds(
    dataset_cfg: Mapping, settings: StreamSettings, splits: tuple[str, ...] = ("validation", "test")
) -> dict | None:
    """Per split, the long recordings ``stream.background`` plays under the negatives-only
    streams (each split's own speakers or files: evaluation never hears training ones)."""
    if settings.recordings is None:  # conversation: built from each stream's own split
        return None

    spec = task_spec(dataset_cfg)
    if settings.recordings == "long_folder" and not spec.unknown.option("long_folder")["folder"]:
        raise ConfigError("stream.background", "long_folder needs dataset.long_folder (a folder of long recordings)")
    recordings, _ = long_recordings(spec, settings.recordings, cache_root(dataset_cfg))
    return {split: long_audio.track(recordings[split]) for split in splits}


def check_streams(data, dataset_cfg: Mapping, stream_cfg: Mapping, splits: tuple[str, ...] = SPLITS) -> None:
    """Everything a streaming evaluation needs, checked before the model exists: the
    settings, the words of each split's streams and the background recordings."""
    settings = StreamSettings.from_config(stream_cfg)
    streams.check_buildable(stream_source(dataset_cfg, data, settings), settings, splits)
    stream_backgrounds(dataset_cfg, settings, splits)


def deployed(model, rule: tuple[str, float] | None, labels: list[str]):
    """The model as export ships it before the temperature: with its open-set rule."""
    return gated(model, *rule, labels) if rule is not None else model


def evaluate_model(
    model, data, dataset_cfg: Mapping, stream_cfg: Mapping, rule=None, splits: tuple[str, ...] = SPLITS
) -> Evaluation:
    """``splits``: (validation, test), or validation alone (calibration only, for a search)."""
    settings = StreamSettings.from_config(stream_cfg)
    model = deployed(model, rule, list(data.classes))
    source = stream_source(dataset_cfg, data, settings)
    backgrounds = stream_backgrounds(dataset_cfg, settings, splits)
    evaluation = evaluate(keras_scorer(model), data, source, settings, backgrounds, splits)
    evaluation.rule = rule
    return evaluation


def is_evaluated(run, stream_cfg: Mapping, rule: tuple[str, float] | None) -> bool:
    """Whether ``run`` already has a streaming evaluation with these stream settings and rule."""
    return run.data.tags.get(DIGEST_TAG) == variant(StreamSettings.from_config(stream_cfg).digest(), rule)


def evaluate_run(client, run_id: str, stream_cfg: Mapping, gate: str = "auto") -> dict:
    """Evaluate a finished run on streams and log the result on it; returns the metrics."""
    if gate not in ("auto", "off"):
        raise ConfigError("gate", f"{gate!r} is not auto or off")
    StreamSettings.from_config(stream_cfg)  # a bad stream key fails before anything is downloaded
    with tempfile.TemporaryDirectory(prefix="kws-evaluate-") as tmp:
        source = fetch(client, run_id, Path(tmp) / "source")
        data = source_data(source, "evaluate")
        model = source.model()
        rule = open_set_rule(source, {"gate": gate})
        evaluation = evaluate_model(model, data, source.config["dataset"], stream_cfg, rule)
    log_evaluation(client, run_id, evaluation, source.model_label)
    log.info("streaming evaluation logged on run %s", run_id)
    return evaluation.metrics


def training_streams(
    dataset_cfg: Mapping, data, settings: StreamSettings, minutes: Mapping[str, float], seed: int
) -> dict[str, streams.Stream]:
    """Streams of the training split (never heard by an evaluation), by kind: its words, with
    ``stream.background`` of the training speakers under the negatives-only one."""
    source = stream_source(dataset_cfg, data, settings)
    background = (stream_backgrounds(dataset_cfg, settings, ("train",)) or {}).get("train")
    return {
        kind: streams.load_or_build(source, "train", kind, 60.0 * length, settings, seed, background)
        for kind, length in minutes.items()
    }


def mining_audio(source_cfg: Mapping, data, settings: StreamSettings, minutes: float, folder: str | None):
    """What to mine: the training split of a long-recording folder, or a negatives-only
    stream of the training split (with ``stream.background`` of the training speakers)."""
    spec = task_spec(source_cfg)
    if folder:
        files = long_audio.recordings(
            Path(folder).expanduser(), "folder", spec.validation_percentage, spec.testing_percentage
        )
        if not files["train"]:
            raise ConfigError("folder", f"{folder} has no file in the training split (files are split by hash)")
        return long_audio.track(files["train"]), f"folder {folder} (training-split files)"

    stream = training_streams(source_cfg, data, settings, {"negatives": minutes}, settings.seed)["negatives"]
    return np.asarray(stream.audio), f"{minutes:g} min negatives-only stream of the training split"


def mine_run(client, run_id: str, cfg: Mapping) -> dict:
    """Mine a run's false accepts into ``<cache_dir>/hard_negatives/<run id>`` (and the run's
    ``hard_negatives/`` artifacts); evaluates the run on streams first when it was not."""
    stream_cfg = dict(cfg["stream"])
    settings = StreamSettings.from_config(stream_cfg)
    minutes = float(cfg.get("minutes") or 0)
    if minutes <= 0 and not cfg.get("folder"):
        raise ConfigError("minutes", f"{cfg.get('minutes')!r} must be > 0 minutes of stream to mine")
    if cfg.get("folder") and not Path(str(cfg["folder"])).expanduser().is_dir():
        raise ConfigError("folder", f"{cfg['folder']} is not a folder", "point it at long recordings or leave it unset")
    output_key = "output" if cfg.get("output") else "dataset.cache_dir"
    if cfg.get("output"):
        mining.check_output(Path(str(cfg["output"])), output_key)
    if mining.detector_of(get_run(client, run_id).data.metrics) is None:
        log.info("run %s has no calibrated detector yet: evaluating it on streams first", run_id)
        evaluate_run(client, run_id, stream_cfg, str(cfg.get("gate", "auto")))
    with tempfile.TemporaryDirectory(prefix="kws-mine-") as tmp:
        source = fetch(client, run_id, Path(tmp) / "source")
        data = source_data(source, "mine")
        model = deployed(source.model(), open_set_rule(source, cfg), list(data.classes))
        detector, temperature = mining.detector_of(source.metrics, list(data.classes))
        if cfg.get("threshold") is not None:  # mine near misses too: one threshold, lower than the app's
            detector = replace(detector, threshold=float(cfg["threshold"]), command_thresholds=())
        audio, what = mining_audio(source.config["dataset"], data, settings, minutes, cfg.get("folder"))
        mined = mining.mine(keras_scorer(model), audio, list(data.classes), detector, temperature, settings.batch_size)
    folder = Path(str(cfg.get("output") or cache_root(source.config["dataset"]) / "hard_negatives" / run_id))
    about = {"run_id": run_id, "mined_from": what, "detector": detector.as_dict(), "temperature": temperature}
    mining.save(mined, folder, about, output_key)
    metrics = {"mined_windows": float(len(mined.windows)), "mining_fa_per_hour": mined.fa_per_hour}
    log_metrics(client, run_id, {**metrics, "mining_hours": mined.hours})
    log_artifacts(client, run_id, folder, "hard_negatives")
    return {"run_id": run_id, "folder": str(folder), "mined_from": what, **metrics, "mining_hours": mined.hours}
