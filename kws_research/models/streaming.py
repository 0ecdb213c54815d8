"""A model's front end and classifier apart, and the streaming form the app calls every hop.

Every front-end model is ``LogMelSpectrogram -> classifier`` on the raw clip. The
frames of a window that starts ``hop`` samples after the previous one are, when the
hop is a whole number of frame hops, the previous window's frames shifted by
``hop / frame hop`` plus that many new ones. So a stream needs each frame once:

* stream scoring computes the frames of the whole stream and runs the classifier on
  every window's slice of them (normalised per window, as the model does);
* the streaming model takes the newest hop of audio and a state (the samples the
  first new frame still needs from before the hop, then the last second's frames
  before normalisation) and returns the probabilities and the next state.

After ``CLIP_SAMPLES / hop`` calls its state holds only frames of real audio, and
from then on each output equals the window model's on the last second.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from kws_research.contract import CLIP_SAMPLES, HOP_INPUT, STATE_INPUT
from kws_research.errors import KwsError
from kws_research.models.complexity import complexity
from kws_research.models.frontend import LogMelSpectrogram

STREAM_LAYER = "frontend_stream"  # contains "frontend": kept fp32 in fp16 programs, like the window front end


def frames_per_hop(frontend: LogMelSpectrogram, hop_samples: int) -> int | None:
    """Frames a hop adds, or None when the hop is not a whole number of frame hops shorter than a clip."""
    frame_hop = frontend.settings.hop
    if hop_samples % frame_hop or hop_samples >= CLIP_SAMPLES:
        return None
    return hop_samples // frame_hop


@dataclass(frozen=True)
class FrontendSplit:
    """The model's front end, and everything after it as a model of the normalised features."""

    frontend: LogMelSpectrogram
    classifier: keras.Model

    def frames_per_hop(self, hop_samples: int) -> int | None:
        return frames_per_hop(self.frontend, hop_samples)

    def carry(self) -> int:
        """Samples of the previous hop that the first new frame still needs."""
        s = self.frontend.settings
        return s.window - s.hop

    def state_size(self) -> int:
        s = self.frontend.settings
        return self.carry() + s.frames * s.features


def separable_frontend(model: keras.Model) -> LogMelSpectrogram | None:
    """The one front end of a functional model when the model's input feeds it directly;
    None for other models (the raw-waveform baseline)."""
    frontends = [layer for layer in model.layers if getattr(layer, "is_frontend", False)]
    if len(frontends) != 1 or len(model.inputs) != 1 or frontends[0].input is not model.inputs[0]:
        return None
    return frontends[0]


def split_frontend(model: keras.Model) -> FrontendSplit | None:
    """The front end and classifier of a model with a separable front end; None for other
    models, which streams score by window."""
    frontend = separable_frontend(model)
    if frontend is None:
        return None
    classifier = keras.Model(frontend.output, model.output, name=f"{model.name}_classifier")
    return FrontendSplit(frontend, classifier)


class StreamingFrontend(keras.layers.Layer):
    """``(newest hop [1, hop], state)`` -> ``(normalised features of the last second, next state)``.

    State layout (float32, one row): ``carry`` samples, then ``frames x features``
    values (frame-major) of the last second's frames before normalisation."""

    def __init__(self, split: FrontendSplit, hop_samples: int, **kwargs):
        super().__init__(**kwargs)
        self.frontend = split.frontend
        self.carry = split.carry()
        self.new_frames = split.frames_per_hop(hop_samples)

    def call(self, inputs):
        hop, state = inputs
        s = self.frontend.settings
        audio = ops.concatenate([state[:, : self.carry], hop], axis=1) if self.carry else hop
        ring = ops.reshape(state[:, self.carry :], (-1, s.frames, s.features))
        ring = ops.concatenate([ring[:, self.new_frames :], self.frontend.frame_features(audio)], axis=1)
        flat = ops.reshape(ring, (-1, s.frames * s.features))
        next_state = ops.concatenate([audio[:, -self.carry :], flat], axis=1) if self.carry else flat
        return self.frontend.normalise(ring), next_state


def streaming_model(model: keras.Model, hop_samples: int) -> keras.Model:
    """The streaming form of ``model``: inputs (HOP_INPUT, STATE_INPUT), outputs
    (probabilities, next state); the same weights, nothing retrained."""
    split = split_frontend(model)
    if split is None:
        raise KwsError(f"model {model.name} has no separable front end, so it has no streaming form")
    if split.frames_per_hop(hop_samples) is None:
        raise KwsError(
            f"a hop of {hop_samples} samples is not a whole number of the front end's {split.frontend.settings.hop}-"
            "sample frame hops (or is a clip or longer); set stream.hop_ms to a multiple of the model's hop_ms"
        )
    hop = keras.Input((hop_samples,), batch_size=1, name=HOP_INPUT, dtype="float32")
    state = keras.Input((split.state_size(),), batch_size=1, name=STATE_INPUT, dtype="float32")
    features, next_state = StreamingFrontend(split, hop_samples, name=STREAM_LAYER, dtype="float32")([hop, state])
    return keras.Model([hop, state], [split.classifier(features), next_state], name=f"{model.name}_streaming")


def macs_per_hop(model: keras.Model, hop_samples: int) -> int | None:
    """MACs of one call of the streaming model (the new frames' front end and the classifier
    over the last second); None when the model has no streaming form. Counted from the
    layers: no classifier model is built."""
    frontend = separable_frontend(model)
    frames = frames_per_hop(frontend, hop_samples) if frontend is not None else None
    if frames is None:
        return None
    counts = complexity(model)
    return frontend.macs(frames) + counts["macs"] - counts["frontend_macs"]
