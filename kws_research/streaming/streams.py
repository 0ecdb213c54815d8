"""Long test streams built from one split of a prepared data set, with their ground truth.

A stream is a sequence of words from the split (trimmed to where they are
audible) separated by random gaps, over the split's own part of the background
noise. Each word draws an SNR from ``snr_db``; the noise level moves linearly
from one word's level to the next, so one stream covers every SNR without steps.
Two kinds: ``mixed`` (command words and, with probability ``unknown_fraction``,
non-command words, as TensorFlow's streaming test) and ``negatives`` (no command
word at all, for false accepts per hour; with ``stream.background``, the split's
long recordings, e.g. continuous speech, or a pseudo-conversation of the split's own
words (``conversation``, :mod:`kws_research.data.conversation`), play under it
``background_snr_db`` below the words: people talking near the phone). With ``stream.reverb``, that share of
the words is heard through one of ``stream.rooms`` (simulated rooms, its decay
running into the gap after it; the word's SNR is that of the dry word). Test
and validation streams also use the held-out words (never trained on) when the data set
has them, each from its own speakers: the validation speakers' recordings in validation
streams, the others' in test streams, so the certificate is earned on words the model
never heard, as the test's false accepts are.

Streams are seeded and cached next to the data cache (``audio.npy`` int16 and
``events.json``, written under a temporary name and renamed when complete).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws_research.contract import SAMPLE_RATE, STORED_DTYPE, saturate_int16
from kws_research.data import cache
from kws_research.data.conversation import conversation
from kws_research.data.layout import SPLITS
from kws_research.data.rooms import reverberate, rooms_for
from kws_research.errors import KwsError
from kws_research.labels import SILENCE, UNKNOWN
from kws_research.locks import FileLock
from kws_research.streaming.settings import StreamSettings

KINDS = ("mixed", "negatives")
# whose recordings of the held-out words each split's streams take (data/task.py splits them by speaker)
HELDOUT_SPEAKERS = {"validation": ("validation",), "test": ("test", "train")}
STREAM_VERSION = 2  # 2: validation streams hear their speakers' held-out words
FRAME = SAMPLE_RATE // 100  # 10 ms frames for finding where a word is audible
ACTIVE_DB = 30.0  # a frame is part of the word when within this many dB of the clip's loudest frame


@dataclass
class Stream:
    """int16 audio and one event per word: label, kind (command/unknown), start/end seconds,
    SNR and the clip it came from."""

    audio: np.ndarray
    events: list[dict]
    split: str
    kind: str

    @property
    def seconds(self) -> float:
        return self.audio.shape[0] / SAMPLE_RATE

    @property
    def hours(self) -> float:
        return self.seconds / 3600.0


def active_region(clip: np.ndarray) -> tuple[int, int]:
    """First and last sample of the frames within ``ACTIVE_DB`` of the loudest one."""
    frames = clip[: clip.shape[0] // FRAME * FRAME].astype(np.float64).reshape(-1, FRAME)
    energy = (frames**2).mean(axis=1) + 1e-9
    loud = np.flatnonzero(10 * np.log10(energy / energy.max()) > -ACTIVE_DB)
    return int(loud[0] * FRAME), int((loud[-1] + 1) * FRAME)


def _pools(data, split: str) -> dict[str, list[tuple[np.ndarray, int, str, str]]]:
    """(audio rows, row index, label, part) of the command and non-command words of a split."""
    commands, others = [], []
    arrays = data.splits[split]
    silence, unknown = data.classes.index(SILENCE), data.classes.index(UNKNOWN)
    for row, label in enumerate(np.asarray(arrays.labels)):
        if label == unknown:
            others.append((arrays.audio, row, UNKNOWN, split))
        elif label != silence:
            commands.append((arrays.audio, row, data.classes[int(label)], split))
    heldout = data.splits.get("heldout")
    if heldout is not None:
        others += [(heldout.audio, row, UNKNOWN, "heldout") for row in _heldout_rows(data, split)]
    return {"command": commands, "unknown": others}


def _heldout_rows(data, split: str) -> list[int]:
    """The held-out words a split's streams hear: their validation speakers' in validation
    streams, everyone else's in test streams (no one's was trained on), none in training ones."""
    return data.heldout_rows(HELDOUT_SPEAKERS.get(split, ()))


def _noise_track(data, split: str) -> np.ndarray:
    """The split's part of every noise recording, each scaled to unit RMS, end to end."""
    parts = []
    for start, stop in data.noise_segments(split):
        part = np.asarray(data.noise[start:stop], dtype=np.float32)
        rms = float(np.sqrt(np.mean(part.astype(np.float64) ** 2))) if part.size else 0.0
        if rms > 0:
            parts.append(part / rms)
    return np.concatenate(parts) if parts else np.zeros(0, np.float32)


