"""``long_folder``: 1 s windows of the long recordings in ``dataset.long_folder`` (podcasts,
meetings: any WAV/FLAC, any rate; near-silent windows skipped; split by file hash)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from pathlib import Path

from kws_research.data import long_audio
from kws_research.data.items import Item
from kws_research.data.sources import Outside, SplitContext, UnknownSource
from kws_research.data.unknown import as_path
from kws_research.errors import KwsError
from kws_research.labels import UNKNOWN


class LongRecordings(UnknownSource):
    """Windows of long recordings; ``recordings`` says which files each split plays."""

    config_key = "long_folder"  # the dataset key named when no window is loud enough

    def settings(self, cfg: Mapping) -> dict:
        return {
            "folder": as_path(cfg.get("long_folder")),
            "windows": long_audio.WindowSettings.from_config(cfg.get("long_windows")),
        }

    def identity(self, settings: dict, share: float) -> dict:
        return {"windows": asdict(settings["windows"])} if share else {}

    def recordings(
        self, spec, settings: dict, cache_dir: Path, skipped: dict | None = None
    ) -> tuple[dict[str, list[Path]], Path]:
        """Per split, the recordings; files left out for their names go into ``skipped``."""
        folder = Path(str(settings["folder"])).expanduser().resolve()
        pct = (spec.validation_percentage, spec.testing_percentage)
        unusable: dict[str, str] = {}
        speaker = long_audio.speaker_pattern(settings.get("speaker"))
        split = long_audio.recordings(folder, "dataset.long_folder", *pct, unusable, speaker)
        if skipped is not None:
            skipped.update({f"{self.name}/{name}": why for name, why in unusable.items()})
        return split, folder

    def outside(self, spec, settings: dict, cache_dir: Path) -> Outside:
        unusable: dict[str, str] = {}
        recordings, base = self.recordings(spec, settings, cache_dir, unusable)
        windows, failed = long_audio.plan_windows(recordings, settings["windows"], cache_dir / "long_windows")
        failed = {**failed, **unusable}
        if not windows["train"]:
            raise KwsError(
                f"dataset.{self.config_key}: no window of the training recordings is louder than "
                f"dataset.long_windows.min_dbfs={settings['windows'].min_dbfs}; lower it or add recordings"
            )
        return Outside(windows, long_audio.file_stats(recordings, self.name, base), failed)

    def candidates(self, ctx: SplitContext) -> list[Item]:
        return [Item(UNKNOWN, "window", (path,), offset=offset) for path, offset in ctx.outside]


class LongFolder(LongRecordings):
    seed_key = 6
    needs = ("long_folder", "a folder of long .wav/.flac recordings")

    def settings(self, cfg: Mapping) -> dict:
        return {**super().settings(cfg), "speaker": cfg.get("long_speaker")}

    def identity(self, settings: dict, share: float) -> dict:
        speaker = {"speaker": settings["speaker"]} if share and settings["speaker"] else {}  # it decides the splits
        return {**super().identity(settings, share), **speaker}


SOURCE = LongFolder()
