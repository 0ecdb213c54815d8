"""Export one run: convert, verify against Keras, compare with the baseline, log to MLflow."""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from kws_research import ownership
from kws_research.config import compose
from kws_research.contract import NORMALISATION, SAMPLE_RATE, samples_of, to_float
from kws_research.coreml.convert import (
    About,
    convert,
    convert_seed_interface,
    convert_streaming,
    quantize_weights,
    set_metadata,
    set_streaming_metadata,
)
from kws_research.coreml.formats import PRECISIONS
from kws_research.coreml.verify import verify
from kws_research.errors import KwsError
from kws_research.exporting import compare, registry
from kws_research.exporting.baseline import baseline_for
from kws_research.exporting.options import (
    OUTPUT_HINT,
    REPORTS,
    Checked,
    check_outputs,
    model_file_name,
    plan,
    preflight,
    streaming_file_name,
    streaming_planned,
)
from kws_research.exporting.reference import keras_reference
from kws_research.exporting.streaming import (
    certificate,
    ensure_evaluated,
    evaluation_line,
    shipped_detector,
    stream_reference,
    verification_hop_ms,
    verify_stream,
    verify_streaming_model,
    with_evaluation,
)
from kws_research.models.gate import gated
from kws_research.models.streaming import macs_per_hop, separable_frontend, streaming_model
from kws_research.models.temperature import tempered_model
from kws_research.tracking.runs import log_artifacts, log_metrics, remove_artifacts
from kws_research.tracking.source import fetch, open_set_rule, source_data

log = logging.getLogger(__name__)


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


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
    shipped = shipped_detector(source, cfg)
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
        **shipped,
        **(certificate(source, cfg) if shipped else {}),
    }


def _about(source, cfg, what: str) -> About:
    """The description (``what`` the model takes), the ``metadata.*`` options and user metadata."""
    m = source.metrics
    accuracy = f", {100 * m['test_accuracy']:.1f}% test accuracy" if "test_accuracy" in m else ""
    meta = cfg.get("metadata") or {}
    return About(
        f"Keyword spotting over {len(source.labels)} classes {what} "
        f"({source.model_label}{accuracy}; kws-research run {source.run_id})",
        meta.get("author"),
        meta.get("license"),
        meta.get("version"),
        _metadata(source, cfg),
    )


def _save(mlmodel, path: Path) -> Path:
    """Written beside ``path`` under a temporary name listed as the harness's before a byte
    is written, then renamed into place: a full disk or a kill never leaves a half-written
    model under the final name, nor one the next export would refuse as not its own."""
    ownership.check_replaceable(path, "output_dir", OUTPUT_HINT)
    tmp = ownership.record(path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}"), growing=True)
    try:
        mlmodel.save(str(tmp))
    except OSError as exc:  # shutil.Error (an .mlpackage's copied files) included
        ownership.remove(tmp, "output_dir", OUTPUT_HINT)
        why = exc.args[0][0][2] if isinstance(exc, shutil.Error) and exc.args and exc.args[0] else exc.strerror
        raise KwsError(
            f"output_dir: cannot write {path.name} in {path.parent} ({why or exc}); free space there or set "
            "output_dir=<another folder> (an earlier export there is left as it was)"
        ) from None
    ownership.replace(tmp, path, "output_dir", OUTPUT_HINT)
    ownership.unrecord(tmp)
    return ownership.record(path)


def _convert_one(model, source, cfg, fmt: str, folder: Path) -> Path:
    if cfg["interface"] == "seed":
        mlmodel = convert_seed_interface(model, source.labels)
        if cfg.get("quantize"):
            mlmodel = quantize_weights(mlmodel, cfg["quantize"])
    else:
        mlmodel = convert(model, source.labels, fmt=fmt, precision=cfg["precision"], quantize=cfg.get("quantize"))
    set_metadata(mlmodel, source.labels, cfg["interface"], _about(source, cfg, "from 1 s of 16 kHz audio"))
    return _save(mlmodel, folder / model_file_name(source, cfg, fmt))


