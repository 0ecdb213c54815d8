"""The streaming figures of a run: the DET curve and the reliability diagram."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def det_png(curves: dict[str, list[dict]], chosen: dict | None, path: Path, title: str) -> Path:
    """Miss rate against false accepts per hour as the threshold moves, one line per model."""
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    floor = 0.05
    for name, points in curves.items():
        fa = np.array([max(p["fa_per_hour"], floor) for p in points])
        ax.plot(fa, [p["miss_rate"] for p in points], marker=".", label=name)
    if chosen is not None:
        ax.scatter(
            [max(chosen["fa_per_hour"], floor)],
            [chosen["miss_rate"]],
            color="red",
            zorder=3,
            label=f"calibrated (threshold {chosen['threshold']:.2f})",
        )
    for x in (0.1, 1.0):
        ax.axvline(x, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set(
        xlabel=f"false accepts per hour (negatives-only stream; {floor} = none)",
        ylabel="miss rate (mixed stream)",
        ylim=(0, 1.02),
        title=title,
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def reliability_png(before: dict, after: dict, temperature: float, path: Path, title: str) -> Path:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1)
    for name, r in (
        (f"before (ECE {before['ece']:.3f})", before),
        (f"T={temperature:.2f} (ECE {after['ece']:.3f})", after),
    ):
        used = np.array(r["count"]) > 0
        ax.plot(np.array(r["confidence"])[used], np.array(r["accuracy"])[used], marker="o", label=name)
    ax.set(xlabel="confidence (top probability)", ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
