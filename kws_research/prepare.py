"""``python -m kws_research.prepare dataset=<name> [overrides]``

Generates or downloads the data when asked, decodes it into the cache, prints
clips per class per split and skipped files, and ends with the summary as one
JSON line (also written as ``summary.json`` next to the cache).
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from kws_research.cli import hydra_stage, print_json_line


def summary_table(summary: dict) -> Table:
    splits = list(summary["counts"])
    table = Table(title=f"{summary['dataset']} ({summary['fingerprint'][:12]})")
    table.add_column("class")
    for split in splits:
        table.add_column(split, justify="right")
    for cls in summary["classes"]:
        table.add_row(cls, *(str(summary["counts"][s].get(cls, 0)) for s in splits))
    table.add_row("total", *(str(summary["totals"][s]) for s in splits), style="bold")
    return table


def run_prepare(cfg: DictConfig) -> dict:
    """Prepare ``cfg.dataset`` and return its summary (the stage's Python API)."""
    # loaded here, not at import: --help and a bad override answer before the data modules load
    from kws_research.data.dataset import prepare

    data = prepare(
        OmegaConf.to_container(cfg.dataset, resolve=True), refresh=bool(cfg.get("refresh")), workers=cfg.get("workers")
    )
    return data.summary


def main_prepare(cfg: DictConfig) -> dict:
    summary = run_prepare(cfg)
    console = Console(stderr=False)
    console.print(summary_table(summary))
    for kind, title in (("skipped", "skipped files"), ("truncated", "truncated files (used, zero-padded)")):
        if summary.get(kind):
            table = Table(title=f"{title} ({len(summary[kind])})")
            table.add_column("file")
            table.add_column("reason")
            for row in summary[kind]:
                table.add_row(row["file"], row["reason"])
            console.print(table)
    for warning in summary["warnings"]:
        console.print(f"[yellow]warning:[/yellow] {warning}")
    console.print(
        f"cache: {summary['cache']} ({'reused' if summary['from_cache'] else 'built'}, {summary['seconds']} s)"
    )
    print_json_line(summary)
    return summary


main = hydra_stage("prepare", main_prepare)

if __name__ == "__main__":
    main()
