"""A minimal ctypes binding to libespeak-ng from the ``espeakng-loader`` wheel.

espeak-ng is GPL-3.0: this module is imported only by the synthetic data
generator (the optional ``synth`` extra), never by training or export code.
The library keeps state between utterances, so identical output needs an
identical sequence of calls in a fresh process; the generator runs each word
in its own spawned process for that reason.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from kws_research.data import piper_voice
from kws_research.errors import KwsError

AUDIO_OUTPUT_SYNCHRONOUS = 2
ESPEAK_RATE, ESPEAK_VOLUME, ESPEAK_PITCH, ESPEAK_RANGE = 1, 2, 3, 4
ENGLISH_VOICES = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)
MAX_WORD_SECONDS = 0.9
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def _loader():
    try:
        import espeakng_loader
    except ImportError as exc:
        raise KwsError(
            "the espeak-ng speech generator (dataset=synthetic, unknown sources synthetic and speech) needs "
            "the optional 'synth' extra: run `make install` or `pip install -e '.[synth]'`"
        ) from exc
    return espeakng_loader


def voice_variants() -> list[str]:
    """Names of espeak-ng voice variants shipped with the wheel (m1, f3, klatt, ...)."""
    data = Path(_loader().get_data_path())
    return sorted(p.name for p in (data / "voices" / "!v").iterdir() if p.is_file())


class Espeak:
    """Synthesises text to int16 samples at :attr:`sample_rate` (22,050 Hz)."""

    def __init__(self) -> None:
        loader = _loader()
        lib = ctypes.CDLL(loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, loader.get_data_path().encode(), 0)
        if rate <= 0:
            raise KwsError("espeak-ng failed to initialise; reinstall the 'synth' extra (espeakng-loader)")
        self.sample_rate = int(rate)
        self._lib = lib
        self._chunks: list[np.ndarray] = []
        self._callback = _CALLBACK(self._collect)  # keep a reference: C holds a pointer to it
        lib.espeak_SetSynthCallback(self._callback)

    def _collect(self, wav, count, _events) -> int:
        if count > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, (count,)).copy())
        return 0

    def say(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        """Speak ``text`` with ``voice`` (e.g. ``en-us+f3``); words per minute ``rate``,
        ``pitch`` and ``pitch_range`` in espeak's 0-100 scale."""
        lib = self._lib
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise KwsError(f"espeak-ng has no voice '{voice}'")
        lib.espeak_SetParameter(ESPEAK_RATE, int(rate), 0)
        lib.espeak_SetParameter(ESPEAK_PITCH, int(pitch), 0)
        lib.espeak_SetParameter(ESPEAK_RANGE, int(pitch_range), 0)
        lib.espeak_ng_SetRandSeed(int(seed))
        self._chunks.clear()
        data = text.encode("utf-8")
        lib.espeak_Synth(data, len(data) + 1, 0, 0, 0, 0, None, None)
        lib.espeak_Synchronize()
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)


def trim(samples: np.ndarray, threshold: int = 300) -> np.ndarray:
    """Drop the leading and trailing near-silence espeak-ng adds around a word."""
    loud = np.nonzero(np.abs(samples.astype(np.int32)) > threshold)[0]
    if loud.size == 0:
        return samples[:0]
    return samples[loud[0] : loud[-1] + 1]


class Engines:
    """espeak-ng, and Piper for ``piper:`` voices (created on first use, seeded by the job)."""

    def __init__(self, seed: int) -> None:
        self.espeak = Espeak()
        self.sample_rate = self.espeak.sample_rate
        self._seed, self._piper = int(seed), None

    def say(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        if not piper_voice.is_piper(voice):
            return self.espeak.say(text, voice, rate, pitch, pitch_range, seed)
        if self._piper is None:
            self._piper = piper_voice.Piper(self._seed, self.sample_rate)
        return self._piper.say(text, rate, pitch, pitch_range)


def synthesise_word(job: tuple[str, list[tuple]]) -> tuple[int, list[np.ndarray]]:
    """Speak one word in every utterance spec (runs in a fresh process)."""
    word, specs = job
    engine = Engines(specs[0][-1] if specs else 0)
    clips = []
    for voice, rate, pitch, pitch_range, seed in specs:
        audio = trim(engine.say(word, voice, rate, pitch, pitch_range, seed))
        while audio.size > MAX_WORD_SECONDS * engine.sample_rate:
            rate = int(rate * 1.25)
            audio = trim(engine.say(word, voice, rate, pitch, pitch_range, seed))
        clips.append(audio)
    return engine.sample_rate, clips


def synthesise_sentences(job: list[tuple[str, tuple]]) -> tuple[int, list[np.ndarray]]:
    """Speak each (sentence, utterance spec) of one speaker (runs in a fresh process)."""
    engine = Engines(job[0][1][-1] if job else 0)
    return engine.sample_rate, [trim(engine.say(text, *spec)) for text, spec in job]
