"""What an export will write and where, checked before any work: the options, the
files it plans and the output folder (which it never writes over a user's file in)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from kws_research import ownership
from kws_research.coreml.formats import FORMATS, INTERFACES, PRECISIONS, SUFFIX
from kws_research.errors import ConfigError, KwsError
from kws_research.exporting import registry
from kws_research.paths import existing_folder, write_probe
from kws_research.schema import check_declared
from kws_research.streaming.settings import StreamSettings
from kws_research.tracking import store
from kws_research.tracking.lookup import existing_run_id, get_run

REPORTS = ("verification.json", "comparison.md", "comparison.png")


def check_options(cfg: Mapping) -> None:
    """The export options that only the code knows how to read, then every declared range."""
    if cfg["format"] not in (*FORMATS, "both"):
        raise ConfigError("format", f"{cfg['format']!r} is not mlprogram, neuralnetwork or both")
    if cfg["precision"] not in PRECISIONS:
        raise ConfigError("precision", f"{cfg['precision']!r} is not fp16 or fp32")
    if cfg.get("quantize") not in (None, "int8"):
        raise ConfigError("quantize", f"{cfg['quantize']!r} is not int8 or null")
    if cfg["interface"] not in INTERFACES:
        raise ConfigError("interface", f"{cfg['interface']!r} is not one of {INTERFACES}")
    for key in ("gate", "streaming"):
        if cfg[key] not in ("auto", "off"):
            raise ConfigError(key, f"{cfg[key]!r} is not auto or off")
    if cfg["interface"] == "seed" and cfg["format"] == "mlprogram":
        raise ConfigError(
            "interface", "seed is the tutorial's neuralnetwork interface; use format=neuralnetwork or both"
        )
    if cfg["streaming"] == "auto":
        StreamSettings.from_config(cfg.get("stream"))
    registry.check_options(dict(cfg["registry"]))
    check_declared("export", cfg)  # the kinds and ranges again: a Python caller may have changed them


def evaluation_of(overrides: list[str], given: str) -> str:
    """``evaluation`` as the command line means it: ``here`` when it sets any ``stream``
    option (``stream=long``, ``stream.seed=1``) without saying ``evaluation=``."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "evaluation" in keys:
        return given
    return "here" if any(k == "stream" or k.startswith("stream.") for k in keys) else given


def writable_folder(path: str | None) -> Path | None:
    """``output_dir``, checked to take files before any work; not created yet (the export
    makes it when it has something to write, so a refused export leaves no empty folder)."""
    if not path:
        return None
    folder = Path(path).expanduser()
    try:
        write_probe(existing_folder(folder))
    except OSError as exc:
        raise KwsError(f"output_dir: cannot write to {folder} ({exc.strerror or exc}); choose another folder") from exc
    return folder


def plan(cfg: Mapping) -> list[tuple[str, str]]:
    """(format, precision label) of every file to export."""
    formats = list(FORMATS) if cfg["format"] == "both" else [cfg["format"]]
    if cfg["interface"] == "seed":
        formats = ["neuralnetwork"]
    return [
        (fmt, "int8" if cfg.get("quantize") else (cfg["precision"] if fmt == "mlprogram" else "fp32"))
        for fmt in formats
    ]


OUTPUT_HINT = "move it away or choose another output_dir"


def model_file_name(source, cfg: Mapping, fmt: str) -> str:
    suffix = "-seed" if cfg["interface"] == "seed" else ""
    return f"kws-{source.model_label}{suffix}{SUFFIX[fmt]}"


def streaming_planned(cfg: Mapping) -> bool:
    """Whether export also writes the streaming model (the seed interface is the tutorial app's only)."""
    return bool(cfg["streaming_model"]) and cfg["interface"] == "standard"


def streaming_file_name(source, fmt: str) -> str:
    return f"kws-{source.model_label}-streaming{SUFFIX[fmt]}"


def check_outputs(folder: Path, source, cfg: Mapping) -> None:
    """Refuse before any conversion when ``output_dir`` holds a file of the same name that
    this harness did not write (an earlier export's files are replaced)."""
    names = [model_file_name(source, cfg, fmt) for fmt, _ in plan(cfg)] + list(REPORTS)
    if streaming_planned(cfg):
        names += [streaming_file_name(source, fmt) for fmt, _ in plan(cfg)]
    for name in names:
        ownership.check_replaceable(folder / name, "output_dir", OUTPUT_HINT)


@dataclass(frozen=True)
class Checked:
    """What an export checked before any work: its output folder, its store and the run."""

    output_dir: Path | None
    client: object
    run_id: str


def preflight(cfg: Mapping) -> Checked:
    """The options, the output folder, the run and the baseline, each one line when wrong,
    all before TensorFlow loads (the stage imports the converter only after this)."""
    check_options(cfg)
    output_dir = writable_folder(cfg["output_dir"])
    client = store.client_for(cfg["tracking"])
    run_id = existing_run_id(client, cfg["run_id"], cfg["sweep"])
    if str(cfg["baseline"]) not in ("auto", "skip"):
        get_run(client, str(cfg["baseline"]), "baseline")
    return Checked(output_dir, client, run_id)
