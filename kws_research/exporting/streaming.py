"""What export ships from the streaming evaluation, and its check on the deployable file.

The run (and its baseline) is evaluated on streams unless it already was with these
stream settings and open-set rule; the calibrated detector and temperature go into
the Core ML metadata (the temperature also into the graph); the saved file must give
the same detections as Keras on a short test stream.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

from kws_research.coreml import runtime
from kws_research.streaming import streams
from kws_research.streaming.detector import Detection, DetectorSettings, detections
from kws_research.streaming.evaluation import log_evaluation
from kws_research.streaming.runs import evaluate_model, is_evaluated, stream_source
from kws_research.streaming.scoring import keras_predict, score
from kws_research.streaming.settings import SHIPPED_METRICS, StreamSettings
from kws_research.tracking.source import source_data

log = logging.getLogger(__name__)


def ensure_evaluated(client, source, model, data, cfg, rule) -> None:
    """Evaluate ``source`` on streams when needed (``streaming=auto``), refreshing its metrics."""
    if cfg["streaming"] != "auto":
        return
    if is_evaluated(client.get_run(source.run_id), cfg["stream"], rule):
        return
    print(f"streaming evaluation of run {source.run_id} ({source.model_label})", flush=True)
    data = data if data is not None else source_data(source)
    evaluation = evaluate_model(model, data, source.config["dataset"], cfg["stream"], rule)
    log_evaluation(client, source.run_id, evaluation, source.model_label)
    run = client.get_run(source.run_id)
    source.metrics, source.tags = dict(run.data.metrics), dict(run.data.tags)


def shipped_detector(source, cfg) -> dict:
    """The detector settings and temperature export writes into the model ({} when none)."""
    if cfg["streaming"] != "auto" or "detector_threshold" not in source.metrics:
        return {}
    return {key: float(source.metrics[key]) for key in SHIPPED_METRICS if key in source.metrics}


def _settings(shipped: dict) -> DetectorSettings:
    return DetectorSettings(
        threshold=shipped["detector_threshold"],
        window_ms=shipped["detector_window_ms"],
        suppression_ms=shipped["detector_suppression_ms"],
        min_count=int(shipped["detector_min_count"]),
        hop_ms=shipped["detector_hop_ms"],
    )


def mismatches(keras: list, coreml: list, hop_ms: float) -> int:
    """Detections of one side with no detection of the same label within a hop on the other."""

    def unmatched(a, b) -> int:
        return sum(not any(x.label == y.label and abs(x.time_ms - y.time_ms) <= hop_ms for y in b) for x in a)

    return unmatched(keras, coreml) + unmatched(coreml, keras)


@dataclass
class StreamReference:
    """The verification stream and what Keras (the model as shipped) detects on it."""

    stream: streams.Stream
    detector: DetectorSettings
    labels: list[str]
    keras: list[Detection]
    batch_size: int


def stream_reference(model, data, source, cfg) -> StreamReference:
    """Built once per export: every saved file is compared with the same Keras detections."""
    settings = StreamSettings.from_config(cfg["stream"])
    detector = _settings(shipped_detector(source, cfg))
    stream = streams.load_or_build(
        stream_source(source.config["dataset"], data, settings),
        "test",
        "mixed",
        settings.verify_seconds,
        settings,
        settings.seed + 1,
    )
    labels = list(source.labels)
    times, scores, _ = score(keras_predict(model), stream.audio, detector.hop_ms, settings.batch_size)
    return StreamReference(stream, detector, labels, detections(times, scores, labels, detector), settings.batch_size)


def verify_stream(check, path, reference: StreamReference) -> None:
    """The saved file on the verification stream: the same detections as Keras."""
    predict = partial(runtime.predict, runtime.load(path))
    times, scores, _ = score(predict, reference.stream.audio, reference.detector.hop_ms, reference.batch_size)
    found = detections(times, scores, reference.labels, reference.detector)
    check.stream_seconds = round(reference.stream.seconds, 2)
    check.stream_keras_detections = len(reference.keras)
    check.stream_mismatches = mismatches(reference.keras, found, reference.detector.hop_ms)
    check.verified = check.verified and check.stream_mismatches == 0
