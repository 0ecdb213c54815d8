"""Temperature scaling folded into the model: ``softmax(log(p + eps) / T)``.

Applied to the probabilities the model (and its open-set rule) outputs, so it
needs no logits and converts to ops every Core ML format has (add, log, multiply,
softmax). ``T > 1`` softens an over-confident model (the tutorial's "up").
"""

from __future__ import annotations

import keras
from keras import ops

from kws_research.contract import PROBABILITY_EPSILON
from kws_research.serialization import register


@register
class Temperature(keras.layers.Layer):
    def __init__(self, temperature: float, epsilon: float = PROBABILITY_EPSILON, **kwargs):
        super().__init__(**kwargs)
        self.temperature, self.epsilon = float(temperature), float(epsilon)

    def call(self, probabilities):
        return ops.softmax(ops.log(probabilities + self.epsilon) * (1.0 / self.temperature), axis=-1)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature, "epsilon": self.epsilon}


def tempered_model(model: keras.Model, temperature: float) -> keras.Model:
    """``model`` followed by the temperature (same input)."""
    return keras.Model(model.input, Temperature(temperature, name="temperature")(model.output), name=model.name)