def _convert_streaming_one(stream_model, source, cfg, fmt: str, folder: Path) -> Path:
    """The streaming model in ``fmt``, with what the app needs to call it in its metadata."""
    mlmodel = convert_streaming(stream_model, source.labels, fmt, cfg["precision"], cfg.get("quantize"))
    about = _about(source, cfg, "over the last second, called once per hop with its state")
    about.user = {**about.user, "interface": "streaming", "window_model": model_file_name(source, cfg, fmt)}
    set_streaming_metadata(mlmodel, source.labels, about)
    return _save(mlmodel, folder / streaming_file_name(source, fmt))


def _baseline_size(baseline, precision: str, folder: Path) -> int | None:
    """The baseline as an mlprogram of the same precision, for a like-for-like size."""
    try:
        path = folder / "baseline.mlpackage"
        convert(
            baseline.model(),
            baseline.labels,
            "mlprogram",
            precision if precision in PRECISIONS else "fp16",
        ).save(str(path))
        return size_of(path)
    except Exception as exc:  # the comparison still stands without the size
        log.warning("could not convert the baseline for its size: %s", exc)
        return None


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
    streamed = [c for c in checks if c.streaming_path]
    if streamed:
        metrics["coreml_streaming_max_abs_diff"] = max(c.streaming_max_abs_diff for c in streamed)
        metrics["coreml_streaming_size_bytes"] = size_of(Path(streamed[0].streaming_path))
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
    remove_artifacts(client, run_id, "coreml")  # a re-export replaces the run's export as a whole
    for name in REPORTS:
        log_artifacts(client, run_id, folder / name, "coreml")
    for path in files:
        log_artifacts(client, run_id, path, f"coreml/{path.name}" if path.is_dir() else "coreml")
    root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    return [f"{root}/coreml/{name}" for name in [p.name for p in files] + list(REPORTS)]


@dataclass
class ExportJob:
    """What the steps of one export hand on: the run, its test clips, the model as the
    app gets it (open-set rule and temperature folded in) and where files go."""

    cfg: Mapping
    client: object
    source: object  # tracking.source.SourceRun
    data: object  # the run's PreparedData
    folder: Path
    tmp: Path
    audio: np.ndarray = None
    truth: np.ndarray = None
    test_fingerprint: str = ""
    model: object = None
    rule: tuple[str, float] | None = None
    before_gate: object = None  # the run's model without its rule (what the confidence gate reads)
    checks: list = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    streaming_model: str = ""  # what became of the streaming model: verified files, or why there is none
    macs_per_hop: int | None = None
    convert_seconds: float = 0.0
    baseline_seconds: float = 0.0  # finding (or training) the baseline and evaluating it on streams
    temperature: float = 1.0  # folded into the shipped graph


def tempered_tolerance(tolerance: float, temperature: float) -> float:
    """The tolerance for a model shipped with ``temperature`` folded in: a temperature below 1
    multiplies every difference in log-probability by ``1 / T`` before the softmax, so the same
    round-off in the network moves the shipped probabilities up to ``1 / T`` times as far
    (docs/export.md, "Float error"); above 1 it shrinks them, and the tolerance stays."""
    return tolerance / min(1.0, temperature)


def _deployed_model(job: ExportJob) -> None:
    """The run's Keras model with its calibrated open-set rule and temperature, as shipped;
    its predictions on the test clips are what every Core ML file is verified against."""
    job.audio, job.truth, job.test_fingerprint = _test_clips(job.data, job.source, job.cfg["verify_clips"])
    model = job.source.model()
    job.rule = open_set_rule(job.source, job.cfg)
    ensure_evaluated(job.client, job.source, model, job.data, job.cfg, job.rule)
    shipped = shipped_detector(job.source, job.cfg)
    if shipped:
        print(evaluation_line(job.source, job.cfg), flush=True)
    if job.rule is not None:
        job.before_gate = model
        model = gated(model, *job.rule, job.source.labels)
    job.temperature = shipped.get("temperature", 1.0)
    job.model = tempered_model(model, job.temperature) if job.temperature != 1.0 else model


