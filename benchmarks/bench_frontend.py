"""The front end's two implementations: epoch time and validation accuracy of the same
model, seed and data with the FFT (what training uses) and with the dense DFT kernels
(the form Core ML converts), in one run; plus a forward pass of a batch.

    make bench-train [SUBSET=...] [BENCH_ARGS='--epochs 4']   (also runs bench_train)
    python -m benchmarks.bench_frontend --models tc_resnet bc_resnet --epochs 4
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import tempfile
import time

import numpy as np

from benchmarks import report
from benchmarks.bench_train import SUBSET_COMMANDS, budget_config, epoch_seconds, steady
from kws_research.contract import to_float


def forward_ms(model, audio: np.ndarray, repeats: int = 5) -> float:
    """Median milliseconds of one compiled forward pass over ``audio``."""
    import tensorflow as tf

    step = tf.function(lambda x: model(x, training=False))
    step(audio)
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        np.asarray(step(audio))
        times.append(1000 * (time.perf_counter() - started))
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/speech_commands_subset")
    parser.add_argument("--commands", default=SUBSET_COMMANDS)
    parser.add_argument("--models", nargs="+", default=["tc_resnet", "bc_resnet"])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()

    from mlflow.tracking import MlflowClient

    from kws_research.data.dataset import prepare
    from kws_research.models import load_model
    from kws_research.models.frontend import dense_dft
    from kws_research.train import train

    forms = {"fft": contextlib.nullcontext, "dense DFT": dense_dft}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            cfg = budget_config(args.data, args.commands, name, args.epochs, args.batch_size, tmp)
            batch = to_float(np.asarray(prepare(cfg.dataset).splits["validation"].audio[: args.batch_size]))
            client = MlflowClient(cfg.tracking.uri)
            for form, context in forms.items():
                with context():
                    result = train(cfg)
                    model = load_model(client.download_artifacts(result.run_id, "model/model.keras", tmp))
                    forward = forward_ms(model, batch)
                rows.append(
                    {
                        "model": name,
                        "front end": form,
                        "s_per_epoch": round(steady(epoch_seconds(client, result.run_id)), 2),
                        "forward_ms_batch": round(forward, 1),
                        "best_val_accuracy": round(result.metrics["best_val_accuracy"], 4),
                    }
                )
                print(rows[-1], flush=True)
    by = {(r["model"], r["front end"]): r for r in rows}

    def summary(m: str) -> str:
        fft, dense = by[(m, "fft")], by[(m, "dense DFT")]
        gain = 100 * (fft["best_val_accuracy"] - dense["best_val_accuracy"])
        return (
            f"{m}: FFT {dense['s_per_epoch'] / fft['s_per_epoch']:.2f}x faster per epoch, "
            f"{dense['forward_ms_batch'] / fft['forward_ms_batch']:.2f}x per forward pass, "
            f"validation accuracy {gain:+.2f} points"
        )

    notes = "; ".join(summary(m) for m in args.models)
    notes += f" (median of epochs 2..{args.epochs}, batch {args.batch_size}, same seed and data)."
    report.write("frontend_fft_vs_dft", {}, rows, "Front end: FFT vs dense DFT", notes)
    print(notes)


if __name__ == "__main__":
    main()
