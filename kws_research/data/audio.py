"""Decoding audio files into the stored representation of :mod:`kws_research.contract`
(1 s, 16 kHz, mono, int16); float32 only at use."""

from __future__ import annotations

import wave
from math import gcd
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, STORED_DTYPE, to_int16

MIN_SAMPLE_RATE = 8000  # telephone speech; anything lower has lost the words


class ClipError(Exception):
    """A clip that cannot be used; the message is the reason shown in the summary."""


def read_mono(path: Path | str) -> tuple[np.ndarray, int]:
    """Read any soundfile-supported file as float32 mono in [-1, 1] and its rate."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ClipError(f"unreadable ({exc.strerror or exc})") from exc
    if size == 0:
        raise ClipError("empty file (0 bytes)")
    try:
        data, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile reports corrupt headers as several error types
        reason = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise ClipError(f"not a readable audio file ({reason})") from exc
    if data.shape[0] == 0:
        raise ClipError("no audio frames")
    if rate < MIN_SAMPLE_RATE:
        raise ClipError(f"sample rate {rate} Hz is below {MIN_SAMPLE_RATE} Hz: too low for speech")
    mono = data.mean(axis=1) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(mono)):
        raise ClipError("contains NaN/Inf samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(rate)


def resample(signal: np.ndarray, rate_in: int, rate_out: int = SAMPLE_RATE) -> np.ndarray:
    """Polyphase resampling (scipy) with the smallest integer up/down factors."""
    if rate_in == rate_out:
        return signal
    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(signal, rate_out // g, rate_in // g).astype(np.float32)


def fit_length(signal: np.ndarray, num_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """Zero-pad short clips at the end (as the official pipeline does); crop long
    ones to the loudest window so a long recording keeps its word."""
    n = signal.shape[0]
    if n == num_samples:
        return signal
    if n < num_samples:
        return np.pad(signal, (0, num_samples - n))
    energy = np.concatenate([[0.0], np.cumsum(signal.astype(np.float64) ** 2)])
    window_energy = energy[num_samples:] - energy[: n - num_samples + 1]
    start = int(np.argmax(window_energy))
    return signal[start : start + num_samples]


def declared_frames(path: Path | str) -> int | None:
    """Frames a PCM WAV header promises (None for other formats and unreadable headers)."""
    try:
        with wave.open(str(path), "rb") as header:
            return header.getnframes()
    except (wave.Error, EOFError, OSError):
        return None


def decode_clip_checked(path: Path | str, num_samples: int = CLIP_SAMPLES) -> tuple[np.ndarray, str | None]:
    """:func:`decode_clip` plus a note when the file holds fewer frames than its header
    promises (a truncated download or copy: the clip is used, zero-padded, and reported)."""
    signal, rate = read_mono(path)
    promised = declared_frames(path)
    note = None
    if promised is not None and promised > signal.shape[0]:
        note = f"truncated: the header promises {promised} frames, the file holds {signal.shape[0]}"
    return to_int16(fit_length(resample(signal, rate), num_samples)), note


def decode_clip(path: Path | str, num_samples: int = CLIP_SAMPLES) -> np.ndarray:
    """One clip as int16 of exactly ``num_samples`` at 16 kHz, mono."""
    return decode_clip_checked(path, num_samples)[0]


def decode_long(path: Path | str) -> np.ndarray:
    """A whole recording (background noise) as int16 at 16 kHz, mono."""
    signal, rate = read_mono(path)
    return to_int16(resample(signal, rate))


def speech_extent(clip: np.ndarray, frame: int = 160) -> tuple[int, int]:
    """First and last sample of the frames within 30 dB of the loudest frame."""
    start, end = speech_extents(np.asarray(clip)[None], frame)[0]
    return int(start), int(end)


def speech_extents(clips: np.ndarray, frame: int = 160, chunk: int = 1024) -> np.ndarray:
    """:func:`speech_extent` of each row of ``clips`` [N, samples], as [N, 2] (the whole row
    where nothing is loud), vectorised in chunks of rows."""
    clips = np.asarray(clips)
    length = clips.shape[1]
    out = np.empty((clips.shape[0], 2), np.int64)
    for first in range(0, clips.shape[0], chunk):
        x = clips[first : first + chunk, : length // frame * frame].astype(np.float64)
        energy = (x.reshape(x.shape[0], -1, frame) ** 2).mean(axis=2) + 1e-12
        loud = energy > energy.max(axis=1, keepdims=True) * 1e-3
        any_loud = loud.any(axis=1)
        begin = np.where(any_loud, loud.argmax(axis=1) * frame, 0)
        end = np.where(any_loud, (loud.shape[1] - loud[:, ::-1].argmax(axis=1)) * frame, length)
        out[first : first + x.shape[0]] = np.stack([begin, end], axis=1)
    return out


def write_wav(path: Path | str, samples: np.ndarray, rate: int = SAMPLE_RATE) -> None:
    """Write int16 mono PCM, the format of the official archive."""
    sf.write(str(path), np.asarray(samples, dtype=STORED_DTYPE), rate, subtype="PCM_16")
