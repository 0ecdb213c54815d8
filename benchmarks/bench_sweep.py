"""Sweep efficiency and memory: the `quick` sweep as shipped against the `quick` sweep
before it was made quick (`make sweep`'s study, baseline and export, each in its own
store: wall time by stage, trial-epochs, best validation accuracy, export verified), and
process memory over many trials.

    make bench-sweep [BENCH_ARGS='--memory-trials 30']
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import psutil

from benchmarks import report

# `sweeps/quick.yaml` before it was made quick (8 trials of TC-ResNet, BC-ResNet and DS-CNN
# under median pruning, 8 epochs, the baseline at its full budget): 10-25 min on 2 cores.
QUICK_BEFORE = [
    "n_trials=8",
    "sampler.n_startup_trials=4",
    "pruner.name=median",
    "pruner.n_startup_trials=2",
    "pruner.n_warmup_steps=2",
    "overrides=['dataset=synthetic','trainer=quick','optimizer=adamw','augment=standard']",
    "params.model=choice(tc_resnet, bc_resnet, ds_cnn)",
    "params.optimizer.learning_rate=tag(log, interval(1e-3, 1e-2))",
    "params.model.dropout=interval(0.0, 0.3)",
    "constraints.max_params=100000",
    "export.baseline_overrides=[]",
]


def sweep(folder: Path, name: str, extra: list[str], export: bool = False) -> tuple[dict, float]:
    from kws_research.sweeping.coordinator import run_sweep
    from kws_research.sweeping.definition import load

    args = [
        "sweep=quick",
        f"storage=sqlite:///{folder}/optuna.db",
        f"study_name={name}",
        f"export.enabled={str(export).lower()}",
        f"tracking.uri=sqlite:///{folder}/mlruns.db",
        f"tracking.artifact_location={folder}/mlartifacts",
        "trainer.verbose=0",
        *extra,
    ]
    started = time.perf_counter()
    result = run_sweep(load(args))
    return result, time.perf_counter() - started


def trial_epochs(folder: Path, name: str) -> int:
    import optuna

    study = optuna.load_study(study_name=name, storage=f"sqlite:///{folder}/optuna.db")
    return sum(len(t.intermediate_values) for t in study.get_trials(deepcopy=False))


def memory_over_trials(folder: Path, trials: int) -> dict:
    """RSS sampled every 0.5 s while ``trials`` one-epoch trials run in this process."""
    import optuna

    samples: list[tuple[float, int]] = []
    stop = threading.Event()
    process = psutil.Process()

    def sample():
        while not stop.is_set():
            samples.append((time.time(), process.memory_info().rss))
            time.sleep(0.5)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        sweep(
            folder,
            "memory",
            [
                f"n_trials={trials}",
                "sampler.name=random",
                "pruner.name=none",
                "constraints.max_params=null",
                "trainer.epochs=1",
                "dataset.generator.speakers=8",
                "dataset.generator.repetitions=1",
            ],
        )
    finally:
        stop.set()
        thread.join()
    study = optuna.load_study(study_name="memory", storage=f"sqlite:///{folder}/optuna.db")
    ends = sorted(t.datetime_complete.timestamp() for t in study.get_trials(deepcopy=False) if t.datetime_complete)
    rss_at = [next((r for t, r in reversed(samples) if t <= end), 0) / 2**20 for end in ends]
    return {
        "trials": len(ends),
        "rss_mb_after_trial": [round(v, 1) for v in rss_at],
        "peak_rss_mb": round(max((r for _, r in samples), default=0) / 2**20, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--memory-trials", type=int, default=30)
    parser.add_argument("--skip-quick", action="store_true")
    args = parser.parse_args()
    rows = []
    payload = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        if not args.skip_quick:
            from kws_research.config import compose
            from kws_research.prepare import run_prepare

            run_prepare(compose("prepare", []))  # the data set generated once, outside the timings
            for label, name, extra in (
                ("quick before (8 trials: tc_resnet, bc_resnet, ds_cnn)", "before", QUICK_BEFORE),
                ("quick as shipped", "quick", []),
            ):
                (folder / name).mkdir()
                result, seconds = sweep(folder / name, name, extra, export=True)
                final = result.get("final_stage") or {}
                rows.append(
                    {
                        "sweep": label,
                        "trials": result["n_trials"],
                        "pruned": result["n_pruned"],
                        "trial_epochs": trial_epochs(folder / name, name),
                        "seconds": round(seconds),
                        **{f"{stage}_s": round(v) for stage, v in result["timings"].items()},
                        "best_val_accuracy": round(result["best_value"], 4),
                        "export_verified": bool(final.get("coreml_verified")),
                    }
                )
                print(rows[-1], flush=True)
            rows[-1]["share_of_before"] = round(rows[-1]["seconds"] / rows[0]["seconds"], 3)
            rows[-1]["best_val_change_pts"] = round(
                100 * (rows[-1]["best_val_accuracy"] - rows[0]["best_val_accuracy"]), 2
            )
        memory = memory_over_trials(folder, args.memory_trials)
    rss = memory["rss_mb_after_trial"]
    payload["memory"] = memory
    tail = rss[len(rss) // 3 :]
    growth = (tail[-1] - tail[0]) / max(1, len(tail) - 1) if len(tail) > 1 else 0.0
    notes = (
        f"Memory over {memory['trials']} one-epoch trials in one process: RSS after trial 1 "
        f"{rss[0] if rss else 0} MB, after trial {len(rss)} {rss[-1] if rss else 0} MB, median "
        f"{statistics.median(rss) if rss else 0:.0f} MB, peak {memory['peak_rss_mb']} MB; "
        f"growth over the last two thirds {growth:.2f} MB per trial."
    )
    if rows:
        report.write("sweep", payload, rows, "Sweep: the quick sweep before and after, and memory", notes)
    else:
        print(notes)
        report.write("sweep", payload, [{"memory": notes}], "Sweep: memory", "")


if __name__ == "__main__":
    main()
