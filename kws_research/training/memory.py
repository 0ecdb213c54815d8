"""Give back what a finished training run leaves in TensorFlow's process-wide state.

Keras' TensorFlow optimizer all-reduces gradients through ``tf.custom_gradient``
even on one device; in graph mode every such call registers a gradient function
under a fresh ``CustomGradient-<uid>`` name in TensorFlow's global gradient
registry and never removes it. Each function closes over the traced training
step, so every run kept its whole training graph alive (about 140 MB per sweep
trial, measured with ``make bench-sweep``). ``keras.backend.clear_session()``
does not touch that registry, and nothing uses those entries once the run's
``fit`` has returned, so the run drops the ones it added.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "CustomGradient-"


def _gradient_registry() -> dict | None:
    """TensorFlow's private name -> gradient-function table (None if a release moved it)."""
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None


def custom_gradient_count() -> int:
    registry = _gradient_registry()
    return sum(name.startswith(PREFIX) for name in registry) if registry is not None else 0


@contextmanager
def released_custom_gradients() -> Iterator[None]:
    """Remove the custom-gradient registrations made inside the block when it ends."""
    registry = _gradient_registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [n for n in registry if n.startswith(PREFIX) and n not in before]:
                del registry[name]
