"""``hard_negatives``: windows a run's detector fired on (``python -m kws_research.mine``),
from ``dataset.hard_negatives`` (a run id or a folder of clips, or a list of them: the
rounds of a mining loop); training split only."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kws_research.data.sources import Outside, UnknownSource
from kws_research.data.unknown import MINED_FILE, as_list, clip_folder
from kws_research.errors import KwsError


def hard_negative_folder(value: str, cache_dir: Path) -> Path:
    """A folder of clips, or a run id whose mined windows are in the cache."""
    folder = Path(value).expanduser()
    if folder.is_dir():
        return folder.resolve()
    mined = cache_dir / "hard_negatives" / value
    if mined.is_dir():
        if not (mined / MINED_FILE).is_file():
            raise KwsError(
                f"dataset.hard_negatives: {mined} has no {MINED_FILE}: a mining of run {value} did not finish; "
                f"run `python -m kws_research.mine run_id={value}` again"
            )
        return mined.resolve()
    raise KwsError(
        f"dataset.hard_negatives: {value} is neither a folder nor a run with mined windows in {mined.parent}; "
        f"run `python -m kws_research.mine run_id={value}` first"
    )


class HardNegatives(UnknownSource):
    seed_key = 8
    needs = ("hard_negatives", "a run id mined with `python -m kws_research.mine` or a folder")
    training_only = True  # mined from training audio: validation and test stay unmined

    def settings(self, cfg: Mapping) -> tuple[str, ...]:
        return as_list(cfg.get("hard_negatives"))

    def outside(self, spec, settings: tuple[str, ...], cache_dir: Path) -> Outside:
        found = Outside()
        for value in settings:
            folder = hard_negative_folder(value, cache_dir)
            # the folder's name (a run id for mined windows) is part of the data set's identity
            empty_ok = (folder / MINED_FILE).is_file()  # a mining round that found nothing
            clips = clip_folder(
                folder, "hard_negatives", lambda rel: "train", f"hard_negatives/{folder.name}", empty_ok
            )
            found.clips["train"] += clips.clips["train"]
            found.files += clips.files
        return found


SOURCE = HardNegatives()
