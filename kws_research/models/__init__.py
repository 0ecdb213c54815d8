"""Model zoo: one builder function per file, one YAML per model in conf/model/.

A builder takes ``num_classes`` (from the data) plus exactly the keys of its
YAML, and returns a Keras model from the raw 1 s waveform (float32, 16,000
samples, ``int16 / 2**15``) to class probabilities. Importing this package
registers the custom layers, so saved models load with ``safe_mode=True``.
"""

# Importing the modules that define custom layers registers them for safe-mode loading.
from kws_research.models import bc_resnet, frontend, gate  # noqa: F401
from kws_research.models.complexity import complexity
from kws_research.models.registry import build_model, load_model, model_name

__all__ = ["build_model", "complexity", "load_model", "model_name"]
