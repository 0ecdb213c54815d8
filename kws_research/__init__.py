"""kws-research: a research harness for keyword spotting.

Stages (each a Hydra app): ``prepare`` -> ``train`` -> ``sweep`` -> ``export``.
Importing the package is cheap: TensorFlow, MLflow and Optuna load only in the
modules that need them.
"""

import os

# coremltools draws a tqdm bar per conversion pass; tqdm reads TQDM_* once, when it is
# first imported (often by Optuna), so this must come before any stage imports it.
os.environ.setdefault("TQDM_DISABLE", "1")

__version__ = "0.1.0"
