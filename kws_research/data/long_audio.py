"""Long recordings (podcasts, meetings, audiobooks, generated speech) as 1 s windows.

A user with real negative audio points ``dataset.long_folder`` at it: WAV or FLAC
files of any rate and channel count, split by file hash (the Speech Commands rule
on the file name, so a file and all its windows sit in one split). Each file is cut
into 1 s windows every ``hop_seconds``; windows quieter than ``min_dbfs`` (RMS) are
near-silent and skipped. Where the windows of a file lie is cached by the file's
path, size and modification time, so only a changed file is decoded again to plan.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kws_research.contract import CLIP_SAMPLES, INT16_SCALE
from kws_research.data.audio import ClipError, decode_long
from kws_research.data.layout import NOT_UTF8, SPLITS, printable, utf8_name, which_set
from kws_research.errors import ConfigError, KwsError, refuse_unknown_keys

LONG_SUFFIXES = (".wav", ".flac")
INDEX_VERSION = 1


@dataclass(frozen=True)
class WindowSettings:
    """How long recordings are cut (``dataset.long_windows``)."""

    hop_seconds: float = 1.0
    min_dbfs: float = -45.0

    @classmethod
    def from_config(cls, raw: Mapping | None) -> WindowSettings:
        raw = dict(raw or {})
        refuse_unknown_keys("dataset.long_windows", raw, cls.__dataclass_fields__)
        settings = cls(**{k: float(v) for k, v in raw.items() if v is not None})
        if not 0.1 <= settings.hop_seconds <= 10:
            raise ConfigError("dataset.long_windows.hop_seconds", f"{settings.hop_seconds} must be 0.1-10 seconds")
        if settings.min_dbfs >= 0:
            raise ConfigError("dataset.long_windows.min_dbfs", f"{settings.min_dbfs} must be below 0 dBFS")
        return settings


def speaker_pattern(pattern: str | None, key: str = "dataset.long_speaker") -> re.Pattern | None:
    """``dataset.long_speaker`` compiled: a regular expression with one group (the speaker)."""
    if pattern is None:
        return None
    try:
        compiled = re.compile(str(pattern))
    except re.error as exc:
        raise ConfigError(key, f"{pattern!r} is not a regular expression ({exc})") from None
    if compiled.groups < 1:
        raise ConfigError(key, f"{pattern!r} has no group: put the speaker part in parentheses, e.g. '^(\\d+)-'")
    return compiled


def split_key(rel: str, speaker: re.Pattern | None) -> str:
    """What a long recording's split is drawn from: its speaker when ``speaker`` names one in
    its path, else the file itself (hashed like a clip name)."""
    found = speaker.search(rel) if speaker is not None else None
    return f"{found.group(1)}_nohash_" if found else rel


def recordings(
    folder: Path,
    key: str,
    validation_percentage: float,
    testing_percentage: float,
    skipped: dict | None = None,
    speaker: re.Pattern | None = None,
) -> dict:
    """The long files of ``folder`` (recursively) per split, by speaker (``speaker``: a
    pattern whose first group names it) or else by file; files whose names are not UTF-8
    are left out (and listed in ``skipped``: no split or cache can name them)."""
    if not folder.is_dir():
        raise KwsError(f"{key}: {folder} is not a folder; point it at a folder of long .wav/.flac recordings")
    found = sorted(p for p in folder.rglob("*") if p.suffix.lower() in LONG_SUFFIXES and p.is_file())
    files, unnamed = [], []
    for path in found:
        (files if utf8_name(str(path.relative_to(folder))) else unnamed).append(path)
    if skipped is not None:
        skipped.update({printable(p, folder): NOT_UTF8 for p in unnamed})
    if not files:
        raise KwsError(f"{key}: {folder} holds no .wav or .flac files")
    out: dict[str, list[Path]] = {s: [] for s in SPLITS}
    for path in files:
        rel = path.relative_to(folder).as_posix()
        out[which_set(split_key(rel, speaker), validation_percentage, testing_percentage)].append(path)
    return out


def window_offsets(audio: np.ndarray, settings: WindowSettings) -> list[int]:
    """Start samples of the 1 s windows of ``audio`` that are louder than ``min_dbfs``."""
    hop = int(round(settings.hop_seconds * CLIP_SAMPLES))
    starts = np.arange(0, audio.shape[0] - CLIP_SAMPLES + 1, hop)
    if starts.size == 0:
        return []
    power = np.concatenate([[0.0], np.cumsum((audio.astype(np.float64) / INT16_SCALE) ** 2)])
    rms = np.sqrt((power[starts + CLIP_SAMPLES] - power[starts]) / CLIP_SAMPLES)
    loud = 20 * np.log10(rms + 1e-12) >= settings.min_dbfs
    return [int(s) for s in starts[loud]]


def _index_path(index_dir: Path, path: Path, settings: WindowSettings) -> Path:
    stat = path.stat()
    key = json.dumps([INDEX_VERSION, str(path.resolve()), stat.st_size, stat.st_mtime_ns, asdict(settings)])
    return index_dir / f"{hashlib.sha1(key.encode()).hexdigest()[:20]}.json"


def windows_of(path: Path, settings: WindowSettings, index_dir: Path) -> tuple[list[int], str | None]:
    """The loud windows of one file (from its cached index when the file is unchanged),
    or no windows and the reason the file cannot be read."""
    index = _index_path(index_dir, path, settings)
    if index.is_file():
        return json.loads(index.read_text())["offsets"], None
    try:
        offsets = window_offsets(decode_long(path), settings)
    except ClipError as exc:
        return [], str(exc)
    index_dir.mkdir(parents=True, exist_ok=True)
    tmp = index.with_suffix(".tmp")
    tmp.write_text(json.dumps({"file": str(path), "offsets": offsets}))
    tmp.replace(index)
    return offsets, None


def plan_windows(
    files: Mapping[str, list[Path]], settings: WindowSettings, index_dir: Path
) -> tuple[dict[str, list[tuple[str, int]]], dict[str, str]]:
    """(path, offset) of every loud window per split, and the unreadable files."""
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    failed: dict[str, str] = {}
    for split, paths in files.items():
        for path in paths:
            offsets, error = windows_of(path, settings, index_dir)
            if error:
                failed[str(path)] = error
            out[split] += [(str(path), offset) for offset in offsets]
    return out, failed


def cut(windows: Iterable[tuple[str, int]]) -> dict[tuple[str, int], np.ndarray]:
    """The audio of the given windows; each file is decoded once."""
    by_file: dict[str, list[int]] = {}
    for path, offset in windows:
        by_file.setdefault(path, []).append(offset)
    out = {}
    for path, offsets in sorted(by_file.items()):
        audio = decode_long(path)
        for offset in offsets:
            out[(path, offset)] = np.ascontiguousarray(audio[offset : offset + CLIP_SAMPLES])
    return out


def track(paths: list[Path]) -> np.ndarray:
    """The given recordings end to end at 16 kHz (a stream background)."""
    parts = []
    for path in paths:
        try:
            parts.append(decode_long(path))
        except ClipError:
            continue  # a file prepare already reported as unreadable
    return np.concatenate(parts) if parts else np.zeros(0, np.int16)


def file_stats(files: Mapping[str, list[Path]], prefix: str, base: Path) -> list[tuple[str, int, int]]:
    """(name, size, mtime) of every file, for the data set fingerprint and the cache."""
    out = []
    for paths in files.values():
        for path in paths:
            stat = path.stat()
            out.append((f"{prefix}/{path.relative_to(base).as_posix()}", stat.st_size, stat.st_mtime_ns))
    return sorted(out)
