"""``python -m kws_research.train [overrides]``: one training run, tracked in MLflow.

Prints the MLflow run id and, as its last stdout line, the final metrics as one
JSON object. The Python API is :func:`train`; the sweep calls
:func:`kws_research.training.run.run_training` with its hooks.
"""

from __future__ import annotations

from omegaconf import DictConfig

from kws_research.cli import hydra_stage, print_json_line
from kws_research.training.result import FINAL_METRICS, RunHooks, TrainResult


def train(cfg: DictConfig, hooks: RunHooks | None = None) -> TrainResult:
    """Run one training; returns the run id and its metrics."""
    # Imported here: TensorFlow loads only once a run starts, after the command line was
    # checked and TensorFlow's log level set (a bad override fails in a second).
    from kws_research.training.run import run_training

    return run_training(cfg, hooks)


def main_train(cfg: DictConfig) -> float:
    result = train(cfg)
    print(f"run_id: {result.run_id}")
    print_json_line({"run_id": result.run_id, **{k: result.metrics.get(k) for k in FINAL_METRICS}})
    return result.metrics["best_val_accuracy"]


main = hydra_stage("train", main_train)

if __name__ == "__main__":
    main()
