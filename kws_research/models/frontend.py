"""Feature extraction inside the model, from ops that Core ML converts.

The model keeps the app's contract (raw 1 s of 16 kHz audio in, scaled as
``int16 / 2**15``) and computes its own log-mel spectrogram. One front end, two
implementations of the same numbers: training, evaluation and stream scoring run an
FFT (``tf.signal.rfft`` of Hann-windowed frames, about a tenth of the multiplies);
the graph Core ML converts (inside :func:`dense_dft`; MIL has no FFT op) is

    Conv1D with fixed windowed-DFT kernels (real and imaginary parts of every
    used FFT bin, stride = hop)  ->  square  ->  matmul with the mel matrix
    (stacked twice, so re**2 + im**2 happens inside it)  ->  log(x / offset + 1)
    (with fixed power-of-two scales that keep fp16 in range, see POWER_SCALE; measured
    from the log floor so near-silent windows keep their float32 precision)
    [-> matmul with a DCT-II matrix for MFCC]  [-> per-utterance normalisation]

Per-utterance normalisation removes each band's mean over time and divides by
one standard deviation of the whole clip: a per-band variance would blow up the
float noise of bands that sit at the log floor for the whole clip.

Every weight is fixed (non-trainable) and computed from the settings, so the
layer is saved by its config. The mel scale and filter normalisation follow
librosa's defaults (Slaney); a test checks the layer against a NumPy/SciPy
STFT and ``librosa.filters.mel``.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, fields

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kws_research.contract import CLIP_SAMPLES, SAMPLE_RATE
from kws_research.errors import ConfigError
from kws_research.serialization import register

NORMALISATIONS = ("utterance", "none")
# Core ML runs the model in fp16 on the device. The DFT kernels are scaled by 1/4 and
# the mel matrix by 256 (powers of two, exact in fp16), so frame values, powers and
# mel energies of real audio stay inside fp16's normal range (no overflow at full
# scale, no subnormals near the log floor); the log then subtracts log(16) so the
# features are exactly log(mel + log_offset).
DFT_SCALE = 0.25
MEL_GAIN = 256.0
POWER_SCALE = DFT_SCALE**2 * MEL_GAIN


@dataclass(frozen=True)
class FrontendSettings:
    """Keys of a model YAML's ``frontend`` block."""

    kind: str = "logmel"  # logmel | mfcc
    window_ms: float = 30.0
    hop_ms: float = 10.0
    n_fft: int = 512
    n_mels: int = 40
    f_min: float = 20.0
    f_max: float = 7600.0
    log_offset: float = 1e-4  # log floor: 80 dB below a full-scale tone's peak bin
    n_mfcc: int = 20  # mfcc only
    normalize: str = "utterance"  # utterance: band means over time removed, divided by the clip's std | none

    @classmethod
    def from_config(cls, cfg: Mapping | None) -> FrontendSettings:
        cfg = dict(cfg or {})
        unknown = set(cfg) - {f.name for f in fields(cls)}
        if unknown:
            raise ConfigError("model.frontend", f"unknown key(s) {sorted(unknown)}")
        settings = cls(**cfg)
        settings.validate()
        return settings

    @property
    def window(self) -> int:
        return int(round(self.window_ms * SAMPLE_RATE / 1000))

    @property
    def hop(self) -> int:
        return int(round(self.hop_ms * SAMPLE_RATE / 1000))

    @property
    def frames(self) -> int:
        return 1 + (CLIP_SAMPLES - self.window) // self.hop

    @property
    def features(self) -> int:
        return self.n_mfcc if self.kind == "mfcc" else self.n_mels

    def validate(self) -> None:
        if self.kind not in ("logmel", "mfcc"):
            raise ConfigError("model.frontend.kind", f"{self.kind!r} is not logmel or mfcc")
        if self.normalize not in NORMALISATIONS:
            raise ConfigError("model.frontend.normalize", f"{self.normalize!r} is not one of {NORMALISATIONS}")
        if not 0 < self.window <= self.n_fft:
            raise ConfigError(
                "model.frontend.window_ms", f"window of {self.window} samples must be in (0, n_fft={self.n_fft}]"
            )
        if not 0 < self.hop <= self.window:
            raise ConfigError("model.frontend.hop_ms", "must be > 0 and at most the window")
        if not 0 <= self.f_min < self.f_max <= SAMPLE_RATE / 2:
            raise ConfigError("model.frontend.f_max", f"need 0 <= f_min < f_max <= {SAMPLE_RATE // 2}")
        if self.kind == "mfcc" and not 0 < self.n_mfcc <= self.n_mels:
            raise ConfigError("model.frontend.n_mfcc", f"must be in (0, n_mels={self.n_mels}]")
        if self.log_offset <= 0:
            raise ConfigError("model.frontend.log_offset", "must be > 0")


