"""Keras callbacks of a tracked run."""

from __future__ import annotations

import math
import time

import keras

from kws_research.processes import check_interrupted
from kws_research.tracking.runs import log_metrics
from kws_research.training.optim import current_learning_rate

EPOCH_METRICS = {
    "loss": "train_loss",
    "accuracy": "train_accuracy",
    "val_loss": "val_loss",
    "val_accuracy": "val_accuracy",
}


class EpochLogger(keras.callbacks.Callback):
    """Logs train/validation loss and accuracy and the learning rate with step = epoch."""

    def __init__(self, client, run_id: str) -> None:
        super().__init__()
        self.client, self.run_id = client, run_id
        self.history: dict[str, list[float]] = {}
        self.epoch_seconds: list[float] = []
        self._started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self._started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch_seconds.append(time.perf_counter() - self._started)
        logs = dict(logs or {})
        for key, value in logs.items():
            self.history.setdefault(key, []).append(float(value))
        metrics = {EPOCH_METRICS[k]: float(v) for k, v in logs.items() if k in EPOCH_METRICS}
        metrics["lr"] = current_learning_rate(self.model.optimizer)
        metrics["epoch_seconds"] = self.epoch_seconds[-1]
        log_metrics(self.client, self.run_id, metrics, step=epoch)


class InterruptCheck(keras.callbacks.Callback):
    """Ends training at the next epoch boundary if an interrupt was swallowed on the way
    (Python drops exceptions raised inside finalisers)."""

    def on_epoch_end(self, epoch, logs=None):
        check_interrupted()


class NonFiniteLoss(keras.callbacks.Callback):
    """Ends training on a NaN/Inf loss with an error (the run then ends FAILED with the
    reason). Checked per epoch: a per-batch hook would slow every step down."""

    def on_epoch_end(self, epoch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            raise FloatingPointError(
                f"training loss became {loss} in epoch {epoch + 1}; lower "
                "optimizer.learning_rate or set optimizer.clipnorm"
            )
