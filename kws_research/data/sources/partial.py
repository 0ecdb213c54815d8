"""``partial``: the onset alone of a command clip (the first 40-60% of its speech), against
triggers on word fragments."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kws_research.data.audio import speech_extent
from kws_research.data.items import Item
from kws_research.data.sources import SplitContext, UnknownSource
from kws_research.labels import UNKNOWN

FRACTIONS = (0.4, 0.6)  # how much of a command word's speech a partial clip keeps


def onset(clip: np.ndarray, fraction: float) -> np.ndarray:
    """The first ``fraction`` of ``clip``'s speech, in place, and silence after it."""
    start, end = speech_extent(clip)
    cut = start + int(round((end - start) * fraction))
    out = np.zeros_like(clip)
    out[:cut] = clip[:cut]
    return out


class Partial(UnknownSource):
    seed_key = 5

    def choose(self, ctx: SplitContext, count: int, rng: np.random.Generator) -> tuple[list[Item], str | None]:
        """``count`` onsets of command clips, each keeping a seeded fraction of its speech."""
        clips = [e.path for w, entries in sorted(ctx.words.items()) if w in ctx.commands for e in entries]
        if not clips:
            return [], None
        low, high = FRACTIONS
        picks = rng.permutation(len(clips))[:count] if count <= len(clips) else rng.integers(len(clips), size=count)
        items = [
            Item(UNKNOWN, "partial", (clips[int(i)],), fraction=round(float(rng.uniform(low, high)), 3)) for i in picks
        ]
        return items, None

    def render(self, item: Item, decoded: Mapping) -> np.ndarray:
        return onset(decoded[item.paths[0]], item.fraction)

    def source_name(self, item: Item) -> str:
        return f"partial:{item.paths[0]}@{item.fraction}"


SOURCE = Partial()