def _streaming_form(job: ExportJob):
    """The deployed model's streaming form at the verification hop, or None (and why)."""
    if not streaming_planned(job.cfg):
        job.streaming_model = "not exported (streaming_model=false or interface=seed)"
        return None
    hop = samples_of(verification_hop_ms(job.source, job.cfg))
    job.macs_per_hop = macs_per_hop(job.model, hop)
    if job.macs_per_hop is None:
        frontend = separable_frontend(job.model)
        job.streaming_model = (
            f"none: {job.source.model_label} has no separable front end (its first layers read the waveform)"
            if frontend is None
            else f"none: the hop of {hop} samples is not a whole number of the front end's "
            f"{frontend.settings.hop}-sample frame hops (stream.hop_ms: a multiple of {frontend.settings.hop_ms:g})"
        )
        log.warning("no streaming model: %s", job.streaming_model)
        return None
    return streaming_model(job.model, hop)


def _convert_and_verify(job: ExportJob) -> None:
    """Each planned file: converted, saved, read back and compared with Keras (clips and
    stream); the streaming model of each format is fed the same stream hop by hop."""

    def predict(model) -> np.ndarray:
        return np.asarray(model.predict(job.audio, batch_size=64, verbose=0), dtype=np.float32)

    reference_of = partial(keras_reference, job.before_gate, job.rule, job.temperature, job.source.labels)
    keras_probs = predict(job.model)
    clips = reference_of(keras_probs, predict)
    tolerance = {p: tempered_tolerance(float(t), job.temperature) for p, t in dict(job.cfg["tolerance"]).items()}
    stream_model = _streaming_form(job)
    needs_stream = shipped_detector(job.source, job.cfg) or stream_model is not None
    reference = stream_reference(job.model, job.data, job.source, job.cfg, reference_of) if needs_stream else None
    for fmt, precision in plan(job.cfg):
        t0 = time.perf_counter()
        path = _convert_one(job.model, job.source, job.cfg, fmt, job.folder)
        streaming = _convert_streaming_one(stream_model, job.source, job.cfg, fmt, job.folder) if stream_model else None
        job.convert_seconds += time.perf_counter() - t0
        job.files += [path, streaming] if streaming else [path]
        labels = job.source.labels
        within = float(tolerance[precision])
        check = verify(
            path,
            fmt,
            precision,
            labels,
            job.audio,
            job.truth,
            keras_probs,
            within,
            partial(clips.differences, precision=within),
        )
        if reference is not None:
            verify_stream(check, path, reference)
        if streaming is not None:
            started = time.perf_counter()
            verify_streaming_model(check, streaming, reference)
            check.seconds = round(check.seconds + time.perf_counter() - started, 2)
        job.checks.append(check)
    if stream_model is not None:
        job.streaming_model = ", ".join(Path(c.streaming_path).name for c in job.checks)


def _baseline(job: ExportJob):
    """The data set's baseline run (trained first when missing), evaluated on the same streams."""
    cfg = job.cfg
    baseline = baseline_for(
        job.client,
        job.source,
        job.test_fingerprint,
        cfg["baseline"],
        dict(cfg["tracking"]),
        list(cfg["baseline_overrides"]),
        job.tmp / "baseline",
    )
    if baseline is not None:
        ensure_evaluated(job.client, baseline, baseline.model(), None, cfg, None)
    return baseline


