"""Hard-negative mining: the 1 s windows a run's calibrated detector fires on where no
command is said, saved as clips for the next run's ``hard_negatives`` unknown source.

The audio mined is never a validation or test stream (the detector is calibrated on
validation, and measured on test): by default a negatives-only stream built from the
training split (its non-command words, plus ``stream.background`` under them), or the
training-split files of a folder of long recordings. The loop, one round at a time::

    python -m kws_research.train stream_eval=true ...                      # round 0
    python -m kws_research.mine run_id=<round 0>                            # its false accepts
    python -m kws_research.train stream_eval=true ... \\
        dataset.unknown_sources.hard_negatives=0.5 dataset.hard_negatives=<round 0>
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws_research import ownership
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.data.audio import write_wav
from kws_research.data.unknown import MINED_FILE
from kws_research.processes import remove_dead_temporaries
from kws_research.streaming import calibration, detector
from kws_research.streaming.detector import DetectorSettings
from kws_research.streaming.scoring import Scorer

log = logging.getLogger(__name__)


@dataclass
class Mined:
    """The windows the detector fired on, their detections, and how much audio was mined."""

    windows: list[np.ndarray]
    detections: list[dict]
    hours: float

    @property
    def fa_per_hour(self) -> float:
        return len(self.detections) / self.hours if self.hours else 0.0


def detector_of(metrics: dict, labels: list[str] = ()) -> tuple[DetectorSettings, float] | None:
    """The calibrated detector (with the thresholds of ``labels`` that have their own) and
    temperature a streaming evaluation logged on a run."""
    try:
        settings = DetectorSettings.from_metrics(metrics, list(labels))
    except KeyError:
        return None
    return settings, float(metrics.get("temperature", 1.0))


def mine(
    scorer: Scorer,
    audio: np.ndarray,
    labels: list[str],
    settings: DetectorSettings,
    temperature: float,
    batch_size: int = 256,
) -> Mined:
    """Every detection on ``audio`` (which holds no command word) and the window it fired on."""
    times, scores, _ = scorer.stream(audio, settings.hop_ms, batch_size)
    if temperature != 1.0:
        scores = calibration.tempered(scores, temperature)
    found = detector.detections(times, scores, labels, settings) if len(times) else []
    windows, records = [], []
    for d in found:
        end = int(round(d.time_ms * SAMPLE_RATE / 1000))
        windows.append(np.array(audio[end - CLIP_SAMPLES : end]))
        records.append({"time_ms": d.time_ms, "label": d.label, "score": round(d.score, 4)})
    return Mined(windows, records, audio.shape[0] / SAMPLE_RATE / 3600.0)


def check_output(folder: Path, key: str) -> None:
    """A folder of mined windows replaces only an earlier mining's folder."""
    ownership.check_replaceable(folder, key, f"move it away or set {key}=<another folder>")


def save(mined: Mined, folder: Path, about: dict, key: str = "dataset.cache_dir") -> Path:
    """The windows as 16 kHz WAV clips plus ``mined.json``, written whole or not at all."""
    hint = f"move it away or set {key}=<another folder>"
    check_output(folder, key)
    remove_dead_temporaries(folder.parent)  # what a killed mining left beside it
    tmp = ownership.new_folder(folder.with_name(f".{folder.name}.{os.getpid()}.tmp"), f"mined {folder.name}")
    try:
        for index, (window, record) in enumerate(zip(mined.windows, mined.detections)):
            name = f"hard_{index:05d}_{record['label']}.wav"
            write_wav(tmp / name, window)
            record["file"] = name
        summary = {**about, "hours": mined.hours, "fa_per_hour": mined.fa_per_hour, "detections": mined.detections}
        (tmp / MINED_FILE).write_text(json.dumps(summary, indent=1))
        ownership.replace(tmp, folder, key, hint)  # an earlier mining of the same run, swapped whole
    except BaseException:
        ownership.discard(tmp)
        raise
    return folder
