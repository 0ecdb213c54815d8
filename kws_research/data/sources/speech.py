"""``speech``: 1 s windows of continuous synthetic speech (``dataset.synthetic_speech``):
sentences without the command words, their homophones or the held-out words, each
synthetic speaker in one split."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kws_research.data import speech
from kws_research.data.sources.long_folder import LongRecordings
from kws_research.data.synthetic import without_default_engines
from kws_research.data.unknown import vocabulary


def speech_root(spec, cache_dir: Path) -> Path:
    """The generated continuous speech (the source and the ``speech`` stream background)."""
    options = spec.unknown.option("speech")["options"]
    words = vocabulary(spec.commands, spec.heldout_unknown_words, options.get("vocabulary"))
    return speech.speech_root(options, words, cache_dir)


class Speech(LongRecordings):
    seed_key = 7
    config_key = "synthetic_speech"

    def settings(self, cfg: Mapping) -> dict:
        return {**super().settings(cfg), "options": dict(cfg.get("synthetic_speech") or {})}

    def identity(self, settings: dict, share: float) -> dict:
        if not share:
            return {}
        return {**super().identity(settings, share), "speech": without_default_engines(settings["options"])}

    def recordings(
        self, spec, settings: dict, cache_dir: Path, skipped: dict | None = None
    ) -> tuple[dict[str, list[Path]], Path]:
        root = speech_root(spec, cache_dir).resolve()
        return speech.split_recordings(root), root


SOURCE = Speech()
