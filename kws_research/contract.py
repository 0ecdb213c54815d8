"""The audio contract every stage and the app share, in one place.

A model takes 1 s of mono 16 kHz audio as float32 ``int16 / 2**15`` (the original
tutorial's normalisation); the cache stores clips as int16; the Core ML input is
named ``audio``. Data, models, training, export and tests all read these names.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000  # Hz
CLIP_SECONDS = 1
CLIP_SAMPLES = SAMPLE_RATE * CLIP_SECONDS
STORED_DTYPE = np.int16  # what the cache holds
INT16_SCALE = 2.0**15  # float = int16 / INT16_SCALE
NORMALISATION = "int16 / 32768"  # the same, as written into model metadata
INPUT_NAME = "audio"  # the model's (and the Core ML model's) input
# The streaming model (one call per hop, its state passed back): inputs and outputs.
HOP_INPUT = "audio_hop"  # the newest hop of audio, float32 (1, hop samples), same scaling
STATE_INPUT = "stream_state"  # what the previous call returned as NEXT_STATE_OUTPUT (zeros at the start)
PROBABILITIES_OUTPUT = "probabilities"
NEXT_STATE_OUTPUT = "next_stream_state"
# Added to probabilities before their log (temperature scaling), in NumPy and in the Core ML graph alike.
PROBABILITY_EPSILON = 1e-6


def samples_of(ms: float) -> int:
    """Samples in ``ms`` milliseconds at SAMPLE_RATE (a stream's hop, a frame's length)."""
    return int(round(ms * SAMPLE_RATE / 1000))


def to_float(samples: np.ndarray) -> np.ndarray:
    """int16 -> float32 as ``samples / 2**15``."""
    return np.asarray(samples).astype(np.float32) / np.float32(INT16_SCALE)


def saturate_int16(values: np.ndarray) -> np.ndarray:
    """Round int16-scaled values and clip them to the int16 range (never wraps around)."""
    return np.clip(np.round(values), -32768, 32767).astype(STORED_DTYPE)


def to_int16(signal: np.ndarray) -> np.ndarray:
    """Float in [-1, 1] -> int16 with clipping."""
    return saturate_int16(signal * INT16_SCALE)
