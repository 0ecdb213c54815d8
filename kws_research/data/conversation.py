"""Pseudo-conversation from a split's own words: what people near the phone sound like
when no command is said.

An utterance is one of: a non-command word, a word reversed, two words spliced (the
start of one, the end of another), or the onset of a command word (40-60% of its
speech); each is trimmed to its speech, and utterances follow each other after gaps
of 50-300 ms. A second talker, 10 dB quieter, speaks over the first in stretches of
2-6 s, a share ``overlap`` of the time. Everything comes from the clips it is given,
so a split's conversation is its own speakers' (real voices where the data set has
them; the stream background ``conversation`` and the unknown source of that name).
"""

from __future__ import annotations

import numpy as np

from kws_research.contract import SAMPLE_RATE
from kws_research.data.audio import speech_extent
from kws_research.data.sources.partial import FRACTIONS, onset
from kws_research.data.sources.spliced import splice

GAP_SECONDS = (0.05, 0.3)
SECOND_TALKER_DB = -10.0
OVERLAP = 0.3
STRETCH_SECONDS = (2.0, 6.0)
KINDS = ("word", "reversed", "spliced", "partial")
WEIGHTS = (0.4, 0.2, 0.2, 0.2)


def _speech(clip: np.ndarray) -> np.ndarray:
    start, end = speech_extent(clip)
    return clip[start:end].astype(np.float32)


def utterance(words: list[np.ndarray], commands: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One utterance (float32, speech only) of a seeded kind; partials need ``commands``."""
    kind = KINDS[int(rng.choice(len(KINDS), p=WEIGHTS))] if commands else KINDS[int(rng.integers(3))]
    if kind == "partial":
        return _speech(onset(commands[int(rng.integers(len(commands)))], float(rng.uniform(*FRACTIONS))))
    clip = words[int(rng.integers(len(words)))]
    if kind == "spliced":
        pool = words + commands
        return _speech(splice(clip, pool[int(rng.integers(len(pool)))]))
    speech = _speech(clip)
    return speech[::-1].copy() if kind == "reversed" else speech


def _on_stretches(total: int, overlap: float, rng: np.random.Generator) -> list[tuple[int, int]]:
    """The stretches in which the second talker speaks."""
    stretches, cursor = [], 0
    while cursor < total:
        length = int(rng.uniform(*STRETCH_SECONDS) * SAMPLE_RATE)
        if rng.random() < overlap:
            stretches.append((cursor, cursor + length))
        cursor += length
    return stretches


def _talk(out, words, commands, rng, gain: float = 1.0, inside: list[tuple[int, int]] | None = None) -> None:
    """Utterances after gaps into ``out`` (only those starting inside ``inside``, when given)."""
    cursor = int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)
    stretch = 0
    while cursor < out.size:
        speech = utterance(words, commands, rng)[: out.size - cursor]
        if inside is not None:
            while stretch < len(inside) and inside[stretch][1] <= cursor:
                stretch += 1
            if stretch == len(inside):
                return
            if cursor < inside[stretch][0]:
                cursor = inside[stretch][0]
                continue
        out[cursor : cursor + speech.size] += speech * np.float32(gain)
        cursor += speech.size + int(rng.uniform(*GAP_SECONDS) * SAMPLE_RATE)


def conversation(
    words: list[np.ndarray], commands: list[np.ndarray], samples: int, rng: np.random.Generator, overlap=OVERLAP
) -> np.ndarray:
    """``samples`` of pseudo-conversation (float32, int16 scale) from ``words`` (clips of
    non-command words) and ``commands`` (command clips, for onsets and splices)."""
    if not words:
        raise ValueError("a conversation needs non-command words")
    out = np.zeros(samples, np.float32)
    _talk(out, words, commands, rng)
    second = _on_stretches(samples, overlap, rng)
    if second:
        _talk(out, words, commands, rng, 10 ** (SECOND_TALKER_DB / 20), second)
    return out
