"""Training on the windows the detector meets (``stream_windows`` in the train config).

The classifier learns from centred 1 s clips and is then slid over a stream, where most
windows hold part of a word, the end of one word and the start of the next, or a command
among other words. With ``stream_windows.share > 0`` that share of every epoch's examples
are windows of continuous *training-split* streams (commands among other words with short
gaps, noise, rooms; a negatives-only stream with ``stream.background`` talking under it),
each labelled from the word times as the detector should answer it
(:mod:`kws_research.streaming.windows`). Each epoch takes the next windows of a seeded
shuffle of every 10 ms position, so the epochs see different windows.

Context (``context``): that share of the centred command clips is heard with other speech
just before or after the command (:mod:`.context`), with or without windows.

Mining rounds (``mining_rounds``): the last ``mining_rounds * mining_epochs`` epochs run
in rounds; before each, the model scores a negatives-only training-split stream of its own
(never validation or test audio), and the windows where it fires (a command's probability
at ``mining_threshold``, averaged as the app does) join the examples as ``unknown``, taking
at most ``mined_share`` of the windows' share. Each round logs ``mined_windows`` and
``mining_fa_per_hour`` (at step = round).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, samples_of
from kws_research.data.cache import SplitArrays
from kws_research.errors import ConfigError, refuse_unknown_keys
from kws_research.labels import UNKNOWN
from kws_research.streaming import mining, streams
from kws_research.streaming.detector import DetectorSettings
from kws_research.streaming.runs import stream_backgrounds, stream_source, training_streams
from kws_research.streaming.scoring import keras_scorer
from kws_research.streaming.settings import StreamSettings
from kws_research.streaming.windows import NOT_USED, window_labels
from kws_research.training.context import ContextClips
from kws_research.training.pipeline import ClipExamples, Examples

log = logging.getLogger(__name__)
POSITION_MS = 10.0  # windows start on this grid of the training streams
WINDOW_SEED = 7_001  # the training streams' seeds, apart from the evaluation's (other splits anyway)
MINING_SEED = 7_002


@dataclass(frozen=True)
class StreamWindowSettings:
    share: float = 0.0
    minutes: float = 20.0
    gap_seconds: tuple[float, float] = (0.0, 1.5)
    unknown_fraction: float = 0.5
    command_inside: float = 0.9
    partial_below: float = 0.5
    mining_rounds: int = 0
    mining_epochs: int = 2
    mining_minutes: float = 30.0
    mining_threshold: float = 0.5
    mined_share: float = 0.5
    context: float = 0.0

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> StreamWindowSettings:
        values = dict(cfg or {})
        refuse_unknown_keys("stream_windows", values, cls.__dataclass_fields__)
        if "gap_seconds" in values:
            values["gap_seconds"] = tuple(float(v) for v in values["gap_seconds"])
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if not 0 <= self.share < 1:
            raise ConfigError("stream_windows.share", f"{self.share!r} must be a share of examples in [0, 1)")
        if not 0 <= self.context <= 1:
            raise ConfigError("stream_windows.context", f"{self.context!r} must be a share of command clips in [0, 1]")
        if not 0 <= self.partial_below < self.command_inside <= 1:
            raise ConfigError(
                "stream_windows.partial_below",
                f"{self.partial_below!r} must be below stream_windows.command_inside ({self.command_inside!r})",
            )
        if len(self.gap_seconds) != 2 or not 0 <= self.gap_seconds[0] <= self.gap_seconds[1]:
            raise ConfigError("stream_windows.gap_seconds", f"{list(self.gap_seconds)} must be [min, max] seconds")
        if self.mining_rounds and not self.share:
            raise ConfigError("stream_windows.mining_rounds", "mining adds windows: set stream_windows.share > 0 too")

    def check_budget(self, epochs: int) -> None:
        """Mining rounds take the last epochs; at least one epoch must come before them."""
        if self.mining_rounds and self.mining_epochs_total() >= epochs:
            raise ConfigError(
                "stream_windows.mining_rounds",
                f"{self.mining_rounds} rounds x stream_windows.mining_epochs={self.mining_epochs} take "
                f"{self.mining_epochs_total()} epochs, trainer.epochs={epochs} leaves none before them",
                f"set trainer.epochs above {self.mining_epochs_total()} or fewer rounds (0: no mining)",
            )

    @property
    def active(self) -> bool:
        return self.share > 0

    def mining_epochs_total(self) -> int:
        return self.mining_rounds * self.mining_epochs


class WindowPool:
    """Labelled window positions of the training streams, plus mined windows; each epoch
    takes ``per_epoch`` of them, the next ones of a seeded shuffle."""

    def __init__(self, audio: np.ndarray, offsets: np.ndarray, labels: np.ndarray, per_epoch: int, seed: int):
        order = np.random.default_rng(seed).permutation(offsets.size)
        self.audio, self.offsets, self.labels = audio, offsets[order], labels[order]
        self.per_epoch = per_epoch
        self.mined = np.zeros((0, CLIP_SAMPLES), np.int16)
        self.mined_label = 0
        self.mined_quota = 0

    def add_mined(self, windows: np.ndarray, label: int, share: float) -> None:
        self.mined = np.concatenate([self.mined, np.asarray(windows, np.int16).reshape(-1, CLIP_SAMPLES)])
        self.mined_label = label
        self.mined_quota = min(len(self.mined), int(share * self.per_epoch))

    def rows(self, index: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Rows ``index`` (< per_epoch) of ``epoch``: mined windows first, then positions."""
        index = np.asarray(index, np.int64)
        out = np.empty((index.size, CLIP_SAMPLES), np.int16)
        labels = np.empty(index.size, np.int64)
        mined = index < self.mined_quota
        if mined.any():
            rows = (index[mined] + epoch * self.mined_quota) % len(self.mined)
            out[mined], labels[mined] = self.mined[rows], self.mined_label
        rest = index[~mined] - self.mined_quota
        taken = (rest + epoch * (self.per_epoch - self.mined_quota)) % self.offsets.size
        view = np.lib.stride_tricks.sliding_window_view(self.audio, CLIP_SAMPLES)
        out[~mined], labels[~mined] = view[self.offsets[taken]], self.labels[taken]
        return out, labels

    def class_counts(self, classes: list[str]) -> dict[str, int]:
        counts = np.bincount(self.labels, minlength=len(classes))
        return {name: int(n) for name, n in zip(classes, counts)}


