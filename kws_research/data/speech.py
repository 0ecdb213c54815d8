"""Continuous synthetic speech: what an app hears most, people talking, as negatives.

The espeak-ng generator speaks whole sentences drawn from a vocabulary without the
command words, their homophones and the held-out words (``unknown.vocabulary``),
in many voices, rates and pitches, as the word generator does. Each synthetic
speaker reads its own sentences into one long recording with pauses between them,
and sits in one split (``<root>/<split>/<speaker>_nohash_0.wav``), so validation
and test hear voices and sentences training never heard. ``sentences.json`` keeps
every text. The recordings are then cut like any long recording
(:mod:`kws_research.data.long_audio`): 1 s windows for the ``speech`` unknown
source, whole recordings for the ``speech`` stream background.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from kws_research.contract import SAMPLE_RATE, to_float, to_int16
from kws_research.data.audio import resample, write_wav
from kws_research.data.espeak import synthesise_sentences
from kws_research.data.layout import SPLITS
from kws_research.data.synthetic import (
    assign_speaker_splits,
    check_engines,
    ensure_generated,
    generator_identity,
    identity_digest,
    plan_speakers,
    run_isolated,
    speaker_voices,
    utterances,
    write_complete,
)
from kws_research.errors import KwsError

SPEECH_VERSION = 1
PAUSE_SECONDS = (0.2, 1.0)


@dataclass(frozen=True)
class SpeechSettings:
    """What decides the generated speech (``dataset.synthetic_speech``; ``workers`` only the speed)."""

    speakers: int = 24
    sentences: int = 16  # per speaker
    min_words: int = 4
    max_words: int = 12
    validation_fraction: float = 0.2
    testing_fraction: float = 0.2
    seed: int = 2
    words: tuple[str, ...] = ()
    workers: int = 2
    engines: tuple[str, ...] = ("espeak",)  # espeak | piper (the optional extra): whose voices read

    @classmethod
    def from_config(cls, options: Mapping, words: list[str]) -> SpeechSettings:
        values = {k: v for k, v in dict(options).items() if v is not None and k != "vocabulary"}
        if "engines" in values:
            values["engines"] = tuple(values["engines"])
        try:
            settings = cls(**values, words=tuple(words))
        except TypeError as exc:
            known = ", ".join(f.name for f in fields(cls) if f.name != "words")
            raise KwsError(f"dataset.synthetic_speech: {exc}; the keys are {known}, vocabulary") from exc
        if settings.speakers < 3 or settings.sentences < 1 or not 1 <= settings.min_words <= settings.max_words:
            raise KwsError(
                "dataset.synthetic_speech: needs speakers >= 3 (one per split), sentences >= 1 "
                "and 1 <= min_words <= max_words"
            )
        check_engines(settings.engines, "dataset.synthetic_speech")
        return settings

    def identity(self) -> dict:
        return generator_identity(self, SPEECH_VERSION)

    def digest(self) -> str:
        return identity_digest(self.identity())


def sentences(settings: SpeechSettings, speaker: int) -> list[str]:
    """The seeded sentences one speaker reads (different speakers, different sentences)."""
    rng = np.random.default_rng([settings.seed, speaker, 17])
    lengths = rng.integers(settings.min_words, settings.max_words + 1, size=settings.sentences)
    return [" ".join(rng.choice(settings.words, size=int(n))) for n in lengths]


def _read_aloud(audio: list[np.ndarray], rate: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Sentences at 16 kHz joined by pauses, at the speaker's level over a faint noise floor."""
    parts = []
    for sentence in audio:
        signal = resample(to_float(sentence), rate, SAMPLE_RATE)
        if signal.size == 0:
            continue
        peak = float(np.abs(signal).max()) or 1.0
        parts.append(signal / peak * 10 ** ((level_db + rng.uniform(-3, 3)) / 20))
        parts.append(np.zeros(int(rng.uniform(*PAUSE_SECONDS) * SAMPLE_RATE), np.float32))
    if not parts:
        return np.zeros(0, np.int16)
    joined = np.concatenate(parts)
    joined += rng.standard_normal(joined.size).astype(np.float32) * 10 ** (rng.uniform(-70, -50) / 20)
    return to_int16(joined)


def generate(target: Path, settings: SpeechSettings) -> dict:
    """Write every speaker's recording to ``target`` (see the module docstring)."""
    speakers = plan_speakers(settings.speakers, settings.seed, speaker_voices(settings.engines))
    specs = utterances(speakers, settings.sentences, settings.seed)
    texts = [sentences(settings, i) for i in range(len(speakers))]
    jobs = [
        list(zip(texts[i], specs[i * settings.sentences : (i + 1) * settings.sentences])) for i in range(len(speakers))
    ]
    split_of = assign_speaker_splits(speakers, settings)

    def write(folder: Path) -> dict:
        for split in SPLITS:
            (folder / split).mkdir()
        described, empty = {}, {}
        results: Iterator = run_isolated(jobs, settings.workers, synthesise_sentences)
        for index, (speaker, (rate, audio)) in enumerate(zip(speakers, results)):
            rng = np.random.default_rng([settings.seed, index, 19])
            recording = _read_aloud(audio, rate, speaker.level_db, rng)
            if recording.size == 0:
                empty[speaker.id] = len(audio)
                continue
            split = split_of[speaker.id]
            write_wav(folder / split / f"{speaker.id}_nohash_0.wav", recording)
            described[speaker.id] = {
                "voice": speaker.voice,
                "split": split,
                "seconds": round(recording.size / SAMPLE_RATE, 2),
                "sentences": texts[index],
            }
        if not described:
            raise KwsError("dataset.synthetic_speech: the speech engine returned no audio for any sentence")
        (folder / "sentences.json").write_text(json.dumps(described, indent=1))
        return {"settings": settings.identity(), "clips": len(described), "empty_utterances": empty}

    return write_complete(target, write)


def speech_root(options: Mapping, words: list[str], cache_dir: Path) -> Path:
    """The generated speech for these settings (made once, under a lock)."""
    settings = SpeechSettings.from_config(options, words)
    target = cache_dir / "unknown_speech" / settings.digest()
    return ensure_generated(target, settings, generate, "continuous synthetic speech")


def split_recordings(root: Path) -> dict[str, list[Path]]:
    """The generated recordings per split (the split is the speaker's)."""
    return {split: sorted((root / split).glob("*.wav")) for split in SPLITS}
