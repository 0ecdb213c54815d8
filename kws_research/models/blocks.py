"""Small building blocks shared by the model families."""

from __future__ import annotations

import keras

L = keras.layers
# Keras' default of 0.99 lets the moving statistics lag far behind the weights in
# short trainings (validation at chance for the first epochs, which early stopping
# and pruning punish); 0.9 is PyTorch's default and tracks within an epoch.
BN_MOMENTUM = 0.9


def batch_norm(name: str) -> L.BatchNormalization:
    return L.BatchNormalization(momentum=BN_MOMENTUM, name=name)


def conv_bn_relu(x, conv: L.Layer, name: str, activation: str = "relu"):
    """``conv`` (no bias) -> BatchNorm -> activation: folds into one conv at deployment."""
    x = conv(x)
    x = batch_norm(f"{name}_bn")(x)
    return L.Activation(activation, name=f"{name}_{activation}")(x)


def classifier(x, num_classes: int, dropout: float = 0.0, name: str = "probabilities"):
    """Optional dropout, then the softmax layer every model ends with (float32 under a mixed
    precision policy: a float16 softmax loses the small probabilities the loss needs)."""
    if dropout:
        x = L.Dropout(dropout, name="head_dropout")(x)
    return L.Dense(num_classes, activation="softmax", name=name, dtype="float32")(x)
