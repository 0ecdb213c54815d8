"""The ``unknown`` class: which sources give it examples, and what they share.

``dataset.unknown_sources`` gives each source a share of the unknown examples
of the training split (shares are normalised; validation and test keep the
auxiliary words unless ``dataset.unknown_sources_in_eval``): ``words`` (the root's
auxiliary words, the standard task), ``synthetic``, ``reversed``, ``spliced``,
``folder``, ``partial``, ``long_folder``, ``speech`` and ``hard_negatives``.

Each source is a module of :mod:`kws_research.data.sources`; this module holds the
settings of the mix and what several sources share. Command words, their homophones
and held-out words never become synthetic unknowns.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kws_research.data import sources
from kws_research.data.layout import NOT_UTF8, printable, utf8_name
from kws_research.data.sources import Outside
from kws_research.errors import KwsError

MINED_FILE = "mined.json"  # what `python -m kws_research.mine` writes next to the windows it saves
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
    """The unknown-class part of a dataset config: each source's share and settings."""

    shares: tuple[tuple[str, float], ...]
    in_eval: bool  # validation/test unknowns from the sources too (otherwise the words only)
    options: dict[str, Any]  # each source's settings, by name

    @classmethod
    def from_config(cls, cfg) -> UnknownSettings:
        known = sources.registry()
        raw = dict(cfg.get("unknown_sources") or {"words": 1.0})
        unknown = set(raw) - set(known)
        if unknown:
            raise KwsError(f"dataset.unknown_sources: unknown source(s) {sorted(unknown)}; use {list(known)}")
        shares = tuple((name, float(raw[name])) for name in known if float(raw.get(name) or 0) > 0)
        if any(v < 0 for v in raw.values()) or not shares:
            raise KwsError("dataset.unknown_sources: shares must be >= 0 and at least one > 0")
        for name, _ in shares:
            if known[name].needs and not cfg.get(known[name].needs[0]):
                key, what = known[name].needs
                raise KwsError(f"dataset.{key}: the {name} source needs {what}; set dataset.{key}")
        options = {name: source.settings(cfg) for name, source in known.items()}
        return cls(shares, bool(cfg["unknown_sources_in_eval"]), options)

    def shares_for(self, split: str) -> tuple[tuple[str, float], ...]:
        """Training mixes the sources; validation and test keep the standard task unless
        ``in_eval``, so accuracies stay comparable across source settings. Training-only
        sources (hard negatives) never enter validation or test."""
        if split == "train":
            return self.shares
        kept = tuple((name, s) for name, s in self.shares if not sources.get(name).training_only)
        return kept if self.in_eval and kept else (("words", 1.0),)

    def share(self, name: str) -> float:
        return dict(self.shares).get(name, 0.0)

    def option(self, name: str) -> Any:
        return self.options.get(name)

    def identity(self) -> dict:
        found = {"shares": dict(self.shares), "in_eval": self.in_eval}
        for name, source in sources.registry().items():
            found.update(source.identity(self.options.get(name), self.share(name)))
        return found


def as_path(value) -> str | None:
    return str(value) if value else None


def as_list(value) -> tuple[str, ...]:
    """One run id / folder, or a list of them."""
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


def clip_folder(
    folder: Path, key: str, split_of: Callable[[str], str], prefix: str | None = None, allow_empty: bool = False
) -> Outside:
    """The .wav clips of a folder (recursively), split by ``split_of(relative path)``, with
    their files named ``<prefix>/<relative path>`` (``prefix``: ``key``)."""
    found = Outside()
    for path in sorted(folder.rglob("*.wav")):
        if not utf8_name(str(path.relative_to(folder))):
            found.skipped[f"{prefix or key}/{printable(path, folder)}"] = NOT_UTF8
            continue
        rel = path.relative_to(folder).as_posix()
        found.clips[split_of(rel)].append(str(path))
        stat = path.stat()
        found.files.append((f"{prefix or key}/{rel}", stat.st_size, stat.st_mtime_ns))
    if not found.files and not allow_empty:
        raise KwsError(f"dataset.{key}: {folder} holds no .wav clips")
    return found


def long_recordings(spec, source: str, cache_dir: Path) -> tuple[dict[str, list[Path]], Path]:
    """The long recordings of ``source`` (``long_folder`` or ``speech``) per split, and their base folder."""
    return sources.get(source).recordings(spec, spec.unknown.option(source), cache_dir)


@dataclass
class ExtraClips:
    """What the sources beyond the data root add: per source and split, clip paths (or
    (path, offset) windows of long recordings), the files for the fingerprint and the
    cache, and the long files that could not be read (skipped, counted)."""

    clips: dict[str, dict[str, list]] = field(default_factory=dict)
    files: list[tuple[str, int, int]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


def extra_unknown_clips(spec, cache_dir: Path) -> ExtraClips:
    """The clips that the sources of task ``spec`` with a share bring from outside the root."""
    extra = ExtraClips()
    for name, source in sources.registry().items():
        if spec.unknown.share(name):
            found = source.outside(spec, spec.unknown.option(name), cache_dir)
            extra.clips[name] = found.clips
            extra.files += found.files
            extra.skipped.update(found.skipped)
    return extra
