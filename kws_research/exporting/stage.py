"""Export one run: convert, verify against Keras, compare with the baseline, log to MLflow."""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from kws_research import ownership, schema
from kws_research.config import compose
from kws_research.contract import NORMALISATION, SAMPLE_RATE, to_float
from kws_research.coreml.convert import (
    FORMATS,
    INTERFACES,
    PRECISIONS,
    SUFFIX,
    convert,
    convert_seed_interface,
    quantize_weights,
    set_metadata,
)
from kws_research.coreml.verify import verify
from kws_research.errors import ConfigError, KwsError
from kws_research.exporting import compare, registry
from kws_research.exporting.baseline import baseline_for
from kws_research.exporting.streaming import ensure_evaluated, shipped_detector, stream_reference, verify_stream
from kws_research.models import load_model
from kws_research.models.gate import gated
from kws_research.models.temperature import tempered_model
from kws_research.schema import check_value
from kws_research.streaming.settings import StreamSettings
from kws_research.tracking import store
from kws_research.tracking.runs import log_artifacts, log_metrics
from kws_research.tracking.source import fetch, open_set_rule, resolve_run_id, source_data

log = logging.getLogger(__name__)


def check_options(cfg: Mapping) -> None:
    if cfg["format"] not in (*FORMATS, "both"):
        raise ConfigError("format", f"{cfg['format']!r} is not mlprogram, neuralnetwork or both")
    if cfg["precision"] not in PRECISIONS:
        raise ConfigError("precision", f"{cfg['precision']!r} is not fp16 or fp32")
    if cfg.get("quantize") not in (None, "int8"):
        raise ConfigError("quantize", f"{cfg['quantize']!r} is not int8 or null")
    if cfg["interface"] not in INTERFACES:
        raise ConfigError("interface", f"{cfg['interface']!r} is not one of {INTERFACES}")
    for key in ("gate", "streaming"):
        if cfg.get(key, "auto") not in ("auto", "off"):
            raise ConfigError(key, f"{cfg[key]!r} is not auto or off")
    if cfg["interface"] == "seed" and cfg["format"] == "mlprogram":
        raise ConfigError(
            "interface", "seed is the tutorial's neuralnetwork interface; use format=neuralnetwork or both"
        )
    if cfg.get("streaming", "auto") == "auto":
        StreamSettings.from_config(cfg.get("stream"))
    registry.check_options(dict(cfg.get("registry") or {}))
    for precision, value in dict(cfg.get("tolerance") or {}).items():  # also from Python, not only the CLI
        check_value(f"tolerance.{precision}", value, schema.FRACTION)


def writable_folder(path: str | None) -> Path | None:
    if not path:
        return None
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".kws-write-test-"):
            pass  # a new file of its own: nothing of the user's is touched
    except OSError as exc:
        raise KwsError(f"output_dir: cannot write to {folder} ({exc.strerror or exc}); choose another folder") from exc
    return folder


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def plan(cfg: Mapping) -> list[tuple[str, str]]:
    """(format, precision label) of every file to export."""
    formats = list(FORMATS) if cfg["format"] == "both" else [cfg["format"]]
    if cfg["interface"] == "seed":
        formats = ["neuralnetwork"]
    return [
        (fmt, "int8" if cfg.get("quantize") else (cfg["precision"] if fmt == "mlprogram" else "fp32"))
        for fmt in formats
    ]


def _test_clips(data, source, limit: int | None) -> tuple[np.ndarray, np.ndarray, str]:
    """The test clips (float audio, labels) to verify on, and the test split's fingerprint."""
    test = data.splits["test"]
    n = len(test) if not limit else min(int(limit), len(test))
    if n == 0:
        raise KwsError(f"run {source.run_id}: its test split is empty, nothing to verify on")
    return to_float(np.asarray(test.audio[:n])), np.asarray(test.labels[:n], dtype=np.int64), data.test_fingerprint


def _metadata(source, cfg) -> dict:
    m = source.metrics
    rule = open_set_rule(source, cfg)
    return {
        "labels": json.dumps(source.labels),
        "sample_rate": SAMPLE_RATE,
        "normalisation": NORMALISATION,
        "source_run_id": source.run_id,
        "dataset": source.tags.get("dataset"),
        "dataset_fingerprint": source.fingerprint,
        "model": source.model_label,
        "validation_accuracy": m.get("best_val_accuracy"),
        "test_accuracy": m.get("test_accuracy"),
        "params": int(m["params"]) if "params" in m else None,
        "macs": int(m["macs"]) if "macs" in m else None,
        "interface": cfg["interface"],
        "confidence_gate_threshold": rule[1] if rule and rule[0] == "threshold" else None,
        "unknown_prior_weight": rule[1] if rule and rule[0] == "prior" else None,
        **shipped_detector(source, cfg),
    }


