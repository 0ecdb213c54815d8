"""The embedded data set: Speech Commands words spoken by espeak-ng voices.

Written to disk in the official layout (``WORD/SPEAKER_nohash_N.wav``, a
``_background_noise_`` folder, split lists), so every later stage treats it
exactly like the real archive. A synthetic speaker is one English accent plus
one voice variant; each speaker sits in one split. Generation is deterministic
from the settings: every word is synthesised in a fresh process (espeak-ng
carries state between utterances) and every random draw is keyed by
(seed, speaker, repetition), not by the order of work.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.signal import lfilter

from kws_research import ownership
from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE, to_float, to_int16
from kws_research.data import piper_voice
from kws_research.data.audio import resample, write_wav
from kws_research.data.espeak import ENGLISH_VOICES, synthesise_word, voice_variants
from kws_research.data.layout import BACKGROUND_NOISE_DIR, TESTING_LIST, VALIDATION_LIST
from kws_research.data.words import SPEECH_COMMANDS_WORDS
from kws_research.errors import KwsError
from kws_research.locks import FileLock
from kws_research.processes import remove_dead_temporaries

log = logging.getLogger(__name__)

COMPLETE_MARKER = ".complete.json"
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class GeneratorSettings:
    """What decides the generated audio (``workers`` only decides the speed)."""

    speakers: int = 70
    repetitions: int = 3
    words: tuple[str, ...] = SPEECH_COMMANDS_WORDS
    noise_seconds: float = 60.0
    validation_fraction: float = 0.15
    testing_fraction: float = 0.15
    seed: int = 0
    workers: int = 2
    engines: tuple[str, ...] = ("espeak",)  # espeak | piper (the optional extra): whose voices speak

    @classmethod
    def from_config(cls, options: dict, key: str, **defaults) -> GeneratorSettings:
        """Settings from a config block (``key`` names it in errors), over ``defaults``."""
        values = {**defaults, **{k: v for k, v in dict(options).items() if v is not None}}
        for name in ("words", "engines"):
            if name in values:
                values[name] = tuple(values[name])
        try:
            settings = cls(**values)
        except TypeError as exc:
            known = ", ".join(f.name for f in fields(cls))
            raise KwsError(f"{key}: {exc}; the keys are {known}") from exc
        check_engines(settings.engines, key)
        return settings

    def identity(self) -> dict:
        return generator_identity(self, GENERATOR_VERSION)

    def digest(self) -> str:
        return identity_digest(self.identity())


def generator_identity(settings, version: int) -> dict:
    """What decides a generator's audio: every setting but ``workers``, and its version."""
    ident = asdict(settings)
    ident.pop("workers")
    ident["words"] = list(settings.words)
    ident = without_default_engines({**ident, "engines": list(settings.engines)})
    ident["version"] = version
    return ident


def identity_digest(identity: dict) -> str:
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: an English accent plus a voice variant and a manner."""

    id: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    level_db: float


ENGINES = ("espeak", "piper")


def check_engines(engines: tuple[str, ...], key: str) -> None:
    if not engines or set(engines) - set(ENGINES):
        raise KwsError(f"{key}.engines: {list(engines)} must be a non-empty list of {', '.join(ENGINES)}")


def without_default_engines(options: dict) -> dict:
    """A config block as identities record it: ``engines: [espeak]`` (the default, and all
    there was before Piper) left out, so fingerprints and caches made before stay valid."""
    if list(options.get("engines") or ["espeak"]) == ["espeak"]:
        return {k: v for k, v in options.items() if k != "engines"}
    return dict(options)


def speaker_voices(engines: tuple[str, ...]) -> list[str]:
    """Every voice the engines offer: espeak-ng's accent+variant pairs, Piper's manners."""
    voices = [f"{a}+{v}" for a in ENGLISH_VOICES for v in voice_variants()] if "espeak" in engines else []
    if "piper" in engines:
        piper_voice.check_available()
        voices += piper_voice.voices()
    return voices


def plan_speakers(count: int, seed: int, combos: list[str]) -> list[Speaker]:
    """``count`` distinct speakers among the voices ``combos``, drawn with ``seed``."""
    if count > len(combos):
        raise ValueError(f"at most {len(combos)} distinct synthetic speakers are available, asked for {count}")
    rng = np.random.default_rng([seed, 7])
    picks = rng.choice(len(combos), size=count, replace=False)
    speakers = []
    for index in picks:
        voice = combos[int(index)]
        speakers.append(
            Speaker(
                id=hashlib.sha1(voice.encode()).hexdigest()[:8],
                voice=voice,
                rate=int(rng.integers(130, 220)),
                pitch=int(rng.integers(20, 80)),
                pitch_range=int(rng.integers(20, 90)),
                level_db=float(rng.uniform(-18.0, -3.0)),
            )
        )
    return speakers


def utterances(speakers: list[Speaker], repetitions: int, seed: int) -> list[tuple]:
    """(voice, rate, pitch, range, seed) of every (speaker, repetition), with jitter."""
    specs = []
    for s_index, speaker in enumerate(speakers):
        for rep in range(repetitions):
            rng = np.random.default_rng([seed, s_index, rep, 11])
            specs.append(
                (
                    speaker.voice,
                    int(speaker.rate * rng.uniform(0.88, 1.12)),
                    int(np.clip(speaker.pitch + rng.integers(-8, 9), 0, 99)),
                    int(np.clip(speaker.pitch_range + rng.integers(-10, 11), 0, 99)),
                    int(rng.integers(2**31 - 1)),
                )
            )
    return specs


def run_isolated(jobs: list, workers: int, function=synthesise_word) -> Iterator:
    """Yield ``function(job)`` for each job in order, each job in a fresh spawned process;
    the caller can work on early results while later ones are computed."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=max(1, min(workers, len(jobs))), maxtasksperchild=1) as pool:
        yield from pool.imap(function, jobs, chunksize=1)


