"""The ``stream`` config group as typed settings, checked with one-line errors."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np
from omegaconf import DictConfig, OmegaConf

from kws_research.data.rooms import RoomSettings
from kws_research.errors import ConfigError, refuse_unknown_keys

SPLIT_MINUTES = ("mixed_minutes", "negatives_minutes")
# The dataset's long recordings of that unknown source, or the split's own words talked (data/conversation.py).
BACKGROUNDS = (None, "speech", "long_folder", "conversation")
# What export writes into the Core ML model for the app's detector.
SHIPPED_METRICS = (
    "detector_threshold",
    "detector_window_ms",
    "detector_suppression_ms",
    "detector_min_count",
    "detector_hop_ms",
    "temperature",
    "val_stream_fa_per_hour_upper95",  # the false-accept rate the detector is certified for (95%)
)
# What a streaming evaluation logs from the validation streams alone (``stream_eval=validation``
# logs only these; see kws_research/streaming/evaluation.py).
VALIDATION_STREAM_METRICS = (
    "stream_target_met",
    "stream_target_fa_per_hour",
    "val_stream_hit_rate",
    "val_stream_certified_hit_rate",
    "val_stream_fa_per_hour_at_50pct_miss",
    "val_stream_fa_per_hour",
    "val_stream_fa_per_hour_upper95_by_hours",
    "val_stream_negatives_hours",
    "val_stream_distinct_hours",
    "val_stream_certifiable_fa_per_hour",
    *SHIPPED_METRICS,
    "val_ece_before",
    "val_ece_after",
    "stream_scoring_speed",
)
# Every metric a whole streaming evaluation logs: the validation ones and the test streams'.
STREAM_METRICS = (
    *VALIDATION_STREAM_METRICS,
    "stream_hit_rate",
    "stream_miss_rate",
    "stream_wrong_rate",
    "stream_latency_ms",
    "stream_fa_per_hour",
    "stream_fa_per_hour_upper95",
    "stream_fa_within_certificate",
    "stream_fa_per_hour_unknown",
    "stream_fa_per_hour_noise",
    "stream_mixed_fa_per_hour",
    "stream_miss_rate_at_1fah",
    "stream_miss_rate_at_0p1fah",
    "ece_before",
    "ece_after",
)
EVALUATION_SPLITS = {True: ("validation", "test"), "validation": ("validation",)}  # by stream_eval


# 160 thresholds from 0.2 to 0.995, then the tail up to 0.9999: on hours of talk a detector
# certified for 1 FA/h sits above 0.995 (at 0.995 the grid ran out and heard next to nothing)
TAIL_THRESHOLDS = (0.997, 0.998, 0.999, 0.9995, 0.9998, 0.9999)
DEFAULT_THRESHOLDS = tuple(float(t) for t in np.round(np.linspace(0.2, 0.995, 160), 4)) + TAIL_THRESHOLDS


@dataclass(frozen=True)
class StreamSettings:
    validation: dict
    test: dict
    snr_db: tuple[float, ...] = (20.0, 10.0, 5.0)
    unknown_fraction: float = 0.3
    gap_seconds: tuple[float, float] = (1.0, 3.0)
    unknown_percentage: float | None = 100.0
    seed: int = 0
    hop_ms: float = 100.0
    min_count: int = 3
    window_ms: tuple[float, ...] = (250.0, 500.0, 750.0, 1000.0)
    suppression_ms: tuple[float, ...] = (500.0, 1000.0, 1500.0)
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS
    target_fa_per_hour: float = 1.0
    command_thresholds: bool = False  # calibration: each command's threshold lowered as far as the target allows
    match_tolerance_ms: float = 1000.0
    temperature: bool = True
    verify_seconds: float = 20.0
    batch_size: int = 256
    background: str | tuple[str, ...] | None = None  # people talking under the negatives-only streams:
    # speech | long_folder (the dataset's long recordings of the split) | conversation, or a list of them
    unknown_sources: dict | None = None  # shares of the sources the streams' non-command words come from in
    # every split (e.g. {words: 0.7, folder: 0.3}: the root's words and dataset.unknown_folder); null: the root's
    background_snr_db: float = 10.0  # the background this many dB under the stream's words
    reverb: float = 0.0  # share of the words heard through a simulated room (kws_research/data/rooms.py)
    rooms: dict = field(default_factory=lambda: asdict(RoomSettings()))

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> StreamSettings:
        if isinstance(cfg, DictConfig):
            cfg = OmegaConf.to_container(cfg, resolve=True)
        cfg = dict(cfg or {})
        refuse_unknown_keys("stream", cfg, cls.__dataclass_fields__)
        for split in ("validation", "test"):
            part = dict(cfg.get(split) or {})
            for key in SPLIT_MINUTES:
                value = part.get(key)
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                    raise ConfigError(f"stream.{split}.{key}", f"{value!r} must be a number of minutes > 0")
            cfg[split] = {k: float(part[k]) for k in SPLIT_MINUTES}
        if isinstance(cfg.get("background"), (list, tuple)):
            cfg["background"] = tuple(cfg["background"]) or None
        for key in ("snr_db", "window_ms", "suppression_ms", "thresholds", "gap_seconds"):
            values = cfg.pop(key, None)
            if values is None:  # null: the default (thresholds: null in the YAML)
                continue
            if not isinstance(values, (list, tuple)) or not values:
                raise ConfigError(f"stream.{key}", f"{values!r} must be a non-empty list")
            cfg[key] = tuple(float(v) for v in values)
        settings = cls(**cfg)
        settings.check()
        return settings

    def check(self) -> None:
        low, high = self.gap_seconds if len(self.gap_seconds) == 2 else (-1, -1)
        if not 0 <= low <= high:
            raise ConfigError(
                "stream.gap_seconds", f"{list(self.gap_seconds)} must be [min, max] seconds, 0 <= min <= max"
            )
        if not 0 <= self.unknown_fraction <= 1:
            raise ConfigError("stream.unknown_fraction", f"{self.unknown_fraction!r} must be a fraction in [0, 1]")
        if not 10 <= self.hop_ms <= 1000:
            raise ConfigError("stream.hop_ms", f"{self.hop_ms!r} must be between 10 and 1000 ms")
        if self.target_fa_per_hour <= 0:
            raise ConfigError("stream.target_fa_per_hour", f"{self.target_fa_per_hour!r} must be > 0")
        if not all(0 < t < 1 for t in self.thresholds):
            raise ConfigError("stream.thresholds", "every threshold must be a probability in (0, 1)")
        if self.min_count < 1:
            raise ConfigError("stream.min_count", f"{self.min_count!r} must be >= 1")
        if not 0 <= self.reverb <= 1:
            raise ConfigError("stream.reverb", f"{self.reverb!r} must be a share of words in [0, 1]")
        RoomSettings.from_config(self.rooms, "stream.rooms")
        names = self.backgrounds
        if any(name not in BACKGROUNDS for name in names) or len(names) != len(set(names)):
            raise ConfigError(
                "stream.background",
                f"{self.background!r} is not null or one or more of speech, long_folder, conversation",
            )
        if len([n for n in names if n != "conversation"]) > 1:
            raise ConfigError("stream.background", "takes one of speech and long_folder (and conversation beside it)")

    @property
    def backgrounds(self) -> tuple[str, ...]:
        """The backgrounds as a tuple (``background`` may be one name or a list)."""
        if self.background is None:
            return ()
        return (self.background,) if isinstance(self.background, str) else tuple(self.background)

    @property
    def recordings(self) -> str | None:
        """The background of long recordings (speech or long_folder), if one is asked for."""
        return next((n for n in self.backgrounds if n != "conversation"), None)

    def stream_identity(self) -> dict:
        """What the audio of a stream depends on (detector settings do not)."""
        return {
            "snr_db": list(self.snr_db),
            "unknown_fraction": self.unknown_fraction,
            "gap": list(self.gap_seconds),
            **(
                {"background": self._background_key(), "background_snr_db": self.background_snr_db}
                if self.background
                else {}
            ),
            **({"reverb": self.reverb, "rooms": self.room_settings().digest()} if self.reverb else {}),
        }

    def _background_key(self) -> str | list[str]:
        names = self.backgrounds
        return names[0] if len(names) == 1 else list(names)  # one name: as streams were keyed before lists

    def room_settings(self) -> RoomSettings:
        return RoomSettings.from_config(self.rooms, "stream.rooms")

    def digest(self) -> str:
        """Identity of an evaluation: a run evaluated with other settings is evaluated again."""
        fields = asdict(self)
        for key, before in (("unknown_sources", None), ("command_thresholds", False)):
            if fields[key] == before:  # evaluations from before the key keep their identity
                del fields[key]
        return hashlib.sha256(json.dumps(fields, sort_keys=True, default=list).encode()).hexdigest()[:16]
