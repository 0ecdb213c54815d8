"""``reversed``: time-reversed clips of any word of the split (speech-like, never a word)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kws_research.data.items import Item
from kws_research.data.sources import SplitContext, UnknownSource
from kws_research.labels import UNKNOWN


class Reversed(UnknownSource):
    seed_key = 2

    def candidates(self, ctx: SplitContext) -> list[Item]:
        return [Item(UNKNOWN, "reversed", (e.path,)) for entries in ctx.usable().values() for e in entries]

    def render(self, item: Item, decoded: Mapping) -> np.ndarray:
        return decoded[item.paths[0]][::-1].copy()


SOURCE = Reversed()
