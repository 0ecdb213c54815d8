"""The standard keyword-spotting task built from a :class:`Layout`.

Classes are ``silence``, ``unknown`` and the configured command words, in that
order (the tutorial's order). Command clips keep their split; ``unknown`` is
sampled from the other words to ``unknown_percentage`` of each split's command
clips and ``silence`` clips are cut from the background noise to
``silence_percentage`` (as in the TensorFlow example). Everything is seeded.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import numpy as np

from kws_research.contract import CLIP_SAMPLES
from kws_research.data.layout import SPLITS, FileEntry, Layout
from kws_research.data.unknown import PARTIAL_FRACTIONS, SOURCES, UnknownSettings, split_counts
from kws_research.errors import KwsError
from kws_research.labels import SILENCE, UNKNOWN

log = logging.getLogger(__name__)

# Noise files are cut along their length so silence clips of different splits never
# share audio: the first 80% feeds training (and augmentation), then 10% / 10%.
NOISE_SPLIT_FRACTIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}


@dataclass(frozen=True)
class TaskSpec:
    """The part of the data config that decides which clips go where."""

    commands: tuple[str, ...]
    unknown_percentage: float = 10.0
    silence_percentage: float = 10.0
    validation_percentage: float = 10.0
    testing_percentage: float = 10.0
    seed: int = 59185
    heldout_unknown_words: tuple[str, ...] = ()
    unknown: UnknownSettings = UnknownSettings()

    @property
    def classes(self) -> tuple[str, ...]:
        return (SILENCE, UNKNOWN, *self.commands)

    def validate(self) -> None:
        if not self.commands:
            raise KwsError("dataset.commands: empty; list at least one command word")
        dupes = {w for w in self.commands if self.commands.count(w) > 1}
        if dupes:
            raise KwsError(f"dataset.commands: repeated word(s) {sorted(dupes)}; list each once")
        for word in (SILENCE, UNKNOWN):
            if word in self.commands:
                raise KwsError(f"dataset.commands: '{word}' is a reserved class name; remove it")
        for key in ("unknown_percentage", "silence_percentage", "validation_percentage", "testing_percentage"):
            value = getattr(self, key)
            if not 0 <= value <= 100:
                raise KwsError(f"dataset.{key}: {value} is not a percentage in [0, 100]")
        overlap = set(self.heldout_unknown_words) & set(self.commands)
        if overlap:
            raise KwsError(
                f"dataset.heldout_unknown_words: {sorted(overlap)} are command words; hold out auxiliary words only"
            )


@dataclass(frozen=True)
class Item:
    """One example of a split: where its audio comes from and its class.

    ``kind`` says how to render it: ``clip`` (a file), ``silence`` (a cut of noise
    file ``noise`` at ``offset`` scaled by ``gain``), ``window`` (1 s of a long
    recording from sample ``offset``), or a derived unknown source.
    """

    label: str
    kind: str
    paths: tuple[str, ...] = ()
    noise: int = -1
    offset: int = 0
    gain: float = 1.0


@dataclass
class TaskPlan:
    """Items of every split plus the bookkeeping the summary shows."""

    classes: tuple[str, ...]
    splits: dict[str, list[Item]]
    heldout: list[Item] = field(default_factory=list)
    unknown_by_source: dict[str, dict[str, int]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)


def _rng(seed: int, *keys: int) -> np.random.Generator:
    return np.random.default_rng([seed, *keys])


def silence_items(count: int, noise_lengths: list[int], split: str, seed: int) -> list[Item]:
    """``count`` random 1 s cuts of the split's part of the noise recordings."""
    if count == 0:
        return []
    lo, hi = NOISE_SPLIT_FRACTIONS[split]
    usable = [
        (i, int(n * lo), int(n * hi) - CLIP_SAMPLES)
        for i, n in enumerate(noise_lengths)
        if int(n * hi) - int(n * lo) >= CLIP_SAMPLES
    ]
    if not usable:
        raise KwsError(
            "dataset.silence_percentage: the background noise recordings are too short to cut "
            "silence clips from; add longer files to _background_noise_ or set dataset.silence_percentage=0"
        )
    rng = _rng(seed, SPLITS.index(split), 1)
    items = []
    for _ in range(count):
        index, start, stop = usable[int(rng.integers(len(usable)))]
        offset = int(rng.integers(start, stop + 1))
        gain = float(rng.uniform(0.05, 1.0))
        items.append(Item(SILENCE, "silence", noise=index, offset=offset, gain=round(gain, 6)))
    return items


def check_words(spec: TaskSpec, layout: Layout) -> None:
    """Every configured word must have a folder under the root."""
    spec.validate()
    missing = [w for w in spec.commands if w not in layout.words]
    if missing:
        raise KwsError(
            f"dataset.commands: no folder for {missing} under {layout.root}; "
            f"present words are {sorted(layout.words)}; set dataset.commands to words that exist"
        )
    unknown_heldout = [w for w in spec.heldout_unknown_words if w not in layout.words]
    if unknown_heldout:
        raise KwsError(f"dataset.heldout_unknown_words: no folder for {unknown_heldout} under {layout.root}")


