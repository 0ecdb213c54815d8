"""Optimisers, schedules and the loss from the optimizer config group."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from kws_research.config import compose
from kws_research.errors import ConfigError
from kws_research.training import optim


def lr_at(optimizer, steps: list[int]) -> list[float]:
    schedule = optimizer._learning_rate
    return [float(schedule(s)) if callable(schedule) else float(np.asarray(schedule)) for s in steps]


@pytest.mark.parametrize(
    "name,cls", [("adam", keras.optimizers.Adam), ("adamw", keras.optimizers.AdamW), ("sgd", keras.optimizers.SGD)]
)
def test_each_optimizer_yaml_builds_its_keras_class(name, cls):
    cfg = compose("train", [f"optimizer={name}", "optimizer.label_smoothing=0.1"]).optimizer
    optimizer, loss, _ = optim.build(cfg, steps_per_epoch=10, epochs=5)
    assert isinstance(optimizer, cls)
    assert loss.get_config()["label_smoothing"] == pytest.approx(0.1)
    if name == "sgd":
        assert optimizer.momentum == pytest.approx(0.9) and optimizer.nesterov


def test_focal_gamma_weights_the_confidently_wrong_examples_up():
    """Against cross-entropy, the focal loss keeps nearly all of a confidently wrong window's
    loss and drops most of an easy one's: the hard negatives drive training."""
    labels = np.eye(3, dtype="float32")[[0]]
    easy = np.array([[0.95, 0.03, 0.02]], dtype="float32")
    wrong = np.array([[0.02, 0.95, 0.03]], dtype="float32")
    plain = optim.build(compose("train", []).optimizer, 10, 5)[1]
    focal = optim.build(compose("train", ["optimizer.focal_gamma=2"]).optimizer, 10, 5)[1]
    assert isinstance(focal, keras.losses.CategoricalFocalCrossentropy)
    kept = [float(focal(labels, p)) / float(plain(labels, p)) for p in (easy, wrong)]
    assert kept[0] < 0.01 and kept[1] > 0.9


def test_cosine_warms_up_then_decays_to_the_floor():
    cfg = compose(
        "train",
        [
            "optimizer/schedule=cosine",
            "optimizer.learning_rate=0.01",
            "optimizer.schedule.warmup_epochs=1",
            "optimizer.schedule.min_ratio=0.01",
        ],
    ).optimizer
    optimizer, _, _ = optim.build(cfg, steps_per_epoch=10, epochs=5)
    start, peak, mid, end = lr_at(optimizer, [0, 10, 30, 50])
    assert start < peak == pytest.approx(0.01) and end < mid < peak and end == pytest.approx(1e-4, rel=0.05)


def test_onecycle_rises_then_falls():
    cfg = compose("train", ["optimizer/schedule=onecycle", "optimizer.learning_rate=0.01"]).optimizer
    optimizer, _, _ = optim.build(cfg, steps_per_epoch=10, epochs=10)
    values = lr_at(optimizer, [0, 15, 30, 60, 100])
    assert values[0] == pytest.approx(0.01 / 25, rel=1e-3) and values[2] == pytest.approx(0.01, rel=1e-3)
    assert values[0] < values[1] < values[2] > values[3] > values[4]


def test_plateau_is_a_callback_on_validation_accuracy():
    cfg = compose("train", ["optimizer/schedule=plateau"]).optimizer
    _, _, callbacks = optim.build(cfg, steps_per_epoch=10, epochs=5)
    assert len(callbacks) == 1 and isinstance(callbacks[0], keras.callbacks.ReduceLROnPlateau)
    assert callbacks[0].monitor == "val_accuracy"


@pytest.mark.parametrize(
    "override,key",
    [
        ("optimizer.learning_rate=-1", "optimizer.learning_rate"),
        ("optimizer.label_smoothing=1.5", "optimizer.label_smoothing"),
        ("optimizer.weight_decay=-0.1", "optimizer.weight_decay"),
        ("optimizer.focal_gamma=-1", "optimizer.focal_gamma"),
    ],
)
def test_bad_values_name_the_key(override, key):
    with pytest.raises(ConfigError, match=key):
        optim.build(compose("train", [override]).optimizer, 10, 5)