def hz_to_mel(hz):
    """Slaney mel scale (librosa's default): linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz) / logstep, hz / f_sp)


def mel_to_hz(mel):
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, np.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)), f_sp * mel)


def mel_filterbank(n_fft: int, n_mels: int, f_min: float, f_max: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Triangular, area-normalised (Slaney) filters, shape ``[n_fft // 2 + 1, n_mels]``."""
    fft_freqs = np.linspace(0, rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min), hz_to_mel(f_max), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper)) * (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.T.astype(np.float64)


def dft_kernels(window: int, n_fft: int, bins: np.ndarray) -> np.ndarray:
    """Conv1D kernel ``[window, 1, 2 * len(bins)]``: Hann-windowed cos and -sin of each bin."""
    t = np.arange(window)
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * t / window)  # periodic Hann, as scipy/librosa use
    phase = 2 * np.pi * np.outer(t, bins) / n_fft
    kernel = np.concatenate([hann[:, None] * np.cos(phase), -hann[:, None] * np.sin(phase)], axis=1)
    return kernel[:, None, :]


def dct_matrix(n_mels: int, n_mfcc: int) -> np.ndarray:
    """Orthonormal DCT-II, shape ``[n_mels, n_mfcc]`` (as scipy.fft.dct(norm='ortho'))."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)
    matrix = np.cos(np.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * np.sqrt(2.0 / n_mels)
    matrix[:, 0] /= np.sqrt(2.0)
    return matrix


_form = threading.local()


@contextlib.contextmanager
def dense_dft() -> Iterator[None]:
    """Inside: every front end traced computes its DFT as fixed Conv1D kernels, the form
    Core ML converts (its MIL opsets have no FFT). The weights are fixed, so the switch
    is exact; outside, the FFT computes the same features faster."""
    previous = getattr(_form, "dense", False)
    _form.dense = True
    try:
        yield
    finally:
        _form.dense = previous


def dense_dft_active() -> bool:
    return getattr(_form, "dense", False)


@register
class LogMelSpectrogram(keras.layers.Layer):
    """Raw waveform ``[B, CLIP_SAMPLES]`` -> log-mel (or MFCC) features ``[B, frames, features]``."""

    is_frontend = True

    def __init__(self, settings: dict | None = None, **kwargs):
        super().__init__(**kwargs)
        self.settings = FrontendSettings.from_config(settings)
        s = self.settings
        mel = mel_filterbank(s.n_fft, s.n_mels, s.f_min, s.f_max)
        self.bins = np.nonzero(mel.sum(axis=1) > 0)[0]  # bins no mel filter uses cost nothing
        self._kernel_value = (DFT_SCALE * dft_kernels(s.window, s.n_fft, self.bins)).astype(np.float32)
        self._mel_value = (MEL_GAIN * np.concatenate([mel[self.bins], mel[self.bins]], axis=0)).astype(np.float32)
        self._dct_value = dct_matrix(s.n_mels, s.n_mfcc).astype(np.float32) if s.kind == "mfcc" else None
        t = np.arange(s.window)
        self._hann = (0.5 - 0.5 * np.cos(2 * np.pi * t / s.window)).astype(np.float32)  # periodic, as the kernels

    def build(self, input_shape):
        def fixed(name, value):
            return self.add_weight(
                name=name, shape=value.shape, trainable=False, initializer=keras.initializers.Constant(value)
            )

        self.dft = fixed("dft", self._kernel_value)
        self.mel = fixed("mel", self._mel_value)
        self.dct = fixed("dct", self._dct_value) if self._dct_value is not None else None

    def _dense_energy(self, audio):
        """Mel energies from the DFT as Conv1D kernels (re and im of every used bin)."""
        frames = ops.conv(ops.expand_dims(audio, -1), self.dft, strides=self.settings.hop, padding="valid")
        return ops.matmul(ops.square(frames), self.mel)

    def _fft_energy(self, frames):
        """The same mel energies from an FFT of frames ``[..., window]`` (Hann applied here)."""
        s = self.settings
        spectrum = tf.gather(tf.signal.rfft(frames * self._hann, fft_length=[s.n_fft]), self.bins, axis=-1)
        power = (tf.math.square(tf.math.real(spectrum)) + tf.math.square(tf.math.imag(spectrum))) * DFT_SCALE**2
        return ops.matmul(power, self.mel[: len(self.bins)])

    def _from_energy(self, energy):
        """``log(mel + log_offset)``, computed as the level above the floor, ``log(mel / log_offset + 1)``.

        Near-silent windows sit at the floor, where ``log(mel + log_offset)`` is about -9.2 and
        float32 keeps it to 5e-7; the per-utterance normalisation then divides the tiny
        differences between frames by as little as ``sqrt(1e-3)`` and the round-off becomes
        1e-4 in the features (docs/export.md, "Float error"). Measured from the floor, those
        features are near 0 and keep their small differences; the constant ``log(log_offset)``
        is removed by the normalisation anyway and added back only without it."""
        s = self.settings
        features = ops.log(energy * float(1.0 / (s.log_offset * POWER_SCALE)) + 1.0)
        if s.normalize != "utterance":
            features = features + float(np.log(s.log_offset))
        return ops.matmul(features, self.dct) if self.dct is not None else features

    def frame_features(self, audio):
        """Features of every frame of ``audio`` ``[B, samples]`` (any length of at least one
        window), before the per-utterance normalisation: ``[B, frames, features]``. Frames
        start every hop from the first sample, so a stream's frames are those of its windows."""
        if dense_dft_active():
            return self._from_energy(self._dense_energy(audio))
        s = self.settings
        return self._from_energy(self._fft_energy(tf.signal.frame(tf.cast(audio, tf.float32), s.window, s.hop)))

    def normalise(self, features):
        """The per-utterance normalisation of one window's frames ``[B, frames, features]``."""
        if self.settings.normalize != "utterance":
            return features
        centred = features - ops.mean(features, axis=1, keepdims=True)
        return centred / ops.sqrt(ops.mean(ops.square(centred), axis=(1, 2), keepdims=True) + 1e-3)

    def call(self, audio):
        return self.normalise(self.frame_features(audio))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.settings.frames, self.settings.features)

    def macs(self, frames: int | None = None) -> int:
        """MACs of the dense form (the one on the device) for ``frames`` frames (default: a clip's)."""
        s = self.settings
        frames = s.frames if frames is None else frames
        channels = 2 * len(self.bins)
        total = frames * (s.window * channels + channels + channels * s.n_mels)
        if s.kind == "mfcc":
            total += frames * s.n_mels * s.n_mfcc
        return total

    def get_config(self):
        return {**super().get_config(), "settings": asdict(self.settings)}


