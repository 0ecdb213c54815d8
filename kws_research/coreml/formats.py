"""The Core ML formats, precisions and interfaces an export can ask for, apart from the
converter: checking the options needs them, and should not load TensorFlow to say an
option is wrong."""

from __future__ import annotations

FORMATS = ("mlprogram", "neuralnetwork")
PRECISIONS = ("fp16", "fp32")
INTERFACES = ("standard", "seed")
SUFFIX = {"mlprogram": ".mlpackage", "neuralnetwork": ".mlmodel"}
