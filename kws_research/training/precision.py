"""Mixed precision for training (``trainer.precision``), float32 for everything that ships.

Under ``mixed_float16`` (NVIDIA GPUs) or ``mixed_bfloat16`` (recent CPUs, TPUs)
Keras computes in 16 bits and keeps float32 master weights; ``compile`` adds loss
scaling for float16 by itself. The front end and the softmax stay float32 (see
models/frontend.py and models/blocks.py). What the run saves, logs, evaluates and
export converts is a float32 copy of the trained weights, so Core ML conversion and
verification see the same graph as a float32 run (and no run saves optimizer state).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import keras

from kws_research.errors import ConfigError
from kws_research.models import build_model

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def check(name) -> str:
    if name not in PRECISIONS:
        raise ConfigError("trainer.precision", f"{name!r} is not one of {', '.join(PRECISIONS)}")
    return str(name)


@contextlib.contextmanager
def policy(name: str) -> Iterator[None]:
    """Keras' global dtype policy ``name`` inside the block, float32 after it."""
    keras.mixed_precision.set_global_policy(check(name))
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy("float32")


def float32_copy(model: keras.Model, model_cfg: Mapping, num_classes: int) -> keras.Model:
    """The same architecture built under float32 and not compiled, holding the trained
    (float32 master) weights: what a run saves, without the optimizer's state (a compiled
    Adam model's file is three times the weights)."""
    with policy("float32"):
        copy = build_model(model_cfg, num_classes)
    copy.set_weights(model.get_weights())
    return copy
