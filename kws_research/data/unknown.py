"""Sources for the ``unknown`` class beyond the root's auxiliary words.

``dataset.unknown_sources`` gives each source a share of the unknown examples
of the training split (shares are normalised; validation and test keep the
auxiliary words unless ``dataset.unknown_sources_in_eval``):

* ``words``: the auxiliary word folders of the root (the standard task);
* ``synthetic``: other English words (``unknown_words.txt``, a few hundred short
  common words) spoken by the espeak-ng generator, placed in 1 s clips like the
  embedded data set, each synthetic speaker in one split;
* ``reversed``: time-reversed clips of any word of the split;
* ``spliced``: the start of one word joined to the end of another word;
* ``folder``: clips from ``dataset.unknown_folder`` (any layout, split by file hash);
* ``partial``: the onset alone of a command clip (the first 40-60% of its speech),
  against triggers on word fragments;
* ``long_folder``: 1 s windows of the long recordings in ``dataset.long_folder``
  (podcasts, meetings: any WAV/FLAC, any rate; near-silent windows skipped, split by file hash);
* ``speech``: 1 s windows of continuous synthetic speech (``dataset.synthetic_speech``),
  sentences without the command words, each synthetic speaker in one split;
* ``hard_negatives``: windows a run's detector fired on (``python -m kws_research.mine``),
  from ``dataset.hard_negatives`` (a run id or a folder of clips, or a list of them: the
  rounds of a mining loop); training split only.

Command words, their homophones and held-out words never become synthetic unknowns.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from kws_research.contract import saturate_int16
from kws_research.data import long_audio
from kws_research.data.layout import SPLITS, scan, which_set
from kws_research.data.speech import speech_root as generated
from kws_research.data.speech import split_recordings
from kws_research.data.synthetic import GeneratorSettings, ensure_generated
from kws_research.errors import KwsError

SOURCES = ("words", "synthetic", "reversed", "spliced", "folder", "partial", "long_folder", "speech", "hard_negatives")
MINED_FILE = "mined.json"  # what `python -m kws_research.mine` writes next to the windows it saves
PARTIAL_FRACTIONS = (0.4, 0.6)  # how much of a command word's speech a partial clip keeps
VOCABULARY = Path(__file__).with_name("unknown_words.txt")
# Words a listener (or a model) cannot tell from a command word.
HOMOPHONES = {
    "no": ("know", "noh"),
    "right": ("write", "rite", "wright"),
    "two": ("to", "too"),
    "four": ("for", "fore"),
    "one": ("won",),
    "eight": ("ate",),
    "off": ("of",),
    "yes": ("yess",),
    "go": ("goe",),
    "up": (),
    "down": (),
    "left": (),
    "on": (),
    "stop": (),
}


@dataclass(frozen=True)
class UnknownSettings:
    """The unknown-class part of a dataset config."""

    shares: tuple[tuple[str, float], ...] = (("words", 1.0),)
    folder: str | None = None
    synthetic: dict = field(default_factory=dict)
    in_eval: bool = False  # validation/test unknowns from the sources too (default: words only)
    long_folder: str | None = None
    windows: long_audio.WindowSettings = long_audio.WindowSettings()
    speech: dict = field(default_factory=dict)
    hard_negatives: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg) -> UnknownSettings:
        raw = dict(cfg.get("unknown_sources") or {"words": 1.0})
        unknown = set(raw) - set(SOURCES)
        if unknown:
            raise KwsError(f"dataset.unknown_sources: unknown source(s) {sorted(unknown)}; use {list(SOURCES)}")
        shares = tuple((name, float(raw[name])) for name in SOURCES if float(raw.get(name) or 0) > 0)
        if any(v < 0 for v in raw.values()) or not shares:
            raise KwsError("dataset.unknown_sources: shares must be >= 0 and at least one > 0")
        for source, key, what in (
            ("folder", "unknown_folder", "a folder of clips"),
            ("long_folder", "long_folder", "a folder of long .wav/.flac recordings"),
            ("hard_negatives", "hard_negatives", "a run id mined with `python -m kws_research.mine` or a folder"),
        ):
            if dict(shares).get(source) and not cfg.get(key):
                raise KwsError(f"dataset.{key}: the {source} source needs {what}; set dataset.{key}")
        return cls(
            shares,
            _as_path(cfg.get("unknown_folder")),
            dict(cfg.get("synthetic_unknown") or {}),
            bool(cfg.get("unknown_sources_in_eval", False)),
            _as_path(cfg.get("long_folder")),
            long_audio.WindowSettings.from_config(cfg.get("long_windows")),
            dict(cfg.get("synthetic_speech") or {}),
            _as_list(cfg.get("hard_negatives")),
        )

    def shares_for(self, split: str) -> tuple[tuple[str, float], ...]:
        """Training mixes the sources; validation and test keep the standard task unless
        ``in_eval``, so accuracies stay comparable across source settings. Hard negatives
        are mined for training and never enter validation or test."""
        if split == "train":
            return self.shares
        kept = tuple((name, s) for name, s in self.shares if name != "hard_negatives")
        return kept if self.in_eval and kept else (("words", 1.0),)

    def share(self, name: str) -> float:
        return dict(self.shares).get(name, 0.0)

    def identity(self) -> dict:
        return {
            "shares": dict(self.shares),
            "folder": self.folder,
            "synthetic": self.synthetic,
            "in_eval": self.in_eval,
            **({"windows": asdict(self.windows)} if self.share("long_folder") or self.share("speech") else {}),
            **({"speech": self.speech} if self.share("speech") else {}),
        }


def _as_path(value) -> str | None:
    return str(value) if value else None


def _as_list(value) -> tuple[str, ...]:
    """``dataset.hard_negatives``: one run id / folder, or a list of them."""
    if not value:
        return ()
    return (str(value),) if isinstance(value, str) else tuple(str(v) for v in value)


def split_counts(total: int, shares: tuple[tuple[str, float], ...]) -> dict[str, int]:
    """``total`` examples divided by share (largest remainder, deterministic)."""
    weight = sum(s for _, s in shares)
    exact = [(name, total * s / weight) for name, s in shares]
    counts = {name: int(v) for name, v in exact}
    left = total - sum(counts.values())
    for name, _ in sorted(exact, key=lambda item: item[1] - int(item[1]), reverse=True)[:left]:
        counts[name] += 1
    return counts


def vocabulary(commands: tuple[str, ...], excluded: tuple[str, ...], path: str | None = None) -> list[str]:
    """The synthetic unknown words: the word list minus commands, homophones and ``excluded``."""
    source = Path(path) if path else VOCABULARY
    if not source.is_file():
        raise KwsError(
            f"dataset.synthetic_unknown.vocabulary: {source} is not a file; give a word list, one word a line"
        )
    words = [w.strip().lower() for w in source.read_text().splitlines() if w.strip() and not w.startswith("#")]
    banned = {w.lower() for w in (*commands, *excluded)}
    for command in commands:
        banned.update(HOMOPHONES.get(command.lower(), ()))
    kept = sorted({w for w in words if re.fullmatch(r"[a-z']+", w) and w not in banned})
    if not kept:
        raise KwsError(f"{source}: no usable words left after removing command words and homophones")
    return kept


def speech_extent(clip: np.ndarray, frame: int = 160) -> tuple[int, int]:
    """First and last sample of the frames within 30 dB of the loudest frame."""
    x = clip.astype(np.float64)
    frames = x[: len(x) // frame * frame].reshape(-1, frame)
    energy = (frames**2).mean(axis=1) + 1e-12
    loud = np.nonzero(energy > energy.max() * 1e-3)[0]
    if loud.size == 0:
        return 0, len(x)
    return int(loud[0] * frame), int((loud[-1] + 1) * frame)


def splice(first: np.ndarray, second: np.ndarray, fade: int = 80) -> np.ndarray:
    """The first half of ``first``'s speech joined to the second half of ``second``'s,
    with a short crossfade (a click would give the splice away), at ``first``'s position."""
    a0, a1 = speech_extent(first)
    b0, b1 = speech_extent(second)
    head = first[a0 : (a0 + a1) // 2].astype(np.float32)
    tail = second[(b0 + b1) // 2 : b1].astype(np.float32)
    fade = min(fade, len(head), len(tail))
    if fade:
        ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
        head[-fade:] = head[-fade:] * (1 - ramp) + tail[:fade] * ramp
        tail = tail[fade:]
    joined = np.concatenate([head, tail])
    out = np.zeros(len(first), dtype=np.float32)
    start = min(a0, max(0, len(first) - len(joined)))
    joined = joined[: len(first) - start]
    out[start : start + len(joined)] = joined
    return saturate_int16(out)


def onset(clip: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``fraction`` of ``clip``'s speech, in place, and silence after it."""
    start, end = speech_extent(clip)
    cut = start + int(round((end - start) * fraction))
    out = np.zeros_like(clip)
    out[:cut] = clip[:cut]
    return out


def synthetic_root(spec, cache_dir: Path) -> Path:
    """The generated root of other English words for the ``synthetic`` source (made once)."""
    options = dict(spec.unknown.synthetic)
    words = vocabulary(spec.commands, spec.heldout_unknown_words, options.pop("vocabulary", None))
    settings = GeneratorSettings.from_config(
        {**options, "words": words}, "dataset.synthetic_unknown", speakers=20, repetitions=1, noise_seconds=12.0, seed=1
    )
    return ensure_generated(cache_dir / "unknown_synthetic" / settings.digest(), settings)


def speech_root(spec, cache_dir: Path) -> Path:
    """The generated continuous speech for the ``speech`` source and stream background."""
    options = dict(spec.unknown.speech)
    words = vocabulary(spec.commands, spec.heldout_unknown_words, options.get("vocabulary"))
    return generated(options, words, cache_dir)


def long_recordings(spec, source: str, cache_dir: Path) -> tuple[dict[str, list[Path]], Path]:
    """The long recordings of ``source`` (``long_folder`` or ``speech``) per split, and their base folder."""
    if source == "speech":
        root = speech_root(spec, cache_dir).resolve()
        return split_recordings(root), root
    folder = Path(str(spec.unknown.long_folder)).expanduser().resolve()
    pct = (spec.validation_percentage, spec.testing_percentage)
    return long_audio.recordings(folder, "dataset.long_folder", *pct), folder


def hard_negative_folder(value: str, cache_dir: Path) -> Path:
    """``dataset.hard_negatives``: a folder of clips, or a run id whose mined windows are in the cache."""
    folder = Path(value).expanduser()
    if folder.is_dir():
        return folder.resolve()
    mined = cache_dir / "hard_negatives" / value
    if mined.is_dir():
        return mined.resolve()
    raise KwsError(
        f"dataset.hard_negatives: {value} is neither a folder nor a run with mined windows in {mined.parent}; "
        f"run `python -m kws_research.mine run_id={value}` first"
    )


@dataclass
class ExtraClips:
    """What the sources beyond the data root add: per source and split, clip paths (or
    (path, offset) windows of long recordings), the files for the fingerprint and the
    cache, and the long files that could not be read (skipped, counted)."""

    clips: dict[str, dict[str, list]] = field(default_factory=dict)
    files: list[tuple[str, int, int]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def _clip_folder(
    folder: Path, key: str, split_of, prefix: str | None = None, allow_empty: bool = False
) -> tuple[dict[str, list[str]], list[tuple[str, int, int]]]:
    """The .wav clips of a folder (recursively), split by ``split_of(relative path)``, and
    their files named ``<prefix>/<relative path>`` (``prefix``: ``key``)."""
    clips: dict[str, list[str]] = {s: [] for s in SPLITS}
    files = []
    for path in sorted(folder.rglob("*.wav")):
        rel = path.relative_to(folder).as_posix()
        clips[split_of(rel)].append(str(path))
        stat = path.stat()
        files.append((f"{prefix or key}/{rel}", stat.st_size, stat.st_mtime_ns))
    if not files and not allow_empty:
        raise KwsError(f"dataset.{key}: {folder} holds no .wav clips")
    return clips, files


def extra_unknown_clips(spec, cache_dir: Path) -> ExtraClips:
    """The clips of the sources of task ``spec`` that live outside the data root."""
    extra = ExtraClips()
    pct = (spec.validation_percentage, spec.testing_percentage)
    if spec.unknown.share("synthetic"):
        root = synthetic_root(spec, cache_dir).resolve()  # clips are read relative to the data root
        layout = scan(root)
        extra.clips["synthetic"] = {s: [] for s in SPLITS}
        for entries in layout.words.values():
            for entry in entries:
                extra.clips["synthetic"][layout.split_of(entry, *pct)].append(str(root / entry.path))
                extra.files.append((f"synthetic/{entry.path}", entry.size, entry.mtime_ns))
    if spec.unknown.share("folder"):
        folder = Path(str(spec.unknown.folder)).expanduser().resolve()
        if not folder.is_dir():
            raise KwsError(f"dataset.unknown_folder: {folder} is not a folder of .wav clips")
        extra.clips["folder"], files = _clip_folder(
            folder, "unknown_folder", lambda rel: which_set(rel, *pct), "folder"
        )
        extra.files += files
    for source in ("long_folder", "speech"):
        if spec.unknown.share(source):
            recordings, base = long_recordings(spec, source, cache_dir)
            windows, failed = long_audio.plan_windows(recordings, spec.unknown.windows, cache_dir / "long_windows")
            extra.clips[source] = windows
            extra.files += long_audio.file_stats(recordings, source, base)
            extra.skipped.update(failed)
            if not windows["train"]:
                raise KwsError(
                    f"dataset.{'synthetic_speech' if source == 'speech' else source}: no window of the training "
                    "recordings is louder than "
                    f"dataset.long_windows.min_dbfs={spec.unknown.windows.min_dbfs}; lower it or add recordings"
                )
    if spec.unknown.share("hard_negatives"):
        extra.clips["hard_negatives"] = {s: [] for s in SPLITS}
        for value in spec.unknown.hard_negatives:
            folder = hard_negative_folder(value, cache_dir)
            # the folder's name (a run id for mined windows) is part of the data set's identity
            empty_ok = (folder / MINED_FILE).is_file()  # a mining round that found nothing
            clips, files = _clip_folder(
                folder, "hard_negatives", lambda rel: "train", f"hard_negatives/{folder.name}", empty_ok
            )
            extra.clips["hard_negatives"]["train"] += clips["train"]
            extra.files += files
    return extra
