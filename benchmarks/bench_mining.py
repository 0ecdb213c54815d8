"""Hard-negative mining rounds: train, mine the calibrated detector's false accepts on a
negatives-only stream of the training split (people talking under it), train again with
them as an unknown source; FA/h and hit rate on the test streams per round.

    make bench-mining [DATA=../shared/data/speech_commands_subset] [BENCH_ARGS='--rounds 2 --threshold calibrated']
"""

from __future__ import annotations

import argparse
from pathlib import Path

from benchmarks import report, reuse
from benchmarks.bench_accuracy import SUBSET_COMMANDS, data_overrides, run
from benchmarks.bench_stream import fa_at_miss, streaming_report

METRICS = (
    "command_accuracy",
    "unseen_unknown_recall",
    "stream_hit_rate",
    "stream_fa_per_hour",
    "stream_miss_rate_at_1fah",
    "val_stream_fa_per_hour",
    "detector_threshold",
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data/speech_commands_subset")
    parser.add_argument("--commands", default=SUBSET_COMMANDS)
    parser.add_argument("--heldout", default="bed")
    parser.add_argument("--rounds", type=int, default=2, help="mining rounds after the first run")
    parser.add_argument("--share", type=float, default=0.5, help="dataset.unknown_sources.hard_negatives")
    parser.add_argument("--minutes", type=float, default=60.0, help="of training-split stream mined per round")
    parser.add_argument(
        "--threshold", default="0.5", help="mine near misses above this score, or 'calibrated': the run's threshold"
    )
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--stream", default="long")
    parser.add_argument("--tracking-uri", default=f"sqlite:///{report.RESULTS}/bench.db")
    reuse.add_argument(parser)
    args = parser.parse_args()
    report.RESULTS.mkdir(parents=True, exist_ok=True)
    from mlflow.tracking import MlflowClient
    from omegaconf import OmegaConf

    from kws_research.config import compose
    from kws_research.streaming.runs import mine_run

    tracking = [
        f"tracking.uri={args.tracking_uri}",
        f"tracking.artifact_location={report.RESULTS}/mlartifacts",
    ]
    stream = [f"stream={args.stream}", "stream.background=speech"]
    common = data_overrides(args.data, args.commands) + [
        "model=tc_resnet",
        "optimizer=adamw",
        "augment=standard",
        f"trainer.epochs={args.epochs}",
        "trainer.early_stopping_patience=null",
        "trainer.verbose=2",
        f"dataset.heldout_unknown_words=[{args.heldout}]",
        "dataset.unknown_percentage=20",
        "stream_eval=true",
        *stream,
        *tracking,
        "tracking.experiment=bench-mining",
    ]
    threshold = [] if args.threshold == "calibrated" else [f"threshold={float(args.threshold)}"]
    client = MlflowClient(args.tracking_uri)
    rows, mined_runs, first_curve = [], [], None
    for round_ in range(args.rounds + 1):
        extra = (
            [
                f"dataset.unknown_sources.hard_negatives={args.share}",
                "dataset.hard_negatives=[" + ",".join(f"'{r}'" for r in mined_runs) + "]",
            ]
            if mined_runs
            else []
        )
        metrics = run(common + extra, args.reuse)
        curve = streaming_report(client, metrics["run_id"])["det_curve"]
        first_curve = first_curve or curve
        mine_cfg = compose("mine", [*stream, *tracking, f"minutes={args.minutes}", *threshold])
        mined = mine_run(client, metrics["run_id"], OmegaConf.to_container(mine_cfg, resolve=True))
        miss = 1.0 - metrics["stream_hit_rate"]
        rows.append(
            {
                "round": round_,
                "trained_on_hard_negatives_of": ", ".join(r[:8] for r in mined_runs) or "-",
                **{k: metrics.get(k) for k in METRICS},
                "fa_per_hour_at_own_hit": fa_at_miss(curve, miss),
                "round0_fa_per_hour_at_same_hit": fa_at_miss(first_curve, miss),
                "mined_windows": mined["mined_windows"],
                "mining_fa_per_hour": mined["mining_fa_per_hour"],
                "run_id": metrics["run_id"],
            }
        )
        print(rows[-1], flush=True)
        mined_runs.append(metrics["run_id"])  # every round's windows, as a mining loop accumulates them
    notes = (
        f"Data: {Path(args.data)} ({args.commands}), {args.heldout} held out; tc_resnet, {args.epochs} epochs, "
        f"20% unknown (words, then + hard negatives at share {args.share}); stream={args.stream} with "
        "synthetic speech of unseen speakers under the negatives-only streams. Each round mines "
        f"{args.minutes:g} min of a negatives-only stream of the training split (speech of training speakers "
        "under it) at the run's calibrated detector"
        + (f" with threshold {args.threshold}" if threshold else "")
        + "; the next round trains on the windows of every round before it. stream_*: test streams at the "
        "round's calibrated detector; fa_per_hour_at_own_hit / round0_fa_per_hour_at_same_hit: the DET "
        "curves of this round and of round 0 at this round's hit rate."
    )
    report.write("mining", {"rounds": rows}, rows, "Hard-negative mining rounds", notes)


if __name__ == "__main__":
    main()
