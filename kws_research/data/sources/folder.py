"""``folder``: clips from ``dataset.unknown_folder`` (any layout, ``*.wav`` searched
recursively, split by the Speech Commands hash of the file name)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kws_research.data.layout import which_set
from kws_research.data.sources import Outside, UnknownSource
from kws_research.data.unknown import as_path, clip_folder
from kws_research.errors import KwsError


class Folder(UnknownSource):
    seed_key = 4
    needs = ("unknown_folder", "a folder of clips")

    def settings(self, cfg: Mapping) -> str | None:
        return as_path(cfg.get("unknown_folder"))

    def identity(self, settings: str | None, share: float) -> dict:
        return {"folder": settings}

    def outside(self, spec, settings: str | None, cache_dir: Path) -> Outside:
        folder = Path(str(settings)).expanduser().resolve()
        if not folder.is_dir():
            raise KwsError(f"dataset.unknown_folder: {folder} is not a folder of .wav clips")
        pct = (spec.validation_percentage, spec.testing_percentage)
        return clip_folder(folder, "unknown_folder", lambda rel: which_set(rel, *pct), "folder")


SOURCE = Folder()
