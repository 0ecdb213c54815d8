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

from kws_research import ownership
from kws_research.contract import CLIP_SAMPLES
from kws_research.data import sources
from kws_research.data.items import Item
from kws_research.data.layout import SPLITS, FileEntry, Layout
from kws_research.data.sources import SplitContext
from kws_research.data.unknown import UnknownSettings, split_counts
from kws_research.errors import KwsError
from kws_research.labels import SILENCE, UNKNOWN

log = logging.getLogger(__name__)

# Noise files are cut along their length so silence clips of different splits never
# share audio: the first 80% feeds training (and augmentation), then 10% / 10%.
NOISE_SPLIT_FRACTIONS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}


@dataclass(frozen=True)
class TaskSpec:
    """The part of the data config that decides which clips go where (the defaults are
    the YAML's: see :func:`kws_research.data.dataset.task_spec`)."""

    commands: tuple[str, ...]
    unknown_percentage: float
    silence_percentage: float
    validation_percentage: float
    testing_percentage: float
    seed: int
    heldout_unknown_words: tuple[str, ...]
    unknown: UnknownSettings

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


@dataclass
class TaskPlan:
    """Items of every split plus the bookkeeping the summary shows."""

    classes: tuple[str, ...]
    splits: dict[str, list[Item]]
    heldout: list[Item] = field(default_factory=list)
    heldout_splits: list[str] = field(default_factory=list)  # the split of each held-out clip's speaker
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
    if missing and ownership.is_marked(layout.root):  # the harness generated it: damaged, not misconfigured
        raise KwsError(
            f"dataset.root: the generated data set {layout.root} is damaged (no folder for {missing}); "
            "generate it again with `kws prepare ... refresh=true` (or delete that folder)"
        )
    if missing:
        raise KwsError(
            f"dataset.commands: no folder for {missing} under {layout.root}; "
            f"present words are {sorted(layout.words)}; set dataset.commands to words that exist"
        )
    unknown_heldout = [w for w in spec.heldout_unknown_words if w not in layout.words]
    if unknown_heldout:
        raise KwsError(f"dataset.heldout_unknown_words: no folder for {unknown_heldout} under {layout.root}")


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
        unknown_items: list[Item] = []
        plan.unknown_by_source[split] = {}
        for name, count in split_counts(n_unknown, spec.unknown.shares_for(split)).items():
            source = sources.get(name)
            outside = (extra or {}).get(name, {}).get(split, [])
            context = SplitContext(split, words, frozenset(commands), frozenset(heldout_words), outside)
            chosen, warning = source.choose(context, count, _rng(spec.seed, index, source.key))
            if warning:
                plan.warnings.append(warning)
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
    heldout = [e for word in sorted(heldout_words) for e in layout.words[word]]
    plan.heldout = [Item(UNKNOWN, "clip", (e.path,)) for e in heldout]
    plan.heldout_splits = [layout.split_of(e, spec.validation_percentage, spec.testing_percentage) for e in heldout]
    return plan
