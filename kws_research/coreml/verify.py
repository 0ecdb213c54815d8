"""Does the saved Core ML model compute what the Keras model computes?

The test split goes through Keras and through the saved file, executed by the
NumPy reference runtime (any OS) and, on macOS, also by Core ML itself
(``MLModel.predict``). Reported: max and mean |probability difference|,
arg-max agreement, and the Core ML model's accuracy; verified when the max
difference is within the tolerance of the model's precision.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kws_research.coreml import runtime
from kws_research.errors import KwsError


@dataclass
class Verification:
    path: str
    format: str
    precision: str
    clips: int
    max_abs_diff: float
    mean_abs_diff: float
    agreement: float
    coreml_accuracy: float
    keras_accuracy: float
    tolerance: float
    verified: bool
    seconds: float
    macos_max_abs_diff: float | None = None
    stream_seconds: float | None = None  # the streaming check: detections on a short test stream
    stream_keras_detections: int | None = None
    stream_mismatches: int | None = None
    streaming_path: str | None = None  # the streaming model, called hop by hop on the same stream
    streaming_hops: int | None = None
    streaming_max_abs_diff: float | None = None  # per hop, against the Keras window model
    streaming_mismatches: int | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    def failure(self) -> str:
        """Why it is not verified, in a few words."""
        reasons = []
        if self.max_abs_diff > self.tolerance or (self.macos_max_abs_diff or 0.0) > self.tolerance:
            reasons.append(f"max |diff| {self.max_abs_diff:.3g} > tolerance {self.tolerance:.3g}")
        if self.stream_mismatches:
            reasons.append(
                f"{self.stream_mismatches} of {self.stream_keras_detections} detections differ on "
                f"{self.stream_seconds:g} s of test stream"
            )
        if (self.streaming_max_abs_diff or 0.0) > self.tolerance:
            reasons.append(f"streaming model: max |diff| per hop {self.streaming_max_abs_diff:.3g}")
        if self.streaming_mismatches:
            reasons.append(f"streaming model: {self.streaming_mismatches} detections differ")
        return f"{self.format} {self.precision}: " + ", ".join(reasons)


def macos_predict(path: Path, audio: np.ndarray) -> np.ndarray | None:
    """Core ML's own predictions, only where Core ML runs (macOS)."""
    if sys.platform != "darwin":
        return None
    import coremltools as ct

    model = ct.models.MLModel(str(path))
    spec = model.get_spec().description
    name, probs = spec.input[0].name, spec.predictedProbabilitiesName
    shape = tuple(spec.input[0].type.multiArrayType.shape)
    labels = None
    rows = []
    for clip in audio:
        out = model.predict({name: clip.reshape(shape).astype(np.float32)})[probs]
        labels = labels or list(out)
        rows.append([out[k] for k in labels])
    return np.asarray(rows, dtype=np.float32)


def verify(
    path: Path,
    fmt: str,
    precision: str,
    labels: list[str],
    audio: np.ndarray,
    truth: np.ndarray,
    keras_probs: np.ndarray,
    tolerance: float,
    differences: Callable[[np.ndarray], np.ndarray] | None = None,
) -> Verification:
    """Compare the saved model's outputs with Keras' on the same clips (``differences``: the
    saved model's probabilities -> each clip's largest difference, when that is not simply
    from ``keras_probs``)."""
    measure = differences or (lambda probs: np.abs(probs - keras_probs).max(axis=1))
    started = time.perf_counter()
    model = runtime.load(path)
    if list(model.labels) != list(labels):
        raise KwsError(
            f"{path}: class labels {model.labels} differ from the run's {labels}; the file is not this "
            "run's model, export the run again"
        )
    probs = runtime.predict(model, audio)
    diff = measure(probs)
    result = Verification(
        path=str(path),
        format=fmt,
        precision=precision,
        clips=int(audio.shape[0]),
        max_abs_diff=float(diff.max()),
        mean_abs_diff=float(np.abs(probs - keras_probs).mean()),
        agreement=float((probs.argmax(1) == keras_probs.argmax(1)).mean()),
        coreml_accuracy=float((probs.argmax(1) == truth).mean()),
        keras_accuracy=float((keras_probs.argmax(1) == truth).mean()),
        tolerance=float(tolerance),
        verified=bool(diff.max() <= tolerance),
        seconds=0.0,
    )
    native = macos_predict(path, audio)
    if native is not None:
        result.macos_max_abs_diff = float(measure(native).max())
        result.verified = result.verified and result.macos_max_abs_diff <= tolerance
    result.seconds = round(time.perf_counter() - started, 2)
    return result
