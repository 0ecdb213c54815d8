"""The comparison an export ends with: the tutorial's published result, the baseline
trained here on the same data, and the exported model."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from kws_research.models.gate import LABEL  # noqa: E402

TUTORIAL = {
    "name": "tutorial (published)",
    "accuracy": 0.60,
    "params": 4.8e6,
    "note": "CoreMLSpeechDemo raw-waveform CNN: ~60% validation accuracy, ~4.8 M parameters",
}


# Streaming rows: (column key, run metric); measured on the test streams at the detector
# each run calibrated on its validation streams.
STREAM_ROWS = (
    ("stream_hit", "stream_hit_rate"),
    ("stream_fa", "stream_fa_per_hour"),
    ("stream_fa_upper", "stream_fa_per_hour_upper95"),
    ("stream_fa_certified", "val_stream_fa_per_hour_upper95"),
    ("stream_val_hours", "val_stream_negatives_hours"),
    ("stream_val_distinct_hours", "val_stream_distinct_hours"),
    ("stream_miss_1fah", "stream_miss_rate_at_1fah"),
    ("stream_latency", "stream_latency_ms"),
)


def _rate(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _earned(column: dict) -> str:
    """The hours of validation negatives a certificate was earned on, and the distinct hours
    (its recordings each counted once) it rests on."""
    hours, distinct = column["stream_val_hours"], column["stream_val_distinct_hours"]
    if hours is None:
        return "-"
    return f"{hours:.2f} h" + ("" if distinct is None else f" ({distinct:.2f} h)")


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _count(value) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} M" if value >= 1e6 else f"{value / 1e3:.1f} K"


def _size(value) -> str:
    return "-" if value is None else f"{value / 1e6:.2f} MB" if value >= 1e5 else f"{value / 1e3:.0f} KB"


def columns(
    source, baseline, coreml_accuracy: float, size: int, baseline_size: int | None, folded_rule: str | None = None
) -> list[dict]:
    """One dict per compared model: accuracies, per-class accuracy, open-set rates, params, MACs, size."""
    cols = [
        {
            "name": TUTORIAL["name"],
            "test": None,
            "val": TUTORIAL["accuracy"],
            "coreml": None,
            "per_class": {},
            "params": TUTORIAL["params"],
            "macs": None,
            "macs_per_hop": None,
            "size": None,
            "unseen_unknown": None,
            "unseen_command": None,
            **{key: None for key, _ in STREAM_ROWS},
        }
    ]

    def of(run, name, coreml=None, model_size=None, gated=False):
        """Every row of a gated column measures the gated model (``-`` where a run did not)."""
        prefix = "gated_" if gated else ""
        per_class = (run.report or {}).get(f"{prefix}per_class_accuracy", {})
        m = run.metrics
        return {
            "name": name,
            "test": m.get(f"{prefix}test_accuracy"),
            "val": m.get("gated_val_accuracy" if gated else "best_val_accuracy"),
            "coreml": coreml,
            "per_class": per_class,
            "params": m.get("params"),
            "macs": m.get("macs"),
            "macs_per_hop": m.get("macs_per_hop"),
            "size": model_size,
            "unseen_unknown": m.get(f"{prefix}unseen_unknown_recall"),
            "unseen_command": m.get(f"{prefix}false_command_rate"),
            **{key: m.get(metric) for key, metric in STREAM_ROWS},
        }

    if baseline is not None:
        cols.append(
            of(
                baseline,
                f"baseline: {baseline.model_label} (run {baseline.run_id[:8]}, same test split)",
                model_size=baseline_size,
            )
        )
    name = f"this run: {source.model_label}" + (f" + {LABEL[folded_rule]}" if folded_rule else "")
    cols.append(of(source, name, _finite(coreml_accuracy), size, folded_rule is not None))
    return cols


def _finite(value):
    return None if value is None or np.isnan(value) else value


def markdown(cols: list[dict], labels: list[str]) -> str:
    header = "| | " + " | ".join(c["name"] for c in cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    held_out = any(c["unseen_unknown"] is not None or c["unseen_command"] is not None for c in cols)
    rows = [
        ("test accuracy (Keras)", [_pct(c["test"]) for c in cols]),
        ("test accuracy (Core ML)", [_pct(c["coreml"]) for c in cols]),
        ("validation accuracy", [_pct(c["val"]) for c in cols]),
        *[(f"{label} accuracy", [_pct(c["per_class"].get(label)) for c in cols]) for label in labels],
        *(
            [
                ("unseen words -> unknown (held out)", [_pct(c["unseen_unknown"]) for c in cols]),
                ("unseen words -> a command (held out)", [_pct(c["unseen_command"]) for c in cols]),
            ]
            if held_out
            else []
        ),
        *(
            [
                ("stream: commands detected (mixed, test)", [_pct(c["stream_hit"]) for c in cols]),
                ("stream: false accepts per hour (no commands)", [_rate(c["stream_fa"]) for c in cols]),
                ("stream: its 95% upper bound (test)", [_rate(c["stream_fa_upper"]) for c in cols]),
                ("stream: FA/h certified on validation (95% bound)", [_rate(c["stream_fa_certified"]) for c in cols]),
                ("stream: ... on hours of negatives (distinct)", [_earned(c) for c in cols]),
                ("stream: miss rate at 1 false accept per hour", [_pct(c["stream_miss_1fah"]) for c in cols]),
                ("stream: latency after the word ends", [_ms(c["stream_latency"]) for c in cols]),
            ]
            if any(c["stream_hit"] is not None for c in cols)
            else []
        ),
        ("parameters", [_count(c["params"]) for c in cols]),
        ("MACs per 1 s clip", [_count(c["macs"]) for c in cols]),
        ("MACs per hop (streaming model)", [_count(c["macs_per_hop"]) for c in cols]),
        ("Core ML model size", [_size(c["size"]) for c in cols]),
    ]
    body = "".join(f"| {name} | " + " | ".join(values) + " |\n" for name, values in rows)
    return header + body + f"\nTutorial: {TUTORIAL['note']} (its split and classes differ from this data set).\n"


def plot(cols: list[dict], labels: list[str], path: Path) -> Path:
    measured = [c for c in cols if c["per_class"]]
    fig, ax = plt.subplots(figsize=(max(7, 0.9 * len(labels) + 3), 4.5))
    width = 0.8 / max(1, len(measured))
    x = np.arange(len(labels) + 1)
    for i, c in enumerate(measured):
        values = [c["per_class"].get(label, 0) for label in labels] + [c["coreml"] or c["test"] or 0]
        ax.bar(x + (i - (len(measured) - 1) / 2) * width, values, width, label=c["name"])
    ax.axhline(TUTORIAL["accuracy"], color="grey", linestyle="--", label="tutorial (published, 60%)")
    ax.set_xticks(x, labels + ["overall"], rotation=30)
    ax.set(ylim=(0, 1.05), ylabel="test accuracy", title="per-class test accuracy")
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
