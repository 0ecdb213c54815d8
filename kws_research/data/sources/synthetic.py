"""``synthetic``: other English words (``data/unknown_words.txt``) spoken by the espeak-ng
generator, in 1 s clips like the embedded data set, each synthetic speaker in one split."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from kws_research.data.layout import scan
from kws_research.data.sources import Outside, UnknownSource
from kws_research.data.synthetic import GeneratorSettings, ensure_generated, without_default_engines
from kws_research.data.unknown import vocabulary


def synthetic_root(spec, options: Mapping, cache_dir: Path) -> Path:
    """The generated root of other English words (made once per settings)."""
    options = dict(options)
    words = vocabulary(spec.commands, spec.heldout_unknown_words, options.pop("vocabulary", None))
    settings = GeneratorSettings.from_config(
        {**options, "words": words}, "dataset.synthetic_unknown", speakers=20, repetitions=1, noise_seconds=12.0, seed=1
    )
    return ensure_generated(cache_dir / "unknown_synthetic" / settings.digest(), settings)


class Synthetic(UnknownSource):
    seed_key = 1

    def settings(self, cfg: Mapping) -> dict:
        return dict(cfg.get("synthetic_unknown") or {})

    def identity(self, settings: dict, share: float) -> dict:
        return {"synthetic": without_default_engines(settings)}

    def outside(self, spec, settings: dict, cache_dir: Path) -> Outside:
        root = synthetic_root(spec, settings, cache_dir).resolve()  # clips are read relative to the data root
        layout = scan(root)
        found = Outside()
        for entries in layout.words.values():
            for entry in entries:
                found.clips[layout.split_of(entry, spec.validation_percentage, spec.testing_percentage)].append(
                    str(root / entry.path)
                )
                found.files.append((f"synthetic/{entry.path}", entry.size, entry.mtime_ns))
        return found


SOURCE = Synthetic()
