"""Data throughput: decoding the shared subset from WAV vs reading the cache, and
synthetic generation speed.

    make bench-data [SUBSET=../shared/data/speech_commands_subset]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import report
from kws_research.data.dataset import prepare
from kws_research.data.synthetic import GeneratorSettings, generate

SUBSET_COMMANDS = ["yes", "no", "up", "down", "left", "right", "stop"]


def read_everything(data) -> int:
    """Touch every sample so the cache timing includes the actual disk reads."""
    total = 0
    for split in data.splits.values():
        for start in range(0, len(split), 1024):
            total += int(np.asarray(split.audio[start : start + 1024], dtype=np.int64).sum() != 0)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--subset", default="../shared/data/speech_commands_subset")
    parser.add_argument("--speakers", type=int, default=70)
    parser.add_argument("--repetitions", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = {"name": "subset", "root": args.subset, "commands": SUBSET_COMMANDS, "cache_dir": tmp}
        if Path(args.subset).is_dir():
            started = time.perf_counter()
            data = prepare(cfg, refresh=True)
            wav_seconds = time.perf_counter() - started
            clips = sum(len(s) for s in data.splits.values())
            started = time.perf_counter()
            cached = prepare(cfg)
            read_everything(cached)
            cache_seconds = time.perf_counter() - started
            rows.append(
                {
                    "step": "decode subset from WAV (prepare, cold)",
                    "clips": clips,
                    "seconds": round(wav_seconds, 3),
                    "clips_per_s": round(clips / wav_seconds, 1),
                }
            )
            rows.append(
                {
                    "step": "read subset from cache (prepare, warm, every sample read)",
                    "clips": clips,
                    "seconds": round(cache_seconds, 3),
                    "clips_per_s": round(clips / cache_seconds, 1),
                }
            )
        else:
            print(f"skipping the subset rows: {args.subset} is not a folder")
        settings = GeneratorSettings(speakers=args.speakers, repetitions=args.repetitions)
        started = time.perf_counter()
        description = generate(Path(tmp) / "synthetic", settings)
        seconds = time.perf_counter() - started
        rows.append(
            {
                "step": f"generate synthetic ({args.speakers} speakers x {args.repetitions} reps x 35 words)",
                "clips": description["clips"],
                "seconds": round(seconds, 3),
                "clips_per_s": round(description["clips"] / seconds, 1),
            }
        )
    report.write("data", {"subset": args.subset}, rows, "Data throughput")


if __name__ == "__main__":
    main()