def _convert_one(model, source, cfg, fmt: str, folder: Path) -> Path:
    if cfg["interface"] == "seed":
        mlmodel = convert_seed_interface(model, source.labels)
        if cfg.get("quantize"):
            mlmodel = quantize_weights(mlmodel, cfg["quantize"])
    else:
        mlmodel = convert(model, source.labels, fmt=fmt, precision=cfg["precision"], quantize=cfg.get("quantize"))
    m = source.metrics
    accuracy = f", {100 * m['test_accuracy']:.1f}% test accuracy" if "test_accuracy" in m else ""
    meta = cfg.get("metadata") or {}
    set_metadata(
        mlmodel,
        source.labels,
        cfg["interface"],
        f"Keyword spotting over {len(source.labels)} classes from 1 s of 16 kHz audio "
        f"({source.model_label}{accuracy}; kws-research run {source.run_id})",
        meta.get("author"),
        meta.get("license"),
        meta.get("version"),
        _metadata(source, cfg),
    )
    path = folder / model_file_name(source, cfg, fmt)
    ownership.remove(path, "output_dir", OUTPUT_HINT)
    mlmodel.save(str(path))
    return ownership.record(path)


OUTPUT_HINT = "move it away or choose another output_dir"


def model_file_name(source, cfg: Mapping, fmt: str) -> str:
    suffix = "-seed" if cfg["interface"] == "seed" else ""
    return f"kws-{source.model_label}{suffix}{SUFFIX[fmt]}"


def check_outputs(folder: Path, source, cfg: Mapping) -> None:
    """Refuse before any conversion when ``output_dir`` holds a file of the same name that
    this harness did not write (an earlier export's files are replaced)."""
    for name in [model_file_name(source, cfg, fmt) for fmt, _ in plan(cfg)] + list(REPORTS):
        ownership.check_replaceable(folder / name, "output_dir", OUTPUT_HINT)


def _baseline_size(baseline, precision: str, folder: Path) -> int | None:
    """The baseline as an mlprogram of the same precision, for a like-for-like size."""
    try:
        path = folder / "baseline.mlpackage"
        convert(
            load_model(baseline.model_path),
            baseline.labels,
            "mlprogram",
            precision if precision in PRECISIONS else "fp16",
        ).save(str(path))
        return size_of(path)
    except Exception as exc:  # the comparison still stands without the size
        log.warning("could not convert the baseline for its size: %s", exc)
        return None


REPORTS = ("verification.json", "comparison.md", "comparison.png")


def _metrics(checks: list, baseline) -> dict:
    """What export logs on the run: the primary (first) format's accuracy and size, the
    worst difference and agreement over all formats, and the gain over the baseline."""
    primary = checks[0]
    metrics = {
        "coreml_test_accuracy": primary.coreml_accuracy,
        "coreml_max_abs_diff": max(c.max_abs_diff for c in checks),
        "coreml_agreement": min(c.agreement for c in checks),
        "coreml_size_bytes": size_of(Path(primary.path)),
    }
    for check in checks:
        metrics[f"coreml_{check.format}_max_abs_diff"] = check.max_abs_diff
        metrics[f"coreml_{check.format}_size_bytes"] = size_of(Path(check.path))
    if baseline is not None:
        metrics["baseline_test_accuracy"] = baseline.metrics["test_accuracy"]
        metrics["accuracy_gain_vs_baseline"] = primary.coreml_accuracy - baseline.metrics["test_accuracy"]
    return metrics


def _log_on_run(
    client, run_id: str, folder: Path, files: list[Path], metrics: dict, verified: bool, interface: str
) -> list[str]:
    """Metrics, tags and ``coreml/`` artifacts on the exported run; returns the artifact URIs."""
    log_metrics(client, run_id, metrics)
    client.set_tag(run_id, "coreml_verified", str(verified).lower())
    client.set_tag(run_id, "coreml_interface", interface)
    for name in REPORTS:
        log_artifacts(client, run_id, folder / name, "coreml")
    for path in files:
        log_artifacts(client, run_id, path, f"coreml/{path.name}" if path.is_dir() else "coreml")
    root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    return [f"{root}/coreml/{name}" for name in [p.name for p in files] + list(REPORTS)]


