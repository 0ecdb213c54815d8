"""Custom Keras layers of the zoo, registered so ``.keras`` files load in safe mode."""

from __future__ import annotations

import keras

PACKAGE = "kws_research"


def register(cls):
    return keras.saving.register_keras_serializable(package=PACKAGE)(cls)