@register
class SpecAugment(keras.layers.Layer):
    """Time and frequency masks on ``[B, frames, features]``, only while training
    (an identity in the exported model). Masked values become 0, the mean of
    normalised features."""

    def __init__(
        self,
        time_masks: int = 2,
        time_mask_width: int = 10,
        freq_masks: int = 2,
        freq_mask_width: int = 5,
        seed: int | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.time_masks, self.time_mask_width = int(time_masks), int(time_mask_width)
        self.freq_masks, self.freq_mask_width = int(freq_masks), int(freq_mask_width)
        self.seed = seed
        self.generator = keras.random.SeedGenerator(seed)

    def _masks(self, batch, length: int, count: int, width: int):
        keep = ops.ones((batch, length))
        positions = ops.arange(length, dtype="float32")[None, :]
        for _ in range(count):
            w = ops.floor(keras.random.uniform((batch, 1), 0, width + 1, seed=self.generator))
            start = ops.floor(keras.random.uniform((batch, 1), 0, 1, seed=self.generator) * (length - w + 1))
            inside = ops.logical_and(positions >= start, positions < start + w)
            keep = keep * (1.0 - ops.cast(inside, "float32"))
        return keep

    def call(self, features, training=False):
        if not training or not (self.time_masks or self.freq_masks):
            return features
        batch = ops.shape(features)[0]
        frames, bins = features.shape[1], features.shape[2]
        keep_t = self._masks(batch, frames, self.time_masks, self.time_mask_width)
        keep_f = self._masks(batch, bins, self.freq_masks, self.freq_mask_width)
        return features * keep_t[:, :, None] * keep_f[:, None, :]

    def get_config(self):
        return {
            **super().get_config(),
            "time_masks": self.time_masks,
            "time_mask_width": self.time_mask_width,
            "freq_masks": self.freq_masks,
            "freq_mask_width": self.freq_mask_width,
            "seed": self.seed,
        }


def features(inputs, frontend: Mapping | None, spec_augment: Mapping | None = None):
    """The shared start of every front-end model: waveform -> features [-> SpecAugment].
    The front end stays float32 under mixed precision (log of small powers, fixed DFT)."""
    x = LogMelSpectrogram(dict(frontend or {}), name="frontend", dtype="float32")(inputs)
    if spec_augment:
        x = SpecAugment(**dict(spec_augment), name="spec_augment")(x)
    return x
