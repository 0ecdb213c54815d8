"""The streaming evaluation of one model on one data set, and its record in MLflow.

Order, so that nothing is chosen on the test split: the temperature is fitted on
the validation clips, the detector calibrated on the validation streams; the test
streams are then measured at those settings (plus the DET curve, which only
reports). Metric names (all logged on the run):

* ``stream_hit_rate`` / ``stream_miss_rate`` / ``stream_wrong_rate`` / ``stream_latency_ms``:
  command words of the test mixed stream at the calibrated detector;
* ``stream_fa_per_hour`` (``_unknown``, ``_noise``): false accepts per hour on the test
  negatives-only stream, in all and by cause; ``stream_mixed_fa_per_hour`` on the mixed one;
* ``stream_miss_rate_at_1fah`` / ``stream_miss_rate_at_0p1fah``: DET operating points on the
  test streams (``0p1`` = 0.1; a dot would break config keys such as constraints);
* ``detector_threshold`` / ``_window_ms`` / ``_suppression_ms`` / ``_min_count`` / ``_hop_ms``,
  ``detector_threshold_<command>`` (each command's own threshold), ``temperature``,
  ``stream_target_fa_per_hour``, ``stream_target_met``, ``val_stream_*``;
* ``ece_before`` / ``ece_after`` (test clips), ``val_ece_before`` / ``val_ece_after``;
* ``stream_scoring_speed``: seconds of audio scored per second.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kws_research.contract import to_float
from kws_research.errors import KwsError
from kws_research.streaming import calibration, plots, streams
from kws_research.streaming.calibration import Scored
from kws_research.streaming.detector import DetectorSettings
from kws_research.streaming.matching import distinct_recordings, hours_to_certify, repeats
from kws_research.streaming.scoring import Scorer
from kws_research.streaming.settings import STREAM_METRICS, StreamSettings
from kws_research.tracking.runs import artifact_dir, log_artifacts, log_metrics

log = logging.getLogger(__name__)
__all__ = ["STREAM_METRICS", "Evaluation", "evaluate", "log_evaluation"]
DIGEST_TAG = "stream_settings"
SPLITS = ("validation", "test")
VALIDATION_ONLY = "+validation-only"  # the settings digest of an evaluation that scored no test stream
REPEATED = 1.5  # recordings played more often than this on average: the distinct minutes limit the certificate
FILES = ("streaming.json", "streaming_det.png", "calibration.png")


@dataclass
class Evaluation:
    metrics: dict[str, float]
    detector: DetectorSettings
    temperature: float
    report: dict
    det_curve: list[dict] = field(default_factory=list)
    rule: tuple[str, float] | None = None


def _clip_probabilities(scorer: Scorer, split, batch: int) -> np.ndarray:
    audio = split.audio
    return np.concatenate([scorer.clips(to_float(audio[i : i + batch])) for i in range(0, len(split), batch)])


def build_streams(
    stream_data, settings: StreamSettings, backgrounds: dict | None = None, splits: tuple[str, ...] = SPLITS
) -> dict[tuple[str, str], streams.Stream]:
    """The streams of an evaluation: per split (validation and test), mixed and negatives-only
    (``backgrounds``: per split, the recordings ``stream.background`` plays under the negatives)."""
    out = {}
    for split in splits:
        minutes = getattr(settings, split)
        for kind in streams.KINDS:
            out[(split, kind)] = streams.load_or_build(
                stream_data,
                split,
                kind,
                60.0 * minutes[f"{kind}_minutes"],
                settings,
                settings.seed,
                (backgrounds or {}).get(split),
            )
    return out


def fa_at_miss(curve: list[dict], miss: float) -> float | None:
    """The fewest false accepts per hour on a DET curve with a miss rate within ``miss``."""
    within = [p["fa_per_hour"] for p in curve if p["miss_rate"] <= miss]
    return min(within) if within else None


def worst_fa_per_hour(settings: StreamSettings) -> float:
    """A false accept every hop: the most any detector can make (the value of a trial whose
    detector never reaches the miss rate asked for)."""
    return 3600.0 * 1000.0 / settings.hop_ms


def validation_metrics(settings: StreamSettings, chosen: dict, val_curve: list[dict], hours: float) -> dict:
    """What the validation streams say: the calibration point, its certificate, and what a
    search may optimise (each defined when nothing certifies)."""
    at_half = fa_at_miss(val_curve, 0.5)
    return {
        "stream_target_met": float(chosen["target_met"]),
        "stream_target_fa_per_hour": settings.target_fa_per_hour,
        "val_stream_hit_rate": chosen["hit_rate"],
        "val_stream_certified_hit_rate": chosen["hit_rate"] if chosen["target_met"] else 0.0,
        "val_stream_fa_per_hour_at_50pct_miss": worst_fa_per_hour(settings) if at_half is None else at_half,
        "val_stream_fa_per_hour": chosen["fa_per_hour"],
        "val_stream_fa_per_hour_upper95": chosen["fa_per_hour_upper95"],
        "val_stream_fa_per_hour_upper95_by_hours": chosen["fa_per_hour_upper95_by_hours"],
        "val_stream_negatives_hours": hours,
        "val_stream_distinct_hours": chosen["distinct_hours"],
        "val_stream_certifiable_fa_per_hour": chosen["certifiable_fa_per_hour"],
    }


def test_metrics(mixed: dict, negatives: dict, curve: list[dict], chosen: dict) -> dict:
    """The test streams measured at the calibrated detector."""
    hours = negatives["hours"]
    return {
        "stream_hit_rate": mixed["hit_rate"],
        "stream_miss_rate": mixed["miss_rate"],
        "stream_wrong_rate": mixed["wrong_rate"],
        "stream_latency_ms": mixed["latency_ms"],
        "stream_fa_per_hour": negatives["fa_per_hour"],
        "stream_fa_per_hour_unknown": negatives["false_accepts_by_cause"]["unknown"] / hours,
        "stream_fa_per_hour_noise": negatives["false_accepts_by_cause"]["noise"] / hours,
        "stream_mixed_fa_per_hour": mixed["fa_per_hour"],
        "stream_miss_rate_at_1fah": calibration.miss_rate_at(curve, 1.0),
        "stream_miss_rate_at_0p1fah": calibration.miss_rate_at(curve, 0.1),
        "stream_fa_per_hour_upper95": negatives["fa_per_hour_upper95"],
        "stream_fa_within_certificate": float(negatives["fa_per_hour"] <= chosen["fa_per_hour_upper95"]),
    }


def evaluate(
    scorer: Scorer,
    data,
    stream_data,
    settings: StreamSettings,
    backgrounds: dict | None = None,
    splits: tuple[str, ...] = SPLITS,
) -> Evaluation:
    """Calibrate on validation, measure on test (``scorer``: clips and streams -> probabilities);
    ``splits=("validation",)``: calibrate only (a search that must not look at test streams)."""
    labels = list(data.classes)
    empty = [s for s in splits if not len(data.splits.get(s, ()))]
    if empty:
        raise KwsError(f"stream: the {empty[0]} split of {data.name} is empty; streams need validation and test clips")
    probs = {s: _clip_probabilities(scorer, data.splits[s], settings.batch_size) for s in splits}
    truth = {s: np.asarray(data.splits[s].labels) for s in probs}
    temperature = calibration.fit_temperature(probs["validation"], truth["validation"]) if settings.temperature else 1.0
    ece = {
        s: (
            calibration.reliability(probs[s], truth[s]),
            calibration.reliability(calibration.tempered(probs[s], temperature), truth[s]),
        )
        for s in probs
    }
    scored, speeds = {}, []
    for key, stream in build_streams(stream_data, settings, backgrounds, splits).items():
        times, scores, speed = scorer.stream(stream.audio, settings.hop_ms, settings.batch_size)
        speeds.append(speed)
        if temperature != 1.0:
            scores = calibration.tempered(scores, temperature)
        scored[key] = Scored(times, scores, stream.events, stream.hours)
    tolerance = settings.match_tolerance_ms
    val_mixed, val_negatives = scored[("validation", "mixed")], scored[("validation", "negatives")]
    detector, chosen, _ = calibration.choose(val_mixed, val_negatives, labels, settings, tolerance)
    if not chosen["target_met"]:
        _warn_uncertified(settings, chosen, val_negatives.hours)
    log.info(certificate_line(settings, chosen))
    val_curve = calibration.sweep_thresholds(val_mixed, val_negatives, labels, detector, settings.thresholds, tolerance)
    metrics = validation_metrics(settings, chosen, val_curve, val_negatives.hours)
    on_test: dict = {}
    curve: list[dict] = []
    if "test" in splits:
        mixed = calibration.evaluate(scored[("test", "mixed")], labels, detector, tolerance)
        negatives = calibration.evaluate(scored[("test", "negatives")], labels, detector, tolerance)
        curve = calibration.sweep_thresholds(
            scored[("test", "mixed")], scored[("test", "negatives")], labels, detector, settings.thresholds, tolerance
        )
        metrics.update(test_metrics(mixed, negatives, curve, chosen))
        metrics.update(ece_before=ece["test"][0]["ece"], ece_after=ece["test"][1]["ece"])
        on_test.update(test_mixed=mixed, test_negatives=negatives)
    metrics.update(
        {
            **detector.as_dict(),
            "temperature": temperature,
            "val_ece_before": ece["validation"][0]["ece"],
            "val_ece_after": ece["validation"][1]["ece"],
            "stream_scoring_speed": float(np.median(speeds)),
        }
    )
    report = {
        "settings_digest": settings.digest() + ("" if "test" in splits else VALIDATION_ONLY),
        "stream_config": asdict(settings),  # what export evaluates with to ship this detector unchanged
        "detector": detector.as_dict(),
        "temperature": temperature,
        "validation_point": chosen,
        **on_test,
        "streams": {
            f"{split}_{kind}": {
                "minutes": round(s.hours * 60, 2),
                "words": len(s.events),
                # how often the same recordings come back: a false accept on one recurs with it
                "distinct_clips": distinct_recordings(s.events),
                "repeats": round(repeats(s.events), 2),
                "distinct_minutes": round(s.hours * 60 / repeats(s.events), 2),
            }
            for (split, kind), s in scored.items()
        },
        "det_curve": curve,
        "val_det_curve": val_curve,  # the calibrated detector's DET on validation: what recipes are chosen by
        "reliability": {s: {"before": b, "after": a} for s, (b, a) in ece.items()},
        "metrics": metrics,
    }
    return Evaluation(metrics, detector, temperature, report, curve)


def certificate_line(settings: StreamSettings, chosen: dict) -> str:
    """One line: what the shipped detector is certified for, and on how much material."""
    return (
        f"certified {chosen['fa_per_hour_upper95']:.3g} FA/h (95%, target {settings.target_fa_per_hour:g}"
        f"{'' if chosen['target_met'] else ', not met'}) on {chosen['distinct_hours'] * 60:.1f} distinct minutes "
        f"of validation negatives ({chosen['distinct_hours'] * chosen['repeats']:.2f} h scored, each recording "
        f"{chosen['repeats']:.1f} times); threshold {chosen['threshold']:g}{_own_line(chosen)}, "
        f"hit rate {chosen['hit_rate']:.1%}"
    )


def _own_line(chosen: dict) -> str:
    """The commands' own thresholds, when any differs from the one threshold."""
    own = chosen.get("command_thresholds") or {}
    if all(value == chosen["threshold"] for value in own.values()):
        return ""
    return " (per command: " + ", ".join(f"{label} {value:g}" for label, value in own.items()) + ")"


