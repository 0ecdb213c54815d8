"""Writing a benchmark's numbers as JSON and as a markdown table, and printing them."""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def machine() -> dict:
    import os

    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"),
    }


def markdown_table(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(_fmt(row.get(c, "")) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    return str(value)


def write(
    name: str, payload: dict, rows: list[dict], title: str, notes: str = "", columns: list[str] | None = None
) -> Path:
    """Save ``results/<name>.json`` and ``results/<name>.md``; print the table."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine(), **payload, "rows": rows}
    (RESULTS / f"{name}.json").write_text(json.dumps(payload, indent=1, default=str))
    table = markdown_table(rows, columns)
    text = f"# {title}\n\n{table}\n"
    if notes:
        text += f"\n{notes}\n"
    (RESULTS / f"{name}.md").write_text(text)
    print(text)
    print(f"written: {RESULTS / name}.json, .md")
    return RESULTS / f"{name}.md"
