"""A small sweep file over the tone data set, and the arguments that point a sweep at it."""

from __future__ import annotations

import yaml


def write_sweep(tmp_path, **fields) -> str:
    spec = {
        "study_name": "t",
        "storage": f"sqlite:///{tmp_path}/optuna.db",
        "n_trials": 4,
        "sampler": {"name": "grid"},
        "pruner": {"name": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
        "constraints": {"max_params": 100000},
        "overrides": [
            "dataset=speech_commands",
            "dataset.commands=[yes,no,up]",
            "dataset.unknown_percentage=50",
            "dataset.silence_percentage=50",
            "trainer.epochs=2",
            "trainer.batch_size=16",
            "trainer.verbose=0",
            "augment=none",
        ],
        "params": {"model": "choice(tc_resnet, cnn1d)", "optimizer.learning_rate": "choice(0.001, 0.003)"},
    }
    spec.update(fields)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def data_args(tone_root, tmp_path) -> list[str]:
    return [
        f"dataset.root={tone_root}",
        f"dataset.cache_dir={tmp_path}/cache",
        f"tracking.uri=sqlite:///{tmp_path}/mlruns.db",
        f"tracking.artifact_location={tmp_path}/mlartifacts",
    ]