def _unknown_pools(
    split: str,
    words: dict[str, list[FileEntry]],
    commands: set[str],
    heldout: set[str],
    extra: dict[str, dict[str, list[str]]],
) -> dict[str, list[Item]]:
    """Candidate unknown items of one split, per source (``spliced`` pairs are drawn later)."""
    usable = {w: e for w, e in sorted(words.items()) if w not in heldout}
    return {
        "words": [
            Item(UNKNOWN, "clip", (e.path,)) for w, entries in usable.items() if w not in commands for e in entries
        ],
        "reversed": [Item(UNKNOWN, "reversed", (e.path,)) for entries in usable.values() for e in entries],
        "synthetic": [Item(UNKNOWN, "clip", (p,)) for p in extra.get("synthetic", {}).get(split, [])],
        "folder": [Item(UNKNOWN, "clip", (p,)) for p in extra.get("folder", {}).get(split, [])],
        "hard_negatives": [Item(UNKNOWN, "clip", (p,)) for p in extra.get("hard_negatives", {}).get(split, [])],
        **{
            source: [Item(UNKNOWN, "window", (p,), offset=o) for p, o in extra.get(source, {}).get(split, [])]
            for source in ("long_folder", "speech")
        },
    }


def _spliced(count: int, words: dict[str, list[FileEntry]], heldout: set[str], rng: np.random.Generator) -> list[Item]:
    """``count`` pairs of clips of two different words (never a command with itself)."""
    clips = [(w, e.path) for w, entries in sorted(words.items()) if w not in heldout for e in entries]
    if len({w for w, _ in clips}) < 2:
        return []
    items = []
    while len(items) < count:
        (wa, a), (wb, b) = (clips[int(i)] for i in rng.integers(len(clips), size=2))
        if wa != wb:
            items.append(Item(UNKNOWN, "spliced", (a, b)))
    return items


def _partial(count: int, words: dict[str, list[FileEntry]], commands: set[str], rng: np.random.Generator) -> list[Item]:
    """``count`` onsets of command clips, each keeping a seeded fraction of its speech (``gain``)."""
    clips = [e.path for w, entries in sorted(words.items()) if w in commands for e in entries]
    if not clips:
        return []
    low, high = PARTIAL_FRACTIONS
    picks = rng.permutation(len(clips))[:count] if count <= len(clips) else rng.integers(len(clips), size=count)
    return [Item(UNKNOWN, "partial", (clips[int(i)],), gain=round(float(rng.uniform(low, high)), 3)) for i in picks]


def plan_task(
    spec: TaskSpec, layout: Layout, noise_lengths: list[int], extra: dict[str, dict[str, list[str]]] | None = None
) -> TaskPlan:
    """Assign clips to splits and classes; deterministic given ``spec.seed``.

    ``extra`` holds the clips (absolute paths, or (path, offset) windows of long
    recordings, per split) of the unknown sources outside the data root.
    """
    check_words(spec, layout)
    commands = set(spec.commands)
    heldout_words = set(spec.heldout_unknown_words)
    by_split: dict[str, dict[str, list[FileEntry]]] = {s: {} for s in SPLITS}
    for word, entries in layout.words.items():
        for entry in entries:
            split = layout.split_of(entry, spec.validation_percentage, spec.testing_percentage)
            by_split[split].setdefault(word, []).append(entry)

    plan = TaskPlan(classes=spec.classes, splits={s: [] for s in SPLITS})
    for index, split in enumerate(SPLITS):
        words = by_split[split]
        command_items = [Item(word, "clip", (e.path,)) for word in spec.commands for e in words.get(word, [])]
        n_commands = len(command_items)
        n_unknown = math.ceil(n_commands * spec.unknown_percentage / 100)
        pools = _unknown_pools(split, words, commands, heldout_words, extra or {})
        unknown_items: list[Item] = []
        plan.unknown_by_source[split] = {}
        for name, count in split_counts(n_unknown, spec.unknown.shares_for(split)).items():
            rng = _rng(spec.seed, index, SOURCES.index(name))
            if name == "spliced":
                chosen = _spliced(count, words, heldout_words, rng)
            elif name == "partial":
                chosen = _partial(count, words, commands, rng)
            else:
                pool = pools[name]
                if count > len(pool):
                    plan.warnings.append(
                        f"{split}: only {len(pool)} '{name}' clips for {count} 'unknown' examples; using all"
                    )
                chosen = [pool[i] for i in sorted(rng.permutation(len(pool))[:count])]
            unknown_items += chosen
            plan.unknown_by_source[split][name] = len(chosen)
        n_silence = math.ceil(n_commands * spec.silence_percentage / 100)
        if n_silence and not noise_lengths:
            raise KwsError(
                f"dataset.silence_percentage: {layout.root}/_background_noise_ has no usable noise "
                "recordings; add some or set dataset.silence_percentage=0"
            )
        silence = silence_items(n_silence, noise_lengths, split, spec.seed)
        plan.splits[split] = command_items + unknown_items + silence
        if not command_items:
            plan.warnings.append(f"{split}: no command clips (check the split lists or percentages)")
    plan.heldout = [Item(UNKNOWN, "clip", (e.path,)) for word in sorted(heldout_words) for e in layout.words[word]]
    return plan
