"""Training overhead: seconds per epoch through the ``train`` stage vs a bare
``model.fit`` on in-memory arrays, same model, data and batch size, one process.
Also the input pipeline's own throughput (with and without augmentation)
against the model's step time, to show the pipeline is not the bottleneck.

    make bench-train [SUBSET=...] [BENCH_ARGS='--model seed_cnn1d --epochs 4']
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np

from benchmarks import report
from kws_research.config import compose
from kws_research.contract import to_float

SUBSET_COMMANDS = "[yes,no,up,down,left,right,stop]"


class EpochTimer:
    def __init__(self):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(inner):
                super().__init__()
                inner.seconds = []

            def on_epoch_begin(inner, epoch, logs=None):
                inner.started = time.perf_counter()

            def on_epoch_end(inner, epoch, logs=None):
                inner.seconds.append(time.perf_counter() - inner.started)

        self.callback = _Timer()


def steady(seconds: list[float]) -> float:
    """Median epoch time without the first epoch (tracing and warm-up)."""
    return statistics.median(seconds[1:] if len(seconds) > 1 else seconds)


def budget_config(data: str, commands: str, model: str, epochs: int, batch_size: int, tmp: str, *extra: str):
    """A train config for a fixed budget on ``data`` (no early stopping), tracked under ``tmp``."""
    return compose(
        "train",
        [
            "dataset=speech_commands",
            f"dataset.root={data}",
            f"dataset.commands={commands}",
            f"model={model}",
            f"trainer.epochs={epochs}",
            f"trainer.batch_size={batch_size}",
            "trainer.early_stopping_patience=null",
            "trainer.verbose=0",
            f"tracking.uri=sqlite:///{tmp}/bench.db",
            f"tracking.artifact_location={tmp}/art",
            *extra,
        ],
    )


def epoch_seconds(client, run_id: str) -> list[float]:
    """The run's logged seconds per epoch, in epoch order."""
    history = client.get_metric_history(run_id, "epoch_seconds")
    return [m.value for m in sorted(history, key=lambda m: m.step)]


def pipeline_throughput(data, cfg, batches: int) -> dict:
    """Batches per second of the training pipeline alone, with and without augmentation."""
    from kws_research.training import pipeline
    from kws_research.training.augment import AugmentSettings, WaveformAugmenter

    out = {}
    for name in ("none", "standard", "strong"):
        settings = AugmentSettings.from_config(compose("train", [f"augment={name}"]).augment)
        augmenter = (
            WaveformAugmenter(settings, data.noise, data.noise_segments("train"), 0) if settings.active else None
        )
        ds = pipeline.training_dataset(data.splits["train"], len(data.classes), cfg.trainer.batch_size, 0, augmenter)
        iterator = iter(ds)
        next(iterator)
        started = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        out[name] = batches / (time.perf_counter() - started)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/speech_commands_subset")
    parser.add_argument("--commands", default=SUBSET_COMMANDS)
    parser.add_argument("--model", default="seed_cnn1d")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    import keras

    from kws_research.data.dataset import prepare
    from kws_research.models import build_model
    from kws_research.train import train
    from kws_research.training import optim

    with tempfile.TemporaryDirectory() as tmp:
        cfg = budget_config(args.data, args.commands, args.model, args.epochs, args.batch_size, tmp, "augment=none")
        data = prepare(cfg.dataset)
        from mlflow.tracking import MlflowClient

        def stage_epochs(run_cfg) -> list[float]:
            return epoch_seconds(MlflowClient(cfg.tracking.uri), train(run_cfg).run_id)

        stage_seconds = stage_epochs(cfg)
        augmented_cfg = cfg.copy()
        augmented_cfg.augment = compose("train", ["augment=standard"]).augment
        augmented_seconds = stage_epochs(augmented_cfg)

        keras.utils.set_random_seed(0)
        model = build_model(cfg.model, len(data.classes))
        steps = int(np.ceil(len(data.splits["train"]) / args.batch_size))
        optimizer, loss, _ = optim.build(cfg.optimizer, steps, args.epochs)
        model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        x = to_float(data.splits["train"].audio)
        y = keras.utils.to_categorical(data.splits["train"].labels, len(data.classes))
        xv = to_float(data.splits["validation"].audio)
        yv = keras.utils.to_categorical(data.splits["validation"].labels, len(data.classes))
        timer = EpochTimer().callback
        model.fit(
            x,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            validation_data=(xv, yv),
            shuffle=True,
            callbacks=[timer],
            verbose=0,
        )
        bare_seconds = timer.seconds
        step_seconds = steady(bare_seconds) / steps
        throughput = pipeline_throughput(data, cfg, batches=3 * steps // 2)

    stage, bare = steady(stage_seconds), steady(bare_seconds)
    rows = [
        {
            "path": "train stage (tf.data from the cache, MLflow logging, callbacks)",
            "s_per_epoch": round(stage, 3),
            "epochs": len(stage_seconds),
        },
        {
            "path": "bare model.fit on in-memory float32 arrays",
            "s_per_epoch": round(bare, 3),
            "epochs": len(bare_seconds),
        },
        {
            "path": "train stage with augment=standard (shift, noise; SpecAugment in front-end models)",
            "s_per_epoch": round(steady(augmented_seconds), 3),
            "epochs": len(augmented_seconds),
        },
    ]
    pipeline_rows = [
        {"augment": name, "batches_per_s": round(rate, 1), "x_model_step_rate": round(rate * step_seconds, 1)}
        for name, rate in throughput.items()
    ]
    notes = (
        f"overhead ratio train/bare = {stage / bare:.3f} (target <= 1.10); model {args.model}, "
        f"{len(data.splits['train'])} training clips, batch {args.batch_size}, median of epochs 2..{args.epochs}.\n\n"
        "Input pipeline alone (batches/s, and how many times faster than the model's training step):\n\n"
        + report.markdown_table(pipeline_rows)
    )
    report.write(
        f"train_overhead_{args.model}",
        {
            "ratio": stage / bare,
            "stage_epoch_seconds": stage_seconds,
            "bare_epoch_seconds": bare_seconds,
            "model": args.model,
            "pipeline_batches_per_s": throughput,
            "model_step_seconds": step_seconds,
        },
        rows,
        "Training overhead: train stage vs bare model.fit",
        notes,
    )


if __name__ == "__main__":
    main()
