"""``words``: the auxiliary word folders of the data root (the standard task)."""

from __future__ import annotations

from kws_research.data.items import Item
from kws_research.data.sources import SplitContext, UnknownSource
from kws_research.labels import UNKNOWN


class Words(UnknownSource):
    seed_key = 0

    def candidates(self, ctx: SplitContext) -> list[Item]:
        return [
            Item(UNKNOWN, "clip", (e.path,))
            for w, entries in ctx.usable().items()
            if w not in ctx.commands
            for e in entries
        ]


SOURCE = Words()
