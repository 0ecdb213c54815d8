"""Accuracy of the baseline and each model family's default preset under one budget.

    make bench-accuracy [DATA=../shared/data/speech_commands_subset] [BENCH_ARGS='--epochs 20']

The baseline trains with the tutorial recipe (+experiment=baseline); the
families with the harness recipe (AdamW, cosine schedule, standard
augmentation, SpecAugment). Every run is logged to an MLflow store under
benchmarks/results/ so the runs can be browsed (`mlflow ui --backend-store-uri ...`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import report, reuse
from kws_research.config import compose

SUBSET_COMMANDS = "[yes,no,up,down,left,right,stop]"
FAMILIES = ("cnn1d", "ds_cnn", "tc_resnet", "bc_resnet")


def data_overrides(root: str, commands: str | None) -> list[str]:
    overrides = ["dataset=speech_commands", f"dataset.root={Path(root).resolve()}"]
    return overrides + ([f"dataset.commands={commands}"] if commands else [])


def run(overrides: list[str], reuse_finished: bool = False) -> dict:
    """Train one run (or, with ``reuse_finished``, read the same finished run: benchmarks/reuse.py);
    ``{"run_id", **metrics}``."""
    from kws_research.train import train

    cfg = compose("train", overrides)
    key = reuse.reuse_key(cfg)
    if reuse_finished and key and (found := reuse.finished_run(cfg, key)):
        print(f"reused run {found['run_id']} (same config, commit and machine)", flush=True)
        return found
    result = train(cfg)
    if key:
        reuse.mark(cfg, result.run_id, key)
    return {"run_id": result.run_id, **result.metrics}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/speech_commands_subset")
    parser.add_argument("--commands", default=SUBSET_COMMANDS, help="'' for the configured default")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--models", nargs="*", default=list(FAMILIES))
    parser.add_argument("--tracking-uri", default=f"sqlite:///{report.RESULTS}/bench.db")
    reuse.add_argument(parser)
    args = parser.parse_args()
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    common = data_overrides(args.data, args.commands or None) + [
        f"trainer.epochs={args.epochs}",
        "trainer.verbose=2",
        f"tracking.uri={args.tracking_uri}",
        f"tracking.artifact_location={report.RESULTS}/mlartifacts",
        "tracking.experiment=bench-accuracy",
    ]
    rows = []
    plans = [("seed_cnn1d (baseline, tutorial recipe)", ["+experiment=baseline"])]
    plans += [
        (m, [f"model={m}", "optimizer=adamw", "augment=standard", "trainer.early_stopping_patience=null"])
        for m in args.models
    ]
    for label, overrides in plans:
        metrics = run(common + overrides, args.reuse)
        rows.append(
            {
                "model": label,
                "params": int(metrics["params"]),
                "macs": int(metrics["macs"]),
                "val_accuracy": round(metrics["best_val_accuracy"], 4),
                "test_accuracy": round(metrics["test_accuracy"], 4),
                "s_per_epoch": round(metrics["seconds_per_epoch"], 1),
                "epochs": int(metrics["epochs_run"]),
                "minutes": round(metrics["train_seconds"] / 60, 1),
                "run_id": metrics["run_id"],
            }
        )
        print(rows[-1], flush=True)
    notes = (
        f"Data: {args.data} (commands {args.commands or 'default'}); budget {args.epochs} epochs "
        "(baseline: early stopping with patience 8, as its recipe). val = best validation accuracy; "
        "test = the local test split at the best-validation weights. MACs per 1 s clip include the "
        "in-graph front end."
    )
    report.write("accuracy", {"data": args.data, "epochs": args.epochs}, rows, "Model zoo accuracy", notes)


if __name__ == "__main__":
    main()
