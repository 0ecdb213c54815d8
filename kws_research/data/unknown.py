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
  against triggers on word fragments.

Command words, their homophones and held-out words never become synthetic unknowns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws_research.contract import saturate_int16
from kws_research.data.layout import SPLITS, scan, which_set
from kws_research.data.synthetic import GeneratorSettings, ensure_generated
from kws_research.errors import KwsError

SOURCES = ("words", "synthetic", "reversed", "spliced", "folder", "partial")
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

    @classmethod
    def from_config(cls, cfg) -> UnknownSettings:
        raw = dict(cfg.get("unknown_sources") or {"words": 1.0})
        unknown = set(raw) - set(SOURCES)
        if unknown:
            raise KwsError(f"dataset.unknown_sources: unknown source(s) {sorted(unknown)}; use {list(SOURCES)}")
        shares = tuple((name, float(raw[name])) for name in SOURCES if float(raw.get(name) or 0) > 0)
        if any(v < 0 for v in raw.values()) or not shares:
            raise KwsError("dataset.unknown_sources: shares must be >= 0 and at least one > 0")
        folder = cfg.get("unknown_folder")
        if dict(shares).get("folder") and not folder:
            raise KwsError(
                "dataset.unknown_folder: the folder source needs a folder of clips; set dataset.unknown_folder"
            )
        return cls(
            shares,
            str(folder) if folder else None,
            dict(cfg.get("synthetic_unknown") or {}),
            bool(cfg.get("unknown_sources_in_eval", False)),
        )

    def shares_for(self, split: str) -> tuple[tuple[str, float], ...]:
        """Training mixes the sources; validation and test keep the standard task unless
        ``in_eval``, so accuracies stay comparable across source settings."""
        return self.shares if split == "train" or self.in_eval else (("words", 1.0),)

    def share(self, name: str) -> float:
        return dict(self.shares).get(name, 0.0)

    def identity(self) -> dict:
        return {
            "shares": dict(self.shares),
            "folder": self.folder,
            "synthetic": self.synthetic,
            "in_eval": self.in_eval,
        }


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


def extra_unknown_clips(spec, cache_dir: Path) -> tuple[dict[str, dict[str, list[str]]], list[tuple[str, int, int]]]:
    """Per-split clips (absolute paths) of the ``synthetic`` and ``folder`` sources of
    task ``spec``, and their (name, size, mtime) for the fingerprint and the cache."""
    extra: dict[str, dict[str, list[str]]] = {}
    files: list[tuple[str, int, int]] = []
    pct = (spec.validation_percentage, spec.testing_percentage)
    if spec.unknown.share("synthetic"):
        root = synthetic_root(spec, cache_dir).resolve()  # clips are read relative to the data root
        layout = scan(root)
        extra["synthetic"] = {s: [] for s in SPLITS}
        for entries in layout.words.values():
            for entry in entries:
                extra["synthetic"][layout.split_of(entry, *pct)].append(str(root / entry.path))
                files.append((f"synthetic/{entry.path}", entry.size, entry.mtime_ns))
    if spec.unknown.share("folder"):
        folder = Path(str(spec.unknown.folder)).expanduser().resolve()
        if not folder.is_dir():
            raise KwsError(f"dataset.unknown_folder: {folder} is not a folder of .wav clips")
        extra["folder"] = {s: [] for s in SPLITS}
        for path in sorted(folder.rglob("*.wav")):
            rel = path.relative_to(folder).as_posix()
            extra["folder"][which_set(rel, *pct)].append(str(path))
            stat = path.stat()
            files.append((f"folder/{rel}", stat.st_size, stat.st_mtime_ns))
        if not any(extra["folder"].values()):
            raise KwsError(f"dataset.unknown_folder: {folder} holds no .wav clips")
    return extra, files