def _write_reports(job: ExportJob, baseline, metrics: dict) -> tuple[dict, str]:
    """``verification.json``, ``comparison.md`` and ``comparison.png`` beside the files."""
    primary = job.checks[0]
    base_size = _baseline_size(baseline, primary.precision, job.tmp) if baseline is not None else None
    rule = job.rule[0] if job.rule else None
    cols = compare.columns(job.source, baseline, primary.coreml_accuracy, metrics["coreml_size_bytes"], base_size, rule)
    table = compare.markdown(cols, job.source.labels)
    report = {
        "run_id": job.source.run_id,
        "labels": job.source.labels,
        "verified": all(c.verified for c in job.checks),
        "checks": [c.as_dict() for c in job.checks],
        "baseline_run_id": baseline.run_id if baseline else None,
        "streaming_model": job.streaming_model,
    }
    (job.folder / "verification.json").write_text(json.dumps(report, indent=1))
    (job.folder / "comparison.md").write_text(table)
    compare.plot(cols, job.source.labels, job.folder / "comparison.png")
    for name in REPORTS:
        ownership.record(job.folder / name)
    return report, table


def export_run(cfg: Mapping, checked: Checked | None = None) -> dict:
    """The export stage's Python API; raises :class:`KwsError` when verification fails.

    Steps: check the options and find the run (``checked``, when the caller has done it),
    fetch it and its data, deploy its model as the app gets it, convert and verify every
    file, find the baseline, compare, log on the run, register."""
    started = time.perf_counter()
    checked = checked or preflight(cfg)
    output_dir, client, run_id = checked.output_dir, checked.client, checked.run_id
    with tempfile.TemporaryDirectory(prefix="kws-export-") as tmp:
        tmp = Path(tmp)
        source = fetch(client, run_id, tmp / "source")
        if output_dir is not None:
            check_outputs(output_dir, source, cfg)
        folder = output_dir or tmp / "coreml"
        folder.mkdir(parents=True, exist_ok=True)
        cfg = with_evaluation(source, cfg)
        job = ExportJob(cfg, client, source, source_data(source), folder, tmp)
        _deployed_model(job)
        _convert_and_verify(job)
        t0 = time.perf_counter()
        baseline = _baseline(job)
        job.baseline_seconds = time.perf_counter() - t0
        metrics = _metrics(job.checks, baseline)
        if job.macs_per_hop is not None:  # at the hop the app calls it (runs trained before it lack it)
            metrics["macs_per_hop"] = job.macs_per_hop
        report, table = _write_reports(job, baseline, metrics)
        verified = report["verified"]
        artifacts = _log_on_run(client, run_id, folder, job.files, metrics, verified, cfg["interface"])
        options = dict(cfg["registry"])
        reports = [folder / n for n in REPORTS]
        registered = (
            registry.register(client, source, options, job.files, reports, metrics, table, job.audio[:1])
            if verified and options["register"]
            else {}
        )
    if not verified:
        details = "; ".join(c.failure() for c in job.checks if not c.verified)
        raise KwsError(
            f"Core ML verification failed for run {run_id} ({details}); tagged coreml_verified=false "
            "- see coreml/verification.json"
        )
    return {
        "run_id": run_id,
        **metrics,
        "coreml_verified": verified,
        "baseline_run_id": report["baseline_run_id"],
        **registered,
        "artifacts": artifacts,
        "files": [str(p) for p in job.files] if output_dir else [],
        "convert_seconds": round(job.convert_seconds, 2),
        "baseline_seconds": round(job.baseline_seconds, 2),
        "verify_seconds": round(sum(c.seconds for c in job.checks), 2),
        "seconds": round(time.perf_counter() - started, 2),
        "comparison": table,
        "checks": report["checks"],
    }


def export_best(best_run_id: str, options: Mapping, tracking_uri: str) -> dict:
    """The final stage of a sweep: export its best run with the sweep file's export options."""
    cfg = OmegaConf.to_container(compose("export", [f"run_id={best_run_id}"]), resolve=True)
    cfg.update({k: v for k, v in dict(options).items() if k != "enabled"})
    cfg["tracking"]["uri"] = tracking_uri
    cfg["run_id"] = best_run_id
    return export_run(cfg)
