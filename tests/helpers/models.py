"""Models of the zoo with small random weights, and the portable-kernel training check."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from kws_research.contract import CLIP_SAMPLES

ZOO = ("seed_cnn1d", "cnn1d", "ds_cnn", "tc_resnet", "bc_resnet")


def small_random_weights(model, seed: int = 0, scale: float = 0.1):
    """Small non-zero weights everywhere but the fixed front end (a zero Dense bias makes
    the converter pick other layer types than trained models get)."""
    rng = np.random.default_rng(seed)
    for weight in model.weights:
        if "frontend" in weight.path:
            continue
        values = rng.uniform(-scale, scale, weight.shape).astype("float32")
        if "variance" in weight.path:
            values = np.abs(values) + 0.5
        weight.assign(values)
    return model


def zoo_model(name: str, num_classes: int = 5, *overrides: str):
    """A model of the zoo built from its YAML, with small random weights."""
    from kws_research.config import compose
    from kws_research.models import build_model

    cfg = compose("train", [f"model={name}", *overrides])
    return small_random_weights(build_model(cfg.model, num_classes))


def portable_training_report(folder: str, *names: str) -> dict:
    """For each model config: one training step, evaluation, and a safe-mode save/reload.

    Run it with ``helpers.system.portable_report`` (TensorFlow's portable CPU kernels): a
    layer that only oneDNN implements fails there on any machine."""
    import keras
    import tensorflow as tf

    from kws_research.config import compose
    from kws_research.models import build_model, load_model

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (4, CLIP_SAMPLES)).astype("float32")
    y = keras.utils.to_categorical([0, 1, 2, 3], 5)
    report = {}
    for name in names:
        cfg = compose("train", [f"model={name}"])
        model = build_model(cfg.model, 5)
        optimizer = keras.optimizers.Adam(1e-3)
        with tf.GradientTape() as tape:  # eager: the same kernels as fit, without tracing a graph
            loss = keras.losses.categorical_crossentropy(y, model(x, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_weights), model.trainable_weights))
        probs = np.asarray(model(x, training=False))
        path = Path(folder) / f"{name}.keras"
        model.save(path)
        again = np.asarray(load_model(path)(x, training=False))
        report[name] = {
            "loss": float(np.mean(loss)),
            "prob_sum_error": float(np.abs(probs.sum(1) - 1).max()),
            "reload_diff": float(np.abs(probs - again).max()),
        }
        keras.backend.clear_session()
    return report
