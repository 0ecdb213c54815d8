"""``conversation``: 1 s of pseudo-conversation of the split's own words (non-command
words, reversed and spliced words, command onsets, a quieter second talker), the talk
near a phone a detector must not fire on (:mod:`kws_research.data.conversation`)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kws_research.contract import CLIP_SAMPLES, saturate_int16
from kws_research.data.conversation import conversation
from kws_research.data.items import Item
from kws_research.data.sources import SplitContext, UnknownSource
from kws_research.labels import UNKNOWN

WORDS_PER_EXAMPLE = 6  # non-command clips an example may draw utterances from
RENDERED_SECONDS = 3  # talked, then one second of it kept (from a seeded offset)


class Conversation(UnknownSource):
    def choose(self, ctx: SplitContext, count: int, rng: np.random.Generator) -> tuple[list[Item], str | None]:
        """``count`` examples, each ``WORDS_PER_EXAMPLE`` non-command clips and one command clip
        of the split (its last path) and the seed of their arrangement (``offset``)."""
        usable = ctx.usable()
        words = [e.path for w, entries in usable.items() if w not in ctx.commands for e in entries]
        commands = [e.path for w, entries in usable.items() if w in ctx.commands for e in entries]
        if not words or not commands:
            return [], None
        items = []
        for _ in range(count):
            picked = tuple(words[int(i)] for i in rng.integers(len(words), size=WORDS_PER_EXAMPLE))
            command = commands[int(rng.integers(len(commands)))]
            items.append(Item(UNKNOWN, "conversation", (*picked, command), offset=int(rng.integers(2**31))))
        return items, None

    def render(self, item: Item, decoded: Mapping) -> np.ndarray:
        rng = np.random.default_rng([item.offset, 31])
        words = [decoded[path] for path in item.paths[:-1]]
        talk = conversation(words, [decoded[item.paths[-1]]], RENDERED_SECONDS * CLIP_SAMPLES, rng)
        start = int(rng.integers(talk.size - CLIP_SAMPLES))
        return saturate_int16(talk[start : start + CLIP_SAMPLES])

    def source_name(self, item: Item) -> str:
        return f"conversation:{item.offset}:" + "+".join(item.paths)


SOURCE = Conversation()