def _warn_uncertified(settings: StreamSettings, chosen: dict, hours: float) -> None:
    """One line: why no setting certified the target, and what would."""
    target = settings.target_fa_per_hour
    least = chosen["certifiable_fa_per_hour"]
    if least > target and chosen["repeats"] > REPEATED:
        log.warning(
            "the validation negatives cannot support stream.target_fa_per_hour=%g: their %.2f h replay "
            "%.1f distinct minutes of recordings (each %.1f times), and repeats are no new evidence, so even no "
            "false accept certifies only %.3g per hour; add distinct recordings (more words, speakers, "
            "dataset.long_folder talk) or raise stream.target_fa_per_hour to %.3g or more; using the setting "
            "with the fewest false accepts (%.2f FA/h, 95%% bound %.3g)",
            target,
            hours,
            60 * chosen["distinct_hours"],
            chosen["repeats"],
            least,
            least,
            chosen["fa_per_hour"],
            chosen["fa_per_hour_upper95"],
        )
        return
    needed = hours_to_certify(target)
    if hours < needed:
        log.warning(
            "stream.validation.negatives_minutes=%g: %.2f h of validation negatives cannot certify "
            "stream.target_fa_per_hour=%g even with no false accept (95%% bound %.1f per hour); it takes "
            "%.0f minutes (stream=long has enough); using the setting with the fewest false accepts (%.2f FA/h)",
            settings.validation["negatives_minutes"],
            hours,
            target,
            chosen["fa_per_hour_upper95"],
            60 * needed,
            chosen["fa_per_hour"],
        )
        return
    log.warning(
        "no detector setting certified stream.target_fa_per_hour=%g on the validation streams; using the one "
        "with the fewest false accepts (%.2f FA/h, 95%% bound %.2f)",
        target,
        chosen["fa_per_hour"],
        chosen["fa_per_hour_upper95"],
    )


