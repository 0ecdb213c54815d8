"""``python -m kws_research.train [overrides]``: one training run, tracked in MLflow.

Prints the MLflow run id and, as its last stdout line, the final metrics as one
JSON object. The Python API is :func:`train` (what the sweep calls).
"""

from __future__ import annotations

from omegaconf import DictConfig

from kws_research.cli import hydra_stage, print_json_line
from kws_research.training.run import FINAL_METRICS, RunHooks, TrainResult, run_training


def train(cfg: DictConfig, hooks: RunHooks | None = None) -> TrainResult:
    """Run one training; returns the run id and its metrics."""
    return run_training(cfg, hooks)


def main_train(cfg: DictConfig) -> float:
    result = train(cfg)
    print(f"run_id: {result.run_id}")
    print_json_line({"run_id": result.run_id, **{k: result.metrics.get(k) for k in FINAL_METRICS}})
    return result.metrics["best_val_accuracy"]


main = hydra_stage("train", main_train)

if __name__ == "__main__":
    main()
