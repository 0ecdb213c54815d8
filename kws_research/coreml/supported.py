"""The op/layer types the reference runtime executes (derived from its kernels): the
converted model zoo must use only these, which the conversion tests check per family."""

from kws_research.coreml.mil_runtime import KERNELS
from kws_research.coreml.nn_runtime import LAYERS

MLPROGRAM_OPS = frozenset(KERNELS) | {"const", "classify"}
NEURALNETWORK_LAYERS = frozenset(LAYERS)
