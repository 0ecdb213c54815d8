"""One example of a split, before its audio is rendered."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    """Where an example's audio comes from and its class.

    ``kind`` says how to render it: ``clip`` (a file), ``silence`` (a cut of noise
    file ``noise`` at ``offset`` scaled by ``gain``), ``window`` (1 s of a long
    recording from sample ``offset``), or the name of the unknown source that derives
    it from its ``paths`` (``reversed``, ``spliced``, ``partial`` with its ``fraction``).
    """

    label: str
    kind: str
    paths: tuple[str, ...] = ()
    noise: int = -1
    offset: int = 0
    gain: float = 1.0
    fraction: float = 1.0  # partial: the share of the word's speech kept
