"""``spliced``: the start of one word joined to the end of another word."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kws_research.contract import saturate_int16
from kws_research.data.audio import speech_extent
from kws_research.data.items import Item
from kws_research.data.sources import SplitContext, UnknownSource
from kws_research.labels import UNKNOWN


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


class Spliced(UnknownSource):
    seed_key = 3

    def choose(self, ctx: SplitContext, count: int, rng: np.random.Generator) -> tuple[list[Item], str | None]:
        """``count`` pairs of clips of two different words (never a command with itself)."""
        clips = [(w, e.path) for w, entries in ctx.usable().items() for e in entries]
        if len({w for w, _ in clips}) < 2:
            return [], None
        items = []
        while len(items) < count:
            (wa, a), (wb, b) = (clips[int(i)] for i in rng.integers(len(clips), size=2))
            if wa != wb:
                items.append(Item(UNKNOWN, "spliced", (a, b)))
        return items, None

    def render(self, item: Item, decoded: Mapping) -> np.ndarray:
        return splice(decoded[item.paths[0]], decoded[item.paths[1]])


SOURCE = Spliced()
