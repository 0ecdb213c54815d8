"""The files every training run leaves in MLflow (the run contract, see README)."""

from __future__ import annotations

import json

from omegaconf import OmegaConf

from kws_research.tracking.runs import artifact_dir, log_artifacts
from kws_research.training import plots


def log_run_artifacts(
    client,
    run_id: str,
    resolved: dict,
    data,
    model,
    history: dict,
    title: str,
    test_result: dict | None,
    gated_per_class: dict,
    summary: dict,
) -> None:
    """Config, labels, model, data summary, curves, confusion matrix, report and summary."""
    classes = list(data.classes)
    with artifact_dir() as folder:
        (folder / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.create(resolved)))
        (folder / "labels.json").write_text(json.dumps(classes))
        (folder / "model").mkdir()
        model.save(folder / "model" / "model.keras")
        (folder / "data_summary.json").write_text(json.dumps(data.summary, indent=1))
        plots.training_curves_png(history, folder / "training_curves.png", title)
        if test_result is not None:
            plots.confusion_matrix_png(
                test_result["confusion"], classes, folder / "confusion_matrix.png", f"{title}: test split"
            )
            report = dict(test_result["report"], per_class_accuracy=test_result["per_class_accuracy"])
            if gated_per_class:
                report["gated_per_class_accuracy"] = gated_per_class
            (folder / "classification_report.json").write_text(json.dumps(report, indent=1))
        (folder / "summary.json").write_text(json.dumps({"run_id": run_id, **summary}, indent=1))
        log_artifacts(client, run_id, folder)
