"""Registering custom Keras objects so saved ``.keras`` files load in safe mode.

A bottom module: layers (models) and learning-rate schedules (training) both
register here without importing each other.
"""

from __future__ import annotations

import keras

PACKAGE = "kws_research"


def register(cls):
    """Register ``cls`` under this package's name for ``keras.saving`` (safe mode)."""
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