def export_run(cfg: Mapping) -> dict:
    """The export stage's Python API; raises :class:`KwsError` when verification fails."""
    started = time.perf_counter()
    check_options(cfg)
    output_dir = writable_folder(cfg.get("output_dir"))
    client = store.client_for(cfg["tracking"])
    run_id = resolve_run_id(client, cfg["run_id"], cfg.get("sweep"))
    with tempfile.TemporaryDirectory(prefix="kws-export-") as tmp:
        tmp = Path(tmp)
        source = fetch(client, run_id, tmp / "source")
        if output_dir is not None:
            check_outputs(output_dir, source, cfg)
        data = source_data(source)
        audio, truth, test_fingerprint = _test_clips(data, source, cfg.get("verify_clips"))
        model = load_model(source.model_path)
        rule = open_set_rule(source, cfg)
        ensure_evaluated(client, source, model, data, cfg, rule)
        if rule is not None:
            model = gated(model, *rule, source.labels)
        detector = shipped_detector(source, cfg)
        if detector.get("temperature", 1.0) != 1.0:
            model = tempered_model(model, detector["temperature"])
        keras_probs = np.asarray(model.predict(audio, batch_size=64, verbose=0), dtype=np.float32)
        folder = output_dir or tmp / "coreml"
        folder.mkdir(parents=True, exist_ok=True)
        tolerance = dict(cfg.get("tolerance") or {})
        reference = stream_reference(model, data, source, cfg) if detector else None
        checks, files = [], []
        convert_seconds = 0.0
        for fmt, precision in plan(cfg):
            t0 = time.perf_counter()
            path = _convert_one(model, source, cfg, fmt, folder)
            convert_seconds += time.perf_counter() - t0
            files.append(path)
            check = verify(
                path, fmt, precision, source.labels, audio, truth, keras_probs, float(tolerance.get(precision, 0.0))
            )
            if reference is not None:
                verify_stream(check, path, reference)
            checks.append(check)
        baseline = baseline_for(
            client,
            source,
            test_fingerprint,
            cfg.get("baseline", "auto"),
            dict(cfg["tracking"]),
            list(cfg.get("baseline_overrides") or []),
            tmp / "baseline",
        )
        if baseline is not None:
            ensure_evaluated(client, baseline, load_model(baseline.model_path), None, cfg, None)
        primary = checks[0]
        metrics = _metrics(checks, baseline)
        base_size = _baseline_size(baseline, primary.precision, tmp) if baseline is not None else None
        cols = compare.columns(
            source,
            baseline,
            primary.coreml_accuracy,
            metrics["coreml_size_bytes"],
            base_size,
            rule[0] if rule else None,
        )
        table = compare.markdown(cols, source.labels)
        verified = all(c.verified for c in checks)
        report = {
            "run_id": run_id,
            "labels": source.labels,
            "verified": verified,
            "checks": [c.as_dict() for c in checks],
            "baseline_run_id": baseline.run_id if baseline else None,
        }
        (folder / "verification.json").write_text(json.dumps(report, indent=1))
        (folder / "comparison.md").write_text(table)
        compare.plot(cols, source.labels, folder / "comparison.png")
        for name in REPORTS:
            ownership.record(folder / name)
        artifacts = _log_on_run(client, run_id, folder, files, metrics, verified, cfg["interface"])
        options = dict(cfg.get("registry") or {})
        registered = (
            registry.register(client, source, options, files, [folder / n for n in REPORTS], metrics, table, audio[:1])
            if verified and options.get("register", True)
            else {}
        )
        result = {
            "run_id": run_id,
            **metrics,
            "coreml_verified": verified,
            "baseline_run_id": report["baseline_run_id"],
            **registered,
            "artifacts": artifacts,
            "files": [str(p) for p in files] if output_dir else [],
            "convert_seconds": round(convert_seconds, 2),
            "verify_seconds": round(sum(c.seconds for c in checks), 2),
            "seconds": round(time.perf_counter() - started, 2),
            "comparison": table,
            "checks": report["checks"],
        }
    if not verified:
        bad = [c for c in checks if not c.verified]
        details = "; ".join(c.failure() for c in bad)
        raise KwsError(
            f"Core ML verification failed for run {run_id} ({details}); tagged coreml_verified=false "
            "- see coreml/verification.json"
        )
    return result


def export_best(best_run_id: str, options: Mapping, tracking_uri: str) -> dict:
    """The final stage of a sweep: export its best run with the sweep file's export options."""
    cfg = OmegaConf.to_container(compose("export", [f"run_id={best_run_id}"]), resolve=True)
    cfg.update({k: v for k, v in dict(options).items() if k != "enabled"})
    cfg["tracking"]["uri"] = tracking_uri
    cfg["run_id"] = best_run_id
    return export_run(cfg)