def _loop(track: np.ndarray, total: int, rng: np.random.Generator) -> np.ndarray:
    """``track`` from a random offset, repeated to ``total`` samples."""
    return np.resize(np.roll(track, -int(rng.integers(track.size))), total)


def _check_pools(pools: dict, split: str, kind: str, settings: StreamSettings) -> None:
    if kind == "mixed" and not pools["command"]:
        raise KwsError(f"stream: the {split} split has no command clips to build a mixed stream from")
    if not pools["unknown"] and (kind == "negatives" or settings.unknown_fraction > 0):
        raise KwsError(
            f"stream: the {split} split has no unknown clips; raise dataset.unknown_percentage "
            "or set stream.unknown_fraction=0"
        )


def check_buildable(data, settings: StreamSettings, splits: tuple[str, ...] = ("validation", "test")) -> None:
    """Refuse streams that cannot be built, before anything is trained or scored."""
    for split in splits:
        pools = _pools(data, split)
        for kind in KINDS:
            _check_pools(pools, split, kind, settings)


def build(data, split: str, kind: str, seconds: float, settings: StreamSettings, seed: int, background=None) -> Stream:
    """A new stream of about ``seconds`` from ``split`` (see the module docstring);
    ``background`` (int16 recordings of the split) plays under a negatives-only stream."""
    if kind not in KINDS:
        raise ValueError(f"stream kind {kind!r} is not one of {KINDS}")
    rng = np.random.default_rng([seed, SPLITS.index(split), KINDS.index(kind)])
    pools = _pools(data, split)
    _check_pools(pools, split, kind, settings)
    total = int(seconds * SAMPLE_RATE)
    rooms = rooms_for(settings.room_settings(), Path(data.path).parent.parent) if settings.reverb else None
    speech = np.zeros(total, np.float32)
    events, centres, gains, powers = [], [], [], []
    cursor = 0
    low, high = settings.gap_seconds
    while True:
        cursor += int(rng.uniform(low, high) * SAMPLE_RATE)
        use_unknown = kind == "negatives" or rng.random() < settings.unknown_fraction
        pool = pools["unknown" if use_unknown else "command"]
        audio, row, label, part = pool[int(rng.integers(len(pool)))]
        clip = np.asarray(audio[row], dtype=np.float32)
        a, b = active_region(clip)
        if cursor + (b - a) > total:
            break
        word = clip[a:b]
        heard = reverberate(word, rooms.pick(rng), tail=True) if rooms and rng.random() < settings.reverb else word
        heard = heard[: total - cursor]
        speech[cursor : cursor + heard.size] += heard
        snr = float(settings.snr_db[int(rng.integers(len(settings.snr_db)))])
        power = float(np.mean(word.astype(np.float64) ** 2))
        powers.append(power)
        centres.append(cursor + (b - a) // 2)
        gains.append(np.sqrt(power / 10 ** (snr / 10)))
        events.append(
            {
                "label": label,
                "kind": "unknown" if use_unknown else "command",
                "start": cursor / SAMPLE_RATE,
                "end": (cursor + b - a) / SAMPLE_RATE,
                "snr_db": snr,
                "clip": [part, row, a, b],  # rows a:b of that split's clip
            }
        )
        cursor += b - a
    noise = _noise_track(data, split)
    if noise.size and centres:
        looped = _loop(noise, total, rng)
        step = 1 << 20
        for lo in range(0, total, step):
            idx = np.arange(lo, min(total, lo + step))
            speech[idx] += looped[idx] * np.interp(idx, centres, gains).astype(np.float32)
    talks = []
    if kind == "negatives" and "conversation" in settings.backgrounds:  # the split's own words, talked
        words = [np.asarray(audio[row]) for audio, row, _, _ in pools["unknown"]]
        commands = [np.asarray(audio[row]) for audio, row, _, _ in pools["command"]]
        talks.append(conversation(words, commands, total, rng))
    if kind == "negatives" and background is not None and background.size:
        talks.append(background)
    for talk in talks:  # each background_snr_db under the words
        if not talk.size or not gains:
            continue
        talk = _loop(np.asarray(talk, dtype=np.float32), total, rng)
        target = float(np.mean(powers)) / 10 ** (settings.background_snr_db / 10)
        level = np.sqrt(target / (float(np.mean(talk.astype(np.float64) ** 2)) or 1.0))
        speech += talk * np.float32(level)
    return Stream(saturate_int16(speech), events, split, kind)


def split_identity(data, split: str) -> str:
    """What a stream of ``split`` is made of: its clips and labels, its speakers' held-out
    words and its noise; runs whose data differ only in training options share streams."""
    h = hashlib.sha256(json.dumps(list(data.classes)).encode())
    part = data.splits[split]
    h.update(np.ascontiguousarray(part.audio).tobytes())
    h.update(np.asarray(part.labels, dtype=np.int64).tobytes())
    if "heldout" in data.splits:
        h.update(np.ascontiguousarray(data.splits["heldout"].audio[_heldout_rows(data, split)]).tobytes())
    for start, stop in data.noise_segments(split):
        h.update(np.ascontiguousarray(data.noise[start:stop]).tobytes())
    return h.hexdigest()


def digest(data, split: str, kind: str, seconds: float, settings: StreamSettings, seed: int, background=None) -> str:
    identity = {
        "version": STREAM_VERSION,
        "data": split_identity(data, split),
        "split": split,
        "kind": kind,
        "seconds": float(seconds),
        "seed": int(seed),
        **settings.stream_identity(),
    }
    if kind == "negatives" and background is not None:
        identity["background_audio"] = hashlib.sha256(np.ascontiguousarray(background).tobytes()).hexdigest()
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def load_or_build(
    data, split: str, kind: str, seconds: float, settings: StreamSettings, seed: int, background=None
) -> Stream:
    """The cached stream for these settings, built once (under a lock) when missing."""
    key = digest(data, split, kind, seconds, settings, seed, background)
    path = Path(data.path).parent.parent / "streams" / f"{split}-{kind}-{key[:16]}"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(path.with_name(path.name + ".lock"))
        lock.acquire()
    except OSError as exc:
        raise cache.storage_error(exc, path.parent) from exc
    with lock:
        if not (path / "events.json").is_file():
            stream = build(data, split, kind, seconds, settings, seed, background)
            writer = cache.CacheWriter(path, needed=stream.audio.nbytes)
            try:
                writer.array("audio", stream.audio)
                writer.json("events.json", {"split": split, "kind": kind, "events": stream.events})
                writer.commit()
            except OSError as exc:
                writer.abort()
                raise cache.storage_error(exc, path.parent) from exc
            return stream
    audio = np.load(path / "audio.npy", mmap_mode="r")
    events = json.loads((path / "events.json").read_text())["events"]
    if audio.dtype != STORED_DTYPE:
        raise KwsError(f"{path}: not a stream of this version; delete the folder to rebuild it")
    return Stream(audio, events, split, kind)