def place(word_audio: np.ndarray, rate: int, level_db: float, rng: np.random.Generator) -> np.ndarray:
    """Resample a spoken word to 16 kHz and put it at a random offset in a 1 s clip,
    at the speaker's level with a faint noise floor (real clips are never silent)."""
    signal = resample(to_float(word_audio), rate, SAMPLE_RATE)
    signal = signal[:CLIP_SAMPLES]
    if signal.size == 0:
        raise ValueError("no audio to place (the speech engine returned an empty utterance)")
    peak = float(np.abs(signal).max()) or 1.0
    signal = signal / peak * 10 ** ((level_db + rng.uniform(-3, 3)) / 20)
    clip = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    offset = int(rng.integers(0, CLIP_SAMPLES - signal.size + 1))
    clip[offset : offset + signal.size] = signal
    floor = 10 ** (rng.uniform(-70, -50) / 20)
    clip += rng.standard_normal(CLIP_SAMPLES).astype(np.float32) * floor
    return to_int16(clip)


def coloured_noise(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    """Noise with power spectrum 1/f**exponent (0 white, 1 pink, 2 brown), unit RMS."""
    spectrum = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    shaped = np.fft.irfft(spectrum / freqs ** (exponent / 2), n)
    return (shaped / shaped.std()).astype(np.float32)


def hum(n: int, rng: np.random.Generator) -> np.ndarray:
    """Mains hum (50 or 60 Hz with harmonics, slowly drifting) over a little pink noise."""
    t = np.arange(n) / SAMPLE_RATE
    base = 50.0 if rng.random() < 0.5 else 60.0
    drift = 1 + 0.2 * np.sin(2 * np.pi * rng.uniform(0.05, 0.3) * t)
    tone = sum(np.sin(2 * np.pi * base * k * t + rng.uniform(0, 2 * np.pi)) / k for k in range(1, 8))
    signal = tone * drift + 0.3 * coloured_noise(n, 1.0, rng)
    return (signal / np.abs(signal).max()).astype(np.float32)


def machine(n: int, rng: np.random.Generator) -> np.ndarray:
    """A fan-like rumble: low-passed noise, amplitude modulated by the blade rate."""
    noise = lfilter([1.0], [1.0, -0.97], rng.standard_normal(n))
    t = np.arange(n) / SAMPLE_RATE
    signal = noise * (1 + 0.4 * np.sin(2 * np.pi * rng.uniform(4, 12) * t))
    return (signal / np.abs(signal).max()).astype(np.float32)


def babble(n: int, words: list[np.ndarray], rate: int, rng: np.random.Generator) -> np.ndarray:
    """Overlapping far-off speech made from the generator's own words."""
    out = np.zeros(n, dtype=np.float32)
    count = max(1, int(6 * n / SAMPLE_RATE))
    for _ in range(count):
        word = resample(to_float(words[int(rng.integers(len(words)))]), rate, SAMPLE_RATE)
        if word.size == 0 or word.size >= n:
            continue
        start = int(rng.integers(0, n - word.size))
        out[start : start + word.size] += word * rng.uniform(0.2, 1.0)
    out = out / (np.abs(out).max() or 1.0)
    return out + 0.02 * coloured_noise(n, 1.0, rng)  # room tone between the voices


def background_noise(seconds: float, words: list[np.ndarray], rate: int, seed: int) -> dict[str, np.ndarray]:
    """The generated ``_background_noise_`` recordings (float, peak-normalised levels)."""
    n = int(seconds * SAMPLE_RATE)
    rng = lambda k: np.random.default_rng([seed, 97, k])  # noqa: E731 - one stream per file
    return {
        "white_noise.wav": 0.3 * coloured_noise(n, 0.0, rng(0)) / 3,
        "pink_noise.wav": 0.3 * coloured_noise(n, 1.0, rng(1)) / 3,
        "brown_noise.wav": 0.3 * coloured_noise(n, 2.0, rng(2)) / 3,
        "hum.wav": 0.5 * hum(n, rng(3)),
        "machine.wav": 0.6 * machine(n, rng(4)),
        "babble.wav": 0.5 * babble(n, words, rate, rng(5)),
    }


def assign_speaker_splits(speakers: list[Speaker], settings: GeneratorSettings) -> dict[str, str]:
    """Speaker id -> split, with at least one speaker in each split."""
    order = np.random.default_rng([settings.seed, 3]).permutation(len(speakers))
    n_val = max(1, round(settings.validation_fraction * len(speakers)))
    n_test = max(1, round(settings.testing_fraction * len(speakers)))
    splits = {}
    for rank, index in enumerate(order):
        split = "validation" if rank < n_val else "test" if rank < n_val + n_test else "train"
        splits[speakers[int(index)].id] = split
    return splits


def generate(target: Path, settings: GeneratorSettings) -> dict:
    """Write the data set to ``target`` and return its description.

    Utterances the speech engine returns empty are skipped and counted."""
    if settings.speakers < 3:
        raise ValueError("dataset.generator.speakers must be at least 3 (one per split)")
    speakers = plan_speakers(settings.speakers, settings.seed, speaker_voices(settings.engines))
    specs = utterances(speakers, settings.repetitions, settings.seed)
    results = run_isolated([(word, specs) for word in settings.words], settings.workers)
    return write_complete(target, lambda tmp: _write(tmp, settings, speakers, results))


def write_complete(target: Path, write) -> dict:
    """``write(folder)`` into a temporary folder named after this process, renamed to
    ``target`` when complete (callers hold the target's lock, see :func:`ensure_generated`)."""
    started = time.perf_counter()
    hint = "set dataset.root=<a new folder> or leave it unset"
    ownership.check_replaceable(target, "dataset.root", hint)
    tmp = ownership.new_folder(target.with_name(f".{target.name}.{os.getpid()}.tmp"), f"generated {target.name}")
    try:
        description = write(tmp)
        description["seconds"] = round(time.perf_counter() - started, 2)
        (tmp / COMPLETE_MARKER).write_text(json.dumps(description, indent=1))
        ownership.replace(tmp, target, "dataset.root", hint)  # an incomplete earlier attempt of ours
    except BaseException:
        ownership.discard(tmp)
        raise
    return description


def _write(folder: Path, settings: GeneratorSettings, speakers: list[Speaker], results: Iterator) -> dict:
    split_of = assign_speaker_splits(speakers, settings)
    lists: dict[str, list[str]] = {"validation": [], "test": []}
    all_words = []
    empty: dict[str, int] = {}
    rate = 0
    for w_index, (word, (rate, clips)) in enumerate(zip(settings.words, results)):
        (folder / word).mkdir()
        for u_index, audio in enumerate(clips):
            if audio.size == 0:
                empty[word] = empty.get(word, 0) + 1
                continue
            s_index, rep = divmod(u_index, settings.repetitions)
            speaker = speakers[s_index]
            rng = np.random.default_rng([settings.seed, w_index, s_index, rep, 13])
            rel = f"{word}/{speaker.id}_nohash_{rep}.wav"
            write_wav(folder / rel, place(audio, rate, speaker.level_db, rng))
            if split_of[speaker.id] in lists:
                lists[split_of[speaker.id]].append(rel)
            all_words.append(audio)
    if empty:
        log.warning(
            "the speech engine returned no audio for %d utterance(s) (%s); skipped",
            sum(empty.values()),
            ", ".join(f"{w}: {n}" for w, n in sorted(empty.items())),
        )
    if not all_words:
        raise KwsError(
            "dataset.generator: the speech engine returned no audio for any word; check dataset.generator.words"
        )
    (folder / BACKGROUND_NOISE_DIR).mkdir()
    for name, signal in background_noise(settings.noise_seconds, all_words, rate, settings.seed).items():
        write_wav(folder / BACKGROUND_NOISE_DIR / name, to_int16(signal))
    (folder / VALIDATION_LIST).write_text("\n".join(sorted(lists["validation"])) + "\n")
    (folder / TESTING_LIST).write_text("\n".join(sorted(lists["test"])) + "\n")
    return {
        "settings": settings.identity(),
        "speakers": {s.id: {"voice": s.voice, "split": split_of[s.id]} for s in speakers},
        "clips": len(all_words),
        "empty_utterances": empty,
    }


def ensure_generated(target: Path, settings, make=generate, what: str = "the synthetic data set") -> Path:
    """Generate once (``make(target, settings)``, by default :func:`generate`), under an
    inter-process lock: a second process started at the same time waits and then finds
    the completion marker."""
    marker = target / COMPLETE_MARKER
    if marker.is_file():
        return target
    with FileLock(target.with_name(target.name + ".lock")):
        if marker.is_file():
            return target
        remove_dead_temporaries(target.parent)
        log.info("generating %s into %s (%d speakers)", what, target, settings.speakers)
        description = make(target, settings)
    skipped = sum(description["empty_utterances"].values())
    log.info(
        "generated %d clips in %.1f s%s",
        description["clips"],
        description["seconds"],
        f" ({skipped} empty utterance(s) skipped)" if skipped else "",
    )
    return target