@dataclass
class ClipsAndWindows:
    """The training clips, then ``pool.per_epoch`` stream windows (:class:`pipeline.Examples`)."""

    clips: Examples
    pool: WindowPool

    def __len__(self) -> int:
        return len(self.clips) + self.pool.per_epoch

    def rows(self, index: np.ndarray, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        index = np.asarray(index, np.int64)
        n = len(self.clips)
        out = np.empty((index.size, CLIP_SAMPLES), np.int16)
        labels = np.empty(index.size, np.int64)
        own = index < n
        if own.any():
            out[own], labels[own] = self.clips.rows(index[own], epoch)
        if (~own).any():
            out[~own], labels[~own] = self.pool.rows(index[~own] - n, epoch)
        return out, labels


def _training_settings(stream_cfg: Mapping, settings: StreamWindowSettings) -> StreamSettings:
    base = StreamSettings.from_config(stream_cfg)
    return replace(base, gap_seconds=settings.gap_seconds, unknown_fraction=settings.unknown_fraction)


def labelled_positions(stream: streams.Stream, classes: list[str], settings: StreamWindowSettings, talk: bool):
    """Every ``POSITION_MS`` window start of ``stream`` with its label (unused ones dropped)."""
    step = samples_of(POSITION_MS)
    offsets = np.arange(0, max(0, stream.audio.shape[0] - CLIP_SAMPLES + 1), step, dtype=np.int64)
    labels = window_labels(
        offsets / SAMPLE_RATE, stream.events, classes, settings.command_inside, settings.partial_below, talk
    )
    used = labels != NOT_USED
    return offsets[used], labels[used]


def window_pool(
    data, dataset_cfg: Mapping, stream_cfg: Mapping, settings: StreamWindowSettings, seed: int
) -> WindowPool:
    """The windows of a mixed and a negatives-only training-split stream (half of
    ``settings.minutes`` each), ``settings.share`` of each epoch's examples."""
    stream = _training_settings(stream_cfg, settings)
    classes = list(data.classes)
    parts, audio, start = [], [], 0
    halves = {kind: settings.minutes / 2 for kind in streams.KINDS}
    for kind, built in training_streams(dataset_cfg, data, stream, halves, WINDOW_SEED + seed).items():
        talk = kind == "negatives" and bool(stream.backgrounds)
        offsets, labels = labelled_positions(built, classes, settings, talk)
        parts.append((offsets + start, labels))
        audio.append(np.asarray(built.audio))
        start += built.audio.shape[0]
    clips = len(data.splits["train"])
    per_epoch = max(1, round(clips * settings.share / (1 - settings.share)))
    pool = WindowPool(
        np.concatenate(audio),
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        per_epoch,
        seed,
    )
    log.info("stream windows: %d per epoch from %s", per_epoch, pool.class_counts(classes))
    return pool


def training_examples(
    split: SplitArrays, data, dataset_cfg: Mapping, stream_cfg: Mapping, settings: StreamWindowSettings, seed: int
):
    """The training clips (a ``settings.context`` share of the commands with other speech
    beside them, :mod:`.context`), with stream windows when ``settings.share > 0``."""
    clips = ClipExamples(split)
    if settings.context:
        clips = ContextClips(clips, list(data.classes), settings.context, seed)
    if not settings.active:
        return clips
    return ClipsAndWindows(clips, window_pool(data, dataset_cfg, stream_cfg, settings, seed))


def check(data, dataset_cfg: Mapping, stream_cfg: Mapping, settings: StreamWindowSettings) -> None:
    """The training streams can be built (before a run exists)."""
    if settings.active:
        stream = _training_settings(stream_cfg, settings)
        streams.check_buildable(stream_source(dataset_cfg, data, stream), stream, ("train",))
        stream_backgrounds(dataset_cfg, stream, ("train",))


def mine_round(
    model,
    examples: ClipsAndWindows,
    data,
    dataset_cfg: Mapping,
    stream_cfg: Mapping,
    settings: StreamWindowSettings,
    round_index: int,
    seed: int,
) -> dict[str, float]:
    """Score the run's negatives-only mining stream (training split, the same every round, so
    the rounds' FA/h compare) with ``model``; add the windows it fires on as ``unknown``."""
    stream = _training_settings(stream_cfg, settings)
    minutes = {"negatives": settings.mining_minutes}
    audio = training_streams(dataset_cfg, data, stream, minutes, MINING_SEED + seed)["negatives"].audio
    detector = DetectorSettings(threshold=settings.mining_threshold, min_count=stream.min_count, hop_ms=stream.hop_ms)
    found = mining.mine(keras_scorer(model), np.asarray(audio), list(data.classes), detector, 1.0, stream.batch_size)
    if found.windows:
        examples.pool.add_mined(np.stack(found.windows), list(data.classes).index(UNKNOWN), settings.mined_share)
    log.info(
        "mining round %d: %d windows fired on %.2f h of training talk (%.1f per hour)",
        round_index + 1,
        len(found.windows),
        found.hours,
        found.fa_per_hour,
    )
    return {"mined_windows": float(len(found.windows)), "mining_fa_per_hour": found.fa_per_hour}