def write_files(evaluation: Evaluation, folder: Path, title: str) -> list[Path]:
    """``streaming.json``, ``streaming_det.png`` and ``calibration.png`` into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "streaming.json").write_text(json.dumps(evaluation.report, indent=1, default=float))
    split = "test" if evaluation.det_curve else "validation"  # a validation-only evaluation has no test curve
    curve = evaluation.det_curve or evaluation.report["val_det_curve"]
    chosen = next((p for p in curve if p["threshold"] == evaluation.detector.threshold), None)
    plots.det_png({title: curve}, chosen, folder / "streaming_det.png", f"{title}: {split} streams")
    bins = evaluation.report["reliability"][split]
    plots.reliability_png(
        bins["before"], bins["after"], evaluation.temperature, folder / "calibration.png", f"{title}: {split} clips"
    )
    return [folder / name for name in FILES]


def variant(settings_digest: str, rule: tuple[str, float] | None) -> str:
    """The ``stream_settings`` tag: the stream settings and the open-set rule evaluated with."""
    return f"{settings_digest}/{rule[0] if rule else 'none'}"


def log_evaluation(client, run_id: str, evaluation: Evaluation, title: str) -> None:
    """Metrics, the settings tag and the ``streaming/`` artifacts on the run."""
    log_metrics(client, run_id, {k: v for k, v in evaluation.metrics.items() if np.isfinite(v)})
    client.set_tag(run_id, DIGEST_TAG, variant(evaluation.report["settings_digest"], evaluation.rule))
    with artifact_dir() as folder:
        write_files(evaluation, folder, title)
        log_artifacts(client, run_id, folder, "streaming")
