"""Learning-rate schedules, one builder per YAML in conf/optimizer/schedule/.

A builder takes the optimiser's base ``learning_rate`` and the run's
``steps_per_epoch`` and ``epochs`` (given by the trainer) plus its YAML keys,
and returns what Keras' optimiser takes as ``learning_rate`` and the callbacks
the schedule needs (the plateau schedule is a callback).
"""

from __future__ import annotations

import math

import keras

from kws_research.serialization import register

Schedule = tuple[float | keras.optimizers.schedules.LearningRateSchedule, list[keras.callbacks.Callback]]


def constant(learning_rate: float, steps_per_epoch: int, epochs: int) -> Schedule:
    return learning_rate, []


def cosine(
    learning_rate: float, steps_per_epoch: int, epochs: int, warmup_epochs: float = 0.0, min_ratio: float = 0.01
) -> Schedule:
    """Linear warm-up, then cosine decay to ``min_ratio * learning_rate`` at the last step."""
    total = max(1, steps_per_epoch * epochs)
    warmup = min(total - 1, int(warmup_epochs * steps_per_epoch))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=learning_rate * (min_ratio if warmup else 1.0),
        decay_steps=max(1, total - warmup),
        alpha=min_ratio,
        warmup_target=learning_rate if warmup else None,
        warmup_steps=warmup,
    )
    return schedule, []


@register
class OneCycle(keras.optimizers.schedules.LearningRateSchedule):
    """Smith's one-cycle policy: cosine up from ``peak/div`` to ``peak``, then down to
    ``peak/final_div``."""

    def __init__(
        self, peak: float, total_steps: int, pct_start: float = 0.3, div: float = 25.0, final_div: float = 1e4
    ):
        self.peak, self.total_steps, self.pct_start = float(peak), int(total_steps), float(pct_start)
        self.div, self.final_div = float(div), float(final_div)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        up = max(1.0, self.pct_start * self.total_steps)
        down = max(1.0, self.total_steps - up)
        start, low = self.peak / self.div, self.peak / self.final_div

        def anneal(a, b, frac):
            frac = keras.ops.clip(frac, 0.0, 1.0)
            return b + (a - b) * (1 + keras.ops.cos(math.pi * frac)) / 2

        return keras.ops.where(
            step < up, anneal(start, self.peak, step / up), anneal(self.peak, low, (step - up) / down)
        )

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "pct_start": self.pct_start,
            "div": self.div,
            "final_div": self.final_div,
        }


def onecycle(
    learning_rate: float,
    steps_per_epoch: int,
    epochs: int,
    pct_start: float = 0.3,
    div: float = 25.0,
    final_div: float = 1e4,
) -> Schedule:
    return OneCycle(learning_rate, steps_per_epoch * epochs, pct_start, div, final_div), []


def plateau(
    learning_rate: float,
    steps_per_epoch: int,
    epochs: int,
    factor: float = 0.5,
    patience: int = 3,
    min_lr: float = 1e-5,
) -> Schedule:
    """Constant rate, multiplied by ``factor`` when validation accuracy stalls ``patience`` epochs."""
    callback = keras.callbacks.ReduceLROnPlateau(
        monitor="val_accuracy", mode="max", factor=factor, patience=patience, min_lr=min_lr, verbose=0
    )
    return learning_rate, [callback]
