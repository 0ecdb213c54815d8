"""kws-research: a research harness for keyword spotting.

Stages (each a Hydra app): ``prepare`` -> ``train`` -> ``sweep`` -> ``export``.
Importing the package is cheap: TensorFlow, MLflow and Optuna load only in the
modules that need them.
"""

__version__ = "0.1.0"
