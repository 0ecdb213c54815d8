"""What export ships from the streaming evaluation, and its check on the deployable file.

The run (and its baseline) is evaluated on streams unless it already was with these
stream settings and open-set rule; the calibrated detector and temperature go into
the Core ML metadata (the temperature also into the graph); the saved file must give
the same detections as Keras on a short test stream, and the streaming model fed that
stream hop by hop the same probabilities per hop (and detections).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from kws_research.contract import CLIP_SAMPLES, samples_of, to_float
from kws_research.coreml import runtime
from kws_research.errors import KwsError
from kws_research.exporting.reference import KerasReference
from kws_research.streaming import streams
from kws_research.streaming.detector import Detection, DetectorSettings, command_threshold_key, detections
from kws_research.streaming.evaluation import DIGEST_TAG, VALIDATION_ONLY, log_evaluation
from kws_research.streaming.runs import evaluate_model, is_evaluated, stream_source
from kws_research.streaming.scoring import keras_scorer, score
from kws_research.streaming.settings import SHIPPED_METRICS, StreamSettings
from kws_research.tracking.source import source_data

log = logging.getLogger(__name__)


def run_stream_settings(source) -> dict | None:
    """The stream settings of the run's latest streaming evaluation: those its report names
    (or, for runs evaluated before reports named them, its training config's) when their
    digest is the one the run is tagged with; None when the run has no evaluation."""
    tagged = source.tags.get(DIGEST_TAG, "").split("/")[0].removesuffix(VALIDATION_ONLY)  # then evaluated whole
    candidates = ((source.streaming or {}).get("stream_config"), source.config.get("stream"))
    return next((c for c in candidates if c and StreamSettings.from_config(c).digest() == tagged), None)


def with_evaluation(source, cfg) -> dict:
    """``cfg`` with the stream settings export ships the detector of: by default
    (``evaluation=run``) those the run's own evaluation was certified on, so the run's
    detector is shipped as it was logged; the config's with ``evaluation=here`` or when the
    run has no evaluation."""
    if cfg["streaming"] != "auto" or cfg["evaluation"] != "run":
        return cfg
    logged = run_stream_settings(source)
    return {**cfg, "stream": logged} if logged is not None else cfg


def certificate(source, cfg) -> dict:
    """What the shipped detector's false-accept bound was earned on (model metadata)."""
    negatives = ((source.streaming or {}).get("streams") or {}).get("validation_negatives", {})
    minutes, distinct = negatives.get("minutes"), negatives.get("distinct_minutes")
    return {
        "stream_settings": StreamSettings.from_config(cfg["stream"]).digest(),
        "val_stream_negatives_hours": round(minutes / 60, 3) if minutes is not None else None,
        # the independent material the bound counts (repeats of a recording are one)
        "val_stream_distinct_hours": round(distinct / 60, 4) if distinct is not None else None,
    }


def evaluation_line(source, cfg) -> str:
    """Which evaluation export ships, and on how many hours of negatives it was certified."""
    earned = certificate(source, cfg)
    hours, distinct = earned["val_stream_negatives_hours"], earned["val_stream_distinct_hours"]
    return (
        f"shipping the streaming evaluation of run {source.run_id} (stream settings {earned['stream_settings']}): "
        f"detector threshold {source.metrics.get('detector_threshold', float('nan')):g}, certified for "
        f"{source.metrics.get('val_stream_fa_per_hour_upper95', float('nan')):.3g} FA/h on "
        f"{'?' if hours is None else f'{hours:g}'} h of validation negatives"
        + ("" if distinct is None else f" ({60 * distinct:.1f} distinct minutes)")
    )


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
    source.metrics, source.tags, source.streaming = dict(run.data.metrics), dict(run.data.tags), evaluation.report


def shipped_detector(source, cfg) -> dict:
    """The detector settings and temperature export writes into the model ({} when none)."""
    if cfg["streaming"] != "auto" or "detector_threshold" not in source.metrics:
        return {}
    own = [command_threshold_key(label) for label in source.labels]  # the commands with their own threshold
    return {key: float(source.metrics[key]) for key in (*SHIPPED_METRICS, *own) if key in source.metrics}


def mismatches(keras: list, coreml: list, hop_ms: float) -> int:
    """Detections of one side with no detection of the same label within a hop on the other."""

    def unmatched(a, b) -> int:
        return sum(not any(x.label == y.label and abs(x.time_ms - y.time_ms) <= hop_ms for y in b) for x in a)

    return unmatched(keras, coreml) + unmatched(coreml, keras)


@dataclass
class StreamReference:
    """The verification stream and what Keras (the model as shipped) computes on it: every
    window's probabilities and, when a detector ships, its detections."""

    stream: streams.Stream
    detector: DetectorSettings | None
    hop_ms: float
    labels: list[str]
    times: np.ndarray
    scores: np.ndarray
    keras: list[Detection]
    batch_size: int
    windows: KerasReference | None = None  # how close each window must come (the gate's step)

    def detect(self, scores: np.ndarray) -> list[Detection]:
        return detections(self.times, scores, self.labels, self.detector) if self.detector else []


def verification_hop_ms(source, cfg) -> float:
    """The hop the app calls the model at: the shipped detector's, else ``stream.hop_ms``."""
    shipped = shipped_detector(source, cfg)
    return float(shipped["detector_hop_ms"]) if shipped else StreamSettings.from_config(cfg["stream"]).hop_ms


def stream_reference(model, data, source, cfg, reference_of: Callable | None = None) -> StreamReference:
    """Built once per export: every saved file is compared with the same Keras scores
    (``reference_of(scores, scores_of)``: how close each window must come, from the shipped
    model's scores and a function that scores another model on the same windows)."""
    settings = StreamSettings.from_config(cfg["stream"])
    shipped = shipped_detector(source, cfg)
    detector = DetectorSettings.from_metrics(shipped, source.labels) if shipped else None
    hop_ms = verification_hop_ms(source, cfg)
    stream = streams.load_or_build(
        stream_source(source.config["dataset"], data, settings),
        "test",
        "mixed",
        settings.verify_seconds,
        settings,
        settings.seed + 1,
    )
    times, scores, _ = keras_scorer(model).stream(stream.audio, hop_ms, settings.batch_size)
    reference = StreamReference(stream, detector, hop_ms, list(source.labels), times, scores, [], settings.batch_size)
    reference.keras = reference.detect(scores)
    if reference_of is not None:
        reference.windows = reference_of(
            scores, lambda other: keras_scorer(other).stream(stream.audio, hop_ms, settings.batch_size)[1]
        )
    return reference


def verify_stream(check, path, reference: StreamReference) -> None:
    """The saved window model on the verification stream: the same detections as Keras."""
    if reference.detector is None:
        return
    predict = partial(runtime.predict, runtime.load(path))
    _, scores, _ = score(predict, reference.stream.audio, reference.hop_ms, reference.batch_size)
    check.stream_seconds = round(reference.stream.seconds, 2)
    check.stream_keras_detections = len(reference.keras)
    check.stream_mismatches = mismatches(reference.keras, reference.detect(scores), reference.hop_ms)
    check.verified = check.verified and check.stream_mismatches == 0


def verify_streaming_model(check, path, reference: StreamReference) -> None:
    """The saved streaming model fed the verification stream hop by hop, its state passed
    back: from the call whose last second is the first window on, each call's probabilities
    within the format's tolerance of Keras' on that window, and the same detections."""
    probabilities = runtime.run_stream(runtime.load(path), to_float(reference.stream.audio))
    warmup = CLIP_SAMPLES // samples_of(reference.hop_ms) - 1
    probabilities = probabilities[warmup : warmup + len(reference.scores)]
    if probabilities.shape != reference.scores.shape:
        raise KwsError(
            f"{path}: the streaming model gave {probabilities.shape[0]} results for "
            f"{reference.scores.shape[0]} windows of the verification stream; export the run again"
        )
    check.streaming_path = str(path)
    check.streaming_hops = int(probabilities.shape[0])
    check.streaming_max_abs_diff = float(
        np.abs(probabilities - reference.scores).max()
        if reference.windows is None
        else reference.windows.differences(probabilities, check.tolerance).max()
    )
    if reference.detector is not None:
        check.streaming_mismatches = mismatches(reference.keras, reference.detect(probabilities), reference.hop_ms)
    check.verified = (
        check.verified and check.streaming_max_abs_diff <= check.tolerance and not check.streaming_mismatches
    )
