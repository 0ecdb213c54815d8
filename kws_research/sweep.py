"""``python -m kws_research.sweep sweep=<name> [field=value ...] [run overrides ...]``

Runs the Optuna study defined in ``sweeps/<name>.yaml`` over training runs,
each a nested MLflow run under one parent run per invocation; rerunning the
same command resumes the study. Prints the best trial, its MLflow run id and
the UI command; the last stdout line is the summary as one JSON object.
"""

from __future__ import annotations

import logging.config
import os
import sys
import warnings

import yaml

from kws_research.cli import fail, print_json_line
from kws_research.errors import KwsError
from kws_research.paths import CONF_DIR
from kws_research.processes import install_interrupt_handlers, quiet_native_logs

USAGE = __doc__


def configure_logging() -> None:
    """The same stderr logging as the Hydra stages (conf/hydra/job_logging/kws.yaml)."""
    logging.config.dictConfig(yaml.safe_load((CONF_DIR / "hydra" / "job_logging" / "kws.yaml").read_text()))


def time_table(timings: dict):
    """Where the time of this command went: the install (``make`` passes its seconds in
    ``KWS_INSTALL_SECONDS`` when it installed just now), the data, the study, the baseline, the export."""
    from rich.table import Table

    rows = dict(timings)
    if os.environ.get("KWS_INSTALL_SECONDS", "").isdigit():
        rows = {"install": float(os.environ["KWS_INSTALL_SECONDS"]), **rows}
    table = Table(title="where the time went", show_header=False)
    table.add_column("", style="bold")
    table.add_column("", justify="right")
    for stage, seconds in rows.items():
        table.add_row(stage, f"{seconds:.0f} s")
    table.add_row("total", f"{sum(rows.values()):.0f} s")
    return table


def print_result(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from kws_research.exporting.registry import registered_line  # after the sweep: TensorFlow is loaded by then

    console = Console()
    table = Table(
        title=f"sweep {result.get('study_name')}: {result.get('n_complete', 0)} complete, "
        f"{result.get('n_pruned', 0)} pruned, {result.get('n_failed', 0)} failed",
        show_header=False,
    )
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("best trial", str(result.get("best_trial")))
    for metric, value in (result.get("best_values") or {}).items():
        table.add_row(metric, f"{value:.6g}")
    for key, value in (result.get("best_params") or {}).items():
        table.add_row(key, str(value))
    table.add_row("best run id", str(result.get("best_run_id")))
    table.add_row("parent run id", str(result.get("parent_run_id")))
    console.print(table)
    final = result.get("final_stage")
    if final:
        print(final["comparison"], flush=True)
        console.print(
            f"Core ML verified: {final['coreml_verified']} (max |diff| {final['coreml_max_abs_diff']:.2e}, "
            f"agreement {100 * final['coreml_agreement']:.1f}%); artifacts: {final['artifacts'][0]} ..."
        )
        if registered := registered_line(final):
            console.print(registered)
    console.print(time_table(result.get("timings") or {}))
    console.print(f"browse: make ui  (or: mlflow ui --backend-store-uri {result.get('tracking_uri')} --workers 1)")


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in argv):
        print(USAGE)
        return {}
    quiet_native_logs()
    configure_logging()
    warnings.filterwarnings("ignore", message=".*experimental feature.*")
    install_interrupt_handlers()
    # loaded here, not at import: --help and a bad override answer before TensorFlow loads
    from kws_research.sweeping.coordinator import run_sweep
    from kws_research.sweeping.definition import load

    try:
        result = run_sweep(load(argv))
    except KwsError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; rerun the same command to resume the study", code=130)
    print_result(result)
    if result.get("final_stage"):
        result["final_stage"] = {k: v for k, v in result["final_stage"].items() if k not in ("comparison", "checks")}
    print_json_line(result)
    return result


if __name__ == "__main__":
    main()
