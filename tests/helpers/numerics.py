"""The streaming model's check on the audio that tests float round-off hardest.

Near-silent windows sit at the front end's log floor, where the per-utterance
normalisation divides the small differences between frames by as little as
``sqrt(1e-3)``; a trained classifier then turns 1e-5 in its features into 1e-4 in
probability. These helpers make such a stream and such a classifier without any data
set, so the check runs in-process (oneDNN kernels where the CPU has them) and in a
subprocess with ``TF_ENABLE_ONEDNN_OPTS=0`` (the portable kernels of other CPUs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kws_research.contract import SAMPLE_RATE, to_int16

LABELS = ["silence", "unknown", "yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go"]


def quiet_stream(seed: int = 0) -> np.ndarray:
    """int16 audio of 19 s: digital silence, noise of 1-3 LSB and at -70 to -40 dBFS, each
    followed by a sudden tone-and-noise onset, as between words in a quiet room."""
    rng = np.random.default_rng(seed)
    parts = []
    for level in (0.0, 3e-5, 1e-4, 3e-4, 1e-3, 2e-3, 4e-3, 7e-3):
        parts.append(rng.normal(0, level, int(1.6 * SAMPLE_RATE)))
        t = np.arange(int(0.8 * SAMPLE_RATE)) / SAMPLE_RATE
        onset = 0.3 * np.sin(2 * np.pi * rng.uniform(200, 2000) * t) + rng.normal(0, 0.05, t.size)
        parts.append(onset + rng.normal(0, level, t.size))
    return to_int16(np.concatenate(parts))


def sensitive_model(seed: int = 0):
    """TC-ResNet8 from its YAML with He-scaled random weights (unit batch-norm gains): on the
    near-silent windows of :func:`quiet_stream` the sum of |d top probability / d feature|
    over a window is about 66, of the order of the trained model of the AVX2 report (25),
    where the small random weights of ``zoo_model`` give under 1."""
    from helpers.models import zoo_model

    model = zoo_model("tc_resnet", len(LABELS))
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "frontend" in weight.path or "moving" in weight.path:
            continue
        if "gamma" in weight.path or "beta" in weight.path or "bias" in weight.path:
            weight.assign(np.full(weight.shape, 1.0 if "gamma" in weight.path else 0.0, "float32"))
            continue
        fan_in = int(np.prod(weight.shape[:-1]))
        weight.assign(rng.normal(0, np.sqrt(2 / fan_in), weight.shape).astype("float32"))
    return model


def streaming_check_report(folder: str) -> dict:
    """Export's own check (``verify_streaming_model``) of the streaming files of
    :func:`sensitive_model`, in both shipped formats, on :func:`quiet_stream`, against the
    Keras feature-stream scores export compares with; and of a streaming model whose
    classifier bias was moved by 0.01 (a broken model, which the check must refuse)."""
    import keras

    from kws_research.coreml.convert import convert_streaming
    from kws_research.coreml.verify import Verification
    from kws_research.exporting.streaming import StreamReference, verify_streaming_model
    from kws_research.models.streaming import streaming_model
    from kws_research.streaming.scoring import keras_scorer
    from kws_research.streaming.streams import Stream

    model, audio = sensitive_model(), quiet_stream()
    times, scores, _ = keras_scorer(model).stream(audio, 100)
    reference = StreamReference(Stream(audio, [], "test", "mixed"), None, 100, LABELS, times, scores, [], 256)
    broken = keras.models.clone_model(model)
    broken.set_weights(model.get_weights())
    bias = broken.layers[-1].bias
    bias.assign(bias.numpy() + np.linspace(-0.01, 0.01, bias.shape[0], dtype="float32"))
    report = {}
    for name, form, fmt, precision, tolerance in (
        ("neuralnetwork", model, "neuralnetwork", "fp32", 1e-4),
        ("mlprogram", model, "mlprogram", "fp16", 5e-3),
        ("broken", broken, "neuralnetwork", "fp32", 1e-4),
    ):
        path = Path(folder) / f"{name}{'.mlmodel' if fmt == 'neuralnetwork' else '.mlpackage'}"
        convert_streaming(streaming_model(form, 1600), LABELS, fmt, precision).save(str(path))
        check = Verification(str(path), fmt, precision, 0, 0.0, 0.0, 1.0, 1.0, 1.0, tolerance, True, 0.0)
        verify_streaming_model(check, path, reference)
        report[name] = {
            "max_abs_diff": check.streaming_max_abs_diff,
            "hops": check.streaming_hops,
            "verified": check.verified,
            "failure": check.failure(),
        }
    return report
