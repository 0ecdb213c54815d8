"""Sources of the ``unknown`` class, one module each, found by name (as models are).

A module ``kws_research/data/sources/<name>.py`` defines ``SOURCE``, an instance of
:class:`UnknownSource`; ``dataset.unknown_sources.<name>`` gives it a share of the
unknown examples. A source says what it reads from the dataset config
(:meth:`UnknownSource.settings`), what of that is part of the data set's identity
(:meth:`~UnknownSource.identity`), which clips it brings from outside the data root
(:meth:`~UnknownSource.outside`), and which examples it adds to a split
(:meth:`~UnknownSource.candidates` or :meth:`~UnknownSource.choose`); a source that
derives audio (reversed, spliced, partial) renders its own item kind.

Each source draws from its own random stream, keyed by ``seed_key``: by default a
hash of its name, so adding a source never changes another's draws (the nine
shipped sources keep the keys they always had, and with them every data set).
"""

from __future__ import annotations

import importlib
import pkgutil
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kws_research.data.items import Item
from kws_research.data.layout import SPLITS, FileEntry
from kws_research.errors import KwsError


@dataclass(frozen=True)
class SplitContext:
    """What a source chooses from in one split."""

    split: str
    words: dict[str, list[FileEntry]]  # the split's clips of every word of the root
    commands: frozenset[str]
    heldout: frozenset[str]
    outside: list = field(default_factory=list)  # the source's own clips of this split (see outside())

    def usable(self) -> dict[str, list[FileEntry]]:
        """The split's words without the held-out ones, in name order."""
        return {w: e for w, e in sorted(self.words.items()) if w not in self.heldout}


@dataclass
class Outside:
    """Clips a source brings from outside the data root: per split, file paths (or
    (path, offset) windows of long recordings); the files for the fingerprint and
    the cache's signature; files that could not be read (skipped, counted)."""

    clips: dict[str, list] = field(default_factory=lambda: {s: [] for s in SPLITS})
    files: list[tuple[str, int, int]] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)


class UnknownSource:
    """The protocol of an unknown source; the defaults suit a source of plain clips."""

    name: str = ""  # set from the module's name when found
    seed_key: int | None = None  # None: a hash of the name
    needs: tuple[str, str] | None = None  # (dataset key, what it must hold) when the source has a share
    training_only: bool = False  # never in validation or test, even with unknown_sources_in_eval

    @property
    def key(self) -> int:
        return self.seed_key if self.seed_key is not None else zlib.crc32(self.name.encode())

    def settings(self, cfg: Mapping) -> Any:
        """What the source reads from the dataset config."""
        return None

    def identity(self, settings: Any, share: float) -> dict:
        """Its part of the data set's fingerprint (beyond its share and its files)."""
        return {}

    def outside(self, spec, settings: Any, cache_dir: Path) -> Outside:
        """Clips from outside the data root (generated, or from a folder it names)."""
        return Outside()

    def candidates(self, ctx: SplitContext) -> list[Item]:
        """The examples the source can give a split; :meth:`choose` samples from them."""
        return [Item("unknown", "clip", (path,)) for path in ctx.outside]

    def choose(self, ctx: SplitContext, count: int, rng: np.random.Generator) -> tuple[list[Item], str | None]:
        """``count`` examples for the split (fewer, with a warning, when it has fewer)."""
        pool = self.candidates(ctx)
        warning = None
        if count > len(pool):
            warning = f"{ctx.split}: only {len(pool)} '{self.name}' clips for {count} 'unknown' examples; using all"
        return [pool[i] for i in sorted(rng.permutation(len(pool))[:count])], warning

    def render(self, item: Item, decoded: Mapping) -> np.ndarray:
        """The audio of an item of this source's own kind, from the decoded clips."""
        raise ValueError(f"source {self.name!r} has no item kind of its own")

    def source_name(self, item: Item) -> str:
        """Where an item came from, as ``<split>.sources.json`` lists it."""
        return f"{item.kind}:" + "+".join(item.paths)


_found: dict[str, UnknownSource] | None = None


def registry() -> dict[str, UnknownSource]:
    """Every source module of this package, by name, in the order of their seed keys."""
    global _found
    if _found is None:
        found: dict[str, UnknownSource] = {}
        for info in pkgutil.iter_modules(__path__):
            source = getattr(importlib.import_module(f"{__name__}.{info.name}"), "SOURCE", None)
            if isinstance(source, UnknownSource):
                source.name = info.name
                found[info.name] = source
        keys = [s.key for s in found.values()]
        clash = sorted(n for n, s in found.items() if keys.count(s.key) > 1)
        if clash:
            raise KwsError(f"unknown sources {clash} share a seed_key; give each its own")
        _found = dict(sorted(found.items(), key=lambda item: item[1].key))
    return _found


def forget() -> None:
    """Find the sources again (after a module was added to the package's path)."""
    global _found
    _found = None


def get(name: str) -> UnknownSource:
    return registry()[name]
